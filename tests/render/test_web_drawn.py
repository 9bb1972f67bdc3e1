"""Pages are reported as drawn: what the extraction measures is the picture the screenshot shows.

Each page here once drew a defect the checks did not report (or reported one it did not draw): an
animation whose end the screenshot showed and whose start the extraction measured, a script that
moved text when the extraction scrolled, text inside a closed shadow root or a srcdoc frame, text
drawn on a canvas, and a page long enough to pass the extraction's element cap unnoticed.
"""

from __future__ import annotations

import html as html_escape
import io

import numpy as np
import pytest
from PIL import Image

from vsdpo.render.web import render_web
from vsdpo.render.web.renderer import MAX_ELEMENTS

LABELS = "p { position: absolute; margin: 0; font: 24px sans-serif; color: #000 }"


def render(html: str, **kw):
    result = render_web(html, timeout_s=20, **kw)
    assert result.ok, result.error
    return result


def line_of(html: str, needle: str) -> int:
    return html[: html.index(needle)].count("\n") + 1


def overlaps(result) -> list:
    return [d for d in result.defects if d.kind == "overlap"]


def texts(result) -> dict:
    return {e.text: e for e in result.elements if e.role == "text"}


def ink_box(png: bytes, red: bool) -> tuple[int, int, int, int] | None:
    """The box around the red (or the black) pixels of a picture."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    mask = (r > 150) & (g < 90) & (b < 90) if red else (r < 90) & (g < 90) & (b < 90)
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def inside(inner, outer, slack: float = 2.0) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def boxes_meet(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


# ---------------------------------------------------------------------------------------------- animations


@pytest.mark.browser
@pytest.mark.parametrize("timing", ["0.5s forwards", "0.5s 0.3s both"])
def test_an_overlap_reached_at_the_end_of_an_animation_is_reported(timing):
    page = f"""<html><head><style>
{LABELS}
@keyframes arrive {{ from {{ top: 400px }} to {{ top: 22px }} }}
.late {{ top: 400px; animation: arrive {timing} }}
</style></head><body>
<p style="top: 20px; left: 20px">first label here</p>
<p class="late" style="left: 24px">second label here</p>
</body></html>"""
    result = render(page)
    found = overlaps(result)
    assert found, [(d.kind, d.message) for d in result.defects]
    assert line_of(page, '<p class="late"') in found[0].lines
    # What was measured is what the picture shows: the moved label's ink lies in its reported box.
    assert texts(result)["second label here"].bbox[1] < 60


@pytest.mark.browser
def test_a_transition_started_on_load_is_measured_at_its_end():
    page = f"""<html><head><style>
{LABELS}
.late {{ top: 400px; transition: top 0.5s }}
.late.moved {{ top: 22px }}
</style></head><body>
<p style="top: 20px; left: 20px">first label here</p>
<p class="late" style="left: 24px">second label here</p>
<script>requestAnimationFrame(() => requestAnimationFrame(() =>
  document.querySelector(".late").classList.add("moved")));</script>
</body></html>"""
    result = render(page)
    moved = texts(result)["second label here"]
    assert moved.bbox[1] < 60 and overlaps(result)


# ---------------------------------------------------------------------------------------------- scripts


@pytest.mark.browser
@pytest.mark.parametrize("event", ["scroll", "resize"])
def test_a_script_that_moves_text_when_measured_gets_the_defect_it_draws(event):
    # The red label starts clear of the black one; on the event the extraction or the screenshot
    # would cause, a script moves it onto the black one. Whatever the picture shows is reported.
    page = f"""<html><head><style>
{LABELS}
</style></head><body>
<p id="still" style="top: 20px; left: 20px">first label here</p>
<p id="mover" style="top: 3000px; left: 20px; color: #e00000">second label here</p>
<div style="position: absolute; top: 3100px; height: 10px; width: 10px"></div>
<script>
window.addEventListener("{event}", () => {{ document.getElementById("mover").style.top = "22px"; }});
</script>
</body></html>"""
    result = render(page)
    mover = texts(result)["second label here"]
    still = texts(result)["first label here"]
    red = ink_box(result.image, red=True)
    assert red is not None and inside(red, mover.bbox), (red, mover.bbox)
    drawn_overlap = boxes_meet(red, still.bbox)
    assert bool(overlaps(result)) == drawn_overlap


@pytest.mark.browser
def test_a_timer_cannot_move_text_between_the_picture_and_its_measure():
    page = f"""<html><head><style>
{LABELS}
</style></head><body>
<p id="still" style="top: 20px; left: 20px">first label here</p>
<p id="mover" style="top: 200px; left: 20px; color: #e00000">second label here</p>
<script>
let flip = false;
setInterval(() => {{ flip = !flip; document.getElementById("mover").style.top = flip ? "22px" : "200px"; }}, 1);
</script>
</body></html>"""
    for _ in range(3):
        result = render(page)
        red = ink_box(result.image, red=True)
        mover = texts(result)["second label here"]
        assert red is not None and inside(red, mover.bbox), (red, mover.bbox)
        assert bool(overlaps(result)) == boxes_meet(red, texts(result)["first label here"].bbox)


# ---------------------------------------------------------------------------------------------- shadow roots, frames


CLOSED_BY_SCRIPT = f"""<html><head></head><body>
<div id="host"></div>
<script>
const root = document.getElementById("host").attachShadow({{mode: "closed"}});
root.innerHTML = '<style>{LABELS}</style><p style="top: 20px; left: 20px">first label here</p>' +
  '<p style="top: 22px; left: 24px">second label here</p>';
