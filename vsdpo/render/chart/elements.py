"""Describe a drawn matplotlib figure as elements: boxes in image pixels (y down) and source lines.

Inside the sandbox only; the elements are plain dicts (the fields of vsdpo.render.types.Element).
The caller accepts only the roles and parents given here (vsdpo.render.chart.renderer: CHART_ROLES,
PARENT_ROLES), and element boxes that cover what the picture shows: a new kind of element must be
added there too.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import matplotlib.collections
import matplotlib.lines
import matplotlib.patches
import numpy as np
from matplotlib.colors import to_hex, to_rgba

from vsdpo.render.chart.trace import (
    SAME_INK_DISTANCE,
    config_lines,
    created_line,
    drawn_in_last_draw,
    ink_of,
    lines_of,
)

MAX_POINTS = 400  # data points kept per line or scatter, for the legend-over-data check
MAX_OUTLINE = 400  # corners kept of the outline of a patch that is not an upright rectangle
# An axes lying within another whose area is at least this many times its own is an inset of it.
INSET_AREA_RATIO = 1.5
# A pixel this far (max over channels, 0..255) from a text's colour is not the text's own ink.
INK_DISTANCE = SAME_INK_DISTANCE
# The painted background is read from the pixels when at least this share of a text's box is not ink.
MIN_BACKGROUND_SHARE = 0.2
TICK_CONFIG = {
    "x": (
        "xtick",
        "xlim",
        "xscale",
        "xbound",
        "tick_params",
        "ticklabel_format",
        "locator_params",
        "minorticks",
    ),
    "y": (
        "ytick",
        "ylim",
        "yscale",
        "ybound",
        "tick_params",
        "ticklabel_format",
        "locator_params",
        "minorticks",
    ),
}


class _Frame:
    """Maps display coordinates (pixels, y up) of the figure as just drawn to image pixels (y down).

    The figure is drawn at the saving dpi. For a tight box the picture is a crop of that draw whose
    top-left corner is ``origin`` (in image pixels of the whole figure): boxes shift by it.
    """

    def __init__(self, figure, origin: tuple[int, int] = (0, 0)):
        self.height = float(figure.bbox.height)
        self.left, self.top = origin

    def box(self, extent) -> tuple[float, float, float, float]:
        x0, x1 = float(extent.x0) - self.left, float(extent.x1) - self.left
        y0 = self.height - float(extent.y1) - self.top
        y1 = self.height - float(extent.y0) - self.top
        return (round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2))

    def canvas_box(self, box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
        """A box in pixels of the canvas just drawn (rows from its top) as a box in image pixels."""
        return (
            float(box[0] - self.left),
            float(box[1] - self.top),
            float(box[2] - self.left),
            float(box[3] - self.top),
        )

    def points(self, xy: np.ndarray) -> list[list[float]]:
        out = np.empty_like(xy, dtype=float)
        out[:, 0] = xy[:, 0] - self.left
        out[:, 1] = self.height - xy[:, 1] - self.top
        return np.round(out, 1).tolist()


def _hex(color: Any, background: str | None = None) -> str | None:
    try:
        r, g, b, a = to_rgba(color)
    except (ValueError, TypeError):
        return None
    if background and a < 1:
        br, bg, bb, _ = to_rgba(background)
        r, g, b = (a * r + (1 - a) * br, a * g + (1 - a) * bg, a * b + (1 - a) * bb)
    return to_hex((r, g, b))


def _inside(inner: tuple, outer: tuple) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


class _Collector:
    def __init__(self, figure, renderer, frame: _Frame, figure_face: str):
        self.figure, self.renderer, self.frame = figure, renderer, frame
        self.figure_face = figure_face
        self.elements: list[dict[str, Any]] = []
        self.texts_seen: set[int] = set()  # one element per text, however many lists hold it
        try:
            self.pixels = np.asarray(renderer.buffer_rgba())
        except Exception:  # noqa: BLE001 - a renderer without pixels: backgrounds stay as declared
            self.pixels = None

    def painted_background(self, box: tuple, color: str | None, declared: str) -> str:
        """The colour the picture shows behind a text: the most common pixel of its box that is not
        the text's own ink (bars, wedges and heatmap cells under a label), else ``declared``."""
        if self.pixels is None or color is None:
            return declared
        rows, columns = self.pixels.shape[:2]
        x0, x1 = (int(round(v + self.frame.left)) for v in (box[0], box[2]))
        y0, y1 = (int(round(v + self.frame.top)) for v in (box[1], box[3]))
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, columns), min(y1, rows)
        if x1 <= x0 or y1 <= y0:
            return declared
        patch = self.pixels[y0:y1, x0:x1].reshape(-1, 4).astype(np.int32)
        alpha = patch[:, 3:4] / 255.0
        rgb = np.round(patch[:, :3] * alpha + 255 * (1 - alpha)).astype(np.int32)  # over white paper
        ink = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
        behind = rgb[np.abs(rgb - ink).max(axis=1) > INK_DISTANCE]
        if len(behind) < MIN_BACKGROUND_SHARE * len(rgb):
            return declared
        packed = behind[:, 0] << 16 | behind[:, 1] << 8 | behind[:, 2]
        values, counts = np.unique(packed, return_counts=True)
        common = int(values[np.argmax(counts)])
        return f"#{common:06x}"

    def add(
        self, artist, element_id: str, role: str, lines: set[int], parent: str | None = None, **fields
    ) -> dict | None:
        if not artist.get_visible():
            return None
        try:
            extent = artist.get_window_extent(self.renderer)
        except Exception:  # noqa: BLE001 - some artists cannot say where they are; they are left out
            extent = None
        if extent is None or not np.all(np.isfinite([extent.x0, extent.y0, extent.x1, extent.y1])):
            extent = _clipped_collection_extent(artist)
            if extent is None:
                return None
        element = {
            "id": element_id,
            "role": role,
            "bbox": self.frame.box(extent),
            "lines": sorted(int(line) for line in lines),
            "parent": parent,
            "extra": {},
            **fields,
        }
        self.elements.append(element)
        return element

    def text(
        self,
        text,
        element_id: str,
        lines: set[int],
        parent: str | None,
        background: str,
        role="text",
        owner=None,
    ):
        content = text.get_text()
        if not content or not content.strip():
            return None
        # Only what the picture shows: a text the draw skipped (hidden, outside the view) is not there,
        # and a text held by two lists (a suptitle is also a figure text) is one element.
        if id(text) in self.texts_seen or not drawn_in_last_draw(text):
            return None
        self.texts_seen.add(id(text))
        lines = lines | lines_of(text)
        # Texts the axes made for itself (titles, tick labels) carry its creation line; blame it only when alone.
        made_with_owner = created_line(owner) if owner is not None else None
        if made_with_owner in lines and len(lines) > 1:
            lines = lines - {made_with_owner}
        patch = text.get_bbox_patch()
        if patch is not None and patch.get_visible() and to_rgba(patch.get_facecolor())[3] > 0:
            background = _hex(patch.get_facecolor(), background) or background
        element = self.add(
            text,
            element_id,
            role,
            lines,
            parent,
            text=content,
            color=_hex(text.get_color(), background),
            background=background,
        )
        if element is not None:
            ink = ink_of(text)
            if ink is not None and ink[0] is not None:
                # What the glyphs painted: their box, and the colour that lay under them when they were
                # painted (a marker or bar edge next to a small label is not its background).
                element["extra"]["ink"] = list(self.frame.canvas_box(ink[0]))
                element["extra"]["ink_rows"] = [
                    list(self.frame.canvas_box((left, top, right, bottom)))
                    for top, bottom, left, right in ink[2]
                ]
            if ink is not None and ink[1] is not None:
                element["background"] = "#{:02x}{:02x}{:02x}".format(*ink[1])
            else:
                element["background"] = self.painted_background(element["bbox"], element["color"], background)
            weight = text.get_fontweight()
            bold = weight in ("bold", "heavy", "black", "semibold", "demibold", "extra bold") or (
                isinstance(weight, int | float) and weight >= 600
            )
            element["extra"].update(font_px=round(float(text.get_fontsize()) * 4 / 3, 2), bold=bool(bold))
            corners = self.turned_corners(text)
            if corners is not None:
                element["extra"]["corners"] = corners
            clip = self.clip_box(text)
            if clip is not None:
                # A text clipped to its axes (clip_on=True) shows only what lies inside them.
                element["extra"]["clip"] = list(clip)
        return element

    def clip_box(self, artist) -> tuple | None:
        """The box (image pixels) that clips ``artist`` as drawn, where it is clipped to one."""
        if not artist.get_clip_on() or artist.get_clip_box() is None:
            return None
        extent = artist.get_clip_box()
        if not np.all(np.isfinite(extent.extents)):
            return None
        return self.frame.box(extent)

    def outline(self, patch, clip: tuple | None) -> list[list[float]] | None:
        """The drawn outline of a patch that is not an upright rectangle (a histogram's step polygon, a
        pie wedge), cut to its clip box: its box takes in corners of empty axes the legend may sit on."""
        if isinstance(patch, matplotlib.patches.Rectangle) and float(patch.get_angle()) % 360 == 0:
            return None
        try:
            polygons = patch.get_path().to_polygons(patch.get_transform(), closed_only=False)
        except Exception:  # noqa: BLE001 - a path this version cannot turn into polygons: its box stands
            return None
        if len(polygons) != 1 or len(polygons[0]) < 3:
            return None
        corners = np.asarray(polygons[0], dtype=float)
        corners = corners[:: max(1, -(-len(corners) // MAX_OUTLINE))]
        corners = np.asarray(self.frame.points(corners), dtype=float)
        if not np.all(np.isfinite(corners)):
            return None
        if clip is not None:
            corners = _clip_to_box(corners, clip)
        if len(corners) < 3:
            return None
        corners = corners[:: max(1, -(-len(corners) // MAX_OUTLINE))]
        return np.round(corners, 1).tolist()

    def turned_corners(self, text) -> list[list[float]] | None:
        """The four corners (image pixels) of a text set at an angle that is not a multiple of 90°.

        Such a text's box is the upright box around its slanted rectangle, which takes in the corners
        of empty page on either side; neighbouring slanted labels share those corners, not ink.
        """
        angle = float(text.get_rotation()) % 90.0
        if min(angle, 90.0 - angle) < 0.5:
            return None
        try:
            size = text._get_layout(self.renderer)[2][1]
            width, height = (float(v) for v in size)
        except Exception:  # noqa: BLE001 - a layout this version does not describe: keep the upright box
            return None
        extent = text.get_window_extent(self.renderer)
        if not np.all(np.isfinite([width, height, extent.x0, extent.x1, extent.y0, extent.y1])):
            return None
        turn = np.radians(float(text.get_rotation()))
        cos, sin = abs(np.cos(turn)), abs(np.sin(turn))
        # The slanted rectangle must fill the upright box it came from, else the layout was misread.
        if (
            abs(width * cos + height * sin - extent.width) > 2
            or abs(width * sin + height * cos - extent.height) > 2
        ):
            return None
        centre = np.array([(extent.x0 + extent.x1) / 2, (extent.y0 + extent.y1) / 2])
        rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [width / 2, height / 2]
        return self.frame.points(centre + half @ rotation.T)

    def data(self, artist, element_id: str, role: str, parent: str, axes_box: tuple) -> None:
        element = self.add(artist, element_id, role, lines_of(artist), parent)
        if element is None:
            return
        clip = self.clip_box(artist)
        if clip is not None:
            # What the clip box cuts away is not drawn: a bar reaching below the axes' limits ends there.
            shown = _intersect(element["bbox"], clip)
            if shown is None:
                self.elements.remove(element)
                return
            element["bbox"] = shown
        if isinstance(artist, matplotlib.patches.Patch):
            outline = self.outline(artist, clip)
            if outline is not None:
                element["extra"]["outline"] = outline
        xy = None
        if _is_guide(artist):
            # A reference line across the axes (axhline, axvline) is set in axes coordinates along its
            # length: it crosses whatever lies on its way, a legend included, and holds no data points.
            element["extra"]["guide"] = True
        elif isinstance(artist, matplotlib.lines.Line2D):
            xy = artist.get_transform().transform(np.asarray(artist.get_xydata(), dtype=float))
            if artist.get_linestyle() not in ("None", "none", " ", ""):
                xy = _along(xy)
        elif isinstance(artist, matplotlib.collections.Collection) and len(artist.get_offsets()):
            xy = artist.get_offset_transform().transform(np.asarray(artist.get_offsets(), dtype=float))
        if xy is not None:
            points = np.asarray(self.frame.points(xy[np.all(np.isfinite(xy), axis=1)]))
            if len(points):
                keep = (
                    (points[:, 0] >= axes_box[0])
                    & (points[:, 0] <= axes_box[2])
                    & (points[:, 1] >= axes_box[1])
                    & (points[:, 1] <= axes_box[3])
                )
                points = points[keep]
            step = max(1, len(points) // MAX_POINTS)
            element["extra"]["points"] = points[::step].tolist()


def _clipped_collection_extent(artist):
    """Where a collection that cannot give its own extent may draw: its clip box. Some collections
    (networkx's nodes and edges, drawn with offsets in data coordinates) answer an infinite extent,
    yet they are drawn, and a reply that left them out would describe less than the picture shows."""
    if not isinstance(artist, matplotlib.collections.Collection) or not artist.get_clip_on():
        return None
    clip = artist.get_clip_box()
    if clip is None or not np.all(np.isfinite(clip.extents)):
        return None
    return clip


def _intersect(a: tuple, b: tuple) -> tuple | None:
    """The common part of two boxes, a line's zero-width box included; None when they do not meet."""
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[2] >= box[0] and box[3] >= box[1] else None


def _clip_to_box(polygon: np.ndarray, box: tuple) -> np.ndarray:
    """The part of ``polygon`` (corners, image pixels) inside the upright ``box`` (Sutherland-Hodgman;
    a concave polygon stays correct in area)."""
    points = polygon
    for axis, bound, keep_below in (
        (0, box[0], False),
        (0, box[2], True),
        (1, box[1], False),
        (1, box[3], True),
    ):
        if not len(points):
            break
        inside = points[:, axis] <= bound if keep_below else points[:, axis] >= bound
        following = np.roll(points, -1, axis=0)
        following_inside = np.roll(inside, -1)
        out = []
        for point, nxt, here, there in zip(points, following, inside, following_inside, strict=True):
            if here:
                out.append(point)
            if here != there:
                t = (bound - point[axis]) / (nxt[axis] - point[axis])
                out.append(point + t * (nxt - point))
        points = np.asarray(out, dtype=float).reshape(-1, 2)
    return points


def _is_guide(artist) -> bool:
    """A line drawn in axes coordinates along one axis (as axhline and axvline draw them)."""
    ax = artist.axes
    if ax is None or not isinstance(artist, matplotlib.lines.Line2D):
        return False
    try:
        spans = (ax.get_xaxis_transform(which="grid"), ax.get_yaxis_transform(which="grid"))
    except Exception:  # noqa: BLE001 - axes without such transforms (some projections) have no guides
        return False
    return any(artist.get_transform() is span for span in spans)


def _along(xy: np.ndarray, spacing_px: float = 4.0) -> np.ndarray:
    """Points along a drawn polyline, a few pixels apart, so that a box over a segment is seen."""
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if len(xy) < 2:
        return xy
    steps = np.maximum(1, np.ceil(np.hypot(*np.diff(xy, axis=0).T) / spacing_px)).astype(int)
    steps = np.minimum(steps, 2000)
    pieces = [
        xy[i] + np.linspace(0, 1, n, endpoint=False)[:, None] * (xy[i + 1] - xy[i])
        for i, n in enumerate(steps)
    ]
    return np.concatenate([*pieces, xy[-1:]])


def _axes_face(ax, figure_face: str) -> str:
    face = ax.patch.get_facecolor()
    if not ax.patch.get_visible() or to_rgba(face)[3] == 0:
        return figure_face
    return _hex(face, figure_face) or figure_face


def _legend(collector: _Collector, legend, legend_id: str, parent: str | None, background: str) -> None:
    element = collector.add(legend, legend_id, "legend", lines_of(legend), parent)
    if element is None:
        return
    frame = legend.get_frame()
    face = background
    if legend.get_frame_on() and to_rgba(frame.get_facecolor())[3] > 0:
        face = _hex(frame.get_facecolor(), background) or background
    element["background"] = face
    for index, text in enumerate(legend.get_texts()):
        collector.text(text, f"{legend_id}.text{index}", lines_of(legend), legend_id, face)
    if legend.get_title().get_text():
        collector.text(legend.get_title(), f"{legend_id}.title", lines_of(legend), legend_id, face)
    if not _frame_drawn(legend):
        # Without a frame the legend paints only its entries: the box around their line boxes and
        # padding is empty, and another text may come up to its glyphs and markers.
        drawn = _painted_entries(collector, legend, legend_id)
        if drawn is not None:
            element["bbox"] = drawn


def _painted_entries(collector: _Collector, legend, legend_id: str) -> tuple | None:
    """The box around what a frameless legend paints: its texts' ink and its handles."""
    boxes = [
        tuple(e["extra"].get("ink") or e["bbox"])
        for e in collector.elements
        if e["parent"] == legend_id and e.get("text")
    ]
    for handle in getattr(legend, "legend_handles", None) or getattr(legend, "legendHandles", []):
        try:
            if handle is None or not handle.get_visible():
                continue
            extent = handle.get_window_extent(collector.renderer)
        except Exception:  # noqa: BLE001 - a handle that cannot say where it is: left out
            continue
        if np.all(np.isfinite(extent.extents)) and extent.width > 0 and extent.height > 0:
            boxes.append(collector.frame.box(extent))
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _frame_drawn(legend) -> bool:
    """Whether a legend's frame paints anything: a face or an edge that can be seen."""
    frame = legend.get_frame()
    if not legend.get_frame_on() or not frame.get_visible():
        return False
    face = to_rgba(frame.get_facecolor())[3] > 0
    edge = frame.get_linewidth() > 0 and to_rgba(frame.get_edgecolor())[3] > 0
    return face or edge


def _tick_labels(collector: _Collector, ax, axes_id: str, axes_face: str) -> None:
    figure_face = collector.figure_face
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        if not axis.get_visible():
            continue
        configured = config_lines(ax, *TICK_CONFIG[name]) | config_lines(axis, "")
        # The line that made the axes configures every axis in passing; it is blamed only when alone.
        configured.discard(created_line(ax))
        if not configured and created_line(ax) is not None:
            configured = {created_line(ax)}
        # The ticks as drawn: the text checks keep only the labels this draw painted (those inside the
        # view; for 3-D axes, those its own drawing placed). Asking the axis again would move them.
        ticks = [*axis.majorTicks, *axis.minorTicks]
        for index, tick in enumerate(ticks):
            for side, label in (("", tick.label1), ("2", tick.label2)):
                if label.get_visible() and tick.get_visible():
                    collector.text(
                        label,
                        f"{axes_id}.{name}tick{index}{side}",
                        configured,
                        axes_id,
                        figure_face,
                        role="tick_label",
                        owner=ax,
                    )
        collector.text(axis.label, f"{axes_id}.{name}label", set(), axes_id, figure_face, owner=ax)
        collector.text(
            axis.get_offset_text(), f"{axes_id}.{name}offset", configured, axes_id, figure_face, owner=ax
        )


def _nest_insets(elements: list[dict]) -> None:
    """An axes drawn within a larger one (an inset, a zoom) belongs to it, not to the figure's grid:
    its parent becomes the smallest axes around it, so that it lines up only with its fellow insets."""
    axes = [e for e in elements if e["role"] == "axes"]

    def size(box) -> float:
        return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])

    for inner in axes:
        box = inner["bbox"]
        hosts = [
            outer
            for outer in axes
            if outer is not inner
            and size(outer["bbox"]) >= INSET_AREA_RATIO * size(box) > 0
            and outer["bbox"][0] <= box[0]
            and outer["bbox"][1] <= box[1]
            and box[2] <= outer["bbox"][2]
            and box[3] <= outer["bbox"][3]
        ]
        if hosts:
            inner["parent"] = min(hosts, key=lambda outer: size(outer["bbox"]))["id"]


def extract_elements(
    figure, renderer, crop: tuple[int, int, int, int] | None = None
) -> tuple[list[dict], tuple[int, int]]:
    """List the elements of ``figure`` as ``renderer`` has just drawn it for the picture.

    Returns (elements, (width, height) in image pixels). Call it right after the draw of the picture
    (the chart job does), when display coordinates are pixels at the saving dpi. ``crop`` (left, top,
    width, height in image pixels of the drawn figure) is the part of the draw that is the picture.
    """
    frame = _Frame(figure, crop[:2] if crop else (0, 0))
    figure_face = _hex(figure.get_facecolor(), "#ffffff") or "#ffffff"
    collector = _Collector(figure, renderer, frame, figure_face)
    for axes_index, ax in enumerate(figure.axes):
        axes_id = f"axes{axes_index}"
        axes_element = collector.add(ax, axes_id, "axes", lines_of(ax), "figure")
        if axes_element is None:
            continue
        axes_box = axes_element["bbox"]
        face = _axes_face(ax, figure_face)
        axes_element["background"] = face
        for title_name in ("title", "_left_title", "_right_title"):
            title = getattr(ax, title_name, None)
            if title is not None:
                collector.text(
                    title, f"{axes_id}.{title_name.strip('_')}", set(), axes_id, figure_face, owner=ax
                )
        _tick_labels(collector, ax, axes_id, face)
        for index, text in enumerate(ax.texts):
            inside = _inside(frame.box(text.get_window_extent(renderer)), axes_box)
            collector.text(text, f"{axes_id}.text{index}", set(), axes_id, face if inside else figure_face)
        for kind, artists in (("line", ax.lines), ("patch", ax.patches), ("collection", ax.collections)):
            for index, artist in enumerate(artists):
                collector.data(artist, f"{axes_id}.{kind}{index}", kind, axes_id, axes_box)
        for index, image in enumerate(ax.images):
            collector.add(image, f"{axes_id}.image{index}", "image", lines_of(image), axes_id)
        if ax.get_legend() is not None:
            _legend(collector, ax.get_legend(), f"{axes_id}.legend", axes_id, face)
    _nest_insets(collector.elements)
    for index, text in enumerate(figure.texts):
        collector.text(text, f"figure.text{index}", set(), None, figure_face)
    for name in ("_suptitle", "_supxlabel", "_supylabel"):
        text = getattr(figure, name, None)
        if text is not None:
            collector.text(text, f"figure.{name.strip('_')}", set(), None, figure_face)
    for index, legend in enumerate(figure.legends):
        _legend(collector, legend, f"figure.legend{index}", None, figure_face)
    if crop:
        return collector.elements, (crop[2], crop[3])
    return collector.elements, (round(float(figure.bbox.width)), round(float(figure.bbox.height)))
