"""The locally written checkpoint folders load through transformers' auto classes, like downloaded ones."""

from __future__ import annotations

import io

import pytest
import torch
import transformers
from transformers.utils import is_torchvision_available

from tests.hf_checkpoints import QWEN_CHAT_TEMPLATE, load_processor


def chart_image():
    """A real small picture: a matplotlib bar chart, 128x96 pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=64)
    ax.bar(["north", "south", "east"], [3, 5, 2], color=["#1f77b4", "#ff7f0e", "#2ca02c"])
    ax.set_title("Sales")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_qwen3_vl_folder_holds_a_real_checkpoint(qwen3_vl_folder):
    names = {path.name for path in qwen3_vl_folder.iterdir()}
    for expected in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
        "chat_template.jinja",
    ):
        assert expected in names, expected
    config = transformers.AutoConfig.from_pretrained(qwen3_vl_folder)
    assert config.model_type == "qwen3_vl" and config.vision_config.patch_size == 16


def test_auto_processor_loads_the_qwen3_vl_folder(qwen3_vl_folder):
    if is_torchvision_available():
        processor = transformers.AutoProcessor.from_pretrained(qwen3_vl_folder)
    else:
        # transformers builds Qwen3-VL's video processor only with torchvision, as for the real model.
        with pytest.raises(ImportError, match="[Tt]orchvision"):
            transformers.AutoProcessor.from_pretrained(qwen3_vl_folder)
        processor = load_processor(qwen3_vl_folder)
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert type(processor.video_processor).__name__ == "Qwen3VLVideoProcessor"
    tokenizer = processor.tokenizer
    assert type(tokenizer).__name__ in ("Qwen2Tokenizer", "Qwen2TokenizerFast")
    for token in (
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|image_pad|>",
        "<|vision_end|>",
        "<|endoftext|>",
    ):
        assert token in tokenizer.all_special_tokens, token
        assert tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(token)) == token
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert processor.chat_template == QWEN_CHAT_TEMPLATE


def test_processor_expands_an_image_into_the_model_vision_tokens(qwen3_vl_folder):
    processor = load_processor(qwen3_vl_folder)
    model = transformers.AutoModelForImageTextToText.from_pretrained(qwen3_vl_folder)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    messages = [
        {"role": "system", "content": "You write matplotlib programs."},
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Write the code of this chart."}],
        },
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou write matplotlib programs.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Write the code of this chart.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )

    inputs = processor(text=[text], images=[chart_image()], return_tensors="pt")
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    merge = processor.image_processor.merge_size
    assert image_tokens == int(inputs["image_grid_thw"].prod()) // merge**2 > 1
    with torch.no_grad():
        features = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        embeddings = features.pooler_output if hasattr(features, "pooler_output") else features
        assert sum(e.shape[0] for e in embeddings) == image_tokens  # one vision output row per image token
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()


def test_qwen3_folder_loads_as_a_causal_lm(qwen3_folder):
    tokenizer = transformers.AutoTokenizer.from_pretrained(qwen3_folder)
    assert type(transformers.AutoProcessor.from_pretrained(qwen3_folder)) is type(tokenizer)
    model = transformers.AutoModelForCausalLM.from_pretrained(qwen3_folder)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Plot y = x."}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|im_start|>user\nPlot y = x.<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, ids["input_ids"].shape[1] + 4) or tokenizer.eos_token_id in out[0].tolist()
