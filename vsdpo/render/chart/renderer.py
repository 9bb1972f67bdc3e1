"""The chart renderer: matplotlib programs, run in the sandbox, inspected for defects.

The program runs in a sandboxed child (vsdpo.render.chart.child); what comes back is plain data,
turned here into a RenderResult whose defects come from the generic checks of vsdpo.render.defects
plus the chart's own knowledge: tick labels and titles must not collide, a legend must not cover data
points, text must not be cut by the figure edge, axes must not leave the figure, subplots meant to
line up must line up.

Everything the child sends back is checked first (vsdpo.render.replies): a reply that breaks its schema or
bounds, or a picture that shows something while the reply lists no element, fails the render with
error kind "invalid_reply"; the checks then run under the render's deadline.

The reply is the program's to forge (it shares the child's process), so it is also checked against
what the child itself would write and against the picture (``check_reply_against_picture``): only
the roles the child gives its elements, only the parents it gives them (so that no element can make
two colliding texts its "descendants" and exempt them from the overlap check), and element boxes
that account for what the picture shows. A reply of one element covering the figure, or one that
leaves the drawing it hides out, is refused.

``chartmimic=True`` asks the child to record the program's ChartMimic trace in the same run
(``RenderResult.record["chartmimic"]``, None where that run cannot give the benchmark's trace), so
that :func:`vsdpo.metrics.chartmimic.score` need not run the program again.
"""

from __future__ import annotations

import math
import time
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image

from vsdpo.render import deadline as clock
from vsdpo.render import defects as checks
from vsdpo.render import replies
from vsdpo.render.sandbox import SandboxLimits, SandboxResult, run_in_sandbox
from vsdpo.render.types import Defect, Element, RenderResult

CHART_ENTRY = "vsdpo.render.chart.child:render_chart_job"
TEXT_ROLES = ("text", "tick_label")
# The roles vsdpo.render.chart.elements gives the elements it lists, and the roles each may have
# for its parent (None: none; "figure": the figure, which is no element).
DATA_ROLES = ("line", "patch", "collection", "image")
CHART_ROLES = frozenset({"axes", "legend", *TEXT_ROLES, *DATA_ROLES})
PARENT_ROLES: dict[str, frozenset[str | None]] = {
    "axes": frozenset({"figure", "axes"}),
    "legend": frozenset({None, "axes"}),
    **{role: frozenset({None, "axes", "legend"}) for role in TEXT_ROLES},
    **{role: frozenset({"axes"}) for role in DATA_ROLES},
}
# Containers draw their frame; what lies inside one is accounted for by what it holds.
CONTAINER_ROLES = frozenset({"axes", "legend"})
# A pixel this far (max over channels, 0..255) from the picture's border colour is ink.
INK_DISTANCE = 24
# Element boxes are grown by this much when they account for ink: tick marks, spine ends, antialiasing.
COVER_MARGIN_PX = 6
# The share of a picture's ink that no element's box may leave uncovered. Honest replies of the 499
# ChartMimic programs leave at most 10.3% (tables, arrows of annotations and figure-level artists the
# child does not list), 99% of them under 2% (bench/detection_rates.py --replies); a reply that leaves more than half describes some
# other picture, or leaves out what it does not want checked.
MAX_UNACCOUNTED_INK = 0.5
LEGEND_DATA_MIN_POINTS = 1
LEGEND_PATCH_MIN_FRAC = 0.05
# A recorded ChartMimic trace lists at most this many texts, colours, cells or functions.
MAX_RECORDED = 1_000_000
CELL = ("nrows", "ncols", "row_start", "row_end", "col_start", "col_end")


def render_chart(
    code: str,
    *,
    timeout_s: float = 20,
    width: int | None = None,
    height: int | None = None,
    limits: SandboxLimits | None = None,
    chartmimic: bool = False,
) -> RenderResult:
    """Run matplotlib ``code`` and return its picture, elements with source lines, and defects; with
    ``chartmimic``, also the program's ChartMimic trace where its run can record it (``record``)."""
    started = time.monotonic()
    payload: dict[str, Any] = {"code": code, "width": width, "height": height}
    if chartmimic:
        payload["chartmimic"] = True
    outcome = run_in_sandbox(CHART_ENTRY, payload, timeout_s=timeout_s, limits=limits)
    return render_chart_outcome(outcome, deadline=clock.checks_deadline(started, timeout_s))


