"""Renders per second through the warm sandbox pool against a cold `python file.py` per render.

    pytest bench/test_render_throughput.py -q

The chart program is a small real-world-sized figure; the cold path runs the same program in a fresh
interpreter that imports matplotlib and saves a PNG. Goal: the warm chart path >= 5x the cold one.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time

import pytest

from vsdpo.render import render

ROUNDS = 5
CHART = """import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.bar(["north", "south", "east", "west"], [12, 7, 9, 4], color="#4c72b0", label="units")
ax.plot([0, 1, 2, 3], [10, 8, 9, 6], color="#dd8452", marker="o", label="target")
ax.set_title("Sales by region")
ax.set_ylabel("units")
ax.legend()
plt.savefig("chart.png")
"""
WEB = "<html><body><h1>Title</h1><p>Some text.</p></body></html>"
SLIDES = """from pptx import Presentation
from pptx.util import Inches
deck = Presentation()
slide = deck.slides.add_slide(deck.slide_layouts[5])
slide.shapes.title.text = "Title"
deck.save("deck.pptx")
"""


def _median_seconds(fn, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_chart_warm_pool_vs_cold_subprocess(tmp_path, bench_record):
    source = tmp_path / "chart.py"
    source.write_text(CHART)
    assert render(CHART, "chart").ok  # starts and warms the pool

    def warm():
        assert render(CHART, "chart").ok

    def cold():
        subprocess.run([sys.executable, str(source)], cwd=tmp_path, check=True, capture_output=True)

    warm_s = _median_seconds(warm)
    cold_s = _median_seconds(cold)
    bench_record(
        "render_throughput",
        kind="chart",
        rounds=ROUNDS,
        times_s={"warm_pool": warm_s, "cold_subprocess": cold_s},
        renders_per_s={"warm_pool": 1 / warm_s, "cold_subprocess": 1 / cold_s},
        ratio_vs_cold=cold_s / warm_s,
    )


@pytest.mark.parametrize(
    ("kind", "code", "module"), [("web", WEB, "vsdpo.render.web"), ("slides", SLIDES, "vsdpo.render.slides")]
)
def test_other_kinds_warm(kind, code, module, tmp_path, bench_record):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not present")
    first = render(code, kind)
    if not first.ok:
        pytest.skip(f"{kind} renderer failed here: {first.error}")
    warm_s = _median_seconds(lambda: render(code, kind), rounds=3)
    fields = {"times_s": {"warm_pool": warm_s}, "renders_per_s": {"warm_pool": 1 / warm_s}}
    if kind == "slides":
        source = tmp_path / "deck.py"
        source.write_text(code)
        cold_s = _median_seconds(
            lambda: subprocess.run(
                [sys.executable, str(source)], cwd=tmp_path, check=True, capture_output=True
            ),
            3,
        )
        fields["times_s"]["cold_subprocess"] = cold_s
        fields["ratio_vs_cold"] = cold_s / warm_s
    bench_record("render_throughput", kind=kind, rounds=3, **fields)
