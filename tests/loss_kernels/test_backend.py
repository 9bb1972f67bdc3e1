"""Every backend meets the ``Backend`` contract, by name and by signature; backends load on first use
only, and ``impl`` resolves as documented."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest
import torch

from vsdpo_kernels import Backend, resolve_impl
from vsdpo_kernels.backend import BACKEND_MODULES, FusedBackend, load_backend

# The backends that finish a chunk's gradients in the same sweep as its statistics.
FUSED = {"cpu"}


def parameters(function) -> list[tuple[str, inspect._ParameterKind]]:
    """Names and kinds of the parameters, without ``self`` (a backend is a module of functions)."""
    params = list(inspect.signature(function).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind) for p in params]


@pytest.mark.parametrize("impl", sorted(BACKEND_MODULES))
def test_every_backend_meets_the_protocol(impl):
    backend = load_backend(impl)
    assert backend is importlib.import_module(BACKEND_MODULES[impl])
    assert isinstance(backend, Backend)
    assert isinstance(backend, FusedBackend) == (impl in FUSED)
    for method in ("stats", "grads", "fused") if impl in FUSED else ("stats", "grads"):
        assert parameters(getattr(backend, method)) == parameters(getattr(FusedBackend, method)), method


def test_importing_the_package_loads_no_backend_dependency():
    code = (
        "import sys, vsdpo_kernels\n"
        "print(sorted(m for m in ('triton', 'torch.utils.cpp_extension') if m in sys.modules))\n"
        "vsdpo_kernels.backend.load_backend('triton')\n"
        "print('triton' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"]


def test_resolve_impl_names_the_device_it_cannot_serve(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match=r"impl='triton': expected CUDA tensors .*got cpu"):
        resolve_impl("triton", torch.device("cpu"))
    with pytest.raises(ValueError, match=r"impl='cpu': expected CPU tensors, got tensors on meta"):
        resolve_impl("cpu", torch.device("meta"))
    assert resolve_impl("auto", torch.device("meta")) == "torch"
    assert resolve_impl("reference", torch.device("cpu")) == "reference"
