"""vsdpo.sharing.group and .build: a group's inputs are checked when made, and built from text."""

from __future__ import annotations

import pytest
import torch
import transformers
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from vsdpo.sharing import RolloutGroup, student_teacher_hidden
from vsdpo.tiny import CHAT_TEMPLATE, build_processor

from .cases import PATCH_DIM, assert_equivalent, make_group, tiny_qwen3, tiny_qwen3_vl


def test_group_rejects_mismatched_inputs():
    prompt = torch.arange(4)
    with pytest.raises(ValueError, match="feedback_ids: expected a list of 2"):
        RolloutGroup(prompt_ids=prompt, response_ids=[prompt, prompt], feedback_ids=[prompt])
    with pytest.raises(ValueError, match="prompt_ids: expected a 1-D LongTensor"):
        RolloutGroup(prompt_ids=prompt.float(), response_ids=[prompt])
    with pytest.raises(ValueError, match="must hold 24 patches"):
        RolloutGroup(
            prompt_ids=prompt,
            prompt_pixel_values=torch.zeros(5, PATCH_DIM),
            prompt_image_grid_thw=torch.tensor([[1, 4, 6]]),
            response_ids=[prompt],
        )
    with pytest.raises(ValueError, match="no vision tower"):
        student_teacher_hidden(tiny_qwen3(), make_group(with_images=True))


def small_tokenizer(chat_template: str | None):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    specials += ["<|image_pad|>", "<|video_pad|>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=specials, show_progress=False)
    corpus = [
        "draw a bar chart of sales",
        "import matplotlib.pyplot as plt",
        "Your program ran. Defects found:",
    ]
    tokenizer.train_from_iterator(corpus * 4, trainer=trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<|endoftext|>", additional_special_tokens=specials[1:]
    )
    fast.chat_template = chat_template
    return fast


def test_from_text_with_a_chat_template_and_images():
    tokenizer = small_tokenizer(CHAT_TEMPLATE)
    processor = build_processor(tokenizer)
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    target = Image.new("RGB", (64, 96), (200, 30, 30))
    render = Image.new("RGB", (64, 64), (30, 30, 200))
    placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    group = RolloutGroup.from_text(
        processor,
        "draw a bar chart",
        ["import matplotlib", "plt"],
        ["\n\nYour program ran. " + placeholder, None],
        prompt_images=[target],
        feedback_images=[[render], None],
    )
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=False).replace(" ", "")
    assert decode(group.prompt_ids).startswith("<|im_start|>user")
    assert decode(group.prompt_ids).endswith("drawabarchart")
    assert decode(group.generation_prompt_ids) == "<|im_end|><|im_start|>assistant"
    assert group.feedback_ids[1] is None and group.feedback_pixel_values[1] is None
    merge = 4  # 2x2 patches per placeholder token
    assert int((group.prompt_ids == image_id).sum()) == int(group.prompt_image_grid_thw.prod()) // merge
    assert (
        int((group.feedback_ids[0] == image_id).sum())
        == int(group.feedback_image_grid_thw[0].prod()) // merge
    )

    config = tiny_qwen3_vl().config
    config.text_config.vocab_size = len(tokenizer)
    special = {"image": "<|image_pad|>", "video": "<|video_pad|>"}
    special |= {"vision_start": "<|vision_start|>", "vision_end": "<|vision_end|>"}
    for name, token in special.items():
        setattr(config, f"{name}_token_id", tokenizer.convert_tokens_to_ids(token))
    torch.manual_seed(0)
    model = transformers.Qwen3VLForConditionalGeneration(config).float().eval()
    assert_equivalent(model, group)


def test_from_text_without_a_chat_template_concatenates():
    tokenizer = small_tokenizer(None)
    group = RolloutGroup.from_text(tokenizer, "draw a bar chart", ["plt"], ["Defects found:"])
    assert group.generation_prompt_ids.numel() == 0
    assert tokenizer.decode(group.prompt_ids) == tokenizer.decode(tokenizer("draw a bar chart")["input_ids"])
    assert tokenizer.decode(group.feedback_ids[0]).replace(" ", "") == "Defectsfound:"
    with pytest.raises(ValueError, match="has no image_processor"):
        RolloutGroup.from_text(tokenizer, "draw", ["plt"], prompt_images=["not used"])
