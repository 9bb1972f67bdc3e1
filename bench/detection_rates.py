"""How often the defect checks find a defect put into a real chart or page, and how often they flag
the untouched original.

    .venv/bin/python bench/detection_rates.py --data ../shared/data [--charts 40] [--pages 20]

A sample of ChartMimic programs (evenly spaced over the sorted names), Design2Code pages and
python-pptx decks (written from a seed by bench/decks.py: there is no public corpus of deck
programs) is rendered through ``vsdpo.render.render`` as it is, then once per defect class with one
defect put on a line of its own (right before the program's ``plt.savefig`` or ``deck.save``; right
after the page's ``<body>``). Two numbers, written with the command to
bench/results/detection-<UTC time>.json:

- **found**: injected defects reported with their kind on the injected line;
- **references flagged**: untouched programs and pages with any defect at all (their defects are
  listed; many are real, such as white labels on pale bars, below 3:1 contrast).

``--replies`` measures instead what the chart replies' check against the picture
(``vsdpo.render.chart.renderer.check_reply_against_picture``) makes of honest replies: every
ChartMimic program rendered, the replies refused, and the share of ink each leaves uncovered
(bench/results/replies-<UTC time>.json).

Every injection draws its defect in the picture: ChartMimic programs all save with
``bbox_inches="tight"``, which grows the picture around any text placed past its edge, so a cut
label is cut by its axes (``clip_on=True``) and a legend leaves the picture only when it is kept out
of the tight box (``set_in_layout(False)``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from decks import DECK_DEFECTS, deck_programs, inject_deck
from lint_fidelity import inject_chart, inject_web  # the same injection as the fidelity benchmark

from vsdpo.render import render

RESULTS = Path(__file__).with_name("results")

# kind -> one line put right before the program's first plt.savefig.
CHART_DEFECTS = {
    "overlap": 'plt.gcf().text(0.40, 0.50, "INJECTED LABEL ONE", fontsize=18); '
    'plt.gcf().text(0.41, 0.505, "INJECTED LABEL TWO", fontsize=18)',
    "clipped_text": "_axes = plt.gcf().axes[0]; _box = _axes.get_position(); "
    'plt.gcf().text(_box.x1 - 0.04, (_box.y0 + _box.y1) / 2, "INJECTED LABEL CUT BY ITS AXES", '
    "fontsize=14, clip_on=True, clip_box=_axes.bbox)",
    "overflow": "import matplotlib.patches as _patches; plt.gcf().legend(handles=[_patches.Patch("
    'color="tab:red", label="INJECTED LEGEND PAST THE EDGE")], loc="center left", '
    "bbox_to_anchor=(0.97, 0.5)).set_in_layout(False)",
    # In the figure's bottom-left margin, on the white figure (over data the background is the data's).
    "low_contrast": 'plt.gcf().text(0.005, 0.005, "injected faint note", color="#f6f6f6", fontsize=12)',
}
# kind -> markup put on a line of its own right after <body ...>.
WEB_DEFECTS = {
    "overlap": '<div style="position:absolute;top:140px;left:160px;z-index:9;font:20px sans-serif;'
    'color:#000;background:#fff">Injected block one</div><div style="position:absolute;top:150px;'
    'left:175px;z-index:9;font:20px sans-serif;color:#000;background:#fff">Injected block two</div>',
    "overflow": '<div style="width:160px;height:24px;font:16px sans-serif;color:#000;background:#eee">'
    "Injected sentence much too long to fit inside its small fixed box</div>",
    "low_contrast": '<p style="color:#f4f4f4;background:#ffffff">Injected faint paragraph</p>',
    "clipped_text": '<div style="width:70px;height:16px;overflow:hidden;white-space:nowrap">'
    "Injected sentence that does not fit</div>",
}


def evenly(items: list, count: int) -> list:
    return items[:: max(1, len(items) // count)][:count] if count > 0 else []


def described(result) -> list[str]:
    if not result.ok:
        return [f"failed ({result.error_kind}): {(result.error or '')[:200]}"]
    return [f"{d.kind} {d.lines}: {d.message}" for d in result.defects]


def files(paths: list[Path]) -> list[tuple[str, str]]:
    return [(path.name, path.read_text()) for path in paths]


def measure(kind: str, sources: list[tuple[str, str]], defects: dict[str, str], inject, **options) -> dict:
    """``sources``: (name, text) pairs. A defect's name is its kind, or its kind, ":" and a variant."""
    hits: dict[str, list[int]] = {name: [0, 0] for name in defects}
    misses, flagged, failed = [], {}, {}
    for source_name, original in sources:
        reference = render(original, kind, timeout_s=60, **options)
        if not reference.ok:
            failed[source_name] = described(reference)
            continue
        if reference.defects:
            flagged[source_name] = described(reference)
        for name, addition in defects.items():
            made = inject(original, addition)
            if made is None:
                continue
            code, line = made
            result = render(code, kind, timeout_s=60, **options)
            wanted = name.split(":")[0]
            found = result.ok and any(d.kind == wanted and line in d.lines for d in result.defects)
            hits[name][0] += found
            hits[name][1] += 1
            if not found:
                misses.append(
                    {"source": source_name, "kind": name, "line": line, "reported": described(result)}
                )
    checked = len(sources) - len(failed)
    return {
        "sources": [name for name, _ in sources],
        "references_failed": failed,
        "references_flagged": len(flagged),
        # Contrast is the one check real pages and charts fail by design (pale footers, white labels
        # on pale bars): the share flagged for anything else is reported beside it.
        "references_flagged_without_low_contrast": sum(
            any(not d.startswith("low_contrast") for d in defects) for defects in flagged.values()
        ),
        "references_checked": checked,
        "flagged_references": flagged,
        "found_by_kind": {name: {"found": f, "injected": n} for name, (f, n) in hits.items()},
        "misses": misses,
    }


