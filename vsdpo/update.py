"""One policy update: rewards and advantages, each group's teacher context, hidden states, token
credit and fused loss, gradient accumulation over the groups, and the optimiser step.

Gradient accumulation: every group of G rollouts is one micro-batch (one backward). Each micro-batch's
loss is scaled so that the accumulated gradient equals that of the whole step's batch over all ranks:
``dapo`` passes the step's total response-token count as ``num_items_in_batch``; ``bnpo`` scales by the
group's share of tokens, ``grpo`` and ``dr_grpo`` by its share of sequences. FSDP averages gradients
over ranks, so each rank's loss is also multiplied by the world size.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict

log = logging.getLogger("vsdpo.train")


class TaskSampler:
    """The data order: a fresh seeded permutation of the tasks each epoch; its state resumes exactly."""

    def __init__(self, num_tasks: int, seed: int):
        self.num_tasks, self.seed = num_tasks, seed
        self.epoch, self.position = 0, 0

    def _order(self) -> list[int]:
        import torch

        return torch.randperm(
            self.num_tasks, generator=torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        ).tolist()

    def next_batch(self, per_rank: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """The next ``per_rank * world_size`` tasks of the order; this rank's slice of them."""
        picked = []
        while len(picked) < per_rank * world_size:
            order = self._order()
            take = min(per_rank * world_size - len(picked), self.num_tasks - self.position)
            picked += order[self.position : self.position + take]
            self.position += take
            if self.position == self.num_tasks:
                self.epoch, self.position = self.epoch + 1, 0
        return picked[rank * per_rank : (rank + 1) * per_rank]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


