"""Text of a slide shape laid out with real font metrics, and the theme colours of a deck.

The text frame's paragraphs are word-wrapped at the frame's inner width (unless wrapping is off) with
PIL's FreeType metrics of the font named (or a metric-compatible substitute, else DejaVu Sans), one
line 1.2 font sizes tall, the PowerPoint default for single spacing. The result is the box the text
occupies in slide pixels, which the renderer compares with the frame and the slide.
"""

from __future__ import annotations

import functools
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
                return ImageFont.truetype(path, max(1, round(px)))
    return ImageFont.load_default(size=max(1, round(px)))


# ---------------------------------------------------------------------------------------------- sizes

# The master's text style a placeholder of each type takes its sizes from; other shapes take the deck's
# default (18 pt in python-pptx's template, as in PowerPoint's).
_TITLE_TYPES = frozenset({"TITLE", "CENTER_TITLE", "VERTICAL_TITLE"})
_BODY_TYPES = frozenset({"BODY", "OBJECT", "SUBTITLE", "VERTICAL_BODY", "VERTICAL_OBJECT", "TABLE", "CHART"})


def _level_pt(styles: Any, level: int) -> float | None:
    """The ``sz`` of level ``level``'s default run properties in a list or text style, in points."""
    if styles is None:
        return None
    found = styles.find(f"{qn(f'a:lvl{level + 1}pPr')}/{qn('a:defRPr')}")
    size = found.get("sz") if found is not None else None
    return int(size) / 100 if size and size.isdigit() else None


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


def inherited_font_pt(shape: Any, level: int = 0) -> float:
    """The size in points of text at paragraph ``level`` that sets none itself: for a placeholder, the
    list styles down its chain (the slide's shape, the layout's placeholder, the master's), then the
    master's title or body style; for any other shape, the deck's default."""
    try:
        if not getattr(shape, "is_placeholder", False):
            return DEFAULT_FONT_PT
        for body in _chain(shape):
            size = _level_pt(body.find(qn("a:lstStyle")), level)
            if size:
                return size
        kind = getattr(shape.placeholder_format.type, "name", "")
        style = (
            "p:titleStyle"
            if kind in _TITLE_TYPES
            else "p:bodyStyle"
            if kind in _BODY_TYPES
            else "p:otherStyle"
        )
        master = shape.part.slide.slide_layout.slide_master
        styles = master._element.find(qn("p:txStyles"))
        size = _level_pt(styles.find(qn(style)) if styles is not None else None, level)
        return size or DEFAULT_FONT_PT
    except Exception:  # noqa: BLE001 - a deck python-pptx cannot walk keeps the default
        return DEFAULT_FONT_PT


# ---------------------------------------------------------------------------------------------- layout

_AUTOFIT = {
    "a:spAutoFit": MSO_AUTO_SIZE.SHAPE_TO_FIT_TEXT,
    "a:normAutofit": MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE,
    "a:noAutofit": MSO_AUTO_SIZE.NONE,
}


def _wrap(words: list[str], font: ImageFont.FreeTypeFont, width: float | None) -> list[float]:
    """Widths of the lines ``words`` wrap into (greedy, as PowerPoint); one line when width is None."""
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
    lines.append(font.getlength(current))
    return lines


def layout_text_frame(
    shape: Any, box: list[float], scale: float, palette: dict[str, str], *, default_color: str
) -> dict[str, Any]:
    """Lay out ``shape``'s text inside ``box`` (slide pixels); return its box, colour and font."""
    frame = shape.text_frame
    # Body properties the shape does not set come from its placeholder chain (a title's centring, a
    # body's shrink-on-overflow are the master's).
    bodies = [b for b in (t.find(qn("a:bodyPr")) for t in _chain(shape)) if b is not None] or [
        frame._txBody.bodyPr
    ]

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
    wrap = inherited("wrap") != "none" if frame.word_wrap is None else frame.word_wrap
    widths_by_align: list[tuple[float, Any]] = []
    height = 0.0
    largest = (0.0, False, default_color)
    for paragraph in frame.paragraphs:
        runs = list(paragraph.runs) or [None]
        first = runs[0]
        font = first.font if first is not None else paragraph.font
        size = font.size or paragraph.font.size
        pt = size / EMU_PER_PT if size else inherited_font_pt(shape, paragraph.level)
        px = pt * EMU_PER_PT * scale
        bold = bool(font.bold or paragraph.font.bold)
        face = font_for(font.name or paragraph.font.name, px, bold, bool(font.italic))
        color = (
            resolve_color(font.color, palette)
            or resolve_color(paragraph.font.color, palette)
            or default_color
        )
        if px > largest[0]:
            largest = (px, bold, color)
        spacing = paragraph.line_spacing
        line_height = px * (spacing * LINE_HEIGHT if isinstance(spacing, float) else LINE_HEIGHT)
        if spacing is not None and not isinstance(spacing, float):
            line_height = spacing * scale  # an exact Length
        for segment in paragraph.text.split("\v") or [""]:
            for width in _wrap(segment.split(), face, inner_w if wrap else None):
                widths_by_align.append((width, paragraph.alignment))
                height += line_height
    text_w = max((w for w, _ in widths_by_align), default=0.0)
    aligns = {a for _, a in widths_by_align} - {None}
    x0 = box[0] + margins[0]
    if aligns == {PP_ALIGN.CENTER}:
        x0 += (inner_w - text_w) / 2
    elif aligns == {PP_ALIGN.RIGHT}:
        x0 += inner_w - text_w
    inner_h = box[3] - box[1] - margins[1] - margins[3]
    anchor = frame.vertical_anchor or {
        "ctr": MSO_VERTICAL_ANCHOR.MIDDLE,
        "b": MSO_VERTICAL_ANCHOR.BOTTOM,
    }.get(inherited("anchor"), MSO_VERTICAL_ANCHOR.TOP)
    y0 = box[1] + margins[1]
    if anchor == MSO_VERTICAL_ANCHOR.MIDDLE:
        y0 += (inner_h - height) / 2
    elif anchor == MSO_VERTICAL_ANCHOR.BOTTOM:
        y0 += inner_h - height
    auto_size = frame.auto_size
    if auto_size is None:  # the first of the chain's bodies that says how its text fits
        auto_size = next(
            (fit for body in bodies for tag, fit in _AUTOFIT.items() if body.find(qn(tag)) is not None), None
        )
    if auto_size == MSO_AUTO_SIZE.SHAPE_TO_FIT_TEXT and height > inner_h:
        y0 = box[1] + margins[1]  # the shape grows downwards to hold its text
    return {
        "bbox": [x0, y0, x0 + text_w, y0 + height],
        "color": largest[2],
        "font_px": largest[0],
        "bold": largest[1],
        "grows_shape": auto_size == MSO_AUTO_SIZE.SHAPE_TO_FIT_TEXT,
        "shrinks": auto_size == MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE,
        "margin_bottom": margins[3],
    }
