"""``LossInputs``: the typed form of the loss's tensors, its checks, and the calls that take it."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from vsdpo_kernels import (
    FusedLinearSDPOLoss,
    LossInputs,
    SDPOLossConfig,
    fused_linear_sdpo_loss,
    fused_linear_sdpo_loss_from,
)
from vsdpo_kernels.inputs import check_inputs

from .cases import make_case


def test_the_public_keywords_are_the_fields_of_loss_inputs():
    options = {"config", "impl", "grad_in_forward"}
    keywords = set(inspect.signature(fused_linear_sdpo_loss).parameters) - options
    assert keywords == {f.name for f in dataclasses.fields(LossInputs)}


def test_loss_inputs_is_frozen_and_compares_by_identity():
    inputs = LossInputs(**make_case(seed=51))
    with pytest.raises(dataclasses.FrozenInstanceError):
        inputs.mask = None
    assert inputs == inputs and inputs != LossInputs(**make_case(seed=51))


def test_check_inputs_fills_in_the_defaults_and_keeps_the_hidden_states():
    case = make_case(seed=52, mask=False, old=False, credit=False)
    inputs = LossInputs(**case, num_items_in_batch=torch.tensor(12))
    checked = check_inputs(inputs)
    B, T = case["targets"].shape
    assert checked.student_hidden is inputs.student_hidden and checked.weight is inputs.weight
    assert checked.mask.dtype == torch.bool and bool(checked.mask.all())
    assert checked.advantages.shape == (B, T) and checked.advantages.dtype == torch.float32
    assert checked.old_logprobs is None and checked.credit is None
    assert checked.num_items_in_batch == 12.0 and type(checked.num_items_in_batch) is float
    assert checked.targets.dtype == torch.int64


def test_check_inputs_refuses_anything_else_by_name():
    with pytest.raises(TypeError, match=r"inputs: expected a LossInputs, got dict"):
        check_inputs(make_case(seed=53))


@pytest.mark.parametrize("impl", ["torch", "cpu"])
def test_the_typed_call_equals_the_keyword_call(impl):
    case = make_case(seed=54)
    config = SDPOLossConfig(beta=0.5, kl_beta=0.05)
    by_keywords = fused_linear_sdpo_loss(**case, config=config, impl=impl)
    typed = fused_linear_sdpo_loss_from(LossInputs(**case), config=config, impl=impl)
    module = FusedLinearSDPOLoss(config, impl=impl)(LossInputs(**case))
    for out in (typed, module):
        assert torch.equal(out.loss, by_keywords.loss)
        assert torch.equal(out.logprobs, by_keywords.logprobs)
        assert torch.equal(out.divergence, by_keywords.divergence)


def test_the_module_takes_either_the_typed_inputs_or_the_tensors():
    case = make_case(seed=55)
    with pytest.raises(TypeError, match=r"expected either one LossInputs or the tensors.*credit"):
        FusedLinearSDPOLoss()(LossInputs(**case), credit=case["credit"])
