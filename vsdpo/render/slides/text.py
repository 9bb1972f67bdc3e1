"""Text of a slide shape laid out with real font metrics, and the theme colours of a deck.

The text frame's paragraphs are word-wrapped at the frame's inner width (unless wrapping is off) with
PIL's FreeType metrics of the font named (or a metric-compatible substitute, else DejaVu Sans), one
line 1.2 font sizes tall, the PowerPoint default for single spacing. The result is the box the text
occupies in slide pixels, which the renderer compares with the frame and the slide.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any

from PIL import ImageFont
from pptx.enum.text import MSO_AUTO_SIZE, MSO_VERTICAL_ANCHOR, PP_ALIGN
from pptx.oxml.ns import qn

EMU_PER_PT = 12700
DEFAULT_FONT_PT = 18.0  # the default master's body size
LINE_HEIGHT = 1.2
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"))
# Office fonts -> metric-compatible free fonts, as LibreOffice substitutes them.
SUBSTITUTES = {
    "calibri": ("carlito",),
    "cambria": ("caladea",),
    "arial": ("liberationsans",),
    "helvetica": ("liberationsans",),
    "times new roman": ("liberationserif",),
    "times": ("liberationserif",),
    "courier new": ("liberationmono",),
    "courier": ("liberationmono",),
}
_THEME_NAMES = {
    "ACCENT_1": "accent1",
    "ACCENT_2": "accent2",
    "ACCENT_3": "accent3",
    "ACCENT_4": "accent4",
    "ACCENT_5": "accent5",
    "ACCENT_6": "accent6",
    "DARK_1": "dk1",
    "LIGHT_1": "lt1",
    "DARK_2": "dk2",
    "LIGHT_2": "lt2",
    "TEXT_1": "dk1",
    "BACKGROUND_1": "lt1",
    "TEXT_2": "dk2",
    "BACKGROUND_2": "lt2",
    "HYPERLINK": "hlink",
    "FOLLOWED_HYPERLINK": "folHlink",
}
_SCHEME_ALIASES = {"tx1": "dk1", "bg1": "lt1", "tx2": "dk2", "bg2": "lt2"}
THEME_RELATIONSHIP = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/theme"


# ---------------------------------------------------------------------------------------------- colours


def theme_colors(presentation: Any) -> dict[str, str]:
    """Scheme colour name -> '#rrggbb' from the first master's theme (Office defaults where unreadable)."""
    palette = {"dk1": "#000000", "lt1": "#ffffff", "dk2": "#1f497d", "lt2": "#eeece1", "accent1": "#4f81bd"}
    try:
        blob = presentation.slide_masters[0].part.part_related_by(THEME_RELATIONSHIP).blob.decode("utf-8")
    except Exception:  # noqa: BLE001 - a deck without a readable theme keeps the defaults
        return palette
    scheme = re.search(r"<a:clrScheme.*?</a:clrScheme>", blob, re.S)
    for name, body in re.findall(r"<a:(\w+)>(.*?)</a:\1>", scheme.group(0) if scheme else "", re.S):
        value = re.search(r'(?:srgbClr val|lastClr)="([0-9A-Fa-f]{6})"', body)
        if value:
            palette[name] = "#" + value.group(1).lower()
    return palette


def resolve_color(color_format: Any, palette: dict[str, str]) -> str | None:
    """'#rrggbb' of a python-pptx ColorFormat (RGB or theme colour), None where none is set."""
    try:
        if color_format.type is None:
            return None
        if color_format.type == 1:  # MSO_COLOR_TYPE.RGB
            return "#" + str(color_format.rgb).lower()
        name = _THEME_NAMES.get(getattr(color_format.theme_color, "name", ""), "")
        return palette.get(_SCHEME_ALIASES.get(name, name))
    except Exception:  # noqa: BLE001 - preset and system colours python-pptx cannot read
        return None


# ---------------------------------------------------------------------------------------------- fonts


@functools.lru_cache(maxsize=1)
def _font_files() -> dict[str, str]:
    """Normalised font file stem ('liberationsans-bold') -> path."""
    files = {}
    for directory in FONT_DIRS:
        root = Path(directory)
        if root.is_dir():
            for path in sorted(root.rglob("*.[ot]tf")):
                files.setdefault(path.stem.lower().replace(" ", ""), str(path))
    return files


