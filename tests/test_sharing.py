"""vsdpo.sharing: the prefix-sharing passes equal the plain full-sequence passes, values and gradients."""

from __future__ import annotations

import pytest
import torch

from vsdpo.sharing import RolloutGroup, StudentTeacherHidden, student_teacher_hidden

transformers = pytest.importorskip("transformers")

VOCAB = 128
IMAGE, VIDEO, VISION_START, VISION_END = 120, 121, 122, 123
PATCH, MERGE, TEMPORAL = 16, 2, 2
PATCH_DIM = 3 * TEMPORAL * PATCH * PATCH


def tiny_qwen3_vl():
    config = transformers.Qwen3VLConfig(
        text_config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=PATCH,
            spatial_merge_size=MERGE,
            temporal_patch_size=TEMPORAL,
            out_hidden_size=64,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0, 1],
        ),
        image_token_id=IMAGE,
        video_token_id=VIDEO,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.Qwen3VLForConditionalGeneration(config).float().eval()


def tiny_qwen3():
    config = transformers.Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.Qwen3ForCausalLM(config).float().eval()


def tiny_llama():
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).float().eval()


def text_ids(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 100, (n,), generator=generator)


def image(h: int, w: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patches, grid and placeholder ids of one image of h x w patches (before the 2x2 merge)."""
    grid = torch.tensor([[1, h, w]])
    pixels = torch.randn(h * w, PATCH_DIM, generator=generator)
    placeholder = torch.tensor([VISION_START] + [IMAGE] * (h * w // MERGE**2) + [VISION_END])
    return pixels, grid, placeholder


def make_group(with_images: bool, feedback_pattern=(True, True, False, True), seed: int = 0) -> RolloutGroup:
    g = torch.Generator().manual_seed(seed)
    response_lengths = [7, 3, 5, 1][: len(feedback_pattern)]
    prompt_pixels = prompt_grid = None
    if with_images:
        prompt_pixels, prompt_grid, placeholder = image(4, 6, g)
        prompt = torch.cat([text_ids(5, g), placeholder, text_ids(4, g)])
    else:
        prompt = text_ids(12, g)
    feedback, feedback_pixels, feedback_grids = [], [], []
    for k, has in enumerate(feedback_pattern):
        if not has:
            feedback += [None]
            feedback_pixels += [None]
            feedback_grids += [None]
        elif with_images and k % 2 == 0:
            pixels, grid, placeholder = image(2 + 2 * (k % 4 == 0), 4, g)
            feedback += [torch.cat([text_ids(2, g), placeholder, text_ids(3 + k, g)])]
            feedback_pixels += [pixels]
            feedback_grids += [grid]
        else:
            feedback += [text_ids(4 + k, g)]
            feedback_pixels += [None]
            feedback_grids += [None]
    return RolloutGroup(
        prompt_ids=prompt,
        prompt_pixel_values=prompt_pixels,
        prompt_image_grid_thw=prompt_grid,
        response_ids=[text_ids(n, g) for n in response_lengths],
        feedback_ids=feedback,
        feedback_pixel_values=feedback_pixels if with_images else None,
        feedback_image_grid_thw=feedback_grids if with_images else None,
        generation_prompt_ids=text_ids(3, g),
    )


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def student_loss_and_grads(model, group, reuse_prefix, weights=None):
    model.zero_grad(set_to_none=True)
    out = student_teacher_hidden(model, group, reuse_prefix=reuse_prefix)
    hs, _ = out
    if weights is None:
        weights = torch.randn(hs.shape, generator=torch.Generator().manual_seed(1))
    loss = (hs * weights * out.response_mask[..., None]).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads, weights


def assert_equivalent(model, group):
    shared, shared_grads, weights = student_loss_and_grads(model, group, reuse_prefix=True)
    plain, plain_grads, _ = student_loss_and_grads(model, group, reuse_prefix=False, weights=weights)
    assert torch.equal(shared.response_mask, plain.response_mask)
    assert relative_error(shared.student_hidden, plain.student_hidden) < 1e-5
    if plain.teacher_hidden is None:
        assert shared.teacher_hidden is None
    else:
        assert relative_error(shared.teacher_hidden, plain.teacher_hidden) < 1e-5
    assert shared_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        assert relative_error(shared_grads[name], grad) < 1e-5, name
    return shared, plain_grads


def test_qwen3_vl_shared_equals_full_sequences_with_images_in_prompt_and_feedback():
    model = tiny_qwen3_vl()
    group = make_group(with_images=True)
    out, grads = assert_equivalent(model, group)
    assert out.student_hidden.shape == (4, 7, 64)
    # The prompt image reaches the loss through the cached keys and values: the vision tower learns.
    # (The deepstack merger of the last decoder layer only feeds image positions' final states, unused.)
    vision = [name for name in grads if ".visual." in name and "deepstack_merger_list.1." not in name]
    assert vision and all(grads[name].abs().sum() > 0 for name in vision)


def test_qwen3_vl_text_only_group():
    assert_equivalent(tiny_qwen3_vl(), make_group(with_images=False))


@pytest.mark.parametrize("build", [tiny_qwen3, tiny_llama], ids=["qwen3", "llama"])
def test_text_models_shared_equals_full_sequences(build):
    assert_equivalent(build(), make_group(with_images=False))


def test_hidden_states_predict_the_response_tokens():
    """hs[g, t] is the state just before response token t, as in one plain forward of the student."""
    model = tiny_qwen3()
    group = make_group(with_images=False)
    hs, ht = student_teacher_hidden(model, group)
    for g, response in enumerate(group.response_ids):
        sequence = torch.cat([group.prompt_ids, group.generation_prompt_ids, response])
        with torch.no_grad():
            states = model.model(input_ids=sequence[None]).last_hidden_state[0]
        start = sequence.numel() - response.numel() - 1
        torch.testing.assert_close(hs[g, : response.numel()], states[start : start + response.numel()])
        assert hs[g, response.numel() :].abs().sum() == 0


def test_teacher_is_detached_and_falls_back_to_student_without_feedback():
    model = tiny_qwen3_vl()
    group = make_group(with_images=True, feedback_pattern=(True, False, True))
    out = student_teacher_hidden(model, group)
    assert isinstance(out, StudentTeacherHidden)
    hs, ht = out
    assert hs.requires_grad and not ht.requires_grad and ht.grad_fn is None
    assert out.has_feedback.tolist() == [True, False, True]
    torch.testing.assert_close(ht[1], hs[1].detach(), rtol=0, atol=0)
    assert not torch.allclose(ht[0], hs[0])


def test_teacher_is_none_without_any_feedback():
    group = make_group(with_images=False, feedback_pattern=(False, False))
    hs, ht = student_teacher_hidden(tiny_qwen3(), group)
    assert ht is None and hs.shape[0] == 2


@pytest.mark.parametrize("build", [tiny_qwen3_vl, tiny_qwen3], ids=["qwen3_vl", "qwen3"])
def test_shared_passes_under_gradient_checkpointing_equal_full_sequences(build):
    model = build()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    with_images = build is tiny_qwen3_vl
    out, grads = assert_equivalent(model, make_group(with_images=with_images))
    # The layers went back to dropping caches under checkpointing for everyone else.
    layer = next(m for m in model.modules() if hasattr(type(m), "_can_checkpoint_with_cache"))
    assert layer._can_checkpoint_with_cache is False
    if with_images:
        assert any(".visual." in name and grads[name].abs().sum() > 0 for name in grads)


def test_reentrant_gradient_checkpointing_is_refused_rather_than_losing_the_prompt_gradient():
    model = tiny_qwen3()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    group = make_group(with_images=False)
    with pytest.raises(ValueError, match="reentrant gradient checkpointing"):
        student_teacher_hidden(model, group, reuse_prefix=True)
    hs, _ = student_teacher_hidden(model, group, reuse_prefix=False)
    assert hs.requires_grad


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


# ------------------------------------------------------------------------------------------------
# RolloutGroup.from_text


def small_tokenizer(chat_template: str | None):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

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
    from PIL import Image

    from vsdpo.tiny import CHAT_TEMPLATE, build_processor

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
