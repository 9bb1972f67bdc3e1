"""How closely vsdpo's ChartMimic and Design2Code metrics agree with the benchmarks' own evaluator code.

    .venv/bin/python bench/metric_agreement.py --originals /tmp/originals --data ../shared/data

THE ORIGINAL EVALUATORS' CODE IS NOT PART OF THIS REPOSITORY AND MUST BE FETCHED SEPARATELY. This
script only drives it (in subprocesses, through small drivers it writes to a temporary folder) and
never contains it. ``--originals DIR`` must hold:

- ``DIR/chartmimic/``: files of the public repository ChartMimic/ChartMimic at their own paths:
  ``chart2code/utils/evaluator/{text,layout,chart_type,color}_evaluator.py``,
  ``chart_type_evaluator_prefix.py``, ``color_evaluator_prefix.py``, ``color_utils.py``,
  ``chart2code/utils/post_process/code_interpreter.py`` and ``eval_configs/global_config.py``;
- ``DIR/design2code/``: files of the public repository NoviScl/Design2Code at their own paths:
  ``Design2Code/metrics/{visual_score,ocr_free_utils,screenshot_single}.py`` and
  ``Design2Code/data_utils/dedup_post_gen.py`` (``get_blocks_ocr_free(image, take_screenshot)``).

Patch them only to run offline: CLIP (and its torch/sklearn imports) out of ``visual_score.py``
(score 0); ``screenshot_single.py`` launching the system Chromium (``$VSDPO_CHROMIUM`` or
``/usr/bin/chromium``); the unused scikit-image import out of ``color_evaluator.py``, and there the
maximum over permutations may be computed as the (identical) optimum of the assignment problem when
the permutations are too many. Their Python needs: colormath, beautifulsoup4, opencv-python-headless,
python-dotenv, squarify, networkx, matplotlib-venn, playwright.

The ChartMimic programs run on the matplotlib installed here with vsdpo's compatibility calls
(:mod:`vsdpo.render.chart.compat`) and matplotlib 3.8's name ``_makeline`` restored, in both
evaluators. Pairs are built here from the data (no model output): for ChartMimic, reference programs
x identity, recolour, retitle, annotate, drop a series, grid, chart-type swap, a run-time error
after some drawing, a PDF saved through the figure object, boxes recoloured after creation; for
Design2Code, the pages x identity, text change, CSS move/resize, recoloured text and backgrounds,
removed block. Each evaluator object is fresh for every pair (the benchmark's objects carry state
from pair to pair; that is not reproduced). A pair agrees on a metric when ``|vsdpo - original| <=
0.01``. Results: ``bench/results/metric_agreement-<UTC time>.json``. The originals' scores are cached
(``--cache``), so a rerun after a change to vsdpo only recomputes vsdpo's side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.01
CHART_METRICS = ("text", "layout", "type", "color")
WEB_METRICS = ("block", "text", "position", "color")

# ------------------------------------------------------------------------------------------ ChartMimic pairs

_HEX = re.compile(r"#([0-9a-fA-F]{6})\b")
_NAMED = {
    "'blue'": "'darkorange'",
    '"blue"': '"darkorange"',
    "'red'": "'teal'",
    '"red"': '"teal"',
    "'green'": "'purple'",
    '"green"': '"purple"',
    "'orange'": "'navy'",
    '"orange"': '"navy"',
}
_PLOT_CALL = re.compile(
    r"\.(plot|bar|barh|scatter|fill_between|errorbar|hist|pie|boxplot|violinplot|"
    r"plot_surface|bar3d|imshow|contourf|contour|quiver|fill|axhline|axvline)\("
)


def _balanced(line: str) -> bool:
    return line.count("(") == line.count(")") and line.count("[") == line.count("]")


def _before_save(code: str, snippet: str) -> str | None:
    """``snippet`` on lines of its own before the first top-level ``plt.savefig``."""
    match = re.search(r"^plt\.savefig\(", code, re.M)
    if match is None:
        return None
    return code[: match.start()] + snippet.rstrip("\n") + "\n" + code[match.start() :]


def _top_level_plot_line(code: str) -> int | None:
    lines = code.split("\n")
    for index, line in enumerate(lines):
        if (
            line
            and not line[0].isspace()
            and _PLOT_CALL.search(line)
            and _balanced(line)
            and "=" not in line.split("(")[0]
        ):
            return index
    return None


def recolour(code: str) -> str | None:
    if _HEX.search(code):
        return _HEX.sub(lambda m: "#" + m.group(1)[2:] + m.group(1)[:2], code)
    changed = code
    for old, new in _NAMED.items():
        changed = changed.replace(old, new)
    return changed if changed != code else None


def retitle(code: str) -> str | None:
    pattern = re.compile(r"((?:set_title|title|suptitle)\(\s*)(['\"])([^'\"\n]+)\2")
    if pattern.search(code):
        return pattern.sub(
            lambda m: f"{m.group(1)}{m.group(2)}Revised: {m.group(3)[::-1]}{m.group(2)}", code, count=1
        )
    return _before_save(code, 'plt.gca().set_title("A title of its own")')


def annotate(code: str) -> str | None:
    return _before_save(
        code,
        'plt.gca().annotate("peak here", xy=(0.5, 0.5), xycoords="axes fraction", xytext=(0.7, 0.8), '
        'textcoords="axes fraction", arrowprops=dict(arrowstyle="->"))\n'
        'plt.gcf().text(0.02, 0.02, "Source: synthetic", fontsize=8)',
    )


def drop_series(code: str) -> str | None:
    index = _top_level_plot_line(code)
    if index is None:
        return None
    lines = code.split("\n")
    del lines[index]
    return "\n".join(lines)


def grid(code: str) -> str | None:
    return _before_save(
        code, "for _ax in plt.gcf().axes:\n    _ax.grid(True, linestyle=':', color='#888888')"
    )


def type_swap(code: str) -> str | None:
    for old, new in (
        (".bar(", ".plot("),
        (".plot(", ".scatter("),
        (".scatter(", ".plot("),
        (".barh(", ".bar("),
        (".fill_between(", ".plot("),
        (".hist(", ".boxplot("),
        (".pie(", ".bar("),
    ):
        if old in code:
            return code.replace(old, new, 1)
    return None


def runtime_error(code: str) -> str | None:
    index = _top_level_plot_line(code)
    if index is None:
        return None
    lines = code.split("\n")
    lines.insert(index + 1, "undefined_helper_after_drawing()")
    return "\n".join(lines)


def figure_pdf(code: str) -> str | None:
    match = re.search(r"^plt\.savefig\((['\"])([^'\"]+)\.pdf\1", code, re.M)
    if match is None:
        return None
    return (
        code[: match.start()]
        + f"plt.gcf().savefig({match.group(1)}{match.group(2)}_copy.pdf{match.group(1)})\n"
        + code[match.start() :]
    )


def patch_recolour(code: str) -> str | None:
    if "boxplot(" not in code:
        return None
    code = (
        re.sub(r"boxplot\(", "boxplot(patch_artist=True, ", code, count=1)
        if "patch_artist" not in code
        else code
    )
    return _before_save(
        code,
        "for _ax in plt.gcf().axes:\n"
        "    _boxes = [p for p in _ax.patches if type(p).__name__ == 'PathPatch']\n"
        "    for _i, _p in enumerate(_boxes):\n"
        "        _p.set_facecolor(['#4477aa', '#ee6677', '#228833', '#ccbb44'][_i % 4])",
    )


CHART_VARIANTS = {
    "recolour": recolour,
    "retitle": retitle,
    "annotate": annotate,
    "drop_series": drop_series,
    "grid": grid,
    "type_swap": type_swap,
    "runtime_error": runtime_error,
    "figure_pdf": figure_pdf,
    "patch_recolour": patch_recolour,
}


def chart_references(data: Path, count: int) -> list[Path]:
    """``count`` reference programs, the first of each category in turn (deterministic)."""
    by_category: dict[str, list[Path]] = {}
    for path in sorted(
        data.glob("*.py"), key=lambda p: (p.stem.rsplit("_", 1)[0], int(p.stem.rsplit("_", 1)[1]))
    ):
        by_category.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    chosen, round_ = [], 0
    while len(chosen) < count and any(len(v) > round_ for v in by_category.values()):
        for paths in by_category.values():
            if len(paths) > round_ and len(chosen) < count:
                chosen.append(paths[round_])
        round_ += 1
    return chosen


def chart_pairs(data: Path, count: int, per_reference: int) -> list[dict[str, Any]]:
    names = list(CHART_VARIANTS)
    pairs, turn = [], 0
    for path in chart_references(data, count):
        reference = path.read_text()
        pairs.append(
            {"name": path.name, "variant": "identity", "reference": reference, "generated": reference}
        )
        made = 0
        # The box-specific variant first where it applies, then the others in turn.
        order = (["patch_recolour"] if "boxplot(" in reference else []) + [
            names[(turn + k) % len(names)] for k in range(len(names))
        ]
        for variant in dict.fromkeys(order):
            if made >= per_reference:
                break
            generated = CHART_VARIANTS[variant](reference)
            if generated is None or generated == reference:
                continue
            pairs.append(
                {"name": path.name, "variant": variant, "reference": reference, "generated": generated}
            )
            made += 1
            turn += 1
    return pairs


# ------------------------------------------------------------------------------------------ Design2Code pairs

_STYLE_MOVE = "<style>body { padding-left: 48px !important; } h1, h2 { font-size: 1.35em !important; } p { margin-top: 28px !important; }</style>"
_STYLE_RECOLOUR = (
    "<style>body { color: #334477 !important; background: #fdf6e3 !important; } "
    "h1, h2, h3 { color: #aa2222 !important; } a { color: #117733 !important; } "
    "div, section, header, footer { background-color: #eef2f7 !important; }</style>"
)


def _inject_style(html: str, style: str) -> str:
    if re.search(r"</head>", html, re.I):
        return re.sub(r"</head>", style + "</head>", html, count=1, flags=re.I)
    return style + html


def text_change(html: str) -> str | None:
    segments = list(re.finditer(r">([^<>]{20,})<", html))
    if not segments:
        return None
    pieces, last = [], 0
    for k, match in enumerate(segments):
        if k % 3 != 0 or not match.group(1).strip():
            continue
        words = match.group(1).split()
        changed = " ".join(words[::-1]) if len(words) > 2 else match.group(1).upper()
        pieces.append(html[last : match.start(1)] + changed)
        last = match.end(1)
    return "".join(pieces) + html[last:]


def css_move(html: str) -> str | None:
    return _inject_style(html, _STYLE_MOVE)


def recolour_page(html: str) -> str | None:
    return _inject_style(html, _STYLE_RECOLOUR)


def remove_block(html: str) -> str | None:
    for tag in ("p", "li", "h2", "h3", "td"):
        matches = list(re.finditer(rf"<{tag}\b[^>]*>.*?</{tag}>", html, re.S | re.I))
        if matches:
            match = matches[len(matches) // 2]
            return html[: match.start()] + html[match.end() :]
    return None


WEB_VARIANTS = {
    "text_change": text_change,
    "css_move": css_move,
    "recolour": recolour_page,
    "remove_block": remove_block,
}


def web_pairs(data: Path, count: int | None = None) -> list[dict[str, Any]]:
    pairs = []
    pages = sorted(data.glob("*.html"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    for path in pages[:count]:
        reference = path.read_text(errors="replace")
        pairs.append(
            {"name": path.name, "variant": "identity", "reference": reference, "generated": reference}
        )
        for variant, make in WEB_VARIANTS.items():
            generated = make(reference)
            if generated is not None and generated != reference:
                pairs.append(
                    {"name": path.name, "variant": variant, "reference": reference, "generated": generated}
                )
    return pairs


# ------------------------------------------------------------------------------------------ the originals

# Every process of the original evaluators starts with this (it is vsdpo's, not theirs): the pinned
# matplotlib's removed calls back, and its name ``_makeline`` for the line maker that both of their
# prefixes trace (renamed ``_make_line`` later).
_SITECUSTOMIZE = """
import os
if os.environ.get("METRIC_AGREEMENT_SHIM"):
    import matplotlib
    matplotlib.use("Agg")
    from vsdpo.render.chart import compat
    compat.install()
    from matplotlib.axes._base import _process_plot_var_args as _P
    if not hasattr(_P, "_makeline") and hasattr(_P, "_make_line"):
        _maker = _P._make_line
        _maker.__name__ = "_makeline"
        _P._makeline = _maker
        def _make_line(self, *args, **kwargs):
            return self._makeline(*args, **kwargs)
        _P._make_line = _make_line