@functools.lru_cache(maxsize=256)
def font_for(name: str | None, px: float, bold: bool, italic: bool) -> ImageFont.FreeTypeFont:
    """The font ``name`` at ``px`` pixels, a substitute for it, or DejaVu Sans."""
    files = _font_files()
    style = {
        (False, False): ("regular", ""),
        (True, False): ("bold",),
        (False, True): ("italic", "oblique"),
        (True, True): ("bolditalic", "boldoblique"),
    }[(bold, italic)]
    family = (name or "calibri").lower()
    for stem in (family.replace(" ", ""), *SUBSTITUTES.get(family, ()), "dejavusans"):
        for suffix in style:
            path = files.get(f"{stem}-{suffix}" if suffix else stem)
            if path:
                return ImageFont.truetype(path, max(1.0, px))
    return ImageFont.load_default(size=max(1.0, px))


# ---------------------------------------------------------------------------------------------- sizes

# The master's text style a placeholder of each type takes its sizes from; other shapes take the deck's
# default (18 pt in python-pptx's template, as in PowerPoint's).
_TITLE_TYPES = frozenset({"TITLE", "CENTER_TITLE", "VERTICAL_TITLE"})
_BODY_TYPES = frozenset({"BODY", "OBJECT", "SUBTITLE", "VERTICAL_BODY", "VERTICAL_OBJECT", "TABLE", "CHART"})


def _level_props(styles: Any, level: int) -> Any:
    """Level ``level``'s paragraph properties (``a:lvlNpPr``) in a list or text style, or None."""
    return styles.find(qn(f"a:lvl{level + 1}pPr")) if styles is not None else None


def _level_pt(styles: Any, level: int) -> float | None:
    """The ``sz`` of level ``level``'s default run properties in a list or text style, in points."""
    props = _level_props(styles, level)
    run = props.find(qn("a:defRPr")) if props is not None else None
    size = run.get("sz") if run is not None else None
    return int(size) / 100 if size and size.isdigit() else None


def _level_attr(name: str) -> Any:
    """A reader of attribute ``name`` of level ``level``'s paragraph properties in a list or text style."""

    def read(styles: Any, level: int) -> str | None:
        props = _level_props(styles, level)
        return props.get(name) if props is not None else None

    return read


def _space_before(properties: Any) -> tuple[str, float] | None:
    """A paragraph's space before it, from its paragraph properties: ('pt', points) or ('pct', a
    fraction of its font size)."""
    found = properties.find(qn("a:spcBef")) if properties is not None else None
    if found is None:
        return None
    points, percent = found.find(qn("a:spcPts")), found.find(qn("a:spcPct"))
    chosen = points if points is not None else percent
    value = chosen.get("val") if chosen is not None else None
    if value is None or not value.lstrip("-").isdigit():
        return None
    return ("pt", int(value) / 100) if points is not None else ("pct", int(value) / 100_000)


def _level_space_before(styles: Any, level: int) -> tuple[str, float] | None:
    return _space_before(_level_props(styles, level))


def _chain(shape: Any) -> list[Any]:
    """The shape's text bodies (``p:txBody``) down its placeholder chain: its own, then the layout's
    placeholder's and the master's, which hold what it does not set itself."""
    bodies, node = [], shape
    try:
        while node is not None:
            body = node._element.find(qn("p:txBody"))
            if body is not None:
                bodies.append(body)
            node = (
                getattr(node, "_base_placeholder", None) if getattr(node, "is_placeholder", False) else None
            )
    except Exception:  # noqa: BLE001 - a chain python-pptx cannot walk ends where it breaks
        pass
    return bodies


def _text_styles(shape: Any, chain: list[Any]) -> list[Any]:
    """The styles a placeholder's text inherits from, nearest first: the list styles down its
    ``chain`` (the slide's shape, the layout's placeholder, the master's), then the master's title,
    body or other text style for its type; none for a shape that is no placeholder."""
    if not getattr(shape, "is_placeholder", False):
        return []
    styles = [body.find(qn("a:lstStyle")) for body in chain]
    try:
        kind = getattr(shape.placeholder_format.type, "name", "")
        style = (
            "p:titleStyle"
            if kind in _TITLE_TYPES
            else "p:bodyStyle"
            if kind in _BODY_TYPES
            else "p:otherStyle"
        )
        master = shape.part.slide.slide_layout.slide_master
        found = master._element.find(qn("p:txStyles"))
        styles.append(found.find(qn(style)) if found is not None else None)
    except Exception:  # noqa: BLE001 - a master python-pptx cannot reach adds nothing
        pass
    return styles


def _inherited(styles: list[Any], level: int, read: Any) -> Any:
    """What ``read(style, level)`` finds first in ``styles`` (see :func:`_text_styles`), or None."""
    return next((found for style in styles if (found := read(style, level)) is not None), None)


def inherited_font_pt(shape: Any, level: int = 0, styles: list[Any] | None = None) -> float:
    """The size in points of text at paragraph ``level`` that sets none itself: for a placeholder, the
    list styles down its chain, then the master's title or body style; for any other shape, the deck's
    default. ``styles``: the shape's :func:`_text_styles`, where the caller has them."""
    if styles is None:
        styles = _text_styles(shape, _chain(shape))
    return _inherited(styles, level, _level_pt) or DEFAULT_FONT_PT


