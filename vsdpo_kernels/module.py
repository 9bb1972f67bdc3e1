"""``nn.Module`` wrapper for trainers that hold their losses as modules."""

from __future__ import annotations

import torch
from torch import nn

from vsdpo_kernels.config import SDPOLossConfig, SDPOLossOutput
from vsdpo_kernels.inputs import LossInputs
from vsdpo_kernels.loss import fused_linear_sdpo_loss, fused_linear_sdpo_loss_from


class FusedLinearSDPOLoss(nn.Module):
    """``FusedLinearSDPOLoss(config)(student_hidden, weight, targets, **kw)`` == ``fused_linear_sdpo_loss``;
    ``FusedLinearSDPOLoss(config)(inputs)`` takes the tensors as one ``LossInputs``."""

    def __init__(self, config: SDPOLossConfig | None = None, impl: str = "auto"):
        super().__init__()
        self.config = config or SDPOLossConfig()
        self.impl = impl

    def forward(
        self,
        student_hidden: torch.Tensor | LossInputs,
        weight: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        **kwargs,
    ) -> SDPOLossOutput:
        kwargs.setdefault("config", self.config)
        kwargs.setdefault("impl", self.impl)
        if isinstance(student_hidden, LossInputs):
            tensors = sorted(set(kwargs) - {"config", "impl", "grad_in_forward"})
            if weight is not None or targets is not None or tensors:
                raise TypeError(
                    "FusedLinearSDPOLoss: expected either one LossInputs or the tensors, got a LossInputs "
                    f"and {', '.join(tensors) or 'weight/targets'}"
                )
            return fused_linear_sdpo_loss_from(student_hidden, **kwargs)
        return fused_linear_sdpo_loss(student_hidden, weight, targets, **kwargs)

    def extra_repr(self) -> str:
        return f"config={self.config}, impl={self.impl!r}"
