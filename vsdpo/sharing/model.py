"""The model side of the shared passes: the base model's forward, the full sequences' positions, and
the replay-safe caches (see vsdpo.sharing.passes for what they serve)."""

from __future__ import annotations

import contextlib
import inspect

import torch
from torch import Tensor
from transformers import DynamicCache

from vsdpo.sharing.group import RolloutGroup
from vsdpo.sharing.rows import Rows


class Backbone:
    """The base model under a causal LM or VLM head, with what the passes need to drive it."""

    def __init__(self, model) -> None:
        base = getattr(model, "base_model", model)
        self.module = base
        self.config = base.config
        self.cache_keyword = cache_keyword(base)
        self.device = next(base.parameters()).device
        self.is_vlm = hasattr(base, "get_rope_index") and hasattr(base, "visual")
        config = self.config
        self.image_token_id = getattr(config, "image_token_id", None)
        self.video_token_id = getattr(config, "video_token_id", None)
        multimodal_ids = {
            getattr(config, name, None)
            for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        }
        pad_id = getattr(config.get_text_config(), "pad_token_id", None)
        # Padding is masked out, but a placeholder id would be counted as an image slot.
        self.pad_id = pad_id if pad_id is not None and pad_id not in multimodal_ids else 0
        if self.pad_id in multimodal_ids:
            self.pad_id = next(i for i in range(len(multimodal_ids) + 1) if i not in multimodal_ids)

    def forward(
        self,
        input_ids: Tensor,
        *,
        position_ids: Tensor | None,
        attention_mask: Tensor,
        cache,
        pixel_values: Tensor | None,
        image_grid_thw: Tensor | None,
    ) -> Tensor:
        kwargs = {}
        if self.is_vlm:
            kwargs = {"pixel_values": pixel_values, "image_grid_thw": image_grid_thw}
            if position_ids is None and image_grid_thw is not None:
                kwargs["mm_token_type_ids"] = self.mm_token_type_ids(input_ids)
        out = self.module(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            **{self.cache_keyword: cache},
            **kwargs,
        )
        return out.last_hidden_state

    def prefix(self, group: RolloutGroup, positions: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """The prompt's final hidden states [1, P, D] and its per-layer (keys, values), with gradient."""
        cache = PromptRecorder(config=self.config)
        prompt_ids = group.prompt_ids[None]
        states = self.forward(
            prompt_ids,
            position_ids=positions,
            attention_mask=torch.ones_like(prompt_ids),
            cache=cache,
            pixel_values=group.prompt_pixel_values,
            image_grid_thw=group.prompt_image_grid_thw,
        )
        if any(getattr(layer, "is_sliding", False) for layer in cache.layers):
            raise NotImplementedError(
                f"model: {type(self.module).__name__} has sliding-window layers, whose cache drops old "
                "tokens; use reuse_prefix=False"
            )
        return states, [cache.recorded[index] for index in range(len(cache.recorded))]

    @contextlib.contextmanager
    def keeping_caches_under_checkpointing(self):
        """Let checkpointed decoder layers keep the (replay-safe) caches of this module for a while."""
        layers = [m for m in self.module.modules() if hasattr(type(m), "_can_checkpoint_with_cache")]
        for layer in layers:
            if getattr(layer, "gradient_checkpointing", False) and layer.training:
                checkpoint = getattr(layer, "_gradient_checkpointing_func", None)
                if getattr(checkpoint, "keywords", {}).get("use_reentrant", False):
                    raise ValueError(
                        f"model: {type(layer).__name__} runs under reentrant gradient checkpointing, which "
                        "would cut the shared prompt off its gradient; enable it with "
                        "gradient_checkpointing_kwargs={'use_reentrant': False} or pass reuse_prefix=False"
                    )
        for layer in layers:
            layer._can_checkpoint_with_cache = True
        try:
            yield
        finally:
            for layer in layers:
                del layer._can_checkpoint_with_cache  # back to the class's own setting

    def mm_token_type_ids(self, input_ids: Tensor) -> Tensor:
        types = torch.zeros_like(input_ids, dtype=torch.int)
        types[input_ids == self.image_token_id] = 1
        types[input_ids == self.video_token_id] = 2
        return types

    def positions(self, group: RolloutGroup, rows: Rows) -> Tensor:
        """Position ids of the full sequences ``prompt ⊕ continuation``, to be sliced per pass.

        Text models: [n, P + L]. Vision-language models: [4, n, P + L], the plain text positions then
        the three rotary axes (temporal, height, width) that images bend.
        """
        P = group.prompt_ids.numel()
        n, L = rows.continuation_ids.shape
        text = torch.arange(P + L, device=self.device).expand(n, -1)
        if not self.is_vlm:
            return text
        input_ids = torch.cat([group.prompt_ids.expand(n, -1), rows.continuation_ids], dim=1)
        _, image_grid_thw = rows.full_images(group)
        if image_grid_thw is None:
            rotary = text[None].expand(3, -1, -1)
        else:
            valid = torch.cat([rows.continuation_valid.new_ones(n, P), rows.continuation_valid], dim=1)
            rotary, _ = self.module.get_rope_index(
                input_ids,
                mm_token_type_ids=self.mm_token_type_ids(input_ids),
                image_grid_thw=image_grid_thw,
                attention_mask=valid.long(),
            )
        return torch.cat([text[None], rotary.to(text.dtype)], dim=0)


def cache_keyword(module) -> str:
    """The name under which ``module.forward`` takes its KV cache: ``cache`` in the transformers
    releases that renamed it (``past_key_values`` is deprecated there, and goes in 5.40), else
    ``past_key_values`` (earlier releases, and models not renamed yet)."""
    parameters = inspect.signature(module.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


class PromptRecorder(DynamicCache):
    """Records each layer's prompt keys and values aside and returns them as they are; the cache
    itself stays empty, so a replayed layer records the same tensors again."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.recorded: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.recorded[layer_idx] = (key_states, value_states)
        return key_states, value_states


class ReadOnlyPrompt(DynamicCache):
    """The prompt's keys and values, read but never extended: ``prompt ⊕ new`` out of place."""

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        layer = self.layers[layer_idx]
        return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)
