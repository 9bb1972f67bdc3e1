"""Render a folder of matplotlib programs and report how many render, e.g. the ChartMimic set.

    python -m vsdpo.render.chart.corpus ../shared/data/chartmimic [--workers 2] [--limit N] [--json out.json]

Programs whose imports are not installed are counted apart: the rate is over the others.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import sys
import time
from pathlib import Path

from vsdpo.render.chart.renderer import CHART_ENTRY, render_chart_outcome
from vsdpo.render.sandbox import SandboxPool


def missing_imports(code: str) -> list[str]:
    """Top-level modules the program imports that are not installed here."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return sorted(name for name in names if importlib.util.find_spec(name) is None)


def corpus_files(folder: Path, limit: int | None = None, sample_every: int = 1) -> list[Path]:
    files = sorted(folder.glob("*.py"))[::sample_every]
    return files[:limit] if limit else files


def render_corpus(files: list[Path], *, workers: int = 2, timeout_s: float = 30) -> dict:
    """Render every program; returns counts, the rate over runnable programs and each failure."""
    runnable, skipped = [], []
    for path in files:
        code = path.read_text()
        missing = missing_imports(code)
        (skipped if missing else runnable).append((path, code, missing))
    start = time.monotonic()
    with SandboxPool(workers=workers) as pool:
        outcomes = pool.map(CHART_ENTRY, [{"code": code} for _, code, _ in runnable], timeout_s=timeout_s)
    elapsed = time.monotonic() - start
    failures = []
    for (path, _, _), outcome in zip(runnable, outcomes, strict=True):
        result = render_chart_outcome(outcome)
        if not result.ok:
            failures.append({"file": path.name, "error": result.error})
    rendered = len(runnable) - len(failures)
    return {
        "programs": len(files),
        "skipped_missing_imports": {path.name: missing for path, _, missing in skipped},
        "runnable": len(runnable),
        "rendered": rendered,
        "rate": rendered / len(runnable) if runnable else 0.0,
        "seconds": round(elapsed, 1),
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    args = parser.parse_args(argv)
    report = render_corpus(corpus_files(args.folder, args.limit), workers=args.workers)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"rendered {report['rendered']}/{report['runnable']} runnable programs ({report['rate']:.1%}); "
        f"{len(report['skipped_missing_imports'])} skipped for missing imports; {report['seconds']}s"
    )
    for failure in report["failures"]:
        print(f"  {failure['file']}: {failure['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
