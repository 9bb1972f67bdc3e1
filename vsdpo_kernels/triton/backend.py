"""The Triton backend: the ``Backend`` contract (``vsdpo_kernels/backend.py``) met by three kernels.

``stats`` runs the stats pass (stats.py) and, for the mixture JSD, the mixture pass (mixture.py);
``grads`` runs the gradient pass (backward.py). Extra memory: per-token vectors and the float32
gradient buffers, O(N + V) rows of D; no logits are stored. Under ``TRITON_INTERPRET=1`` the same
kernels run on CPU tensors (tests).
"""

from __future__ import annotations

from vsdpo_kernels.stats import Stats, endpoint_grad_sum
from vsdpo_kernels.triton.backward import backward_pass
from vsdpo_kernels.triton.common import MIXTURE_JSD, Launch, beta_mode
from vsdpo_kernels.triton.mixture import mixture_pass
from vsdpo_kernels.triton.stats import stats_pass


def _contiguous(hs, ht, weight, targets):
    return hs.contiguous(), None if ht is None else ht.contiguous(), weight.contiguous(), targets.contiguous()


def stats(hs, ht, weight, targets, *, temperature: float, beta: float) -> Stats:
    hs, ht, weight, targets = _contiguous(hs, ht, weight, targets)
    launch = Launch.for_hidden(hs)
    out = stats_pass(hs, ht, weight, targets, temperature=temperature, beta=beta, launch=launch)
    if ht is not None:
        if beta_mode(beta) == MIXTURE_JSD:
            out.divergence, out.G = mixture_pass(
                hs, ht, weight, out.lse_s, out.lse_t, temperature=temperature, beta=beta, launch=launch
            )
        else:
            out.G = endpoint_grad_sum(beta, out.divergence)
    return out


def grads(hs, ht, weight, targets, st: Stats, a, b, *, temperature: float, beta: float):
    hs, ht, weight, targets = _contiguous(hs, ht, weight, targets)
    launch = Launch.for_hidden(hs)
    return backward_pass(hs, ht, weight, targets, st, a, b, temperature=temperature, beta=beta, launch=launch)
