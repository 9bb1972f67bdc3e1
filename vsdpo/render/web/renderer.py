"""Web renderer: an HTML document in headless Chromium, its visible elements, and their visual defects.

The page is written into a fresh temporary directory (with the files of ``assets_dir`` linked beside
it, so relative paths such as ``rick.jpg`` resolve) and loaded from there. Every request other than
``data:``/``blob:`` and files inside that directory is aborted. Without ``height`` the canvas is the
full page, ``width`` (1280) wide; with it, a fixed canvas (an HTML slide) whose edges clip and bound
the content. Provenance: each element's start-tag line, and the lines of the CSS declarations that set
the properties a defect is about (see ``DEFECT_PROPERTIES``).

The extraction runs in a JavaScript world of its own (vsdpo.render.web.browser.evaluate_isolated),
so page scripts cannot change what it measures; what it returns is still checked field by field
(``_checked_page``) and the checks run under the render's deadline.

What is measured is what the picture shows. Once loaded (its fonts ready and two animation frames
drawn, so that what it starts on load in a frame callback has run), the page is frozen
(``freeze_page``: its scripts switched off, its animations at their end) and photographed; only then
is it measured, so that no animation, timer or listener of the page can draw one thing and report
another. The extraction reaches into shadow roots (closed ones too) and same-origin frames; what it
cannot read (a painted canvas, a frame of another origin) and what it leaves out (elements past its
cap) are reported as defects of their own, never passed over as clean.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from vsdpo.render import deadline as clock
from vsdpo.render import defects as checks
from vsdpo.render import replies
from vsdpo.render.types import Defect, Element, RenderResult
from vsdpo.render.web.browser import (
    CLOSED_ROOTS_GLOBAL,
    MAX_CLOSED_SHADOW_ROOTS,
    BrowserRefused,
    canvas_height,
    evaluate_isolated,
    freeze_page,
    page_screenshot,
    run_local_page,
)
from vsdpo.render.web.source import LINE_ATTR, CssRule, declaration_line, normalise_selector, tag_source_lines

WEB_WIDTH = 1280
MAX_ELEMENTS = 3000
# Computed properties whose declarations a defect of each kind is blamed on.
DEFECT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "overlap": ("position", "top", "left", "right", "bottom", "margin-top", "margin-left", "margin-bottom",
                "transform", "float", "line-height", "height"),
    "clipped_text": ("overflow-x", "overflow-y", "height", "max-height", "width", "max-width", "white-space",
                     "text-overflow", "font-size", "line-height"),
    "overflow": ("width", "min-width", "height", "min-height", "left", "right", "margin-left", "margin-right",
                 "position", "transform", "white-space", "font-size", "letter-spacing", "padding-left"),
    "misalignment": ("margin-left", "margin-right", "margin-top", "padding-left", "left", "top", "text-align",
                     "transform", "position", "width"),
    "low_contrast": ("color", "background-color", "background-image", "opacity"),
}  # fmt: skip
TRACKED_PROPERTIES = sorted({prop for props in DEFECT_PROPERTIES.values() for prop in props})
# Text boxes of two elements must share this much of the smaller one to count as text on text:
# glyph boxes of tightly set neighbouring lines touch without the letters colliding.
TEXT_OVERLAP_FRAC = 0.2
# Text running out of the bottom of its box is an overflow past this share of its font size: glyphs
# of tightly set lines hang below their box by less.
SPILL_LINE_FRAC = 0.5
BLOCK_DISPLAYS = frozenset({"block", "flex", "grid", "list-item", "table", "flow-root"})
# Evaluated in the page; shipped beside this module as package data.
_EXTRACT_JS = Path(__file__).with_name("extract.js").read_text()
# The document's size, which the full-page screenshot covers.
_PAGE_SIZE_JS = """() => {
  const doc = document.documentElement, body = document.body;
  return [Math.max(doc.scrollWidth, body ? body.scrollWidth : 0), Math.max(doc.scrollHeight, body ? body.scrollHeight : 0)];
}"""
# Severity of drawn content that no check can see (a painted canvas, the part of a page past the
# element cap): the most a defect weighs, for whatever it hides is unknown and may be worse.
UNCHECKED_SEVERITY = 1.0
# Tags whose drawing no element describes (see extract.js): canvases, frames of another origin, plugins.
SURFACE_TAGS = frozenset({"canvas", "iframe", "frame", "object", "embed"})


def render_web(
    code: str,
    *,
    timeout_s: float = 20,
    width: int | None = None,
    height: int | None = None,
    assets_dir: str | os.PathLike | None = None,
) -> RenderResult:
    """Render the HTML document ``code``; list its visible elements and their visual defects."""
    started = time.perf_counter()
    deadline_started = time.monotonic()
    if not isinstance(code, str):
        raise TypeError(f"code: expected str, got {type(code).__name__}")
    width = int(width or WEB_WIDTH)
    if width <= 0 or (height is not None and height <= 0):
        raise ValueError(f"width, height: expected positive pixel sizes, got {width}, {height}")
    try:
        with clock.deadline(deadline_started + timeout_s):
            tagged = tag_source_lines(code)
    except clock.DeadlineExceeded:
        return _failed(
            f"timeout: tagging the page's source lines took longer than {timeout_s:g}s", started, "timeout"
        )
    # The page gets what is left of the render's time.
    page_timeout_s = deadline_started + timeout_s - time.monotonic()
    if page_timeout_s <= 0:
        return _failed(
            f"timeout: the page did not finish rendering within {timeout_s:g}s", started, "timeout"
        )

    async def extract(page: Any) -> dict[str, Any]:
        # One state for the picture and its description: the page is frozen (no page script runs
        # again, animations at their end), photographed, and only then measured.
        frozen = await freeze_page(page)
        size = replies.items(await evaluate_isolated(page, _PAGE_SIZE_JS, None), "page size", 2)
        if len(size) != 2:
            raise replies.InvalidReply("page size: expected [width, height]")
        document_height = replies.number(size[1], "page size")
        # Full page: the document's height (capped); the viewport is left alone so `vh` keeps its meaning.
        image = await page_screenshot(page, width, height, document_height)
        data = await evaluate_isolated(
            page,
            _EXTRACT_JS,
            {
                "lineAttr": LINE_ATTR,
                "trackedProperties": TRACKED_PROPERTIES,
                "maxElements": MAX_ELEMENTS,
                "maxRules": replies.MAX_RULES,
                "closedRoots": CLOSED_ROOTS_GLOBAL,
            },
        )
        data = _checked_page(data)
        data["image"] = image
        data["unreached_roots"] = frozen["unreached_roots"]
        data["canvas"] = (0.0, 0.0, float(width), float(canvas_height(height, document_height)))
        return data

    try:
        page = run_local_page(
            tagged.html, extract, width=width, height=height, timeout_s=page_timeout_s, assets_dir=assets_dir
        )
    except NotADirectoryError:  # the caller's mistake, not the page's
        raise
    except TimeoutError as error:
        return _failed(f"TimeoutError: {error}", started, "timeout")
    except replies.InvalidReply as error:
        return _failed(f"invalid_reply: {error}", started, "invalid_reply")
    except BrowserRefused as error:
        return _failed(f"sandbox: {error}", started, "sandbox")
    except Exception as error:  # the browser crashed or could not start; the next render relaunches it
        return _failed(f"{type(error).__name__}: {error}", started, "browser")
    try:
        replies.png_size(page["image"], "screenshot")
        with clock.deadline(clock.checks_deadline(deadline_started, timeout_s)):
            elements, canvas, context = _elements_from_page(page, tagged.style_rules, width, height)
            found = find_web_defects(elements, canvas, context)
    except replies.InvalidReply as error:
        return _failed(f"invalid_reply: {error}", started, "invalid_reply")
    except clock.DeadlineExceeded as error:
        return _failed(f"timeout: {error}", started, "timeout")
    result = RenderResult(
        kind="web",
        ok=True,
        image=page["image"],
        width=int(canvas[2]),
        height=int(canvas[3]),
        elements=elements,
        defects=found[: checks.MAX_RENDER_DEFECTS],
    )
    result.elapsed_s = time.perf_counter() - started
    return result


def _failed(message: str, started: float, error_kind: str) -> RenderResult:
    result = RenderResult.failure("web", message, error_kind=error_kind)
    result.elapsed_s = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------------------------------- checks


def _checked_page(data: Any) -> dict[str, Any]:
    """The extraction's result, checked field by field before any of it is used."""
    rules = replies.items(replies.field(data, "rules", "page"), "page.rules", replies.MAX_RULES)
    sheets = replies.items(replies.field(data, "sheets", "page"), "page.sheets", replies.MAX_RULES)
    raw = replies.items(replies.field(data, "elements", "page"), "page.elements", MAX_ELEMENTS)
    size = replies.items(replies.field(data, "page", "page"), "page.page", 2)
    if len(size) != 2:
        raise replies.InvalidReply("page.page: expected [width, height]")
    checked_sheets = [
        {"line": _line(replies.field(sheet, "line", f"page.sheets[{i}]"), f"page.sheets[{i}]")}
        for i, sheet in enumerate(sheets)
    ]
    checked_rules = []
    for i, rule in enumerate(rules):
        at = f"page.rules[{i}]"
        checked_rules.append(
            {
                "sheet": replies.integer(replies.field(rule, "sheet", at), at, 0, len(sheets) - 1),
                "index": replies.integer(replies.field(rule, "index", at), at, 0, 1 << 30),
                "selector": replies.text(replies.field(rule, "selector", at), at, optional=False),
            }
        )
    elements = [_checked_item(item, i, len(rules), f"page.elements[{i}]") for i, item in enumerate(raw)]
    for i, item in enumerate(elements):
        for key in ("parent", "bg_from"):
            if item[key] is not None and not 0 <= item[key] < len(elements):
                raise replies.InvalidReply(f"page.elements[{i}].{key}: no element {item[key]}")
    replies.check_tree(
        [str(i) for i in range(len(elements))],
        [str(item["parent"]) if item["parent"] is not None else None for item in elements],
        "page.elements",
    )
    return {
        "elements": elements,
        "rules": checked_rules,
        "sheets": checked_sheets,
        "page": [replies.number(v, "page.page") for v in size],
        "truncated": replies.boolean(data.get("truncated", False), "page.truncated"),
        "left_out_line": _line(data.get("left_out_line"), "page.left_out_line"),
    }


