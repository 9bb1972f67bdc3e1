"""The slides job, run inside the sandbox: execute python-pptx code and describe the deck it built.

``render_slides_job(payload)`` runs the program under trace.USER_FILENAME, keeps every
``Presentation`` it makes and turns ``save`` into a capture (nothing is written where the program
says), then returns plain data: the saved deck as .pptx bytes, the slide size in pixels, and the
elements of each slide (shapes, and their text laid out with real font metrics) with the user lines
that made or styled them.
"""

from __future__ import annotations

import io
from typing import Any

from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.presentation import Presentation

from vsdpo.render import replies, user_code
from vsdpo.render.slides import trace
from vsdpo.render.slides.text import layout_text_frame, resolve_color, theme_colors

PIXELS_PER_INCH = 96
EMU_PER_INCH = 914400
MAX_SLIDES = 8  # slides described and drawn; later ones are left out
MAX_SHAPES_PER_SLIDE = 400
MAX_SLIDE_SIDE = 4096  # pixels; a deck may declare any slide size, the picture may not take any


class _Capture:
    """Presentations the program created, and which of them it saved last."""

    def __init__(self) -> None:
        self.cls = Presentation
        self.created: list[Any] = []
        self.saved: list[Any] = []
        self.original_init = Presentation.__init__
        self.original_save = Presentation.save

    def install(self) -> None:
        capture = self

        def init(presentation, *args, **kwargs):
            capture.original_init(presentation, *args, **kwargs)
            capture.created.append(presentation)

        def save(presentation, file=None, *args, **kwargs):
            capture.saved.append(presentation)

        self.cls.__init__, self.cls.save = init, save

    def uninstall(self) -> None:
        self.cls.__init__, self.cls.save = self.original_init, self.original_save

    def chosen(self) -> Any:
        return (self.saved or self.created or [None])[-1]


def user_error(error: BaseException) -> tuple[str, list[int]]:
    """'Type: message (line N)' and the user-code lines of the traceback, innermost last."""
    return user_code.user_error(error, trace.USER_FILENAME)


def warm_up() -> None:
    """Wrap python-pptx and load fonts once, before a sandbox worker forks its children."""
    trace.install()
    render_slides_job(
        {
            "code": "from pptx import Presentation\nfrom pptx.util import Inches\n"
            "p = Presentation()\ns = p.slides.add_slide(p.slide_layouts[6])\n"
            "s.shapes.add_textbox(0, 0, Inches(2), Inches(1)).text = 'warm'\n"
        }
    )


def render_slides_job(payload: dict[str, Any]) -> dict[str, Any]:
    trace.install()
    trace.reset()
    capture = _Capture()
    capture.install()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        exec(compile(payload["code"], trace.USER_FILENAME, "exec"), namespace)
    except MemoryError:
        raise
    except BaseException as error:  # noqa: BLE001 - every failure of the program is reported, not raised
        if not (isinstance(error, SystemExit) and error.code in (None, 0)):
            message, lines = user_error(error)
            return {"ok": False, "error": message, "error_lines": lines}
    finally:
        capture.uninstall()
    presentation = capture.chosen()
    if presentation is None:
        return {"ok": False, "error": "the program created no Presentation", "error_lines": []}
    if len(presentation.slides) == 0:
        return {"ok": False, "error": "the presentation has no slides", "error_lines": []}
    try:
        return _describe(presentation, payload.get("width"), payload.get("height"))
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - a deck that cannot be saved or read is the program's failure
        message, lines = user_error(error)
        return {"ok": False, "error": f"reading the presentation failed: {message}", "error_lines": lines}


def _scale(slide_w: int, slide_h: int, count: int, width: int | None, height: int | None) -> float:
    """Pixels per EMU: as asked (or 96 per inch), then shrunk until every slide side is at most
    MAX_SLIDE_SIDE and all ``count`` slides together at most the caller's pixel budget (a side never
    rounds below one pixel)."""
    if slide_w <= 0 or slide_h <= 0:
        raise ValueError(f"the slide size is {slide_w}x{slide_h} EMU")
    if width:
        scale = width / slide_w
    elif height:
        scale = height / slide_h
    else:
        scale = PIXELS_PER_INCH / EMU_PER_INCH
    budget = (replies.MAX_IMAGE_PIXELS / (count * slide_w * slide_h)) ** 0.5
    return min(scale, MAX_SLIDE_SIDE / max(slide_w, slide_h), budget)


