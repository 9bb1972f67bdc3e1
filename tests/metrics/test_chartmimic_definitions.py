"""ChartMimic's definitions, one class of the benchmark's behaviour per test, on pairs built here.

Expected values are worked out by hand from the benchmark's rules (see vsdpo.metrics.chartmimic).
"""

from __future__ import annotations

import pytest

from vsdpo.metrics import chartmimic
from vsdpo.metrics.chartmimic_program import TICK_HOOK, benchmark_program, with_tick_removal
from vsdpo.metrics.chartmimic_trace import GRAPH_CELL, Recorder, to_hex

REFERENCE = """import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.bar([1, 2, 3], [3, 1, 2], color="#1f77b4")
ax.set_xticks([1, 2, 3])
ax.set_yticks([0, 3])
ax.set_title("Sales")
ax.set_xlabel("Quarter")
plt.savefig("reference.pdf")
"""


# ------------------------------------------------------------------------------------------ program text


def test_generated_program_is_cut_at_its_first_save_and_wrapped():
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nprint('after')\n"
    assert benchmark_program(code) == (
        "try:\n    import matplotlib.pyplot as plt\n    plt.plot([1, 2])\n"
        'except Exception as e:\n    pass\nplt.savefig("generated.pdf")'
    )
    # A commented-out save cuts too, and so does any character in place of show's dot.
    assert "later" not in benchmark_program("x = 1\n# plt.savefig('a.png')\nlater = 2\n")
    assert "later" not in benchmark_program("x = 1\npltXshow()\nlater = 2\n")


def test_ticks_are_removed_right_before_the_first_savefig():
    program, at_line_start = with_tick_removal("a = 1\nplt.savefig('x.pdf')\n")
    assert program == f"a = 1\n\n{TICK_HOOK}()\nplt.savefig('x.pdf')\n" and at_line_start
    assert with_tick_removal("fig.savefig('x.pdf')\n") == ("fig.savefig('x.pdf')\n", True)
    assert with_tick_removal("if True:\n    plt.savefig('x.pdf')\n")[1] is False


def test_colour_keys_follow_the_benchmark_hex_rule():
    assert to_hex("#1f77b4") == "#1F77B4"
    assert to_hex("#ff000080") == "#FF000080"  # a 9-character string is kept as written
    assert to_hex((1.0, 0.0, 0.0, 0.5)) == "#FF0000"
    assert to_hex("C0") == "#1F77B4"


# ------------------------------------------------------------------------------------------ scoring rules


def test_colour_thinning_keeps_the_first_recorded_of_similar_colours():
    def recorder_with(colors: list[str]) -> Recorder:
        recorder = Recorder()
        for index, color in enumerate(colors):
            recorder.artists[f"pie--{index}"] = ("pie", color, lambda artist, key: [artist])
        return recorder

    distinct = [
        "#000000",
        "#FFFFFF",
        "#FF0000",
        "#0000FF",
        "#FF00FF",
        "viridis",
        "plasma",
        "magma",
        "cividis",
    ]
    # #FE0000 is red again; #FFFF00 and #00FF00 are within dE 30 of each other (similarity > 0.7).
    colors = [*distinct[:3], "#FE0000", "#00FF00", "#FFFF00", *distinct[3:]]
    kept = [entry.split("--")[1] for entry in recorder_with(colors).final_colors()]
    assert kept == [*distinct[:3], "#00FF00", *distinct[3:]]
    swapped = [*distinct[:3], "#FE0000", "#FFFF00", "#00FF00", *distinct[3:]]
    assert "#FFFF00" in [e.split("--")[1] for e in recorder_with(swapped).final_colors()]
    # Ten or fewer are kept as they are, duplicates apart.
    assert len(recorder_with(["#FF0000", "#FE0000"]).final_colors()) == 2


def test_reference_without_colours_scores_zero_or_raises_as_the_benchmark():
    assert chartmimic.color_f1(["bar--#FF0000"], [])["f1"] == 0.0
    with pytest.raises(ZeroDivisionError):
        chartmimic.color_f1(["bar--#FF0000"], [], empty_reference="raise")
    assert chartmimic.name_rules("box_3.py") == (False, "zero")
    assert chartmimic.name_rules("graph_2.py") == (True, "raise")
    assert chartmimic.name_rules("/data/ori_500/graph_2.py")[0] is True
    assert chartmimic.name_rules(None) == (False, "zero")


