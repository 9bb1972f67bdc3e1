"""Provenance for matplotlib: which lines of the user's program made or styled each artist.

Inside the sandbox only. Artist creation and every ``set_*`` (plus the Axes/Axis methods that
configure ticks, labels and legends) are wrapped; a wrapped call looks up the stack for the innermost
frame of the user's program, recognised by the filename the program was compiled under, and records
that line on the artist. Calls made while drawing are not the user's styling and are not recorded.
Tick labels are created lazily at draw time; they are blamed on the lines that configured their axis.
Each text remembers the number of the last figure draw that painted it, so that what a draw skipped
(hidden axes, ticks outside the view, the unused ticks of 3-D axes) is never taken for a drawn text,
and, on an Agg canvas, the pixels its glyphs changed: the box of its ink and the colour that lay under
the glyphs before they were painted (see ``ink_of``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import matplotlib.artist
import matplotlib.axes
import matplotlib.axis
import matplotlib.colors
import matplotlib.figure
import matplotlib.text
import numpy as np

from vsdpo.render.user_code import innermost_line

USER_FILENAME = "<chart>"
LINES_ATTR = "_vsdpo_lines"
CREATED_ATTR = "_vsdpo_created"
CONFIG_ATTR = "_vsdpo_config"  # Axes: method name -> lines, for blaming lazily made tick labels
DRAWN_ATTR = "_vsdpo_drawn"  # Text: number of the last figure draw that painted it
INK_ATTR = "_vsdpo_ink"  # Text: (draw number, ink box, colour under the glyphs) of that draw (see ink_of)
# Pixels around a text's layout box that its glyphs may still touch (anti-aliasing, hinting).
INK_MARGIN_PX = 3
# A pixel this far (max over channels, 0..255) from a text's colour is not ink of that colour.
SAME_INK_DISTANCE = 48
# The ink of a text is described by at most this many bands of rows (see _InkProbe.bands).
MAX_INK_BANDS = 48
# The background of a text is read under its glyphs and this many pixels around them.
UNDER_RING_PX = 2

# Axes methods that configure what is drawn later (tick labels, limits, legends) without a set_ prefix.
AXES_CONFIG_METHODS = (
    "tick_params",
    "ticklabel_format",
    "locator_params",
    "legend",
    "grid",
    "autoscale",
    "margins",
    "invert_xaxis",
    "invert_yaxis",
    "minorticks_on",
)

_state = {"drawing": 0, "draw": 0}


def user_line() -> int | None:
    """Line of the innermost frame of the user's program on the current stack, if any."""
    return innermost_line(USER_FILENAME, skip=2)


def record(artist: Any, line: int, method: str | None = None) -> None:
    try:
        lines = artist.__dict__.setdefault(LINES_ATTR, set())
        lines.add(line)
        if method is not None:
            artist.__dict__.setdefault(CONFIG_ATTR, {}).setdefault(method, set()).add(line)
    except AttributeError:  # an object without a __dict__: nothing to remember
        pass


def lines_of(artist: Any) -> set[int]:
    return set(getattr(artist, "__dict__", {}).get(LINES_ATTR, ()))


def created_line(artist: Any) -> int | None:
    return getattr(artist, "__dict__", {}).get(CREATED_ATTR)


def config_lines(axes: Any, *words: str) -> set[int]:
    """Lines of configuring calls on ``axes`` whose method name mentions any of ``words``."""
    config = getattr(axes, "__dict__", {}).get(CONFIG_ATTR, {})
    return {line for name, lines in config.items() if any(word in name for word in words) for line in lines}


def _wrap_recording(method, name: str, keep_config: bool):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if not _state["drawing"]:
            line = user_line()
            if line is not None:
                record(self, line, name if keep_config else None)
        return method(self, *args, **kwargs)

    wrapper._vsdpo_wrapped = True
    return wrapper


def _wrap_init(init):
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if not _state["drawing"]:
            line = user_line()
            if line is not None:
                record(self, line)
                self.__dict__.setdefault(CREATED_ATTR, line)

    wrapper._vsdpo_wrapped = True
    return wrapper


def _wrap_drawing(method):
    """Everything matplotlib does inside a draw is its own doing, not a line of the program."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        _state["drawing"] += 1
        try:
            return method(*args, **kwargs)
        finally:
            _state["drawing"] -= 1

    wrapper._vsdpo_wrapped = True
    return wrapper


def _wrap_figure_draw(method):
    """A figure draw: matplotlib's own doing (as above), and a new number for the texts it paints."""
    drawing = _wrap_drawing(method)

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        _state["draw"] += 1
        return drawing(*args, **kwargs)

    wrapper._vsdpo_wrapped = True
    return wrapper


