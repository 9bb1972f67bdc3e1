"""Per-token statistics that every fused implementation produces from its pass over the vocabulary.

Notation, per token: ``zs = hs @ W.T / tau`` and ``zt = ht @ W.T / tau`` (student, teacher),
``ls = zs - lse_s``, ``lt = zt - lse_t``, ``ps = exp(ls)``, ``pt = exp(lt)``.
The divergence gradient w.r.t. the student's scaled logits is ``dD/dzs_v = g_v - ps_v * G`` with

    beta == 0:  g_v = -pt_v                        G = -1
    beta == 1:  g_v = ps_v * (ls_v - lt_v)         G = D
    otherwise:  g_v = (1-beta) ps_v (ls_v - lm_v)  G = (1-beta) KL(ps || m),  lm = log((1-beta) ps + beta pt)

and the full gradient w.r.t. the student's raw logits is
``dZ_v = (a * (1[v == y] - ps_v) + b * (g_v - ps_v * G)) / tau`` with ``a = dL/dlogp``, ``b = dL/dD``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch


@dataclass
class Stats:
    """Float32 ``[n]`` tensors over the valid tokens. Teacher fields (``G`` included, for every beta)
    are None without a teacher."""

    logp: torch.Tensor
    entropy: torch.Tensor
    lse_s: torch.Tensor
    lse_t: torch.Tensor | None = None
    divergence: torch.Tensor | None = None
    G: torch.Tensor | None = None

    def rows(self, start: int, stop: int) -> Stats:
        """The statistics of tokens ``start:stop`` (views)."""
        part = lambda t: None if t is None else t[start:stop]
        return Stats(*(part(getattr(self, f.name)) for f in fields(self)))


def mixture_logs(beta: float) -> tuple[float, float]:
    """``(log(1-beta), log(beta))`` for the mixture ``m = (1-beta) ps + beta pt``; finite for 0 < beta < 1."""
    return math.log1p(-beta), math.log(beta)


def endpoint_grad_sum(beta: float, divergence: torch.Tensor) -> torch.Tensor:
    """``G`` of the formula above for beta in {0, 1}, where it follows from ``D`` without another pass."""
    return torch.full_like(divergence, -1.0) if beta == 0 else divergence
