"""``nn.Module`` wrapper for trainers that hold their losses as modules."""

from __future__ import annotations

import torch
from torch import nn

from vsdpo_kernels.config import SDPOLossConfig, SDPOLossOutput
from vsdpo_kernels.loss import fused_linear_sdpo_loss


class FusedLinearSDPOLoss(nn.Module):
    """``FusedLinearSDPOLoss(config)(student_hidden, weight, targets, **kw)`` == ``fused_linear_sdpo_loss``."""

    def __init__(self, config: SDPOLossConfig | None = None, impl: str = "auto"):
        super().__init__()
        self.config = config or SDPOLossConfig()
        self.impl = impl

    def forward(
        self, student_hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, **kwargs
    ) -> SDPOLossOutput:
        kwargs.setdefault("config", self.config)
        kwargs.setdefault("impl", self.impl)
        return fused_linear_sdpo_loss(student_hidden, weight, targets, **kwargs)

    def extra_repr(self) -> str:
        return f"config={self.config}, impl={self.impl!r}"
