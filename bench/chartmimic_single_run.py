"""Whether the ChartMimic trace a chart render records in its own run is the tracer's, program by program.

    .venv/bin/python bench/chartmimic_single_run.py --data ../shared/data [--every 1] [--workers 2]

Every ChartMimic program (or every ``--every``-th) runs five ways through the sandbox: rendered as
today, rendered with ``chartmimic=True``, traced as a generated program and as a reference (the
tracer, today's reward path), and an edited copy (its first hex colour, title and label changed)
rendered with the record and traced. Written with the command to
bench/results/single_run-<UTC time>.json:

- **render equal**: picture, elements and defects the same with and without the record (programs
  that draw from Python's unseeded ``random`` differ from one render to the next either way);
- **recorded**: the share of programs whose render recorded the trace (the others fall back to the
  tracer);
- **trace equal**: the recorded trace, under the benchmark's rule for the file name, is the tracer's,
  for the program and for its edited copy; so are their four scores against the reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path

from vsdpo.metrics import chartmimic
from vsdpo.render.chart.renderer import CHART_ENTRY, render_chart_outcome
from vsdpo.render.sandbox import SandboxPool

RESULTS = Path(__file__).parent / "results"


def edited(code: str) -> str | None:
    """The program with its first hex colour, title and label changed; None when it has none."""
    new = re.sub(r"#[0-9a-fA-F]{6}", "#3366CC", code, count=1)
    for pattern in (r"""(title\(\s*f?['"])""", r"""(label\(\s*f?['"])""", r"""(label\s*=\s*f?['"])"""):
        new = re.sub(pattern, r"\1Edited ", new, count=1)
    return new if new != code else None


def compare(outcome, traced, reference_trace, graph_layout: bool) -> dict:
    """Recorded against traced for one program: whether it recorded, and the two traces' agreement."""
    result = render_chart_outcome(outcome)
    record = (result.record or {}).get("chartmimic") if result.ok else None
    tracer = traced.value if traced.ok else None
    row = {"ok": result.ok, "recorded": record is not None, "traced": tracer is not None}
    if record is None:
        return row
    mine = chartmimic.recorded_trace(record, graph_layout=graph_layout)
    row["trace_equal"] = mine == tracer
    if tracer is not None and reference_trace is not None:
        ours = chartmimic.score_traces(mine, reference_trace)
        theirs = chartmimic.score_traces(tracer, reference_trace)
        row["score_equal"] = (ours.as_dict(), ours.details) == (theirs.as_dict(), theirs.details)
        row["mean"] = theirs.mean
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    files = sorted((args.data / "chartmimic").glob("*.py"))[:: args.every]
    codes = [path.read_text() for path in files]
    graphs = [chartmimic.name_rules(path.name)[0] for path in files]
    copies = [edited(code) for code in codes]
    with_copy = [index for index, copy in enumerate(copies) if copy is not None]

    def traces(role: str, programs: list[str], layouts: list[bool]) -> list:
        payloads = [
            {"code": code, "role": role, "graph_layout": graph, "compat": True}
            for code, graph in zip(programs, layouts, strict=True)
        ]
        return pool.map(chartmimic.TRACE_ENTRY, payloads, timeout_s=60)

    started = time.monotonic()
    with SandboxPool(workers=args.workers) as pool:
        plain = pool.map(CHART_ENTRY, [{"code": code} for code in codes], timeout_s=60)
        recorded = pool.map(CHART_ENTRY, [{"code": code, "chartmimic": True} for code in codes], timeout_s=60)
        generated = traces("generated", codes, graphs)
        references = traces("reference", codes, graphs)
        copy_codes = [copies[index] for index in with_copy]
        copy_graphs = [graphs[index] for index in with_copy]
        copy_recorded = pool.map(
            CHART_ENTRY, [{"code": code, "chartmimic": True} for code in copy_codes], timeout_s=60
        )
        copy_generated = traces("generated", copy_codes, copy_graphs)
    rows = []
    for index, path in enumerate(files):
        a, b = render_chart_outcome(plain[index]), render_chart_outcome(recorded[index])
        reference = references[index].value if references[index].ok else None
        rows.append(
            {
                "file": path.name,
                "render_equal": (a.ok, a.image, a.elements, a.defects, a.error)
                == (b.ok, b.image, b.elements, b.defects, b.error),
                "program": compare(recorded[index], generated[index], reference, graphs[index]),
            }
        )
    for position, index in enumerate(with_copy):
        reference = references[index].value if references[index].ok else None
        rows[index]["edited"] = compare(
            copy_recorded[position], copy_generated[position], reference, graphs[index]
        )

    def count(key: str, part: str) -> int:
        return sum(bool(row.get(part, {}).get(key)) for row in rows)

    summary = {
        "programs": len(rows),
        "render_equal": sum(row["render_equal"] for row in rows),
        "recorded": count("recorded", "program"),
        "trace_equal": count("trace_equal", "program"),
        "score_equal": count("score_equal", "program"),
        "edited": len(with_copy),
        "edited_recorded": count("recorded", "edited"),
        "edited_trace_equal": count("trace_equal", "edited"),
        "edited_score_equal": count("score_equal", "edited"),
        "edited_below_one": sum(row.get("edited", {}).get("mean", 1.0) < 1.0 for row in rows),
        "not_recorded": [row["file"] for row in rows if not row["program"]["recorded"]],
        "render_unequal": [row["file"] for row in rows if not row["render_equal"]],
        "seconds": time.monotonic() - started,
    }
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"single_run-{stamp}.json"
    command = " ".join([".venv/bin/python", "bench/chartmimic_single_run.py", *(argv or sys.argv[1:])])
    out.write_text(json.dumps({"command": command, "summary": summary, "rows": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
