"""Generic visual-defect checks on lists of drawn elements, shared by every renderer.

Each check takes the elements of one render (boxes in image pixels, y down) and returns
``list[Defect]``: the defect kind, a severity in (0, 1], the ids of the elements concerned, the union
of their source lines, and a message a person can act on. Renderers add their own knowledge through
the keyword arguments (which pairs may not overlap, which boxes contain or clip which element).

The elements come from untrusted programs, so the checks are bounded: each pair check reports at
most ``MAX_DEFECTS`` defects, the overlap search costs what the intersecting pairs cost (a grid, not
all pairs), and renderers run the checks under a deadline (vsdpo.render.deadline), past which the
pairwise loops raise ``DeadlineExceeded``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence

from vsdpo.render.deadline import check_deadline
from vsdpo.render.types import Defect, Element

Box = tuple[float, float, float, float]

# Roles that carry the data of a chart or the content of a page; a legend must not sit on them.
DATA_ROLES = frozenset({"line", "patch", "image", "collection", "data"})
TEXT_ROLES = frozenset({"text", "tick_label", "title", "label"})
# WCAG 2 "large text": 18 pt, or 14 pt bold; 1 pt = 4/3 px at 96 dpi.
LARGE_TEXT_PX = 24.0
LARGE_BOLD_TEXT_PX = 18.66
# Contrast a text needs, by level. "legible": 3:1, the minimum of ISO 9241-3 for standard text and
# normal vision (WCAG 2 adopts it for large text), below which a reader strains to read at all;
# "AA": WCAG 2 AA, 4.5:1 (3:1 large), which also serves readers with low vision. Rewards use
# "legible": grey tick labels at 3.95:1 (matplotlib's "gray") or link blue at 3.8:1 are read by
# everyone and are common in the very charts and pages a policy is asked to reproduce.
CONTRAST_LEVELS = ("legible", "AA")
LEGIBLE_CONTRAST = 3.0
# Defects one pairwise check reports at most; a page of a thousand colliding labels says it all by then.
MAX_DEFECTS = 200
# Defects one render reports at most, all checks together.
MAX_RENDER_DEFECTS = 500
# Ink boxes (see _ink) are grown by this much on each side: glyphs with no blank pixel between them touch.
INK_TOUCH_PX = 0.5
# Boxes covering more grid cells than this are compared through their own list (see _candidate_pairs).
WIDE_CELLS = 64


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


def _outline(element: Element) -> list[tuple[float, float]] | None:
    """The drawn quadrilateral of a slanted element (``extra["corners"]``: four points in order), where
    the renderer gives one; its ``bbox`` is then only the upright box around it."""
    corners = element.extra.get("corners")
    if not isinstance(corners, list | tuple) or len(corners) != 4:
        return None
    try:
        points = [(float(x), float(y)) for x, y in corners]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for point in points for v in point):
        return None
    return points if _polygon_area(points) > 0 else None


def _polygon_area(points: Sequence[tuple[float, float]]) -> float:
    return abs(_signed_area(points))


def _box_corners(box: Box) -> list[tuple[float, float]]:
    return [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])]


def _clip_polygon(subject: list[tuple[float, float]], clip: list[tuple[float, float]]) -> list:
    """The part of convex polygon ``subject`` inside convex polygon ``clip`` (Sutherland-Hodgman)."""
    orientation = 1.0 if _signed_area(clip) > 0 else -1.0
    output = subject
    for (ax, ay), (bx, by) in zip(clip, [*clip[1:], clip[0]], strict=True):
        if not output:
            break

        def side(point, ax=ax, ay=ay, bx=bx, by=by):
            return orientation * ((bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax))

        points, output = output, []
        for current, following in zip(points, [*points[1:], points[0]], strict=True):
            s0, s1 = side(current), side(following)
            if s0 >= 0:
                output.append(current)
            if (s0 >= 0) != (s1 >= 0):
                t = s0 / (s0 - s1)
                output.append(
                    (
                        current[0] + t * (following[0] - current[0]),
                        current[1] + t * (following[1] - current[1]),
                    )
                )
    return output


def _signed_area(points: Sequence[tuple[float, float]]) -> float:
    return (
        sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, [*points[1:], points[0]], strict=True))
        / 2
    )


def _ink(element: Element) -> Box | None:
    """The box of what an element's glyphs really painted (``extra["ink"]``), where the renderer
    measured it: a text's layout box also holds the empty leading and descender space of its line."""
    ink = element.extra.get("ink")
    if not isinstance(ink, list | tuple) or len(ink) != 4:
        return None
    try:
        box = tuple(float(v) for v in ink)
    except (TypeError, ValueError):
        return None
    return box if all(math.isfinite(v) for v in box) and area(box) > 0 else None


