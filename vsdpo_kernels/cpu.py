"""CPU implementation: chunks of tokens against the whole vocabulary, the products through torch's
GEMM, and everything between them (softmaxes, divergence, dL/dlogits) fused in C++ (csrc/).

Per chunk of ``CHUNK_TOKENS`` tokens it holds one ``[chunk, V]`` float32 block for the student and
one for the teacher: the four products ``hs@W.T``, ``ht@W.T``, ``dZ@W``, ``dZ.T@hs`` run once each
and the C++ epilogue reads each block two or three times while it is hot. ``fused`` finishes the
gradients of a chunk before the next (the loss is the last node of the graph).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from vsdpo_kernels.stats import Stats

CHUNK_TOKENS = 256
_SOURCE = Path(__file__).resolve().parent.parent / "csrc" / "sdpo_cpu.cpp"
_extension = None
_failure: str | None = None
_warned = False


def load():
    """The compiled extension (built on first use, then cached by torch); raises if it cannot build."""
    global _extension, _failure
    if _extension is not None:
        return _extension
    if _failure is not None:
        raise RuntimeError(_failure)
    try:
        if not _SOURCE.exists():
            raise FileNotFoundError(
                f"C++ source not found at {_SOURCE} (install from a checkout, pip install -e .)"
            )
        from torch.utils.cpp_extension import load as load_extension

        flags = ["-O3", "-ffast-math", "-fopenmp"]
        if os.environ.get("VSDPO_CPU_NATIVE", "1") == "1":
            flags.append("-march=native")
        _extension = load_extension(
            name="vsdpo_sdpo_cpu",
            sources=[str(_SOURCE)],
            extra_cflags=flags,
            extra_ldflags=["-fopenmp"],
            verbose=os.environ.get("VSDPO_VERBOSE_BUILD") == "1",
        )
    except Exception as error:  # compiler missing, headers missing, ...
        _failure = f"the C++ CPU kernel could not be built: {type(error).__name__}: {error}"
        raise RuntimeError(_failure) from error
    return _extension


def available(warn: bool = False) -> bool:
    """Whether the extension loads; with ``warn``, says once per process why not."""
    global _warned
    try:
        load()
        return True
    except RuntimeError as error:
        if warn and not _warned:
            _warned = True
            warnings.warn(
                f"{error}; impl='auto' falls back to 'torch' (slower)", RuntimeWarning, stacklevel=3
            )
        return False


def _chunks(n: int):
    for start in range(0, n, CHUNK_TOKENS):
        yield start, min(start + CHUNK_TOKENS, n)


def _f32(t):
    return None if t is None else t.float().contiguous()


def _block_stats(ext, hs_c, ht_c, w32, y, temperature, beta, zs, zt):
    torch.mm(hs_c, w32.T, out=zs)
    if ht_c is not None:
        torch.mm(ht_c, w32.T, out=zt)
    return ext.block_stats(zs, zt if ht_c is not None else None, y, 1.0 / temperature, float(beta))


def _buffers(n, V, has_teacher, device):
    rows = min(n, CHUNK_TOKENS)
    zs = torch.empty(rows, V, dtype=torch.float32, device=device)
    zt = torch.empty_like(zs) if has_teacher else None
    return zs, zt


def stats(hs, ht, weight, targets, *, temperature: float, beta: float) -> Stats:
    ext = load()
    n, V = hs.shape[0], weight.shape[0]
    w32, hs32, ht32 = _f32(weight), _f32(hs), _f32(ht)
    zs_buf, zt_buf = _buffers(n, V, ht is not None, hs.device)
    parts = []
    for t0, t1 in _chunks(n):
        rows = t1 - t0
        parts.append(
            _block_stats(
                ext,
                hs32[t0:t1],
                None if ht32 is None else ht32[t0:t1],
                w32,
                targets[t0:t1],
                temperature,
                beta,
                zs_buf[:rows],
                None if zt_buf is None else zt_buf[:rows],
            )
        )
    return _collect(parts, ht is not None)


def _collect(parts, has_teacher) -> Stats:
    cat = lambda i: torch.cat([p[i] for p in parts])
    st = Stats(logp=cat(0), entropy=cat(1), lse_s=cat(2))
    if has_teacher:
        st.lse_t, st.divergence, st.G = cat(3), cat(4), cat(5)
    return st


def _grad_chunk(ext, zs, zt, y, lse_s, lse_t, G, a, b, hs_c, w32, grad_hs_c, grad_w, temperature, beta):
    ext.block_grad_(
        zs, zt, y, lse_s, lse_t, G, a.contiguous(), b.contiguous(), 1.0 / temperature, float(beta)
    )
    torch.mm(zs, w32, out=grad_hs_c)
    grad_w.addmm_(zs.T, hs_c)


def grads(hs, ht, weight, targets, st: Stats, a, b, *, temperature: float, beta: float):
    ext = load()
    n, V = hs.shape[0], weight.shape[0]
    w32, hs32, ht32 = _f32(weight), _f32(hs), _f32(ht)
    grad_hs = torch.empty(hs.shape, dtype=torch.float32)
    grad_w = torch.zeros(weight.shape, dtype=torch.float32)
    zs_buf, zt_buf = _buffers(n, V, ht is not None, hs.device)
    for t0, t1 in _chunks(n):
        rows = t1 - t0
        zs = zs_buf[:rows]
        torch.mm(hs32[t0:t1], w32.T, out=zs)
        zt = None
        if ht32 is not None:
            zt = zt_buf[:rows]
            torch.mm(ht32[t0:t1], w32.T, out=zt)
        G = None if ht is None else st.G[t0:t1]
        _grad_chunk(
            ext,
            zs,
            zt,
            targets[t0:t1],
            st.lse_s[t0:t1],
            None if ht is None else st.lse_t[t0:t1],
            G,
            a[t0:t1],
            b[t0:t1],
            hs32[t0:t1],
            w32,
            grad_hs[t0:t1],
            grad_w,
            temperature,
            beta,
        )
    return grad_hs, grad_w


def fused(hs, ht, weight, targets, coefficients, *, temperature: float, beta: float):
    """Statistics, per-token coefficients and gradients, one chunk at a time (no recomputation)."""
    ext = load()
    n, V = hs.shape[0], weight.shape[0]
    w32, hs32, ht32 = _f32(weight), _f32(hs), _f32(ht)
    grad_hs = torch.empty(hs.shape, dtype=torch.float32)
    grad_w = torch.zeros(weight.shape, dtype=torch.float32)
    zs_buf, zt_buf = _buffers(n, V, ht is not None, hs.device)
    parts, coeffs = [], []
    for t0, t1 in _chunks(n):
        rows = t1 - t0
        zs, zt = zs_buf[:rows], None if zt_buf is None else zt_buf[:rows]
        ht_c = None if ht32 is None else ht32[t0:t1]
        part = _block_stats(ext, hs32[t0:t1], ht_c, w32, targets[t0:t1], temperature, beta, zs, zt)
        parts.append(part)
        divergence = part[4] if ht is not None else None
        coeff = coefficients(part[0], divergence, t0, t1)
        coeffs.append(coeff)
        _grad_chunk(
            ext,
            zs,
            zt,
            targets[t0:t1],
            part[2],
            part[3] if ht is not None else None,
            part[5] if ht is not None else None,
            coeff.a,
            coeff.b,
            hs32[t0:t1],
            w32,
            grad_hs[t0:t1],
            grad_w,
            temperature,
            beta,
        )
    st = _collect(parts, ht is not None)
    total = coeffs[0]
    for c in coeffs[1:]:
        total.pg_loss = total.pg_loss + c.pg_loss
        total.sd_loss = total.sd_loss + c.sd_loss
        total.clipped = total.clipped + c.clipped
    return st, total, grad_hs, grad_w
