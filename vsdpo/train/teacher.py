"""The teacher: the same weights given the rollout's feedback (``live``, the paper's weight sharing)
or a moving average of them (``ema``), and the frozen initial policy for the KL penalty. It returns
the student's and the teacher's hidden states of one group, sharing the prompt's KV cache."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import torch

from vsdpo.sharing import RolloutGroup, student_teacher_hidden
from vsdpo.train import checkpoint
from vsdpo.train.timing import null_stage
from vsdpo_kernels import linear_logprobs

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from vsdpo.sharing import StudentTeacherHidden
    from vsdpo.train.config import TrainConfig


class Teacher:
    """``live``: the policy itself; ``ema``: a moving-average copy; plus the reference policy."""

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        rate: float = 0.0,
        reference_model: PreTrainedModel | None = None,
    ):
        self.model, self.rate = model, rate
        self.reference_model = reference_model  # the initial policy, for the KL penalty (kl_beta > 0)

    @classmethod
    def build(cls, policy: PreTrainedModel, config: TrainConfig) -> Teacher:
        algorithm = config.algorithm
        frozen_copy = lambda: copy.deepcopy(policy).requires_grad_(False).eval()
        ema = frozen_copy() if algorithm.teacher == "ema" and algorithm.uses_distillation else None
        reference = frozen_copy() if algorithm.loss.kl_beta > 0 else None
        return cls(ema, algorithm.teacher_ema_rate, reference)

    @property
    def live(self) -> bool:
        return self.model is None

    def update(self, policy: PreTrainedModel) -> None:
        """The EMA teacher's step towards the policy (after each optimiser step)."""
        if self.model is None or self.rate == 0:  # rate 0: the teacher stays the base policy
            return
        with torch.no_grad():
            for ema, param in zip(self.model.parameters(), policy.parameters(), strict=True):
                ema.lerp_(param.detach().to(ema.dtype), self.rate)

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """The EMA teacher's full weights (gathered from every rank's shards under FSDP2: call it on
        every rank), or None for the live teacher."""
        if self.model is None:
            return None
        return checkpoint.full_state_dict(self.model)

    def load_state_dict(self, state: dict[str, torch.Tensor] | None) -> None:
        """Restore what ``state_dict`` saved (each rank takes its shards of the full weights)."""
        if self.model is not None and state is not None:
            checkpoint.load_full_state_dict(self.model, state)

    def hidden(
        self,
        model: PreTrainedModel,
        group: RolloutGroup,
        config: TrainConfig,
        stage: Callable[[str], AbstractContextManager[None]] = null_stage,
    ) -> tuple[StudentTeacherHidden, torch.Tensor | None]:
        """(student hidden states with their mask, teacher hidden states or None) of one group; the
        EMA teacher's own pass is timed as ``stage("teacher")`` (vsdpo.train.timing)."""
        distil, reuse = config.algorithm.uses_distillation, config.algorithm.reuse_prefix
        if self.live:  # one call: the teacher continues the student's prompt cache
            hidden = student_teacher_hidden(model, group, reuse_prefix=reuse)
            return hidden, hidden.teacher_hidden if distil else None
        no_feedback = dataclasses.replace(
            group, feedback_ids=None, feedback_pixel_values=None, feedback_image_grid_thw=None
        )
        hidden = student_teacher_hidden(model, no_feedback, reuse_prefix=reuse)
        if not distil:
            return hidden, None
        with torch.no_grad(), stage("teacher"):
            return hidden, student_teacher_hidden(self.model, group, reuse_prefix=reuse).teacher_hidden

    def reference_logprobs(
        self, group: RolloutGroup, targets: torch.Tensor, config: TrainConfig
    ) -> torch.Tensor:
        """Log-probs of the sampled tokens under the initial policy (for the KL penalty)."""
        reference = self.reference_model
        with torch.no_grad():
            hidden = student_teacher_hidden(
                reference, group, reuse_prefix=config.algorithm.reuse_prefix
            ).student_hidden
            weight = reference.get_output_embeddings().weight
            return linear_logprobs(
                hidden, weight, targets, config.rollout.temperature, impl=config.algorithm.loss_impl
            )[0]
