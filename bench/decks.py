"""Slide decks for the detection benchmark: python-pptx programs as a user would write them, and the
defects put into them.

There is no public corpus of python-pptx programs with their decks, so :func:`deck_programs` writes
them from a seed: title slides, bullet lists in the template's placeholders, two text columns, a
table, a row of cards with captions, and a closing slide, in the default 16:9 or 4:3 template, with
texts of varied length. Each program ends in ``deck.save("deck.pptx")``; every defect of
:data:`DECK_DEFECTS` is one line put right before that save, drawing on the last slide.
"""

from __future__ import annotations

import random

WORDS = [
    "revenue",
    "growth",
    "margin",
    "pipeline",
    "customers",
    "churn",
    "forecast",
    "region",
    "quarter",
    "launch",
    "hiring",
    "budget",
    "roadmap",
    "partners",
    "support",
    "latency",
    "uptime",
    "release",
    "adoption",
    "pricing",
    "retention",
    "onboarding",
    "survey",
    "market",
    "segment",
    "channel",
    "campaign",
    "target",
    "milestone",
    "risk",
    "dependency",
    "review",
]

# kind (":" and a variant, where one kind is put in two ways) -> one line put right before the
# program's deck.save(...); it draws on the last slide.
DECK_DEFECTS = {
    "overlap": "_s = deck.slides[-1]; _a = _s.shapes.add_textbox(Inches(1.5), Inches(2.2), Inches(4), "
    'Inches(0.6)); _a.text_frame.text = "Injected note one"; _b = _s.shapes.add_textbox(Inches(1.8), '
    'Inches(2.35), Inches(4), Inches(0.6)); _b.text_frame.text = "Injected note two"',
    "overflow": "_s = deck.slides[-1]; _s.shapes.add_shape(MSO_SHAPE.RECTANGLE, deck.slide_width - Inches(1), "
    "Inches(0.2), Inches(2.5), Inches(0.5))",
    "clipped_text": "_s = deck.slides[-1]; _c = _s.shapes.add_textbox(deck.slide_width - Inches(1.2), Inches(0.1), "
    'Inches(3), Inches(0.5)); _c.text_frame.text = "Injected caption past the edge"',
    "low_contrast": "_s = deck.slides[-1]; _f = _s.shapes.add_textbox(Inches(0.3), deck.slide_height - "
    'Inches(0.45), Inches(4), Inches(0.4)); _f.text_frame.text = "injected faint footer"; '
    "_f.text_frame.paragraphs[0].runs[0].font.color.rgb = RGBColor(0xF4, 0xF4, 0xF4)",
    "overflow:text past its fixed frame": "_s = deck.slides[-1]; _t = _s.shapes.add_textbox(Inches(0.3), "
    "deck.slide_height - Inches(2.4), Inches(1.6), Inches(0.4)); _t.text_frame.word_wrap = True; "
    "_t.text_frame.auto_size = MSO_AUTO_SIZE.NONE; _t.text_frame.text = "
    '"Injected paragraph much too long for the small fixed frame it was given on this slide"',
    "clipped_text:a title too long for its placeholder": "deck.slides[-1].shapes.title.text = "
    '"Injected title much too long for the title box that this slide layout gives it"',
    "misalignment": "_s = deck.slides[-1]; _s.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(0.3), "
    "deck.slide_height - Inches(1.6), Inches(1.2), Inches(0.4)); _s.shapes.add_shape(MSO_SHAPE.RECTANGLE, "
    "Inches(0.3) + Emu(4 * 9525), deck.slide_height - Inches(1.1), Inches(1.2), Inches(0.4))",
}

HEADER = """from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.enum.shapes import MSO_SHAPE
from pptx.enum.text import MSO_AUTO_SIZE
from pptx.util import Emu, Inches, Pt

deck = Presentation()
"""


