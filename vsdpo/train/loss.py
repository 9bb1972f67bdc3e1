"""The update's loss: the fused SDPO loss (vsdpo_kernels) on the policy's output layer.

``LossHead.of(model, config)`` holds the loss as the update runs it: ``config.loss_config()``
(``algorithm.loss`` with the sampling temperature; ``beta``, the weights and the normaliser reach the
kernel from there) and ``algorithm.loss_impl``. ``head(inputs)`` takes a ``vsdpo_kernels.LossInputs``
whose weight is the output layer's (``head.weight``) and returns the ``SDPOLossOutput`` of
``fused_linear_sdpo_loss_from``.

The fused loss reads the output layer's weight instead of calling the layer on the hidden states, so
under FSDP2 it runs as a forward of that layer (``vsdpo.train.distributed.as_forward_of``): the
weight is gathered for the call and its gradient reduced after the backward.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import torch
from torch import nn

from vsdpo.train import distributed
from vsdpo_kernels import LossInputs, SDPOLossConfig, SDPOLossOutput, fused_linear_sdpo_loss_from

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from vsdpo.train.config import TrainConfig


class LossHead(nn.Module):
    """The fused SDPO loss over ``output_layer``'s weight, with its config and implementation."""

    def __init__(self, output_layer: nn.Module, config: SDPOLossConfig, impl: str = "auto"):
        super().__init__()
        self.output_layer = output_layer
        self.config, self.impl = config, impl

    @classmethod
    def of(cls, model: PreTrainedModel, config: TrainConfig) -> LossHead:
        """The loss of ``model``'s output layer as ``config`` sets it."""
        return cls(model.get_output_embeddings(), config.loss_config(), config.algorithm.loss_impl)

    @property
    def weight(self) -> torch.Tensor:
        """The output layer's weight: the ``weight`` of the ``LossInputs`` this head takes."""
        return self.output_layer.weight

    def forward(self, inputs: LossInputs) -> SDPOLossOutput:
        if inputs.weight is not self.output_layer.weight:
            raise ValueError(
                "inputs.weight: expected the output layer's weight (LossHead.weight), got another tensor "
                f"of shape {tuple(inputs.weight.shape)}"
            )
        # Only the hidden states go through FSDP2's hooks: ``inputs`` holds the sharded weight.
        loss_of = functools.partial(self._fused, inputs)
        _, out = distributed.as_forward_of(self.output_layer, loss_of, inputs.student_hidden)
        return out

    def _fused(self, inputs: LossInputs, student_hidden: torch.Tensor) -> tuple[torch.Tensor, SDPOLossOutput]:
        # Under FSDP2 ``student_hidden`` comes back hooked for the gradient's reduction and the
        # layer's weight is the gathered one; the loss goes back in a tuple, where FSDP2 sees it.
        inputs = dataclasses.replace(inputs, student_hidden=student_hidden, weight=self.output_layer.weight)
        out = fused_linear_sdpo_loss_from(inputs, config=self.config, impl=self.impl)
        return out.loss, out

    def extra_repr(self) -> str:
        return f"config={self.config}, impl={self.impl!r}"
