"""The policy and what it is trained on: loading the model and processor, the tasks' target images,
the supervised warm-start, and the optimiser with its schedule."""

from __future__ import annotations

import io
import logging
import math
import os
from pathlib import Path

log = logging.getLogger("vsdpo.train")

# Liger-Kernel's model patches by model type (RMSNorm, RoPE, SwiGLU; the loss stays ours).
LIGER_PATCHES = {
    "qwen3_vl": "apply_liger_kernel_to_qwen3_vl",
    "qwen2_5_vl": "apply_liger_kernel_to_qwen2_5_vl",
    "qwen2_vl": "apply_liger_kernel_to_qwen2_vl",
    "qwen3": "apply_liger_kernel_to_qwen3",
    "qwen2": "apply_liger_kernel_to_qwen2",
    "llama": "apply_liger_kernel_to_llama",
}


def cache_dir(config) -> Path:
    path = Path(config.cache_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_policy(config, device):
    """(model, processor): the embedded tiny Qwen3-VL, or a Hugging Face model by hub id or local path."""
    import torch

    if config.model == "tiny":
        from vsdpo.tiny import build_tiny

        model, processor = build_tiny(cache_dir(config), seed=config.seed, hidden_size=config.tiny_hidden_size,
                                      num_layers=config.tiny_num_layers, image_max_pixels=config.image_max_pixels or 128 * 96)  # fmt: skip
    else:
        import transformers

        dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
        attn = config.attn_implementation
        if attn == "auto":
            import importlib.util

            attn = (
                "flash_attention_2"
                if torch.cuda.is_available() and importlib.util.find_spec("flash_attn")
                else "sdpa"
            )
        processor = transformers.AutoProcessor.from_pretrained(config.model)
        if config.image_max_pixels and getattr(processor, "image_processor", None) is not None:
            processor.image_processor.max_pixels = config.image_max_pixels
            processor.image_processor.size = {
                **processor.image_processor.size,
                "longest_edge": config.image_max_pixels,
            }
        model_config = transformers.AutoConfig.from_pretrained(config.model)
        is_vlm = hasattr(model_config, "vision_config")
        model_class = (
            transformers.AutoModelForImageTextToText if is_vlm else transformers.AutoModelForCausalLM
        )
        model = model_class.from_pretrained(config.model, dtype=dtype, attn_implementation=attn)
        if config.use_liger_kernel:
            apply_liger(model)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # generate turns it back on per call
    tokenizer = getattr(processor, "tokenizer", processor)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), processor


def apply_liger(model) -> None:
    import torch

    if not torch.cuda.is_available():
        log.warning("use_liger_kernel: Liger-Kernel's patches need a GPU; left off on this CPU run")
        return
    import liger_kernel.transformers as liger

    model_type = model.config.model_type
    if model_type not in LIGER_PATCHES:
        raise ValueError(
            f"use_liger_kernel: no Liger patch for model type {model_type!r}; known: {sorted(LIGER_PATCHES)}"
        )
    patch = getattr(liger, LIGER_PATCHES[model_type])
    # Our fused loss replaces the cross-entropy, so only the layer kernels are patched.
    patch(
        rms_norm=True,
        rope=True,
        swiglu=True,
        cross_entropy=False,
        fused_linear_cross_entropy=False,
        model=model,
    )


def prepare_tasks(config, render_pool):
    """The tasks and their target images (PIL or None): the task's own image, else its reference
    rendered once in the sandbox (cached as PNG under the cache folder)."""
    from PIL import Image

    from vsdpo.tasks import load_tasks
    from vsdpo.tiny import config_key

    tasks = load_tasks(config.tasks, kind=config.task_kind, count=config.num_builtin_tasks, seed=config.seed)
    folder = cache_dir(config) / "targets"
    folder.mkdir(exist_ok=True)
    pending = {}
    for index, task in enumerate(tasks):
        if task.image is None and task.reference and config.prompt_image:
            path = folder / f"{config_key(task.kind, task.reference)}.png"
            if path.exists():
                task.image = path.read_bytes()
            else:
                pending[index] = (path, render_pool.submit(task.reference, task.kind))
    for index, (path, future) in pending.items():
        result = future.result()
        if not result.ok or not result.image:  # once more: a busy machine can time a render out
            result = render_pool.submit(tasks[index].reference, tasks[index].kind).result()
        if not result.ok or not result.image:
            log.warning(
                "task %s: its reference did not render (%s); shown without a target image",
                tasks[index].id,
                result.error,
            )
            continue
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # several ranks may render the same target
        tmp.write_bytes(result.image)
        tmp.replace(path)
        tasks[index].image = result.image
    images = [Image.open(io.BytesIO(task.image)).convert("RGB") if task.image else None for task in tasks]
    return tasks, images


