"""Small random Hugging Face checkpoint folders, written locally, that load the way real ones do.

``make_qwen3_vl_checkpoint(folder)`` writes a ``Qwen3VLForConditionalGeneration`` (two text layers,
hidden size 64, a one-block vision tower) and a ``Qwen3VLProcessor`` (Qwen2 tokenizer with Qwen's
special tokens and a Qwen-style chat template, the image processor, the video processor's settings);
``make_qwen3_checkpoint(folder)`` a text-only ``Qwen3ForCausalLM`` and its tokenizer. Both are
``vsdpo.tiny.save_tiny_checkpoint`` (``vsdpo tiny-model``), with the tokenizer cached in a folder of
the test session's temporary directory rather than the user's cache.

The video processor is transformers' own ``Qwen3VLVideoProcessor``. Without torchvision,
transformers refuses to build or load it (its auto class and the processor's type check go through
torchvision-only placeholders), although it needs torchvision only to process a video; so
``AutoProcessor.from_pretrained(folder)`` raises ImportError there, as for a downloaded Qwen3-VL, and
``load_processor(folder)`` loads the same folder by pointing those two look-ups at the real class
(``vsdpo.tiny.video_processor_accepted``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from vsdpo.tiny import QWEN_CHAT_TEMPLATE, save_tiny_checkpoint, video_processor_accepted

__all__ = ["QWEN_CHAT_TEMPLATE", "load_processor", "make_qwen3_checkpoint", "make_qwen3_vl_checkpoint"]


def _cache_dir(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or Path(tempfile.gettempdir()) / "vsdpo-test-cache")


def load_processor(folder: str | Path):
    """``AutoProcessor.from_pretrained(folder)``, also where torchvision is missing (see above)."""
    from transformers import AutoProcessor

    with video_processor_accepted():
        return AutoProcessor.from_pretrained(folder)


def make_qwen3_vl_checkpoint(folder: str | Path, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """Write a random tiny ``Qwen3VLForConditionalGeneration`` and its ``Qwen3VLProcessor`` to ``folder``."""
    return save_tiny_checkpoint(folder, seed=seed, cache_dir=_cache_dir(cache_dir))


def make_qwen3_checkpoint(folder: str | Path, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """Write a random tiny text-only ``Qwen3ForCausalLM`` and its tokenizer to ``folder``."""
    return save_tiny_checkpoint(folder, seed=seed, text_only=True, cache_dir=_cache_dir(cache_dir))
