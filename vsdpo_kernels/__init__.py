"""Fused linear SDPO + GRPO loss kernels.

Depends on torch (and triton for the GPU path) only: importing it pulls in no renderer and no
transformers, so other trainers can use the loss alone::

    from vsdpo_kernels import fused_linear_sdpo_loss, SDPOLossConfig, linear_logprobs
"""

from vsdpo_kernels.config import SDPOLossConfig, SDPOLossOutput
from vsdpo_kernels.loss import fused_linear_sdpo_loss, linear_logprobs, resolve_impl
from vsdpo_kernels.module import FusedLinearSDPOLoss

__version__ = "0.1.0"
__all__ = [
    "FusedLinearSDPOLoss",
    "SDPOLossConfig",
    "SDPOLossOutput",
    "fused_linear_sdpo_loss",
    "linear_logprobs",
    "resolve_impl",
]
