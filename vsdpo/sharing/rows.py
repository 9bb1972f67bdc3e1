"""The continuations of a batch of rollouts: what follows the shared prompt in each sequence."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vsdpo.sharing.group import RolloutGroup


@dataclass
class Rows:
    """The continuations ``context ⊕ response[:-1]`` of some rollouts, right-padded into one batch."""

    continuation_ids: Tensor  # [n, L]
    continuation_valid: Tensor  # [n, L] bool
    context_lengths: Tensor  # [n]
    response_lengths: Tensor  # [n]
    row_pixel_values: list[Tensor | None]  # the context's images, per row
    row_image_grid_thw: list[Tensor | None]

    @classmethod
    def build(cls, group, index, contexts, pixel_values, image_grids, pad_id: int) -> Rows:
        device = group.prompt_ids.device
        sequences = [
            torch.cat([context, group.response_ids[g][:-1]])
            for g, context in zip(index, contexts, strict=True)
        ]
        length = max(s.numel() for s in sequences)
        ids = torch.full((len(sequences), length), pad_id, dtype=torch.long, device=device)
        valid = torch.zeros((len(sequences), length), dtype=torch.bool, device=device)
        for row, sequence in enumerate(sequences):
            ids[row, : sequence.numel()] = sequence
            valid[row, : sequence.numel()] = True
        return cls(
            continuation_ids=ids,
            continuation_valid=valid,
            context_lengths=torch.tensor([c.numel() for c in contexts], device=device),
            response_lengths=torch.tensor([group.response_ids[g].numel() for g in index], device=device),
            row_pixel_values=list(pixel_values),
            row_image_grid_thw=list(image_grids),
        )

    @property
    def num_rows(self) -> int:
        return self.continuation_ids.shape[0]

    def context_images(self) -> tuple[Tensor | None, Tensor | None]:
        """The continuations' images, rows in order, as one batch for the vision tower."""
        return _cat_images(self.row_pixel_values, self.row_image_grid_thw)

    def full_images(self, group: RolloutGroup) -> tuple[Tensor | None, Tensor | None]:
        """The full sequences' images: per row, the prompt's images then the context's."""
        pixels, grids = [], []
        for row_pixels, row_grid in zip(self.row_pixel_values, self.row_image_grid_thw, strict=True):
            pixels += [group.prompt_pixel_values, row_pixels]
            grids += [group.prompt_image_grid_thw, row_grid]
        return _cat_images(pixels, grids)

    def response_mask(self) -> Tensor:
        steps = torch.arange(int(self.response_lengths.max()), device=self.response_lengths.device)
        return steps[None, :] < self.response_lengths[:, None]

    def gather(self, last_prompt_state: Tensor, continuation_states: Tensor | None) -> Tensor:
        """[n, R_max, D]: for response token t, the state at (last prompt token) + context length + t."""
        n = self.num_rows
        states = last_prompt_state.expand(n, -1, -1)
        if continuation_states is not None:
            states = torch.cat([states, continuation_states], dim=1)
        steps = torch.arange(int(self.response_lengths.max()), device=states.device)
        # Padded steps point past the row's end; clamped, they read a state the mask later zeroes.
        index = (self.context_lengths[:, None] + steps[None, :]).clamp(max=states.shape[1] - 1)
        return states.gather(1, index[..., None].expand(-1, -1, states.shape[-1]))


def _cat_images(
    pixels: list[Tensor | None], grids: list[Tensor | None]
) -> tuple[Tensor | None, Tensor | None]:
    pixels = [p for p in pixels if p is not None]
    grids = [t for t in grids if t is not None]
    if not pixels:
        return None, None
    return torch.cat(pixels), torch.cat(grids)
