"""Slides renderer: python-pptx programs, run in the sandbox, drawn by LibreOffice, checked for defects.

The program runs in a sandboxed child (vsdpo.render.slides.child), which hands back the deck it built
as .pptx bytes and the elements of its slides from the object model: shape boxes, text laid out with
real font metrics, colours, and the user lines that made or styled each shape. Outside the child, the
deck is drawn under the sandbox's layers, by a LibreOffice kept running between decks
(vsdpo.render.slides.picture, vsdpo.render.slides.converter); slides are stacked top to bottom in the
image, and every slide is its own canvas for the checks.

``timeout_s`` bounds the whole render, the drawing included: the drawing job gets what the program
and the checks left of it (the time each sandbox job ran, not the time spent waiting for a free
worker), and a deck that keeps LibreOffice busy past it fails the render with error kind "timeout",
as a program that runs too long does. Otherwise a deck of many large tables, built in a second,
could hold a renderer for minutes under a ten-second timeout.

The child's reply is checked before use (vsdpo.render.replies): slide size and count within bounds,
elements with their schema; a reply that breaks them fails the render with error kind "invalid_reply".
The checks run under the render's deadline.
"""

from __future__ import annotations

import time
from typing import Any

from vsdpo.render import deadline as clock
from vsdpo.render import defects as checks
from vsdpo.render import replies
from vsdpo.render.sandbox import SandboxLimits, run_in_sandbox
from vsdpo.render.slides.picture import draw_deck_within
from vsdpo.render.types import Defect, Element, RenderResult

SLIDES_ENTRY = "vsdpo.render.slides.child:render_slides_job"
# Which recorded calls a defect of each kind is blamed on (vsdpo.render.slides.trace categories).
DEFECT_CATEGORIES: dict[str, frozenset[str]] = {
    "overlap": frozenset({"create", "geometry"}),
    "clipped_text": frozenset({"create", "geometry", "text", "font"}),
    "overflow": frozenset({"create", "geometry", "text", "font"}),
    "misalignment": frozenset({"create", "geometry"}),
    "low_contrast": frozenset({"create", "font", "color", "fill"}),
}
VISUAL_ROLES = frozenset({"shape", "image", "table", "chart"})
MAX_SLIDE_SIDE = 4096  # pixels
MAX_CATEGORIES = 16


def render_slides(
    code: str,
    *,
    timeout_s: float = 20,
    width: int | None = None,
    height: int | None = None,
    limits: SandboxLimits | None = None,
    draw: bool = True,
) -> RenderResult:
    """Run python-pptx ``code``; return its slides' picture, elements with source lines, and defects.

    ``width``/``height`` set the pixel size of one slide (default 96 pixels per inch). ``draw=False``
    skips LibreOffice: elements and defects come from the object model alone, and ``image`` is None.
    """
    started = time.perf_counter()
    deadline_started = time.monotonic()
    outcome = run_in_sandbox(
        SLIDES_ENTRY, {"code": code, "width": width, "height": height}, timeout_s=timeout_s, limits=limits
    )
    program_done = time.monotonic()
    if not outcome.ok:
        failed = RenderResult.failure(
            "slides", f"{outcome.error_kind}: {outcome.error}", error_kind=outcome.error_kind
        )
        return _finish(failed, started)
    try:
        job = _checked(outcome.value)
    except replies.InvalidReply as error:
        return _finish(
            RenderResult.failure("slides", f"invalid_reply: {error}", error_kind="invalid_reply"), started
        )
    if not job["ok"]:
        return _finish(RenderResult.failure("slides", job["error"], job["error_lines"]), started)
    slide_w, slide_h = job["slide_size"]
    count = job["slide_count"]
    elements = [_element(item, slide_h) for item in job["elements"]]
    found = []
    try:
        with clock.deadline(clock.checks_deadline(deadline_started, timeout_s)):
            for number in range(1, count + 1):
                on_slide = [e for e in elements if e.extra["slide"] == number]
                found += find_slide_defects(
                    on_slide, (0.0, (number - 1) * slide_h, slide_w, number * slide_h)
                )
    except clock.DeadlineExceeded as error:
        return _finish(RenderResult.failure("slides", f"timeout: {error}", error_kind="timeout"), started)
    image = None
    if draw:
        # The render's time used so far: the program's job as its worker timed it, then the checks.
        left_s = timeout_s - outcome.elapsed_s - (time.monotonic() - program_done)
        drawing = draw_deck_within(job["pptx"], (slide_w, slide_h), count, left_s) if left_s > 0 else None
        if drawing is None or drawing.error_kind == "timeout":
            message = f"timeout: the program and the drawing of its deck ran longer than {timeout_s:g}s"
            return _finish(RenderResult.failure("slides", message, error_kind="timeout"), started)
        image = drawing.png
    result = RenderResult(
        kind="slides",
        ok=True,
        image=image,
        width=slide_w,
        height=slide_h * count,
        elements=elements,
        defects=found[: checks.MAX_RENDER_DEFECTS],
    )
    return _finish(result, started)


