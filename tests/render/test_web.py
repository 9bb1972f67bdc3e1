"""Web renderer: real Design2Code pages, blocked network, and each defect kind traced to its lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from vsdpo.render.web import render_web
from vsdpo.render.web.source import parse_css_rules, tag_source_lines

DESIGN2CODE = Path(__file__).resolve().parents[3] / "shared" / "data" / "design2code"
if not DESIGN2CODE.is_dir():
    DESIGN2CODE = Path("/work/shared/data/design2code")


def page(body: str, css: str = "") -> str:
    # Line 1 is <html>; CSS rules start on line 3; the body on the line after </style> + 1.
    return f"<html><head><style>\n{css}\n</style></head>\n<body>\n{body}\n</body></html>\n"


def line_of(html: str, needle: str) -> int:
    return html[: html.index(needle)].count("\n") + 1


def render(html: str, **kw):
    result = render_web(html, timeout_s=15, **kw)
    assert result.ok, result.error
    return result


def of_kind(result, kind):
    return [d for d in result.defects if d.kind == kind]


# ---------------------------------------------------------------------------------------------- no browser


def test_start_tags_carry_their_lines_and_raw_text_is_untouched():
    source = "<html>\n<head><title>a <b> title</title>\n<script>if (a<b) x = '<p>';</script></head>\n<body>\n<p\n class=x>hi<br/></p>\n</body></html>"
    tagged = tag_source_lines(source)
    assert '<p data-vsdpo-line="5"\n class=x>' in tagged.html
    assert '<br data-vsdpo-line="6"/>' in tagged.html
    assert "a <b> title" in tagged.html and "x = '<p>';" in tagged.html
    assert tagged.html.count("data-vsdpo-line") == 7  # html head title script body p br


def test_css_rules_come_in_cssom_order_with_declaration_lines():
    css = "/* a { color: red } */\np { margin: 0 }\n@media (min-width: 1px) {\n  .a,\n .b { color: #111;\n  background: url(x:y) }\n}\n@font-face { font-family: F }\nh1 {\n  overflow-x: hidden }"
    rules = parse_css_rules(css, first_line=10)
    assert [r.selector for r in rules] == ["p", ".a, .b", "h1"]
    assert rules[0].declarations == {"margin": 11}
    assert rules[1].line == 13 and rules[1].declarations == {"color": 14, "background": 15}
    assert rules[2].declarations == {"overflow-x": 19}


# ---------------------------------------------------------------------------------------------- in Chromium


@pytest.mark.browser
@pytest.mark.slow
def test_design2code_pages_render_with_elements():
    pages = sorted(DESIGN2CODE.glob("*.html"))
    assert len(pages) >= 20
    for path in pages:
        result = render(path.read_text(), assets_dir=DESIGN2CODE)
        assert result.width == 1280 and result.height >= 720, path.name
        assert Image.open(io.BytesIO(result.image)).size == (result.width, result.height)
        texts = [e for e in result.elements if e.role == "text"]
        assert texts and all(e.lines for e in texts), path.name
        assert all(0 < e.lines[0] <= path.read_text().count("\n") + 1 for e in result.elements if e.lines)


@pytest.mark.browser
def test_network_is_blocked_and_the_page_still_renders():
    html = page(
        '<p id="status">waiting</p><img src="http://example.com/logo.png">'
        "<script>fetch('http://example.com/').then(() => status.textContent = 'reached')"
        ".catch(() => status.textContent = 'blocked')</script>"
    )
    result = render(html)
    texts = {e.text for e in result.elements}
    assert "reached" not in texts and texts & {"waiting", "blocked"}
    assert result.image


@pytest.mark.browser
def test_a_script_that_never_ends_times_out_and_the_next_render_works():
    stuck = render_web("<p>hi</p><script>while (true) {}</script>", timeout_s=2)
    assert not stuck.ok and "TimeoutError" in stuck.error
    assert any(e.text == "after" for e in render("<p>after</p>").elements)


CASES = {
    # kind: (css, body with the defect, the same body clean, needle marking the blamed start tag, blamed css)
    "overlap": (
        ".lead { font-size: 20px }\n.pulled { margin-top: -28px }",
        '<p class="lead">The first paragraph of text</p>\n<p class="pulled">The second paragraph of text</p>',
        '<p class="lead">The first paragraph of text</p>\n<p>The second paragraph of text</p>',
        '<p class="pulled">',
        "margin-top: -28px",
    ),
    "clipped_text": (
        ".box { width: 140px;\n  height: 20px;\n  overflow: hidden }",
        '<div class="box">A long sentence that cannot fit inside this small box at all</div>',
        '<div class="box" style="height: auto">A long sentence that fits after all</div>',
        '<div class="box">',
        "overflow: hidden",
    ),
    "overflow": (
        ".banner { background: #eee;\n  width: 1500px }",
        '<div class="banner">Banner</div>',
        '<div class="banner" style="width: 600px">Banner</div>',
        '<div class="banner">',
        "width: 1500px",
    ),
    "misalignment": (
        ".card { background: #ddd; width: 300px; height: 40px }\n.nudged { margin-left: 3px }",
        '<div class="card"></div>\n<div class="card nudged"></div>',
        '<div class="card"></div>\n<div class="card"></div>',
        '<div class="card nudged">',
        "margin-left: 3px",
    ),
    "low_contrast": (
        ".note { font-size: 14px }\n.faint { color: #bbbbbb }",
        '<p class="note faint">Faint grey words on white</p>',
        '<p class="note">Dark words on white</p>',
        '<p class="note faint">',
        "color: #bbbbbb",
    ),
}


@pytest.mark.browser
@pytest.mark.parametrize("kind", sorted(CASES))
def test_defect_is_found_and_traced_and_the_clean_twin_has_none(kind):
    css, bad, clean, tag_needle, css_needle = CASES[kind]
    bad_html = page(bad, css)
    found = of_kind(render(bad_html), kind)
    assert found, f"no {kind} found"
    lines = set().union(*(d.lines for d in found))
    assert line_of(bad_html, tag_needle) in lines
    assert line_of(bad_html, css_needle) in lines
    assert all(0 < d.severity <= 1 for d in found)
    assert render(page(clean, css)).defects == []


@pytest.mark.browser
def test_fixed_canvas_html_slide_bounds_its_content():
    slide = page(
        '<div style="height: 700px">Title</div>\n<p class="late">Text that starts below the slide edge</p>',
        "body { margin: 0 }",
    )
    result = render(slide, width=1280, height=720)
    assert (result.width, result.height) == (1280, 720)
    late = line_of(slide, '<p class="late">')
    assert any(late in d.lines for d in of_kind(result, "clipped_text"))
    assert any(late in d.lines for d in of_kind(result, "overflow"))


# A page a script changes, one with a running animation and a focused field, a tall one, and a fixed
# canvas: each rendered twice in a reused context and once in a context of its own.
REUSED_CONTEXT_PAGES = [
    (page("<h1>Heading</h1><p>text</p><script>document.body.insertAdjacentHTML('beforeend', "
          "'<p>added by a script</p>'); localStorage.setItem('seen', '1');</script>"), None),
    (page("<div class='bar'></div><input autofocus value='typed'>",
          "@keyframes grow { from { width: 10px } to { width: 300px } }\n"
          ".bar { animation: grow 2s forwards; height: 40px; background: #c33 }"), None),
    (page("<div style='height: 2400px; background: linear-gradient(#fff, #36c)'><p>tall</p></div>"), None),
    (page("<p style='font-size: 40px; margin-left: 600px'>past the edge</p>"), 360),
]  # fmt: skip


@pytest.mark.browser
@pytest.mark.parametrize(("html", "height"), REUSED_CONTEXT_PAGES)
def test_a_reused_context_renders_what_a_context_of_its_own_does(html, height, monkeypatch):
    from vsdpo.render.web import browser

    width = 640 if height else None
    first = render(html, width=width, height=height)
    slot = browser.browser_host()._idle[-1]  # the context the first render used, taken next
    served = slot.served
    opened = browser.browser_host().contexts_opened
    again = render(html, width=width, height=height)
    assert slot.served == served + 1, "the second render did not reuse the first one's context"
    monkeypatch.setenv(browser.FRESH_CONTEXT_ENV, "1")
    alone = render(html, width=width, height=height)
    assert browser.browser_host().contexts_opened == opened + 1
    for result in (again, alone):
        assert (result.width, result.height) == (first.width, first.height)
        assert Image.open(io.BytesIO(result.image)).tobytes() == Image.open(io.BytesIO(first.image)).tobytes()
        assert [(e.role, e.text, e.bbox) for e in result.elements] == [
            (e.role, e.text, e.bbox) for e in first.elements
        ]
        assert [(d.kind, d.lines) for d in result.defects] == [(d.kind, d.lines) for d in first.defects]
