"""Slides renderer: each defect kind found from the object model and traced to its line; failures."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image

from vsdpo.render.slides import render_slides

HEAD = """from pptx import Presentation
from pptx.util import Inches, Pt
from pptx.dml.color import RGBColor
from pptx.enum.shapes import MSO_SHAPE
prs = Presentation()
slide = prs.slides.add_slide(prs.slide_layouts[6])
"""
HEAD_LINES = HEAD.count("\n")

# kind: (program body with the defect, the clean twin, the line (within the body, 1-based) to blame)
CASES = {
    "overlap": (
        "a = slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(1), Inches(3), Inches(2))\n"
        "b = slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(3), Inches(2), Inches(3), Inches(2))\n",
        "a = slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(1), Inches(3), Inches(2))\n"
        "b = slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(5), Inches(1), Inches(3), Inches(2))\n",
        2,
    ),
    "clipped_text": (
        "box = slide.shapes.add_textbox(Inches(7), Inches(1), Inches(2), Inches(1))\n"
        "box.text_frame.text = 'A caption that runs off the right edge of the slide'\n",
        "box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(2), Inches(1))\n"
        "box.text_frame.text = 'A short caption'\n",
        2,
    ),
    "overflow": (
        "box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(0.5))\n"
        "box.text_frame.word_wrap = True\n"
        "box.text_frame.auto_size = None\n"
        "box.text_frame.text = 'Too much text for this small frame: it wraps onto line after line after line'\n"
        "box.text_frame.paragraphs[0].runs[0].font.size = Pt(28)\n",
        "box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(0.5))\n"
        "box.text_frame.word_wrap = True\n"
        "box.text_frame.auto_size = None\n"
        "box.text_frame.text = 'Fits'\n"
        "box.text_frame.paragraphs[0].runs[0].font.size = Pt(18)\n",
        5,
    ),
    "misalignment": (
        "a = slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(1), Inches(3), Inches(1))\n"
        "b = slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(3), Inches(3), Inches(1))\n"
        "b.left = Inches(1) + Pt(3)\n",
        "a = slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(1), Inches(3), Inches(1))\n"
        "b = slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(3), Inches(3), Inches(1))\n"
        "b.left = Inches(1)\n",
        3,
    ),
    "low_contrast": (
        "box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))\n"
        "box.text_frame.text = 'Pale words'\n"
        "box.text_frame.paragraphs[0].runs[0].font.color.rgb = RGBColor(0xDD, 0xDD, 0xDD)\n",
        "box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))\n"
        "box.text_frame.text = 'Dark words'\n"
        "box.text_frame.paragraphs[0].runs[0].font.color.rgb = RGBColor(0x22, 0x22, 0x22)\n",
        3,
    ),
}


def render(code: str, **kw):
    return render_slides(code, timeout_s=30, **kw)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_defect_is_found_and_traced_and_the_clean_twin_has_none(kind):
    bad, clean, blamed = CASES[kind]
    result = render(HEAD + bad, draw=False)
    assert result.ok, result.error
    found = [d for d in result.defects if d.kind == kind]
    assert found, f"no {kind} in {result.defects}"
    assert any(HEAD_LINES + blamed in d.lines for d in found)
    assert all(0 < d.severity <= 1 for d in found)
    twin = render(HEAD + clean, draw=False)
    assert twin.ok and twin.defects == [], twin.defects


def test_elements_carry_boxes_text_colours_and_lines():
    result = render(HEAD + CASES["low_contrast"][1], draw=False)
    (text,) = [e for e in result.elements if e.role == "text"]
    assert text.text == "Dark words" and text.color == "#222222" and text.background == "#ffffff"
    assert text.lines == [HEAD_LINES + 1, HEAD_LINES + 2, HEAD_LINES + 3]
    x0, y0, x1, y1 = text.bbox
    assert 96 <= x0 < x1 < 96 + 4 * 96 and 96 <= y0 < y1 < 2 * 96  # inside its 4in x 1in frame at 1in, 1in


def test_a_failing_program_reports_its_error_and_lines():
    result = render(HEAD + "slide.shapes.add_textbox(Inches(1), Inches(1))\n")
    assert not result.ok and "TypeError" in result.error
    assert result.error_lines == [HEAD_LINES + 1]
    syntax = render("from pptx import Presentation\nprs = Presentation(\n")
    assert not syntax.ok and "SyntaxError" in syntax.error and syntax.error_lines


def test_save_is_captured_and_a_program_without_slides_fails():
    result = render(HEAD + CASES["overlap"][1] + "prs.save('/nonexistent/dir/deck.pptx')\n", draw=False)
    assert result.ok and len(result.elements) == 2
    empty = render("from pptx import Presentation\nPresentation()\n", draw=False)
    assert not empty.ok and "no slides" in empty.error


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (soffice)")
def test_two_slides_are_drawn_by_libreoffice_and_stacked():
    code = HEAD + CASES["low_contrast"][1] + "second = prs.slides.add_slide(prs.slide_layouts[6])\n"
    code += "second.shapes.add_textbox(Inches(1), Inches(1), Inches(3), Inches(1)).text = 'Two'\n"
    result = render(code, width=640)
    assert result.ok, result.error
    assert (result.width, result.height) == (640, 960)
    image = Image.open(io.BytesIO(result.image)).convert("L")
    assert image.size == (640, 960)
    # Dark text drawn on each slide's white page.
    assert image.crop((0, 0, 640, 480)).getextrema()[0] < 100
    assert image.crop((0, 480, 640, 960)).getextrema()[0] < 100
    (two,) = [e for e in result.elements if e.text == "Two"]
    assert two.bbox[1] >= 480 and two.extra["slide"] == 2


# Placeholder text sized and placed by the template: a 44 pt title centred on its box, 32 pt bullets.
PLACEHOLDERS = """from pptx import Presentation
prs = Presentation()
slide = prs.slides.add_slide(prs.slide_layouts[5])
slide.shapes.title.text = {title!r}
slide = prs.slides.add_slide(prs.slide_layouts[1])
slide.shapes.title.text = "Plan"
body = slide.placeholders[1].text_frame
body.text = {first!r}
for _ in range({more}):
    body.add_paragraph().text = {first!r}