def _line(value: Any, where: str) -> int | None:
    return None if value is None or value == 0 else replies.integer(value, where, 1, replies.MAX_LINE)


def _checked_item(item: Any, index: int, rule_count: int, at: str) -> dict[str, Any]:
    css = replies.field(item, "css", at)
    if not isinstance(css, dict) or len(css) > len(TRACKED_PROPERTIES):
        raise replies.InvalidReply(f"{at}.css: expected a dict of tracked properties")
    text_box = item.get("text_box")
    rects = item.get("text_rects") or []
    parent, bg_from = item.get("parent"), item.get("bg_from")
    font_px = item.get("font_px")
    return {
        "tag": replies.text(replies.field(item, "tag", at), f"{at}.tag", 64, optional=False),
        "line": _line(item.get("line"), f"{at}.line"),
        "role": replies.text(replies.field(item, "role", at), f"{at}.role", 64, optional=False),
        "box": replies.box(replies.field(item, "box", at), f"{at}.box"),
        "text_box": None if text_box is None else replies.box(text_box, f"{at}.text_box"),
        "text_rects": [
            replies.box(r, f"{at}.text_rects") for r in replies.items(rects, f"{at}.text_rects", 64)
        ],
        "text": replies.text(item.get("text"), f"{at}.text"),
        # A colour the page's CSS made unreadable (NaN channels) gets no contrast verdict.
        "color": replies.colour(item.get("color"), f"{at}.color", strict=False),
        "background": replies.colour(item.get("background"), f"{at}.background", strict=False),
        "background_image": bool(item.get("background_image")),
        "bg_from": None if bg_from is None else replies.integer(bg_from, f"{at}.bg_from", 0, MAX_ELEMENTS),
        "font_px": None if font_px is None else replies.number(font_px, f"{at}.font_px", 1e5),
        "bold": bool(item.get("bold")),
        "parent": None if parent is None else replies.integer(parent, f"{at}.parent", 0, index - 1),
        "overflow": tuple(
            replies.text(v, f"{at}.overflow", 32, optional=False) for v in _pair(item, "overflow", at)
        ),
        "position": replies.text(item.get("position") or "static", f"{at}.position", 32),
        "display": replies.text(item.get("display") or "inline", f"{at}.display", 64),
        "float": replies.text(item.get("float") or "none", f"{at}.float", 32),
        "scroll": tuple(replies.number(v, f"{at}.scroll") for v in _scroll(item, at)),
        "surface": bool(item.get("surface")),
        "painted": _painted(item.get("painted"), f"{at}.painted"),
        "content_box": None
        if item.get("content_box") is None
        else replies.box(item["content_box"], f"{at}.content_box"),
        "css": {
            replies.text(prop, f"{at}.css", 64, optional=False): [
                replies.integer(ref, f"{at}.css", -1, rule_count - 1)
                for ref in replies.items(refs, f"{at}.css", 256)
            ]
            for prop, refs in css.items()
        },
    }


