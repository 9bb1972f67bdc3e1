"""The policy update: per group, the teacher's context, the student and teacher hidden states, the
token credit and the fused loss, backward; then clipping and one optimiser step.

Gradient accumulation: every group of G rollouts is one micro-batch (one backward). Each micro-batch's
loss is scaled so that the accumulated gradient equals that of the whole step's batch over all ranks:
``dapo`` passes the step's total response-token count as ``num_items_in_batch``; ``bnpo`` scales by the
group's share of tokens, ``grpo`` and ``dr_grpo`` by its share of sequences. FSDP averages gradients
over ranks, so each rank's loss is also multiplied by the world size.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from vsdpo.train import distributed
from vsdpo.train.batch import GroupBatch, build_group
from vsdpo.train.generate import Rollout
from vsdpo.train.loss import LossHead
from vsdpo.train.teacher import Teacher
from vsdpo.train.timing import StepClock, null_stage

if TYPE_CHECKING:
    from PIL import Image
    from transformers import PreTrainedModel

    from vsdpo.sharing import RolloutGroup
    from vsdpo.train.config import TrainConfig
    from vsdpo.train.model import Processor

log = logging.getLogger("vsdpo.train")


@dataclass(frozen=True)
class UpdateResult:
    """What one update did: the global losses, the gradient norm, token means, and whether it was skipped."""

    loss: float
    pg_loss: float
    sd_loss: float
    grad_norm: float
    entropy: float
    divergence: float
    clip_fraction: float
    logprob_gap: float  # mean |logp - behaviour logp|: how far the policy moved from the sampler
    credited_tokens: float  # share of response tokens with credit > 1
    skipped: bool = False
    reason: str = ""

    @classmethod
    def nothing(cls, reason: str) -> UpdateResult:
        """A step skipped before any loss was computed."""
        numbers = {f.name: math.nan for f in dataclasses.fields(cls) if f.type in ("float", float)}
        return cls(**numbers, skipped=True, reason=reason)

    @classmethod
    def mean(cls, results: list[UpdateResult]) -> UpdateResult:
        """The step's result over its iterations: the mean of each number over the iterations that
        stepped; skipped if the first did not (a later non-finite one ends the step, the ones before
        it stand)."""
        stepped = [r for r in results if not r.skipped]
        if len(results) == 1 or not stepped:
            return results[0]
        numbers = {
            f.name: sum(getattr(r, f.name) for r in stepped) / len(stepped)
            for f in dataclasses.fields(cls)
            if f.type in ("float", float)
        }
        return cls(**numbers)

    def metrics(self) -> dict[str, float]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.pop("reason")
        return {**values, "skipped": float(self.skipped)}


def build_optimizer(
    model: PreTrainedModel, config: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and a per-step learning-rate schedule with linear warm-up."""
    opt = config.optimizer
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt.learning_rate,
        betas=(opt.adam_beta1, opt.adam_beta2),
    )

    def factor(step: int) -> float:
        if step < opt.warmup_steps:
            return (step + 1) / (opt.warmup_steps + 1)
        progress = (step - opt.warmup_steps) / max(1, config.run.max_steps - opt.warmup_steps)
        if opt.lr_scheduler == "linear":
            return max(0.0, 1.0 - progress)
        if opt.lr_scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def micro_batch_scale(
    loss_type: str,
    group_tokens: int,
    group_sequences: int,
    total_tokens: float,
    total_sequences: float,
    world: int,
) -> float:
    if loss_type == "dapo":
        return float(world)  # the normaliser itself is global (num_items_in_batch)
    if loss_type == "bnpo":
        return world * group_tokens / max(total_tokens, 1.0)
    return world * group_sequences / max(total_sequences, 1.0)


def policy_update(
    model: PreTrainedModel,
    teacher: Teacher,
    processor: Processor,
    rollouts: list[Rollout],
    target_images: list[Image.Image | None],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    clock: StepClock | None = None,
) -> UpdateResult:
    """``algorithm.num_iterations`` times: backward over every group, then clip and step. ``clock``
    (vsdpo.train.timing) counts the teacher's own pass apart from the rest of the update."""
    G = config.rollout.num_generations
    valid = [not r.left_out for r in rollouts]
    total_tokens = distributed.all_reduce_sum(
        sum(len(r.response_ids) for r, ok in zip(rollouts, valid, strict=True) if ok)
    )
    total_sequences = distributed.all_reduce_sum(sum(valid))
    if total_sequences == 0:  # every render or reward crashed, on every rank: nothing to learn from
        return UpdateResult.nothing("no usable rollout (every render or reward crashed)")
    with_feedback = config.algorithm.uses_distillation
    # Each group's rollouts and their tokenized RolloutGroup, the same for every iteration.
    groups: list[tuple[list[Rollout], RolloutGroup]] = []
    chunks = [rollouts[i : i + G] for i in range(0, len(rollouts), G)]
    for group_rollouts, target_image in zip(chunks, target_images, strict=True):
        group = build_group(processor, group_rollouts, target_image, config, with_feedback=with_feedback)
        groups.append((group_rollouts, group))
    # Per group, from the first iteration: the old and the reference log-probs ("old", "ref").
    fixed: list[dict[str, torch.Tensor]] = [{} for _ in groups]
    results = []
    for iteration in range(config.algorithm.num_iterations):
        result = one_iteration(
            model,
            teacher,
            groups,
            fixed,
            optimizer,
            config,
            first=iteration == 0,
            total_tokens=total_tokens,
            total_sequences=total_sequences,
            stage=null_stage if clock is None else clock.stage,
        )
        results.append(result)
        if result.skipped:
            if iteration:
                log.warning(
                    "iteration %d of the step skipped: %s; the step ends there", iteration + 1, result.reason
                )
            break
    if not results[0].skipped:
        scheduler.step()  # the schedule counts training steps, whatever the iterations per step
    return UpdateResult.mean(results)