"""
LONG_TITLE = "Margin pricing growth release dependency segment target channel"
LONG_BULLET = "Hiring retention forecast partners release adoption region customers dependency churn"


def test_placeholder_text_takes_the_template_size_and_its_overflow_is_found():
    from vsdpo.render.slides.text import inherited_font_pt

    short = render(
        PLACEHOLDERS.format(title="Quarterly plan", first="Hire two engineers", more=2), draw=False
    )
    assert short.ok and not short.defects, short.defects
    sizes = {e.text: e.extra["font_px"] for e in short.elements if e.role == "text"}
    assert sizes["Quarterly plan"] == pytest.approx(44 * 96 / 72, rel=0.02)  # the master's title style
    assert max(v for k, v in sizes.items() if k.startswith("Hire")) == pytest.approx(32 * 96 / 72, rel=0.02)
    # Three lines of 44 pt, centred on a title box made for one or two: cut by the slide's top edge.
    code = PLACEHOLDERS.format(title=LONG_TITLE, first=LONG_BULLET, more=5)
    long = render(code, draw=False)
    assert long.ok
    kinds = {(d.kind, tuple(d.lines)) for d in long.defects}
    assert ("clipped_text", (4,)) in kinds  # the title's line
    # Six bullets of two lines each at 32 pt run past the slide's bottom: the body's lines are blamed.
    assert any(kind == "clipped_text" and 8 in lines for kind, lines in kinds), kinds
    # A text box sets its own size or takes the deck's 18 pt.
    from pptx import Presentation

    deck = Presentation()
    box = deck.slides.add_slide(deck.slide_layouts[6]).shapes.add_textbox(0, 0, 100, 100)
    assert inherited_font_pt(box) == 18.0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (soffice)")
def test_placeholder_overflow_found_is_what_libreoffice_draws():
    """The title the checks say is cut by the top edge and the bullets they say run past the bottom
    are drawn so: ink on the first and the last row of pixels of the slide; the short twin has none."""
    code = PLACEHOLDERS.format(title=LONG_TITLE, first=LONG_BULLET, more=5)
    short = PLACEHOLDERS.format(title="Quarterly plan", first="Hire two engineers", more=2)
    for program, cut in ((code, True), (short, False)):
        result = render(program, width=640)
        assert result.ok, result.error
        image = Image.open(io.BytesIO(result.image)).convert("L")
        first_slide_top = image.crop((0, 0, 640, 2)).getextrema()[0]
        second_slide_bottom = image.crop((0, 958, 640, 960)).getextrema()[0]
        assert (first_slide_top < 128) == cut and (second_slide_bottom < 128) == cut