def _drawn(element: Element) -> Element:
    """``element`` with its ink box (see ``_ink``) for its box, where it has one, grown by half a pixel
    on every side: glyphs in neighbouring pixels, with no blank pixel between them, touch."""
    ink = _ink(element)
    if ink is None:
        return element
    grown = (ink[0] - INK_TOUCH_PX, ink[1] - INK_TOUCH_PX, ink[2] + INK_TOUCH_PX, ink[3] + INK_TOUCH_PX)
    return Element(**{**element.__dict__, "bbox": grown})


def _ink_rows(element: Element) -> list[Box] | None:
    """The outline of an element's ink as boxes around bands of its rows (``extra["ink_rows"]``)."""
    bands = element.extra.get("ink_rows")
    if not isinstance(bands, list | tuple) or not bands:
        return None
    boxes = []
    for band in bands:
        if not isinstance(band, list | tuple) or len(band) != 4:
            return None
        try:
            boxes.append(tuple(float(v) for v in band))
        except (TypeError, ValueError):
            return None
    return boxes


def _glyphs_meet(a: Element, b: Element) -> bool:
    """Whether two elements' ink comes within a pixel, band by band where both give their bands of
    rows (see ``_ink_rows``): their ink boxes may share a corner that holds no glyph of either (a
    y-axis '0' above the end of an x-axis '−0.6'). True where either gives no bands."""
    rows_a, rows_b = _ink_rows(a), _ink_rows(b)
    if rows_a is None or rows_b is None:
        return True
    reach = 2 * INK_TOUCH_PX
    for top, left, bottom, right in ((r[1], r[0], r[3], r[2]) for r in rows_a):
        for other in rows_b:
            if (
                other[1] < bottom + reach
                and top < other[3] + reach
                and other[0] < right + reach
                and left < other[2] + reach
            ):
                return True
    return False


def _touching_ink(a: Element, b: Element) -> bool:
    """Two upright elements both compared on their ink: any contact is the glyphs' own, for an ink box
    holds no empty leading, and is reported however small (``min_overlap_frac`` allows for the slack
    of layout boxes, which ink boxes have not). Slanted ones keep the allowance: their upright ink box
    takes in empty corners."""
    return _ink(a) is not None and _ink(b) is not None and _outline(a) is None and _outline(b) is None


def _shared_fraction(a: Element, b: Element, shared: Box) -> float:
    """How much of the smaller of two elements the other covers: their boxes' intersection, or, for a
    slanted element, the intersection of the quadrilaterals really drawn (and no more than the ink
    boxes share, where the elements have them)."""
    fraction = area(shared) / min(area(a.bbox), area(b.bbox))
    outline_a, outline_b = _outline(a), _outline(b)
    if outline_a is None and outline_b is None:
        return fraction
    polygon_a = outline_a or _box_corners(a.bbox)
    polygon_b = outline_b or _box_corners(b.bbox)
    common = _clip_polygon(polygon_a, polygon_b)
    if len(common) < 3:
        return 0.0
    slanted = _polygon_area(common) / min(_polygon_area(polygon_a), _polygon_area(polygon_b))
    return min(slanted, fraction) if _ink(a) or _ink(b) else slanted


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