"""

_CHART_DRIVER = """
import json, os, sys, traceback
import pandas as pd
sys.path.insert(0, os.environ["PROJECT_PATH"])
from chart2code.utils.evaluator.text_evaluator import TextEvaluator
from chart2code.utils.evaluator.layout_evaluator import LayoutEvaluator
from chart2code.utils.evaluator.chart_type_evaluator import ChartTypeEvaluator
from chart2code.utils.evaluator.color_evaluator import ColorEvaluator
import chart2code.utils.post_process.code_interpreter as interpreter
import numpy
import chart2code.utils.evaluator.text_evaluator as _t, chart2code.utils.evaluator.layout_evaluator as _l
import chart2code.utils.evaluator.chart_type_evaluator as _c, chart2code.utils.evaluator.color_evaluator as _k
for _module in (_t, _l, _c, _k):
    _module.np = numpy  # numpy 2 writes its scalars as np.float64(...): let their eval() read them

job = json.load(open(sys.argv[1]))
out = open(sys.argv[2], "a")
work = job["work"]
os.makedirs(os.path.join(work, "ori"), exist_ok=True)
golden_cache = {}

def logs(path):
    return {
        "text": TextEvaluator(use_position=False, use_axs=False)._log_texts(path),
        "layout": LayoutEvaluator()._log_layouts(path),
        "type": ChartTypeEvaluator()._get_chart_types(path),
        "color": ColorEvaluator()._log_colors(path),
    }