def _wrap_text_draw(draw):
    """Stamp a text with the current draw's number when that draw paints it (visible, not empty), and
    with what its glyphs painted (``_InkProbe``)."""

    @functools.wraps(draw)
    def wrapper(self, renderer, *args, **kwargs):
        probe = _InkProbe.start(self, renderer) if self.get_visible() and self.get_text() else None
        try:
            result = draw(self, renderer, *args, **kwargs)
        finally:
            if probe is not None:
                probe.stop()
        if self.get_visible() and self.get_text():
            self.__dict__[DRAWN_ATTR] = _state["draw"]
            if probe is not None:
                self.__dict__[INK_ATTR] = (_state["draw"], *probe.result(self.get_color()), probe.bands())
        return result

    wrapper._vsdpo_wrapped = True
    return wrapper


class _InkProbe:
    """The pixels a text's glyphs change on an Agg canvas, read around each ``draw_text`` call.

    The text's own box patch (``bbox=``, ``backgroundcolor=``) is drawn before its glyphs and is not
    ink: it is what lies under them. Text drawn through path effects or TeX does not pass through
    ``draw_text`` and is not probed.
    """

    def __init__(self, renderer, pixels: np.ndarray, window: tuple[int, int, int, int]):
        self.renderer, self.pixels, self.window = renderer, pixels, window
        c0, r0, c1, r1 = window
        self.changed = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        self.before: np.ndarray | None = None  # the window before the first glyph was painted
        self.had_own = "draw_text" in renderer.__dict__
        self.own = renderer.__dict__.get("draw_text")
        self.original = renderer.draw_text

    @classmethod
    def start(cls, text, renderer) -> _InkProbe | None:
        from matplotlib.backends.backend_agg import RendererAgg

        if not isinstance(renderer, RendererAgg):
            return None
        try:
            pixels = np.asarray(renderer.buffer_rgba())
            # The text's own box, without an annotation's arrow; the layout is the one draw uses.
            extent = matplotlib.text.Text.get_window_extent(text, renderer)
        except Exception:  # noqa: BLE001 - a text that cannot say where it is: not probed
            return None
        rows, columns = pixels.shape[:2]
        if not np.all(np.isfinite(extent.extents)):
            return None
        c0 = max(0, math.floor(extent.x0) - INK_MARGIN_PX)
        c1 = min(columns, math.ceil(extent.x1) + INK_MARGIN_PX)
        r0 = max(0, math.floor(renderer.height - extent.y1) - INK_MARGIN_PX)
        r1 = min(rows, math.ceil(renderer.height - extent.y0) + INK_MARGIN_PX)
        if c1 <= c0 or r1 <= r0:
            return None
        probe = cls(renderer, pixels, (c0, r0, c1, r1))
        renderer.draw_text = probe.draw_text
        return probe

    def draw_text(self, *args, **kwargs):
        c0, r0, c1, r1 = self.window
        before = self.pixels[r0:r1, c0:c1].copy()
        result = self.original(*args, **kwargs)
        self.changed |= np.any(self.pixels[r0:r1, c0:c1] != before, axis=2)
        if self.before is None:
            self.before = before
        return result

    def stop(self) -> None:
        if self.had_own:
            self.renderer.draw_text = self.own
        else:
            del self.renderer.draw_text

    def bands(self) -> list[tuple[int, int, int, int]]:
        """The ink as at most ``MAX_INK_BANDS`` bands of rows, each (top, bottom, left, right) in canvas
        pixels (bottom and right exclusive) around the ink of its rows: the glyphs' outline, closely
        enough to tell two texts whose glyphs meet from two whose boxes only share an empty corner."""
        rows = np.nonzero(self.changed.any(axis=1))[0]
        if not len(rows):
            return []
        c0, r0 = self.window[:2]
        first, last = int(rows[0]), int(rows[-1]) + 1
        height = -(-(last - first) // MAX_INK_BANDS)
        bands = []
        for top in range(first, last, height):
            columns = np.nonzero(self.changed[top : top + height].any(axis=0))[0]
            if len(columns):
                bottom = min(top + height, last)
                bands.append((r0 + top, r0 + bottom, c0 + int(columns[0]), c0 + int(columns[-1]) + 1))
        return bands

    def result(self, color) -> tuple[tuple[int, int, int, int] | None, tuple[int, int, int] | None]:
        """(ink box in canvas pixels (left, top, right, bottom; rows from the top), most common colour
        under the glyphs as 0..255 RGB over white paper), or (None, None) when the glyphs changed no
        pixel. The colour is read under the glyphs and in a ring of ``UNDER_RING_PX`` around them, as
        it was before they were painted. Pixels of about the text's own ``color`` there are ink drawn
        before in that colour (the same text drawn twice, whose new glyphs change only the first one's
        anti-aliased rim; a text of that colour crossed), not background: the colour is None when
        nothing else lies there."""
        rows, columns = np.nonzero(self.changed)
        if not len(rows) or self.before is None:
            return None, None
        c0, r0 = self.window[:2]
        box = (
            c0 + int(columns.min()),
            r0 + int(rows.min()),
            c0 + int(columns.max()) + 1,
            r0 + int(rows.max()) + 1,
        )
        near = self.changed.copy()
        for _ in range(UNDER_RING_PX):
            grown = near.copy()
            grown[1:] |= near[:-1]
            grown[:-1] |= near[1:]
            grown[:, 1:] |= near[:, :-1]
            grown[:, :-1] |= near[:, 1:]
            near = grown
        under = self.before[near].astype(np.int64)
        alpha = under[:, 3:4] / 255.0
        rgb = np.round(under[:, :3] * alpha + 255 * (1 - alpha)).astype(np.int64)
        try:
            ink = np.round(np.asarray(matplotlib.colors.to_rgb(color)) * 255).astype(np.int64)
            rgb = rgb[np.abs(rgb - ink).max(axis=1) > SAME_INK_DISTANCE]
        except (TypeError, ValueError):
            pass
        if not len(rgb):
            return box, None
        packed = rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]
        values, counts = np.unique(packed, return_counts=True)
        common = int(values[np.argmax(counts)])
        return box, (common >> 16, (common >> 8) & 255, common & 255)


