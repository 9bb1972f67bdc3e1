"""fused_linear_sdpo_loss: every implementation against the float64 oracle, gradients included."""

from __future__ import annotations

import itertools
import zlib

import pytest
import torch

from vsdpo_kernels import FusedLinearSDPOLoss, SDPOLossConfig, fused_linear_sdpo_loss, linear_logprobs

from .cases import BOUNDS, assert_matches, make_case, oracle, rel_err, run

FAST_IMPLS = ["torch", "cpu"]


@pytest.mark.parametrize("impl", FAST_IMPLS)
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_matches_oracle_all_terms(impl, beta, loss_type):
    case = make_case(seed=zlib.crc32(f"{beta}-{loss_type}".encode()) % 1000)  # the same in every run
    config = SDPOLossConfig(
        beta=beta, loss_type=loss_type, kl_beta=0.05, temperature=0.8, sd_weight=0.7, pg_weight=1.3
    )
    expected = oracle(case, config)
    assert_matches(*run(case, config, impl), expected, BOUNDS[torch.float32])


FEATURES = dict(
    teacher=[True, False], advantages=[None, "seq", "token"], old=[True, False], credit=[True, False]
)


@pytest.mark.parametrize("impl", FAST_IMPLS)
@pytest.mark.parametrize(
    "teacher,advantages,old,credit",
    [c for c in itertools.product(*FEATURES.values()) if c[0] or c[1] is not None],
)
def test_matches_oracle_feature_combinations(impl, teacher, advantages, old, credit):
    case = make_case(seed=7, teacher=teacher, advantages=advantages, old=old, credit=credit, ref=False)
    config = SDPOLossConfig(beta=0.5, loss_type="grpo")
    assert_matches(*run(case, config, impl), oracle(case, config), BOUNDS[torch.float32])


@pytest.mark.parametrize("impl", FAST_IMPLS)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
@pytest.mark.parametrize("V", [2, 17, 4097 + 13])
def test_temperatures_and_odd_vocab_sizes(impl, temperature, V):
    case = make_case(seed=V, V=V, mask=False)
    config = SDPOLossConfig(beta=0.3, temperature=temperature)
    assert_matches(*run(case, config, impl), oracle(case, config), BOUNDS[torch.float32])


