"""The group batch: one prompt's G rollouts as the model and the loss read them.

``build_group`` tokenizes the prompt (with its target image), the sampled responses and, when
distillation is on, each rollout's teacher context (vsdpo.feedback.teacher_context) into a
``vsdpo.sharing.RolloutGroup``. ``GroupBatch.build`` then lays the per-token tensors the loss needs
— sampled ids, behaviour log-probs, the response mask with crashed rollouts masked out, the token
credit (vsdpo.feedback.credit) and the advantages — on the width of the hidden states.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from vsdpo.feedback.teacher_context import told_differences
from vsdpo.sharing import RolloutGroup
from vsdpo.train.generate import Rollout
from vsdpo_kernels import LossInputs

if TYPE_CHECKING:
    from PIL import Image

    from vsdpo.train.config import TrainConfig
    from vsdpo.train.model import Processor


def build_group(
    processor: Processor,
    rollouts: list[Rollout],
    target_image: Image.Image | None,
    config: TrainConfig,
    with_feedback: bool,
) -> RolloutGroup:
    """The ``RolloutGroup`` of one prompt: prompt (and target image), the sampled response ids, and
    each rollout's teacher context when ``with_feedback``."""
    task = rollouts[0].task
    show_target = config.data.prompt_image and target_image is not None
    feedbacks, feedback_images = None, None
    if with_feedback:
        # A left-out rollout (its render crashed or its reward failed): its teacher is told nothing.
        contexts = [r.teacher_context(config) for r in rollouts]  # vsdpo.feedback.builder
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


def padded(rows: Sequence[Sequence[Any]], width: int, fill: float, dtype: torch.dtype) -> torch.Tensor:
    """Rows of unequal length as one [len(rows), width] tensor, cut or filled with ``fill``."""
    out = torch.full((len(rows), width), fill, dtype=dtype)
    for index, row in enumerate(rows):
        row = torch.as_tensor(row, dtype=dtype)[:width]
        out[index, : len(row)] = row
    return out


@dataclass(frozen=True, eq=False)
class GroupBatch:
    """The loss's inputs of one group but the student's hidden states and the output layer's weight
    (``loss_inputs`` takes them), on the hidden states' width and device. The update makes a new one
    (``dataclasses.replace``) to add what the step's first iteration fixed."""

    targets: torch.Tensor  # [G, T] sampled ids
    behaviour_logprobs: torch.Tensor  # [G, T] generate's log-probs
    mask: torch.Tensor  # [G, T] response tokens of rollouts that rendered and scored
    valid: torch.Tensor  # [G] rollouts that rendered and scored
    credit: torch.Tensor | None = None  # [G, T] visual-grounded credit (vsdpo only)
    advantages: torch.Tensor | None = None  # [G] group-normalised advantages (when the policy term is on)
    teacher_hidden: torch.Tensor | None = None  # [G, T, D] (when distilling)
    old_logprobs: torch.Tensor | None = None  # [G, T] the ratio's denominator; None: ratio 1
    ref_logprobs: torch.Tensor | None = None  # [G, T] the initial policy's (the KL penalty)
    num_items_in_batch: float | None = None  # dapo: the step's response tokens over all ranks

    @classmethod
    def build(
        cls, rollouts: list[Rollout], response_mask: torch.Tensor, config: TrainConfig, **terms: Any
    ) -> GroupBatch:
        """The per-token tensors of ``rollouts``; ``terms`` sets the fields the update computes itself
        (teacher_hidden, ref_logprobs, num_items_in_batch)."""
        width, device = response_mask.shape[1], response_mask.device
        valid = torch.tensor([not r.left_out for r in rollouts], device=device)
        credit = None
        if config.algorithm.weighs_distillation:
            credit = credit_matrix(rollouts, width, config).to(device)
        advantages = None
        if config.algorithm.loss.pg_weight > 0:
            advantages = torch.tensor([r.advantage for r in rollouts], device=device)
        behaviour = padded([r.behaviour_logprobs for r in rollouts], width, 0.0, torch.float32).to(device)
        return cls(
            targets=padded([r.response_ids for r in rollouts], width, 0, torch.long).to(device),
            behaviour_logprobs=behaviour,
            mask=response_mask & valid[:, None],
            valid=valid,
            credit=credit,
            advantages=advantages,
            # Rollouts of a policy one update behind are weighed against the policy that sampled them.
            old_logprobs=behaviour
            if config.algorithm.old_logprobs == "behaviour" or config.rollout.max_lag
            else None,
            **terms,
        )

    def loss_inputs(self, student_hidden: torch.Tensor, weight: torch.Tensor) -> LossInputs:
        """The loss's inputs: these tensors with the student's hidden states and the output layer's
        weight (``vsdpo.train.loss.LossHead.weight``)."""
        return LossInputs(
            student_hidden,
            weight,
            self.targets,
            teacher_hidden=self.teacher_hidden,
            advantages=self.advantages,
            old_logprobs=self.old_logprobs,
            ref_logprobs=self.ref_logprobs,
            credit=self.credit,
            mask=self.mask,
            num_items_in_batch=self.num_items_in_batch,
        )


def distilled(rollout: Rollout, config: TrainConfig) -> bool:
    """Whether ``algorithm.distill_on`` distils this rollout: ``failed``, a program that did not run;
    ``flawed``, that or a render with a defect or a difference from the target (its feedback says what
    went wrong); ``all``, any."""
    render, distill_on = rollout.render, config.algorithm.distill_on
    failed = render is None or not render.ok
    differs = bool(told_differences(rollout.differences, config.algorithm.feedback))
    return distill_on == "all" or failed or (distill_on == "flawed" and (bool(render.defects) or differs))


def credit_matrix(rollouts: list[Rollout], width: int, config: TrainConfig) -> torch.Tensor:
    """Each rollout's distillation weights, padded with 1: vsdpo's token credit (1 + alpha * severity
    on the tokens behind a defect), else 1; 0 on every token of a rollout that
    ``algorithm.distill_on`` leaves out."""
    rows = []
    for r in rollouts:
        if not distilled(r, config):
            rows.append([0.0] * len(r.response_ids))
        else:  # vsdpo's credit, or 1 everywhere (sdpo); 0 where it is left out (vsdpo.feedback.builder)
            rows.append(list(r.credit(config)))
    return padded(rows, width, 1.0, torch.float32)
