"""The chart job, run inside the sandbox: execute matplotlib code and describe the figure it drew.

``render_chart_job(payload)`` compiles the program under chart_trace.USER_FILENAME (so that stack
walks and tracebacks can tell its lines apart), captures ``savefig`` instead of writing files,
renders the chosen figure to PNG with the program's own savefig options, and returns plain data: the
image, its size, and every element with its box in image pixels and its source lines.

The figure is drawn once for both: the elements are measured on the canvas savefig has just drawn,
before it is encoded, so the boxes are those of the picture (saving dpi, tight crop included).
"""

from __future__ import annotations

import contextlib
import io
import traceback
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vsdpo.render import chart_trace  # noqa: E402
from vsdpo.render.chart_elements import extract_elements  # noqa: E402

MAX_PIXELS = 16_000_000
# zlib level of the PNG: level 1 encodes several times faster than the default 6 for a slightly larger file.
PNG_COMPRESS_LEVEL = 1
SAVE_OPTIONS = ("dpi", "bbox_inches", "pad_inches", "facecolor", "edgecolor", "transparent")


class _Capture:
    """Figures the program saved, with the options it asked for; nothing reaches the disk."""

    def __init__(self) -> None:
        self.saved: list[tuple[Figure, dict[str, Any]]] = []
        self.original_savefig = Figure.savefig
        self.original_pyplot_savefig = plt.savefig

    def install(self) -> None:
        capture = self

        def savefig(figure, fname=None, *args, **kwargs):
            capture.saved.append((figure, {k: v for k, v in kwargs.items() if k in SAVE_OPTIONS}))

        def pyplot_savefig(*args, **kwargs):
            # pyplot's own savefig redraws the figure afterwards for interactive windows: a wasted draw here.
            return plt.gcf().savefig(*args, **kwargs)

        plt.show = lambda *args, **kwargs: None
        Figure.savefig = savefig
        plt.savefig = pyplot_savefig

    def uninstall(self) -> None:
        Figure.savefig = self.original_savefig
        plt.savefig = self.original_pyplot_savefig

    def chosen(self) -> tuple[Figure | None, dict[str, Any]]:
        if self.saved:
            return self.saved[-1]
        numbers = plt.get_fignums()
        if numbers:
            return plt.figure(numbers[-1]), {}
        return None, {}


def user_error(error: BaseException) -> tuple[str, list[int]]:
    """'Type: message (line N)' and the user-code lines of the traceback, innermost last."""
    lines: list[int] = []
    if isinstance(error, SyntaxError) and error.filename == chart_trace.USER_FILENAME and error.lineno:
        lines.append(error.lineno)
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename == chart_trace.USER_FILENAME and frame.lineno and frame.lineno not in lines:
            lines.append(frame.lineno)
    message = f"{type(error).__name__}: {error}"
    if lines:
        message += f" (line {lines[-1]})"
    return message, lines


def _save_dpi(figure: Figure, options: dict[str, Any]) -> float:
    dpi = options.get("dpi", "figure")
    if dpi in (None, "figure") or not isinstance(dpi, int | float):
        dpi = figure.dpi
    width, height = figure.get_size_inches()
    # A huge dpi or figure size must not exhaust the sandbox's memory.
    largest = (MAX_PIXELS / max(width * height, 1e-6)) ** 0.5
    return float(max(10.0, min(dpi, largest)))


# Run once by each worker before it forks, so that every job inherits what it loads: the common fonts
# (regular, bold, italic, serif, mathtext), the tight-bbox and colorbar code paths and the PNG encoder.
WARM_UP_PROGRAM = """import matplotlib.pyplot as plt
fig, (ax, other) = plt.subplots(1, 2)
ax.plot([0, 1], label="a")
ax.bar([0, 1], [1, 2])
ax.legend(title="legend")
ax.set_title("warm $x^2$", fontweight="bold")
ax.set_xlabel("x", fontstyle="italic")
ax.text(0, 0, "b", family="serif")
image = other.imshow([[0, 1], [1, 0]])
fig.colorbar(image, ax=other)
fig.suptitle("title")
plt.tight_layout()
plt.savefig("warm.png", bbox_inches="tight")
"""


def warm_up() -> None:
    """Called once by each sandbox worker: wrap matplotlib and load the common fonts before forking."""
    chart_trace.install()
    render_chart_job({"code": WARM_UP_PROGRAM})
    plt.close("all")


def render_chart_job(payload: dict[str, Any]) -> dict[str, Any]:
    chart_trace.install()
    plt.close("all")
    capture = _Capture()
    capture.install()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        program = compile(payload["code"], chart_trace.USER_FILENAME, "exec")
        exec(program, namespace)
    except MemoryError:
        raise
    except BaseException as error:  # noqa: BLE001 - every failure of the program is reported, not raised
        if isinstance(error, SystemExit) and error.code in (None, 0):
            pass
        else:
            message, lines = user_error(error)
            return {"ok": False, "error": message, "error_lines": lines}
    finally:
        capture.uninstall()

    figure, options = capture.chosen()
    if figure is None or not figure.get_children()[1:]:
        return {"ok": False, "error": "the program drew no figure", "error_lines": []}
    if payload.get("width") and payload.get("height"):
        figure.set_size_inches(payload["width"] / figure.dpi, payload["height"] / figure.dpi)
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)  # a closed figure lost its canvas; give it one to draw on
    options = {**options, "dpi": _save_dpi(figure, options)}
    image = io.BytesIO()
    try:
        with _measured_on_draw(figure) as measured:
            figure.savefig(image, format="png", pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL}, **options)
        if "elements" not in measured:
            raise RuntimeError("savefig did not draw the figure on an Agg canvas")
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - a figure that cannot be drawn is the program's failure
        message, lines = user_error(error)
        return {"ok": False, "error": f"drawing the figure failed: {message}", "error_lines": lines}
    elements, size = measured["elements"], measured["size"]
    png = image.getvalue()
    width, height = _png_size(png)
    return {"ok": True, "image": png, "width": width, "height": height, "elements": elements, "size": size}


@contextlib.contextmanager
def _measured_on_draw(figure: Figure):
    """Measure ``figure``'s elements right after savefig's own draw of the picture.

    savefig draws through ``FigureCanvasAgg.draw`` and then encodes the canvas. Measured in between,
    the figure is at the saving dpi and, with bbox_inches="tight", already shifted to the cropped
    box, so display coordinates are image pixels; no second draw is needed. savefig's layout pass
    (for "tight" or a layout engine) never completes a draw and is not measured.
    """
    measured: dict[str, Any] = {}
    original_draw = FigureCanvasAgg.draw

    def draw(canvas) -> None:
        original_draw(canvas)
        if canvas.figure is figure:
            measured["elements"], measured["size"] = extract_elements(figure, canvas.get_renderer())

    FigureCanvasAgg.draw = draw
    try:
        yield measured
    finally:
        FigureCanvasAgg.draw = original_draw


def _png_size(png: bytes) -> tuple[int, int]:
    # IHDR: width and height are the first two big-endian words after the 16-byte header.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