def required_contrast(element: Element, level: str = "legible") -> float:
    """The contrast ``element`` needs at ``level`` (see ``CONTRAST_LEVELS``)."""
    if level not in CONTRAST_LEVELS:
        raise ValueError(f"level: expected one of {CONTRAST_LEVELS}, got {level!r}")
    if level == "legible":
        return LEGIBLE_CONTRAST
    font_px = float(element.extra.get("font_px") or 0.0)
    bold = bool(element.extra.get("bold"))
    large = font_px >= LARGE_TEXT_PX or (bold and font_px >= LARGE_BOLD_TEXT_PX)
    return 3.0 if large else 4.5


def find_low_contrast(elements: Iterable[Element], *, level: str = "legible") -> list[Defect]:
    """Text whose colour against its effective background is below the contrast of ``level``: by
    default 3:1, the least a reader with normal vision reads without strain (``CONTRAST_LEVELS``)."""
    if level not in CONTRAST_LEVELS:
        raise ValueError(f"level: expected one of {CONTRAST_LEVELS}, got {level!r}")
    defects = []
    for element in elements:
        if not _is_text(element) or not element.color or not element.background:
            continue
        if element.text is not None and not element.text.strip():
            continue
        ratio = wcag_contrast(element.color, element.background)
        needed = required_contrast(element, level)
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


def _lineage(elements: Sequence[Element]) -> Callable[[Element, Element], bool]:
    """``related(a, b)``: one is an ancestor of the other (following parent ids among ``elements``).

    Entry and exit times of one walk over the parent forest answer each pair in constant time, where
    sets of ancestors would cost the square of the nesting depth.
    """
    by_id = {element.id: element for element in elements}
    children: dict[str | None, list[str]] = {}
    for element_id, element in by_id.items():
        parent = element.parent if element.parent in by_id and element.parent != element_id else None
        children.setdefault(parent, []).append(element_id)
    enter: dict[str, int] = {}
    leave: dict[str, int] = {}
    clock = 0
    # Roots first; then whatever a loop of parents kept from being reached, each loop cut where met.
    for root in [*children.get(None, []), *by_id]:
        if root in enter:
            continue
        stack = [(root, iter(children.get(root, ())))]
        enter[root] = clock = clock + 1
        while stack:
            node, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                leave[node] = clock = clock + 1
                stack.pop()
            elif child not in enter:
                enter[child] = clock = clock + 1
                stack.append((child, iter(children.get(child, ()))))

    def related(a: Element, b: Element) -> bool:
        ea, eb = enter[a.id], enter[b.id]
        return (ea < eb and leave[b.id] < leave[a.id]) or (eb < ea and leave[a.id] < leave[b.id])

    return related