def drawn_in_last_draw(text: Any) -> bool:
    """Whether the latest figure draw painted ``text`` (a text it skipped is not in the picture)."""
    return getattr(text, "__dict__", {}).get(DRAWN_ATTR) == _state["draw"]


def ink_of(text: Any) -> tuple | None:
    """What the latest figure draw's glyphs of ``text`` painted on an Agg canvas: (ink box in canvas
    pixels, rows from the top; the most common colour around the glyphs before they were painted; the
    ink's bands of rows, see ``_InkProbe.bands``), the first two None when no pixel changed; None
    when that draw did not probe the text."""
    ink = getattr(text, "__dict__", {}).get(INK_ATTR)
    if ink is None or ink[0] != _state["draw"]:
        return None
    return ink[1], ink[2], ink[3]


def _all_subclasses(cls: type) -> list[type]:
    seen, stack = [], [cls]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.append(current)
            stack.extend(current.__subclasses__())
    return seen


def install() -> None:
    """Wrap matplotlib's artist classes; idempotent."""
    artist_cls = matplotlib.artist.Artist
    if getattr(artist_cls.__init__, "_vsdpo_wrapped", False):
        return
    artist_cls.__init__ = _wrap_init(artist_cls.__init__)
    config_classes = {matplotlib.axes.Axes, matplotlib.axis.Axis, *_all_subclasses(matplotlib.axis.Axis)}
    for cls in _all_subclasses(artist_cls):
        keep_config = cls in config_classes or issubclass(cls, matplotlib.axes.Axes)
        for name, method in list(vars(cls).items()):
            if not callable(method) or getattr(method, "_vsdpo_wrapped", False):
                continue
            configures = name.startswith("set_") or (keep_config and name in AXES_CONFIG_METHODS)
            if configures and not isinstance(method, staticmethod | classmethod | type):
                setattr(cls, name, _wrap_recording(method, name, keep_config))
    figure_cls = matplotlib.figure.Figure
    figure_cls.draw = _wrap_figure_draw(figure_cls.draw)
    for name in ("tight_layout", "get_tightbbox", "draw_without_rendering"):
        if hasattr(figure_cls, name):
            setattr(figure_cls, name, _wrap_drawing(getattr(figure_cls, name)))
    matplotlib.text.Text.draw = _wrap_text_draw(matplotlib.text.Text.draw)
