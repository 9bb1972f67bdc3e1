"""CPU implementation: chunks of tokens against the whole vocabulary, the products through torch's
GEMM, and everything between them (softmaxes, divergence, dL/dlogits) fused in C++ (``csrc/sdpo_cpu.cpp``).

Per chunk of ``CHUNK_TOKENS`` tokens it holds one ``[chunk, V]`` float32 block for the student and
one for the teacher: the four products ``hs@W.T``, ``ht@W.T``, ``dZ@W``, ``dZ.T@hs`` run once each
and the C++ epilogue reads each block two or three times while it is hot. ``fused`` finishes the
gradients of a chunk before the next (the loss is the last node of the graph): this backend meets
``FusedBackend`` of backend.py. The extension is built (or loaded from torch's cache) on first use;
a build, which takes a while, is announced in one line first (``_announce``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from pathlib import Path

import torch

from vsdpo_kernels.stats import Stats

CHUNK_TOKENS = 256
# Shipped inside the package (package data), so that every kind of install can build it.
_SOURCE = Path(__file__).resolve().parent / "csrc" / "sdpo_cpu.cpp"
_extension = None
_failure: str | None = None
_warned = False

log = logging.getLogger("vsdpo_kernels")


def _compiler_flags() -> list[str]:
    flags = ["-O3", "-ffast-math", "-fopenmp"]
    if os.environ.get("VSDPO_CPU_NATIVE", "1") == "1":
        flags.append("-march=native")
    return flags


def _staged_source(source: bytes, flags: list[str]) -> tuple[str, Path]:
    """The extension's name and a copy of its source in a build folder named by what the build
    depends on (source, flags, the torch and the Python it compiles against), not by where this package
    lies: a checkout, a wheel and an editable install of the same kernel share one build in torch's cache."""
    from torch.utils.cpp_extension import get_default_build_root

    torch_folder = str(Path(torch.__file__).resolve().parent)
    against = [" ".join(flags), torch.__version__, torch_folder, sys.version, sys.base_prefix]
    key = hashlib.sha256(b"\0".join([source, *(part.encode() for part in against)])).hexdigest()[:16]
    name = f"vsdpo_sdpo_cpu_{key}"
    folder = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / _SOURCE.name
    # Written only when missing or stale: ninja compares modification times.
    if not staged.is_file() or staged.read_bytes() != source:
        tmp = staged.with_suffix(f".{os.getpid()}.tmp")  # several processes may build at once
        tmp.write_bytes(source)
        tmp.replace(staged)
    return name, staged


def load():
    """The compiled extension (built on first use, then cached by torch); raises if it cannot build."""
    global _extension, _failure
    if _extension is not None:
        return _extension
    if _failure is not None:
        raise RuntimeError(_failure)
    try:
        try:
            source = _SOURCE.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"C++ source not found at {_SOURCE}: this install of vsdpo_kernels lacks its csrc/ package data"
            ) from None
        # Imported here: the build machinery is only needed when this backend is used.
        from torch.utils.cpp_extension import load as load_extension

        flags = _compiler_flags()
        name, staged = _staged_source(source, flags)
        if not (staged.parent / f"{name}.so").is_file():  # else torch loads the cached build at once
            _announce(
                f"compiling the C++ CPU kernel (once per torch install, ~25 s) into {staged.parent} "
                "(torch's extension cache: TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions)"
            )
        _extension = load_extension(
            name=name,
            sources=[str(staged)],
            build_directory=str(staged.parent),
            extra_cflags=flags,
            extra_ldflags=["-fopenmp"],
            verbose=os.environ.get("VSDPO_VERBOSE_BUILD") == "1",
        )
    except Exception as error:  # compiler missing, headers missing, ...
        _failure = f"the C++ CPU kernel could not be built: {type(error).__name__}: {error}"
        raise RuntimeError(_failure) from error
    return _extension


def _announce(message: str) -> None:
    """Say ``message`` once: through logging where the process shows INFO records of this logger, else
    on stderr, so that a script that never configured logging still learns why its first call waits."""
    if log.isEnabledFor(logging.INFO) and log.hasHandlers():
        log.info(message)
    else:
        print(f"vsdpo_kernels: {message}", file=sys.stderr, flush=True)


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


