import subprocess
import sys

HEAVY = ("transformers", "playwright", "matplotlib", "pptx")


def test_kernels_import_pulls_in_no_trainer_dependency():
    code = (
        "import sys, vsdpo_kernels\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import vsdpo_kernels pulled in: {out.stdout.strip()}"


def test_cli_version_and_help():
    from vsdpo import __version__

    out = subprocess.run(
        [sys.executable, "-m", "vsdpo", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"vsdpo {__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "vsdpo", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: vsdpo" in out.stdout
