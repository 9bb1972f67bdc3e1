"""Chunked PyTorch implementation: tokens and vocabulary in blocks, never more than one block of
logits (``token_block x vocab_block``) alive. Works on any device; the maths of ``stats.py``, behind
the ``Backend`` contract of backend.py.

Pass 1 runs an online log-sum-exp over vocabulary blocks for student and teacher, with the running
sums that give the entropy and, for beta in {0, 1}, the divergence. Pass 2 (general beta only) needs
both normalisers, so it revisits the blocks for ``D`` and ``G``. The gradient pass revisits them once
more and accumulates ``dZ @ W`` and ``dZ.T @ hs`` block by block.
"""

from __future__ import annotations

import torch

from vsdpo_kernels.stats import Stats, endpoint_grad_sum, mixture_logs

TOKEN_BLOCK = 1024
VOCAB_BLOCK = 4096


def _blocks(total: int, size: int):
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float32, or float64 for float64 inputs (the tests' oracle runs this code in float64)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _logits(hidden: torch.Tensor, weight_block: torch.Tensor, temperature: float) -> torch.Tensor:
    dtype = _compute_dtype(hidden)
    return (hidden.to(dtype) @ weight_block.to(dtype).T) / temperature


def stats(hs, ht, weight, targets, *, temperature: float, beta: float) -> Stats:
    n, V = hs.shape[0], weight.shape[0]
    dtype = _compute_dtype(hs)
    out = Stats(
        logp=hs.new_empty(n, dtype=dtype),
        entropy=hs.new_empty(n, dtype=dtype),
        lse_s=hs.new_empty(n, dtype=dtype),
    )
    if ht is not None:
        out.lse_t = torch.empty_like(out.lse_s)
        out.divergence = torch.empty_like(out.lse_s)
    for t0, t1 in _blocks(n, TOKEN_BLOCK):
        hs_c, y = hs[t0:t1], targets[t0:t1]
        ht_c = None if ht is None else ht[t0:t1]
        rows = t1 - t0
        m_s = hs.new_full((rows,), -float("inf"), dtype=dtype)
        l_s, e_s, z_y = (torch.zeros_like(m_s) for _ in range(3))
        if ht_c is not None:
            m_t, l_t, cross = (
                torch.full_like(m_s, -float("inf")),
                torch.zeros_like(m_s),
                torch.zeros_like(m_s),
            )
        for v0, v1 in _blocks(V, VOCAB_BLOCK):
            zs = _logits(hs_c, weight[v0:v1], temperature)
            new_m_s = torch.maximum(m_s, zs.max(dim=1).values)
            scale_s = torch.exp(m_s - new_m_s)
            exp_s = torch.exp(zs - new_m_s[:, None])
            l_s = l_s * scale_s + exp_s.sum(1)
            e_s = e_s * scale_s + (exp_s * zs).sum(1)
            in_block = (y >= v0) & (y < v1)
            z_y = torch.where(in_block, zs.gather(1, (y - v0).clamp(0, v1 - v0 - 1)[:, None]).squeeze(1), z_y)
            if ht_c is not None:
                zt = _logits(ht_c, weight[v0:v1], temperature)
                new_m_t = torch.maximum(m_t, zt.max(dim=1).values)
                scale_t = torch.exp(m_t - new_m_t)
                exp_t = torch.exp(zt - new_m_t[:, None])
                l_t = l_t * scale_t + exp_t.sum(1)
                if beta == 0:  # running sum of pt * (zt - zs)
                    cross = cross * scale_t + (exp_t * (zt - zs)).sum(1)
                elif beta == 1:  # running sum of ps * (zs - zt)
                    cross = cross * scale_s + (exp_s * (zs - zt)).sum(1)
                m_t = new_m_t
            m_s = new_m_s
        lse_s = m_s + torch.log(l_s)
        out.lse_s[t0:t1] = lse_s
        out.logp[t0:t1] = z_y - lse_s
        out.entropy[t0:t1] = lse_s - e_s / l_s
        if ht_c is not None:
            lse_t = m_t + torch.log(l_t)
            out.lse_t[t0:t1] = lse_t
            if beta == 0:
                out.divergence[t0:t1] = cross / l_t - lse_t + lse_s
            elif beta == 1:
                out.divergence[t0:t1] = cross / l_s - lse_s + lse_t
    if ht is not None:
        if 0 < beta < 1:
            out.divergence, out.G = _mixture_divergence(
                hs, ht, weight, out, temperature=temperature, beta=beta
            )
        else:
            out.G = endpoint_grad_sum(beta, out.divergence)
    return out


def _mixture_terms(zs, zt, lse_s, lse_t, beta):
    """Per-vocab ``ps, ls, pt, lt, lm`` of a block for the mixture divergence."""
    log_1mb, log_b = mixture_logs(beta)
    ls = zs - lse_s[:, None]
    lt = zt - lse_t[:, None]
    lm = torch.logaddexp(ls + log_1mb, lt + log_b)
    return ls.exp(), ls, lt.exp(), lt, lm


def _mixture_divergence(hs, ht, weight, st: Stats, *, temperature, beta):
    n, V = hs.shape[0], weight.shape[0]
    divergence = torch.zeros(n, dtype=_compute_dtype(hs), device=hs.device)
    G = torch.zeros_like(divergence)
    for t0, t1 in _blocks(n, TOKEN_BLOCK):
        for v0, v1 in _blocks(V, VOCAB_BLOCK):
            zs = _logits(hs[t0:t1], weight[v0:v1], temperature)
            zt = _logits(ht[t0:t1], weight[v0:v1], temperature)
            ps, ls, pt, lt, lm = _mixture_terms(zs, zt, st.lse_s[t0:t1], st.lse_t[t0:t1], beta)
            student_part = (ps * (ls - lm)).sum(1)
            divergence[t0:t1] += beta * (pt * (lt - lm)).sum(1) + (1 - beta) * student_part
            G[t0:t1] += (1 - beta) * student_part
    return divergence, G


def logits_grad_block(zs, zt, y_local, st: Stats, a, b, *, beta, temperature):
    """``dZ`` of one block (see stats.py); ``y_local`` is the target's column in the block or -1."""
    lse_s, lse_t, G = st.lse_s, st.lse_t, st.G
    ps = torch.exp(zs - lse_s[:, None])
    dz = -a[:, None] * ps
    rows = torch.arange(zs.shape[0], device=zs.device)
    hit = y_local >= 0
    dz[rows[hit], y_local[hit]] += a[hit]
    if zt is not None:
        if beta == 0:
            g = -torch.exp(zt - lse_t[:, None])
        elif beta == 1:
            g = ps * ((zs - lse_s[:, None]) - (zt - lse_t[:, None]))
        else:
            ps, ls, _, _, lm = _mixture_terms(zs, zt, lse_s, lse_t, beta)
            g = (1 - beta) * ps * (ls - lm)
        dz += b[:, None] * (g - ps * G[:, None])
    return dz / temperature


def grads(hs, ht, weight, targets, st: Stats, a, b, *, temperature: float, beta: float):
    n, V = hs.shape[0], weight.shape[0]
    dtype = _compute_dtype(hs)
    grad_hs = torch.zeros(hs.shape, dtype=dtype, device=hs.device)
    grad_w = torch.zeros(weight.shape, dtype=dtype, device=weight.device)
    for t0, t1 in _blocks(n, TOKEN_BLOCK):
        hs_c = hs[t0:t1].to(dtype)
        ht_c = None if ht is None else ht[t0:t1]
        y = targets[t0:t1]
        st_rows = st.rows(t0, t1)
        for v0, v1 in _blocks(V, VOCAB_BLOCK):
            w_block = weight[v0:v1].to(dtype)
            zs = (hs_c @ w_block.T) / temperature
            zt = None if ht_c is None else _logits(ht_c, w_block, temperature)
            y_local = torch.where((y >= v0) & (y < v1), y - v0, torch.full_like(y, -1))
            dz = logits_grad_block(
                zs, zt, y_local, st_rows, a[t0:t1], b[t0:t1], beta=beta, temperature=temperature
            )
            grad_hs[t0:t1] += dz @ w_block
            grad_w[v0:v1] += dz.T @ hs_c
    return grad_hs, grad_w
