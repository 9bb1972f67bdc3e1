"""The first `impl="cpu"` call of a fresh install compiles the C++ kernel, which takes a while: it says
so in one line, naming the folder the build goes to, and says nothing when the build is cached."""

from __future__ import annotations

import logging

import pytest
from torch.utils import cpp_extension

from vsdpo_kernels import cpu


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """No compiler run: torch's ``load`` is replaced by one that writes the library file and returns a
    stand-in; the module forgets any extension it holds."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(cpu, "_extension", None)
    monkeypatch.setattr(cpu, "_failure", None)
    built = []

    def load(name, sources, build_directory, **options):
        built.append(build_directory)
        (tmp_path / name / f"{name}.so").write_bytes(b"")
        return object()

    monkeypatch.setattr(cpp_extension, "load", load)
    return built


def test_a_build_is_announced_once_with_its_folder(fake_build, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vsdpo_kernels")
    cpu.load()
    messages = [r.getMessage() for r in caplog.records if r.name == "vsdpo_kernels"]
    assert len(messages) == 1 and messages[0].startswith("compiling the C++ CPU kernel (once")
    assert fake_build[0] in messages[0] and fake_build[0].startswith(str(tmp_path))
    assert "TORCH_EXTENSIONS_DIR" in messages[0]

    caplog.clear()
    cpu.load()  # held by the module: no build
    cpu._extension = None
    cpu.load()  # the library is in torch's cache: loaded, not compiled
    assert not [r for r in caplog.records if r.name == "vsdpo_kernels"]


def test_without_logging_set_up_the_line_goes_to_stderr(fake_build, capsys):
    loggers = (logging.getLogger("vsdpo_kernels"), logging.getLogger())
    levels = [logger.level for logger in loggers]
    loggers[0].setLevel(logging.NOTSET)
    loggers[1].setLevel(logging.WARNING)  # Python's default: INFO records are not shown
    try:
        cpu.load()
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("vsdpo_kernels: compiling the C++ CPU kernel")
