"""Where the slide checks think text is, against where LibreOffice draws it.

    .venv/bin/python bench/slide_text_fidelity.py [--cases 60] [--seed 0]

The slide renderer never reads the picture back for its checks: it lays text out itself (sizes,
wrapping, alignment, anchor, fit; ``vsdpo/render/slides/text.py``) and judges overlaps, clipping and
overflow on those boxes. This measures how far those boxes are from the ink LibreOffice draws. Each
case is a one-slide deck with one piece of text on an empty slide, written from the seed:

- ``textbox``: ``add_textbox`` anywhere, 12-40 pt, one to three paragraphs, any alignment, wrapping
  on or off, each of python-pptx's fits (the default grow-the-shape, none, shrink-on-overflow);
- ``title``: the title placeholder of the "Title Only" layout, one to nine words (the master's
  44 pt, centred);
- ``body``: the body placeholder of "Title and Content" (its title removed), moved and resized,
  one to seven bullets on levels 0-1, its own fit left as the master's or set to shrink-on-overflow.

The ink is every pixel of the slide darker than mid-grey. For each case the four edges of the text's
box are compared with the ink's bounding box, but for an edge past the slide's (the ink there is cut,
which the clipping check judges); a bullet is ink the box leaves out by design, so the left edge of a
``body`` is not compared either. A line's box starts above its capitals (by 0.22 of the font size in
DejaVu Sans: half the leading, 0.02, and the ascent less the capital height, 0.20), so an edge counts
as *close* within 0.3 of the largest font size or 8 px, whichever is more. Written with the command
to bench/results/slide-text-<UTC time>.json: per kind, the median and the 90th percentile of the
edge errors in pixels (the slide 960 px wide) and the share of cases with every compared edge close.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
from pathlib import Path

from decks import WORDS
from PIL import Image, ImageOps

from vsdpo.render.slides import render_slides

WIDTH = 960
CLOSE_PX = 8
CLOSE_EM = 0.3
KINDS = ("textbox", "title", "body")
HEAD = """from pptx import Presentation
from pptx.util import Inches, Pt
from pptx.enum.text import MSO_AUTO_SIZE, PP_ALIGN
deck = Presentation()
"""


def _words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize()


def _paragraph(number: int, text: str, *settings: str) -> list[str]:
    """Lines that write paragraph ``number`` of ``frame`` as ``p``, then ``settings`` on it."""
    return [
        f"p = {'frame.paragraphs[0]' if number == 0 else 'frame.add_paragraph()'}",
        f"p.text = {text!r}",
        *settings,
    ]


def case_program(kind: str, rng: random.Random) -> str:
    """A one-slide deck program with one piece of text of ``kind``."""
    if kind == "textbox":
        width, height = rng.uniform(1.0, 6.0), rng.uniform(0.3, 2.0)
        left, top = rng.uniform(0.2, 9.8 - width), rng.uniform(0.2, 6.0)
        lines = [
            "slide = deck.slides.add_slide(deck.slide_layouts[6])",
            f"box = slide.shapes.add_textbox(Inches({left:.2f}), Inches({top:.2f}), "
            f"Inches({width:.2f}), Inches({height:.2f}))",
            "frame = box.text_frame",
        ]
        wrap = rng.choice([None, True, False])
        if wrap is not None:
            lines.append(f"frame.word_wrap = {wrap}")
        fit = rng.choice([None, "NONE", "TEXT_TO_FIT_SHAPE"])
        if fit:
            lines.append(f"frame.auto_size = MSO_AUTO_SIZE.{fit}")
        size, align = rng.randint(12, 40), rng.choice(["LEFT", "CENTER", "RIGHT"])
        for number in range(rng.randint(1, 3)):
            lines += _paragraph(
                number,
                _words(rng, 1, 8),
                f"p.alignment = PP_ALIGN.{align}",
                f"p.runs[0].font.size = Pt({size})",
            )
    elif kind == "title":
        lines = [
            "slide = deck.slides.add_slide(deck.slide_layouts[5])",
            f"slide.shapes.title.text = {_words(rng, 1, 9)!r}",
        ]
    else:
        width, height = rng.uniform(3.0, 9.0), rng.uniform(1.0, 5.0)
        left, top = rng.uniform(0.2, 9.8 - width), rng.uniform(0.2, 7.3 - height)
        lines = [
            "slide = deck.slides.add_slide(deck.slide_layouts[1])",
            "title = slide.shapes.title._element",
            "title.getparent().remove(title)",
            "body = slide.placeholders[1]",
            f"body.left, body.top = Inches({left:.2f}), Inches({top:.2f})",
            f"body.width, body.height = Inches({width:.2f}), Inches({height:.2f})",
            "frame = body.text_frame",
        ]
        if rng.random() < 0.5:
            lines.append("frame.auto_size = MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE")
        for number in range(rng.randint(1, 7)):
            lines += _paragraph(
                number, _words(rng, 1, 7), f"p.level = {0 if number == 0 else rng.choice([0, 0, 1])}"
            )
    return HEAD + "\n".join(lines) + '\ndeck.save("deck.pptx")\n'


def ink_box(grey: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box of the pixels darker than mid-grey."""
    return ImageOps.invert(grey).point(lambda value: 255 if value > 127 else 0).getbbox()


