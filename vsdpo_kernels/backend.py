"""The contract every fused implementation meets, and the choice among them.

A backend reduces the vocabulary to per-token statistics and, given two coefficients per token, turns
them into the gradients; the loss algebra between the two (``terms.py``) and the autograd wiring
(``loss.py``) are shared. Three backends meet it:

- ``torch``: ``torch_chunked.py``, blocks of tokens x vocabulary in plain PyTorch, any device;
- ``cpu``: ``cpu.py``, chunks of tokens through torch's GEMM with a C++ epilogue (``csrc/sdpo_cpu.cpp``);
- ``triton``: ``triton/backend.py``, the GPU kernels (also under ``TRITON_INTERPRET=1``).

A backend is a module: its functions are the Protocol's methods. Backends are imported on first use,
so that ``import vsdpo_kernels`` pulls in neither triton nor the C++ build.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch

from vsdpo_kernels import cpu
from vsdpo_kernels.config import IMPLS
from vsdpo_kernels.stats import Stats
from vsdpo_kernels.terms import TokenCoefficients

BACKEND_MODULES = {
    "torch": "vsdpo_kernels.torch_chunked",
    "cpu": "vsdpo_kernels.cpu",
    "triton": "vsdpo_kernels.triton.backend",
}

# Maps a chunk's ``(logp, divergence, start, stop)`` to its coefficients (``terms.Coefficients``).
CoefficientsFn = Callable[[torch.Tensor, torch.Tensor | None, int, int], TokenCoefficients]


@runtime_checkable
class Backend(Protocol):
    """Two passes over the vocabulary, on the valid tokens flattened to ``n`` rows.

    Arguments common to both: ``hs`` the student hidden states ``[n, D]``; ``ht`` the teacher's
    ``[n, D]`` or None (no distillation term); ``weight`` the lm_head ``[V, D]``, of the dtype of
    ``hs``; ``targets`` ``[n]`` int64 in ``[0, V)``; ``temperature`` > 0; ``beta`` in [0, 1] (the
    divergence, see ``config.py``). No backend holds an ``[n, V]`` tensor; ``torch`` and ``cpu`` hold
    one chunk of logits at a time, ``triton`` none.
    """

    def stats(
        self,
        hs: torch.Tensor,
        ht: torch.Tensor | None,
        weight: torch.Tensor,
        targets: torch.Tensor,
        *,
        temperature: float,
        beta: float,
    ) -> Stats:
        """Per-token statistics (``stats.py``), float32 ``[n]`` each (float64 from ``torch`` on
        float64 inputs); the teacher's fields, ``G`` included, are None without a teacher."""
        ...

    def grads(
        self,
        hs: torch.Tensor,
        ht: torch.Tensor | None,
        weight: torch.Tensor,
        targets: torch.Tensor,
        st: Stats,
        a: torch.Tensor,
        b: torch.Tensor,
        *,
        temperature: float,
        beta: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dL/dhs [n, D], dL/dweight [V, D])`` in float32 (or float64 as ``stats``), from the
        statistics ``st`` of the same inputs and the coefficients ``a = dL/dlogp``, ``b = dL/dD``
        (``[n]`` each). The logits are recomputed; the caller scales by the upstream gradient."""
        ...


@runtime_checkable
class FusedBackend(Backend, Protocol):
    """A backend that can also finish the gradients of a chunk before it moves to the next, so that
    each logits chunk is computed once per call instead of twice (``loss.py`` uses it when the
    gradients are taken in the forward pass)."""

    def fused(
        self,
        hs: torch.Tensor,
        ht: torch.Tensor | None,
        weight: torch.Tensor,
        targets: torch.Tensor,
        coefficients: CoefficientsFn,
        *,
        temperature: float,
        beta: float,
    ) -> tuple[Stats, TokenCoefficients, torch.Tensor, torch.Tensor]:
        """``(stats, coefficients summed over the chunks, dL/dhs, dL/dweight)``: ``stats`` and
        ``grads`` in one sweep, with ``coefficients`` called on each chunk's rows ``start:stop``."""
        ...


def load_backend(impl: str) -> Backend:
    """The backend module of a resolved ``impl`` (not ``auto`` or ``reference``)."""
    return importlib.import_module(BACKEND_MODULES[impl])


def resolve_impl(impl: str, device: torch.device) -> str:
    """The implementation ``impl`` names, with ``auto`` resolved for ``device``."""
    if impl not in IMPLS:
        raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")
    if impl != "auto":
        if impl == "cpu" and device.type != "cpu":
            raise ValueError(f"impl='cpu': expected CPU tensors, got tensors on {device}")
        if impl == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                f"impl='triton': expected CUDA tensors (or TRITON_INTERPRET=1 for CPU tests), got {device}"
            )
        return impl
    if device.type == "cuda":
        return "triton"
    if device.type == "cpu" and cpu.available(warn=True):
        return "cpu"
    return "torch"
