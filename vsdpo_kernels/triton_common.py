"""Triton device functions shared by the stats, mixture and backward kernels.

Block names: ``BLOCK_N`` tokens x ``BLOCK_V`` vocabulary entries per logits tile, reduced over the
hidden size in steps of ``BLOCK_D``. ``BETA_MODE``: 0 forward KL (beta == 0), 1 reverse KL
(beta == 1), 2 the mixture JSD (0 < beta < 1), whose divergence needs a second pass.
"""

import triton
import triton.language as tl


@triton.jit
def mma(a, b, acc, DOT_PRECISION: tl.constexpr):
    """``acc + a @ b`` in float32. "upcast" multiplies in float32: Triton's CPU interpreter gets
    half-precision products wrong, so the tests run them that way."""
    if DOT_PRECISION == "upcast":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc=acc)
    else:
        return tl.dot(a, b, acc=acc, input_precision=DOT_PRECISION)


@triton.jit
def logits_tile(
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
    HAS_TEACHER: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Student and teacher logits of one tile, divided by the temperature; each W tile is read once
    for both. Rows and columns out of range give 0 (callers mask them)."""
    row_ok = rows < n
    col_ok = cols < V
    zs = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    zt = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        dim_ok = dims < D
        w = tl.load(
            W + cols[:, None] * stride_w + dims[None, :], mask=col_ok[:, None] & dim_ok[None, :], other=0.0
        )
        hs = tl.load(
            HS + rows[:, None] * stride_h + dims[None, :], mask=row_ok[:, None] & dim_ok[None, :], other=0.0
        )
        zs = mma(hs, tl.trans(w), zs, DOT_PRECISION)
        if HAS_TEACHER:
            ht = tl.load(
                HT + rows[:, None] * stride_h + dims[None, :],
                mask=row_ok[:, None] & dim_ok[None, :],
                other=0.0,
            )
            zt = mma(ht, tl.trans(w), zt, DOT_PRECISION)
    return zs * inv_tau, zt * inv_tau


@triton.jit
def log_mixture(ls_shifted, lt_shifted):
    """log(e^a + e^b) for the shifted log-terms a = ls + log(1-beta), b = lt + log(beta)."""
    hi = tl.maximum(ls_shifted, lt_shifted)
    lo = tl.minimum(ls_shifted, lt_shifted)
    return hi + tl.log(1.0 + tl.exp(lo - hi))
