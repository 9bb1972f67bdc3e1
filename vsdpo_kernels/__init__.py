"""Fused linear SDPO + GRPO loss kernels.

Depends on torch (and triton for the GPU path) only: importing it pulls in no renderer and no
transformers, so other trainers can use the loss alone::

    from vsdpo_kernels import fused_linear_sdpo_loss, SDPOLossConfig, linear_logprobs

Layout: ``loss.py`` the public functions and the autograd wiring; ``inputs.py`` the typed inputs
and their checks; ``config.py`` the hyper-parameters and outputs; ``stats.py`` and ``terms.py`` the
maths every backend shares; ``backend.py`` the contract the backends meet (``torch_chunked.py``,
``cpu.py`` with ``csrc/sdpo_cpu.cpp``, ``triton/``); ``reference.py`` the materialised oracle.
"""

from vsdpo_kernels.backend import Backend, resolve_impl
from vsdpo_kernels.config import IMPLS, LOSS_TYPES, SDPOLossConfig, SDPOLossOutput
from vsdpo_kernels.inputs import LossInputs
from vsdpo_kernels.loss import fused_linear_sdpo_loss, fused_linear_sdpo_loss_from, linear_logprobs
from vsdpo_kernels.module import FusedLinearSDPOLoss

__version__ = "0.1.0"
__all__ = [
    "Backend",
    "FusedLinearSDPOLoss",
    "IMPLS",
    "LOSS_TYPES",
    "LossInputs",
    "SDPOLossConfig",
    "SDPOLossOutput",
    "fused_linear_sdpo_loss",
    "fused_linear_sdpo_loss_from",
    "linear_logprobs",
    "resolve_impl",
]