def _painted(value: Any, where: str) -> bool | None:
    """A surface's painted pixels: True, False, or None where the page could not tell."""
    return None if value is None else replies.boolean(value, where)


def _pair(item: dict, key: str, at: str) -> list:
    value = replies.items(replies.field(item, key, at), f"{at}.{key}", 2)
    if len(value) != 2:
        raise replies.InvalidReply(f"{at}.{key}: expected two values")
    return list(value)


def _scroll(item: dict, at: str) -> list:
    value = replies.items(replies.field(item, "scroll", at), f"{at}.scroll", 4)
    if len(value) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in value):
        raise replies.InvalidReply(f"{at}.scroll: expected four numbers")
    return list(value)


# ---------------------------------------------------------------------------------------------- elements


def _elements_from_page(
    page: dict[str, Any], style_rules: dict[int, list[CssRule]], width: int, height: int | None
) -> tuple[list[Element], tuple[float, float, float, float], dict[str, Any]]:
    resolve = _CssLineResolver(page["rules"], page["sheets"], style_rules)
    raw = page["elements"]
    ids = [f"{item['tag']}-{i}" for i, item in enumerate(raw)]
    elements = []
    for i, item in enumerate(raw):
        start_line = item["line"]
        css_lines = {
            prop: sorted({start_line if ref < 0 else resolve(ref, prop) for ref in refs} - {None})
            for prop, refs in item["css"].items()
        }
        lines = {start_line} if start_line else set()
        lines.update(line for props in css_lines.values() for line in props)
        box = tuple(float(v) for v in item["box"])
        bbox = tuple(float(v) for v in item["text_box"]) if item["text_box"] else box
        elements.append(
            Element(
                id=ids[i],
                role=item["role"],
                bbox=bbox,
                text=item["text"],
                color=item["color"] if item["role"] in ("text", "control") else None,
                # Over a background image the colour behind the text is unknown: no contrast verdict.
                background=None if item["background_image"] else item["background"],
                lines=sorted(line for line in lines if line),
                parent=ids[item["parent"]] if item["parent"] is not None else None,
                extra={
                    "tag": item["tag"],
                    "line": start_line,
                    "box": box,
                    "rects": [tuple(r) for r in item.get("text_rects") or []],
                    "font_px": item["font_px"],
                    "bold": item["bold"],
                    "display": item["display"],
                    "position": item["position"],
                    "float": item["float"],
                    "overflow": tuple(item["overflow"]),
                    "scroll": tuple(item["scroll"]),
                    "background_from": ids[item["bg_from"]] if item["bg_from"] is not None else None,
                    "css_lines": css_lines,
                },
            )
        )
        if item["surface"] and item["tag"] in SURFACE_TAGS:
            painted = item["painted"]
            if painted is None:
                painted = _painted_in_picture(page["image"], item["content_box"] or box)
            elements[-1].extra["painted"] = painted
    if page["truncated"] and elements:
        elements[0].extra["extraction_truncated"] = True
    canvas = tuple(page["canvas"])
    context = {
        "page_width": page["page"][0],
        "fixed": height is not None,
        "truncated": page["truncated"],
        "left_out_line": page["left_out_line"],
        "unreached_roots": int(page.get("unreached_roots") or 0),
    }
    return elements, canvas, context


