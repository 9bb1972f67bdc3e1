"""`vsdpo render` and `vsdpo lint`: kind inference, text and JSON output, annotation, exit codes."""

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from vsdpo.cli import main
from vsdpo.render.cli import infer_kind

OVERLAPPING = (
    "import matplotlib.pyplot as plt\n"
    "fig, ax = plt.subplots(figsize=(4, 3))\n"
    "ax.set_xticks(range(30))\n"
    "ax.set_xticklabels([f'category {i}' for i in range(30)])\n"
)


def test_infer_kind():
    assert infer_kind(Path("a.py"), "import matplotlib.pyplot as plt") == "chart"
    assert infer_kind(Path("a.py"), "from pptx import Presentation") == "slides"
    assert infer_kind(Path("a.html"), "<html></html>") == "web"
    with pytest.raises(ValueError, match="--kind"):
        infer_kind(Path("a.txt"), "hello")


def test_lint_lists_defects_by_line_and_annotates(tmp_path, capsys):
    source = tmp_path / "chart.py"
    source.write_text(OVERLAPPING)
    boxes = tmp_path / "boxes.png"
    assert main(["lint", str(source), "--annotate", str(boxes)]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("3,4: overlap:") for line in out.splitlines()), out
    assert Image.open(io.BytesIO(boxes.read_bytes())).size == (400, 300)


def test_lint_json_and_clean_exit(tmp_path, capsys):
    source = tmp_path / "chart.py"
    source.write_text("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n")
    assert main(["lint", str(source), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["image"] is None and data["defects"] == []


def test_render_writes_png_and_failures_exit_2(tmp_path, capsys):
    source = tmp_path / "chart.py"
    source.write_text("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n")
    out = tmp_path / "out.png"
    assert main(["render", str(source), "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    source.write_text("import matplotlib.pyplot as plt\nplt.plot(missing)\n")
    assert main(["lint", str(source)]) == 2
    assert "NameError" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("binary", "binary data"),
        ("latin-1", "not UTF-8"),
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("device", "not a regular file"),
        ("too large", "larger than"),
        ("timeout 0", "--timeout"),
        ("timeout nan", "--timeout"),
        ("timeout inf", "--timeout"),
        ("output folder missing", "does not exist"),
        ("no kind", "--kind"),
    ],
)
def test_user_errors_give_one_line_and_exit_2(case, expected, tmp_path, capsys):
    program = tmp_path / "chart.py"
    program.write_text("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n")
    argv = ["lint", str(program)]
    if case == "binary":
        program.write_bytes(b"import os\n\0\0\0")
    elif case == "latin-1":
        program.write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    elif case == "missing":
        argv = ["lint", str(tmp_path / "nowhere.py")]
    elif case == "directory":
        argv = ["lint", str(tmp_path)]
    elif case == "device":
        argv = ["lint", "/dev/zero"]
    elif case == "too large":
        program.write_text("# padding\n" * 300_000)
    elif case.startswith("timeout"):
        argv += ["--timeout", case.split()[1]]
    elif case == "output folder missing":
        argv = ["render", str(program), "-o", str(tmp_path / "missing" / "out.png")]
    elif case == "no kind":
        other = tmp_path / "notes.txt"
        other.write_text("hello")
        argv = ["lint", str(other)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0], err