class Teacher:
    """``live``: the policy itself (the paper's weight sharing); ``ema``: a moving-average copy."""

    def __init__(self, model=None, rate: float = 0.0, reference_model=None):
        self.model, self.rate = model, rate
        self.reference_model = reference_model  # the initial policy, for the KL penalty (kl_beta > 0)

    @classmethod
    def build(cls, policy, config) -> Teacher:
        import copy

        frozen_copy = lambda: copy.deepcopy(policy).requires_grad_(False).eval()
        ema = frozen_copy() if config.teacher == "ema" and config.uses_distillation else None
        reference = frozen_copy() if config.kl_beta > 0 else None
        return cls(ema, config.teacher_ema_rate, reference)

    @property
    def live(self) -> bool:
        return self.model is None

    def update(self, policy) -> None:
        if self.model is None:
            return
        import torch

        with torch.no_grad():
            for ema, param in zip(self.model.parameters(), policy.parameters(), strict=False):
                ema.lerp_(param.detach().to(ema.dtype), self.rate)

    def state_dict(self) -> dict | None:
        return (
            None
            if self.model is None
            else {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        )

    def load_state_dict(self, state: dict | None) -> None:
        if self.model is not None and state is not None:
            self.model.load_state_dict(state)


# ----------------------------------------------------------------------------------------- rewards


def score_rollouts(rollouts, config) -> int:
    """Fill each rollout's reward (vsdpo.rewards for its task kind) and its group advantage.

    A reward that cannot be computed (its sandbox died, say) marks the rollout crashed, like a crashed
    render: a warning, no loss on it, and the mean reward of its group's other rollouts so that it
    moves no one's advantage. Returns the number of such rollouts.
    """
    from concurrent.futures import ThreadPoolExecutor

    from vsdpo.rewards import RewardConfig, VisualReward
    from vsdpo.rollout import group_advantages

    reward = VisualReward(
        RewardConfig(
            kind=config.task_kind, weights=dict(config.reward_weights), timeout_s=config.render_timeout_s
        )
    )

    failures = []

    def score(rollout) -> float | None:
        if rollout.render_crashed:
            return None
        try:
            return reward.score_one(
                rollout.render, rollout.program, rollout.task.reference, rollout.task.kind
            )
        except Exception as error:  # the run goes on without this rollout
            log.warning("reward failed for task %s: %s: %s", rollout.task.id, type(error).__name__, error)
            failures.append(rollout)
            return None

    with ThreadPoolExecutor(max_workers=max(1, config.render_workers)) as pool:
        scored = list(pool.map(score, rollouts))
    for rollout in failures:
        rollout.render_crashed = True
    values = _fill_missing(scored, config.num_generations)
    for spec in config.reward_funcs:  # user reward callables, TRL's signature
        import importlib

        module_name, _, function_name = spec.partition(":")
        function = getattr(importlib.import_module(module_name), function_name)
        extra = function(
            prompts=[r.task.prompt for r in rollouts],
            completions=[r.text for r in rollouts],
            render_results=[r.render for r in rollouts],
            reference=[r.task.reference for r in rollouts],
            kind=[r.task.kind for r in rollouts],
        )
        if len(extra) != len(values):
            raise ValueError(
                f"reward_funcs: {spec} returned {len(extra)} rewards for {len(values)} completions"
            )
        values = [v + (e or 0.0) for v, e in zip(values, extra, strict=False)]
    advantages = group_advantages(values, config.num_generations, config.scale_rewards)
    for rollout, value, advantage in zip(rollouts, values, advantages.tolist(), strict=True):
        rollout.reward, rollout.advantage = float(value), float(advantage)
    return len(failures)


def _fill_missing(values: list[float | None], group_size: int) -> list[float]:
    """Missing rewards take their group's mean of the others (0 when the whole group is missing)."""
    filled = []
    for start in range(0, len(values), group_size):
        group = values[start : start + group_size]
        present = [v for v in group if v is not None]
        mean = sum(present) / len(present) if present else 0.0
        filled += [mean if v is None else v for v in group]
    return filled


# ------------------------------------------------------------------------------------------- groups


def build_group(processor, rollouts, target_image, config, with_feedback: bool):
    """The ``RolloutGroup`` of one prompt: prompt (and target image), the sampled response ids, and
    each rollout's teacher context (vsdpo.teacher_context) when distillation is on."""
    import dataclasses

    from vsdpo.sharing import RolloutGroup
    from vsdpo.teacher_context import teacher_context

    task = rollouts[0].task
    show_target = config.prompt_image and target_image is not None
    feedbacks, feedback_images = None, None
    if with_feedback:
        contexts = [teacher_context(r.render, r.program, with_image=config.teacher_image) for r in rollouts]
        feedbacks = [c.text for c in contexts]
        feedback_images = [c.images or None for c in contexts]
    group = RolloutGroup.from_text(
        processor,
        task.prompt,
        [""] * len(rollouts),
        feedbacks,
        prompt_images=[target_image] if show_target else None,
        feedback_images=feedback_images,
    )
    return dataclasses.replace(group, response_ids=[r.response_ids for r in rollouts])


def _padded(rows, width: int, fill, dtype):
    import torch

    out = torch.full((len(rows), width), fill, dtype=dtype)
    for index, row in enumerate(rows):
        row = torch.as_tensor(row, dtype=dtype)[:width]
        out[index, : len(row)] = row
    return out


def token_credit_matrix(rollouts, width: int, config):
    from vsdpo.credit import token_credit

    rows = [
        token_credit(
            r.text, r.token_offsets, r.render, alpha=config.credit_alpha, reduce=config.credit_reduce
        )
        for r in rollouts
    ]
    import torch

    return _padded(rows, width, 1.0, torch.float32)


# ------------------------------------------------------------------------------------------- update


def _micro_batch_scale(
    config, group_tokens: int, group_sequences: int, total_tokens: float, total_sequences: float, world: int
) -> float:
    if config.loss_type == "dapo":
        return float(world)  # the normaliser itself is global (num_items_in_batch)
    if config.loss_type == "bnpo":
        return world * group_tokens / max(total_tokens, 1.0)
    return world * group_sequences / max(total_sequences, 1.0)


def loss_config(config):
    from vsdpo_kernels import SDPOLossConfig

    return SDPOLossConfig(
        beta=config.beta,
        temperature=config.temperature,
        sd_weight=config.sd_weight if config.uses_distillation else 0.0,
        pg_weight=config.pg_weight,
        epsilon_low=config.epsilon_low,
        epsilon_high=config.epsilon_high,
        kl_beta=config.kl_beta,
        loss_type=config.loss_type,
        max_completion_length=config.max_completion_length or config.max_new_tokens,
    )


def group_hidden(model, teacher, group, config):
    """(student hidden states with their mask, teacher hidden states or None) of one group."""
    import dataclasses

    import torch

    from vsdpo.sharing import student_teacher_hidden

    if teacher.live:  # one call: the teacher continues the student's prompt cache
        hidden = student_teacher_hidden(model, group, reuse_prefix=config.reuse_prefix)
        return hidden, hidden.teacher_hidden if config.uses_distillation else None
    no_feedback = dataclasses.replace(
        group, feedback_ids=None, feedback_pixel_values=None, feedback_image_grid_thw=None
    )
    hidden = student_teacher_hidden(model, no_feedback, reuse_prefix=config.reuse_prefix)
    if not config.uses_distillation:
        return hidden, None
    with torch.no_grad():
        return hidden, student_teacher_hidden(
            teacher.model, group, reuse_prefix=config.reuse_prefix
        ).teacher_hidden


def reference_logprobs(teacher, group, targets, config):
    """Log-probs of the sampled tokens under the initial policy (for the KL penalty)."""
    import torch

    from vsdpo.sharing import student_teacher_hidden
    from vsdpo_kernels import linear_logprobs

    reference = teacher.reference_model
    with torch.no_grad():
        hidden = student_teacher_hidden(reference, group, reuse_prefix=config.reuse_prefix).student_hidden
        weight = reference.get_output_embeddings().weight
        return linear_logprobs(hidden, weight, targets, config.temperature, impl=config.loss_impl)[0]


def policy_update(model, teacher, processor, rollouts, target_images, optimizer, scheduler, config) -> dict:
    """Backward over every group, then clip and step; returns the update's metrics and whether it was skipped."""
    import torch

    from vsdpo import distributed

    G = config.num_generations
    head = model.get_output_embeddings()  # a vsdpo.distributed.LossHead
    device = head.weight.device
    valid = [not r.render_crashed for r in rollouts]
    total_tokens = distributed.all_reduce_sum(
        sum(len(r.response_ids) for r, ok in zip(rollouts, valid, strict=False) if ok)
    )
    total_sequences = distributed.all_reduce_sum(sum(valid))
    world = distributed.world_size()
    sums: dict[str, float] = defaultdict(float)
    groups = [rollouts[i : i + G] for i in range(0, len(rollouts), G)]
    model.train()
    for index, (group_rollouts, target_image) in enumerate(zip(groups, target_images, strict=True)):
        if hasattr(model, "set_requires_gradient_sync"):  # FSDP2: reduce on the last micro-batch only
            model.set_requires_gradient_sync(index == len(groups) - 1)
        group = build_group(
            processor, group_rollouts, target_image, config, with_feedback=config.uses_distillation
        )
        hidden, teacher_hidden = group_hidden(model, teacher, group, config)
        width = hidden.student_hidden.shape[1]
        targets = _padded([r.response_ids for r in group_rollouts], width, 0, torch.long).to(device)
        behaviour = _padded([r.behaviour_logprobs for r in group_rollouts], width, 0.0, torch.float32).to(
            device
        )
        group_valid = torch.tensor(valid[index * G : (index + 1) * G], device=device)
        mask = hidden.response_mask.to(device) & group_valid[:, None]
        credit = None
        if config.uses_credit and config.uses_distillation:
            credit = token_credit_matrix(group_rollouts, width, config).to(device)
        advantages = None
        if config.pg_weight > 0:
            advantages = torch.tensor([r.advantage for r in group_rollouts], device=device)
        loss_kwargs = dict(
            targets=targets,
            mask=mask,
            teacher_hidden=teacher_hidden,
            advantages=advantages,
            credit=credit,
            old_logprobs=behaviour if config.old_logprobs == "behaviour" else None,
            ref_logprobs=reference_logprobs(teacher, group, targets, config) if config.kl_beta > 0 else None,
            num_items_in_batch=total_tokens if config.loss_type == "dapo" else None,
            config=loss_config(config),
            impl=config.loss_impl,
        )
        loss, out = head(hidden.student_hidden, loss_kwargs=loss_kwargs)
        scale = _micro_batch_scale(
            config, int(mask.sum()), int(group_valid.sum()), total_tokens, total_sequences, world
        )
        (loss * scale).backward()

        tokens = mask.float()
        sums["loss"] += float(loss.detach()) * scale / world
        sums["pg_loss"] += float(out.pg_loss) * scale / world
        sums["sd_loss"] += float(out.sd_loss) * scale / world
        sums["tokens"] += float(tokens.sum())
        sums["entropy"] += float((out.entropy * tokens).sum())
        sums["divergence"] += float((out.divergence * tokens).sum())
        sums["clip_fraction"] += float(out.clip_fraction) * float(tokens.sum())
        sums["logprob_gap"] += float(((out.logprobs - behaviour).abs() * tokens).sum())
        if credit is not None:
            sums["credited_tokens"] += float(((credit > 1) & mask).sum())

    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    metrics = {key: distributed.all_reduce_sum(sums[key]) for key in ("loss", "pg_loss", "sd_loss")}
    metrics["grad_norm"] = grad_norm
    tokens = max(distributed.all_reduce_sum(sums["tokens"]), 1.0)
    for key in ("entropy", "divergence", "clip_fraction", "logprob_gap", "credited_tokens"):
        metrics[key] = distributed.all_reduce_sum(sums[key]) / tokens
    if not (math.isfinite(metrics["loss"]) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        reason = f"non-finite loss {metrics['loss']} or gradient norm {grad_norm}"
        return {**metrics, "skipped": True, "reason": reason}
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {**metrics, "skipped": False, "reason": ""}


def step_metrics(rollouts, update: dict, **extra) -> dict:
    """The scalars logged per step (this rank's rollouts; the losses are global)."""
    import statistics

    rewards = [r.reward for r in rollouts]
    ran = [r for r in rollouts if r.render is not None and r.render.ok]
    metrics = {
        "reward": statistics.fmean(rewards),
        "reward_std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        "execution_rate": len(ran) / len(rollouts),
        "defect_rate": sum(bool(r.render.defects) for r in ran) / len(ran) if ran else 0.0,
        "defects_per_render": sum(len(r.render.defects) for r in ran) / len(ran) if ran else 0.0,
        "response_length": statistics.fmean(len(r.response_ids) for r in rollouts),
        "render_crashes": sum(r.render_crashed for r in rollouts),
    }
    metrics.update({k: v for k, v in update.items() if k not in ("skipped", "reason")})
    metrics["skipped"] = float(update["skipped"])
    metrics.update(extra)
    return metrics
