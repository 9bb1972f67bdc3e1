"""What the kernel tests share: fresh random inputs, the float64 oracle they are compared with, a run
of the public function with gradients, and the comparison with the oracle."""

from __future__ import annotations

import pytest
import torch

from vsdpo_kernels import LossInputs, SDPOLossConfig, fused_linear_sdpo_loss
from vsdpo_kernels.reference import reference_sdpo_loss

# Relative (L2) error bounds against float64. float32: accumulation order only. bf16: the inputs are
# rounded to bf16 first for both sides, so the bound covers the bf16 rounding of the gradients.
BOUNDS = {torch.float32: 2e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def make_case(
    B=3,
    T=7,
    D=24,
    V=53,
    *,
    seed=0,
    dtype=torch.float32,
    teacher=True,
    advantages="seq",
    old=True,
    ref=True,
    credit=True,
    mask=True,
    device="cpu",
):
    """Inputs near a realistic regime: behaviour log-probs close to the current ones, so that some
    ratios are clipped and most are not; a fully masked row when ``mask``."""
    g = torch.Generator().manual_seed(seed)
    f64 = dict(dtype=torch.float64, generator=g)
    hs = torch.randn(B, T, D, **f64)
    weight = torch.randn(V, D, **f64) / D**0.5 * 3
    ht = hs + 0.7 * torch.randn(B, T, D, **f64)
    targets = torch.randint(0, V, (B, T), generator=g)
    with torch.no_grad():
        logp = torch.log_softmax(hs @ weight.T, -1).gather(-1, targets[..., None]).squeeze(-1)
    case = dict(student_hidden=hs.to(dtype), weight=weight.to(dtype), targets=targets)
    if teacher:
        case["teacher_hidden"] = ht.to(dtype)
    if advantages == "seq":
        case["advantages"] = torch.randn(B, **f64)
    elif advantages == "token":
        case["advantages"] = torch.randn(B, T, **f64)
    if old:
        case["old_logprobs"] = logp + 0.3 * torch.randn(B, T, **f64)
    if ref:
        case["ref_logprobs"] = logp + 0.5 * torch.randn(B, T, **f64)
    if credit:
        case["credit"] = 1 + 2 * torch.rand(B, T, **f64) * (torch.rand(B, T, generator=g) < 0.4)
    if mask:
        m = torch.rand(B, T, generator=g) < 0.8
        m[0, 0] = True
        if B > 1:
            m[-1] = False  # a fully masked row
        case["mask"] = m
        case["targets"] = torch.where(m, targets, torch.full_like(targets, -100))
    return {k: v.to(device) for k, v in case.items()}


def oracle(case: dict, config: SDPOLossConfig):
    """Loss, per-token outputs and gradients in float64 on materialised logits."""
    hs = case["student_hidden"].detach().double().requires_grad_()
    weight = case["weight"].detach().double().requires_grad_()
    tensors = {**case, "student_hidden": hs, "weight": weight}
    if "teacher_hidden" in case:
        tensors["teacher_hidden"] = case["teacher_hidden"].double()
    names = ("loss", "pg", "sd", "logp", "div", "ent", "clip")
    expected = dict(zip(names, reference_sdpo_loss(LossInputs(**tensors), config), strict=True))
    expected["loss"].backward()
    expected["loss"] = expected["loss"].detach()
    return {**expected, "grad_hs": hs.grad, "grad_w": weight.grad}


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).norm() / expected.norm().clamp(min=1e-12))


def run(case, config, impl, grad_in_forward=True):
    """The public function on fresh leaves of ``case``; its output and the two gradients."""
    hs = case["student_hidden"].detach().clone().requires_grad_()
    weight = case["weight"].detach().clone().requires_grad_()
    kwargs = {k: v for k, v in case.items() if k not in ("student_hidden", "weight", "targets")}
    out = fused_linear_sdpo_loss(
        hs, weight, case["targets"], config=config, impl=impl, grad_in_forward=grad_in_forward, **kwargs
    )
    out.loss.backward()
    return out, hs.grad, weight.grad


def assert_matches(out, grad_hs, grad_w, expected, bound):
    loss = float(out.loss.detach())
    assert abs(loss - float(expected["loss"])) <= bound * max(1.0, abs(float(expected["loss"])))
    # The aggregated terms sum values of both signs: compare on the scale of 1, not of the sum.
    for name, key in (("pg_loss", "pg"), ("sd_loss", "sd")):
        got, want = float(getattr(out, name)), float(expected[key])
        assert abs(got - want) <= bound * max(1.0, abs(want)), (name, got, want)
    assert rel_err(out.logprobs, expected["logp"]) < bound
    assert rel_err(out.entropy, expected["ent"]) < bound
    if float(expected["div"].norm()) > 1e-4:
        assert rel_err(out.divergence, expected["div"]) < bound
    else:  # no teacher: nothing to diverge
        assert float((out.divergence.double() - expected["div"]).abs().max()) < 1e-5
    assert float(out.clip_fraction) == pytest.approx(float(expected["clip"]), abs=1e-6)
    assert rel_err(grad_hs, expected["grad_hs"]) < bound
    assert rel_err(grad_w, expected["grad_w"]) < bound
    assert out.logprobs.requires_grad is False and out.divergence.requires_grad is False