# ---------------------------------------------------------------------------------------------- layout


def _wrap(words: list[str], font: ImageFont.FreeTypeFont, width: float | None) -> list[float]:
    """Widths of the lines ``words`` wrap into (greedy, as PowerPoint); one line when width is None.
    A word wider than a line is broken between characters, as LibreOffice does."""
    if not words:
        return [0.0]
    if width is None:
        return [font.getlength(" ".join(words))]
    lines, current = [], ""
    for word in words:
        trial = f"{current} {word}" if current else word
        if current and font.getlength(trial) > width:
            lines.append(font.getlength(current))
            current = word
        else:
            current = trial
        while len(current) > 1 and font.getlength(current) > width:
            low, high = 1, len(current) - 1  # the longest head that fits, at least one character
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if font.getlength(current[:middle]) <= width else (low, middle - 1)
            lines.append(font.getlength(current[:low]))
            current = current[low:]
    lines.append(font.getlength(current))
    return lines


_AUTOFIT = {
    "a:spAutoFit": MSO_AUTO_SIZE.SHAPE_TO_FIT_TEXT,
    "a:normAutofit": MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE,
    "a:noAutofit": MSO_AUTO_SIZE.NONE,
}
_ALIGNS = {"l": PP_ALIGN.LEFT, "ctr": PP_ALIGN.CENTER, "r": PP_ALIGN.RIGHT}
SHRINK_TRIES = 10  # LibreOffice's search for the scale that fits a shrink-on-overflow frame's text


def fit_scale(height_at: Any, room: float) -> float:
    """The scale (whole percents) LibreOffice 7.4 draws a shrink-on-overflow frame's text at
    (``SdrTextObj::ImpAutoFitText``): from 100%, each try scales by the square root of the room over
    the text's height at the current scale, keeping the largest scale that fit, until a scale
    repeats or ten tries are made. ``height_at(scale)`` is the text's height at a scale."""
    current, best, seen = 100, 0, []
    for _ in range(SHRINK_TRIES):
        height = height_at(current / 100)
        factor = math.sqrt(room / height) if height > 0 and room > 0 else 1.0
        if factor >= 1.0:
            best = max(best, current)
        if current in seen:
            break
        seen.append(current)
        if factor < 1.0 or current != 100:
            current = min(100, int(current * factor))
    return max(best or current, 1) / 100