def render_chart_outcome(outcome: SandboxResult, *, deadline: float | None = None) -> RenderResult:
    """The RenderResult of a finished chart job (from run_in_sandbox or a pool's map); its defect
    checks stop at ``deadline`` (time.monotonic(); default: 20 s from now)."""
    if deadline is None:
        deadline = clock.checks_deadline(time.monotonic(), 20.0)
    if not outcome.ok:
        return RenderResult(
            kind="chart",
            ok=False,
            error=f"{outcome.error_kind}: {outcome.error}",
            elapsed_s=outcome.elapsed_s,
            error_kind=outcome.error_kind,
        )
    try:
        job = outcome.value
        if not replies.boolean(replies.field(job, "ok", "reply"), "reply.ok"):
            message, lines = replies.failure(job, "reply")
            result = RenderResult.failure("chart", message, lines)
            result.elapsed_s = outcome.elapsed_s
            return result
        image, width, height = replies.image(
            replies.field(job, "image", "reply"),
            replies.field(job, "width", "reply"),
            replies.field(job, "height", "reply"),
        )
        elements = replies.elements(replies.field(job, "elements", "reply"), roles=CHART_ROLES)
        if not elements and not replies.is_blank(image):
            raise replies.InvalidReply("the picture shows something, yet the reply lists no element")
        record = chartmimic_record(job.get("record"))
    except replies.InvalidReply as error:
        return _failed(f"invalid_reply: {error}", "invalid_reply", outcome.elapsed_s)
    canvas = (0.0, 0.0, float(width), float(height))
    try:
        with clock.deadline(deadline):
            check_reply_against_picture(elements, image)
            found = chart_defects(elements, canvas)
    except replies.InvalidReply as error:
        return _failed(f"invalid_reply: {error}", "invalid_reply", outcome.elapsed_s)
    except clock.DeadlineExceeded as error:
        return _failed(f"timeout: {error}", "timeout", outcome.elapsed_s)
    return RenderResult(
        kind="chart",
        ok=True,
        image=image,
        width=width,
        height=height,
        elements=elements,
        defects=found,
        elapsed_s=outcome.elapsed_s,
        record=record,
    )


def chartmimic_record(value: Any) -> dict[str, Any] | None:
    """The record of the reply (``{"chartmimic": trace or None}``) checked against the schema the
    child writes (vsdpo.metrics.chartmimic_trace.finish_recording); raises InvalidReply."""
    if value is None:
        return None
    where = "reply.record.chartmimic"
    trace = replies.field(value, "chartmimic", "reply.record")
    if trace is None:
        return {"chartmimic": None}
    texts = replies.items(replies.field(trace, "texts", where), f"{where}.texts", MAX_RECORDED)
    colors = replies.items(replies.field(trace, "colors", where), f"{where}.colors", MAX_RECORDED)
    for item in (*texts, *colors):
        if not isinstance(item, str):
            raise replies.InvalidReply(f"{where}: expected strings, got {type(item).__name__}")
    layout = []
    for cell in replies.items(replies.field(trace, "layout", where), f"{where}.layout", MAX_RECORDED):
        layout.append(
            {
                key: replies.integer(replies.field(cell, key, f"{where}.layout"), where, 0, 1 << 30)
                for key in CELL
            }
        )
    types = replies.field(trace, "types", where)
    if not isinstance(types, dict) or len(types) > MAX_RECORDED:
        raise replies.InvalidReply(f"{where}.types: expected a dict of counts")
    counts = {}
    for name, count in types.items():
        if not isinstance(name, str):
            raise replies.InvalidReply(f"{where}.types: expected function names, got {type(name).__name__}")
        counts[name] = replies.integer(count, f"{where}.types", 0, 1 << 62)
    axes = replies.integer(replies.field(trace, "axes", where), f"{where}.axes", 0, 1 << 30)
    compat = replies.boolean(replies.field(trace, "compat", where), f"{where}.compat")
    checked = {"texts": list(texts), "layout": layout, "axes": axes, "types": counts, "colors": list(colors)}
    return {"chartmimic": {**checked, "compat": compat}}


def _failed(error: str, error_kind: str, elapsed_s: float) -> RenderResult:
    return RenderResult(kind="chart", ok=False, error=error, error_kind=error_kind, elapsed_s=elapsed_s)


# ---------------------------------------------------------------------------------------------- the reply


def check_reply_against_picture(elements: list[Element], image: bytes) -> None:
    """Raise InvalidReply for a reply the child would not have written about this picture.

    - Parents as the child gives them (``PARENT_ROLES``): the overlap check exempts an element and
      its ancestors, so a text made the parent of another, or a bogus container holding every text,
      would exempt each collision it "contains". Only a legend holds texts, and only its own.
    - The boxes account for the picture's ink (``unaccounted_ink``): a reply of one small element, or
      one that leaves out the texts it does not want checked, leaves their ink uncovered. An axes or
      legend that holds no element accounts only for its frame: one bogus container over the whole
      figure covers nothing.
    """
    by_id = {element.id: element for element in elements}
    for element in elements:
        if element.parent is None:
            parent_role = None
        elif element.parent in by_id:
            parent_role = by_id[element.parent].role
        else:  # the figure is the one parent that is no element
            parent_role = "figure" if element.parent == "figure" else "missing"
        if parent_role not in PARENT_ROLES[element.role]:
            raise replies.InvalidReply(
                f"elements: {element.role} {element.id[:40]!r} has a parent of role "
                f"{str(parent_role)[:40]!r}; the chart's own elements never do"
            )
    share = unaccounted_ink(image, elements)
    if share > MAX_UNACCOUNTED_INK:
        raise replies.InvalidReply(
            f"elements: {share:.0%} of what the picture shows lies in no element's box; "
            "the reply does not describe its picture"
        )


