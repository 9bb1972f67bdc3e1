"""Pass 1: online log-sum-exp over the vocabulary for student and teacher, per token block.

Running state per token, rescaled whenever the running maximum grows (as ``m_i``/``l_i`` in the
fused attention tutorial):
    m_s, l_s      max and sum of exp(zs - m_s)             -> lse_s = m_s + log l_s
    e_s           sum of exp(zs - m_s) * zs                -> entropy = lse_s - e_s / l_s
    m_t, l_t      the same for the teacher                 -> lse_t
    cross         forward KL: sum exp(zt - m_t)(zt - zs)   -> D = cross / l_t - lse_t + lse_s
                  reverse KL: sum exp(zs - m_s)(zs - zt)   -> D = cross / l_s - lse_s + lse_t
The mixture JSD (BETA_MODE 2) needs both normalisers first: its divergence comes from mixture.py.
``stats_pass``, below the kernel, allocates the outputs and launches it.
"""

import torch
import triton
import triton.language as tl

from vsdpo_kernels.stats import Stats
from vsdpo_kernels.triton.common import MIXTURE_JSD, Launch, beta_mode, logits_tile


@triton.jit
def sdpo_stats_kernel(
    HS,
    HT,
    W,
    Y,
    LOGP,
    ENTROPY,
    LSE_S,
    LSE_T,
    DIVERGENCE,
    n,
    V,
    D,
    stride_h,
    stride_w,
    inv_tau,
    HAS_TEACHER: tl.constexpr,
    BETA_MODE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n
    y = tl.load(Y + rows, mask=row_ok, other=0)

    m_s = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    l_s = tl.zeros((BLOCK_N,), dtype=tl.float32)
    e_s = tl.zeros((BLOCK_N,), dtype=tl.float32)
    z_y = tl.zeros((BLOCK_N,), dtype=tl.float32)
    m_t = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    l_t = tl.zeros((BLOCK_N,), dtype=tl.float32)
    cross = tl.zeros((BLOCK_N,), dtype=tl.float32)

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
            HAS_TEACHER,
            BLOCK_N,
            BLOCK_V,
            BLOCK_D,
            DOT_PRECISION,
        )
        m_s_new = tl.maximum(m_s, tl.max(tl.where(col_ok, zs, float("-inf")), axis=1))
        scale_s = tl.exp(m_s - m_s_new)
        p_s = tl.where(col_ok, tl.exp(zs - m_s_new[:, None]), 0.0)
        l_s = l_s * scale_s + tl.sum(p_s, axis=1)
        e_s = e_s * scale_s + tl.sum(p_s * zs, axis=1)
        z_y += tl.sum(tl.where(cols[None, :] == y[:, None], zs, 0.0), axis=1)
        if HAS_TEACHER:
            m_t_new = tl.maximum(m_t, tl.max(tl.where(col_ok, zt, float("-inf")), axis=1))
            scale_t = tl.exp(m_t - m_t_new)
            p_t = tl.where(col_ok, tl.exp(zt - m_t_new[:, None]), 0.0)
            l_t = l_t * scale_t + tl.sum(p_t, axis=1)
            if BETA_MODE == 0:
                cross = cross * scale_t + tl.sum(p_t * (zt - zs), axis=1)
            if BETA_MODE == 1:
                cross = cross * scale_s + tl.sum(p_s * (zs - zt), axis=1)
            m_t = m_t_new
        m_s = m_s_new

    lse_s = m_s + tl.log(l_s)
    tl.store(LSE_S + rows, lse_s, mask=row_ok)
    tl.store(LOGP + rows, z_y - lse_s, mask=row_ok)
    tl.store(ENTROPY + rows, lse_s - e_s / l_s, mask=row_ok)
    if HAS_TEACHER:
        lse_t = m_t + tl.log(l_t)
        tl.store(LSE_T + rows, lse_t, mask=row_ok)
        if BETA_MODE == 0:
            tl.store(DIVERGENCE + rows, cross / l_t - lse_t + lse_s, mask=row_ok)
        if BETA_MODE == 1:
            tl.store(DIVERGENCE + rows, cross / l_s - lse_s + lse_t, mask=row_ok)


def stats_pass(hs, ht, weight, targets, *, temperature: float, beta: float, launch: Launch) -> Stats:
    """``logp``, ``entropy``, ``lse_s`` and, with a teacher, ``lse_t``; the divergence too for beta in
    {0, 1} (None for the mixture, which mixture.py completes). ``G`` is left to the caller."""
    n, D = hs.shape
    V = weight.shape[0]
    f32 = dict(dtype=torch.float32, device=hs.device)
    out = Stats(logp=torch.empty(n, **f32), entropy=torch.empty(n, **f32), lse_s=torch.empty(n, **f32))
    has_teacher = ht is not None
    mode = beta_mode(beta)
    if has_teacher:
        out.lse_t = torch.empty(n, **f32)
        if mode != MIXTURE_JSD:
            out.divergence = torch.empty(n, **f32)
    unused = out.lse_s  # stands for the pointers this launch does not use; the kernel never writes them
    sdpo_stats_kernel[(launch.token_blocks(n),)](
        hs,
        ht if has_teacher else hs,
        weight,
        targets,
        out.logp,
        out.entropy,
        out.lse_s,
        out.lse_t if has_teacher else unused,
        unused if out.divergence is None else out.divergence,
        n,
        V,
        D,
        hs.stride(0),
        weight.stride(0),
        1.0 / temperature,
        HAS_TEACHER=has_teacher,
        BETA_MODE=mode,
        **launch.options(),
    )
    return out
