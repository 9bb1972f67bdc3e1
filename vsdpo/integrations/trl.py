"""Visual-SDPO in TRL: ``GRPOTrainer`` with the fused loss and a teacher that sees the render.

A TRL user changes one class::

    from trl import GRPOConfig
    from vsdpo.integrations.trl import VisualSDPOConfig, VisualSDPOTrainer
    from vsdpo.feedback.rewards import VisualReward

    trainer = VisualSDPOTrainer(  # was: GRPOTrainer(
        model="Qwen/Qwen3-VL-8B-Instruct",
        reward_funcs=VisualReward(kind="chart"),
        args=GRPOConfig(output_dir="out", loss_type="dapo"),
        train_dataset=dataset,  # TRL's format: a "prompt" column, and "image" for a target picture
        sdpo=VisualSDPOConfig(kind="chart", sd_weight=1.0, beta=0.5, credit_alpha=1.0),  # optional
    )

What it changes in ``GRPOTrainer``, method by method, and nothing else:

- ``_compute_loss``: the loss is ``vsdpo_kernels.fused_linear_sdpo_loss`` on the final hidden states
  and the lm_head weight, never the ``[tokens x vocab]`` logits. For the loss types TRL and the kernel
  share (grpo, bnpo, dr_grpo, dapo) it is TRL's definition: the same epsilon clipping, ``beta`` KL
  penalty to the reference log-probs, normalisers and gradient-accumulation scaling, and the same
  metrics (``entropy``, ``kl``, ``clip_ratio/*``). Options the kernel cannot express (listed by
  ``unsupported_options``) fall back to TRL's own loss when distillation is off.
- ``_calculate_rewards``: after TRL's rewards, each completion is decoded with its token spans
  (``vsdpo.feedback.spans``) and its program rendered (``vsdpo.feedback.rendering.RenderPool``), or
  its render taken from a ``VisualReward`` among the reward functions that rendered the same program
  in this batch with the same timeout (``sdpo/renders_reused``, the share taken); the
  render gives the teacher's feedback and the credit of the completion's tokens
  (``vsdpo.feedback.builder.build_feedback``). These are the functions ``vsdpo.train`` calls, so a
  completion gets the same spans, feedback and credit under either trainer.
- ``_generate_and_score_completions``: the batch also carries each completion's teacher prompt and
  credit, so that TRL's shuffling and splitting into micro-batches keep them with their completion.
  The feedback comes from ``_calculate_rewards`` as a frozen ``CompletionFeedback`` that names the
  completions it was made for; one that does not match the batch is an error.

With ``sd_weight > 0`` the loss adds the distillation term: the same model, under no_grad, reads
prompt ⊕ feedback ⊕ completion, and its final hidden states over the completion tokens are the
teacher's. Metrics added to TRL's: ``sdpo/pg_loss``, ``sdpo/sd_loss``, ``sdpo/divergence`` (mean
per-token divergence), ``sdpo/credited_tokens`` (share of tokens with credit above 1) and
``sdpo/execution_rate`` (share of programs that ran).

Names. ``VisualSDPOConfig`` takes the names of ``vsdpo_kernels.SDPOLossConfig`` and of vsdpo.train's
config; the options a TRL user sets on ``GRPOConfig`` keep TRL's names, and reach the kernel as:

==============================  ===========================================================================
TRL (``GRPOConfig``)            vsdpo (``SDPOLossConfig`` / vsdpo.train's config key)
==============================  ===========================================================================
``beta`` (KL to the reference)  ``kl_beta`` / ``algorithm.loss.kl_beta``
``epsilon``                     ``epsilon_low`` / ``algorithm.loss.epsilon_low``
``epsilon_high``                ``epsilon_high`` / ``algorithm.loss.epsilon_high``
``loss_type``                   ``loss_type`` / ``algorithm.loss.loss_type`` (``vsdpo_kernels.LOSS_TYPES``)
``max_completion_length``       ``max_completion_length`` / ``rollout.max_new_tokens``
``temperature``                 ``temperature`` / ``rollout.temperature``
``num_generations``             ``rollout.num_generations``
``num_iterations``              ``algorithm.num_iterations``
``scale_rewards``               ``reward.scale_rewards``
==============================  ===========================================================================

and ``VisualSDPOConfig``'s own fields are, in vsdpo.train's config: ``sd_weight`` and ``beta`` (the
generalized JSD's, not TRL's KL ``beta``) as ``algorithm.loss.sd_weight`` and ``algorithm.loss.beta``;
``loss_impl``, ``credit_alpha``, ``credit_reduce``, ``feedback``, ``teacher_image`` under
``algorithm.``; ``kind`` as ``data.kind``; ``render_timeout_s`` and ``render_workers`` under
``rollout.``. Its former names ``jsd_beta`` and ``impl`` raise an error naming the new ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from trl import GRPOTrainer
from trl.data_utils import is_conversational
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import nanmax, nanmin

from vsdpo.feedback.builder import FeedbackOptions, build_feedback
from vsdpo.feedback.credit import extract_code
from vsdpo.feedback.rendering import RenderPool
from vsdpo.feedback.rewards import VisualReward
from vsdpo.feedback.spans import decode_with_spans
from vsdpo.feedback.teacher_context import FEEDBACK_MODES, IMAGE_PLACEHOLDER
from vsdpo.render import ARTIFACT_KINDS
from vsdpo_kernels import IMPLS, LOSS_TYPES, SDPOLossConfig, fused_linear_sdpo_loss, linear_logprobs

__all__ = ["VisualSDPOConfig", "VisualSDPOTrainer", "decode_with_spans", "prompt_with_feedback"]

log = logging.getLogger(__name__)

# Batch entries a vision-language model's forward takes besides the token ids, as TRL names them.
MODEL_INPUT_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_attention_mask",
    "spatial_shapes",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)
PER_TOKEN_KEYS = ("token_type_ids", "mm_token_type_ids")
# Config entries of models whose logits are not ``hidden @ W.T`` (scaled, or soft-capped).
LOGIT_SCALES = (
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
    "final_logit_softcapping",
)
# GRPOTrainer(model, reward_funcs, args, train_dataset, eval_dataset, processing_class, ...)
PROCESSING_CLASS_POSITION = 5


# Former names of VisualSDPOConfig's fields, now those of vsdpo_kernels and vsdpo.train.
RENAMED_FIELDS = {"jsd_beta": "beta", "impl": "loss_impl"}


@dataclass
class VisualSDPOConfig:
    """What ``VisualSDPOTrainer`` adds to a ``GRPOConfig``. ``sd_weight=0`` turns the teacher off:
    GRPO through the fused loss, with no render and no teacher pass. Fields take the names of
    ``vsdpo_kernels.SDPOLossConfig`` and of vsdpo.train's config (see the module's table)."""

    sd_weight: float = 1.0  # weight of the distillation term (the policy term keeps weight 1)
    beta: float = 0.5  # generalized JSD: 0 forward KL(teacher || student), 1 reverse KL; not GRPOConfig.beta
    credit_alpha: float = 1.0  # credit 1 + alpha * severity on the tokens of the lines behind a defect
    credit_reduce: str = "max"  # "max" or "sum" over the defects touching a token's lines
    kind: str = "chart"  # artifact kind of the programs; a dataset column "kind" overrides it per row
    teacher_image: bool = True  # the feedback shows the render (vision-language models only)
    max_defects: int = 5  # defects listed in the feedback, worst first
    # "compare": a program that ran is also told how its render differs from the row's "reference"
    # column (texts, chart types, colours; page blocks), the differences credited like defects;
    # "defects": its layout defects only (the paper's template). vsdpo.train's algorithm.feedback.
    feedback: str = "compare"
    render_timeout_s: float = 20.0
    render_workers: int = 4
    loss_impl: str = "auto"  # implementation of the fused loss (vsdpo_kernels.IMPLS)

    def __new__(cls, *args: Any, **kwargs: Any) -> VisualSDPOConfig:
        # An unknown option (a former name, a misspelling) names the field it most likely meant.
        known = [field.name for field in dataclasses.fields(cls)]
        for name in kwargs:
            if name not in known:
                close = (
                    [RENAMED_FIELDS[name]]
                    if name in RENAMED_FIELDS
                    else difflib.get_close_matches(name, known, n=1)
                )
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TypeError(f"VisualSDPOConfig: unknown option {name!r}{hint}")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        if not self.sd_weight >= 0:
            raise ValueError(f"VisualSDPOConfig.sd_weight: expected >= 0, got {self.sd_weight!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"VisualSDPOConfig.beta: expected a float in [0, 1], got {self.beta!r}")
        if not self.credit_alpha >= 0:
            raise ValueError(f"VisualSDPOConfig.credit_alpha: expected >= 0, got {self.credit_alpha!r}")
        if self.credit_reduce not in ("max", "sum"):
            raise ValueError(
                f"VisualSDPOConfig.credit_reduce: expected 'max' or 'sum', got {self.credit_reduce!r}"
            )
        if self.kind not in ARTIFACT_KINDS:
            raise ValueError(f"VisualSDPOConfig.kind: expected one of {ARTIFACT_KINDS}, got {self.kind!r}")
        if self.feedback not in FEEDBACK_MODES:
            raise ValueError(
                f"VisualSDPOConfig.feedback: expected one of {FEEDBACK_MODES}, got {self.feedback!r}"
            )
        if self.render_workers < 1:
            raise ValueError(f"VisualSDPOConfig.render_workers: expected >= 1, got {self.render_workers!r}")
        if self.loss_impl not in IMPLS:
            raise ValueError(f"VisualSDPOConfig.loss_impl: expected one of {IMPLS}, got {self.loss_impl!r}")

    @property
    def distills(self) -> bool:
        return self.sd_weight > 0


@dataclass(frozen=True)
class CompletionFeedback:
    """What ``_calculate_rewards`` hands to ``_generate_and_score_completions``: the teacher's prompt,
    the credit and the system fault of each completion, with the completions it was made for, so that a
    hand-off that does not belong to the batch (TRL calling its hooks in another order) is an error, not
    feedback on the wrong completions."""

    completion_ids: tuple[tuple[int, ...], ...]
    teacher_prompts: tuple[Any, ...]
    credit: tuple[tuple[float, ...], ...]
    system_fault: tuple[bool, ...]

    def check(self, completion_ids: torch.Tensor) -> None:
        """Raise unless ``completion_ids`` (the batch's, right-padded) are the completions it was made for."""
        rows = completion_ids.tolist()
        if len(rows) != len(self.completion_ids) or any(
            row[: len(ids)] != list(ids) for row, ids in zip(rows, self.completion_ids, strict=True)
        ):
            raise RuntimeError(
                f"VisualSDPOTrainer: the teacher's feedback was made for other completions "
                f"({len(self.completion_ids)} completions) than the batch's ({len(rows)}); TRL called "
                "_calculate_rewards out of the order this trainer expects"
            )


class VisualSDPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with the fused SDPO + GRPO loss and the Visual-SDPO teacher pass.

    Takes ``GRPOTrainer``'s arguments, plus ``sdpo``: a ``VisualSDPOConfig`` or a dict of its fields
    (default: distillation on, chart programs).
    """

    def __init__(self, *args: Any, sdpo: VisualSDPOConfig | dict | None = None, **kwargs: Any):
        self.sdpo = VisualSDPOConfig(**sdpo) if isinstance(sdpo, dict) else (sdpo or VisualSDPOConfig())
        if len(args) <= PROCESSING_CLASS_POSITION and kwargs.get("processing_class") is None:
            kwargs["processing_class"] = _processor_without_torchvision(
                kwargs.get("model", args[0] if args else None)
            )
        super().__init__(*args, **kwargs)
        unsupported = self.unsupported_options()
        if unsupported and self.sdpo.distills:
            raise ValueError(
                f"VisualSDPOTrainer: the fused loss does not express {', '.join(unsupported)}; "
                "change these GRPOConfig options, or set sdpo.sd_weight=0 to train with TRL's own loss"
            )
        if unsupported:
            log.warning("VisualSDPOTrainer: TRL's own loss is used, for %s", ", ".join(unsupported))
        self._fused = not unsupported
        # TRL's default KL weighs each token's penalty by its importance ratio (a live gradient), which
        # the kernel's KL does not; that variant is added beside the kernel's loss (_ratio_weighted_kl).
        self._ratio_weighted_kl = self.beta != 0.0 and bool(
            getattr(self.args, "use_bias_correction_kl", False)
        )
        self._loss_config = SDPOLossConfig(
            beta=self.sdpo.beta,
            temperature=self.temperature,
            sd_weight=self.sdpo.sd_weight,
            pg_weight=1.0,
            epsilon_low=self.epsilon_low,
            epsilon_high=self.epsilon_high,
            kl_beta=0.0 if self._ratio_weighted_kl else self.beta,
            loss_type=self.loss_type if self._fused else "dapo",
            max_completion_length=self.max_completion_length,
        )
        self._feedback: CompletionFeedback | None = None  # from _calculate_rewards to the batch
        self._render_pool: RenderPool | None = None

    def unsupported_options(self) -> list[str]:
        """The options of this trainer and model that the fused loss cannot reproduce."""
        args, model = self.args, self._unwrapped_model()
        text_config = model.config.get_text_config()
        scaled = [name for name in LOGIT_SCALES if getattr(text_config, name, None) not in (None, 1, 1.0)]
        checks = [
            (self.loss_type not in LOSS_TYPES, f"loss_type={self.loss_type!r}"),
            (self.importance_sampling_level != "token", "importance_sampling_level='sequence'"),
            (getattr(args, "delta", None) is not None, f"delta={getattr(args, 'delta', None)!r}"),
            (self.top_entropy_quantile < 1.0, f"top_entropy_quantile={self.top_entropy_quantile!r}"),
            (self.off_policy_mask_threshold is not None, "off_policy_mask_threshold"),
            (bool(getattr(self, "_entropy_bonus_enabled", False)), "an entropy bonus (entropy_coef)"),
            (bool(self.aux_loss_enabled), "the router loss of a mixture-of-experts model"),
            (getattr(model.get_output_embeddings(), "bias", None) is not None, "an lm_head with a bias"),
            (bool(scaled), f"scaled or capped logits ({', '.join(scaled)})"),
            (model.get_decoder() is model, "a model without a decoder module (get_decoder)"),
        ]
        return [name for hit, name in checks if hit]

    # Scoring: TRL's rewards, then the render, the teacher's feedback and the credit of every completion.

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.sdpo.distills:
            self._feedback = self._render_feedback(inputs, prompts, completion_ids_list)
        return rewards

    def _render_feedback(self, inputs, prompts, completion_ids_list) -> CompletionFeedback:
        """Each completion decoded with its token spans (vsdpo.feedback.spans), its program rendered
        (vsdpo.feedback.rendering), and its feedback and credit built (vsdpo.feedback.builder): the seam
        vsdpo.train goes through too."""
        decoded = [decode_with_spans(self._tokenizer, list(ids)) for ids in completion_ids_list]
        programs = [extract_code(text).code for text, _ in decoded]
        kinds = [row.get("kind") or self.sdpo.kind for row in inputs]
        pool = self._renders()
        results = self._reused_renders(programs, kinds)
        missing = [i for i, result in enumerate(results) if result is None]
        rendered = pool.render([programs[i] for i in missing], [kinds[i] for i in missing])
        for i, result in zip(missing, rendered, strict=True):
            results[i] = result
        reused = torch.tensor([1.0 - len(missing) / max(1, len(programs))], device=self.accelerator.device)
        self._metrics[self._mode()]["sdpo/renders_reused"].append(
            self.accelerator.gather(reused).mean().item()
        )
        references = [row.get("reference") for row in inputs]
        found = pool.map(
            lambda job: self._differences(*job), zip(results, programs, references, kinds, strict=True)
        )

        options = self._feedback_options()
        teacher_prompts, credit = [], []
        rows = zip(prompts, programs, decoded, results, found, strict=True)
        for prompt, program, (text, spans), result, differences in rows:
            with_image = options.with_image and not isinstance(prompt, str)
            feedback = build_feedback(
                result,
                program,
                text,
                spans,
                differences=differences,
                options=dataclasses.replace(options, with_image=with_image),
            )
            # A left-out completion (a fault of the system) is masked out of the loss: no feedback.
            teacher_prompts.append(
                prompt if feedback.left_out else prompt_with_feedback(prompt, feedback.context)
            )
            credit.append(feedback.credit)
        ran = torch.tensor([float(result.ok) for result in results], device=self.accelerator.device)
        self._metrics[self._mode()]["sdpo/execution_rate"].append(self.accelerator.gather(ran).mean().item())
        system_faults = [result.fault == "system" for result in results]
        faults = torch.tensor([float(fault) for fault in system_faults], device=self.accelerator.device)
        self._metrics[self._mode()]["sdpo/system_faults"].append(self.accelerator.gather(faults).sum().item())
        return CompletionFeedback(
            completion_ids=tuple(tuple(int(token) for token in ids) for ids in completion_ids_list),
            teacher_prompts=tuple(teacher_prompts),
            credit=tuple(credit),
            system_fault=tuple(system_faults),
        )

    def _reused_renders(self, programs: list[str], kinds: list[str]) -> list:
        """Per completion, the render a ``VisualReward`` among the reward functions made of the same
        program in this batch (with the trainer's timeout, and the ChartMimic trace where the
        differences need it), or None: each program is rendered once, for the reward and the feedback."""
        rewards = [f for f in self.reward_funcs if isinstance(f, VisualReward)]
        chartmimic = self.sdpo.feedback == "compare"
        results = []
        for program, kind in zip(programs, kinds, strict=True):
            found = None
            for reward in rewards:
                found = reward.rendered(program, kind, self.sdpo.render_timeout_s, chartmimic=chartmimic)
                if found is not None:
                    break
            results.append(found)
        return results

    def _feedback_options(self) -> FeedbackOptions:
        """``sdpo``'s options of the feedback and the credit, as vsdpo.feedback.builder takes them."""
        return FeedbackOptions(
            feedback=self.sdpo.feedback,
            with_image=self._is_vlm and self.sdpo.teacher_image,
            max_defects=self.sdpo.max_defects,
            credit_alpha=self.sdpo.credit_alpha,
            credit_reduce=self.sdpo.credit_reduce,
        )

    def _differences(self, result, program: str, reference: str | None, kind: str):
        """How the render differs from the row's reference (vsdpo.feedback.differences); None without a
        comparison (``sdpo.feedback="defects"``, no reference, or a program that failed)."""
        if self.sdpo.feedback != "compare" or not reference or not result.ok:
            return None
        reward = VisualReward(kind=kind, timeout_s=self.sdpo.render_timeout_s)
        try:
            return reward.assess(result, program, reference, kind).differences
        except Exception as error:  # noqa: BLE001 - a failed comparison leaves the feedback without it
            log.warning(
                "VisualSDPOTrainer: comparison with the reference failed: %s: %s", type(error).__name__, error
            )
            return None

    def _renders(self) -> RenderPool:
        """The trainer's render pool (vsdpo.feedback.rendering), kept for its life: the sandbox's worker
        processes end with the thread that started them."""
        if self._render_pool is None:
            self._render_pool = RenderPool(
                self.sdpo.render_workers,
                self.sdpo.render_timeout_s,
                record_chartmimic=self.sdpo.feedback == "compare",  # the differences need the trace
            )
        return self._render_pool

    def _generate_and_score_completions(self, inputs):
        self._feedback = None
        batch = super()._generate_and_score_completions(inputs)
        feedback, self._feedback = self._feedback, None
        if not self.sdpo.distills:
            return batch
        if feedback is None:
            raise RuntimeError(
                "VisualSDPOTrainer: GRPOTrainer._generate_and_score_completions returned without calling "
                "_calculate_rewards, where the teacher's feedback is made; this TRL version orders its hooks "
                "otherwise (the trl extra of vsdpo names the versions it supports)"
            )
        feedback.check(batch["completion_ids"])
        width = batch["completion_ids"].size(1)
        credit = torch.ones(len(feedback.credit), width)
        for row, weights in enumerate(feedback.credit):
            weights = weights[:width]
            credit[row, : len(weights)] = torch.tensor(weights)
        batch["credit"] = credit.to(batch["completion_ids"].device)
        batch["teacher_prompt"] = list(feedback.teacher_prompts)
        # A render that failed by a fault of the system says nothing of the completion: it is left out of
        # both terms (its reward is None, so TRL already left it out of its group's baseline).
        faulted = torch.tensor(feedback.system_fault, device=batch["completion_mask"].device)
        if faulted.any():
            batch["completion_mask"] = batch["completion_mask"] * ~faulted[:, None]
            batch["credit"][faulted] = 0.0
        return batch

    # The loss.

    def _compute_loss(self, model, inputs):
        if not self._fused:
            return super()._compute_loss(model, inputs)
        mode = self._mode()
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        mask = mask.bool()
        width = completion_ids.size(1)
        student_hidden = self._completion_hidden(
            model,
            torch.cat([inputs["prompt_ids"], completion_ids], dim=1),
            torch.cat([inputs["prompt_mask"], completion_mask], dim=1),
            width,
            {key: inputs[key] for key in MODEL_INPUT_KEYS if inputs.get(key) is not None},
        )
        weight = self._output_weight()
        teacher_hidden = credit = None
        if self.sdpo.distills:
            with (
                torch.no_grad(),
                disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            ):
                teacher_hidden = self._teacher_hidden(model, inputs).to(weight.dtype)
            credit = inputs["credit"]

        advantages = inputs["advantages"]
        advantages = advantages[:, None] if advantages.dim() == 1 else advantages
        policy_advantages = advantages
        if self.use_vllm and self.vllm_importance_sampling_correction:
            # TRL scales the clipped policy term by the sampling ratio w >= 0; scaling the advantage by w
            # is the same term, since min(w*a, w*b) = w*min(a, b).
            policy_advantages = advantages * inputs["importance_sampling_ratio"]
        num_items = None
        if self.loss_type == "dapo":  # TRL's dapo normaliser: the tokens of one accumulation window
            num_items = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                num_items = (
                    num_items * self.current_gradient_accumulation_steps / self.args.steps_per_generation
                )
        out = fused_linear_sdpo_loss(
            student_hidden.to(weight.dtype),
            weight,
            completion_ids,
            teacher_hidden=teacher_hidden,
            advantages=torch.broadcast_to(policy_advantages, mask.shape).contiguous(),
            old_logprobs=inputs.get("old_per_token_logps"),
            ref_logprobs=inputs.get("ref_per_token_logps") if self._loss_config.kl_beta else None,
            credit=credit,
            mask=mask,
            num_items_in_batch=num_items,
            config=self._loss_config,
            impl=self.sdpo.loss_impl,
        )
        loss = out.loss
        kl = None
        if self._ratio_weighted_kl:
            kl = self._ratio_weighted_kl_term(student_hidden.to(weight.dtype), weight, inputs, mask)
            loss = loss + self.beta * self._aggregate(kl, mask, num_items)
        if self.loss_type != "dapo" and mode == "train":  # dapo's normaliser already spans the window
            loss = loss / self.current_gradient_accumulation_steps
        self._log_loss_metrics(mode, out, inputs, mask, advantages, kl)
        return loss

    def _ratio_weighted_kl_term(self, hidden, weight, inputs, mask) -> torch.Tensor:
        """Per token ``r * (exp(ref - logp) - (ref - logp) - 1)`` with ``r = exp(logp - old)``, as TRL's
        ``use_bias_correction_kl``; ``logp`` comes from ``linear_logprobs``, again without logits."""
        logp, _ = linear_logprobs(
            hidden, weight, inputs["completion_ids"], temperature=self.temperature, impl=self.sdpo.loss_impl
        )
        old = inputs.get("old_per_token_logps")
        ratio = torch.exp(logp - (logp.detach() if old is None else old))
        gap = inputs["ref_per_token_logps"] - logp
        return ratio * (torch.exp(gap) - gap - 1) * mask

    def _aggregate(self, per_token: torch.Tensor, mask: torch.Tensor, num_items) -> torch.Tensor:
        """A per-token term reduced as the kernel and TRL reduce ``loss_type``'s terms."""
        if self.loss_type == "grpo":
            return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
        total = (per_token * mask).sum()
        if self.loss_type == "bnpo":
            return total / mask.sum().clamp(min=1)
        if self.loss_type == "dr_grpo":
            return total / (mask.size(0) * self.max_completion_length)
        return total / num_items

    def _completion_hidden(self, model, input_ids, attention_mask, width: int, model_inputs: dict):
        """Final hidden states at the positions that predict the last ``width`` tokens: [B, width, D].

        The model runs through its (possibly wrapped) forward, so that data-parallel and sharding
        wrappers see the call; a hook on its decoder keeps the decoder's output, and the lm_head
        projects only the last position.
        """
        captured = []
        hook = (
            self._unwrapped_model()
            .get_decoder()
            .register_forward_hook(lambda module, args, output: captured.append(output))
        )
        try:
            with self.accelerator.autocast():
                model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    logits_to_keep=1,
                    use_cache=False,
                    **model_inputs,
                )
        finally:
            hook.remove()
        output = captured[-1]
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        return hidden[:, -width - 1 : -1]

    def _teacher_hidden(self, model, inputs) -> torch.Tensor:
        """The teacher's final hidden states over the completion tokens, after prompt ⊕ feedback."""
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        encoded = self._encode_prompts(inputs["teacher_prompt"])
        input_ids = torch.cat([encoded.pop("input_ids"), completion_ids], dim=1)
        attention_mask = torch.cat([encoded.pop("attention_mask"), completion_mask], dim=1)
        for key in PER_TOKEN_KEYS:
            if key in encoded:  # the completion's tokens are text
                encoded[key] = torch.cat([encoded[key], torch.zeros_like(completion_ids)], dim=1)
        model_inputs = {key: value for key, value in encoded.items() if key in MODEL_INPUT_KEYS}
        return self._completion_hidden(model, input_ids, attention_mask, completion_ids.size(1), model_inputs)

    def _encode_prompts(self, prompts: list) -> dict[str, torch.Tensor]:
        """Token ids (left-padded, as TRL pads prompts) and image inputs of prompts in TRL's format."""
        if is_conversational({"prompt": prompts[0]}):
            texts = [
                self.processing_class.apply_chat_template(
                    prompt,
                    chat_template=self.chat_template,
                    tools=self.tools or None,
                    add_generation_prompt=True,
                    tokenize=False,
                    **self.chat_template_kwargs,
                )
                for prompt in prompts
            ]
            images = [part["image"] for prompt in prompts for part in _parts(prompt) if "image" in part]
            extra = {"add_special_tokens": False, **({"images": images} if images else {})}
        else:
            texts, extra = prompts, {}
        with _left_padding(self._tokenizer):
            encoded = self.processing_class(text=texts, padding=True, return_tensors="pt", **extra)
        device = self.accelerator.device
        return {key: value.to(device) for key, value in encoded.items() if isinstance(value, torch.Tensor)}

    def _output_weight(self) -> torch.Tensor:
        weight = self._unwrapped_model().get_output_embeddings().weight
        return weight.full_tensor() if hasattr(weight, "full_tensor") else weight  # FSDP2 shards it

    def _unwrapped_model(self):
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _mode(self) -> str:
        return "train" if self.model.training else "eval"

    # Metrics: TRL's names for TRL's quantities, "sdpo/" for ours.

    def _log_loss_metrics(self, mode: str, out, inputs, mask, advantages, kl=None) -> None:
        metrics = self._metrics[mode]
        logprobs = out.logprobs
        if kl is not None:
            metrics["kl"].append(self._masked_mean(kl.detach(), mask))
        elif self.beta != 0.0:
            gap = inputs["ref_per_token_logps"] - logprobs
            metrics["kl"].append(self._masked_mean(torch.exp(gap) - gap - 1, mask))
        metrics["entropy"].append(self._masked_mean(out.entropy, mask))
        old = inputs.get("old_per_token_logps")
        ratio = torch.exp(logprobs - old) if old is not None else torch.ones_like(logprobs)
        clipped_low = (ratio < 1 - self.epsilon_low) & (advantages < 0)
        clipped_high = (ratio > 1 + self.epsilon_high) & (advantages > 0)
        for name, clipped in (
            ("low", clipped_low),
            ("high", clipped_high),
            ("region", clipped_low | clipped_high),
        ):
            metrics[f"clip_ratio/{name}_mean"].append(self._masked_mean(clipped.float(), mask))
        per_sequence = lambda clipped: (clipped.float() * mask).sum(-1) / mask.sum(-1)
        metrics["clip_ratio/low_min"].append(
            nanmin(self.accelerator.gather(per_sequence(clipped_low))).item()
        )
        metrics["clip_ratio/high_max"].append(
            nanmax(self.accelerator.gather(per_sequence(clipped_high))).item()
        )
        metrics["sdpo/pg_loss"].append(self.accelerator.gather(out.pg_loss).mean().item())
        if self.sdpo.distills:
            metrics["sdpo/sd_loss"].append(self.accelerator.gather(out.sd_loss).mean().item())
            metrics["sdpo/divergence"].append(self._masked_mean(out.divergence, mask))
            metrics["sdpo/credited_tokens"].append(self._masked_mean((inputs["credit"] > 1).float(), mask))

    def _masked_mean(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        """Mean of ``values`` over the unmasked tokens of every process."""
        totals = torch.stack([(values.float() * mask).sum(), mask.sum().float()])
        totals = self.accelerator.reduce(totals, reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()


def _processor_without_torchvision(model) -> Any:
    """The processor of a vision-language checkpoint ``model`` (a folder or hub id) less its video part,
    where torchvision is missing; None (TRL's own ``AutoProcessor`` loading) everywhere else.

    transformers builds a Qwen3-VL processor's video part only with torchvision, which cannot sit
    beside the CPU build of torch, so TRL's loading stops there although images and text need none;
    ``vsdpo.train.model.load_processor`` loads the same processor without it, padded and truncated on
    the left as TRL loads its own."""
    from transformers import AutoConfig
    from transformers.utils import is_torchvision_available

    if not isinstance(model, str) or is_torchvision_available():
        return None
    try:
        model_config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError):
        return None  # TRL's own loading reports it
    from vsdpo.train.model import load_processor, reads_images

    if not reads_images(model_config):
        return None
    processor = load_processor(model, model_config)
    processor.tokenizer.padding_side = processor.tokenizer.truncation_side = "left"
    return processor


def prompt_with_feedback(prompt, context) -> Any:
    """The teacher's prompt: a TRL prompt with the feedback appended to its last user turn.

    ``prompt`` is plain text or a conversation (a list of messages); the feedback's image placeholder
    becomes an image part of the message, which the model's own chat template renders.
    """
    if isinstance(prompt, str):
        return prompt + context.text.replace(IMAGE_PLACEHOLDER, "")
    messages = list(prompt)
    users = [index for index, message in enumerate(messages) if message["role"] == "user"]
    if not users:
        return [*messages, {"role": "user", "content": _feedback_parts(context)}]
    index = users[-1]
    content = messages[index]["content"]
    if isinstance(content, str) and not context.images:
        content = content + context.text
    else:
        content = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        content += _feedback_parts(context)
    messages[index] = {**messages[index], "content": content}
    return messages


def _feedback_parts(context) -> list[dict]:
    """The feedback as message parts: its text, with an image part where each placeholder stood."""
    pieces = context.text.split(IMAGE_PLACEHOLDER)
    parts = []
    for index, piece in enumerate(pieces):
        if index > 0:
            parts.append({"type": "image", "image": context.images[index - 1]})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def _parts(messages: list[dict]) -> list[dict]:
    """The content parts of a conversation's messages, in order (string contents have none)."""
    return [
        part
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    ]


@contextmanager
def _left_padding(tokenizer):
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = side