def unaccounted_ink(image: bytes, elements: list[Element]) -> float:
    """The share of the picture's ink (pixels unlike the colour of its border, over white where it is
    transparent) that lies in no element's box grown by ``COVER_MARGIN_PX``. An axes or legend holding
    no element covers only a band along its edges (its frame). Boxes are summed in a difference table:
    the cost is the picture's pixels plus the elements, whatever their boxes."""
    with Image.open(BytesIO(image)) as picture:
        rgba = np.asarray(picture.convert("RGBA"))
    if (rgba[..., 3] == 255).all():  # the usual chart: opaque, nothing to blend
        rgb = rgba[..., :3]
    else:
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = np.rint(rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    height, width = rgb.shape[:2]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int32)
    packed = border[:, 0] << 16 | border[:, 1] << 8 | border[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    common = int(values[np.argmax(counts)])
    ink = _unlike(rgb, (common >> 16, (common >> 8) & 255, common & 255), INK_DISTANCE)
    total = int(ink.sum())
    if total == 0:
        return 0.0
    clock.check_deadline()
    holders = {element.parent for element in elements}
    table = np.zeros((height + 1, width + 1), dtype=np.int32)
    margin = COVER_MARGIN_PX
    for index, element in enumerate(elements):
        if index % 256 == 0:
            clock.check_deadline()
        x0, y0, x1, y1 = element.bbox
        if element.role in CONTAINER_ROLES and element.id not in holders:
            boxes = [
                (x0 - margin, y0 - margin, x1 + margin, y0 + margin),
                (x0 - margin, y1 - margin, x1 + margin, y1 + margin),
                (x0 - margin, y0 - margin, x0 + margin, y1 + margin),
                (x1 - margin, y0 - margin, x1 + margin, y1 + margin),
            ]
        else:
            boxes = [(x0 - margin, y0 - margin, x1 + margin, y1 + margin)]
        for left, top, right, bottom in boxes:
            left, top = max(0, math.floor(left)), max(0, math.floor(top))
            right, bottom = min(width, math.ceil(right)), min(height, math.ceil(bottom))
            if right > left and bottom > top:
                table[top, left] += 1
                table[top, right] -= 1
                table[bottom, left] -= 1
                table[bottom, right] += 1
    covered = table.cumsum(axis=0).cumsum(axis=1)[:height, :width] > 0
    return float((ink & ~covered).sum()) / total


def _unlike(rgb: np.ndarray, paper: tuple[int, int, int], distance: int) -> np.ndarray:
    """Pixels of the uint8 picture ``rgb`` farther than ``distance`` from ``paper`` in some channel:
    ``abs(rgb - paper).max(axis=2) > distance``, in compares of the bytes themselves (no wider copy
    of the picture, no reduction over its short last axis)."""
    ink = np.zeros(rgb.shape[:2], dtype=bool)
    for channel, level in enumerate(paper):
        plane = rgb[..., channel]
        if level + distance < 255:
            ink |= plane > level + distance
        if level - distance > 0:
            ink |= plane < level - distance
    return ink


def _chart_pairs(a: Element, b: Element) -> bool:
    """Text may not touch text or a legend; data and shapes overlap by design in charts."""
    roles = {a.role, b.role}
    if roles <= set(TEXT_ROLES):
        # Texts inside one legend are laid out by matplotlib; only its own squeeze could make them collide.
        return True
    return bool(roles & set(TEXT_ROLES)) and "legend" in roles


def legend_over_data(elements: list[Element]) -> list[Defect]:
    """A legend box that covers data points of its axes (or of any axes under it), or bars."""
    found = []
    legends = [e for e in elements if e.role == "legend"]
    data = [e for e in elements if e.role in ("line", "collection", "patch")]
    for legend in legends:
        x0, y0, x1, y1 = legend.bbox
        for item in data:
            clock.check_deadline()
            points = item.extra.get("points")
            if points is not None:
                covered = sum(1 for x, y in points if x0 <= x <= x1 and y0 <= y <= y1)
                if covered < LEGEND_DATA_MIN_POINTS:
                    continue
                fraction = covered / max(len(points), 1)
                detail = f"{covered} of {len(points)} data points"
            elif item.role == "patch":
                fraction = _covered_fraction(legend.bbox, item)
                if fraction < LEGEND_PATCH_MIN_FRAC:
                    continue
                detail = f"{fraction:.0%} of a bar or patch"
            else:
                continue
            found.append(
                Defect(
                    kind="overlap",
                    severity=min(1.0, max(0.1, fraction)),
                    elements=[legend.id, item.id],
                    lines=sorted(set(legend.lines) | set(item.lines)),
                    message=f"legend covers {detail} of {item.role} {item.id}",
                )
            )
    return found


def _covered_fraction(box: tuple[float, float, float, float], patch: Element) -> float:
    """How much of a patch ``box`` covers: of its drawn outline where the patch is not an upright
    rectangle (``extra["outline"]``: a histogram's steps, a wedge), else of its box."""
    outline = patch.extra.get("outline")
    if isinstance(outline, list) and len(outline) >= 3:
        polygon = [(float(x), float(y)) for x, y in outline]
        whole = checks._polygon_area(polygon)
        if whole > 0:
            inside = checks._clip_polygon(polygon, checks._box_corners(box))
            return checks._polygon_area(inside) / whole if len(inside) >= 3 else 0.0
    shared = checks.intersection(box, patch.bbox)
    return checks.area(shared) / max(checks.area(patch.bbox), 1e-9) if shared else 0.0


def _distinct_texts(elements: list[Element]) -> list[Element]:
    """``elements`` without the second drawing of a text drawn twice in one spot (the same words,
    colour and size, the same box to the pixel: a label put again on a closed radar line, a tick given
    twice): the picture shows one text, not two that collide."""
    kept: list[Element] = []
    seen: set[tuple] = set()
    for element in elements:
        if element.role in TEXT_ROLES and element.text:
            # Boxes to the pixel: a set, so that thousands of texts cost what they number.
            key = (
                element.text.strip(),
                element.color,
                element.extra.get("font_px"),
                *map(round, element.bbox),
            )
            if key in seen:
                continue
            seen.add(key)
        kept.append(element)
    return kept


def _merge_tick_overlaps(found: list[Defect], by_id: dict[str, Element]) -> list[Defect]:
    """Colliding tick labels of one axis are one defect (one fix: rotate, thin or shrink them)."""
    merged: dict[str, Defect] = {}
    others = []
    for defect in found:
        a, b = (by_id[element_id] for element_id in defect.elements)
        axis = a.id.rsplit("tick", 1)[0]
        if a.role == b.role == "tick_label" and axis == b.id.rsplit("tick", 1)[0]:
            if axis not in merged:
                merged[axis] = Defect("overlap", defect.severity, [], [], "")
            group = merged[axis]
            group.severity = max(group.severity, defect.severity)
            group.elements = sorted(set(group.elements) | {a.id, b.id})
            group.lines = sorted(set(group.lines) | set(defect.lines))
        else:
            others.append(defect)
    for axis, group in merged.items():
        group.message = (
            f"{len(group.elements)} tick labels of {axis.replace('.', ' ')} axis overlap each other"
        )
    return [*merged.values(), *others]


def _text_clip_boxes(elements: list[Element]) -> dict[str, tuple[float, float, float, float]]:
    """The boxes that clip texts drawn with ``clip_on=True`` (``extra["clip"]``): the part of such a
    text outside its axes is cut off, as a text past the figure's edge is."""
    boxes = {}
    for element in elements:
        clip = element.extra.get("clip")
        if element.role not in TEXT_ROLES or not isinstance(clip, list) or len(clip) != 4:
            continue
        if all(isinstance(v, int | float) and math.isfinite(v) for v in clip):
            boxes[element.id] = (float(clip[0]), float(clip[1]), float(clip[2]), float(clip[3]))
    return boxes


def chart_defects(elements: list[Element], canvas: tuple[float, float, float, float]) -> list[Defect]:
    texts = _distinct_texts([e for e in elements if e.role in TEXT_ROLES or e.role == "legend"])
    boxes = [e for e in elements if e.role in ("axes", "legend")]
    axes = [e for e in elements if e.role == "axes"]
    by_id = {e.id: e for e in elements}
    overlaps = checks.find_overlaps(texts, should_not_overlap=_chart_pairs, min_overlap_frac=0.05)
    found = [
        *_merge_tick_overlaps(overlaps, by_id),
        *legend_over_data(elements),
        *checks.find_clipped_text(elements, canvas, clip_boxes=_text_clip_boxes(elements)),
        *checks.find_overflow(boxes, canvas, tol_px=2.0),
        *checks.find_misalignment(axes),
        *checks.find_low_contrast(elements),
    ]
    return found[: checks.MAX_RENDER_DEFECTS]
