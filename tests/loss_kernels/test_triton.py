"""The Triton kernels one by one (``vsdpo_kernels/triton/``: stats, mixture, backward), then the backend
through the public function, against float64.

Without a GPU they run under TRITON_INTERPRET=1 (set in tests/conftest.py), so the shapes stay small.
"""

from __future__ import annotations

import pytest
import torch

from vsdpo_kernels import SDPOLossConfig, linear_logprobs, torch_chunked
from vsdpo_kernels.triton import backend
from vsdpo_kernels.triton.backward import backward_pass
from vsdpo_kernels.triton.common import Launch
from vsdpo_kernels.triton.mixture import mixture_pass
from vsdpo_kernels.triton.stats import stats_pass

from .cases import assert_matches, make_case, oracle, rel_err, run

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMALL = dict(B=2, T=9, D=40, V=83)  # D and V are not multiples of any block size


def flat(case):
    B, T, D = case["student_hidden"].shape
    hs = case["student_hidden"].reshape(B * T, D)
    ht = case["teacher_hidden"].reshape(B * T, D)
    y = case["targets"].clamp(min=0).reshape(-1)
    return hs, ht, y


def float64_stats(case, *, temperature, beta):
    hs, ht, y = flat(case)
    return torch_chunked.stats(
        hs.double().cpu(),
        ht.double().cpu(),
        case["weight"].double().cpu(),
        y.cpu(),
        temperature=temperature,
        beta=beta,
    )


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_stats_kernel_matches_float64(beta):
    case = make_case(seed=21, mask=False, device=DEVICE, **SMALL)
    hs, ht, y = flat(case)
    got = stats_pass(hs, ht, case["weight"], y, temperature=0.9, beta=beta, launch=Launch.for_hidden(hs))
    want = float64_stats(case, temperature=0.9, beta=beta)
    names = ["logp", "entropy", "lse_s", "lse_t"]
    if beta in (0.0, 1.0):
        names.append("divergence")
    else:  # the mixture's divergence is the mixture kernel's
        assert got.divergence is None
    for name in names:
        assert rel_err(getattr(got, name).cpu(), getattr(want, name)) < 1e-5, name


@pytest.mark.parametrize("beta", [0.25, 0.5])
def test_mixture_kernel_matches_float64(beta):
    case = make_case(seed=21, mask=False, device=DEVICE, **SMALL)
    hs, ht, y = flat(case)
    launch = Launch.for_hidden(hs)
    st = stats_pass(hs, ht, case["weight"], y, temperature=0.9, beta=beta, launch=launch)
    divergence, G = mixture_pass(
        hs, ht, case["weight"], st.lse_s, st.lse_t, temperature=0.9, beta=beta, launch=launch
    )
    want = float64_stats(case, temperature=0.9, beta=beta)
    assert rel_err(divergence.cpu(), want.divergence) < 1e-5
    assert rel_err(G.cpu(), want.G) < 1e-5


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_backward_kernel_matches_float64(beta):
    case = make_case(seed=22, mask=False, device=DEVICE, **SMALL)
    hs, ht, y = flat(case)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(hs.shape[0], generator=g, dtype=torch.float64)
    b = torch.rand(hs.shape[0], generator=g, dtype=torch.float64)
    want_st = float64_stats(case, temperature=1.1, beta=beta)
    want = torch_chunked.grads(
        hs.double().cpu(),
        ht.double().cpu(),
        case["weight"].double().cpu(),
        y.cpu(),
        want_st,
        a,
        b,
        temperature=1.1,
        beta=beta,
    )
    st = backend.stats(hs, ht, case["weight"], y, temperature=1.1, beta=beta)
    got = backward_pass(
        hs,
        ht,
        case["weight"],
        y,
        st,
        a.float().to(DEVICE),
        b.float().to(DEVICE),
        temperature=1.1,
        beta=beta,
        launch=Launch.for_hidden(hs),
    )
    assert rel_err(got[0].cpu(), want[0]) < 1e-5
    assert rel_err(got[1].cpu(), want[1]) < 1e-5


@pytest.mark.parametrize("beta,loss_type", [(0.0, "grpo"), (0.5, "dapo"), (1.0, "dr_grpo"), (0.5, "bnpo")])
def test_public_function_matches_oracle(beta, loss_type):
    case = make_case(seed=23, device=DEVICE, **SMALL)  # with a fully masked row
    config = SDPOLossConfig(beta=beta, loss_type=loss_type, kl_beta=0.05, temperature=0.8)
    out, grad_hs, grad_w = run(case, config, "triton")
    expected = oracle({k: v.cpu() for k, v in case.items()}, config)
    assert_matches(out, grad_hs.cpu(), grad_w.cpu(), expected, 2e-5)


def test_bf16_inputs():
    case = make_case(seed=24, dtype=torch.bfloat16, device=DEVICE, **SMALL)
    config = SDPOLossConfig(beta=0.5)
    out, grad_hs, grad_w = run(case, config, "triton")
    assert grad_hs.dtype == torch.bfloat16
    assert_matches(
        out, grad_hs.cpu(), grad_w.cpu(), oracle({k: v.cpu() for k, v in case.items()}, config), 1e-2
    )


def test_linear_logprobs_triton():
    case = make_case(seed=25, teacher=False, mask=False, device=DEVICE, **SMALL)
    hs = case["student_hidden"].detach().clone().requires_grad_()
    logp, entropy = linear_logprobs(hs, case["weight"], case["targets"], temperature=1.3, impl="triton")
    logp.sum().backward()
    hs64 = case["student_hidden"].detach().cpu().double().requires_grad_()
    logp64, entropy64 = linear_logprobs(
        hs64, case["weight"].cpu().double(), case["targets"].cpu(), 1.3, "reference"
    )
    logp64.sum().backward()
    assert rel_err(logp.cpu(), logp64) < 1e-5 and rel_err(entropy.cpu(), entropy64) < 1e-5
    assert rel_err(hs.grad.cpu(), hs64.grad) < 1e-5


@pytest.mark.gpu
def test_gpu_qwen_vocab_bf16_against_float64():
    case = make_case(B=2, T=64, D=256, V=151936, seed=26, dtype=torch.bfloat16, device="cuda")
    config = SDPOLossConfig(beta=0.5)
    out, grad_hs, grad_w = run(case, config, "triton")
    expected = oracle({k: v.cpu() for k, v in case.items()}, config)
    assert_matches(out, grad_hs.cpu(), grad_w.cpu(), expected, 1e-2)
