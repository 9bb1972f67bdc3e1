"""The Triton backend: launches the three kernels behind the ``stats``/``grads`` interface.

``stats`` runs pass 1 (triton_stats.py) and, for the mixture JSD, pass 2 (triton_mixture.py);
``grads`` runs the gradient pass (triton_backward.py). Extra memory: per-token vectors and the
float32 gradient buffers, O(N + V) rows of D; no logits are stored.
Under ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors (tests).
"""

from __future__ import annotations

import torch
import triton

from vsdpo_kernels.stats import Stats, endpoint_grad_sum, mixture_logs
from vsdpo_kernels.triton_backward import sdpo_backward_kernel
from vsdpo_kernels.triton_mixture import sdpo_mixture_kernel
from vsdpo_kernels.triton_stats import sdpo_stats_kernel


def _interpreting(t: torch.Tensor) -> bool:
    return t.device.type != "cuda"


def _blocks(hs: torch.Tensor, n: int, D: int):
    """(BLOCK_N, BLOCK_V, BLOCK_D, num_warps): the tiles tensor cores like; the interpreter's minimum."""
    if _interpreting(hs):
        return 16, 32, 32, 1
    block_n = 64 if n >= 64 else max(16, triton.next_power_of_2(n))
    return block_n, 128, 64 if hs.dtype == torch.float32 else 128, 8


def _beta_mode(beta: float) -> int:
    return 0 if beta == 0 else 1 if beta == 1 else 2


def _precision(hs: torch.Tensor) -> str:
    if _interpreting(hs):
        return "upcast"
    # float32 inputs get full-precision products (tf32 would cost ~1e-3 relative on the logits).
    return "ieee" if hs.dtype == torch.float32 else "tf32"


def _prepare(hs, ht, weight):
    hs = hs.contiguous()
    ht = None if ht is None else ht.contiguous()
    weight = weight.contiguous()
    return hs, ht, weight


def stats(hs, ht, weight, targets, *, temperature: float, beta: float) -> Stats:
    hs, ht, weight = _prepare(hs, ht, weight)
    n, D = hs.shape
    V = weight.shape[0]
    f32 = dict(dtype=torch.float32, device=hs.device)
    out = Stats(logp=torch.empty(n, **f32), entropy=torch.empty(n, **f32), lse_s=torch.empty(n, **f32))
    has_teacher = ht is not None
    if has_teacher:
        out.lse_t = torch.empty(n, **f32)
        out.divergence = torch.empty(n, **f32)
    block_n, block_v, block_d, warps = _blocks(hs, n, D)
    dummy = out.lse_s
    sdpo_stats_kernel[(triton.cdiv(n, block_n),)](
        hs,
        ht if has_teacher else hs,
        weight,
        targets.contiguous(),
        out.logp,
        out.entropy,
        out.lse_s,
        out.lse_t if has_teacher else dummy,
        out.divergence if has_teacher else dummy,
        n,
        V,
        D,
        hs.stride(0),
        weight.stride(0),
        1.0 / temperature,
        HAS_TEACHER=has_teacher,
        BETA_MODE=_beta_mode(beta),
        BLOCK_N=block_n,
        BLOCK_V=block_v,
        BLOCK_D=block_d,
        DOT_PRECISION=_precision(hs),
        num_warps=warps,
    )
    if has_teacher:
        if _beta_mode(beta) == 2:
            out.G = torch.empty(n, **f32)
            log_1mb, log_b = mixture_logs(beta)
            sdpo_mixture_kernel[(triton.cdiv(n, block_n),)](
                hs,
                ht,
                weight,
                out.lse_s,
                out.lse_t,
                out.divergence,
                out.G,
                n,
                V,
                D,
                hs.stride(0),
                weight.stride(0),
                1.0 / temperature,
                beta,
                log_1mb,
                log_b,
                BLOCK_N=block_n,
                BLOCK_V=block_v,
                BLOCK_D=block_d,
                DOT_PRECISION=_precision(hs),
                num_warps=warps,
            )
        else:
            out.G = endpoint_grad_sum(beta, out.divergence)
    return out


def grads(hs, ht, weight, targets, st: Stats, a, b, *, temperature: float, beta: float):
    hs, ht, weight = _prepare(hs, ht, weight)
    n, D = hs.shape
    V = weight.shape[0]
    grad_hs = torch.zeros(n, D, dtype=torch.float32, device=hs.device)
    grad_w = torch.zeros(V, D, dtype=torch.float32, device=hs.device)
    has_teacher = ht is not None
    block_n, block_v, block_d, warps = _blocks(hs, n, D)
    log_1mb, log_b = mixture_logs(beta) if 0 < beta < 1 else (0.0, 0.0)
    dummy = st.lse_s
    sdpo_backward_kernel[(triton.cdiv(n, block_n), triton.cdiv(V, block_v))](
        hs,
        ht if has_teacher else hs,
        weight,
        targets.contiguous(),
        st.lse_s,
        st.lse_t if has_teacher else dummy,
        st.G if has_teacher else dummy,
        a.float().contiguous(),
        b.float().contiguous(),
        grad_hs,
        grad_w,
        n,
        V,
        D,
        hs.stride(0),
        weight.stride(0),
        1.0 / temperature,
        float(beta),
        log_1mb,
        log_b,
        HAS_TEACHER=has_teacher,
        BETA_MODE=_beta_mode(beta),
        BLOCK_N=block_n,
        BLOCK_V=block_v,
        BLOCK_D=block_d,
        DOT_PRECISION=_precision(hs),
        num_warps=warps,
    )
    return grad_hs, grad_w
