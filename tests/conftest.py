"""Test-wide set-up: Triton runs through its interpreter when no GPU is present, and the `gpu` and
`browser` markers skip where their hardware or program is missing."""

from __future__ import annotations

import os
import shutil

# Must be set before triton is first imported anywhere in the test session.
try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _HAS_CUDA = False
if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_browser = pytest.mark.skip(reason="needs Chromium (apt-get install chromium)")
    for item in items:
        if "gpu" in item.keywords and not _HAS_CUDA:
            item.add_marker(skip_gpu)
        if "browser" in item.keywords and CHROMIUM is None:
            item.add_marker(skip_browser)
