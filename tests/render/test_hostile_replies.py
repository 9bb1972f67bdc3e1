"""Programs that forge their job's reply, or make the caller pay for sizes and counts they pick.

A program shares its process with the code that describes its picture, so it can write any reply on
the job's result pipe. Whatever it writes, render() must return a failed RenderResult (never raise),
quickly and without building more than a bounded reply; sizes a program picks must stay bounded.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image

from vsdpo.render import defects as checks
from vsdpo.render import render, replies
from vsdpo.render.chart import renderer as chart_renderer
from vsdpo.render.sandbox import SandboxResult

# Writes REPLY (a framed reply, or raw bytes) on the job's result pipe and leaves before the real one.
FORGE = """
import gc, os
nan = float("nan")
from vsdpo.render.sandbox.channel import pack_reply
from vsdpo.render.sandbox.child import JobSetup
setup = next(o for o in gc.get_objects() if isinstance(o, JobSetup))
chunks = [REPLY] if isinstance(REPLY, bytes) else pack_reply({"ok": True, "value": REPLY})
for chunk in chunks:
    view = memoryview(chunk)
    while view:
        view = view[os.write(setup.fds["result"], view):]
os._exit(0)
"""


class Code(str):
    """A reply given as the code that builds it in the program (for replies too long to write out)."""


def forge(reply, kind: str = "chart", **options):
    started = time.monotonic()
    result = render(
        FORGE.replace("REPLY", reply if isinstance(reply, Code) else repr(reply)), kind, **options
    )
    assert time.monotonic() - started < 15
    return result


def png(width: int, height: int, colour: str = "white", mark: bool = False) -> bytes:
    picture = Image.new("RGB", (width, height), colour)
    if mark:
        picture.putpixel((width // 2, height // 2), (255, 0, 0))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and header that claim ``width`` x ``height`` pixels, and nothing else."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


GOOD = {"id": "t1", "role": "text", "bbox": [1.0, 1.0, 5.0, 5.0], "text": "x", "lines": [1], "extra": {}}


def chart(elements, image=None, width=10, height=10):
    return {"ok": True, "image": image or png(10, 10), "width": width, "height": height, "elements": elements}


FORGED_CHARTS = {
    "not a dict": None,
    "a string": "ok",
    "ok is not a bool": {"ok": "yes"},
    "no image": {"ok": True},
    "not a png": chart([GOOD], image=b"not a png" * 500),
    "13000 squared": chart([GOOD], image=png_header(13000, 13000), width=13000, height=13000),
    "size mismatch": chart([GOOD], width=20, height=20),
    "elements not a list": chart("many"),
    "element without id": chart([{k: v for k, v in GOOD.items() if k != "id"}]),
    "three-number box": chart([{**GOOD, "bbox": [1, 2, 3]}]),
    "nan box": chart([{**GOOD, "bbox": [float("nan"), 0, 1, 1]}]),
    "bad colour": chart([{**GOOD, "color": "red"}]),
    "bad lines": chart([{**GOOD, "lines": ["one"]}]),
    "parent loop": chart([{**GOOD, "id": "a", "parent": "b"}, {**GOOD, "id": "b", "parent": "a"}]),
    "duplicate ids": chart([GOOD, GOOD]),
    "too many elements": Code(
        f"{chart([])!r} | {{'elements': [{{**{GOOD!r}, 'id': f'e{{i}}'}} for i in range({replies.MAX_ELEMENTS + 1})]}}"
    ),
    "too many points": Code(
        f"{chart([])!r} | {{'elements': [{{**{GOOD!r}, 'extra': {{'points': [[1.0, 1.0]] * {replies.MAX_POINTS + 1}}}}}]}}"
    ),
    "odd extra": chart([{**GOOD, "extra": {"deep": [[[[1]]]]}}]),
    "error not text": {"ok": False, "error": 5, "error_lines": []},
    "error lines not ints": {"ok": False, "error": "boom", "error_lines": ["x"]},
    "ok, no elements, a picture": chart([], image=png(10, 10, mark=True)),
}


@pytest.mark.parametrize("name", list(FORGED_CHARTS))
def test_a_forged_chart_reply_fails_the_render(name):
    result = forge(FORGED_CHARTS[name])
    assert not result.ok and result.error_kind == "invalid_reply", (result.error_kind, result.error)


FORGED_SLIDES = {
    "a million slides": {
        "ok": True,
        "pptx": b"",
        "slide_size": [960, 720],
        "slide_count": 10**6,
        "elements": [],
    },
    "a huge slide": {"ok": True, "pptx": b"", "slide_size": [10**6, 10**6], "slide_count": 1, "elements": []},
    "element on a slide that is not": {
        "ok": True,
        "pptx": b"",
        "slide_size": [960, 720],
        "slide_count": 1,
        "elements": [{"id": "s1", "role": "shape", "bbox": [0, 0, 1, 1], "slide": 9, "provenance": {}}],
    },
    "provenance by name": {
        "ok": True,
        "pptx": b"",
        "slide_size": [960, 720],
        "slide_count": 1,
        "elements": [
            {"id": "s1", "role": "shape", "bbox": [0, 0, 1, 1], "slide": 1, "provenance": {"x": []}}
        ],
    },
}


@pytest.mark.parametrize("name", list(FORGED_SLIDES))
def test_a_forged_slides_reply_fails_the_render(name):
    result = forge(FORGED_SLIDES[name], "slides", draw=False)
    assert not result.ok and result.error_kind == "invalid_reply", (result.error_kind, result.error)


@pytest.mark.parametrize(
    "frame",
    [
        b"garbage",
        struct.pack("<QI", 1 << 40, 0),  # a structure of a terabyte, announced
        struct.pack("<QI", 16, 0) + b"\x80\x05\x95" + b"\x00" * 13 + b"trailing",
    ],
    ids=["garbage", "huge structure", "trailing bytes"],
)
def test_a_broken_frame_is_refused_before_decoding(frame):
    result = forge(frame)
    assert not result.ok and "unreadable result" in result.error


def test_a_reply_that_imports_is_refused():
    # A pickle that would call os.system when loaded: refused by the plain-data unpickler.
    import pickle

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("true",))

    structure = pickle.dumps({"ok": True, "value": Evil()}, protocol=5)
    result = forge(struct.pack("<QI", len(structure), 0) + structure)
    assert not result.ok and "plain data" in result.error


def test_thousands_of_overlapping_elements_cost_a_bounded_check():
    result = forge(
        Code(
            # Different words: the same text drawn again in one spot is one text (not an overlap).
            f"{chart([])!r} | {{'elements': [{{**{GOOD!r}, 'id': f'e{{i}}', 'text': f'x{{i}}', "
            f"'bbox': [2.0, 2.0, 8.0, 8.0]}}"
            f" for i in range({replies.MAX_ELEMENTS})]}}"
        )
    )
    assert result.ok and 0 < len(result.defects) <= checks.MAX_RENDER_DEFECTS


def test_a_thousand_labels_at_one_point():
    started = time.monotonic()
    result = render(
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nfor i in range(1000):\n"
        "    ax.text(0.5, 0.5, f'label {i}')\n",
        "chart",
    )
    assert result.ok and len(result.defects) <= checks.MAX_RENDER_DEFECTS
    assert time.monotonic() - started < 30


def test_slide_size_and_count_picked_by_the_program_stay_bounded():
    started = time.monotonic()
    # python-pptx refuses such a size through its API; the deck's XML takes any.
    result = render(
        "from pptx import Presentation\nfrom pptx.oxml.ns import qn\nfrom pptx.util import Inches\n"
        "prs = Presentation()\nsize = prs.part._element.find(qn('p:sldSz'))\n"
        "size.set('cx', str(10**9))\nsize.set('cy', str(3 * 10**9))\n"
        "for i in range(40):\n"
        "    prs.slides.add_slide(prs.slide_layouts[6]).shapes.add_textbox(0, 0, Inches(1), Inches(1)).text = 'x'\n",
        "slides",
        draw=False,
    )
    assert result.ok, result.error
    assert result.width <= 4096 and result.height <= replies.MAX_SLIDES * 4096
    assert result.width * result.height <= replies.MAX_IMAGE_PIXELS
    assert time.monotonic() - started < 20


def test_checks_past_the_deadline_fail_the_render():
    # Different words: the same text drawn again in one spot is one text, with no pair to check.
    elements = [{**GOOD, "id": f"e{i}", "text": f"x{i}", "bbox": [2.0, 2.0, 8.0, 8.0]} for i in range(10)]
    outcome = SandboxResult(ok=True, value=chart(elements))
    result = chart_renderer.render_chart_outcome(outcome, deadline=time.monotonic() - 1)
    assert not result.ok and result.error_kind == "timeout"


def test_a_fault_of_the_renderer_comes_back_as_a_failed_result(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the checks")

    monkeypatch.setattr(chart_renderer, "chart_defects", broken)
    result = render("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n", "chart")
    assert not result.ok and result.error_kind == "internal" and "a bug in the checks" in result.error


def test_oversized_sources_are_refused_before_they_run():
    result = render("<p>x</p>" * 1_000_000, "web")
    assert not result.ok and result.error_kind == "too_large"
    with pytest.raises(ValueError, match="timeout_s"):
        render("x = 1", "chart", timeout_s=float("nan"))
