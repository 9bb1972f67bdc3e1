"""How well `vsdpo lint` reports what it should, on the benchmark data of ../shared/data.

    .venv/bin/python bench/lint_fidelity.py --data ../shared/data [--workers 2] [--sample 6]

Three numbers, written to bench/results/lint_fidelity-<time>.json and printed:

- **runnable**: ChartMimic programs that render at all (with the pinned-version compatibility calls);
- **clean references flagged**: untouched ChartMimic programs and Design2Code pages with any defect
  (and per defect kind; the JSON lists each flagged reference with its defects);
- **injected defects found on their line**: one known defect per class put into real programs and
  pages (and into a small deck for slides) on a line of its own; a hit is a reported defect of that
  kind whose lines include the injected line.

Not a pytest benchmark: it takes minutes (every ChartMimic program is rendered once).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from vsdpo.render import render
from vsdpo.render.chart.renderer import CHART_ENTRY, render_chart_outcome
from vsdpo.render.sandbox import run_many

RESULTS = Path(__file__).with_name("results")

# ------------------------------------------------------------------------------------------ injections

# (kind, lines to add right before the program's first savefig); the first added line is the one blamed.
CHART_DEFECTS = {
    "overlap": (
        'plt.gcf().text(0.40, 0.50, "INJECTED LABEL ONE", fontsize=18)\n'
        'plt.gcf().text(0.41, 0.505, "INJECTED LABEL TWO", fontsize=18)\n'
    ),
    # In the figure's bottom-left margin, on the white figure (over data the background is the data's).
    "low_contrast": 'plt.gcf().text(0.005, 0.005, "injected faint note", color="#f6f6f6", fontsize=12)\n',
}
# (kind, markup put on a line of its own right after <body ...>).
WEB_DEFECTS = {
    "misalignment": '<p style="margin-left:40px">Injected first line of text</p>'
    '\n<p style="margin-left:43px">Injected second line of text</p>',
    "overlap": '<p>Injected paragraph under</p><p style="position:relative;top:-30px">Injected paragraph over</p>',
    "low_contrast": '<p style="color:#f4f4f4;background:#ffffff">Injected faint paragraph</p>',
    "clipped_text": '<div style="width:70px;height:16px;overflow:hidden;white-space:nowrap">'
    "Injected sentence that does not fit</div>",
    "overflow": '<div style="width:3000px;background:#ddd">Injected block wider than the page</div>',
}
DECK = """from pptx import Presentation
from pptx.util import Inches, Pt
from pptx.dml.color import RGBColor
prs = Presentation()
slide = prs.slides.add_slide(prs.slide_layouts[6])
title = slide.shapes.add_textbox(Inches(1), Inches(0.5), Inches(8), Inches(1))
title.text_frame.text = "Quarterly results"
body = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(4), Inches(1))
body.text_frame.text = "Revenue grew in every region"
{injected}
prs.save("deck.pptx")
"""
SLIDE_DEFECTS = {
    "overlap": "extra = slide.shapes.add_textbox(Inches(1.2), Inches(2.1), Inches(4), Inches(1)); "
    'extra.text_frame.text = "Injected text on the body"',
    "overflow": "extra = slide.shapes.add_textbox(Inches(8), Inches(6), Inches(4), Inches(1)); "
    'extra.text_frame.text = "Injected text past the edge"',
    "low_contrast": "extra = slide.shapes.add_textbox(Inches(1), Inches(4), Inches(4), Inches(1)); "
    'extra.text_frame.text = "Injected faint text"; '
    "extra.text_frame.paragraphs[0].runs[0].font.color.rgb = RGBColor(0xF4, 0xF4, 0xF4)",
    "misalignment": "extra = slide.shapes.add_shape(1, Inches(1.04), Inches(3.5), Inches(3), Inches(1)); "
    "other = slide.shapes.add_shape(1, Inches(1), Inches(4.7), Inches(3), Inches(1))",
}


def inject_chart(code: str, addition: str) -> tuple[str, int] | None:
    lines = code.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith("plt.savefig"):
            return "".join(lines[:index]) + addition + "".join(lines[index:]), index + 1
    return None


def inject_web(html: str, markup: str) -> tuple[str, int] | None:
    lines = html.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if "<body" in line.lower() and line.rstrip().endswith(">"):
            return "".join(lines[: index + 1]) + markup + "\n" + "".join(lines[index + 1 :]), index + 2
    return None


def _hit(result, kind: str, line: int) -> bool:
    return any(d.kind == kind and line in d.lines for d in result.defects)


# ------------------------------------------------------------------------------------------ measures


def clean_charts(programs: list[Path], workers: int) -> dict:
    outcomes = run_many(
        CHART_ENTRY, [{"code": p.read_text()} for p in programs], workers=workers, timeout_s=60
    )
    results = [render_chart_outcome(o) for o in outcomes]
    failed = {p.name: r.error for p, r in zip(programs, results, strict=True) if not r.ok}
    flagged = [r for r in results if r.ok and r.defects]
    kinds = Counter(kind for r in flagged for kind in {d.kind for d in r.defects})
    return {
        "programs": len(programs),
        "runnable": len(programs) - len(failed),
        "failed": failed,
        "flagged": len(flagged),
        "flagged_by_kind": dict(kinds),
        "flagged_without_low_contrast": sum(
            any(d.kind != "low_contrast" for d in r.defects) for r in flagged
        ),
        "flagged_references": {
            p.stem: [f"{d.kind}: {d.message}" for d in r.defects]
            for p, r in zip(programs, results, strict=True)
            if r.ok and r.defects
        },
    }


def clean_pages(pages: list[Path]) -> dict:
    flagged, kinds, references = 0, Counter(), {}
    for page in pages:
        result = render(page.read_text(), "web", assets_dir=str(page.parent), timeout_s=60)
        if result.defects:
            flagged += 1
            kinds.update({d.kind for d in result.defects})
            references[page.stem] = [f"{d.kind}: {d.message}" for d in result.defects]
    return {
        "pages": len(pages),
        "flagged": flagged,
        "flagged_by_kind": dict(kinds),
        "flagged_references": references,
    }


def injected(programs: list[Path], pages: list[Path]) -> dict:
    hits: dict[str, list[int]] = {}

    def count(group: str, found: bool) -> None:
        hits.setdefault(group, [0, 0])
        hits[group][0] += found
        hits[group][1] += 1

    for program in programs:
        for kind, addition in CHART_DEFECTS.items():
            made = inject_chart(program.read_text(), addition)
            if made is not None:
                count(f"chart/{kind}", _hit(render(made[0], "chart", timeout_s=60), kind, made[1]))
    for page in pages:
        for kind, markup in WEB_DEFECTS.items():
            made = inject_web(page.read_text(), markup)
            if made is not None:
                result = render(made[0], "web", assets_dir=str(page.parent), timeout_s=60)
                count(f"web/{kind}", _hit(result, kind, made[1]))
    injected_line = DECK.splitlines().index("{injected}") + 1
    for kind, statement in SLIDE_DEFECTS.items():
        result = render(DECK.format(injected=statement), "slides", draw=False, timeout_s=60)
        count(f"slides/{kind}", _hit(result, kind, injected_line))
    return {group: {"found": found, "injected": total} for group, (found, total) in sorted(hits.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=6, help="programs and pages that get injected defects")
    parser.add_argument("--injected-only", action="store_true", help="skip the clean-reference pass")
    args = parser.parse_args(argv)
    programs = sorted((args.data / "chartmimic").glob("*.py"))
    pages = sorted((args.data / "design2code").glob("*.html"))
    if not programs or not pages:
        print(f"--data: expected chartmimic/*.py and design2code/*.html under {args.data}", file=sys.stderr)
        return 2
    started = time.time()
    sample = lambda items: items[:: max(1, len(items) // args.sample)][: args.sample]
    report = {"injected": injected(sample(programs), sample(pages))}
    if args.injected_only:
        print(json.dumps(report, indent=1))
        return 0
    report["charts"] = clean_charts(programs, args.workers)
    report["pages"] = clean_pages(pages)
    charts, web = report["charts"], report["pages"]
    clean_total = charts["runnable"] + web["pages"]
    report["summary"] = {
        "runnable": f"{charts['runnable']}/{charts['programs']}",
        "clean_flagged": f"{charts['flagged'] + web['flagged']}/{clean_total}",
        "clean_flagged_rate": round((charts["flagged"] + web["flagged"]) / clean_total, 4),
        "injected_found": sum(v["found"] for v in report["injected"].values()),
        "injected_total": sum(v["injected"] for v in report["injected"].values()),
        "seconds": round(time.time() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"lint_fidelity-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({"summary": report["summary"], "injected": report["injected"]}, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
