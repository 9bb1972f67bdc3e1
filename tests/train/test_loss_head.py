"""The update's loss: ``LossHead`` is the kernel's loss on the output layer's weight, with its config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vsdpo.train.config import load_config
from vsdpo.train.loss import LossHead
from vsdpo_kernels import LossInputs, SDPOLossConfig, fused_linear_sdpo_loss_from


def _inputs(layer: nn.Linear, weight: torch.Tensor | None = None) -> LossInputs:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, layer.in_features, generator=generator, requires_grad=True)
    return LossInputs(
        hidden,
        layer.weight if weight is None else weight,
        torch.randint(layer.out_features, (2, 5), generator=generator),
        teacher_hidden=torch.randn(2, 5, layer.in_features, generator=generator),
        advantages=torch.tensor([1.0, -1.0]),
    )


def test_the_head_is_the_kernel_on_the_output_layer_with_the_config_it_holds():
    torch.manual_seed(0)
    layer = nn.Linear(8, 32, bias=False)
    config = SDPOLossConfig(beta=0.3, sd_weight=0.5)
    head = LossHead(layer, config, impl="torch")
    inputs = _inputs(layer)
    out = head(inputs)
    expected = fused_linear_sdpo_loss_from(inputs, config=config, impl="torch")
    assert torch.equal(out.loss, expected.loss) and torch.equal(out.logprobs, expected.logprobs)
    out.loss.backward()
    assert layer.weight.grad is not None and inputs.student_hidden.grad is not None


def test_of_takes_the_update_s_loss_config_and_impl():
    config = load_config(None, {"algorithm.loss.beta": 0.25, "algorithm.loss_impl": "torch"})
    model = nn.Module()
    model.lm_head = nn.Linear(4, 16, bias=False)
    model.get_output_embeddings = lambda: model.lm_head
    head = LossHead.of(model, config)
    assert head.config == config.loss_config() and head.config.beta == 0.25
    assert head.impl == "torch" and head.weight is model.lm_head.weight


def test_a_weight_other_than_the_output_layer_s_is_refused():
    layer = nn.Linear(8, 32, bias=False)
    head = LossHead(layer, SDPOLossConfig(), impl="torch")
    with pytest.raises(ValueError, match=r"inputs.weight: expected the output layer's weight"):
        head(_inputs(layer, weight=layer.weight.detach().clone()))
