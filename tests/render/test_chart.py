"""The chart renderer: pictures, elements with lines, errors with lines, and every chart defect traced to
its line, with clean twins that report nothing."""

import io
import struct
from pathlib import Path

import matplotlib
import pytest
from PIL import Image

matplotlib.use("Agg")  # the tests' own runs of programs, in this process

import matplotlib.pyplot as plt  # noqa: E402

from vsdpo.render import render  # noqa: E402
from vsdpo.render.chart.corpus import corpus_files, render_corpus

CHARTMIMIC = Path(__file__).resolve().parents[3] / "shared" / "data" / "chartmimic"
HEAD = "import matplotlib.pyplot as plt\n"

# defect kind -> (program with the defect, the line to blame, its clean twin)
CASES = {
    "overlap": (
        HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.plot(range(30), range(30))\n"
        "ax.set_xticks(range(30))\n"
        "ax.set_xticklabels([f'category {i}' for i in range(30)])\n",
        5,
        HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.plot(range(30), range(30))\n"
        "ax.set_xticks(range(0, 30, 10))\n"
        "ax.set_xticklabels([f'c{i}' for i in range(0, 30, 10)])\n",
    ),
    "overlap-legend": (
        HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.plot([0, 1, 2, 3], [0, 1, 2, 3], label='rising')\n"
        "ax.legend(loc='upper left', bbox_to_anchor=(0.55, 0.95))\n",
        4,
        HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.plot([0, 1, 2, 3], [0, 1, 2, 3], label='rising')\n"
        "ax.legend(loc='lower right')\n",
    ),
    "clipped_text": (
        HEAD + "fig = plt.figure(figsize=(4, 3))\n"
        "ax = fig.add_subplot(111)\n"
        "fig.text(0.9, 0.5, 'a note that runs off the edge')\n",
        4,
        HEAD + "fig = plt.figure(figsize=(4, 3))\n"
        "ax = fig.add_subplot(111)\n"
        "fig.text(0.5, 0.95, 'a note', ha='center')\n",
    ),
    "overflow": (
        HEAD + "fig = plt.figure(figsize=(4, 3))\n"
        "ax = fig.add_axes([0.15, 0.15, 0.95, 0.7])\n"
        "ax.set_yticks([])\nax.set_xticks([])\n",
        3,
        HEAD + "fig = plt.figure(figsize=(4, 3))\n"
        "ax = fig.add_axes([0.15, 0.15, 0.7, 0.7])\n"
        "ax.set_yticks([])\nax.set_xticks([])\n",
    ),
    "misalignment": (
        HEAD + "fig = plt.figure(figsize=(6, 3))\n"
        "left = fig.add_axes([0.1, 0.15, 0.35, 0.7])\n"
        "right = fig.add_axes([0.55, 0.16, 0.35, 0.7])\n",
        4,
        HEAD + "fig = plt.figure(figsize=(6, 3))\n"
        "left = fig.add_axes([0.1, 0.15, 0.35, 0.7])\n"
        "right = fig.add_axes([0.55, 0.15, 0.35, 0.7])\n",
    ),
    "low_contrast": (
        HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.plot([0, 1], [0, 1])\n"
        "ax.text(0.1, 0.8, 'barely visible', color='#d8d8d8')\n",
        4,
        HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.plot([0, 1], [0, 1])\n"
        "ax.text(0.1, 0.8, 'clearly visible', color='#333333')\n",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_defect_found_and_traced_to_its_line(case):
    code, line, _ = CASES[case]
    kind = case.split("-")[0]
    result = render(code, "chart")
    assert result.ok, result.error
    matching = [d for d in result.defects if d.kind == kind]
    assert matching, f"no {kind} in {[(d.kind, d.message) for d in result.defects]}"
    assert any(line in d.lines for d in matching), [(d.lines, d.message) for d in matching]
    assert all(0 < d.severity <= 1 for d in result.defects)


@pytest.mark.parametrize("case", list(CASES))
def test_clean_twin_has_no_defect(case):
    result = render(CASES[case][2], "chart")
    assert result.ok, result.error
    assert result.defects == [], [(d.kind, d.lines, d.message) for d in result.defects]


def test_picture_and_elements():
    code = (
        HEAD
        + "fig, ax = plt.subplots(figsize=(4, 3), dpi=100)\nax.bar(['a', 'b'], [1, 2])\nax.set_title('Sales')\n"
    )
    result = render(code, "chart")
    assert result.ok and result.image[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", result.image[16:24]) == (400, 300) == (result.width, result.height)
    by_role = {}
    for element in result.elements:
        by_role.setdefault(element.role, []).append(element)
        x0, y0, x1, y1 = element.bbox
        assert 0 <= x0 <= x1 <= 400 and 0 <= y0 <= y1 <= 300
    (title,) = [e for e in by_role["text"] if e.text == "Sales"]
    assert title.lines == [4] and title.bbox[1] < 40  # near the top: y grows downwards
    assert {e.text for e in by_role["tick_label"]} >= {"a", "b"}
    assert all(e.lines == [3] for e in by_role["patch"])


def test_savefig_is_captured_not_written(tmp_path):
    target = tmp_path / "out.png"
    code = HEAD + f"plt.plot([1, 2])\nplt.savefig({str(target)!r}, bbox_inches='tight')\nplt.close()\n"
    result = render(code, "chart")
    assert result.ok, result.error
    assert not target.exists()
    assert result.width < 640  # cropped as the program asked


@pytest.mark.parametrize(
    ("code", "lines", "name"),
    [
        (HEAD + "x = [1, 2]\nplt.plot(x, undefined_name)\n", [3], "NameError"),
        (HEAD + "def draw():\n    return 1 / 0\n\ndraw()\n", [5, 3], "ZeroDivisionError"),
        (HEAD + "plt.plot([1, 2]\n", [2], "SyntaxError"),
        (HEAD + "x = 1\n", [], "no figure"),
    ],
)
def test_errors_name_the_user_lines(code, lines, name):
    result = render(code, "chart")
    assert not result.ok and name in result.error
    assert result.error_lines == lines


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        render("", "video")


@pytest.mark.slow
@pytest.mark.skipif(not CHARTMIMIC.is_dir(), reason="ChartMimic programs not present")
def test_chartmimic_sample_renders():
    # Every 12th program: a fixed sample of about 40 of the 499.
    report = render_corpus(corpus_files(CHARTMIMIC, sample_every=12), workers=2)
    assert report["runnable"] >= 30
    assert report["rate"] >= 0.95, report["failures"]


TIGHT_INSIDE = """
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot([1, 2, 3], [3, 1, 2], label="series")
ax.set_title("inside")
ax.legend()
plt.tight_layout()
plt.savefig("out.png", bbox_inches="tight", dpi=90)
"""
TIGHT_LEGEND_OUTSIDE = """
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot([1, 2, 3], [3, 1, 2], label="a long series name")
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
plt.savefig("out.png", bbox_inches="tight", dpi=90)
"""


@pytest.mark.parametrize("code", [TIGHT_INSIDE, TIGHT_LEGEND_OUTSIDE], ids=["cropped", "beyond-figure"])
def test_tight_pictures_have_savefigs_size_and_boxes_inside(code, tmp_path, monkeypatch):
    """A tight picture cut from one draw (or left to savefig when content lies beyond the figure)
    has the size savefig gives it, and its elements' boxes lie on it."""
    monkeypatch.chdir(tmp_path)  # the test's own run of the program (trusted test code) saves here
    exec(compile(code, "<test>", "exec"), {})
    expected = Image.open("out.png").size
    plt.close("all")

    result = render(code, "chart")
    assert result.ok, result.error
    assert (result.width, result.height) == expected
    assert Image.open(io.BytesIO(result.image)).size == expected
    texts = [e for e in result.elements if e.role == "text" and e.text]
    assert texts
    for element in texts:
        x0, y0, x1, y1 = element.bbox
        assert -1 <= x0 <= x1 <= expected[0] + 1 and -1 <= y0 <= y1 <= expected[1] + 1, element
