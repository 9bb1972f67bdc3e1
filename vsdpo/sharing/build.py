"""The fields of a ``RolloutGroup`` from plain text and PIL images (``RolloutGroup.from_text``).

What goes where, with a chat template (the processor's or the tokenizer's)::

    prompt_ids             <|im_start|>user\\n<image placeholders><prompt text>
    feedback_ids[g]        <feedback text g, with one image placeholder per feedback image>
    generation_prompt_ids  <|im_end|>\\n<|im_start|>assistant\\n
    response_ids[g]        <response text g>

The prompt's images open the user's turn (one ``{"type": "image"}`` part each, before the text), the
feedback continues the user's turn after the task text (so it should start with a separator such as
a blank line; ``vsdpo.feedback.teacher_context`` writes it that way), and the template's closing of the turn
and its assistant header become ``generation_prompt_ids``, seen by student and teacher alike. The
template is rendered once with a marker after the prompt text and cut there, so any template that
places the user's text verbatim works.

Without a chat template the pieces are concatenated as they are (``prompt ⊕ feedback ⊕ response``,
the tokenizer's own special tokens added to the prompt only); the prompt text must then already hold
one image placeholder per prompt image. Responses are tokenized as they are: end them with the
end-of-turn text if the rollouts ended with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

_MARKER = "\u2063vsdpo-feedback-goes-here\u2063"


def group_fields(
    processor_or_tokenizer,
    prompt: str,
    responses: Sequence[str],
    feedbacks: Sequence[str | None] | None = None,
    prompt_images: Sequence[Any] | None = None,
    feedback_images: Sequence[Sequence[Any] | None] | None = None,
) -> dict[str, Any]:
    """Tokenize one group into ``RolloutGroup``'s fields; ``feedbacks[g]`` None means rollout g has no
    teacher context."""
    processor = processor_or_tokenizer
    tokenizer = getattr(processor, "tokenizer", processor)
    has_image_processor = getattr(processor, "image_processor", None) is not None
    G = len(responses)
    feedbacks = [None] * G if feedbacks is None else list(feedbacks)
    feedback_images = [None] * G if feedback_images is None else list(feedback_images)
    if len(feedbacks) != G or len(feedback_images) != G:
        raise ValueError(
            f"feedbacks / feedback_images: expected {G} entries (one per response), got "
            f"{len(feedbacks)} and {len(feedback_images)}"
        )
    if (prompt_images or any(feedback_images)) and not has_image_processor:
        raise ValueError(
            f"processor_or_tokenizer: images were given but {type(processor).__name__} has no image_processor"
        )

    chat_template = getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    if chat_template:
        prompt_text, generation_prompt_text = _split_chat_prompt(processor, prompt, len(prompt_images or []))
        add_special_tokens = False  # the template already wrote them
    else:
        prompt_text, generation_prompt_text = prompt, ""
        add_special_tokens = True

    prompt_ids, prompt_pixels, prompt_grid = _encode(
        processor, prompt_text, prompt_images, add_special_tokens
    )
    feedback_ids, feedback_pixels, feedback_grids = [], [], []
    for g, feedback in enumerate(feedbacks):
        if feedback is None:
            if feedback_images[g]:
                raise ValueError(f"feedback_images[{g}]: given, but feedbacks[{g}] is None")
            ids = pixels = grid = None
        else:
            ids, pixels, grid = _encode(processor, feedback, feedback_images[g], False)
        feedback_ids.append(ids)
        feedback_pixels.append(pixels)
        feedback_grids.append(grid)
    return {
        "prompt_ids": prompt_ids,
        "prompt_pixel_values": prompt_pixels,
        "prompt_image_grid_thw": prompt_grid,
        "response_ids": [_tokens(tokenizer, response) for response in responses],
        "feedback_ids": feedback_ids,
        "feedback_pixel_values": feedback_pixels,
        "feedback_image_grid_thw": feedback_grids,
        "generation_prompt_ids": _tokens(tokenizer, generation_prompt_text),
    }


def _split_chat_prompt(processor, prompt: str, num_images: int) -> tuple[str, str]:
    """The rendered user turn up to the end of the prompt text, and the rest (turn end, assistant header)."""
    content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": prompt + _MARKER}]
    messages = [{"role": "user", "content": content}]
    try:
        rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:
        # Text-only tokenizers' templates often take the content as one string.
        if num_images:
            raise
        messages = [{"role": "user", "content": prompt + _MARKER}]
        rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if isinstance(rendered, list):
        rendered = rendered[0]
    if rendered.count(_MARKER) != 1:
        raise ValueError(
            "processor_or_tokenizer: its chat template does not place the user's text verbatim, so the "
            "prompt cannot be cut where the feedback goes; build the RolloutGroup from token ids instead"
        )
    before, after = rendered.split(_MARKER)
    return before, after


def _encode(processor, text: str, images, add_special_tokens: bool):
    """Token ids of ``text`` (image placeholders expanded) and its images' patches and grids."""
    if images:
        batch = processor(
            text=[text], images=list(images), add_special_tokens=add_special_tokens, return_tensors="pt"
        )
        return batch["input_ids"][0].long(), batch["pixel_values"], batch["image_grid_thw"].long()
    tokenizer = getattr(processor, "tokenizer", processor)
    return _tokens(tokenizer, text, add_special_tokens), None, None


def _tokens(tokenizer, text: str, add_special_tokens: bool = False) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"] if text else []
    return torch.tensor(ids, dtype=torch.long)