def _phrase(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize()


def deck_program(seed: int) -> str:
    """One deck program; the same seed gives the same program."""
    rng = random.Random(seed)
    lines = [HEADER]
    if rng.random() < 0.5:
        lines.append("deck.slide_width, deck.slide_height = Inches(13.333), Inches(7.5)\n")
        width = 13.333
    else:
        width = 10.0
    lines.append(
        "slide = deck.slides.add_slide(deck.slide_layouts[0])\n"
        f"slide.shapes.title.text = {_phrase(rng, 2, 4)!r}\n"
        f"slide.placeholders[1].text = {_phrase(rng, 3, 6)!r}\n"
    )
    kinds = ["bullets", "columns", "table", "cards"]
    rng.shuffle(kinds)
    for kind in kinds[: rng.randint(2, 4)]:
        if kind == "bullets":
            bullets = [_phrase(rng, 3, 8) for _ in range(rng.randint(3, 5))]
            lines.append(
                "slide = deck.slides.add_slide(deck.slide_layouts[1])\n"
                f"slide.shapes.title.text = {_phrase(rng, 2, 4)!r}\n"
                "body = slide.placeholders[1].text_frame\n"
                f"body.text = {bullets[0]!r}\n"
                + "".join(f"body.add_paragraph().text = {b!r}\n" for b in bullets[1:])
            )
        elif kind == "columns":
            column = (width - 1.5) / 2
            lines.append(
                "slide = deck.slides.add_slide(deck.slide_layouts[5])\n"
                f"slide.shapes.title.text = {_phrase(rng, 2, 4)!r}\n"
                f"left = slide.shapes.add_textbox(Inches(0.5), Inches(1.8), Inches({column:.2f}), Inches(3))\n"
                "left.text_frame.word_wrap = True\n"
                f"left.text_frame.text = {_phrase(rng, 6, 14)!r}\n"
                f"right = slide.shapes.add_textbox(Inches({0.5 + column + 0.5:.2f}), Inches(1.8), "
                f"Inches({column:.2f}), Inches(3))\n"
                "right.text_frame.word_wrap = True\n"
                f"right.text_frame.text = {_phrase(rng, 6, 14)!r}\n"
            )
        elif kind == "table":
            rows, cols = rng.randint(3, 5), rng.randint(2, 4)
            cells = [[rng.choice(WORDS).capitalize() for _ in range(cols)]] + [
                [str(rng.randint(1, 999)) for _ in range(cols)] for _ in range(rows - 1)
            ]
            lines.append(
                "slide = deck.slides.add_slide(deck.slide_layouts[5])\n"
                f"slide.shapes.title.text = {_phrase(rng, 2, 4)!r}\n"
                f"table = slide.shapes.add_table({rows}, {cols}, Inches(0.8), Inches(1.8), "
                f"Inches({width - 1.6:.2f}), Inches({0.45 * rows:.2f})).table\n"
                f"for r, row in enumerate({cells!r}):\n"
                "    for c, value in enumerate(row):\n"
                "        table.cell(r, c).text = value\n"
            )
        else:
            count = rng.randint(2, 4)
            gap = 0.4
            card = (width - 1.0 - gap * (count - 1)) / count
            captions = [rng.choice(WORDS).capitalize() for _ in range(count)]
            lines.append(
                "slide = deck.slides.add_slide(deck.slide_layouts[5])\n"
                f"slide.shapes.title.text = {_phrase(rng, 2, 4)!r}\n"
                f"for i, caption in enumerate({captions!r}):\n"
                f"    card = slide.shapes.add_shape(MSO_SHAPE.ROUNDED_RECTANGLE, Inches(0.5 + i * {card + gap:.3f}), "
                f"Inches(2.2), Inches({card:.3f}), Inches(1.6))\n"
                "    card.text_frame.text = caption\n"
            )
    lines.append(
        "slide = deck.slides.add_slide(deck.slide_layouts[5])\n"
        f"slide.shapes.title.text = {_phrase(rng, 1, 3)!r}\n"
        'deck.save("deck.pptx")\n'
    )
    return "".join(lines)


def deck_programs(count: int, seed: int = 0) -> list[str]:
    return [deck_program(seed * 10_000 + index) for index in range(count)]


def inject_deck(code: str, addition: str) -> tuple[str, int] | None:
    """``code`` with ``addition`` on a line of its own right before ``deck.save``, and that line's number."""
    lines = code.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith("deck.save("):
            return "".join(lines[:index]) + addition + "\n" + "".join(lines[index:]), index + 1
    return None