for pair in job["pairs"]:
    golden = os.path.join(work, "ori", pair["name"])
    if golden not in golden_cache:
        with open(golden, "w") as f:
            f.write(pair["reference"])
        golden_cache[golden] = logs(golden)
    gold = golden_cache[golden]
    out_dir = os.path.join(work, "out", pair["variant"])
    os.makedirs(out_dir, exist_ok=True)
    interpreter.input_file = "results.json"
    interpreter.output_dir = out_dir
    frame = pd.DataFrame({"file": ["dataset/ori_500/" + pair["name"].replace(".py", ".pdf")],
                          "response": ["```python\\n" + pair["generated"] + "\\n```"]})
    system = os.system
    os.system = lambda command: 0  # the interpreter's own run of the program: not needed for the scores
    try:
        interpreter._muti_process_run(0, frame)
    finally:
        os.system = system
    generated = os.path.join(out_dir, pair["name"])
    gen = logs(generated)
    record = {"key": pair["key"]}
    for name, evaluator in (("text", TextEvaluator(use_position=False, use_axs=False)), ("layout", LayoutEvaluator()),
                            ("type", ChartTypeEvaluator()), ("color", ColorEvaluator())):
        evaluator.golden_code_file = golden
        try:
            evaluator._calculate_metrics(list(gen[name]) if name != "type" else dict(gen[name]),
                                         list(gold[name]) if name != "type" else dict(gold[name]))
            record[name] = evaluator.metrics["f1"]
        except Exception as error:
            record[name] = None
            record[name + "_error"] = type(error).__name__
    record["logs"] = {"generated": {k: (v if k != "text" else [t[-1] for t in v]) for k, v in gen.items()},
                      "reference": {k: (v if k != "text" else [t[-1] for t in v]) for k, v in gold.items()}}
    out.write(json.dumps(record, default=str) + "\\n")
    out.flush()