def _candidate_pairs(boxed: Sequence[Element]) -> Iterator[tuple[int, int]]:
    """Every (i, j), i < j, whose boxes may intersect with positive area, in lexicographic order (the
    order of a sweep along x over ``boxed``, which is sorted by left edge).

    Boxes go into the cells of a grid sized to the median box; two boxes that intersect share a cell.
    A box that covers many cells (a page's container) is compared through a list of its own: against
    the boxes in its cells, and against the other wide boxes along x.
    """
    n = len(boxed)
    if n < 64:  # a plain sweep along x is cheaper than a grid
        for i, a in enumerate(boxed):
            for j in range(i + 1, n):
                if boxed[j].bbox[0] >= a.bbox[2]:
                    break
                yield i, j
        return
    x0 = min(e.bbox[0] for e in boxed)
    y0 = min(e.bbox[1] for e in boxed)
    cell_w = max(statistics.median(e.bbox[2] - e.bbox[0] for e in boxed), 1e-6)
    cell_h = max(statistics.median(e.bbox[3] - e.bbox[1] for e in boxed), 1e-6)
    cells: dict[tuple[int, int], list[int]] = {}
    spans: list[tuple[int, int, int, int] | None] = []
    wide: list[int] = []
    for k, e in enumerate(boxed):
        cx0, cx1 = math.floor((e.bbox[0] - x0) / cell_w), math.floor((e.bbox[2] - x0) / cell_w)
        cy0, cy1 = math.floor((e.bbox[1] - y0) / cell_h), math.floor((e.bbox[3] - y0) / cell_h)
        if (cx1 - cx0 + 1) * (cy1 - cy0 + 1) > WIDE_CELLS:
            wide.append(k)
            spans.append((cx0, cx1, cy0, cy1))
            continue
        spans.append(None)
        for cx in range(cx0, cx1 + 1):
            for cy in range(cy0, cy1 + 1):
                cells.setdefault((cx, cy), []).append(k)
    partners: dict[int, set[int]] = {k: set() for k in range(n)}
    for w in wide:
        check_deadline()
        cx0, cx1, cy0, cy1 = spans[w]
        if (cx1 - cx0 + 1) * (cy1 - cy0 + 1) < len(cells):
            keys = [(cx, cy) for cx in range(cx0, cx1 + 1) for cy in range(cy0, cy1 + 1)]
        else:  # a box larger than the occupied grid: visit the occupied cells instead
            keys = [key for key in cells if cx0 <= key[0] <= cx1 and cy0 <= key[1] <= cy1]
        for key in keys:
            for k in cells.get(key, ()):
                partners[min(k, w)].add(max(k, w))
        for other in wide:
            if other > w and boxed[other].bbox[0] < boxed[w].bbox[2]:
                partners[w].add(other)
    for i in range(n):
        found = partners[i]
        if spans[i] is None:
            cx0 = math.floor((boxed[i].bbox[0] - x0) / cell_w)
            cx1 = math.floor((boxed[i].bbox[2] - x0) / cell_w)
            cy0 = math.floor((boxed[i].bbox[1] - y0) / cell_h)
            cy1 = math.floor((boxed[i].bbox[3] - y0) / cell_h)
            for cx in range(cx0, cx1 + 1):
                for cy in range(cy0, cy1 + 1):
                    found.update(k for k in cells[(cx, cy)] if k > i)
        for j in sorted(found):
            yield i, j
        partners[i] = set()


def find_overlaps(
    elements: Sequence[Element],
    *,
    should_not_overlap: Callable[[Element, Element], bool] | None = None,
    min_overlap_frac: float = 0.05,
    max_defects: int = MAX_DEFECTS,
) -> list[Defect]:
    """Pairs of elements that must not intersect but do, by more than ``min_overlap_frac`` of the smaller.

    Severity is the covered fraction of the smaller box (of the drawn quadrilateral, for a slanted
    element: see ``_outline``). An element whose ink box the renderer measured is compared on it (see
    ``_ink``): two texts whose line boxes meet only in their empty leading do not collide. Ancestor/
    descendant pairs never count. At most ``max_defects`` are reported, in the order of a sweep along x.
    """
    rule = should_not_overlap or default_should_not_overlap
    related = _lineage(elements)
    boxed = [_drawn(e) for e in elements if area(e.bbox) > 0]
    boxed.sort(key=lambda e: e.bbox[0])
    defects: list[Defect] = []
    last = -1
    for i, j in _candidate_pairs(boxed):
        if i != last:
            check_deadline()
            last = i
        a, b = boxed[i], boxed[j]
        shared = intersection(a.bbox, b.bbox)
        if shared is None or related(a, b) or not rule(a, b):
            continue
        if not _glyphs_meet(a, b):
            continue
        fraction = _shared_fraction(a, b, shared)
        if fraction <= 0 or (fraction < min_overlap_frac and not _touching_ink(a, b)):
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
        if len(defects) >= max_defects:
            break
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


