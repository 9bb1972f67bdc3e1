"""Provenance for matplotlib: which lines of the user's program made or styled each artist.

Inside the sandbox only. Artist creation and every ``set_*`` (plus the Axes/Axis methods that
configure ticks, labels and legends) are wrapped; a wrapped call looks up the stack for the innermost
frame of the user's program, recognised by the filename the program was compiled under, and records
that line on the artist. Calls made while drawing are not the user's styling and are not recorded.
Tick labels are created lazily at draw time; they are blamed on the lines that configured their axis.
Each text remembers the number of the last figure draw that painted it, so that what a draw skipped
(hidden axes, ticks outside the view, the unused ticks of 3-D axes) is never taken for a drawn text.
"""

from __future__ import annotations

import functools
from typing import Any

import matplotlib.artist
import matplotlib.axes
import matplotlib.axis
import matplotlib.figure
import matplotlib.text

from vsdpo.render.user_code import innermost_line

USER_FILENAME = "<chart>"
LINES_ATTR = "_vsdpo_lines"
CREATED_ATTR = "_vsdpo_created"
CONFIG_ATTR = "_vsdpo_config"  # Axes: method name -> lines, for blaming lazily made tick labels
DRAWN_ATTR = "_vsdpo_drawn"  # Text: number of the last figure draw that painted it

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
    """Stamp a text with the current draw's number when that draw paints it (visible, not empty)."""

    @functools.wraps(draw)
    def wrapper(self, renderer, *args, **kwargs):
        result = draw(self, renderer, *args, **kwargs)
        if self.get_visible() and self.get_text():
            self.__dict__[DRAWN_ATTR] = _state["draw"]
        return result

    wrapper._vsdpo_wrapped = True
    return wrapper


def drawn_in_last_draw(text: Any) -> bool:
    """Whether the latest figure draw painted ``text`` (a text it skipped is not in the picture)."""
    return getattr(text, "__dict__", {}).get(DRAWN_ATTR) == _state["draw"]


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