@pytest.mark.parametrize("impl", FAST_IMPLS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(impl, dtype):
    case = make_case(seed=3, dtype=dtype)
    config = SDPOLossConfig(beta=0.5)
    out, grad_hs, grad_w = run(case, config, impl)
    assert grad_hs.dtype == dtype and grad_w.dtype == dtype
    assert_matches(out, grad_hs, grad_w, oracle(case, config), BOUNDS[dtype])


@pytest.mark.parametrize("impl", FAST_IMPLS)
def test_gradient_in_backward_equals_gradient_in_forward(impl):
    case = make_case(seed=11)
    config = SDPOLossConfig(beta=0.5, kl_beta=0.1)
    out_f, gh_f, gw_f = run(case, config, impl, grad_in_forward=True)
    out_b, gh_b, gw_b = run(case, config, impl, grad_in_forward=False)
    assert torch.allclose(out_f.loss, out_b.loss)
    assert rel_err(gh_b, gh_f) < 1e-6 and rel_err(gw_b, gw_f) < 1e-6


@pytest.mark.parametrize("impl", FAST_IMPLS + ["reference"])
def test_every_row_masked_gives_zero_loss_and_zero_gradients(impl):
    case = make_case(seed=5)
    case["mask"] = torch.zeros_like(case["mask"])
    out, grad_hs, grad_w = run(case, SDPOLossConfig(), impl)
    assert float(out.loss.detach()) == 0.0
    assert grad_hs is not None and float(grad_hs.abs().sum()) == 0.0 and float(grad_w.abs().sum()) == 0.0


def test_dapo_normaliser_from_num_items_in_batch():
    case = make_case(seed=2)
    config = SDPOLossConfig(loss_type="dapo")
    out_default = fused_linear_sdpo_loss(**case, config=config, impl="torch")
    tokens = int(case["mask"].sum())
    out_scaled = fused_linear_sdpo_loss(**case, config=config, impl="torch", num_items_in_batch=3 * tokens)
    assert float(out_scaled.loss.detach()) == pytest.approx(float(out_default.loss.detach()) / 3, rel=1e-5)
    expected = oracle({**case}, config)
    assert float(out_default.loss.detach()) == pytest.approx(float(expected["loss"]), rel=1e-5)


def test_credit_scales_the_term_not_the_normaliser():
    case = make_case(seed=4, advantages=None, credit=False)
    config = SDPOLossConfig(loss_type="bnpo")
    base = fused_linear_sdpo_loss(**case, config=config, impl="cpu")
    doubled = fused_linear_sdpo_loss(
        **case, credit=torch.full(case["targets"].shape, 2.0), config=config, impl="cpu"
    )
    assert float(doubled.sd_loss) == pytest.approx(2 * float(base.sd_loss), rel=1e-6)


@pytest.mark.parametrize("impl", FAST_IMPLS)
def test_linear_logprobs_values_and_gradient(impl):
    case = make_case(seed=9, teacher=False, mask=False)
    hs = case["student_hidden"].detach().clone().requires_grad_()
    weight = case["weight"].detach().clone().requires_grad_()
    logp, entropy = linear_logprobs(hs, weight, case["targets"], temperature=0.9, impl=impl)
    probe = torch.randn(logp.shape, generator=torch.Generator().manual_seed(1))
    (logp * probe).sum().backward()
    hs64 = case["student_hidden"].double().requires_grad_()
    w64 = case["weight"].double().requires_grad_()
    logp64, entropy64 = linear_logprobs(hs64, w64, case["targets"], temperature=0.9, impl="reference")
    (logp64 * probe.double()).sum().backward()
    assert rel_err(logp, logp64) < 2e-5 and rel_err(entropy, entropy64) < 2e-5
    assert rel_err(hs.grad, hs64.grad) < 2e-5 and rel_err(weight.grad, w64.grad) < 2e-5


def test_module_wrapper_and_auto_on_cpu():
    case = make_case(seed=1)
    module = FusedLinearSDPOLoss(SDPOLossConfig(beta=1.0))
    out = module(**case)
    direct = fused_linear_sdpo_loss(**case, config=SDPOLossConfig(beta=1.0), impl="cpu")
    assert torch.allclose(out.loss, direct.loss)
    assert "beta=1.0" in repr(module)


@pytest.mark.parametrize("impl", FAST_IMPLS)
def test_upstream_gradient_scales_the_result(impl):
    case = make_case(seed=12)
    config = SDPOLossConfig()
    out, grad_hs, grad_w = run(case, config, impl)
    hs = case["student_hidden"].detach().clone().requires_grad_()
    weight = case["weight"].detach().clone().requires_grad_()
    kwargs = {k: v for k, v in case.items() if k not in ("student_hidden", "weight", "targets")}
    scaled = fused_linear_sdpo_loss(hs, weight, case["targets"], config=config, impl=impl, **kwargs)
    (2.5 * scaled.loss).backward()
    assert rel_err(hs.grad, 2.5 * grad_hs) < 1e-6 and rel_err(weight.grad, 2.5 * grad_w) < 1e-6


@pytest.mark.parametrize("impl", ["reference", *FAST_IMPLS, "triton"])  # triton: interpreted on a CPU
@pytest.mark.parametrize("batch, length", [(0, 5), (3, 0)])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_an_empty_batch_gives_zero_loss_and_zero_gradients(impl, batch, length, loss_type):
    student = torch.randn(batch, length, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    out = fused_linear_sdpo_loss(
        student,
        weight,
        torch.randint(11, (batch, length)),
        teacher_hidden=torch.randn(batch, length, 8),
        advantages=torch.randn(batch),
        config=SDPOLossConfig(loss_type=loss_type),
        impl=impl,
    )
    out.loss.backward()
    assert out.loss.item() == 0.0 and out.logprobs.shape == (batch, length)
    assert student.grad.shape == student.shape and torch.equal(weight.grad, torch.zeros_like(weight))
