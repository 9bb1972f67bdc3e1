"""Small random Hugging Face checkpoint folders, written locally, that load the way real ones do.

``make_qwen3_vl_checkpoint(folder)`` writes a ``Qwen3VLForConditionalGeneration`` (two text layers,
hidden size 64, a one-block vision tower) and a ``Qwen3VLProcessor`` (Qwen2 tokenizer with Qwen's
special tokens and a Qwen-style chat template, the image processor, the video processor's settings);
``make_qwen3_checkpoint(folder)`` a text-only ``Qwen3ForCausalLM`` and its tokenizer. Both go through
``save_pretrained``, so ``AutoProcessor`` / ``AutoTokenizer`` / ``AutoModelFor*.from_pretrained(folder)``
read them like a downloaded checkpoint. Nothing is downloaded: the byte-level BPE is the one
``vsdpo.tiny`` trains on the project's own chart programs, re-wrapped as Qwen's tokenizer class.

The video processor is transformers' own ``Qwen3VLVideoProcessor``. Without torchvision,
transformers refuses to build or load it (its auto class and the processor's type check go through
torchvision-only placeholders), although it needs torchvision only to process a video; so
``AutoProcessor.from_pretrained(folder)`` raises ImportError there, as for a downloaded Qwen3-VL, and
``load_processor(folder)`` loads the same folder by pointing those two look-ups at the real class.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

# Qwen-style chat template: an optional system turn, string or multimodal content (images and videos
# become the vision placeholders the processor expands), and the assistant header on request.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' or 'video' in part %}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part %}{{- part['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# What a text-only Qwen3 shares with the text model of the tiny Qwen3-VL.
QWEN3_TEXT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)
# A small image budget: 32x32 to 128x96 pixels, patches of 16 merged 2x2 into one token.
IMAGE_MIN_PIXELS = 32 * 32
IMAGE_MAX_PIXELS = 128 * 96


def qwen_tokenizer(cache_dir: str | Path | None = None):
    """``Qwen2TokenizerFast`` over ``vsdpo.tiny``'s byte-level BPE, with Qwen's special tokens and chat template."""
    from transformers import Qwen2TokenizerFast

    from vsdpo.tiny import SPECIAL_TOKENS, build_tokenizer

    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "vsdpo-test-cache"
    trained = json.loads(build_tokenizer(cache_dir).backend_tokenizer.to_str())["model"]
    tokenizer = Qwen2TokenizerFast(
        vocab=trained["vocab"],
        merges=[tuple(pair) for pair in trained["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def qwen3_vl_processor(tokenizer):
    """transformers' ``Qwen3VLProcessor``: PIL image processor, Qwen3-VL video processor, ``tokenizer``."""
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # The module's class, not the top-level name: without torchvision the latter is a placeholder that
    # refuses to be built, while the class itself only needs torchvision to process a video.
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    vision = dict(
        patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=IMAGE_MIN_PIXELS, max_pixels=IMAGE_MAX_PIXELS, **vision
    )
    video_processor = Qwen3VLVideoProcessor(
        size={"shortest_edge": IMAGE_MIN_PIXELS, "longest_edge": 8 * IMAGE_MAX_PIXELS},
        min_frames=2,
        max_frames=8,
        **vision,
    )
    with _video_processor_accepted():
        return Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=QWEN_CHAT_TEMPLATE,
        )


@contextmanager
def _video_processor_accepted():
    """Let transformers build and load Qwen3-VL's video processor while torchvision is missing.

    Two look-ups go through names that are placeholders without torchvision: the auto class's
    choice of video processor class, and ``ProcessorMixin``'s type check of each part (which refuses
    even a real ``BaseVideoProcessor``). For the time of the block, the auto mapping names the real
    ``Qwen3VLVideoProcessor`` class and that one check accepts it; everything else is unchanged.
    Without torchvision, such a processor handles images and text; a video still needs torchvision.
    """
    from transformers import ProcessorMixin, Qwen3VLConfig
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from transformers.utils import is_torchvision_available
    from transformers.video_processing_utils import BaseVideoProcessor

    if is_torchvision_available():
        yield
        return
    check = ProcessorMixin.check_argument_for_proper_class

    def accept_video_processor(self, argument_name, argument):
        if argument_name == "video_processor" and isinstance(argument, BaseVideoProcessor):
            return BaseVideoProcessor
        return check(self, argument_name, argument)

    real_class = {Qwen3VLConfig: {"torchvision": Qwen3VLVideoProcessor}}
    with (
        mock.patch.object(ProcessorMixin, "check_argument_for_proper_class", accept_video_processor),
        mock.patch.dict(VIDEO_PROCESSOR_MAPPING._extra_content, real_class),
    ):
        yield


def load_processor(folder: str | Path):
    """``AutoProcessor.from_pretrained(folder)``, also where torchvision is missing (see above)."""
    from transformers import AutoProcessor

    with _video_processor_accepted():
        return AutoProcessor.from_pretrained(folder)


def make_qwen3_vl_checkpoint(folder: str | Path, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """Write a random tiny ``Qwen3VLForConditionalGeneration`` and its ``Qwen3VLProcessor`` to ``folder``."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from vsdpo.tiny import tiny_model_config

    folder = Path(folder)
    tokenizer = qwen_tokenizer(cache_dir)
    config = tiny_model_config(tokenizer, hidden_size=64, num_layers=2, vision_hidden_size=32)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    _set_generation_ids(model, config.text_config)
    model.save_pretrained(folder)
    qwen3_vl_processor(tokenizer).save_pretrained(folder)
    return folder


def make_qwen3_checkpoint(folder: str | Path, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """Write a random tiny text-only ``Qwen3ForCausalLM`` and its tokenizer to ``folder``."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from vsdpo.tiny import tiny_model_config

    folder = Path(folder)
    tokenizer = qwen_tokenizer(cache_dir)
    # The text model of the Qwen3-VL checkpoint, less its multimodal rotary sections.
    text = tiny_model_config(tokenizer, hidden_size=64, num_layers=2).text_config
    config = Qwen3Config(
        **{name: getattr(text, name) for name in QWEN3_TEXT_FIELDS},
        tie_word_embeddings=True,  # as the small Qwen3 checkpoints
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    _set_generation_ids(model, config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _set_generation_ids(model, text_config) -> None:
    model.generation_config.eos_token_id = text_config.eos_token_id
    model.generation_config.pad_token_id = text_config.pad_token_id
    model.generation_config.bos_token_id = text_config.bos_token_id
