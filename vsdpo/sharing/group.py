"""One prompt and its G rollouts, as token ids and image patches: what the shared passes take in.

A ``RolloutGroup`` is checked when it is made, so that a wrong shape or a missing entry is reported
with the argument's name rather than deep inside a model's forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vsdpo.sharing.build import group_fields

__all__ = ["RolloutGroup"]


@dataclass(kw_only=True)
class RolloutGroup:
    """One prompt and its G rollouts, as token ids (and image patches) ready for the model.

    - ``prompt_ids`` [P]: the shared prompt, with the image placeholder tokens of its images.
    - ``prompt_pixel_values`` [patches, C*T*p*p] and ``prompt_image_grid_thw`` [images, 3]: the
      prompt's images as the model's image processor makes them (absent for text-only prompts).
    - ``response_ids``: G 1-D tensors, the sampled responses (unequal lengths allowed).
    - ``feedback_ids``: G entries, each a 1-D tensor (the teacher's privileged context, with its
      image placeholders) or None (no feedback for that rollout); None for the whole list means none.
    - ``feedback_pixel_values`` / ``feedback_image_grid_thw``: G entries each, the feedback's images
      (None where a feedback has no image).
    - ``generation_prompt_ids``: tokens that open the model's answer (a chat template's assistant
      header), placed after the feedback and before the response, in both student and teacher
      sequences; their hidden states are not returned. None when the prompt already ends with them
      and there is no feedback turn to put in between.
    """

    prompt_ids: Tensor
    prompt_pixel_values: Tensor | None = None
    prompt_image_grid_thw: Tensor | None = None
    response_ids: list[Tensor]
    feedback_ids: list[Tensor | None] | None = None
    feedback_pixel_values: list[Tensor | None] | None = None
    feedback_image_grid_thw: list[Tensor | None] | None = None
    generation_prompt_ids: Tensor | None = None

    @classmethod
    def from_text(cls, processor_or_tokenizer, prompt, responses, feedbacks=None, **kwargs) -> RolloutGroup:
        """Tokenize a group from plain text and PIL images; see ``vsdpo.sharing.build.group_fields``."""
        return cls(**group_fields(processor_or_tokenizer, prompt, responses, feedbacks, **kwargs))

    def __post_init__(self) -> None:
        _check_ids("prompt_ids", self.prompt_ids, allow_empty=False)
        if not isinstance(self.response_ids, (list, tuple)) or len(self.response_ids) == 0:
            raise ValueError(
                f"response_ids: expected a non-empty list of 1-D LongTensors, got {self.response_ids!r}"
            )
        self.response_ids = list(self.response_ids)
        for g, response in enumerate(self.response_ids):
            _check_ids(f"response_ids[{g}]", response, allow_empty=True)
        G = len(self.response_ids)
        self.feedback_ids = _per_rollout("feedback_ids", self.feedback_ids, G)
        self.feedback_pixel_values = _per_rollout("feedback_pixel_values", self.feedback_pixel_values, G)
        self.feedback_image_grid_thw = _per_rollout(
            "feedback_image_grid_thw", self.feedback_image_grid_thw, G
        )
        for g, feedback in enumerate(self.feedback_ids):
            if feedback is not None:
                _check_ids(f"feedback_ids[{g}]", feedback, allow_empty=True)
        if self.generation_prompt_ids is None:
            self.generation_prompt_ids = self.prompt_ids.new_zeros(0)
        _check_ids("generation_prompt_ids", self.generation_prompt_ids, allow_empty=True)
        _check_images("prompt", self.prompt_pixel_values, self.prompt_image_grid_thw)
        for g in range(G):
            pixels, grid = self.feedback_pixel_values[g], self.feedback_image_grid_thw[g]
            _check_images(f"feedback[{g}]", pixels, grid)
            if pixels is not None and self.feedback_ids[g] is None:
                raise ValueError(f"feedback_pixel_values[{g}]: given, but feedback_ids[{g}] is None")

    @property
    def num_rollouts(self) -> int:
        return len(self.response_ids)

    @property
    def has_images(self) -> bool:
        return self.prompt_pixel_values is not None or any(p is not None for p in self.feedback_pixel_values)

    def has_feedback(self, g: int) -> bool:
        feedback = self.feedback_ids[g]
        return feedback is not None and feedback.numel() > 0

    def to(self, device: torch.device | str) -> RolloutGroup:
        move = lambda x: None if x is None else x.to(device)
        return RolloutGroup(
            prompt_ids=move(self.prompt_ids),
            prompt_pixel_values=move(self.prompt_pixel_values),
            prompt_image_grid_thw=move(self.prompt_image_grid_thw),
            response_ids=[move(r) for r in self.response_ids],
            feedback_ids=[move(f) for f in self.feedback_ids],
            feedback_pixel_values=[move(p) for p in self.feedback_pixel_values],
            feedback_image_grid_thw=[move(t) for t in self.feedback_image_grid_thw],
            generation_prompt_ids=move(self.generation_prompt_ids),
        )


# ------------------------------------------------------------------------------------------------
# Argument checks


def _check_ids(name: str, ids, allow_empty: bool) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
        got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"{name}: expected a 1-D LongTensor, got {got}")
    if not allow_empty and ids.numel() == 0:
        raise ValueError(f"{name}: expected at least one token, got an empty tensor")


def _per_rollout(name: str, values, G: int) -> list:
    if values is None:
        return [None] * G
    if not isinstance(values, (list, tuple)) or len(values) != G:
        got = f"length {len(values)}" if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"{name}: expected a list of {G} entries (one per response), got {got}")
    return list(values)


def _check_images(where: str, pixel_values: Tensor | None, image_grid_thw: Tensor | None) -> None:
    if (pixel_values is None) != (image_grid_thw is None):
        raise ValueError(
            f"{where}: pixel_values and image_grid_thw go together, got pixel_values "
            f"{'None' if pixel_values is None else tuple(pixel_values.shape)} and image_grid_thw "
            f"{'None' if image_grid_thw is None else tuple(image_grid_thw.shape)}"
        )
    if image_grid_thw is None:
        return
    if image_grid_thw.dim() != 2 or image_grid_thw.shape[1] != 3:
        raise ValueError(f"{where}: image_grid_thw must be [images, 3], got {tuple(image_grid_thw.shape)}")
    patches = int(image_grid_thw.prod(-1).sum())
    if pixel_values.shape[0] != patches:
        raise ValueError(
            f"{where}: pixel_values must hold {patches} patches (the sum of image_grid_thw's t*h*w), "
            f"got {pixel_values.shape[0]}"
        )