def measure(kind: str, program: str) -> dict:
    result = render_slides(program, timeout_s=60, width=WIDTH)
    if not result.ok:
        return {"kind": kind, "error": result.error, "program": program}
    texts = [element for element in result.elements if element.role == "text"]
    grey = Image.open(io.BytesIO(result.image)).convert("L")
    ink = ink_box(grey)
    if len(texts) != 1 or ink is None:
        return {"kind": kind, "error": f"{len(texts)} text elements, ink {ink}", "program": program}
    slide = grey.size  # one slide: the whole picture
    box = texts[0].bbox
    inside = {
        "left": box[0] >= 0,
        "top": box[1] >= 0,
        "right": box[2] <= slide[0],
        "bottom": box[3] <= slide[1],
    }
    edges = [
        edge
        for edge in ("left", "right", "top", "bottom")
        if inside[edge] and (edge, kind) != ("left", "body")
    ]
    index = {"left": 0, "top": 1, "right": 2, "bottom": 3}
    errors = {edge: round(abs(box[index[edge]] - ink[index[edge]]), 1) for edge in edges}
    return {
        "kind": kind,
        "box": [round(v, 1) for v in box],
        "ink": list(ink),
        "errors": errors,
        "close": all(
            error <= max(CLOSE_PX, CLOSE_EM * texts[0].extra["font_px"]) for error in errors.values()
        ),
        "defects": [defect.kind for defect in result.defects],
        "program": program,
    }


def summarise(cases: list[dict]) -> dict:
    summary = {}
    for kind in KINDS:
        measured = [case for case in cases if case["kind"] == kind and "errors" in case]
        errors = sorted(error for case in measured for error in case["errors"].values())
        close = sum(case["close"] for case in measured)
        summary[kind] = {
            "cases": len(measured),
            "failed": sum(case["kind"] == kind and "errors" not in case for case in cases),
            "median_edge_error_px": statistics.median(errors) if errors else None,
            "p90_edge_error_px": errors[int(0.9 * (len(errors) - 1))] if errors else None,
            "every_edge_close": f"{close}/{len(measured)}",
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=60, help="cases in all, shared evenly by the kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    cases = []
    for number in range(args.cases):
        kind = KINDS[number % len(KINDS)]
        cases.append(measure(kind, case_program(kind, rng)))
        print(f"\r{number + 1}/{args.cases} cases", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    record = {
        "command": " ".join(["bench/slide_text_fidelity.py", *(argv if argv is not None else sys.argv[1:])]),
        "time_utc": stamp,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summarise(cases),
        "cases": cases,
    }
    path = Path(args.output) / f"slide-text-{stamp}.json"
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(json.dumps(record["summary"], indent=1))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