def _painted_in_picture(image: bytes, box: tuple) -> bool:
    """Whether the screenshot shows more than one colour inside ``box``: a surface the page cannot
    read back (a WebGL canvas, a frame of another origin) is judged by what it put on the picture."""
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(image)) as picture:
        x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
        x1, y1 = min(picture.width, math.ceil(box[2])), min(picture.height, math.ceil(box[3]))
        if x1 <= x0 or y1 <= y0:
            return False
        return picture.convert("RGB").crop((x0, y0, x1, y1)).getcolors(maxcolors=1) is None


class _CssLineResolver:
    """Map a CSSOM rule reference to the source line of the declaration that set a property."""

    def __init__(self, rules: list[dict], sheets: list[dict], style_rules: dict[int, list[CssRule]]):
        self.rules, self.sheets, self.style_rules = rules, sheets, style_rules

    def __call__(self, ref: int, prop: str) -> int | None:
        rule = self.rules[ref]
        parsed = self.style_rules.get(self.sheets[rule["sheet"]]["line"])
        if not parsed:
            return None  # an external or script-made stylesheet: no source lines
        wanted = normalise_selector(rule["selector"])
        candidates = [parsed[rule["index"]]] if rule["index"] < len(parsed) else []
        candidates += [r for r in parsed if normalise_selector(r.selector) == wanted]
        for candidate in candidates:
            if normalise_selector(candidate.selector) == wanted:
                return declaration_line(candidate, prop)
        return None