def layout_text_frame(
    shape: Any, box: list[float], scale: float, palette: dict[str, str], *, default_color: str
) -> dict[str, Any]:
    """Lay out ``shape``'s text inside ``box`` (slide pixels); return its box, colour and font.

    Each paragraph takes its size, alignment, left margin and space before from itself, else down the
    placeholder chain (a title's centring and a bullet's indent are the master's); the space before
    counts between paragraphs, not above the first. Anchor and wrap are inherited too. How the text
    fits is read from the shape's own frame only, as LibreOffice, which draws the picture, ignores a
    fit its layout or master sets: a frame that shrinks its text is laid out at the scale
    :func:`fit_scale` finds (font, spacing and indents alike); one that grows its shape grows it
    downwards and, when it does not wrap, makes it as wide as its longest line about its centre.
    Bullets are not measured: the box starts where the paragraph's text does. Returns the text's box,
    the frame as drawn and whether the frame or its chain asks for shrink-on-overflow (``shrinks``).
    """
    frame = shape.text_frame
    chain = _chain(shape)
    styles = _text_styles(shape, chain)
    bodies = [b for b in (t.find(qn("a:bodyPr")) for t in chain) if b is not None] or [frame._txBody.bodyPr]

    def inherited(name: str) -> str | None:
        return next((b.get(name) for b in bodies if b.get(name) is not None), None)

    margins = [
        (m if m is not None else d) * scale
        for m, d in (
            (frame.margin_left, 91440),
            (frame.margin_top, 45720),
            (frame.margin_right, 91440),
            (frame.margin_bottom, 45720),
        )
    ]
    inner_w = max(1.0, box[2] - box[0] - margins[0] - margins[2])
    inner_h = box[3] - box[1] - margins[1] - margins[3]
    wrap = inherited("wrap") != "none" if frame.word_wrap is None else frame.word_wrap
    paragraphs = []
    for paragraph in frame.paragraphs:
        runs = list(paragraph.runs) or [None]
        font = runs[0].font if runs[0] is not None else paragraph.font
        size = font.size or paragraph.font.size
        own = paragraph._p.pPr
        margin = own.get("marL") if own is not None else None
        if margin is None:
            margin = _inherited(styles, paragraph.level, _level_attr("marL"))
        paragraphs.append(
            {
                "text": paragraph.text,
                "pt": size / EMU_PER_PT if size else inherited_font_pt(shape, paragraph.level, styles),
                "bold": bool(font.bold or paragraph.font.bold),
                "italic": bool(font.italic),
                "name": font.name or paragraph.font.name,
                "color": resolve_color(font.color, palette)
                or resolve_color(paragraph.font.color, palette)
                or default_color,
                "spacing": paragraph.line_spacing,
                "align": paragraph.alignment
                or _ALIGNS.get(_inherited(styles, paragraph.level, _level_attr("algn")) or ""),
                "indent": int(margin) * scale if margin and margin.lstrip("-").isdigit() else 0.0,
                "before": _space_before(own) or _inherited(styles, paragraph.level, _level_space_before),
            }
        )

    def lay(shrink: float) -> tuple[list[tuple[float, Any, float]], float]:
        """The lines (width, alignment, indent) and the height of the text at ``shrink`` times its size."""
        lines, height = [], 0.0
        for number, spec in enumerate(paragraphs):
            px = spec["pt"] * EMU_PER_PT * scale * shrink
            if number and spec["before"]:
                unit, value = spec["before"]
                height += value * (EMU_PER_PT * scale * shrink if unit == "pt" else px)
            # a fractional size, as LibreOffice draws it (in quarter pixels, for the cache)
            face = font_for(spec["name"], round(px * 4) / 4, spec["bold"], spec["italic"])
            spacing = spec["spacing"]
            line_height = px * (spacing * LINE_HEIGHT if isinstance(spacing, float) else LINE_HEIGHT)
            if spacing is not None and not isinstance(spacing, float):
                line_height = spacing * scale * shrink  # an exact Length
            indent = spec["indent"] * shrink
            room = max(1.0, inner_w - indent)
            for segment in spec["text"].split("\v") or [""]:
                for width in _wrap(segment.split(), face, room if wrap else None):
                    lines.append((width, spec["align"], indent))
                    height += line_height
        return lines, height

    auto_size = frame.auto_size
    # What the chain asks for: a placeholder whose master says shrink-on-overflow is drawn at full size
    # past its frame, which the checks judge by what that text runs into, not by the frame.
    asks = next(
        (fit for body in bodies for tag, fit in _AUTOFIT.items() if body.find(qn(tag)) is not None), None
    )  # the shape's own body comes first in the chain
    shrink = 1.0
    if auto_size == MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE:
        shrink = fit_scale(lambda at: lay(at)[1], inner_h)
    lines, height = lay(shrink)
    left = box[0] + margins[0]
    frame_box = list(box)
    if auto_size == MSO_AUTO_SIZE.SHAPE_TO_FIT_TEXT and not wrap:
        inner_w = max((width + indent for width, _, indent in lines), default=0.0)
        left = (box[0] + margins[0] + box[2] - margins[2] - inner_w) / 2
        frame_box[0], frame_box[2] = left - margins[0], left + inner_w + margins[2]
    spans = []
    for width, align, indent in lines:
        x = left + indent
        if align == PP_ALIGN.CENTER:
            x += (inner_w - indent - width) / 2
        elif align == PP_ALIGN.RIGHT:
            x += inner_w - indent - width
        if width > 0:
            spans.append((x, x + width))
    x0, x1 = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else (left, left)
    anchor = frame.vertical_anchor or {
        "ctr": MSO_VERTICAL_ANCHOR.MIDDLE,
        "b": MSO_VERTICAL_ANCHOR.BOTTOM,
    }.get(inherited("anchor"), MSO_VERTICAL_ANCHOR.TOP)
    y0 = box[1] + margins[1]
    if anchor == MSO_VERTICAL_ANCHOR.MIDDLE:
        y0 += (inner_h - height) / 2
    elif anchor == MSO_VERTICAL_ANCHOR.BOTTOM:
        y0 += inner_h - height
    if auto_size == MSO_AUTO_SIZE.SHAPE_TO_FIT_TEXT and height > inner_h:
        y0 = box[1] + margins[1]  # the shape grows downwards to hold its text
        frame_box[3] = y0 + height + margins[3]
    largest = max(paragraphs, key=lambda spec: spec["pt"], default=None)
    return {
        "bbox": [x0, y0, x1, y0 + height],
        "frame": frame_box,
        "color": largest["color"] if largest else default_color,
        "font_px": largest["pt"] * EMU_PER_PT * scale * shrink if largest else 0.0,
        "bold": largest["bold"] if largest else False,
        "shrinks": asks == MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE,
    }
