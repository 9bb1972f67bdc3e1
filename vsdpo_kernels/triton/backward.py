"""Gradient pass: per (token block, vocabulary block) tile, recompute the logits, form

    dZ = (a * (1[v == y] - ps) + b * (g - ps * G)) / tau        (g and G: see vsdpo_kernels/stats.py)

in registers, and accumulate ``dZ @ W`` into the hidden-state gradient and ``dZ.T @ hs`` into the
weight gradient (float32 buffers, atomic adds across tiles). No [tokens x vocab] buffer exists.
``backward_pass``, below the kernel, allocates the buffers and launches it.
"""

import torch
import triton
import triton.language as tl

from vsdpo_kernels.stats import Stats, mixture_logs
from vsdpo_kernels.triton.common import MIXTURE_JSD, Launch, beta_mode, log_mixture, logits_tile, mma


@triton.jit
def sdpo_backward_kernel(
    HS,
    HT,
    W,
    Y,
    LSE_S,
    LSE_T,
    G,
    A,
    B,
    GRAD_HS,
    GRAD_W,
    n,
    V,
    D,
    stride_h,
    stride_w,
    inv_tau,
    beta,
    log_1mb,
    log_b,
    HAS_TEACHER: tl.constexpr,
    BETA_MODE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    row_ok = rows < n
    col_ok = cols < V
    tile_ok = row_ok[:, None] & col_ok[None, :]

    zs, zt = logits_tile(
        HS,
        HT,
        W,
        rows,
        cols,
        n,
        V,
        D,
        stride_h,
        stride_w,
        inv_tau,
        HAS_TEACHER,
        BLOCK_N,
        BLOCK_V,
        BLOCK_D,
        DOT_PRECISION,
    )
    y = tl.load(Y + rows, mask=row_ok, other=-1)
    a = tl.load(A + rows, mask=row_ok, other=0.0)
    ls = zs - tl.load(LSE_S + rows, mask=row_ok, other=0.0)[:, None]
    ps = tl.where(tile_ok, tl.exp(ls), 0.0)
    dz = tl.where(cols[None, :] == y[:, None], a[:, None], 0.0) - a[:, None] * ps
    if HAS_TEACHER:
        b = tl.load(B + rows, mask=row_ok, other=0.0)
        g_sum = tl.load(G + rows, mask=row_ok, other=0.0)
        lt = zt - tl.load(LSE_T + rows, mask=row_ok, other=0.0)[:, None]
        if BETA_MODE == 0:
            g = -tl.exp(lt)
        elif BETA_MODE == 1:
            g = ps * (ls - lt)
        else:
            g = (1.0 - beta) * ps * (ls - log_mixture(ls + log_1mb, lt + log_b))
        dz += b[:, None] * tl.where(tile_ok, g - ps * g_sum[:, None], 0.0)
    dz = tl.where(tile_ok, dz * inv_tau, 0.0).to(W.dtype.element_ty)

    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        dim_ok = dims < D
        w = tl.load(
            W + cols[:, None] * stride_w + dims[None, :], mask=col_ok[:, None] & dim_ok[None, :], other=0.0
        )
        hs = tl.load(
            HS + rows[:, None] * stride_h + dims[None, :], mask=row_ok[:, None] & dim_ok[None, :], other=0.0
        )
        grad_hs = mma(dz, w, tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32), DOT_PRECISION)
        tl.atomic_add(
            GRAD_HS + rows[:, None] * D + dims[None, :], grad_hs, mask=row_ok[:, None] & dim_ok[None, :]
        )
        grad_w = mma(tl.trans(dz), hs, tl.zeros((BLOCK_V, BLOCK_D), dtype=tl.float32), DOT_PRECISION)
        tl.atomic_add(
            GRAD_W + cols[:, None] * D + dims[None, :], grad_w, mask=col_ok[:, None] & dim_ok[None, :]
        )


def backward_pass(
    hs, ht, weight, targets, st: Stats, a, b, *, temperature: float, beta: float, launch: Launch
):
    """``(grad_hs, grad_w)``, float32, w.r.t. the hidden states and the weight (see ``grads`` of a backend)."""
    n, D = hs.shape
    V = weight.shape[0]
    grad_hs = torch.zeros(n, D, dtype=torch.float32, device=hs.device)
    grad_w = torch.zeros(V, D, dtype=torch.float32, device=hs.device)
    has_teacher = ht is not None
    mode = beta_mode(beta)
    log_1mb, log_b = mixture_logs(beta) if mode == MIXTURE_JSD else (0.0, 0.0)
    unused = st.lse_s  # stands for the teacher's pointers without a teacher; the kernel never reads them
    sdpo_backward_kernel[(launch.token_blocks(n), launch.vocab_blocks(V))](
        hs,
        ht if has_teacher else hs,
        weight,
        targets,
        st.lse_s,
        st.lse_t if has_teacher else unused,
        st.G if has_teacher else unused,
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
        BETA_MODE=mode,
        **launch.options(),
    )
    return grad_hs, grad_w
