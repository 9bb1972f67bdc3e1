"""`vsdpo eval`: benchmark scores of a directory of predictions against a directory of references.

    vsdpo eval --kind chart PRED_DIR REF_DIR [--json out.json] [--workers N]

Files pair by name (``bar_1.py`` with ``bar_1.py``); a reference without a prediction scores 0, as
an unrunnable prediction does. chart: ChartMimic (text, layout, type, color); web: Design2Code
(block, text, position, color, clip with ``--clip PATH``); slides: AeSlides on the predictions
(aspect, whitespace, balance, collision; REF_DIR only selects the names).

Exit codes: 0 scored, 2 the command was misused: a folder that is missing or is a file, a ``--json``
path that cannot be written, a ``--limit``, ``--workers`` or ``--timeout`` out of range. Each prints
one line on stderr, and all are checked before anything is scored (scoring a benchmark takes minutes,
and a report that cannot be written at the end is all of them lost).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

# The scorers and rich are imported where they are used: `vsdpo --help` imports this module.

SUFFIXES = {"chart": (".py",), "web": (".html", ".htm"), "slides": (".html", ".htm")}
COLUMNS = {
    "chart": ("text", "layout", "type", "color", "mean"),
    "web": ("block", "text", "position", "color", "clip", "mean"),
    "slides": ("aspect", "whitespace", "balance", "collision", "mean"),
}
MAX_TIMEOUT_S = 3600.0  # as `vsdpo render --timeout`


class UsageError(Exception):
    """A mistake in the command line, told in one line."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval", help="score predictions against references with ChartMimic / Design2Code / AeSlides metrics"
    )
    parser.add_argument("--kind", required=True, choices=sorted(SUFFIXES), help="artifact kind")
    parser.add_argument("pred_dir", type=Path, help="directory of predicted programs/pages")
    parser.add_argument("ref_dir", type=Path, help="directory of reference programs/pages")
    parser.add_argument("--json", type=Path, default=None, help="write per-file scores and means here")
    parser.add_argument("--workers", type=int, default=4, help="pairs scored at once (default 4)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per program (default 20)")
    parser.add_argument("--clip", default=None, help="local CLIP checkpoint for Design2Code's CLIP score")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs (by name)")
    parser.set_defaults(func=run)


def pair_files(pred_dir: Path, ref_dir: Path, kind: str) -> list[tuple[str, Path | None, Path]]:
    """(name, prediction or None, reference) for every reference file of the kind, sorted by name."""
    for argument, directory in (("pred_dir", pred_dir), ("ref_dir", ref_dir)):
        if not directory.is_dir():
            raise NotADirectoryError(f"{argument}: expected a directory, got {str(directory)!r}")
    suffixes = SUFFIXES[kind]
    references = sorted(p for p in ref_dir.iterdir() if p.suffix.lower() in suffixes)
    return [
        (ref.name, (pred_dir / ref.name) if (pred_dir / ref.name).is_file() else None, ref)
        for ref in references
    ]


def score_pair(
    kind: str, prediction: Path | None, reference: Path, *, timeout_s: float, clip: str | None
) -> dict[str, Any]:
    columns = COLUMNS[kind]
    if prediction is None:
        row = {name: 0.0 for name in columns}
        if kind == "web" and clip is None:
            row["clip"] = None
        return {**row, "ok": False, "error": "no prediction"}
    predicted = prediction.read_text(encoding="utf-8", errors="replace")
    if kind == "chart":
        from vsdpo.metrics import chartmimic

        # The benchmark's file name selects its name rules (graph layout, box colour recall).
        result = chartmimic.score(
            predicted,
            reference.read_text(encoding="utf-8"),
            reference_name=reference.name,
            timeout_s=timeout_s,
        )
    elif kind == "web":
        from vsdpo.metrics import design2code

        result = design2code.score(
            predicted,
            reference.read_text(encoding="utf-8"),
            clip_model_path=clip,
            timeout_s=timeout_s,
            assets_dir=str(prediction.parent),
        )
    else:
        from vsdpo.metrics import aeslides

        result = aeslides.score(predicted, timeout_s=timeout_s, assets_dir=str(prediction.parent))
    return {**result.as_dict(), "ok": result.ok, "error": result.error}


