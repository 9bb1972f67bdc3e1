"""The embedded default's tiny Qwen3-VL: a random-init model from a config, a byte-level BPE
tokenizer trained on the project's own chart programs, and a real Qwen3-VL processor.

Nothing is downloaded. The tokenizer is trained with the ``tokenizers`` library on a few hundred
built-in chart programs and prompts plus the teacher-feedback template, then cached as JSON under the
cache folder (it takes about a second to rebuild). The processor is transformers' own
``Qwen3VLProcessor`` around its PIL ``Qwen2VLImageProcessorPil``, so images go through the same
patching, resizing and grid bookkeeping as with the real 8B model; it leaves out the video processor
(``image_only``), as ``vsdpo.train.model`` does for a checkpoint's processor where torchvision is missing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

# The chat/vision special tokens of Qwen3-VL's template, ids 0.. in this order.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TOKENIZER_VERSION = 1

# A chat template in Qwen's shape: text and images of each turn, then the assistant header.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer_corpus(count: int = 400) -> list[str]:
    from vsdpo.tasks.charts import builtin_chart_tasks
    from vsdpo.teacher_context import template_corpus

    texts = []
    for task in builtin_chart_tasks(count, seed=12345):
        texts += [task.prompt, task.reference]
    return texts + template_corpus()


def build_tokenizer(cache_dir: str | Path, vocab_size: int = 1024):
    """A ``PreTrainedTokenizerFast`` trained on the built-in corpus; cached by vocabulary size and corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = _tokenizer_corpus()
    path = Path(cache_dir) / f"tiny-tokenizer-v{TOKENIZER_VERSION}-{vocab_size}-{config_key(corpus)}.json"
    if not path.exists():
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(corpus, trainer=trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # several ranks may build it at once
        tokenizer.save(str(tmp))
        tmp.replace(path)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


class ImageOnlyProcessor:
    """Mixed into a vision-language processor class, leaves out its video processor.

    transformers builds and loads a video processor only with torchvision, which cannot be installed
    beside the CPU build of torch; images and text need none. ``ProcessorMixin`` builds, loads,
    type-checks and saves exactly the parts ``get_attributes`` lists, so the video processor is dropped
    there, and ``from_pretrained`` reads a checkpoint (folder or hub id) less its video part. Passing
    videos to such a processor is an error; everything else works as with the full processor.
    """

    @classmethod
    def get_attributes(cls):
        return [name for name in super().get_attributes() if name != "video_processor"]


@functools.cache
def image_only(processor_class: type) -> type:
    """``processor_class`` (``Qwen3VLProcessor``, say) less its video processor: ``ImageOnly<name>``."""
    attributes = processor_class.get_attributes()
    # ProcessorMixin pairs the parts passed to it with the listed attributes in order, so only a
    # trailing video processor can be dropped without shifting the parts after it.
    if "video_processor" in attributes and attributes[-1] != "video_processor":
        raise TypeError(
            f"{processor_class.__name__} takes its video processor before other parts ({attributes}); "
            "it cannot be built without one (install torchvision)"
        )
    return type(f"ImageOnly{processor_class.__name__}", (ImageOnlyProcessor, processor_class), {})


def build_processor(tokenizer, image_max_pixels: int = 128 * 96, image_min_pixels: int = 32 * 32):
    """transformers' Qwen3-VL processor with a small image budget (patch 16, merge 2), images and text only."""
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        min_pixels=image_min_pixels,
        max_pixels=image_max_pixels,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return image_only(Qwen3VLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )


def tiny_model_config(tokenizer, hidden_size: int = 64, num_layers: int = 2, vision_hidden_size: int = 32):
    """A Qwen3-VL config with a tiny text model and vision tower, matched to ``tokenizer``."""
    from transformers import Qwen3VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    head_dim = 16
    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=num_layers,
            num_attention_heads=hidden_size // head_dim,
            num_key_value_heads=max(1, hidden_size // head_dim // 2),
            head_dim=head_dim,
            max_position_embeddings=2048,
            # Multimodal rotary sections (t, h, w) over head_dim / 2 frequencies.
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
            pad_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            bos_token_id=ids["<|im_start|>"],
        ),
        vision_config=dict(
            depth=1,
            hidden_size=vision_hidden_size,
            intermediate_size=vision_hidden_size * 2,
            num_heads=2,
            out_hidden_size=hidden_size,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,  # as Qwen3-VL-8B; FSDP2 then shards the output layer on its own
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def build_tiny(cache_dir: str | Path, seed: int = 0, image_max_pixels: int = 128 * 96, **sizes):
    """(model, processor) for the embedded default, with weights drawn from ``seed``."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    tokenizer = build_tokenizer(cache_dir)
    processor = build_processor(tokenizer, image_max_pixels=image_max_pixels)
    config = tiny_model_config(tokenizer, **sizes)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return model, processor


def config_key(*parts) -> str:
    """A short stable hash of JSON-able parts, for cache file names."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