def _describe(presentation: Any, width: int | None, height: int | None) -> dict[str, Any]:
    slide_w, slide_h = int(presentation.slide_width), int(presentation.slide_height)
    slides = list(presentation.slides)[:MAX_SLIDES]
    scale = _scale(slide_w, slide_h, len(slides), width, height)
    palette = theme_colors(presentation)
    elements: list[dict[str, Any]] = []
    for number, slide in enumerate(slides, start=1):
        background = _slide_background(slide, palette)
        for shape in list(slide.shapes)[:MAX_SHAPES_PER_SLIDE]:
            elements += _shape_elements(shape, number, scale, background, palette, offset=(0, 0))
            if len(elements) >= replies.MAX_ELEMENTS:
                break
    elements = elements[: replies.MAX_ELEMENTS]
    deck = io.BytesIO()
    presentation.save(deck)  # the real save: the capture is uninstalled by now
    return {
        "ok": True,
        "pptx": deck.getvalue(),
        "slide_size": [max(1, round(slide_w * scale)), max(1, round(slide_h * scale))],
        "slide_count": len(slides),
        "total_slides": len(presentation.slides),
        "elements": elements,
    }


def _slide_background(slide: Any, palette: dict[str, str]) -> str:
    for owner in (slide, slide.slide_layout, slide.slide_layout.slide_master):
        try:
            fill = owner.background.fill
            if fill.type == 1:  # MSO_FILL.SOLID
                color = resolve_color(fill.fore_color, palette)
                if color:
                    return color
        except Exception:  # noqa: BLE001 - a background python-pptx cannot read: try the next owner
            continue
    return palette.get("lt1", "#ffffff")


def _role(shape: Any) -> str:
    kind = shape.shape_type
    if kind == MSO_SHAPE_TYPE.PICTURE:
        return "image"
    if kind == MSO_SHAPE_TYPE.TABLE or getattr(shape, "has_table", False):
        return "table"
    if getattr(shape, "has_chart", False):
        return "chart"
    if kind == MSO_SHAPE_TYPE.GROUP:
        return "group"
    if kind == MSO_SHAPE_TYPE.LINE or shape._element.tag.endswith("}cxnSp"):
        return "line"
    return "shape"


def _fill_color(shape: Any, palette: dict[str, str]) -> str | None:
    """The shape's solid fill, its theme style's fill where it sets none, None when unfilled."""
    try:
        fill = shape.fill
    except Exception:  # noqa: BLE001 - shapes without a fill (pictures, frames)
        return None
    if fill.type == 1:
        return resolve_color(fill.fore_color, palette)
    if fill.type is None:
        refs = shape._element.xpath("./p:style/a:fillRef[@idx!='0']/a:schemeClr/@val")
        if refs:
            return palette.get(refs[0])
    return None


def _shape_elements(
    shape: Any,
    slide: int,
    scale: float,
    background: str,
    palette: dict[str, str],
    offset: tuple[float, float],
) -> list[dict[str, Any]]:
    if shape.left is None or shape.width is None:
        return []  # a placeholder that inherits its box draws only when it has text: skipped
    x0 = offset[0] + shape.left * scale
    y0 = offset[1] + shape.top * scale
    box = [x0, y0, x0 + shape.width * scale, y0 + shape.height * scale]
    role = _role(shape)
    provenance = {line: sorted(categories) for line, categories in trace.lines_of(shape).items()}
    fill = _fill_color(shape, palette) if role == "shape" else None
    has_text = bool(getattr(shape, "has_text_frame", False) and shape.text_frame.text.strip())
    if role == "shape" and fill is None and not shape.line.fill.type:
        role = "textbox"  # unfilled, unlined: only its text shows
    shape_id = f"s{slide}-{shape.shape_id}"
    element = {
        "id": shape_id,
        "role": role,
        "bbox": box,
        "background": fill,
        "slide": slide,
        "name": shape.name,
        "provenance": provenance,
    }
    elements = [element]
    if role == "group":
        # python-pptx keeps a group's child space equal to the slide's, so children need no transform.
        for child in shape.shapes:
            elements += _shape_elements(child, slide, scale, background, palette, offset=offset)
        return elements
    if has_text:
        text = layout_text_frame(
            shape, box, scale, palette, default_color=_default_text_color(shape, palette)
        )
        box[:] = text["frame"]  # a shape that grows to fit its text, as drawn
        elements.append(
            {
                "id": f"{shape_id}-text",
                "role": "text",
                "bbox": text["bbox"],
                "text": shape.text_frame.text,
                "color": text["color"],
                "background": fill or background,
                "slide": slide,
                "parent": shape_id,
                "font_px": text["font_px"],
                "bold": text["bold"],
                "frame": box,
                "shrinks": text["shrinks"],
                "provenance": provenance,
            }
        )
    return elements


def _default_text_color(shape: Any, palette: dict[str, str]) -> str:
    refs = shape._element.xpath("./p:style/a:fontRef/a:schemeClr/@val")
    return palette.get(refs[0], "#000000") if refs else palette.get("dk1", "#000000")
