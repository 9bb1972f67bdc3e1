"""Prefix sharing: student+teacher forward and backward, the prompt's KV cache reused vs plain full
sequences, on a tiny Qwen3-VL (random weights) on the CPU.

Shape of the issue: a prompt of 1024 tokens holding one image (256 placeholder tokens, 32x32
patches), G = 8 responses of 256 tokens, a feedback of 256 tokens holding the rollout's render (64
placeholder tokens). The student's loss is a weighted sum of its hidden states, so the timing holds
the two passes and the student's backward, not a loss kernel.

Run: ``pytest bench/test_sharing.py -q -s`` (about two minutes on two idle cores). Variants alternate
within each round; the speed-up is the median of the rounds' own ratios, each round's two variants
having run back to back under about the same outside load.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from vsdpo.sharing import RolloutGroup, student_teacher_hidden

transformers = pytest.importorskip("transformers")

IMAGE, VIDEO, VISION_START, VISION_END = 500, 501, 502, 503
PATCH, MERGE, TEMPORAL = 16, 2, 2
PROMPT_TOKENS, RESPONSE_TOKENS, FEEDBACK_TOKENS, GROUP_SIZE = 1024, 256, 256, 8
ROUNDS = 5


def tiny_qwen3_vl(hidden_size: int = 128, num_layers: int = 4):
    config = transformers.Qwen3VLConfig(
        text_config=dict(
            vocab_size=512,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=hidden_size // 32,
            num_key_value_heads=hidden_size // 64,
            head_dim=32,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 4, 4]},
        ),
        vision_config=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=2,
            patch_size=PATCH,
            spatial_merge_size=MERGE,
            temporal_patch_size=TEMPORAL,
            out_hidden_size=hidden_size,
            num_position_embeddings=256,
            deepstack_visual_indexes=[0, 1],
        ),
        image_token_id=IMAGE,
        video_token_id=VIDEO,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.Qwen3VLForConditionalGeneration(config).float().train()


def with_image(total_tokens: int, grid_hw: int, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``total_tokens`` ids holding one image of grid_hw x grid_hw patches, its patches and grid."""
    image_tokens = grid_hw * grid_hw // MERGE**2
    text = torch.randint(0, 400, (total_tokens - image_tokens - 2,), generator=generator)
    placeholder = torch.tensor([VISION_START] + [IMAGE] * image_tokens + [VISION_END])
    ids = torch.cat([text[:8], placeholder, text[8:]])
    pixels = torch.randn(grid_hw * grid_hw, 3 * TEMPORAL * PATCH * PATCH, generator=generator)
    return ids, pixels, torch.tensor([[1, grid_hw, grid_hw]])


def make_group(feedback_tokens: int | None = FEEDBACK_TOKENS) -> RolloutGroup:
    g = torch.Generator().manual_seed(0)
    prompt, prompt_pixels, prompt_grid = with_image(PROMPT_TOKENS, 32, g)
    feedback = [with_image(feedback_tokens, 16, g) for _ in range(GROUP_SIZE)] if feedback_tokens else None
    return RolloutGroup(
        prompt_ids=prompt,
        prompt_pixel_values=prompt_pixels,
        prompt_image_grid_thw=prompt_grid,
        response_ids=[torch.randint(0, 400, (RESPONSE_TOKENS,), generator=g) for _ in range(GROUP_SIZE)],
        feedback_ids=[f[0] for f in feedback] if feedback else None,
        feedback_pixel_values=[f[1] for f in feedback] if feedback else None,
        feedback_image_grid_thw=[f[2] for f in feedback] if feedback else None,
    )


def forward_backward(model, group, reuse_prefix: bool) -> None:
    model.zero_grad(set_to_none=True)
    out = student_teacher_hidden(model, group, reuse_prefix=reuse_prefix)
    (out.student_hidden.square().mean()).backward()


def forward_only(model, group) -> None:
    with torch.no_grad():
        student_teacher_hidden(model, group, reuse_prefix=True)


def interleaved_seconds(benchmark, fns: dict, rounds: int = ROUNDS) -> dict:
    """Per variant, the median and the minimum over ``rounds`` rounds, variants alternating within a
    round so that load from other processes falls on all of them alike (pytest-benchmark times the
    rounds)."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}

    def one_round():
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)
    return {name: {"median": statistics.median(t), "min": min(t), "rounds": t} for name, t in times.items()}


def test_prefix_sharing_speedup(benchmark, bench_record):
    model = tiny_qwen3_vl()
    group = make_group()
    seconds = interleaved_seconds(
        benchmark,
        {
            "full_sequences": lambda: forward_backward(model, group, reuse_prefix=False),
            "reuse_prefix": lambda: forward_backward(model, group, reuse_prefix=True),
        },
    )
    plain, shared = seconds["full_sequences"], seconds["reuse_prefix"]
    # Each round's own ratio: both variants ran back to back, under about the same outside load.
    per_round = [p / s for p, s in zip(plain["rounds"], shared["rounds"], strict=True)]
    speedup = {"median": statistics.median(per_round), "min": min(per_round)}
    bench_record(
        "sharing_student_teacher_fwd_bwd",
        device="cpu",
        model="tiny Qwen3-VL (text hidden 128, 4 layers; vision hidden 64, depth 2), float32, sdpa",
        shape={
            "prompt_tokens": PROMPT_TOKENS,
            "prompt_image_tokens": 256,
            "group_size": GROUP_SIZE,
            "response_tokens": RESPONSE_TOKENS,
            "feedback_tokens": FEEDBACK_TOKENS,
            "feedback_image_tokens": 64,
        },
        seconds=seconds,
        ratios={
            "speedup_reuse_prefix_median_of_rounds": speedup["median"],
            "speedup_reuse_prefix_worst_round": speedup["min"],
        },
        rounds=ROUNDS,
    )
    print(
        f"\nfull sequences {plain['median']:.2f} s, reuse prefix {shared['median']:.2f} s (medians); "
        f"speed-up {speedup['median']:.2f}x (median of rounds), {speedup['min']:.2f}x (worst round)"
    )


def test_teacher_cost_follows_feedback_plus_response(benchmark, bench_record):
    """Teacher time = (student + teacher forward) - (student forward alone), at two feedback lengths."""
    model = tiny_qwen3_vl()
    groups = {
        "student_only": make_group(None),
        "feedback_256": make_group(256),
        "feedback_768": make_group(768),
    }
    seconds = interleaved_seconds(
        benchmark, {name: (lambda g=g: forward_only(model, g)) for name, g in groups.items()}
    )
    fastest = {name: t["min"] for name, t in seconds.items()}
    teacher = {f: fastest[f"feedback_{f}"] - fastest["student_only"] for f in (256, 768)}
    fed = {f: f + RESPONSE_TOKENS - 1 for f in teacher}
    time_ratio = teacher[768] / teacher[256]
    bench_record(
        "sharing_teacher_cost_vs_feedback_length",
        device="cpu",
        shape={"prompt_tokens": PROMPT_TOKENS, "group_size": GROUP_SIZE, "response_tokens": RESPONSE_TOKENS},
        seconds={**seconds, **{f"teacher_feedback_{f}_min": t for f, t in teacher.items()}},
        ratios={
            "teacher_time_768_over_256": time_ratio,
            "fed_tokens_768_over_256": fed[768] / fed[256],
            "full_sequence_tokens_768_over_256": (PROMPT_TOKENS + fed[768]) / (PROMPT_TOKENS + fed[256]),
        },
        rounds=ROUNDS,
    )
    print(f"\nteacher time ratio {time_ratio:.2f}, fed-token ratio {fed[768] / fed[256]:.2f}")
