"""The policy: the embedded tiny Qwen3-VL, or a Hugging Face model by hub id or local folder, with
its processor (or tokenizer, for a text-only model).

``resolve_policy`` runs first, before any task renders: it reads the checkpoint's config (a small
file), so a hub id that is neither cached nor reachable fails at once with a ``ConfigError``, and a
text-only model gets a configuration without images. ``load_policy`` then loads the weights.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import transformers
from huggingface_hub import constants as hub_constants
from transformers.utils import is_torchvision_available

from vsdpo.tiny import build_tiny, image_only
from vsdpo.train.config import ConfigError, TrainConfig
from vsdpo.train.data import cache_dir

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

    Processor = ProcessorMixin | PreTrainedTokenizerBase  # a VLM's processor, or a text model's tokenizer

log = logging.getLogger("vsdpo.train")

# The settings that show the model an image, with their dotted keys.
IMAGE_SETTINGS = (("data", "prompt_image"), ("algorithm", "teacher_image"))


def resolve_policy(config: TrainConfig) -> TrainConfig:
    """``config`` as the run uses it with this model, checked before the run does any heavy work.

    ``model.name`` must load (a ``ConfigError`` names the folder or hub id otherwise). A text-only
    model cannot read an image: where ``data.prompt_image`` or ``algorithm.teacher_image`` is on, a
    copy of ``config`` with both off comes back, with one warning; the prompt keeps its text and the
    teacher's feedback its written defect report.
    """
    if config.model.name == "tiny":
        return config
    model_config = pretrained_config(config.model.name)
    switched = [
        f"{section}.{key}" for section, key in IMAGE_SETTINGS if getattr(getattr(config, section), key)
    ]
    if reads_images(model_config) or not switched:
        return config
    log.warning(
        "model.name: %s is a text-only model (%s); turning %s off: prompts and feedback go to it as text",
        config.model.name,
        model_config.model_type,
        " and ".join(switched),
    )
    config = config.model_copy(deep=True)
    for section, key in IMAGE_SETTINGS:
        setattr(getattr(config, section), key, False)
    return config


def load_policy(config: TrainConfig, device: torch.device) -> tuple[PreTrainedModel, Processor]:
    """(model, processor) on ``device``, as ``config.model`` describes."""
    spec = config.model
    if spec.name == "tiny":
        model, processor = build_tiny(
            cache_dir(config),
            seed=spec.seed,
            hidden_size=spec.tiny_hidden_size,
            num_layers=spec.tiny_num_layers,
            image_max_pixels=config.data.image_max_pixels or 128 * 96,
        )
    else:
        model, processor = load_pretrained(config)
        if spec.use_liger_kernel:
            apply_liger(model)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # generate turns it back on per call
    tokenizer = getattr(processor, "tokenizer", processor)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), processor


def load_pretrained(config: TrainConfig) -> tuple[PreTrainedModel, Processor]:
    """A vision-language model with its processor, or a causal LM with its tokenizer, from
    ``config.model.name`` (a local folder or a hub id, downloaded to the Hugging Face cache)."""
    spec = config.model
    dtype = "auto" if spec.dtype == "auto" else getattr(torch, spec.dtype)
    attn = spec.attn_implementation
    if attn == "auto":
        flash = torch.cuda.is_available() and importlib.util.find_spec("flash_attn")
        attn = "flash_attention_2" if flash else "sdpa"
    model_config = pretrained_config(spec.name)
    vision = reads_images(model_config)
    try:
        if vision:
            processor = load_processor(spec.name, model_config)
            model_class = transformers.AutoModelForImageTextToText
        else:
            processor = transformers.AutoTokenizer.from_pretrained(spec.name)
            model_class = transformers.AutoModelForCausalLM
        model = model_class.from_pretrained(spec.name, dtype=dtype, attn_implementation=attn)
    except (OSError, ValueError) as error:  # weights or tokenizer files missing from a cached download
        raise ConfigError(load_error(spec.name, error)) from None
    max_pixels = config.data.image_max_pixels
    if max_pixels and getattr(processor, "image_processor", None) is not None:
        processor.image_processor.max_pixels = max_pixels
        processor.image_processor.size = {**processor.image_processor.size, "longest_edge": max_pixels}
    return model, processor


def load_processor(name: str, model_config: PretrainedConfig) -> ProcessorMixin:
    """``AutoProcessor.from_pretrained(name)``; where torchvision is missing and the processor has a
    video part (Qwen3-VL's has), the same processor without it, with one warning (``vsdpo.tiny.image_only``)."""
    if is_torchvision_available():
        return transformers.AutoProcessor.from_pretrained(name)
    try:
        return transformers.AutoProcessor.from_pretrained(name)
    except ImportError as error:
        if "torchvision" not in str(error).lower():
            raise
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    processor_class = PROCESSOR_MAPPING[type(model_config)]
    log.warning(
        "torchvision is not installed: %s's %s is loaded without its video processor (images and text only)",
        name,
        processor_class.__name__,
    )
    return image_only(processor_class).from_pretrained(name)


def reads_images(model_config: PretrainedConfig) -> bool:
    """Whether a checkpoint's config is a vision-language model's (it has a vision tower)."""
    return getattr(model_config, "vision_config", None) is not None


def pretrained_config(name: str) -> PretrainedConfig:
    """``AutoConfig.from_pretrained(name)``, with a ``ConfigError`` that says where it looked."""
    try:
        return transformers.AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise ConfigError(load_error(name, error)) from None


def load_error(name: str, error: Exception) -> str:
    """What failed to load ``name``: a folder that is no checkpoint, a missing folder, or a hub id
    that is neither in the cache nor reachable."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    folder = Path(name).expanduser()
    if folder.is_dir():
        return f"model.name: {name} is a folder but not a Hugging Face checkpoint: {reason}"
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        return f"model.name: no folder {name} (a hub id reads NAMESPACE/NAME)"
    offline = " (offline mode: HF_HUB_OFFLINE is set)" if hub_constants.HF_HUB_OFFLINE else ""
    return (
        f"model.name: cannot load {name!r}: it is not a local folder, not in the Hugging Face cache "
        f"{hub_constants.HF_HUB_CACHE}, and could not be fetched from the hub{offline}; download it "
        f"where the hub is reachable (hf download {name}) into that cache (HF_HOME or HF_HUB_CACHE "
        f"name it), or pass the checkpoint's local folder [{reason}]"
    )


def apply_liger(model: PreTrainedModel) -> None:
    """Liger-Kernel's layer kernels (RMSNorm, RoPE, SwiGLU) for the model's type, by Liger's own
    dispatch; the cross-entropy stays unpatched, since the fused SDPO loss replaces it."""
    if not torch.cuda.is_available():
        log.warning("model.use_liger_kernel: Liger-Kernel's patches need a GPU; left off on this CPU run")
        return
    from liger_kernel.transformers import _apply_liger_kernel_to_instance  # a GPU-only import

    _apply_liger_kernel_to_instance(
        model, rms_norm=True, rope=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
    )
