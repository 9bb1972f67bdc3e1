"""``num_items_in_batch`` divides every token's term: a non-finite one is refused, not turned into 0."""

from __future__ import annotations

import math

import pytest
import torch

from vsdpo_kernels import SDPOLossConfig, fused_linear_sdpo_loss

from .cases import make_case


def call(num_items_in_batch, impl="torch"):
    case = make_case(seed=7, mask=False)
    case.pop("config", None)
    case.pop("impl", None)
    return fused_linear_sdpo_loss(
        **case, config=SDPOLossConfig(loss_type="dapo"), impl=impl, num_items_in_batch=num_items_in_batch
    )


@pytest.mark.parametrize("impl", ["torch", "reference"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, torch.tensor(math.inf)])
def test_non_finite_num_items_in_batch_names_the_argument(impl, value):
    with pytest.raises(
        ValueError, match=r"num_items_in_batch: expected a finite number > 0, got (-?inf|nan)"
    ):
        call(value, impl)


@pytest.mark.parametrize("value", ["many", torch.ones(2), object()], ids=["str", "tensor2", "object"])
def test_num_items_in_batch_that_is_not_a_number(value):
    with pytest.raises(ValueError, match=r"num_items_in_batch: expected a finite number > 0"):
        call(value)


def test_a_finite_count_still_scales_the_loss():
    half = call(42.0).loss
    full = call(21.0).loss
    assert torch.isfinite(full) and full != 0
    torch.testing.assert_close(half * 2, full)