def _content_box(element: Element) -> Box | None:
    """The box of what an element shows inside its own box: the union of its text rectangles
    (``extra["rects"]``), where the renderer gives them."""
    rects = [r for r in (element.extra.get("rects") or []) if area(r) > 0]
    if not rects:
        return None
    return (
        min(r[0] for r in rects),
        min(r[1] for r in rects),
        max(r[2] for r in rects),
        max(r[3] for r in rects),
    )


def _anchored_lines(box: Box, content: Box, exact: float) -> set[str]:
    """The vertical lines a content box is set on within its box: the side it hugs (left or right),
    all three when it sits in the middle. The other side of a left-set text is ragged, not a line."""
    left_gap, right_gap = content[0] - box[0], box[2] - content[2]
    if abs(left_gap - right_gap) <= exact:
        return {"left", "right", "centre"}
    return {"left"} if left_gap < right_gap else {"right"}


def _near_miss(gaps: dict[str, float], exact: float, near: float) -> tuple[str, float] | None:
    """The closest of ``gaps`` when none is shared (within ``exact``) and it is missed by at most ``near``."""
    if not gaps or min(gaps.values()) <= exact:
        return None
    name, gap = min(gaps.items(), key=lambda item: item[1])
    return (name, gap) if gap <= near else None


def _misses(a: Element, b: Element, axis: str, exact: float, near: float) -> tuple[str, float] | None:
    """How two siblings miss a shared line on ``axis``: their boxes' lines, or, for stacked boxes,
    the lines their contents are set on (two blocks that both reach the container's right edge
    still show their texts 3 px apart when their left margins differ by 3 px)."""
    gaps = {
        name: abs(read(a.bbox) - read(b.bbox))
        for name, (edge_axis, read) in _EDGES.items()
        if edge_axis == axis
    }
    missed = _near_miss(gaps, exact, near)
    if missed is not None or axis != "x":
        return missed
    content_a, content_b = _content_box(a), _content_box(b)
    if content_a is None or content_b is None:
        return None
    shared = _anchored_lines(a.bbox, content_a, exact) & _anchored_lines(b.bbox, content_b, exact)
    gaps = {name: abs(_EDGES[name][1](content_a) - _EDGES[name][1](content_b)) for name in shared}
    missed = _near_miss(gaps, exact, near)
    return (f"text {missed[0]}", missed[1]) if missed is not None else None


def find_misalignment(
    elements: Sequence[Element], *, tol_px: tuple[float, float] = (1.0, 6.0)
) -> list[Defect]:
    """Siblings of one role meant to share an edge or centre line that miss it by a few pixels.

    Two boxes stacked one above the other (their x-spans overlap) are compared on left, right and
    centre; two side by side (their y-spans overlap) on top, bottom and middle. A pair counts when on
    that axis no line is shared within ``tol_px[0]`` and some line is missed by at most ``tol_px[1]``:
    a near-miss, not a different design. Stacked boxes that share a line are also compared on the
    lines their text is set on (see ``_misses``), for the misalignment a reader sees is the text's.
    """
    exact, near = tol_px
    groups: dict[tuple[str | None, str], list[Element]] = {}
    for element in elements:
        if area(element.bbox) > 0:
            groups.setdefault((element.parent, element.role), []).append(element)
    defects = []
    for siblings in groups.values():
        for i, a in enumerate(siblings):
            check_deadline()
            if len(defects) >= MAX_DEFECTS:
                return defects
            for b in siblings[i + 1 :]:
                if intersection(a.bbox, b.bbox) is not None:
                    continue
                for axis in ("x", "y"):
                    # Stacked boxes (x-spans overlap) share x-lines; boxes in a row share y-lines.
                    if not _spans_overlap(a.bbox, b.bbox, axis):
                        continue
                    missed = _misses(a, b, axis, exact, near)
                    if missed is None:
                        continue
                    name, gap = missed
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
