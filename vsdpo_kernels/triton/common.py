"""What the three kernels and their launchers share: the device functions that form a logits tile,
and the launch settings (tile sizes, warps, product precision) of one call.

Block names: ``BLOCK_N`` tokens x ``BLOCK_V`` vocabulary entries per logits tile, reduced over the
hidden size in steps of ``BLOCK_D``. ``BETA_MODE``: 0 forward KL (beta == 0), 1 reverse KL
(beta == 1), 2 the mixture JSD (0 < beta < 1), whose divergence needs a second pass (mixture.py).
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

# The BETA_MODE values; the kernels compare with the literals (Triton reads no plain globals).
FORWARD_KL, REVERSE_KL, MIXTURE_JSD = 0, 1, 2


def beta_mode(beta: float) -> int:
    """The ``BETA_MODE`` constexpr for ``beta``."""
    return FORWARD_KL if beta == 0 else REVERSE_KL if beta == 1 else MIXTURE_JSD


@dataclass(frozen=True)
class Launch:
    """Tile sizes, warps and product precision of one call; every kernel of the call uses the same."""

    block_n: int
    block_v: int
    block_d: int
    num_warps: int
    precision: str  # tl.dot's input_precision, or "upcast" (see mma)

    @classmethod
    def for_hidden(cls, hs: torch.Tensor) -> "Launch":
        """The tiles tensor cores like on a GPU; the interpreter's minimum on CPU tensors."""
        if hs.device.type != "cuda":  # TRITON_INTERPRET=1
            return cls(block_n=16, block_v=32, block_d=32, num_warps=1, precision="upcast")
        n = hs.shape[0]
        block_n = 64 if n >= 64 else max(16, triton.next_power_of_2(n))
        full = hs.dtype == torch.float32
        # float32 inputs get full-precision products (tf32 would cost ~1e-3 relative on the logits).
        return cls(
            block_n=block_n,
            block_v=128,
            block_d=64 if full else 128,
            num_warps=8,
            precision="ieee" if full else "tf32",
        )

    def token_blocks(self, n: int) -> int:
        return triton.cdiv(n, self.block_n)

    def vocab_blocks(self, V: int) -> int:
        return triton.cdiv(V, self.block_v)

    def options(self) -> dict:
        """The block constexprs and warps, as keyword arguments of every kernel launch."""
        return dict(
            BLOCK_N=self.block_n,
            BLOCK_V=self.block_v,
            BLOCK_D=self.block_d,
            DOT_PRECISION=self.precision,
            num_warps=self.num_warps,
        )


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