def _checked(job: Any) -> dict[str, Any]:
    """The child's reply, checked field by field; InvalidReply if it breaks its schema or bounds."""
    if not replies.boolean(replies.field(job, "ok", "reply"), "reply.ok"):
        message, lines = replies.failure(job, "reply")
        return {"ok": False, "error": message, "error_lines": lines}
    size = replies.items(replies.field(job, "slide_size", "reply"), "reply.slide_size", 2)
    if len(size) != 2:
        raise replies.InvalidReply("reply.slide_size: expected [width, height]")
    slide_w, slide_h = (replies.integer(v, "reply.slide_size", 1, MAX_SLIDE_SIDE) for v in size)
    count = replies.integer(
        replies.field(job, "slide_count", "reply"), "reply.slide_count", 1, replies.MAX_SLIDES
    )
    if slide_w * slide_h * count > replies.MAX_IMAGE_PIXELS:
        raise replies.InvalidReply(
            f"reply: {count} slides of {slide_w}x{slide_h} pixels are too large a picture"
        )
    pptx = replies.field(job, "pptx", "reply")
    if not isinstance(pptx, bytes):
        raise replies.InvalidReply("reply.pptx: expected bytes")
    raw = replies.items(replies.field(job, "elements", "reply"), "reply.elements", replies.MAX_ELEMENTS)
    items = [_checked_item(item, count, f"reply.elements[{i}]") for i, item in enumerate(raw)]
    replies.check_tree([item["id"] for item in items], [item["parent"] for item in items], "reply.elements")
    return {
        "ok": True,
        "slide_size": (slide_w, slide_h),
        "slide_count": count,
        "pptx": pptx,
        "elements": items,
    }


def _checked_item(item: Any, count: int, at: str) -> dict[str, Any]:
    provenance = replies.field(item, "provenance", at)
    if not isinstance(provenance, dict) or len(provenance) > replies.MAX_LINES_PER_ELEMENT:
        raise replies.InvalidReply(f"{at}.provenance: expected at most {replies.MAX_LINES_PER_ELEMENT} lines")
    checked = {
        "id": replies.text(replies.field(item, "id", at), f"{at}.id", replies.MAX_NAME_CHARS, optional=False),
        "role": replies.text(
            replies.field(item, "role", at), f"{at}.role", replies.MAX_NAME_CHARS, optional=False
        ),
        "bbox": replies.box(replies.field(item, "bbox", at), f"{at}.bbox"),
        "slide": replies.integer(replies.field(item, "slide", at), f"{at}.slide", 1, count),
        "provenance": {
            replies.integer(line, f"{at}.provenance", 1, replies.MAX_LINE): [
                replies.text(c, f"{at}.provenance", 40, optional=False)
                for c in replies.items(made, f"{at}.provenance", MAX_CATEGORIES)
            ]
            for line, made in provenance.items()
        },
        "text": replies.text(item.get("text"), f"{at}.text"),
        "color": replies.colour(item.get("color"), f"{at}.color"),
        "background": replies.colour(item.get("background"), f"{at}.background"),
        "parent": replies.text(item.get("parent"), f"{at}.parent", replies.MAX_NAME_CHARS),
    }
    if "frame" in item:
        checked["frame"] = replies.box(item["frame"], f"{at}.frame")
    if item.get("font_px") is not None:
        checked["font_px"] = replies.number(item["font_px"], f"{at}.font_px", 10_000)
    for key in ("bold", "shrinks"):
        if key in item:
            checked[key] = replies.boolean(item[key], f"{at}.{key}")
    if "name" in item:
        checked["name"] = replies.text(item["name"], f"{at}.name", replies.MAX_NAME_CHARS)
    return checked


def _finish(result: RenderResult, started: float) -> RenderResult:
    result.elapsed_s = time.perf_counter() - started
    return result


def _element(item: dict[str, Any], slide_h: float) -> Element:
    """An element of slide n, moved down to where that slide sits in the stacked image."""
    dy = (item["slide"] - 1) * slide_h
    shift = lambda box: (box[0], box[1] + dy, box[2], box[3] + dy)
    # Plain data, as everything in a RenderResult: line -> sorted categories (a list, never a set).
    provenance = {int(line): sorted(categories) for line, categories in item["provenance"].items()}
    extra = {"slide": item["slide"], "provenance": provenance}
    for key in ("font_px", "bold", "shrinks", "name"):
        if key in item:
            extra[key] = item[key]
    if "frame" in item:
        extra["frame"] = shift(item["frame"])
    return Element(
        id=item["id"],
        role=item["role"],
        bbox=shift(item["bbox"]),
        text=item.get("text"),
        color=item.get("color"),
        background=item.get("background"),
        lines=sorted(provenance),
        parent=item.get("parent") or f"slide{item['slide']}",
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------- defects


def find_slide_defects(elements: list[Element], canvas: tuple[float, float, float, float]) -> list[Defect]:
    """The five defect kinds on one slide, each blamed on the calls of its category."""
    by_id = {element.id: element for element in elements}
    # Text in a frame that neither grows nor shrinks to fit must stay inside the frame.
    frames = {e.id: e.extra["frame"] for e in elements if e.role == "text" and not e.extra.get("shrinks")}
    found = [
        *checks.find_overlaps(elements, should_not_overlap=_should_not_overlap),
        *checks.find_clipped_text(elements, canvas),
        *checks.find_overflow(elements, canvas, containers=frames),
        *checks.find_misalignment([e for e in elements if e.role != "text"]),
        *checks.find_low_contrast(elements),
    ]
    return [_narrow_lines(defect, by_id) for defect in found]


def _should_not_overlap(a: Element, b: Element) -> bool:
    if a.role == "text" and b.role == "text":
        return True
    if a.role not in VISUAL_ROLES or b.role not in VISUAL_ROLES:
        return False
    # One shape wholly on another is layering by design (a card on a panel); a partial cover is not.
    shared = checks.intersection(a.bbox, b.bbox)
    return shared is not None and shared not in (a.bbox, b.bbox)


def _narrow_lines(defect: Defect, by_id: dict[str, Element]) -> Defect:
    categories = DEFECT_CATEGORIES[defect.kind]
    lines = {
        line
        for element_id in defect.elements
        for line, made in by_id[element_id].extra["provenance"].items()
        if categories.intersection(made)
    }
    defect.lines = sorted(lines) or defect.lines
    return defect