class _Sweep:
    """The inputs in float32 and the two reusable ``[chunk, V]`` logits blocks of one call."""

    def __init__(self, hs, ht, weight, temperature: float, beta: float):
        self.ext = load()
        self.hs, self.weight = hs.float().contiguous(), weight.float().contiguous()
        self.ht = None if ht is None else ht.float().contiguous()
        self.inv_tau, self.beta = 1.0 / temperature, float(beta)
        rows = min(hs.shape[0], CHUNK_TOKENS)
        self.zs_block = torch.empty(rows, weight.shape[0], dtype=torch.float32)
        self.zt_block = None if ht is None else torch.empty_like(self.zs_block)

    def chunks(self):
        n = self.hs.shape[0]
        for t0 in range(0, n, CHUNK_TOKENS):
            yield t0, min(t0 + CHUNK_TOKENS, n)

    def logits(self, t0: int, t1: int):
        """Raw student and teacher logits of tokens ``t0:t1``, written into the reused blocks."""
        zs = self.zs_block[: t1 - t0]
        torch.mm(self.hs[t0:t1], self.weight.T, out=zs)
        zt = None
        if self.ht is not None:
            zt = self.zt_block[: t1 - t0]
            torch.mm(self.ht[t0:t1], self.weight.T, out=zt)
        return zs, zt

    def stats(self, zs, zt, targets) -> Stats:
        logp, entropy, lse_s, lse_t, divergence, G = self.ext.block_stats(
            zs, zt, targets, self.inv_tau, self.beta
        )
        if zt is None:
            return Stats(logp=logp, entropy=entropy, lse_s=lse_s)
        return Stats(logp=logp, entropy=entropy, lse_s=lse_s, lse_t=lse_t, divergence=divergence, G=G)

    def backward(self, zs, zt, targets, st: Stats, a, b, t0: int, t1: int, grad_hs, grad_w) -> None:
        """dZ into ``zs`` (in place), then ``dZ @ W`` into ``grad_hs[t0:t1]`` and ``dZ.T @ hs`` into ``grad_w``."""
        self.ext.block_grad_(
            zs, zt, targets, st.lse_s, st.lse_t, st.G, a.contiguous(), b.contiguous(), self.inv_tau, self.beta
        )
        torch.mm(zs, self.weight, out=grad_hs[t0:t1])
        grad_w.addmm_(zs.T, self.hs[t0:t1])

    def gradient_buffers(self):
        return torch.empty(self.hs.shape, dtype=torch.float32), torch.zeros(
            self.weight.shape, dtype=torch.float32
        )


def _concat(parts: list[Stats]) -> Stats:
    cat = lambda name: (
        None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts])
    )
    return Stats(**{name: cat(name) for name in ("logp", "entropy", "lse_s", "lse_t", "divergence", "G")})


def stats(hs, ht, weight, targets, *, temperature: float, beta: float) -> Stats:
    sweep = _Sweep(hs, ht, weight, temperature, beta)
    return _concat([sweep.stats(*sweep.logits(t0, t1), targets[t0:t1]) for t0, t1 in sweep.chunks()])


def grads(hs, ht, weight, targets, st: Stats, a, b, *, temperature: float, beta: float):
    """Gradients from statistics computed earlier (the logits are recomputed chunk by chunk)."""
    sweep = _Sweep(hs, ht, weight, temperature, beta)
    grad_hs, grad_w = sweep.gradient_buffers()
    for t0, t1 in sweep.chunks():
        zs, zt = sweep.logits(t0, t1)
        sweep.backward(zs, zt, targets[t0:t1], st.rows(t0, t1), a[t0:t1], b[t0:t1], t0, t1, grad_hs, grad_w)
    return grad_hs, grad_w


def fused(hs, ht, weight, targets, coefficients, *, temperature: float, beta: float):
    """Statistics, per-token coefficients and gradients, one chunk at a time (no recomputation)."""
    sweep = _Sweep(hs, ht, weight, temperature, beta)
    grad_hs, grad_w = sweep.gradient_buffers()
    parts, total = [], None
    for t0, t1 in sweep.chunks():
        zs, zt = sweep.logits(t0, t1)
        st = sweep.stats(zs, zt, targets[t0:t1])
        coeff = coefficients(st.logp, st.divergence, t0, t1)
        sweep.backward(zs, zt, targets[t0:t1], st, coeff.a, coeff.b, t0, t1, grad_hs, grad_w)
        parts.append(st)
        if total is None:
            total = coeff
        else:
            total.pg_loss, total.sd_loss = total.pg_loss + coeff.pg_loss, total.sd_loss + coeff.sd_loss
            total.clipped = total.clipped + coeff.clipped
    return _concat(parts), total, grad_hs, grad_w
