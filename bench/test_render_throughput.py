"""Renders per second through the warm sandbox pool against a cold `python file.py` per render.

    pytest bench/test_render_throughput.py -q     (VSDPO_BENCH_ROUNDS=N for more rounds)

The chart mix is one small hand-written figure and a few ChartMimic programs (bars, lines, a heatmap,
a pie, subplots with colour bars) when ../shared/data/chartmimic is present. Both paths run the very
same program text; the ChartMimic programs save a PNG rather than a PDF, since a render is a PNG.
Warm and cold runs alternate within each round, so a machine whose load drifts slows both alike;
each program's time is the median over the rounds, and the ratio is over the whole mix (the summed
medians), i.e. renders per second on this mix. Goal: the warm chart path >= 5x the cold one.

The chart reward runs each program a second time, through ChartMimic's tracer: its time per program
is measured on the default pool (the tracer imported and its PDF backend warmed in every worker)
against a pool whose workers lack both, alternating in each round, on the same mix.

Render plus reward per chart program, two runs against one: today's path renders the program, then
runs it again through the tracer for the reward; the one-run path renders it with ``chartmimic=True``
(the render records the trace) and scores that record. Each program is an edited copy (a colour and
the title changed) scored against its original, whose trace is cached; the paths alternate in each
round, their rewards must be equal, and the render and reward times are kept apart.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vsdpo.feedback.rewards import RewardConfig, assess
from vsdpo.metrics.chartmimic import TRACE_ENTRY
from vsdpo.render import render
from vsdpo.render.sandbox.pool import DEFAULT_PRELOAD, SandboxPool

ROUNDS = int(os.environ.get("VSDPO_BENCH_ROUNDS", "3"))
CHARTMIMIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "chartmimic"
CHARTMIMIC_PROGRAMS = ("bar_1", "line_1", "heatmap_1", "pie_1", "CB_1")
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


def chart_programs() -> dict[str, str]:
    """Name -> program text of the benchmark's chart mix."""
    programs = {"simple_bar_line": CHART}
    for name in CHARTMIMIC_PROGRAMS:
        path = CHARTMIMIC / f"{name}.py"
        if path.exists():
            programs[name] = path.read_text().replace('.pdf"', '.png"').replace(".pdf'", ".png'")
    return programs


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_chart_warm_pool_vs_cold_subprocess(tmp_path, bench_record):
    programs = chart_programs()
    sources = {}
    for name, code in programs.items():
        sources[name] = tmp_path / f"{name}.py"
        sources[name].write_text(code)
        assert render(code, "chart").ok, name  # starts and warms the pool; every program must render
    env = {**os.environ, "MPLBACKEND": "Agg"}
    warm: dict[str, list[float]] = {name: [] for name in programs}
    cold: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(ROUNDS):
        for name, code in programs.items():
            warm[name].append(_timed(lambda code=code: render(code, "chart")))
            cold[name].append(
                _timed(
                    lambda name=name: subprocess.run(
                        [sys.executable, str(sources[name])],
                        cwd=tmp_path,
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                )
            )
    warm_s = {name: statistics.median(times) for name, times in warm.items()}
    cold_s = {name: statistics.median(times) for name, times in cold.items()}
    total_warm, total_cold = sum(warm_s.values()), sum(cold_s.values())
    bench_record(
        "render_throughput",
        kind="chart",
        rounds=ROUNDS,
        programs=list(programs),
        times_s={"warm_pool": total_warm / len(programs), "cold_subprocess": total_cold / len(programs)},
        per_program_s={
            name: {"warm_pool": warm_s[name], "cold_subprocess": cold_s[name]} for name in programs
        },
        renders_per_s={
            "warm_pool": len(programs) / total_warm,
            "cold_subprocess": len(programs) / total_cold,
        },
        ratio_vs_cold=total_cold / total_warm,
    )
    print(
        f"\nchart: warm {total_warm / len(programs):.3f}s, cold {total_cold / len(programs):.3f}s per render, "
        f"ratio {total_cold / total_warm:.2f}x"
    )
    for name in programs:
        print(
            f"  {name}: warm {warm_s[name]:.3f}s cold {cold_s[name]:.3f}s ratio {cold_s[name] / warm_s[name]:.2f}x"
        )


def test_chart_reward_trace_preloaded_vs_not(bench_record):
    programs = chart_programs()
    payloads = {
        name: {"code": code, "role": "generated", "graph_layout": False, "compat": True}
        for name, code in programs.items()
    }
    without = tuple(module for module in DEFAULT_PRELOAD if module != "vsdpo.metrics.chartmimic_trace")
    times: dict[str, dict[str, list[float]]] = {"preloaded": {}, "not_preloaded": {}}
    with SandboxPool(preload=DEFAULT_PRELOAD) as preloaded, SandboxPool(preload=without) as bare:
        pools = {"preloaded": preloaded, "not_preloaded": bare}
        for label, pool in pools.items():  # start both workers, and check every program traces
            for name, payload in payloads.items():
                assert pool.run(TRACE_ENTRY, payload).ok, (label, name)
        for _ in range(ROUNDS):
            for name, payload in payloads.items():
                for label, pool in pools.items():
                    times[label].setdefault(name, []).append(
                        _timed(lambda p=pool, job=payload: p.run(TRACE_ENTRY, job))
                    )
    medians = {label: {name: statistics.median(t) for name, t in by.items()} for label, by in times.items()}
    totals = {label: sum(by.values()) for label, by in medians.items()}
    bench_record(
        "chart_reward_trace",
        kind="chart",
        rounds=ROUNDS,
        programs=list(programs),
        times_s={label: total / len(programs) for label, total in totals.items()},
        per_program_s={name: {label: medians[label][name] for label in medians} for name in programs},
        ratio_vs_not_preloaded=totals["not_preloaded"] / totals["preloaded"],
    )
    print(
        f"\nchart reward trace: preloaded {totals['preloaded'] / len(programs):.3f}s, not preloaded "
        f"{totals['not_preloaded'] / len(programs):.3f}s per program, "
        f"ratio {totals['not_preloaded'] / totals['preloaded']:.2f}x"
    )


def _edited(code: str) -> str:
    code = re.sub(r"#[0-9a-fA-F]{6}", "#3366CC", code, count=1)
    return re.sub(r"""(title\(\s*f?['"])""", r"\1Edited ", code, count=1)


def _render_and_assess(
    paths: dict, label: str, name: str, code: str, kind: str, reference: str, config, **options
):
    """Render ``code`` then score it against ``reference``; the two times go to ``paths[label][name]``."""
    started = time.perf_counter()
    result = render(code, kind, **options)
    rendered = time.perf_counter()
    assessment = assess(result, code, reference, config)
    done = time.perf_counter()
    times = paths[label].setdefault(name, {"render": [], "reward": []})
    times["render"].append(rendered - started)
    times["reward"].append(done - rendered)
    return assessment


def _summary(paths: dict, count: int) -> tuple[dict, dict, dict]:
    """Per path: the medians per item and part, the mean total per item, the mean of each part."""
    medians = {
        label: {name: {part: statistics.median(t) for part, t in parts.items()} for name, parts in by.items()}
        for label, by in paths.items()
    }
    per_item = {label: sum(sum(p.values()) for p in by.values()) / count for label, by in medians.items()}
    parts = {
        label: {part: sum(m[part] for m in by.values()) / count for part in ("render", "reward")}
        for label, by in medians.items()
    }
    return medians, per_item, parts


def test_chart_render_and_reward_one_run_vs_two(bench_record):
    programs = chart_programs()
    config = RewardConfig(kind="chart")
    paths = {"two_runs": {}, "one_run": {}}
    recorded = {}
    for name, reference in programs.items():  # warms the pool and caches every reference's trace
        code = _edited(reference)
        result = render(code, "chart", chartmimic=True)
        assert result.ok, name
        recorded[name] = result.record["chartmimic"] is not None
        assess(result, code, reference, config)
    for _ in range(ROUNDS):
        for name, reference in programs.items():
            code = _edited(reference)
            rewards = {}
            for label, options in (("two_runs", {}), ("one_run", {"chartmimic": True})):
                rewards[label] = _render_and_assess(
                    paths, label, name, code, "chart", reference, config, **options
                )
            assert rewards["one_run"] == rewards["two_runs"], name
    medians, per_program, parts = _summary(paths, len(programs))
    ratio = per_program["two_runs"] / per_program["one_run"]
    bench_record(
        "chart_render_and_reward",
        kind="chart",
        rounds=ROUNDS,
        programs=list(programs),
        recorded_in_render=recorded,
        times_s=per_program,
        parts_s=parts,
        per_program_s=medians,
        ratio_one_run_vs_two=ratio,
    )
    print(
        f"\nchart render+reward: two runs {per_program['two_runs']:.3f}s "
        f"(render {parts['two_runs']['render']:.3f}, reward {parts['two_runs']['reward']:.3f}), one run "
        f"{per_program['one_run']:.3f}s (render {parts['one_run']['render']:.3f}, reward "
        f"{parts['one_run']['reward']:.3f}) per program, ratio {ratio:.2f}x"
    )


DESIGN2CODE = CHARTMIMIC.parent / "design2code"
DESIGN2CODE_PAGES = ("1002", "9719", "13302", "10414", "1199")


def _edited_page(html: str) -> str:
    """The page with its first hex colour and the first word of its first heading changed."""
    html = re.sub(r"#[0-9a-fA-F]{6}\b", "#3366CC", html, count=1)
    return re.sub(r"(<h[1-3][^>]*>\s*)(\w+)", r"\1Edited", html, count=1)


def test_page_render_and_reward_reference_kept_vs_loaded(bench_record):
    from vsdpo.metrics import design2code

    pages = {
        n: (DESIGN2CODE / f"{n}.html").read_text()
        for n in DESIGN2CODE_PAGES
        if (DESIGN2CODE / f"{n}.html").exists()
    }
    if not pages:
        pytest.skip("../shared/data/design2code not present")
    config = RewardConfig(kind="web")
    if not render(WEB, "web").ok:
        pytest.skip("the web renderer failed here")
    paths = {"reference_loaded": {}, "reference_kept": {}}
    for _ in range(ROUNDS):
        for name, reference in pages.items():
            code = _edited_page(reference)
            rewards = {}
            for label in paths:
                if label == "reference_loaded":
                    design2code._references.clear()  # today's path: the reference loaded for every score
                else:
                    design2code.reference_page_blocks(reference)  # kept from an earlier rollout of the task
                rewards[label] = _render_and_assess(paths, label, name, code, "web", reference, config)
            assert rewards["reference_kept"] == rewards["reference_loaded"], name
    medians, per_page, parts = _summary(paths, len(pages))
    ratio = per_page["reference_loaded"] / per_page["reference_kept"]
    bench_record(
        "page_render_and_reward",
        kind="web",
        rounds=ROUNDS,
        pages=list(pages),
        times_s=per_page,
        parts_s=parts,
        per_page_s=medians,
        pages_per_s={label: 1 / t for label, t in per_page.items()},
        ratio_kept_vs_loaded=ratio,
    )
    print(
        f"\npage render+reward: reference loaded {per_page['reference_loaded']:.3f}s, kept "
        f"{per_page['reference_kept']:.3f}s per page (render {parts['reference_kept']['render']:.3f}), "
        f"ratio {ratio:.2f}x"
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


DECKS = int(os.environ.get("VSDPO_BENCH_DECKS", "12"))


def _same_pictures_and_rates(
    pictures: dict[str, list[bytes | None]], seconds: dict[str, list[float]], count: int, new: str, old: str
) -> tuple[dict[str, float], dict[str, float], float]:
    """Check that path ``new`` drew every picture as path ``old`` did; return each path's time per item
    and items per second (from the median round over ``count`` items) and new's rate over old's."""
    import numpy as np
    from PIL import Image

    for kept, alone in zip(pictures[new], pictures[old], strict=True):
        assert kept is not None and alone is not None
        np.testing.assert_array_equal(
            np.asarray(Image.open(io.BytesIO(kept))), np.asarray(Image.open(io.BytesIO(alone)))
        )
    medians = {label: statistics.median(times) for label, times in seconds.items()}
    times_s = {label: took / count for label, took in medians.items()}
    per_s = {label: count / took for label, took in medians.items()}
    return times_s, per_s, per_s[new] / per_s[old]


@pytest.mark.parametrize("mix", ["decks_py", "one_slide"])
def test_decks_per_second_two_workers_persistent_converter_vs_one_per_deck(mix, bench_record, monkeypatch):
    """Slide decks rendered end to end (the program in a sandbox job, the checks, the drawing) by two
    render threads over a pool of two sandbox workers, the trainer's shape on two cores: the deck
    drawn by a LibreOffice started in a sandbox job per deck (today's path, VSDPO_SLIDE_CONVERTER=job)
    against the persistent converters (one per thread). Two mixes: ``bench/decks.py``'s programs
    (titles, bullets, columns, tables, cards; 3 to 6 slides each), and the one-slide deck of
    ``test_other_kinds_warm`` as many times. The paths alternate in each round, and every picture must
    be the same on both."""
    from concurrent.futures import ThreadPoolExecutor

    from decks import deck_programs

    from vsdpo.render.sandbox import pool as sandbox_pool
    from vsdpo.render.slides import converter

    programs = deck_programs(DECKS, seed=0) if mix == "decks_py" else [SLIDES] * DECKS
    two = SandboxPool(workers=2)
    monkeypatch.setattr(sandbox_pool, "_default_pool", two)
    seconds: dict[str, list[float]] = {"one_libreoffice_per_deck": [], "persistent_converter": []}
    modes = {"one_libreoffice_per_deck": "job", "persistent_converter": "persistent"}
    pictures: dict[str, list[bytes | None]] = {}
    try:
        with ThreadPoolExecutor(max_workers=2) as threads:
            for chosen in modes.values():  # start the workers and the converters
                monkeypatch.setenv(converter.MODE_ENV, chosen)
                list(threads.map(lambda code: render(code, "slides", timeout_s=120), programs[:2]))
            for _ in range(ROUNDS):
                for label, chosen in modes.items():
                    monkeypatch.setenv(converter.MODE_ENV, chosen)
                    started = time.perf_counter()
                    results = list(threads.map(lambda code: render(code, "slides", timeout_s=120), programs))
                    seconds[label].append(time.perf_counter() - started)
                    assert all(result.ok for result in results), [r.error for r in results if not r.ok]
                    pictures[label] = [result.image for result in results]
    finally:
        two.shutdown()
        converter.close_all()
    times_s, per_s, ratio = _same_pictures_and_rates(
        pictures, seconds, len(programs), "persistent_converter", "one_libreoffice_per_deck"
    )
    bench_record(
        "deck_throughput_two_workers",
        kind="slides",
        mix=mix,
        rounds=ROUNDS,
        decks=len(programs),
        workers=2,
        times_s=times_s,
        decks_per_s=per_s,
        ratio_persistent_vs_per_deck=ratio,
    )
    print(
        f"\ndecks ({mix}), 2 workers: one LibreOffice per deck {per_s['one_libreoffice_per_deck']:.2f}/s, "
        f"persistent converters {per_s['persistent_converter']:.2f}/s, ratio {ratio:.2f}x"
    )


PAGES = int(os.environ.get("VSDPO_BENCH_PAGES", "24"))


@pytest.mark.parametrize("mix", ["small_page", "design2code"])
def test_pages_per_second_two_threads_reused_context_vs_one_per_page(mix, bench_record, monkeypatch):
    """Web pages rendered end to end (the page loaded, frozen, photographed, measured, checked) by two
    render threads, the trainer's shape on two cores: a browser context and tab of its own per page
    (the path before, VSDPO_WEB_FRESH_CONTEXT=1) against a warm context and tab per thread reused and
    emptied between pages. Two mixes: ``WEB`` with its title numbered, as many times, and the first
    Design2Code pages of ../shared/data (with their pictures). The paths alternate in each round, and
    every picture must be the same on both."""
    from concurrent.futures import ThreadPoolExecutor

    from vsdpo.render.web import browser

    assets = None
    if mix == "small_page":
        pages = [WEB.replace("Title", f"Title {i}") for i in range(PAGES)]
    else:
        assets = DESIGN2CODE
        pages = [p.read_text() for p in sorted(DESIGN2CODE.glob("*.html"))[:PAGES]]
        if not pages:
            pytest.skip("no Design2Code pages in ../shared/data")
    seconds: dict[str, list[float]] = {"context_per_page": [], "reused_context": []}
    fresh = {"context_per_page": "1", "reused_context": "0"}
    pictures: dict[str, list[bytes | None]] = {}

    def draw(html: str):
        return render(html, "web", timeout_s=60, assets_dir=assets)

    with ThreadPoolExecutor(max_workers=2) as threads:
        for label in fresh.values():  # start the browser and warm both paths
            monkeypatch.setenv(browser.FRESH_CONTEXT_ENV, label)
            list(threads.map(draw, pages[:2]))
        for _ in range(ROUNDS):
            for label, value in fresh.items():
                monkeypatch.setenv(browser.FRESH_CONTEXT_ENV, value)
                started = time.perf_counter()
                results = list(threads.map(draw, pages))
                seconds[label].append(time.perf_counter() - started)
                assert all(result.ok for result in results), [r.error for r in results if not r.ok]
                pictures[label] = [result.image for result in results]
    times_s, per_s, ratio = _same_pictures_and_rates(
        pictures, seconds, len(pages), "reused_context", "context_per_page"
    )
    bench_record(
        "page_throughput_two_threads",
        kind="web",
        mix=mix,
        rounds=ROUNDS,
        pages=len(pages),
        threads=2,
        times_s=times_s,
        pages_per_s=per_s,
        ratio_reused_vs_per_page=ratio,
    )
    print(
        f"\npages ({mix}), 2 threads: a context per page {per_s['context_per_page']:.2f}/s, "
        f"reused contexts {per_s['reused_context']:.2f}/s, ratio {ratio:.2f}x"
    )
