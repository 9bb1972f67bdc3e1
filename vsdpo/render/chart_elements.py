"""Describe a drawn matplotlib figure as elements: boxes in image pixels (y down) and source lines.

Inside the sandbox only; the elements are plain dicts (the fields of vsdpo.render.types.Element).
"""

from __future__ import annotations

from typing import Any

import matplotlib
import matplotlib.collections
import matplotlib.lines
import numpy as np
from matplotlib.colors import to_hex, to_rgba

from vsdpo.render.chart_trace import config_lines, created_line, lines_of

MAX_POINTS = 400  # data points kept per line or scatter, for the legend-over-data check
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

    def add(
        self, artist, element_id: str, role: str, lines: set[int], parent: str | None = None, **fields
    ) -> dict | None:
        if not artist.get_visible():
            return None
        try:
            extent = artist.get_window_extent(self.renderer)
        except Exception:  # noqa: BLE001 - some artists cannot say where they are; they are left out
            return None
        if extent is None or not np.all(np.isfinite([extent.x0, extent.y0, extent.x1, extent.y1])):
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
            weight = text.get_fontweight()
            bold = weight in ("bold", "heavy", "black", "semibold", "demibold", "extra bold") or (
                isinstance(weight, int | float) and weight >= 600
            )
            element["extra"].update(font_px=round(float(text.get_fontsize()) * 4 / 3, 2), bold=bool(bold))
        return element

    def data(self, artist, element_id: str, role: str, parent: str, axes_box: tuple) -> None:
        element = self.add(artist, element_id, role, lines_of(artist), parent)
        if element is None:
            return
        xy = None
        if isinstance(artist, matplotlib.lines.Line2D):
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
        try:
            ticks = axis._update_ticks()  # the ticks drawn: those inside the view limits
        except Exception:  # noqa: BLE001
            ticks = []
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


def extract_elements(
    figure, renderer, crop: tuple[int, int, int, int] | None = None
) -> tuple[list[dict], tuple[int, int]]:
    """List the elements of ``figure`` as ``renderer`` has just drawn it for the picture.

    Returns (elements, (width, height) in image pixels). Call it right after the draw of the picture
    (chart_child does), when display coordinates are pixels at the saving dpi. ``crop`` (left, top,
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
