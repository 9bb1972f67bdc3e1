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
