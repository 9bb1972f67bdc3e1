"""Clean pages the web linter must leave alone, each standing for a class of real benchmark pages."""

from __future__ import annotations

import pytest

from vsdpo.render.web import render_web

LONG_PAGE = (
    "<html><head><style>\nbody { margin: 8px; }\n</style></head>\n<body>\n"
    '<div style="height: 1500px">Top of a long page</div>\n'
    "<p>First paragraph below the fold</p>\n"
    "<p>Second paragraph below the fold</p>\n"
    "</body></html>\n"
)


def _clean(html: str):
    result = render_web(html, timeout_s=15)
    assert result.ok, result.error
    assert result.defects == [], [(d.kind, d.message) for d in result.defects]
    return result


@pytest.mark.browser
def test_blocks_below_the_first_screen_keep_their_place():
    # Reading the background of a text below the first screen scrolls the window; the boxes are in
    # page coordinates whatever the scroll was when they were read.
    result = _clean(LONG_PAGE)
    paragraphs = [e for e in result.elements if e.extra.get("tag") == "p"]
    assert len(paragraphs) == 2
    for paragraph in paragraphs:
        box, text = paragraph.extra["box"], paragraph.bbox
        assert box[1] <= text[1] and text[3] <= box[3], (box, text)
        assert box[3] <= result.height


SCROLLING_CODE = (
    "<html><head><style>\npre { width: 200px; overflow: auto; border: 1px dashed grey; }\n</style></head>\n"
    "<body>\n<pre>tr -cd '[:graph:]' &lt; /dev/urandom | fold -w40 | head -n 1</pre>\n</body></html>\n"
)


@pytest.mark.browser
def test_a_line_in_a_box_that_scrolls_does_not_overflow_it():
    # The box scrolls along x: the end of the line is hidden until scrolled to, not spilled out.
    _clean(SCROLLING_CODE)


@pytest.mark.browser
def test_a_line_in_a_box_that_lets_it_out_overflows_it():
    result = render_web(SCROLLING_CODE.replace("overflow: auto", "overflow: visible"), timeout_s=15)
    assert result.ok, result.error
    assert any(d.kind == "overflow" and 5 in d.lines for d in result.defects), result.defects
