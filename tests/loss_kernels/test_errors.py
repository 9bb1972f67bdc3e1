"""Bad input gets an error that names the argument, the expected and the received."""

from __future__ import annotations

import pytest
import torch

from vsdpo_kernels import SDPOLossConfig, fused_linear_sdpo_loss, linear_logprobs

from .cases import make_case


def call(**overrides):
    case = make_case(seed=41, mask=False)
    case.update(overrides)
    config = case.pop("config", SDPOLossConfig())
    impl = case.pop("impl", "torch")
    return fused_linear_sdpo_loss(**case, config=config, impl=impl)


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        (dict(student_hidden=torch.randn(3, 7)), r"student_hidden: expected \[B, T, D\]"),
        (dict(weight=torch.randn(53, 23)), r"weight: expected \[V, D\] with D=24"),
        (dict(teacher_hidden=torch.randn(3, 6, 24)), r"teacher_hidden: expected shape \(3, 7, 24\)"),
        (dict(targets=torch.zeros(3, 6, dtype=torch.long)), r"targets: expected shape \(3, 7\)"),
        (
            dict(targets=torch.full((3, 7), 53)),
            r"targets: expected token ids in \[0, 53\).*got 53 at \[0, 0\]",
        ),
        (dict(targets=torch.zeros(3, 7)), r"targets: expected an integer dtype"),
        (dict(advantages=torch.randn(4)), r"advantages: expected \[B\]=3"),
        (dict(credit=-torch.ones(3, 7)), r"credit: expected weights >= 0"),
        (dict(mask=torch.ones(3, 7)), r"mask: expected dtype torch.bool, got torch.float32"),
        (
            dict(weight=torch.randn(53, 24, dtype=torch.float64)),
            r"weight: expected dtype torch.float32 .*got torch.float64",
        ),
        (
            dict(teacher_hidden=torch.randn(3, 7, 24).bfloat16()),
            r"teacher_hidden: expected dtype torch.float32",
        ),
        (dict(impl="fastest"), r"impl: expected one of"),
        (
            dict(config=SDPOLossConfig(kl_beta=0.1), ref_logprobs=None),
            r"ref_logprobs: required when config.kl_beta > 0",
        ),
        (dict(old_logprobs=torch.full((3, 7), float("nan"))), r"old_logprobs: expected finite values"),
    ],
)
def test_bad_inputs_name_the_argument(overrides, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        call(**overrides)


def test_teacher_hidden_that_requires_grad_is_refused():
    with pytest.raises(ValueError, match=r"teacher_hidden: expected a tensor without grad.*detach"):
        call(teacher_hidden=torch.randn(3, 7, 24, requires_grad=True))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_hidden_states_are_an_error_not_a_silent_nan(bad):
    hs = torch.randn(3, 7, 24)
    hs[1, 2, 3] = bad
    with pytest.raises(ValueError, match="student_hidden: expected finite values"):
        call(student_hidden=hs)
    ht = torch.randn(3, 7, 24)
    ht[0, 0, 0] = bad
    with pytest.raises(ValueError, match="teacher_hidden: expected finite values"):
        call(teacher_hidden=ht)


def test_targets_out_of_range_are_fine_where_masked():
    case = make_case(seed=42)  # masked targets are -100
    out = fused_linear_sdpo_loss(**case, impl="torch")
    assert torch.isfinite(out.loss)


def test_cpu_impl_refuses_other_devices_and_devices_must_match():
    meta = torch.randn(3, 7, 24, device="meta")
    with pytest.raises(ValueError, match=r"weight: expected device meta"):
        call(student_hidden=meta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_and_cpu_tensors_mixed():
    with pytest.raises(ValueError, match=r"weight: expected device cuda"):
        call(student_hidden=torch.randn(3, 7, 24, device="cuda"))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"SDPOLossConfig.beta: expected a float in \[0, 1\], got 1.5"):
        SDPOLossConfig(beta=1.5)
    with pytest.raises(ValueError, match=r"SDPOLossConfig.loss_type: expected one of"):
        SDPOLossConfig(loss_type="sum")
    with pytest.raises(ValueError, match=r"temperature: expected > 0"):
        linear_logprobs(
            torch.randn(1, 2, 3), torch.randn(5, 3), torch.zeros(1, 2, dtype=torch.long), temperature=0
        )


def test_auto_falls_back_to_torch_with_one_warning_when_the_cpu_kernel_cannot_build(monkeypatch):
    import warnings

    from vsdpo_kernels import cpu, resolve_impl

    monkeypatch.setattr(cpu, "_extension", None)
    monkeypatch.setattr(cpu, "_failure", "the C++ CPU kernel could not be built: no compiler")
    monkeypatch.setattr(cpu, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_impl("auto", torch.device("cpu")) == "torch"
        assert resolve_impl("auto", torch.device("cpu")) == "torch"
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "no compiler" in messages[0] and "falls back to 'torch'" in messages[0]
    out = call(impl="auto")
    assert torch.isfinite(out.loss)
