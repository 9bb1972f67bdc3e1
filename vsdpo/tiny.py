"""The embedded default's tiny Qwen3-VL: a random-init model from a config, a byte-level BPE
tokenizer trained on the project's own chart programs, and a real Qwen3-VL processor.

Nothing is downloaded. The tokenizer is trained with the ``tokenizers`` library on a few hundred
built-in chart programs and prompts plus the teacher-feedback template, then cached as JSON under the
cache folder (it takes about a second to rebuild). The processor is transformers' own
``Qwen3VLProcessor`` around its PIL ``Qwen2VLImageProcessorPil``, so images go through the same
patching, resizing and grid bookkeeping as with the real 8B model; it leaves out the video processor
(``image_only``), as ``vsdpo.train.model`` does for a checkpoint's processor where torchvision is missing.

``save_tiny_checkpoint(folder)`` (``vsdpo tiny-model FOLDER``) writes such a model as a Hugging Face
checkpoint folder that loads the way a downloaded Qwen3-VL loads (``from_pretrained``, or
``vsdpo train --model FOLDER``), for trying the trainer, the TRL integration or an export on a machine
without a real model: random weights, Qwen's tokenizer class over the same byte-level BPE, Qwen's chat
template, the image processor and the video processor's settings.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

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
    from vsdpo.feedback.teacher_context import template_corpus
    from vsdpo.tasks.charts import builtin_chart_tasks

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


# ---------------------------------------------------------------- as a Hugging Face checkpoint folder

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
# The image budget of the tiny processors: 32x32 to 128x96 pixels, patches of 16 merged 2x2 into one token.
IMAGE_MIN_PIXELS = 32 * 32
IMAGE_MAX_PIXELS = 128 * 96


def default_cache_dir() -> Path:
    """Where the trained tokenizer is cached when no folder is named: the trainer's ``run.cache_dir`` default."""
    return Path("~/.cache/vsdpo").expanduser()


def qwen_tokenizer(cache_dir: str | Path | None = None):
    """``Qwen2TokenizerFast`` over ``build_tokenizer``'s byte-level BPE, with Qwen's special tokens
    and chat template: the tokenizer class a downloaded Qwen3-VL comes with."""
    from transformers import Qwen2TokenizerFast

    trained = json.loads(build_tokenizer(cache_dir or default_cache_dir()).backend_tokenizer.to_str())[
        "model"
    ]
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


def qwen3_vl_processor(
    tokenizer, chat_template: str = QWEN_CHAT_TEMPLATE, image_max_pixels: int = IMAGE_MAX_PIXELS
):
    """transformers' whole ``Qwen3VLProcessor`` (PIL image processor, Qwen3-VL video processor,
    ``tokenizer``), as a downloaded checkpoint holds it: what ``save_pretrained`` writes of it
    ``AutoProcessor`` reads back, where ``build_processor``'s image-only class could not be."""
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # The module's class, not the top-level name: without torchvision the latter is a placeholder that
    # refuses to be built, while the class itself only needs torchvision to process a video.
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    vision = dict(
        patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=IMAGE_MIN_PIXELS, max_pixels=image_max_pixels, **vision
    )
    video_processor = Qwen3VLVideoProcessor(
        size={"shortest_edge": IMAGE_MIN_PIXELS, "longest_edge": 8 * image_max_pixels},
        min_frames=2,
        max_frames=8,
        **vision,
    )
    with video_processor_accepted():
        return Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=chat_template,
        )


@contextmanager
def video_processor_accepted():
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


def save_tiny_checkpoint(
    folder: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    text_only: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """Write a small random Hugging Face checkpoint to ``folder`` and return it.

    The default is a ``Qwen3VLForConditionalGeneration`` of the tiny architecture (``hidden_size``,
    ``num_layers`` text layers, a one-block vision tower) with its ``Qwen3VLProcessor``;
    ``text_only`` writes a ``Qwen3ForCausalLM`` (the same text model, tied embeddings as the small
    Qwen3 checkpoints) with its tokenizer. Both go through ``save_pretrained``, so
    ``AutoModelFor*.from_pretrained(folder)`` and ``vsdpo train --model folder`` read them like a
    downloaded checkpoint. The weights are drawn from ``seed``; the tokenizer is trained once and
    cached under ``cache_dir`` (default ``~/.cache/vsdpo``).
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3VLForConditionalGeneration

    folder = Path(folder)
    tokenizer = qwen_tokenizer(cache_dir)
    config = tiny_model_config(tokenizer, hidden_size=hidden_size, num_layers=num_layers)
    torch.manual_seed(seed)
    if text_only:
        text = config.text_config  # less its multimodal rotary sections
        config = Qwen3Config(
            **{name: getattr(text, name) for name in QWEN3_TEXT_FIELDS}, tie_word_embeddings=True
        )
        model = Qwen3ForCausalLM(config)
    else:
        text = config.text_config
        model = Qwen3VLForConditionalGeneration(config)
    for name in ("eos_token_id", "pad_token_id", "bos_token_id"):
        setattr(model.generation_config, name, getattr(text, name))
    model.save_pretrained(folder)
    (tokenizer if text_only else qwen3_vl_processor(tokenizer)).save_pretrained(folder)
    return folder


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``vsdpo tiny-model``."""
    parser = subparsers.add_parser(
        "tiny-model",
        help="write a small random Qwen3-VL checkpoint folder to try the trainer on",
        description="Write a small random Hugging Face checkpoint (the tiny Qwen3-VL architecture, with its "
        "processor) to OUT; `vsdpo train --model OUT` and `from_pretrained(OUT)` load it like a downloaded one.",
    )
    parser.add_argument("out", help="the folder to write (created; files in it are overwritten)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)"
    )
    parser.add_argument(
        "--hidden-size",
        type=int,
        default=64,
        help="text hidden size, a multiple of 16 (default: %(default)s)",
    )
    parser.add_argument(
        "--num-layers", type=int, default=2, help="text decoder layers (default: %(default)s)"
    )
    parser.add_argument(
        "--text-only", action="store_true", help="a text-only Qwen3 causal LM with its tokenizer instead"
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="where the tokenizer is trained once and cached (default: ~/.cache/vsdpo)",
    )
    parser.set_defaults(func=run_from_args)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    if args.hidden_size < 16 or args.hidden_size % 16:
        print(
            f"vsdpo tiny-model: --hidden-size: expected a multiple of 16 (the head size), got {args.hidden_size}",
            file=sys.stderr,
        )
        return 2
    if args.num_layers < 1:
        print(f"vsdpo tiny-model: --num-layers: expected >= 1, got {args.num_layers}", file=sys.stderr)
        return 2
    folder = save_tiny_checkpoint(
        args.out,
        seed=args.seed,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        text_only=args.text_only,
        cache_dir=args.cache_dir,
    )
    kind = "Qwen3 (text only)" if args.text_only else "Qwen3-VL"
    print(f"wrote a tiny random {kind} checkpoint to {folder}; train it with: vsdpo train --model {folder}")
    return 0


def config_key(*parts) -> str:
    """A short stable hash of JSON-able parts, for cache file names."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
