"""Pass 2, mixture JSD only (0 < beta < 1): with both normalisers known, per token

    D = beta * sum pt (lt - lm) + (1 - beta) * sum ps (ls - lm),   G = (1 - beta) * sum ps (ls - lm)

where lm = log((1 - beta) ps + beta pt). G is the divergence gradient's sum (see
``vsdpo_kernels/stats.py``); the normalisers come from the stats kernel (stats.py here).
``mixture_pass``, below the kernel, allocates the outputs and launches it.
"""

import torch
import triton
import triton.language as tl

from vsdpo_kernels.stats import mixture_logs
from vsdpo_kernels.triton.common import Launch, log_mixture, logits_tile


@triton.jit
def sdpo_mixture_kernel(
    HS,
    HT,
    W,
    LSE_S,
    LSE_T,
    DIVERGENCE,
    G,
    n,
    V,
    D,
    stride_h,
    stride_w,
    inv_tau,
    beta,
    log_1mb,
    log_b,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n
    lse_s = tl.load(LSE_S + rows, mask=row_ok, other=0.0)
    lse_t = tl.load(LSE_T + rows, mask=row_ok, other=0.0)
    teacher_part = tl.zeros((BLOCK_N,), dtype=tl.float32)
    student_part = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_ok = (cols < V)[None, :]
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
            True,
            BLOCK_N,
            BLOCK_V,
            BLOCK_D,
            DOT_PRECISION,
        )
        ls = zs - lse_s[:, None]
        lt = zt - lse_t[:, None]
        lm = log_mixture(ls + log_1mb, lt + log_b)
        teacher_part += tl.sum(tl.where(col_ok, tl.exp(lt) * (lt - lm), 0.0), axis=1)
        student_part += tl.sum(tl.where(col_ok, tl.exp(ls) * (ls - lm), 0.0), axis=1)
    tl.store(DIVERGENCE + rows, beta * teacher_part + (1.0 - beta) * student_part, mask=row_ok)
    tl.store(G + rows, (1.0 - beta) * student_part, mask=row_ok)


def mixture_pass(hs, ht, weight, lse_s, lse_t, *, temperature: float, beta: float, launch: Launch):
    """``(divergence, G)``, float32 ``[n]``, of the mixture JSD from the normalisers of the stats pass."""
    n, D = hs.shape
    V = weight.shape[0]
    divergence = torch.empty(n, dtype=torch.float32, device=hs.device)
    G = torch.empty_like(divergence)
    log_1mb, log_b = mixture_logs(beta)
    sdpo_mixture_kernel[(launch.token_blocks(n),)](
        hs,
        ht,
        weight,
        lse_s,
        lse_t,
        divergence,
        G,
        n,
        V,
        D,
        hs.stride(0),
        weight.stride(0),
        1.0 / temperature,
        beta,
        log_1mb,
        log_b,
        **launch.options(),
    )
    return divergence, G