# ---------------------------------------------------------------------------------------------- defects


def find_web_defects(
    elements: list[Element], canvas: tuple[float, float, float, float], context: dict[str, Any]
) -> list[Defect]:
    """The five defect kinds on a page's elements, with lines narrowed to the responsible declarations."""
    by_id = {element.id: element for element in elements}
    # Text moved wholly off the left or top edge (text-indent: -9999px) is hidden on purpose.
    placed = [e for e in elements if not (e.bbox[2] <= canvas[0] or e.bbox[3] <= canvas[1])]
    found = [
        *_painted_surfaces(elements),
        *checks.find_overlaps(elements, should_not_overlap=_should_not_overlap(by_id)),
        *checks.find_clipped_text(placed, canvas, clip_boxes=_clip_boxes(placed, by_id)),
        *_find_overflow(placed, canvas, by_id),
        *checks.find_misalignment(_block_boxes(elements)),
        *checks.find_low_contrast(elements),
    ]
    # First, so that the render's bound on defects never cuts them: the rest is incomplete without them.
    return _unchecked_parts(elements, context) + [_narrow_lines(defect, by_id) for defect in found]


def _painted_surfaces(elements: list[Element]) -> list[Defect]:
    """Surfaces that paint what no element describes: text drawn on a canvas could overlap, be cut or
    be unreadable, and no check would see it. A page is never clean for drawing its content there."""
    return [
        Defect(
            kind="overlap",
            severity=UNCHECKED_SEVERITY,
            elements=[element.id],
            lines=list(element.lines),
            message=f"{element.extra['tag']} {element.id} paints content that no check can see "
            "(text drawn there is not an element): draw text and shapes as HTML elements",
        )
        for element in elements
        if element.extra.get("painted")
    ]