def evaluate(
    kind: str,
    pred_dir: Path,
    ref_dir: Path,
    *,
    workers: int = 4,
    timeout_s: float = 20.0,
    clip: str | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Scores per file name and their means (failures count as 0)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit: expected a number of pairs >= 0 or None, got {limit!r}")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    pairs = pair_files(pred_dir, ref_dir, kind)[:limit]
    rows: dict[str, dict[str, Any]] = {}
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not progress,
        ) as bar,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
    ):
        task = bar.add_task(f"eval {kind}", total=len(pairs))
        futures = {
            pool.submit(score_pair, kind, pred, ref, timeout_s=timeout_s, clip=clip): name
            for name, pred, ref in pairs
        }
        for future in as_completed(futures):
            name = futures[future]
            try:
                rows[name] = future.result()
            except Exception as error:  # a broken reference is reported, and scores 0
                rows[name] = {
                    **{c: 0.0 for c in COLUMNS[kind]},
                    "ok": False,
                    "error": f"{type(error).__name__}: {error}",
                }
            bar.advance(task)
    rows = dict(sorted(rows.items()))
    means = {}
    for column in COLUMNS[kind]:
        values = [row[column] for row in rows.values() if row.get(column) is not None]
        means[column] = sum(values) / len(values) if values else None
    return {
        "kind": kind,
        "n": len(rows),
        "n_failed": sum(not r["ok"] for r in rows.values()),
        "means": means,
        "files": rows,
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = COLUMNS[report["kind"]]
    table = Table(
        title=f"vsdpo eval --kind {report['kind']} ({report['n']} files, {report['n_failed']} failed)"
    )
    table.add_column("file")
    for column in columns:
        table.add_column(column, justify="right")
    show = lambda value: "-" if value is None else f"{value:.4f}"
    for name, row in report["files"].items():
        table.add_row(name + ("" if row["ok"] else " (failed)"), *(show(row.get(c)) for c in columns))
    table.add_section()
    table.add_row("mean", *(show(report["means"][c]) for c in columns), style="bold")
    Console().print(table)


def _check_folder(option: str, folder: Path) -> None:
    if not folder.exists():
        raise UsageError(f"{option} {folder}: no such folder")
    if not folder.is_dir():
        raise UsageError(f"{option} {folder}: not a folder, expected a folder of programs or pages")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise UsageError(f"{option} {folder}: cannot read this folder (permission denied)")


def _check_output(option: str, path: Path) -> None:
    """The report's path must be writable now, not only after every pair was scored."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, expected a file path")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: cannot write there (permission denied)")


def check_arguments(args: argparse.Namespace) -> None:
    """Every input the command takes, checked before anything runs; ``UsageError`` names the first bad one."""
    _check_folder("PRED_DIR", args.pred_dir)
    _check_folder("REF_DIR", args.ref_dir)
    if args.json is not None:
        _check_output("--json", args.json)
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit: expected a number of pairs >= 1, got {args.limit}")
    if args.workers < 1:
        raise UsageError(f"--workers: expected a number of pairs scored at once >= 1, got {args.workers}")
    if not math.isfinite(args.timeout) or not 0 < args.timeout <= MAX_TIMEOUT_S:
        raise UsageError(f"--timeout: expected seconds in (0, {MAX_TIMEOUT_S:g}], got {args.timeout:g}")


def run(args: argparse.Namespace) -> int:
    try:
        check_arguments(args)
    except UsageError as error:
        print(f"vsdpo eval: error: {error}", file=sys.stderr)
        return 2
    # Chart programs run in the process-wide sandbox pool: give it one worker per thread.
    os.environ.setdefault("VSDPO_SANDBOX_WORKERS", str(max(1, args.workers)))
    report = evaluate(
        args.kind,
        args.pred_dir,
        args.ref_dir,
        workers=args.workers,
        timeout_s=args.timeout,
        clip=args.clip,
        limit=args.limit,
    )
    print_table(report)
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report, indent=2))
        except OSError as error:  # checked above, but the disk may fill or the folder go meanwhile
            print(
                f"vsdpo eval: error: --json {args.json}: cannot write it ({error.strerror or error})",
                file=sys.stderr,
            )
            return 2
    return 0
