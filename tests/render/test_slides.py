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


# Text as LibreOffice lays it out, one piece per slide on an empty page (the boxes the checks judge).
LAYOUTS = {
    # add_textbox's own frame grows to its text and does not wrap: drawn centred on the box.
    "text box": HEAD + "box = slide.shapes.add_textbox(Inches(2), Inches(2), Inches(5), Inches(1))\n"
    "box.text_frame.text = 'Left words'\n",
    # The master centres a title and sets it at 44 pt.
    "title": "from pptx import Presentation\nprs = Presentation()\n"
    "prs.slides.add_slide(prs.slide_layouts[5]).shapes.title.text = 'Plan'\n",
    # Bullets start 0.375 in in (the master's margin) and are 20% of their size apart; the frame's
    # shrink-on-overflow is the master's, which LibreOffice does not apply: drawn past the frame.
    "bullets": "from pptx import Presentation\nfrom pptx.util import Inches\nprs = Presentation()\n"
    "slide = prs.slides.add_slide(prs.slide_layouts[1])\n"
    "slide.shapes.title._element.getparent().remove(slide.shapes.title._element)\n"
    "body = slide.placeholders[1]\n"
    "body.left, body.top, body.width, body.height = Inches(0.5), Inches(1.6), Inches(9), Inches(1.5)\n"
    "body.text_frame.text = 'Hire two engineers'\n"
    "for i in range(4):\n    body.text_frame.add_paragraph().text = f'Ship the release {i}'\n",
}
# A word wider than its wrapping frame is broken between characters.
LAYOUTS["long word"] = HEAD + (
    "box = slide.shapes.add_textbox(Inches(1.5), Inches(3.5), Inches(1.2), Inches(0.8))\n"
    "box.text_frame.word_wrap = True\n"
    "box.text_frame.text = 'Dependency'\n"
    "box.text_frame.paragraphs[0].runs[0].font.size = Pt(29)\n"
)
# The same bullets with the frame's own shrink-on-overflow: LibreOffice shrinks them into it.
LAYOUTS["shrunk bullets"] = (
    LAYOUTS["bullets"].replace("from pptx.util", "from pptx.enum.text import MSO_AUTO_SIZE\nfrom pptx.util")
    + "body.text_frame.auto_size = MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE\n"
)


def _text_of(code: str):
    result = render(code, draw=False)
    assert result.ok, result.error
    (text,) = [e for e in result.elements if e.role == "text"]
    return result, text


def test_text_is_placed_as_the_frame_and_the_master_say():
    px_per_in = 96  # a 10 in slide drawn 960 px wide
    _, box = _text_of(LAYOUTS["text box"])
    x0, _, x1, _ = box.bbox
    assert (x0 + x1) / 2 == pytest.approx(4.5 * px_per_in, abs=1)  # centred on the 2-7 in box
    assert x1 - x0 < 2 * px_per_in
    frame = box.extra["frame"]  # the frame is as wide as the text, plus its margins
    assert frame[2] - frame[0] == pytest.approx(x1 - x0 + 0.2 * px_per_in, abs=1)

    _, title = _text_of(LAYOUTS["title"])
    assert (title.bbox[0] + title.bbox[2]) / 2 == pytest.approx(5 * px_per_in, abs=1)

    result, bullets = _text_of(LAYOUTS["bullets"])
    assert bullets.bbox[0] == pytest.approx((0.5 + 0.1 + 0.375) * px_per_in, abs=1)  # box, margin, indent
    font = 32 * px_per_in / 72
    assert bullets.extra["font_px"] == pytest.approx(font)
    assert bullets.bbox[3] - bullets.bbox[1] == pytest.approx(5 * 1.2 * font + 4 * 0.2 * font, abs=1)
    # Past its frame, but a frame that asks to shrink is not held to it: nothing to report here.
    assert bullets.bbox[3] > bullets.extra["frame"][3] and result.defects == []

    _, word = _text_of(LAYOUTS["long word"])
    assert word.bbox[2] <= word.extra["frame"][2] and word.bbox[3] - word.bbox[1] > 2 * 29 * px_per_in / 72
    result, shrunk = _text_of(LAYOUTS["shrunk bullets"])
    assert shrunk.extra["font_px"] < 0.7 * font
    assert shrunk.bbox[3] <= shrunk.extra["frame"][3] and result.defects == []


def test_a_fit_set_by_the_layout_is_not_applied():
    """LibreOffice grows or shrinks to fit only where the shape's own frame says so."""
    code = LAYOUTS["bullets"].replace(
        "slide = prs.slides.add_slide(prs.slide_layouts[1])\n",
        "from lxml import etree\nfrom pptx.oxml.ns import qn\n"
        "for ph in prs.slide_layouts[1].placeholders:\n"
        "    if ph.placeholder_format.idx == 1:\n"
        "        etree.SubElement(ph._element.txBody.find(qn('a:bodyPr')), qn('a:spAutoFit'))\n"
        "slide = prs.slides.add_slide(prs.slide_layouts[1])\n",
    )
    _, text = _text_of(code)
    _, plain = _text_of(LAYOUTS["bullets"])
    assert text.extra["frame"] == plain.extra["frame"] and text.bbox == plain.bbox
    assert text.bbox[3] > text.extra["frame"][3]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (soffice)")
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_text_boxes_are_where_libreoffice_draws_the_ink(name):
    """Each edge of the text's box within 0.3 of its font size (or 8 px) of the ink's: a line's box
    starts 0.22 of it above its capitals. The left edge of bullets is the text's; the bullet's ink lies
    left of it."""
    result = render(LAYOUTS[name], width=960)
    assert result.ok, result.error
    (text,) = [e for e in result.elements if e.role == "text"]
    grey = Image.open(io.BytesIO(result.image)).convert("L")
    ink = grey.point(lambda value: 255 if value < 128 else 0).getbbox()
    near = max(8.0, 0.3 * text.extra["font_px"])
    edges = range(1, 4) if "bullets" in name else range(4)
    assert all(abs(text.bbox[i] - ink[i]) <= near for i in edges), (text.bbox, ink)