</script>
</body></html>"""
CLOSED_DECLARED = f"""<html><head></head><body>
<div id="host"><template shadowrootmode="closed"><style>{LABELS}</style>
<p style="top: 20px; left: 20px">first label here</p>
<p style="top: 22px; left: 24px">second label here</p></template></div>
</body></html>"""
OPEN_BY_SCRIPT = CLOSED_BY_SCRIPT.replace('mode: "closed"', 'mode: "open"')


@pytest.mark.browser
@pytest.mark.parametrize(
    "page", [CLOSED_BY_SCRIPT, CLOSED_DECLARED, OPEN_BY_SCRIPT], ids=["closed", "declarative", "open"]
)
def test_an_overlap_inside_a_shadow_root_is_found_and_blamed_on_its_host(page):
    result = render(page)
    found = overlaps(result)
    assert found, [(d.kind, d.message) for d in result.defects]
    assert line_of(page, '<div id="host"') in found[0].lines
    labels = texts(result)
    assert {"first label here", "second label here"} <= set(labels)


@pytest.mark.browser
def test_an_overlap_inside_a_srcdoc_frame_is_found_in_page_coordinates():
    inner = (
        f"<style>{LABELS}</style>"
        '<p style="top: 10px; left: 10px">first label here</p>'
        '<p style="top: 12px; left: 14px">second label here</p>'
    )
    page = f"""<html><head><style>
body {{ margin: 0 }}
</style></head><body>
<div style="height: 300px"></div>
<iframe style="margin-left: 200px; width: 400px; height: 200px; border: 0" srcdoc="{html_escape.escape(inner)}"></iframe>
</body></html>"""
    result = render(page)
    found = overlaps(result)
    assert found, [(d.kind, d.message) for d in result.defects]
    assert line_of(page, "<iframe") in found[0].lines
    frame = next(e for e in result.elements if e.extra["tag"] == "iframe")
    label = texts(result)["first label here"]
    assert inside(label.bbox, frame.bbox) and label.bbox[0] >= 210 and label.bbox[1] >= 310
    # The boxes are where the picture shows the text.
    black = ink_box(result.image, red=False)
    assert black is not None and inside(black, frame.bbox)


@pytest.mark.browser
def test_text_cut_by_its_frame_is_clipped_text():
    inner = "<p style='white-space: nowrap; font: 24px sans-serif'>A sentence far too long for its frame</p>"
    page = (
        f'<html><body>\n<iframe style="width: 120px; height: 80px" srcdoc="{inner}"></iframe>\n</body></html>'
    )
    result = render(page)
    assert any(d.kind == "clipped_text" for d in result.defects)


# ---------------------------------------------------------------------------------------------- canvases


CANVAS = """<html><body>
<p style="font: 16px sans-serif">A paragraph above the drawing</p>
<canvas id="drawing" width="400" height="120"></canvas>
<script>
const context = document.getElementById("drawing").getContext("2d");
DRAW
</script>
</body></html>"""


@pytest.mark.browser
def test_text_drawn_on_a_canvas_is_never_a_clean_page():
    page = CANVAS.replace(
        "DRAW",
        'context.font = "24px sans-serif"; context.fillText("first label here", 10, 40);'
        ' context.fillText("second label here", 14, 42);',
    )
    result = render(page)
    canvas = next(e for e in result.elements if e.extra["tag"] == "canvas")
    named = [d for d in result.defects if canvas.id in d.elements]
    assert named and line_of(page, "<canvas") in named[0].lines
    assert named[0].severity == 1.0


@pytest.mark.browser
def test_a_blank_canvas_is_no_defect():
    assert render(CANVAS.replace("DRAW", "")).defects == []


@pytest.mark.browser
def test_a_painted_canvas_over_text_overlaps_it():
    page = """<html><body>