def warm_start(model, processor, tasks, target_images, config) -> None:
    """Supervised steps on the tasks' reference programs, so that some rollouts run from the start.

    Every other example is in the teacher's format (the task, then the feedback on the reference's
    own render, vsdpo.teacher_context), so that the teacher's context is not foreign to the model
    when distillation starts. The weights after it are cached under the cache folder, keyed by
    everything that shapes them.
    """
    import dataclasses

    import torch

    from vsdpo.render.types import RenderResult
    from vsdpo.rollout import encode, prompt_text
    from vsdpo.teacher_context import teacher_context
    from vsdpo.tiny import config_key

    def example(index: int, task, image, with_image: bool):
        """(prompt text, its images) of one example: the student's format, or the teacher's for odd ``index``."""
        images = [image] if with_image else []
        if index % 2 and config.uses_distillation:
            rendered = RenderResult(kind=task.kind, ok=True, image=task.image)
            context = teacher_context(
                rendered, task.reference, with_image=config.teacher_image and with_image
            )
            task = dataclasses.replace(task, prompt=task.prompt + context.text)
            images += context.images
        return prompt_text(processor, task, with_image), images

    examples = [(task, image) for task, image in zip(tasks, target_images, strict=False) if task.reference]
    if not examples:
        log.warning("warmstart_steps: no task has a reference program; warm-start skipped")
        return
    tokenizer = getattr(processor, "tokenizer", processor)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    key = config_key(
        backend.to_str() if backend is not None else tokenizer.name_or_path,
        config.model,
        config.tiny_hidden_size,
        config.tiny_num_layers,
        config.seed,
        config.tasks,
        config.num_builtin_tasks,
        config.prompt_image,
        config.warmstart_steps,
        config.warmstart_batch_size,
        config.warmstart_learning_rate,
        config.uses_distillation,
        config.teacher_image,
        torch.__version__,
    )
    path = cache_dir(config) / f"warmstart-{key}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        log.info("warm-start weights loaded from %s", path)
        return
    eos = tokenizer.eos_token or ""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.warmstart_learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / config.warmstart_steps)),
    )
    model.train()
    device = next(model.parameters()).device
    for step in range(config.warmstart_steps):
        picks = torch.randint(len(examples), (config.warmstart_batch_size,), generator=generator).tolist()
        with_image = config.prompt_image and all(examples[i][1] is not None for i in picks)
        pairs = [example(n, *examples[i], with_image) for n, i in enumerate(picks)]
        prompts = [prompt for prompt, _ in pairs]
        texts = [p + examples[i][0].reference + eos for p, i in zip(prompts, picks, strict=True)]
        images = [image for _, images in pairs for image in images] or None
        inputs = encode(processor, texts, images, device, padding_side="right")
        prompt_lengths = encode(processor, prompts, images, device, padding_side="right")[
            "attention_mask"
        ].sum(1)
        labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
        positions = torch.arange(labels.shape[1], device=device)[None, :]
        labels = labels.masked_fill(positions < prompt_lengths[:, None], -100)  # no loss on the prompt
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == config.warmstart_steps - 1:
            log.info("warm-start %d/%d: loss %.3f", step + 1, config.warmstart_steps, loss.item())
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)


def build_optimizer(model, config):
    """AdamW and a per-step learning-rate schedule with linear warm-up."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
    )

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
        if config.lr_scheduler == "linear":
            return max(0.0, 1.0 - progress)
        if config.lr_scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