# ------------------------------------------------------------------------------------------ programs run


def _trace(code: str, **options) -> dict:
    trace, error = chartmimic.trace_program(code, **options)
    assert trace is not None, error
    return trace


def test_a_program_that_raises_scores_what_it_drew_before():
    broken = REFERENCE.replace('ax.set_xlabel("Quarter")', 'undefined_name()\nax.set_xlabel("Quarter")')
    result = chartmimic.score(broken, REFERENCE)
    # Texts: generated ["Sales"] against ["Sales", "Quarter"]: P 1, R 1/2.
    assert result.ok and result.text == pytest.approx(2 / 3)
    assert (result.layout, result.type, result.color) == (1.0, 1.0, 1.0)
    # A syntax error, or a final save with nothing to save from, scores 0.
    assert chartmimic.score("plt.plot([1]\n", REFERENCE).mean == 0.0
    assert chartmimic.score("import math\n", REFERENCE).mean == 0.0


def test_a_program_saving_a_pdf_itself_records_its_texts_again():
    saved_by_figure = REFERENCE.replace('plt.savefig("reference.pdf")', 'fig.savefig("mine.pdf")')
    generated = _trace(saved_by_figure)
    # Its own save draws 5 tick labels and 2 texts; the final save (ticks removed) the 2 texts again.
    assert sorted(generated["texts"]) == sorted(
        ["0", "3", "1", "2", "3", "Quarter", "Sales"] + ["Quarter", "Sales"]
    )
    assert sorted(_trace(REFERENCE, role="reference")["texts"]) == ["Quarter", "Sales"]
    # Matched 2 of 9 against 2 of 2: F1 = 2 * (2/9) / (2/9 + 1) = 4/11.
    assert chartmimic.score(saved_by_figure, REFERENCE).text == pytest.approx(4 / 11)
    as_png = REFERENCE.replace('plt.savefig("reference.pdf")', 'fig.savefig("mine.png")')
    assert chartmimic.score(as_png, REFERENCE).text == 1.0


def test_artists_recoloured_after_creation_count_once_per_call_colour():
    recoloured = """import matplotlib.pyplot as plt
fig, ax = plt.subplots()
parts = ax.boxplot([[1, 2, 3], [2, 3, 4], [3, 4, 5]], patch_artist=True)
for box, color in zip(parts["boxes"], ["red", "green", "blue"]):
    box.set_facecolor(color)
ax.scatter([1, 2], [3, 4], color="black")
try:
    ax.bar([1, 2, 3], [1, 2])
except ValueError:
    pass
ax.plot([1, 2], [3, 4], color="orange")
plt.savefig("boxes.pdf")
"""
    trace = _trace(recoloured, role="reference")
    # All three boxes were made in one colour: one is kept, the last, read in its final colour.
    colors = trace["colors"]
    assert [c.rsplit("/", 1)[1] for c in colors] == ["boxplot--#0000FF", "scatter--#000000"]
    # The bar call raised: its count stands, and nothing is counted or coloured after it.
    assert sorted(key.rsplit(":", 1)[1] for key in trace["types"]) == ["bar", "boxplot", "scatter"]


def test_graph_programs_count_every_axes_as_one_cell():
    code = """import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([1, 2], [3, 4])
inset = fig.add_axes([0.6, 0.6, 0.2, 0.2])
inset.plot([1, 2], [4, 3])
plt.savefig("graph.pdf")
"""
    plain = _trace(code, role="reference")["layout"]
    assert plain == [dict(nrows=1, ncols=1, row_start=0, row_end=0, col_start=0, col_end=0)]
    assert _trace(code, role="reference", graph_layout=True)["layout"] == [GRAPH_CELL, GRAPH_CELL]


def test_programs_written_for_the_pinned_matplotlib_run():
    code = """import matplotlib.pyplot as plt
from matplotlib import cm
fig, ax = plt.subplots()
ax.boxplot([[1, 2, 3], [2, 3, 4]], labels=["a", "b"], patch_artist=True)
ax.set_title(cm.get_cmap("viridis").name)
plt.savefig("pinned.pdf")
"""
    assert "viridis" in _trace(code, role="reference")["texts"]
    trace, error = chartmimic.trace_program(code, role="reference", compat=False)
    assert trace is None and error
