"""The chart renderer: matplotlib programs, run in the sandbox, inspected for defects.

The program runs in a sandboxed child (vsdpo.render.chart.child); what comes back is plain data,
turned here into a RenderResult whose defects come from the generic checks of vsdpo.render.defects
plus the chart's own knowledge: tick labels and titles must not collide, a legend must not cover data
points, text must not be cut by the figure edge, axes must not leave the figure, subplots meant to
line up must line up.

Everything the child sends back is checked first (vsdpo.render.replies): a reply that breaks its schema or
bounds, or a picture that shows something while the reply lists no element, fails the render with
error kind "invalid_reply"; the checks then run under the render's deadline.
"""

from __future__ import annotations

import time

from vsdpo.render import deadline as clock
from vsdpo.render import defects as checks
from vsdpo.render import replies
from vsdpo.render.sandbox import SandboxLimits, SandboxResult, run_in_sandbox
from vsdpo.render.types import Defect, Element, RenderResult

CHART_ENTRY = "vsdpo.render.chart.child:render_chart_job"
TEXT_ROLES = ("text", "tick_label")
LEGEND_DATA_MIN_POINTS = 1
LEGEND_PATCH_MIN_FRAC = 0.05


def render_chart(
    code: str,
    *,
    timeout_s: float = 20,
    width: int | None = None,
    height: int | None = None,
    limits: SandboxLimits | None = None,
) -> RenderResult:
    """Run matplotlib ``code`` and return its picture, elements with source lines, and defects."""
    started = time.monotonic()
    outcome = run_in_sandbox(
        CHART_ENTRY, {"code": code, "width": width, "height": height}, timeout_s=timeout_s, limits=limits
    )
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
        elements = replies.elements(replies.field(job, "elements", "reply"))
        if not elements and not replies.is_blank(image):
            raise replies.InvalidReply("the picture shows something, yet the reply lists no element")
    except replies.InvalidReply as error:
        return _failed(f"invalid_reply: {error}", "invalid_reply", outcome.elapsed_s)
    canvas = (0.0, 0.0, float(width), float(height))
    try:
        with clock.deadline(deadline):
            found = chart_defects(elements, canvas)
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
    )


def _failed(error: str, error_kind: str, elapsed_s: float) -> RenderResult:
    return RenderResult(kind="chart", ok=False, error=error, error_kind=error_kind, elapsed_s=elapsed_s)


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


def chart_defects(elements: list[Element], canvas: tuple[float, float, float, float]) -> list[Defect]:
    texts = _distinct_texts([e for e in elements if e.role in TEXT_ROLES or e.role == "legend"])
    boxes = [e for e in elements if e.role in ("axes", "legend")]
    axes = [e for e in elements if e.role == "axes"]
    by_id = {e.id: e for e in elements}
    overlaps = checks.find_overlaps(texts, should_not_overlap=_chart_pairs, min_overlap_frac=0.05)
    found = [
        *_merge_tick_overlaps(overlaps, by_id),
        *legend_over_data(elements),
        *checks.find_clipped_text(elements, canvas),
        *checks.find_overflow(boxes, canvas, tol_px=2.0),
        *checks.find_misalignment(axes),
        *checks.find_low_contrast(elements),
    ]
    return found[: checks.MAX_RENDER_DEFECTS]
