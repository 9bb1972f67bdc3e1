"""Pass 2, mixture JSD only (0 < beta < 1): with both normalisers known, per token

    D = beta * sum pt (lt - lm) + (1 - beta) * sum ps (ls - lm),   G = (1 - beta) * sum ps (ls - lm)

where lm = log((1 - beta) ps + beta pt). G is the divergence gradient's sum (see stats.py).
"""

import triton
import triton.language as tl

from vsdpo_kernels.triton_common import log_mixture, logits_tile


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