def _unchecked_parts(elements: list[Element], context: dict[str, Any]) -> list[Defect]:
    """What the extraction left out, said as a defect rather than passed over as clean: the elements
    past its cap, and closed shadow roots past the number it reaches."""
    found = []
    first = elements[0] if elements else None
    if context.get("truncated"):
        left_out = context.get("left_out_line")
        where = f" from line {left_out} on" if left_out else ""
        found.append(
            Defect(
                kind="overflow",
                severity=UNCHECKED_SEVERITY,
                elements=[first.id] if first else [],
                lines=[left_out] if left_out else (list(first.lines) if first else []),
                message=f"the page draws more than {MAX_ELEMENTS} elements: the checks stop there, "
                f"and what it draws{where} is unchecked",
            )
        )
    if context.get("unreached_roots"):
        found.append(
            Defect(
                kind="overflow",
                severity=UNCHECKED_SEVERITY,
                elements=[first.id] if first else [],
                lines=list(first.lines) if first else [],
                message=f"{context['unreached_roots']} closed shadow roots past the first "
                f"{MAX_CLOSED_SHADOW_ROOTS}: what they draw is unchecked",
            )
        )
    return found


def _should_not_overlap(by_id: dict[str, Element]):
    def rule(a: Element, b: Element) -> bool:
        if a.role == "text" and b.role == "text":
            return _text_rects_overlap(a, b)
        # A painted canvas over or under a text: one of them hides the other, or the canvas's own
        # drawing (which no check reads) runs into it.
        if (a.extra.get("painted") and b.role == "text") or (b.extra.get("painted") and a.role == "text"):
            return True
        if a.parent != b.parent or "text" in (a.role, b.role):
            return False
        # Siblings in normal flow never overlap unless a margin, offset or fixed size pushes them.
        return _in_flow(a) and _in_flow(b)

    return rule


def _text_rects_overlap(a: Element, b: Element) -> bool:
    for ra in a.extra["rects"] or [a.bbox]:
        for rb in b.extra["rects"] or [b.bbox]:
            shared = checks.intersection(ra, rb)
            if shared and checks.area(shared) >= TEXT_OVERLAP_FRAC * min(checks.area(ra), checks.area(rb)):
                return True
    return False


def _clips(element: Element) -> bool:
    """An overflow-hidden box whose content is larger than it: it cuts something off."""
    if not set(element.extra["overflow"]) & {"hidden", "clip"}:
        return False
    scroll_w, scroll_h, client_w, client_h = element.extra["scroll"]
    return scroll_w > client_w + 1 or scroll_h > client_h + 1


def _clip_boxes(elements: list[Element], by_id: dict[str, Element]) -> dict[str, tuple]:
    boxes = {}
    for element in elements:
        if element.role != "text":
            continue
        chain = [element] + [by_id[a] for a in _ancestor_ids(element, by_id)]
        clipping = [e for e in chain if _clips(e)]
        if not clipping:
            continue
        box = clipping[0].extra["box"]
        for other in clipping[1:]:
            box = checks.intersection(box, other.extra["box"]) or (box[0], box[1], box[0], box[1])
        boxes[element.id] = box
        element.extra["clipped_by"] = [e.id for e in clipping]
    return boxes


