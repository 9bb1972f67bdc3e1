"""The package as users install it: a wheel built from the sources carries the C++ kernel's source and
the training configs, and an install of that wheel into a fresh environment, used away from the
sources, runs ``impl="cpu"`` and finds a packaged config by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from vsdpo.train.config import packaged_configs

ROOT = Path(__file__).resolve().parents[1]

# Runs in the installed environment: which files it imports, what `auto` picks on the CPU (a fallback
# to `torch` warns, and the warning is an error here), both implementations' loss on one input, and
# a config found by name.
INSTALLED_CHECK = textwrap.dedent(
    """
    import json, warnings
    import torch
    import vsdpo, vsdpo_kernels
    from vsdpo_kernels import SDPOLossConfig, fused_linear_sdpo_loss, resolve_impl
    from vsdpo.train.config import ConfigError, find_config, load_config

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        impl = resolve_impl("auto", torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    hidden, teacher = torch.randn(2, 6, 16, generator=g), torch.randn(2, 6, 16, generator=g)
    weight, targets = torch.randn(40, 16, generator=g), torch.randint(0, 40, (2, 6), generator=g)
    losses = {
        name: fused_linear_sdpo_loss(hidden, weight, targets, teacher_hidden=teacher,
                                     advantages=torch.tensor([1.0, -1.0]), impl=name).loss.item()
        for name in ("cpu", "torch")
    }
    try:
        load_config("no_such_config")
        unknown = None
    except ConfigError as error:
        unknown = str(error)
    print(json.dumps({
        "vsdpo_kernels": vsdpo_kernels.__file__, "vsdpo": vsdpo.__file__, "auto": impl, "losses": losses,
        "config_file": str(find_config("qwen3vl_8b_chart")),
        "model": load_config("qwen3vl_8b_chart").model.name, "unknown": unknown,
    }))
    """
)


def run(*command, **options) -> str:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, **options)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def copy_sources(target: Path) -> None:
    """What a clone holds of the package: project files and the two package folders, no build output."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for package in ("vsdpo", "vsdpo_kernels"):
        shutil.copytree(ROOT / package, target / package, ignore=skip)


@pytest.mark.slow
def test_wheel_install_runs_the_cpu_kernel_and_finds_configs_by_name(tmp_path):
    copy_sources(tmp_path / "source")
    # The build uses this environment's setuptools (no download); the wheel is what pip installs.
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--wheel-dir",
        tmp_path / "wheels",
        tmp_path / "source",
    )
    (wheel,) = (tmp_path / "wheels").glob("vsdpo-*.whl")
    files = set(zipfile.ZipFile(wheel).namelist())
    assert "vsdpo_kernels/csrc/sdpo_cpu.cpp" in files
    assert {f"vsdpo/configs/{name}.yaml" for name in packaged_configs()} <= files
    assert "qwen3vl_8b_chart" in packaged_configs()

    # A fresh environment that borrows torch, transformers, ... from this one through a path line in
    # a .pth file (which does not run that folder's own .pth files, so not the editable install).
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        wheel,
    )

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = json.loads(run(python, "-c", INSTALLED_CHECK, cwd=workdir, env=env).strip().splitlines()[-1])

    for module in ("vsdpo_kernels", "vsdpo"):
        assert Path(result[module]).is_relative_to(venv), result[module]
    assert result["auto"] == "cpu"
    assert result["losses"]["cpu"] == pytest.approx(result["losses"]["torch"], rel=1e-5)
    assert Path(result["config_file"]).is_relative_to(venv)
    assert result["model"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert "no_such_config" in result["unknown"] and "qwen3vl_8b_chart" in result["unknown"]
