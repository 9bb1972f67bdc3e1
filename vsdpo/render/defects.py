"""Generic visual-defect checks on lists of drawn elements, shared by every renderer.

Each check takes the elements of one render (boxes in image pixels, y down) and returns
``list[Defect]``: the defect kind, a severity in (0, 1], the ids of the elements concerned, the union
of their source lines, and a message a person can act on. Renderers add their own knowledge through
the keyword arguments (which pairs may not overlap, which boxes contain or clip which element).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from vsdpo.render.types import Defect, Element

Box = tuple[float, float, float, float]

# Roles that carry the data of a chart or the content of a page; a legend must not sit on them.
DATA_ROLES = frozenset({"line", "patch", "image", "collection", "data"})
TEXT_ROLES = frozenset({"text", "tick_label", "title", "label"})
# WCAG 2 "large text": 18 pt, or 14 pt bold; 1 pt = 4/3 px at 96 dpi.
LARGE_TEXT_PX = 24.0
LARGE_BOLD_TEXT_PX = 18.66


# ---------------------------------------------------------------------------------------------- geometry


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: Box, b: Box) -> Box | None:
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[2] > box[0] and box[3] > box[1] else None


def _outside_area(box: Box, container: Box) -> float:
    inside = intersection(box, container)
    return area(box) - (area(inside) if inside else 0.0)


def _severity(value: float) -> float:
    """Clamp into (0, 1]: a defect that is reported always weighs something."""
    return float(min(1.0, max(1e-3, value)))


def _lines(*elements: Element) -> list[int]:
    return sorted({line for element in elements for line in element.lines})


def _describe(element: Element) -> str:
    if element.text:
        text = element.text if len(element.text) <= 30 else element.text[:27] + "..."
        return f"{element.role} {text!r}"
    return f"{element.role} {element.id}"


def _is_text(element: Element) -> bool:
    return element.role in TEXT_ROLES or (element.text is not None and element.role not in ("legend", "axes"))


# ---------------------------------------------------------------------------------------------- contrast


def _relative_luminance(color: str) -> float:
    value = color.strip().lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    try:
        if len(value) not in (6, 8):
            raise ValueError
        channels = [int(value[i : i + 2], 16) / 255.0 for i in (0, 2, 4)]
    except ValueError:
        raise ValueError(f"color: expected '#rrggbb', got {color!r}") from None
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def wcag_contrast(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio (1..21) of two colours given as '#rrggbb'."""
    lighter, darker = sorted((_relative_luminance(fg), _relative_luminance(bg)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def required_contrast(element: Element) -> float:
    font_px = float(element.extra.get("font_px") or 0.0)
    bold = bool(element.extra.get("bold"))
    large = font_px >= LARGE_TEXT_PX or (bold and font_px >= LARGE_BOLD_TEXT_PX)
    return 3.0 if large else 4.5


def find_low_contrast(elements: Iterable[Element]) -> list[Defect]:
    """Text whose colour against its effective background is below WCAG 2 AA."""
    defects = []
    for element in elements:
        if not _is_text(element) or not element.color or not element.background:
            continue
        if element.text is not None and not element.text.strip():
            continue
        ratio = wcag_contrast(element.color, element.background)
        needed = required_contrast(element)
        if ratio < needed:
            defects.append(
                Defect(
                    kind="low_contrast",
                    severity=_severity((needed - ratio) / (needed - 1.0)),
                    elements=[element.id],
                    lines=_lines(element),
                    message=f"{_describe(element)}: contrast {ratio:.2f}:1 of {element.color} on "
                    f"{element.background}, below {needed:g}:1",
                )
            )
    return defects


# ---------------------------------------------------------------------------------------------- overlap


def default_should_not_overlap(a: Element, b: Element) -> bool:
    """Text on text, text on legend, legend on data, shape on shape."""
    kinds = {_overlap_class(a), _overlap_class(b)}
    if len(kinds) == 1:
        return kinds <= {"text", "shape"}
    return kinds in ({"text", "legend"}, {"legend", "data"})


def _overlap_class(element: Element) -> str:
    if element.role == "legend":
        return "legend"
    if element.role in DATA_ROLES:
        return "data"
    if _is_text(element):
        return "text"
    return element.role


def _ancestors(element: Element, by_id: dict[str, Element]) -> set[str]:
    seen: set[str] = set()
    parent = element.parent
    while parent is not None and parent not in seen:
        seen.add(parent)
        parent = by_id[parent].parent if parent in by_id else None
    return seen


def find_overlaps(
    elements: Sequence[Element],
    *,
    should_not_overlap: Callable[[Element, Element], bool] | None = None,
    min_overlap_frac: float = 0.05,
) -> list[Defect]:
    """Pairs of elements that must not intersect but do, by more than ``min_overlap_frac`` of the smaller.

    Severity is the covered fraction of the smaller box. Ancestor/descendant pairs never count.
    """
    rule = should_not_overlap or default_should_not_overlap
    by_id = {element.id: element for element in elements}
    ancestors = {element.id: _ancestors(element, by_id) for element in elements}
    boxed = [e for e in elements if area(e.bbox) > 0]
    # Sweep along x so that far-apart pairs are never compared.
    boxed.sort(key=lambda e: e.bbox[0])
    defects = []
    for i, a in enumerate(boxed):
        for b in boxed[i + 1 :]:
            if b.bbox[0] >= a.bbox[2]:
                break
            if b.id in ancestors[a.id] or a.id in ancestors[b.id]:
                continue
            shared = intersection(a.bbox, b.bbox)
            if shared is None or not rule(a, b):
                continue
            fraction = area(shared) / min(area(a.bbox), area(b.bbox))
            if fraction < min_overlap_frac:
                continue
            defects.append(
                Defect(
                    kind="overlap",
                    severity=_severity(fraction),
                    elements=[a.id, b.id],
                    lines=_lines(a, b),
                    message=f"{_describe(a)} overlaps {_describe(b)} ({fraction:.0%} of the smaller)",
                )
            )
    return defects


# ---------------------------------------------------------------------------------------------- overflow, clipping


def find_overflow(
    elements: Iterable[Element],
    canvas: Box,
    *,
    containers: dict[str, Box] | None = None,
    tol_px: float = 1.0,
) -> list[Defect]:
    """Elements that extend past the canvas, or past their container box (given per element id)."""
    containers = containers or {}
    defects = []
    for element in elements:
        if area(element.bbox) <= 0:
            continue
        for bound, where in ((canvas, "the canvas"), (containers.get(element.id), "its container")):
            if bound is None or not _exceeds(element.bbox, bound, tol_px):
                continue
            outside = _outside_area(element.bbox, bound) / area(element.bbox)
            defects.append(
                Defect(
                    kind="overflow",
                    severity=_severity(max(outside, 0.05)),
                    elements=[element.id],
                    lines=_lines(element),
                    message=f"{_describe(element)} extends beyond {where} "
                    f"({_overhang(element.bbox, bound)}, {outside:.0%} outside)",
                )
            )
            break  # past the canvas already says it all
    return defects


def _exceeds(box: Box, bound: Box, tol_px: float) -> bool:
    return (
        box[0] < bound[0] - tol_px
        or box[1] < bound[1] - tol_px
        or box[2] > bound[2] + tol_px
        or box[3] > bound[3] + tol_px
    )


def _overhang(box: Box, bound: Box) -> str:
    sides = {
        "left": bound[0] - box[0],
        "top": bound[1] - box[1],
        "right": box[2] - bound[2],
        "bottom": box[3] - bound[3],
    }
    return ", ".join(f"{px:.0f}px past the {side}" for side, px in sides.items() if px > 0) or "at the edge"


def find_clipped_text(
    elements: Iterable[Element],
    canvas: Box,
    *,
    clip_boxes: dict[str, Box] | None = None,
    tol_px: float = 1.0,
) -> list[Defect]:
    """Text whose box is cut by the canvas edge or by the clipping box of its container (per element id)."""
    clip_boxes = clip_boxes or {}
    defects = []
    for element in elements:
        if not _is_text(element) or area(element.bbox) <= 0 or not (element.text or "").strip():
            continue
        for bound, by in ((canvas, "the canvas edge"), (clip_boxes.get(element.id), "its container")):
            if bound is None or not _exceeds(element.bbox, bound, tol_px):
                continue
            hidden = _outside_area(element.bbox, bound) / area(element.bbox)
            defects.append(
                Defect(
                    kind="clipped_text",
                    severity=_severity(max(hidden, 0.05)),
                    elements=[element.id],
                    lines=_lines(element),
                    message=f"{_describe(element)} is cut by {by} ({hidden:.0%} hidden)",
                )
            )
            break
    return defects


# ---------------------------------------------------------------------------------------------- alignment

# name -> (axis, how to read the coordinate off a box)
_EDGES: dict[str, tuple[str, Callable[[Box], float]]] = {
    "left": ("x", lambda b: b[0]),
    "right": ("x", lambda b: b[2]),
    "centre": ("x", lambda b: (b[0] + b[2]) / 2),
    "top": ("y", lambda b: b[1]),
    "bottom": ("y", lambda b: b[3]),
    "middle": ("y", lambda b: (b[1] + b[3]) / 2),
}


def _spans_overlap(a: Box, b: Box, axis: str) -> bool:
    lo, hi = (0, 2) if axis == "x" else (1, 3)
    return min(a[hi], b[hi]) > max(a[lo], b[lo])


def find_misalignment(
    elements: Sequence[Element], *, tol_px: tuple[float, float] = (1.0, 6.0)
) -> list[Defect]:
    """Siblings of one role meant to share an edge or centre line that miss it by a few pixels.

    Two boxes stacked one above the other (their x-spans overlap) are compared on left, right and
    centre; two side by side (their y-spans overlap) on top, bottom and middle. A pair counts when on
    that axis no line is shared within ``tol_px[0]`` and some line is missed by at most ``tol_px[1]``:
    a near-miss, not a different design.
    """
    exact, near = tol_px
    groups: dict[tuple[str | None, str], list[Element]] = {}
    for element in elements:
        if area(element.bbox) > 0:
            groups.setdefault((element.parent, element.role), []).append(element)
    defects = []
    for siblings in groups.values():
        for i, a in enumerate(siblings):
            for b in siblings[i + 1 :]:
                if intersection(a.bbox, b.bbox) is not None:
                    continue
                for axis in ("x", "y"):
                    # Stacked boxes (x-spans overlap) share x-lines; boxes in a row share y-lines.
                    if not _spans_overlap(a.bbox, b.bbox, axis):
                        continue
                    gaps = {
                        name: abs(read(a.bbox) - read(b.bbox))
                        for name, (edge_axis, read) in _EDGES.items()
                        if edge_axis == axis
                    }
                    if min(gaps.values()) <= exact:
                        continue
                    name, gap = min(gaps.items(), key=lambda item: item[1])
                    if gap > near:
                        continue
                    defects.append(
                        Defect(
                            kind="misalignment",
                            severity=_severity(0.2 + 0.6 * gap / near),
                            elements=[a.id, b.id],
                            lines=_lines(a, b),
                            message=f"{_describe(a)} and {_describe(b)}: {name} edges off by {gap:.1f}px",
                        )
                    )
    return defects


# ---------------------------------------------------------------------------------------------- all


def detect_all(
    elements: Sequence[Element],
    canvas: Box,
    *,
    should_not_overlap: Callable[[Element, Element], bool] | None = None,
    min_overlap_frac: float = 0.05,
    containers: dict[str, Box] | None = None,
    clip_boxes: dict[str, Box] | None = None,
    overflow_tol_px: float = 1.0,
    align_tol_px: tuple[float, float] = (1.0, 6.0),
) -> list[Defect]:
    """Every generic check, in the order of DEFECT_KINDS."""
    return [
        *find_overlaps(elements, should_not_overlap=should_not_overlap, min_overlap_frac=min_overlap_frac),
        *find_clipped_text(elements, canvas, clip_boxes=clip_boxes),
        *find_overflow(elements, canvas, containers=containers, tol_px=overflow_tol_px),
        *find_misalignment(elements, tol_px=align_tol_px),
        *find_low_contrast(elements),
    ]