def _find_overflow(elements: list[Element], canvas: tuple, by_id: dict[str, Element]) -> list[Defect]:
    """Border boxes past the canvas (the outermost such element only), then spills out of containers."""
    # The body grows with its content: the content past the edge is to blame, not the body.
    boxes = [replace(e, bbox=e.extra["box"]) for e in elements if e.extra["tag"] != "body"]
    past_canvas = checks.find_overflow(boxes, canvas)
    reported = {defect.elements[0] for defect in past_canvas}
    past_canvas = [d for d in past_canvas if not reported & set(_ancestor_ids(by_id[d.elements[0]], by_id))]
    unbounded = (-1e9, -1e9, 1e9, 1e9)
    spills = checks.find_overflow(elements, unbounded, containers=_containers(elements, by_id))
    return past_canvas + [d for d in spills if d.elements[0] not in reported]


def _containers(elements: list[Element], by_id: dict[str, Element]) -> dict[str, tuple]:
    """Text against its own box (it spills out of it); in-flow blocks against their parent's box."""
    containers = {}
    for element in elements:
        if element.role == "text":
            # A box that clips or scrolls along x (a code block set to scroll) keeps its own text in.
            if "clipped_by" not in element.extra and element.extra["overflow"][0] == "visible":
                # Glyphs may rise above a tight line box: a spill upwards is no overflow. Downwards
                # it is one when the box is too short for its own lines as laid out (its content is
                # taller than it, and it lets it show): text running out of a box of fixed height.
                x0, y0, x1, y1 = element.extra["box"]
                containers[element.id] = (
                    x0,
                    min(element.bbox[1], y0),
                    x1,
                    y1 if _spills_down(element) else max(element.bbox[3], y1),
                )
            continue
        parent = by_id.get(element.parent) if element.parent else None
        if parent is None or parent.extra["tag"] == "body" or not _in_flow(element):
            continue
        if parent.extra["display"] in BLOCK_DISPLAYS and "visible" in parent.extra["overflow"]:
            containers[element.id] = parent.extra["box"]
    return containers


def _spills_down(element: Element) -> bool:
    """A box whose content reaches more than half a line of its text below its own bottom, shown
    past it (overflow-y visible): its lines run out of it, over whatever follows. The browser counts
    the glyphs of lines set tighter than their font (line-height 1 or less) in the content's height;
    they hang a few pixels below the box, less than half a line, and are no overflow."""
    _, scroll_h, _, client_h = element.extra["scroll"]
    font_px = element.extra["font_px"] or 16.0
    spill = scroll_h - client_h
    return element.extra["overflow"][1] == "visible" and client_h > 0 and spill > SPILL_LINE_FRAC * font_px


def _block_boxes(elements: list[Element]) -> list[Element]:
    """Block-level boxes only: inline runs of text share a baseline, not an edge."""
    return [
        replace(element, bbox=element.extra["box"], role="block")
        for element in elements
        if element.extra["display"] in BLOCK_DISPLAYS and _in_flow(element)
    ]


def _in_flow(element: Element) -> bool:
    """Laid out in normal flow: not positioned out of it, not floated."""
    return element.extra["position"] in ("static", "relative") and element.extra["float"] == "none"


def _ancestor_ids(element: Element, by_id: dict[str, Element]) -> list[str]:
    chain, parent = [], element.parent
    while parent is not None and parent in by_id:
        chain.append(parent)
        parent = by_id[parent].parent
    return chain


def _narrow_lines(defect: Defect, by_id: dict[str, Element]) -> Defect:
    """Blame the start tags of the elements concerned and the declarations of the defect's properties."""
    props = DEFECT_PROPERTIES[defect.kind]
    concerned = [by_id[i] for i in defect.elements if i in by_id]
    if defect.kind == "clipped_text":
        concerned += [by_id[c] for e in list(concerned) for c in e.extra.get("clipped_by", [])]
    if defect.kind == "low_contrast":
        concerned += [
            by_id[e.extra["background_from"]] for e in list(concerned) if e.extra["background_from"]
        ]
    lines = set()
    for element in concerned:
        if element.extra["line"]:
            lines.add(element.extra["line"])
        for prop in props:
            lines.update(element.extra["css_lines"].get(prop, ()))
    return replace(defect, lines=sorted(lines) or defect.lines)
