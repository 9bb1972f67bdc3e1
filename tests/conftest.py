"""Test-wide set-up: Triton runs through its interpreter when no GPU is present, the `gpu` and
`browser` markers skip where their hardware or program is missing, and the session's Hugging Face
checkpoint folders."""

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

# The full sandbox needs root (SECURITY.md). Elsewhere the suite runs its programs in the weaker one,
# by choice; the tests of the sandbox's layers skip there.
if os.geteuid() != 0:
    os.environ.setdefault("VSDPO_SANDBOX_ALLOW_WEAK", "1")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_browser = pytest.mark.skip(reason="needs Chromium (apt-get install chromium)")
    for item in items:
        if "gpu" in item.keywords and not _HAS_CUDA:
            item.add_marker(skip_gpu)
        if "browser" in item.keywords and CHROMIUM is None:
            item.add_marker(skip_browser)


# Small Hugging Face checkpoint folders (tests/hf_checkpoints.py), written once per session for every
# test that loads a model the way a downloaded one loads.
@pytest.fixture(scope="session")
def qwen3_folder(tmp_path_factory):
    from tests.hf_checkpoints import make_qwen3_checkpoint

    return make_qwen3_checkpoint(tmp_path_factory.mktemp("qwen3"))


@pytest.fixture(scope="session")
def qwen3_vl_folder(tmp_path_factory):
    from tests.hf_checkpoints import make_qwen3_vl_checkpoint

    return make_qwen3_vl_checkpoint(tmp_path_factory.mktemp("qwen3-vl"))