"""

_WEB_DRIVER = """
import json, os, sys
sys.path.insert(0, os.environ["D2C_ROOT"])
os.chdir(os.path.join(os.environ["D2C_ROOT"], "Design2Code"))
from Design2Code.metrics.visual_score import visual_eval_v3_multi

job = json.load(open(sys.argv[1]))
out = open(sys.argv[2], "a")
for page in job["pages"]:
    result = visual_eval_v3_multi([page["predicted"], page["original"]])
    for key, (_, _, scores) in zip(page["keys"], result):
        block, text, position, color, _clip = scores
        out.write(json.dumps({"key": key, "block": float(block), "text": float(text),
                              "position": float(position), "color": float(color)}) + "\\n")
    out.flush()
"""


def _key(benchmark: str, pair: dict[str, Any]) -> str:
    text = json.dumps([benchmark, pair["name"], pair["reference"], pair["generated"]])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _load_cache(path: Path) -> dict[str, dict[str, Any]]:
    cache = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                cache[record["key"]] = record
    return cache


def _driver_env(originals: Path, shim_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([shim_dir, str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["METRIC_AGREEMENT_SHIM"] = "1"
    env["MPLBACKEND"] = "Agg"
    env["PROJECT_PATH"] = str(originals / "chartmimic")
    env["D2C_ROOT"] = str(originals / "design2code")
    return env


def run_originals(
    benchmark: str, pairs: list[dict[str, Any]], originals: Path, cache_file: Path, data: Path
) -> None:
    todo = [pair for pair in pairs if pair["key"] not in _load_cache(cache_file)]
    if not todo:
        return
    print(f"[{benchmark}] original evaluators on {len(todo)} pairs ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="ma-") as work:
        shim = os.path.join(work, "shim")
        os.makedirs(shim)
        Path(shim, "sitecustomize.py").write_text(_SITECUSTOMIZE)
        driver = Path(work, "driver.py")
        if benchmark == "chartmimic":
            driver.write_text(_CHART_DRIVER)
            job = {"work": os.path.join(work, "w"), "pairs": todo}
        else:
            driver.write_text(_WEB_DRIVER)
            pages: dict[str, dict[str, Any]] = {}
            for pair in todo:
                stem = Path(pair["name"]).stem
                folder = Path(work, "pages", stem)
                if not folder.exists():
                    folder.mkdir(parents=True)
                    for asset in data.glob("*"):
                        if asset.suffix not in (".html", ".png", ".md"):
                            shutil.copy(asset, folder / asset.name)
                    (folder / f"{stem}.html").write_text(pair["reference"])
                    pages[stem] = {"original": str(folder / f"{stem}.html"), "predicted": [], "keys": []}
                predicted = folder / f"{stem}_{pair['variant']}.html"
                predicted.write_text(pair["generated"])
                pages[stem]["predicted"].append(str(predicted))
                pages[stem]["keys"].append(pair["key"])
            job = {"pages": list(pages.values())}
        job_file = Path(work, "job.json")
        job_file.write_text(json.dumps(job))
        log = cache_file.with_suffix(".log")
        with open(log, "a") as stream:
            subprocess.run(
                [sys.executable, str(driver), str(job_file), str(cache_file)],
                env=_driver_env(originals, shim),
                stdout=stream,
                stderr=subprocess.STDOUT,
                check=False,
                cwd=os.path.join(work) if benchmark == "chartmimic" else None,
            )


# ------------------------------------------------------------------------------------------ vsdpo's side


def run_vsdpo(benchmark: str, pairs: list[dict[str, Any]], data: Path) -> dict[str, dict[str, Any]]:
    results = {}
    if benchmark == "chartmimic":
        from vsdpo.metrics import chartmimic

        for pair in pairs:
            try:
                value = chartmimic.score(pair["generated"], pair["reference"], reference_name=pair["name"])
                results[pair["key"]] = {m: getattr(value, m) for m in CHART_METRICS} | {"error": value.error}
            except chartmimic.ReferenceProgramError as error:
                results[pair["key"]] = {"reference_error": str(error)[:300]}
    else:
        from vsdpo.metrics import design2code

        for pair in pairs:
            value = design2code.score(pair["generated"], pair["reference"], assets_dir=str(data))
            results[pair["key"]] = {m: getattr(value, m) for m in WEB_METRICS} | {"error": value.error}
    return results


# ------------------------------------------------------------------------------------------ the comparison


def compare(benchmark: str, pairs: list[dict[str, Any]], original: dict, ours: dict) -> dict[str, Any]:
    metrics = CHART_METRICS if benchmark == "chartmimic" else WEB_METRICS
    summary: dict[str, Any] = {"metrics": {}, "by_variant": {}, "disagreements": [], "excluded": []}
    rows = []
    for pair in pairs:
        theirs, mine = original.get(pair["key"]), ours.get(pair["key"])
        if theirs is None or mine is None or "reference_error" in mine:
            summary["excluded"].append(
                {
                    "name": pair["name"],
                    "variant": pair["variant"],
                    "why": "no original result" if theirs is None else mine.get("reference_error"),
                }
            )
            continue
        rows.append((pair, theirs, mine))
    for metric in metrics:
        diffs, agree, undefined = [], 0, 0
        for pair, theirs, mine in rows:
            if (
                theirs.get(metric) is None
            ):  # the original raised (e.g. ZeroDivisionError): no value to agree with
                undefined += 1
                continue
            diff = abs(float(mine[metric]) - float(theirs[metric]))
            diffs.append(diff)
            ok = diff <= TOLERANCE
            agree += ok
            variant = summary["by_variant"].setdefault(pair["variant"], {})
            entry = variant.setdefault(metric, {"n": 0, "agree": 0})
            entry["n"] += 1
            entry["agree"] += ok
            if not ok:
                summary["disagreements"].append(
                    {
                        "name": pair["name"],
                        "variant": pair["variant"],
                        "metric": metric,
                        "original": theirs[metric],
                        "vsdpo": mine[metric],
                        "key": pair["key"],
                    }
                )
        n = len(diffs)
        summary["metrics"][metric] = {
            "n": n,
            "agree": agree,
            "fraction": agree / n if n else None,
            "mean_abs_diff": sum(diffs) / n if n else None,
            "max_abs_diff": max(diffs) if diffs else None,
            "original_undefined": undefined,
        }
    summary["n_pairs"] = len(rows)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--originals", type=Path, required=True, help="folder with the originals' code (see above)"
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "metric_agreement_cache")
    parser.add_argument("--benchmarks", default="chartmimic,design2code")
    parser.add_argument("--chart-references", type=int, default=40)
    parser.add_argument("--variants-per-reference", type=int, default=3)
    parser.add_argument(
        "--web-pages", type=int, default=None, help="the first N Design2Code pages (default all)"
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    missing = [
        p
        for p in (
            "chartmimic/chart2code/utils/evaluator/color_evaluator_prefix.py",
            "design2code/Design2Code/metrics/visual_score.py",
        )
        if not (args.originals / p).exists()
    ]
    if missing:
        print(
            f"--originals {args.originals}: missing {missing}; fetch the originals' code first (see --help)"
        )
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tolerance": TOLERANCE,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "benchmarks": {},
    }
    try:
        import matplotlib

        report["machine"]["matplotlib"] = matplotlib.__version__
    except ImportError:
        pass
    for benchmark in args.benchmarks.split(","):
        if benchmark == "chartmimic":
            pairs = chart_pairs(args.data / "chartmimic", args.chart_references, args.variants_per_reference)
        elif benchmark == "design2code":
            pairs = web_pairs(args.data / "design2code", args.web_pages)
        else:
            raise SystemExit(f"--benchmarks: unknown {benchmark!r}")
        for pair in pairs:
            pair["key"] = _key(benchmark, pair)
        cache_file = args.cache / f"{benchmark}.jsonl"
        started = time.time()
        run_originals(benchmark, pairs, args.originals, cache_file, args.data / benchmark)
        original_s = time.time() - started
        original = _load_cache(cache_file)
        started = time.time()
        ours = run_vsdpo(benchmark, pairs, args.data / benchmark)
        summary = compare(benchmark, pairs, original, ours)
        summary["seconds"] = {"originals": round(original_s, 1), "vsdpo": round(time.time() - started, 1)}
        summary["pairs"] = [
            {
                "name": p["name"],
                "variant": p["variant"],
                "key": p["key"],
                "original": {
                    m: original.get(p["key"], {}).get(m)
                    for m in (CHART_METRICS if benchmark == "chartmimic" else WEB_METRICS)
                },
                "vsdpo": ours.get(p["key"]),
            }
            for p in pairs
        ]
        report["benchmarks"][benchmark] = summary
        print(f"[{benchmark}] {summary['n_pairs']} pairs")
        for metric, entry in summary["metrics"].items():
            fraction = "-" if entry["fraction"] is None else f"{entry['fraction']:.1%}"
            print(
                f"  {metric:9s} within {TOLERANCE}: {entry['agree']}/{entry['n']} = {fraction}"
                f"  (mean |diff| {entry['mean_abs_diff'] or 0:.4f})"
            )
    output = (
        args.output or RESULTS / f"metric_agreement-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1, default=str))
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
