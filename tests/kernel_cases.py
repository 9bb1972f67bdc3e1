"""Fresh random inputs for the loss tests, and the float64 oracle they are compared with."""

from __future__ import annotations

import torch

from vsdpo_kernels import SDPOLossConfig
from vsdpo_kernels.reference import reference_sdpo_loss


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
    kwargs = {k: v for k, v in case.items() if k not in ("student_hidden", "weight", "targets")}
    if "teacher_hidden" in kwargs:
        kwargs["teacher_hidden"] = kwargs["teacher_hidden"].double()
    mask = case.get("mask")
    targets = case["targets"] if mask is None else torch.where(mask, case["targets"], 0)
    loss, pg, sd, logp, div, ent, clip = reference_sdpo_loss(hs, weight, targets, config=config, **kwargs)
    loss.backward()
    return dict(
        loss=loss.detach(),
        pg=pg,
        sd=sd,
        logp=logp,
        div=div,
        ent=ent,
        clip=clip,
        grad_hs=hs.grad,
        grad_w=weight.grad,
    )


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return float((actual - expected).norm() / expected.norm().clamp(min=1e-12))