def one_iteration(
    model: PreTrainedModel,
    teacher: Teacher,
    groups: list[tuple[list[Rollout], RolloutGroup]],
    fixed: list[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    *,
    first: bool,
    total_tokens: float,
    total_sequences: float,
    stage: Callable[[str], AbstractContextManager[None]] = null_stage,
) -> UpdateResult:
    """One backward over every group, then clip and step: one of ``algorithm.num_iterations``. The
    first iteration records in ``fixed`` what the later ones reuse: the policy's log-probs as the step
    starts (the ratio's denominator for ``old_logprobs: detached``) and the reference policy's."""
    head = LossHead.of(model, config)  # vsdpo.train.loss: config.loss_config() and the output layer
    loss_type = head.config.loss_type
    world = distributed.world_size()
    device = head.weight.device
    sums: dict[str, float] = defaultdict(float)
    model.train()
    for index, (group_rollouts, group) in enumerate(groups):
        if hasattr(model, "set_requires_gradient_sync"):  # FSDP2: reduce on the last micro-batch only
            model.set_requires_gradient_sync(index == len(groups) - 1)
        hidden, teacher_hidden = teacher.hidden(model, group, config, stage=stage)
        batch = GroupBatch.build(
            group_rollouts,
            hidden.response_mask.to(device),
            config,
            teacher_hidden=teacher_hidden,
            num_items_in_batch=total_tokens if loss_type == "dapo" else None,
        )
        if head.config.kl_beta > 0 and first:
            fixed[index]["ref"] = teacher.reference_logprobs(group, batch.targets, config)
        old_logprobs = batch.old_logprobs if first or batch.old_logprobs is not None else fixed[index]["old"]
        batch = dataclasses.replace(batch, ref_logprobs=fixed[index].get("ref"), old_logprobs=old_logprobs)
        out = head(batch.loss_inputs(hidden.student_hidden, head.weight))
        loss = out.loss
        if first:
            fixed[index]["old"] = out.logprobs.detach()
        scale = micro_batch_scale(
            loss_type,
            int(batch.mask.sum()),
            int(batch.valid.sum()),
            total_tokens,
            total_sequences,
            world,
        )
        (loss * scale).backward()

        tokens = batch.mask.float()
        sums["loss"] += float(loss.detach()) * scale / world
        sums["pg_loss"] += float(out.pg_loss) * scale / world
        sums["sd_loss"] += float(out.sd_loss) * scale / world
        sums["tokens"] += float(tokens.sum())
        sums["entropy"] += float((out.entropy * tokens).sum())
        sums["divergence"] += float((out.divergence * tokens).sum())
        sums["clip_fraction"] += float(out.clip_fraction) * float(tokens.sum())
        sums["logprob_gap"] += float(((out.logprobs - batch.behaviour_logprobs).abs() * tokens).sum())
        if batch.credit is not None:
            sums["credited_tokens"] += float(((batch.credit > 1) & batch.mask).sum())

    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optimizer.max_grad_norm)
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    tokens = max(distributed.all_reduce_sum(sums["tokens"]), 1.0)
    per_token = lambda key: distributed.all_reduce_sum(sums[key]) / tokens
    result = UpdateResult(
        loss=distributed.all_reduce_sum(sums["loss"]),
        pg_loss=distributed.all_reduce_sum(sums["pg_loss"]),
        sd_loss=distributed.all_reduce_sum(sums["sd_loss"]),
        grad_norm=grad_norm,
        entropy=per_token("entropy"),
        divergence=per_token("divergence"),
        clip_fraction=per_token("clip_fraction"),
        logprob_gap=per_token("logprob_gap"),
        credited_tokens=per_token("credited_tokens"),
    )
    if not (math.isfinite(result.loss) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        reason = f"non-finite loss {result.loss} or gradient norm {grad_norm}"
        return dataclasses.replace(result, skipped=True, reason=reason)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return result
