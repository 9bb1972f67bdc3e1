"""Where the C++ CPU kernel comes from: its source inside the package, built in a folder named by what
the build depends on, so that every install of the same source shares one build."""

from __future__ import annotations

import pytest

from vsdpo_kernels import cpu


def test_the_source_ships_inside_the_package():
    assert cpu._SOURCE.is_file() and cpu._SOURCE.parent.parent.name == "vsdpo_kernels"


def test_the_build_folder_is_named_by_the_source_not_its_location(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    source, flags = cpu._SOURCE.read_bytes(), cpu._compiler_flags()
    name, staged = cpu._staged_source(source, flags)
    assert staged.parent == tmp_path / name and staged.read_bytes() == source
    written = staged.stat().st_mtime_ns
    assert cpu._staged_source(source, flags) == (name, staged)
    assert staged.stat().st_mtime_ns == written  # left alone: ninja would rebuild a newer file
    assert cpu._staged_source(source + b"\n", flags)[0] != name
    assert cpu._staged_source(source, [*flags, "-DVSDPO_TEST"])[0] != name


def test_a_missing_source_is_a_build_failure_that_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "_SOURCE", tmp_path / "csrc" / "sdpo_cpu.cpp")
    monkeypatch.setattr(cpu, "_extension", None)
    monkeypatch.setattr(cpu, "_failure", None)
    with pytest.raises(RuntimeError, match="could not be built: FileNotFoundError: .* lacks its csrc/"):
        cpu.load()