def honest_replies(programs: list[Path]) -> dict:
    """Every program's own reply against its picture: refusals, and the ink it leaves uncovered."""
    from vsdpo.render.chart.renderer import MAX_UNACCOUNTED_INK, unaccounted_ink

    shares, refused, failed = {}, {}, {}
    for program in programs:
        result = render(program.read_text(), "chart", timeout_s=60)
        if result.ok:
            shares[program.stem] = round(unaccounted_ink(result.image, result.elements), 4)
        elif result.error_kind == "invalid_reply":
            refused[program.stem] = result.error
        else:
            failed[program.stem] = f"{result.error_kind}: {(result.error or '')[:200]}"
    ordered = sorted(shares.values())
    return {
        "programs": len(programs),
        "refused": refused,
        "failed": failed,
        "limit": MAX_UNACCOUNTED_INK,
        "uncovered_ink_max": ordered[-1] if ordered else None,
        "uncovered_ink_p99": ordered[int(0.99 * (len(ordered) - 1))] if ordered else None,
        "uncovered_ink_median": ordered[len(ordered) // 2] if ordered else None,
        "largest": dict(sorted(shares.items(), key=lambda item: -item[1])[:10]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--charts", type=int, default=40, help="ChartMimic programs sampled")
    parser.add_argument("--pages", type=int, default=20, help="Design2Code pages sampled")
    parser.add_argument("--decks", type=int, default=20, help="python-pptx decks written (bench/decks.py)")
    parser.add_argument("--replies", action="store_true", help="check every honest chart reply instead")
    args = parser.parse_args(argv)
    programs = sorted((args.data / "chartmimic").glob("*.py"))
    pages = sorted((args.data / "design2code").glob("*.html"))
    if not programs or not pages:
        print(f"--data: expected chartmimic/*.py and design2code/*.html under {args.data}", file=sys.stderr)
        return 2
    started = time.time()
    command = " ".join([".venv/bin/python", "bench/detection_rates.py", *(argv or sys.argv[1:])])
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    RESULTS.mkdir(exist_ok=True)
    if args.replies:
        report = {"command": command, "time_utc": stamp, **honest_replies(programs)}
        report["seconds"] = round(time.time() - started, 1)
        out = RESULTS / f"replies-{stamp}.json"
        out.write_text(json.dumps(report, indent=1))
        print(json.dumps({k: v for k, v in report.items() if k != "largest"}, indent=1))
        print(f"written to {out}")
        return 0
    charts = measure(
        "chart",
        files(evenly(programs, args.charts)),
        CHART_DEFECTS,
        lambda code, line: inject_chart(code, line + "\n"),
    )
    web = measure(
        "web",
        files(evenly(pages, args.pages)),
        WEB_DEFECTS,
        inject_web,
        assets_dir=str(args.data / "design2code"),
    )
    # A deck's defects come from its object model; LibreOffice's picture (draw) changes none of them.
    decks = [(f"deck-{i:02d}", program) for i, program in enumerate(deck_programs(args.decks))]
    slides = measure("slides", decks, DECK_DEFECTS, inject_deck, draw=False)
    parts = {"chart": charts, "web": web, "slides": slides}
    found = sum(v["found"] for part in parts.values() for v in part["found_by_kind"].values())
    injected = sum(v["injected"] for part in parts.values() for v in part["found_by_kind"].values())
    flagged = sum(part["references_flagged"] for part in parts.values())
    other = sum(part["references_flagged_without_low_contrast"] for part in parts.values())
    checked = sum(part["references_checked"] for part in parts.values())
    report = {
        "command": command,
        "time_utc": stamp,
        "summary": {
            "found": f"{found}/{injected}",
            "found_rate": round(found / max(1, injected), 4),
            "references_flagged": f"{flagged}/{checked}",
            "references_flagged_rate": round(flagged / max(1, checked), 4),
            "references_flagged_without_low_contrast": f"{other}/{checked}",
            "seconds": round(time.time() - started, 1),
        },
        **parts,
    }
    out = RESULTS / f"detection-{stamp}.json"
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({"summary": report["summary"]} | {
        f"{kind}/{name}": f"{v['found']}/{v['injected']}"
        for kind, part in parts.items() for name, v in part["found_by_kind"].items()
    }, indent=1))  # fmt: skip
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
