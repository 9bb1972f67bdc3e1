"""Tiny random models of the architectures the shared passes serve, and rollout groups to feed them."""

from __future__ import annotations

import torch
import transformers

from vsdpo.sharing import RolloutGroup, student_teacher_hidden

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
