"""ChartMimic's low-level scores: the F1 definitions, CIEDE2000, and real programs through the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsdpo.metrics import chartmimic
from vsdpo.metrics.color import ciede2000, color_similarity

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "chartmimic"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/chartmimic")

# Pairs and expected differences from Sharma, Wu and Dalal (2005), Table 1.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
]


@pytest.mark.parametrize("lab1, lab2, expected", SHARMA)
def test_ciede2000_matches_published_values(lab1, lab2, expected):
    assert ciede2000(lab1, lab2) == pytest.approx(expected, abs=1e-4)
    assert ciede2000(lab2, lab1) == pytest.approx(expected, abs=1e-4)


def test_color_similarity():
    assert color_similarity("#FF0000", "red") == 1.0
    assert color_similarity("#000000", "#FFFFFF") == 0.0
    assert 0.9 < color_similarity("#FF0000", "#F00A0A") < 1.0


def test_text_f1_is_a_multiset_match():
    scores = chartmimic.text_f1(["a", "a", "b"], ["a", "b", "c", "d"])
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == 0.5
    assert scores["f1"] == pytest.approx(4 / 7)
    assert chartmimic.text_f1([], [])["f1"] == 0.0


def test_type_f1_counts_calls():
    scores = chartmimic.type_f1({"bar": 3, "plot": 1}, {"bar": 1, "scatter": 1})
    assert scores["precision"] == 0.25 and scores["recall"] == 0.5


def test_color_f1_matches_within_each_function():
    generated = ["bar--#FF0000", "bar--#0000FF", "plot--#00FF00"]
    reference = ["bar--#0000FF", "bar--#FF0000", "scatter--#00FF00"]
    scores = chartmimic.color_f1(generated, reference)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    # Colormaps match by name only.
    assert chartmimic.color_f1(["imshow--viridis"], ["imshow--viridis"])["f1"] == 1.0
    assert chartmimic.color_f1(["imshow--viridis"], ["imshow--#FF0000"])["f1"] == 0.0


def test_layout_f1():
    cell = dict(nrows=1, ncols=2, row_start=0, row_end=0, col_start=0, col_end=0)
    assert chartmimic.layout_f1([cell], [cell])["f1"] == 1.0
    assert chartmimic.layout_f1([cell], [{**cell, "ncols": 1}])["f1"] == 0.0


def program(name: str) -> str:
    return (DATA / f"{name}.py").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bar_1", "line_1", "pie_1", "radar_1", "heatmap_1"])
def test_real_program_against_itself_scores_one(name):
    code = program(name)
    result = chartmimic.score(code, code)
    assert result.ok
    assert result.as_dict() == {"text": 1.0, "layout": 1.0, "type": 1.0, "color": 1.0, "mean": 1.0}


EDITS = {
    # metric that must drop -> (text replaced, replacement) in bar_1.py
    "text": ('ylabel_value = "Scores"', 'ylabel_value = "Points"'),
    "color": ('"#495c80"', '"#ff0000"'),
    "type": ("ax.bar(ind, notre_dame", "ax.barh(ind, notre_dame"),
    "layout": ("fig.add_subplot(111)", "fig.add_subplot(121)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("metric", sorted(EDITS))
def test_edited_copy_drops_only_the_right_score(metric):
    reference = program("bar_1")
    old, new = EDITS[metric]
    assert old in reference
    result = chartmimic.score(reference.replace(old, new), reference)
    scores = result.as_dict()
    assert scores[metric] < 1.0
    assert all(scores[other] == 1.0 for other in ("text", "layout", "type", "color") if other != metric)


@pytest.mark.slow
def test_unrunnable_prediction_scores_zero_and_nothing_runs_in_the_caller(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reference = program("line_1")
    hostile = "open('written_by_prediction.txt', 'w').write('x')\nraise RuntimeError('no chart')"
    result = chartmimic.score(hostile, reference)
    # As the benchmark runs it, the error is swallowed and the final save has no pyplot to save with.
    assert not result.ok and "NameError" in result.error
    assert result.as_dict() == {"text": 0.0, "layout": 0.0, "type": 0.0, "color": 0.0, "mean": 0.0}
    assert not (tmp_path / "written_by_prediction.txt").exists()


@pytest.mark.slow
def test_broken_reference_is_an_error():
    with pytest.raises(chartmimic.ReferenceProgramError, match="reference"):
        chartmimic.score("import matplotlib.pyplot as plt\nplt.plot([1])", "1/0")


def test_trace_warm_up_leaves_matplotlib_as_it_found_it():
    """Every sandbox worker runs the tracer's warm-up before forking chart renders too: it may load
    fonts, never install the tracer's hooks."""
    import subprocess
    import sys

    probe = (
        "from matplotlib.axes import Axes\n"
        "from matplotlib.backends.backend_pdf import RendererPdf\n"
        "from matplotlib.figure import Figure\n"
        "before = (Figure.savefig, RendererPdf.draw_text, Axes.plot, Axes.bar)\n"
        "from vsdpo.metrics import chartmimic_trace\n"
        "chartmimic_trace.warm_up()\n"
        "assert (Figure.savefig, RendererPdf.draw_text, Axes.plot, Axes.bar) == before\n"
        "from vsdpo.render.sandbox.pool import DEFAULT_PRELOAD\n"
        "assert 'vsdpo.metrics.chartmimic_trace' in DEFAULT_PRELOAD\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120)
