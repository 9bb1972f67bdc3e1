"""One run per chart program: the trace the render records equals the tracer's, and so does the reward.

A chart rendered with ``chartmimic=True`` carries its ChartMimic trace (``RenderResult.record``) where
its run provably gives the benchmark's; scored with it, the program does not run again. Elsewhere
the record is None and the tracer runs apart, as it always did. Both ways the scores are the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vsdpo.feedback.rewards import RewardConfig, assess
from vsdpo.metrics import chartmimic
from vsdpo.metrics.chartmimic_program import single_run_names
from vsdpo.render import render
from vsdpo.render.chart.renderer import chartmimic_record
from vsdpo.render.replies import InvalidReply

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "chartmimic"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/chartmimic")
# Every 33rd program of the corpus: bars, boxes, 3-D, graphs, heatmaps, pies, radars, violins...
SAMPLE = sorted(path.name for path in DATA.glob("*.py"))[::33] if DATA.is_dir() else []

PLAIN = """import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.bar(["a", "b"], [1, 2], color="#4c72b0")
ax.set_title("Sales")
plt.tight_layout()
plt.savefig(name, dpi=dpi)
plt.show()
"""


def edited(code: str) -> str:
    """The program with its first hex colour and its first title changed, so that scores drop."""
    code = re.sub(r"#[0-9a-fA-F]{6}", "#3366CC", code, count=1)
    return re.sub(r"""(title\(\s*f?['"])""", r"\1Edited ", code, count=1)


@pytest.mark.parametrize(
    ("code", "names"),
    [
        (
            PLAIN.replace(
                "plt.savefig(name, dpi=dpi)", "name, dpi = 'a.png', 100\nplt.savefig(name, dpi=dpi)"
            ),
            {"name", "dpi"},
        ),
        ("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n", set()),  # no save: nothing is cut
    ],
)
def test_single_run_names_of_plain_programs(code, names):
    assert single_run_names(code) == names


@pytest.mark.parametrize(
    "code",
    [
        # the cut starts no line: the benchmark cuts the line in two
        "import matplotlib.pyplot as plt\nplt.plot([1]); plt.savefig('a.png')\n",
        # a save inside a block: the benchmark cuts the block
        "import matplotlib.pyplot as plt\nplt.plot([1])\nif True:\n    plt.savefig('a.png')\n",
        # a string over two lines: the benchmark's re-indentation changes it
        'import matplotlib.pyplot as plt\nplt.title("""a\nb""")\nplt.savefig("a.png")\n',
        # a docstring: __doc__ of a module, a plain string inside the benchmark's try
        '"""Sales."""\nimport matplotlib.pyplot as plt\nplt.plot([1])\nplt.savefig("a.png")\n',
        # a save before the cut draws in the benchmark's run (a PDF records its texts)
        "import matplotlib.pyplot as plt\nplt.gcf().savefig('a.pdf')\nplt.plot([1])\nplt.savefig('b.png')\n",
        # after the cut: a call in the arguments, or a statement that draws
        "import matplotlib.pyplot as plt\nplt.plot([1])\nplt.savefig(str(1))\n",
        "import matplotlib.pyplot as plt\nplt.plot([1])\nplt.savefig('a.png')\nplt.title('late')\n",
        # a future import, which the benchmark's try refuses
        "from __future__ import annotations\nimport matplotlib.pyplot as plt\nplt.plot([1])\n",
    ],
)
def test_single_run_refuses_what_the_benchmark_runs_otherwise(code):
    assert single_run_names(code) is None


def test_recorded_trace_takes_the_graph_rule_and_the_compat_setting():
    record = {
        "texts": ["a"],
        "layout": [{"nrows": 1, "ncols": 2, "row_start": 0, "row_end": 0, "col_start": 1, "col_end": 1}],
        "axes": 2,
        "types": {"f": 1},
        "colors": ["f--#000000"],
        "compat": True,
    }
    assert chartmimic.recorded_trace(record)["layout"] == record["layout"]
    assert len(chartmimic.recorded_trace(record, graph_layout=True)["layout"]) == 2
    assert chartmimic.recorded_trace(record, compat=False) is None
    assert chartmimic.recorded_trace(None) is None


def test_a_forged_record_is_refused():
    with pytest.raises(InvalidReply, match="record"):
        chartmimic_record({"chartmimic": {"texts": [1], "layout": [], "axes": 0, "types": {}, "colors": []}})
    assert chartmimic_record({"chartmimic": None}) == {"chartmimic": None}
    assert chartmimic_record(None) is None


def both_paths(code: str, reference: str, name: str):
    """(render as today, render with the record, score by the tracer, score by the record)."""
    plain = render(code, "chart")
    recording = render(code, "chart", chartmimic=True)
    assert plain.ok and recording.ok, (name, plain.error, recording.error)
    assert (plain.image, plain.elements, plain.defects) == (
        recording.image,
        recording.elements,
        recording.defects,
    )
    recorded = recording.record["chartmimic"]
    traced = chartmimic.score(code, reference, reference_name=name)
    from_record = chartmimic.score(code, reference, reference_name=name, recorded=recorded)
    return plain, recording, traced, from_record


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE, reason="the ChartMimic corpus is not present")
@pytest.mark.parametrize("name", SAMPLE)
def test_one_run_scores_as_two(name):
    reference = (DATA / name).read_text()
    for code in (reference, edited(reference)):
        plain, recording, traced, from_record = both_paths(code, reference, name)
        assert recording.record["chartmimic"] is not None, name  # every sampled program records
        assert from_record.generated_trace == traced.generated_trace
        assert (from_record.as_dict(), from_record.details) == (traced.as_dict(), traced.details)
        config = RewardConfig(kind="chart")
        today, one_run = assess(plain, code, reference, config), assess(recording, code, reference, config)
        assert today == one_run


@pytest.mark.slow
def test_a_program_that_cannot_record_falls_back_to_the_tracer():
    reference = PLAIN.replace("name, dpi=dpi", "'a.png'")
    # Its title spans two lines: the benchmark's run draws another title than the program's.
    code = reference.replace('ax.set_title("Sales")', 'ax.set_title("""Sales\nby region""")')
    assert single_run_names(code) is None
    plain, recording, traced, from_record = both_paths(code, reference, "bar_x.py")
    assert recording.record == {"chartmimic": None}
    assert from_record.generated_trace == traced.generated_trace
    assert from_record.as_dict() == traced.as_dict() and traced.text < 1.0
    config = RewardConfig(kind="chart")
    assert assess(plain, code, reference, config) == assess(recording, code, reference, config)
