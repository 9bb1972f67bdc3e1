"""Design2Code's block extraction, one rule of the benchmark per test (vsdpo.metrics.design2code_blocks)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vsdpo.metrics import design2code_blocks as blocks
from vsdpo.metrics.color import color_similarity, to_rgb255
from vsdpo.metrics.design2code_blocks import Block


def test_colour_similarity_reads_tuples_as_0_255():
    # (1, 1, 1) is a near-black 0..255 colour, not white: nearly identical to black.
    assert color_similarity((1, 1, 1), (0, 0, 0)) > 0.99
    assert color_similarity((255, 0, 0), (1, 0, 0)) < 0.6
    assert color_similarity((255, 0, 0), "#ff0000") == 1.0
    assert to_rgb255((1.0, 0.5, 0.0), scale=1.0) == (255.0, 127.5, 0.0)


def test_marking_styles_follow_the_pool_in_document_order():
    assert blocks.pool_colors(3) == ["#FAFAFA", "#FAFAEA", "#FAFADA"]
    assert blocks.pool_colors(1, offset=50) == ["#2C2C2C"]
    styles = blocks.marked_styles([("div", "color: red; margin: 0"), ("em", None), ("p", None)], 0)
    # Pieces keep their leading spaces and are joined with "; ": spaces pile up as in the benchmark.
    assert styles == [
        "margin: 0;   background-color: rgba(255, 255, 255, 0.0) !important;  "
        "color: #FAFAFA !important; opacity: 1.0 !important",
        "background-color: rgba(255, 255, 255, 0.0) !important",
        "background-color: rgba(255, 255, 255, 0.0) !important;  color: #FAFAEA !important; "
        "opacity: 1.0 !important",
    ]


def test_declared_colours_are_read_as_the_benchmark_reads_them():
    assert blocks.declared_color("color: #FAFAEA !important; opacity: 1.0 !important") == "#FAFAEA"
    assert blocks.declared_color("background-color: rgba(255, 255, 255, 0.0) !important") is None
    assert blocks.declared_color("color: rgb(200, 0, 0)") == "#c80000"
    assert blocks.declared_color("color: red") == "#ff0000"
    assert blocks.declared_color("border-color: #ccc") == "#ccc"  # any "color" declaration counts
    assert blocks.declared_color("color: rgba(0, 0, 0, 0.5)") is None
    assert blocks.declared_color(None) is None


def test_generated_pages_are_cleaned_as_the_benchmark_cleans_them():
    assert blocks.prepare_generated("Hello") == "<html><body><p>Hello</p></body></html>"
    chunk = "".join(chr(ord("a") + i % 26) for i in range(100))
    repeated = (
        "<html><body>" + "<p>" + "intro " * 20 + "</p>" + ("<p>" + chunk + "</p>") * 6 + "</body></html>"
    )
    cut = blocks.cut_repetition(repeated)
    assert len(cut) < len(repeated) and cut.startswith("<html><body><p>intro")
    plain = "<html><body><p>" + " ".join(f"word{i}" for i in range(200)) + "</p></body></html>"
    assert blocks.cut_repetition(plain) == plain


def test_generated_pages_read_entity_references_as_beautifulsoup_does():
    # The benchmark re-serialises a generated page with BeautifulSoup (html.parser): an unknown
    # "&name;" loses its semicolon (the line gets shorter), a known name without one is decoded.
    page = '<html><body><p title="&NBSP;">a &NBSP; b &foo c &amp; &copy &#65; &bogus;x &hellip z</p></body></html>'
    assert blocks.prepare_generated(page) == (
        '<html><body><p title="&NBSP;">a &amp;NBSP b &amp;foo c &amp; &copy &#65; &amp;bogusx &hellip; z</p></body></html>'
    )
    # Script and style text is not parsed for references, well-formed pages are unchanged.
    raw = '<html><body><script>if (a&&b) x = "&zz;"</script><style>p{content:"&q;"}</style>&nbsp;&lt;</body></html>'
    assert blocks.prepare_generated(raw) == raw


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def test_blocks_are_the_tight_boxes_of_moved_pixels_with_their_picture_colour():
    height, width = 20, 40
    marked = np.full((height, width, 3), 255)
    shifted = np.full((height, width, 3), 255)
    picture = np.full((height, width, 3), 255)
    marked[5:8, 10:20] = (250, 250, 250)  # the element's text pixels in its marking colour
    shifted[5:8, 10:20] = (44, 44, 44)  # ... moved by 50 in the second shot
    picture[5:8, 10:20] = (30, 60, 90)
    marked[15, 30] = (250, 250, 250)  # the same colour elsewhere, not moved: not text
    texts = [("Hello  World", "#FAFAFA"), ("more", "#FAFAFA"), ("gone", "#000000")]
    found = blocks.blocks_from_shots(texts, _png(picture), _png(marked), _png(shifted))
    assert [b.text for b in found] == ["hello  world", "more"]
    assert found[0].bbox == (10 / width, 5 / height, 10 / width, 3 / height)
    assert found[0].color == (30, 60, 90)
    merged = blocks.merge_by_box(found)
    assert (
        len(merged) == 1 and merged[0].text == "hello  world more" and merged[0].color == (30.0, 60.0, 90.0)
    )


def test_identical_boxes_merge_with_averaged_colours():
    box = (0.1, 0.1, 0.2, 0.05)
    merged = blocks.merge_by_box(
        [Block("a", box, (0, 0, 0)), Block("b", box, (255, 0, 1)), Block("c", (0, 0, 1, 1), (1, 1, 1))]
    )
    assert [(b.text, b.color) for b in merged] == [("a b", (127.5, 0.0, 0.5)), ("c", (1, 1, 1))]


PAGE = """<!DOCTYPE html>
<html><head><style>body { font-family: sans-serif; } p { line-height: 40px; }</style></head>
<body>
<h1>Global <em>Jobs</em></h1>
<div><span>One</span> <span>Two</span></div>
<p style="color: rgb(200, 0, 0)">Red   words
 here</p>
<div><strong style="color: #0000ff">blue strong</strong></div>
</body></html>
"""


@pytest.mark.browser
def test_real_page_segmentation_box_and_colour():
    found, _ = blocks.page_blocks(PAGE, generated=False)
    texts = [b.text for b in found]
    # One block per listed element (h1 holds its em's text); nested listed elements apart; inner
    # whitespace kept, lowercased; a non-list element with a colour of its own shows in no shot.
    assert texts == ["global jobs", "one", "two", "red   words\n here"]
    red = found[3]
    assert max(abs(a - b) for a, b in zip(red.color, (200, 0, 0), strict=True)) <= 3
    # The box is that of the painted pixels: well inside the two 40 px line boxes of the paragraph.
    _, shot = blocks.page_blocks(PAGE, generated=False)
    shot_height = Image.open(io.BytesIO(shot)).size[1]
    assert red.bbox[3] * shot_height < 60
    generated, _ = blocks.page_blocks(PAGE, generated=True)
    assert [b.text for b in generated] == texts