<p style="font: 16px sans-serif; margin: 20px">A paragraph under the drawing</p>
<canvas id="drawing" width="400" height="60" style="position: absolute; top: 10px; left: 10px"></canvas>
<script>
const context = document.getElementById("drawing").getContext("2d");
context.fillStyle = "#ffffff"; context.fillRect(0, 0, 400, 60);
</script>
</body></html>"""
    result = render(page)
    paragraph = texts(result)["A paragraph under the drawing"]
    assert any(paragraph.id in d.elements for d in overlaps(result))


@pytest.mark.browser
def test_a_webgl_canvas_is_judged_by_its_picture():
    page = """<html><body>
<canvas id="drawing" width="200" height="100"></canvas>
<script>
const gl = document.getElementById("drawing").getContext("webgl", {preserveDrawingBuffer: true});
if (gl) { gl.enable(gl.SCISSOR_TEST); gl.scissor(20, 20, 50, 30); gl.clearColor(1, 0, 0, 1); gl.clear(gl.COLOR_BUFFER_BIT); }
</script>
</body></html>"""
    result = render(page)
    canvas = next(e for e in result.elements if e.extra["tag"] == "canvas")
    if ink_box(result.image, red=True) is None:
        pytest.skip("no WebGL in this browser: the canvas stays blank")
    assert canvas.extra["painted"] and any(canvas.id in d.elements for d in result.defects)


@pytest.mark.browser
def test_a_frame_the_page_wrote_but_cannot_be_read_is_a_surface():
    inner = "<p style='font: 24px sans-serif'>first label</p><p style='margin-top: -30px'>second label</p>"
    page = f"""<html><body>
<p>Some text</p>
<iframe src="data:text/html,{html_escape.escape(inner)}"></iframe>
<iframe src="http://example.com/blocked"></iframe>
</body></html>"""
    result = render(page)
    frames = [e for e in result.elements if e.extra["tag"] == "iframe"]
    assert [bool(e.extra.get("painted")) for e in frames] == [True, False]
    named = [d for d in result.defects if frames[0].id in d.elements]
    assert named and line_of(page, '<iframe src="data:') in named[0].lines
    assert not any(frames[1].id in d.elements for d in result.defects)


# ---------------------------------------------------------------------------------------------- the cap


@pytest.mark.browser
def test_a_page_past_the_element_cap_is_said_to_be_unchecked():
    filler = "".join(f"<span>{i} </span>" for i in range(MAX_ELEMENTS))
    page = f"""<html><head><style>
{LABELS}
</style></head><body>
<div>{filler}</div>
<p style="top: 20px; left: 20px">first label here</p>
<p style="top: 22px; left: 24px">second label here</p>
</body></html>"""
    result = render(page)
    assert len(result.elements) == MAX_ELEMENTS
    assert result.elements[0].extra.get("extraction_truncated") is True
    cut = [d for d in result.defects if d.kind == "overflow" and "unchecked" in d.message]
    assert cut and cut[0].severity == 1.0
    assert line_of(page, "<div>") in cut[0].lines  # where the first element left out starts
    # Below the cap the page is measured whole, and said to be.
    short = render(page.replace(filler, filler[: filler.index("<span>10 ")]))
    assert overlaps(short) and not any("unchecked" in d.message for d in short.defects)


SVG_LABELS = """<html><body style="margin: 0">
<svg width="400" height="120" style="display: block; background: #fff">
<rect x="0" y="0" width="400" height="120" fill="#1f3a5f"/>
<text x="20" y="50" font-size="24" fill="#ffffff">First label here</text>
<text x="SECOND_X" y="SECOND_Y" font-size="24" fill="#ffffff">Second label here</text>
</svg>
</body></html>"""


@pytest.mark.browser
def test_labels_drawn_in_an_inline_svg_are_checked_as_text():
    clean = render(SVG_LABELS.replace("SECOND_X", "20").replace("SECOND_Y", "100"))
    labels = texts(clean)
    assert {"First label here", "Second label here"} <= set(labels)
    assert clean.defects == []  # white on the SVG's navy: no contrast verdict where the background is a shape
    assert labels["First label here"].lines == [4]
    # Two labels drawn over each other: the overlap the picture shows, blamed on their lines.
    page = SVG_LABELS.replace("SECOND_X", "30").replace("SECOND_Y", "56")
    found = overlaps(render(page))
    assert found and set(found[0].lines) == {4, 5}
    # A label placed past the SVG's right edge is cut by it.
    cut = render(SVG_LABELS.replace("SECOND_X", "300").replace("SECOND_Y", "100"))
    assert any(d.kind == "clipped_text" and 5 in d.lines for d in cut.defects), cut.defects
