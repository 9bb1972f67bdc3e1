"""The chart job, run inside the sandbox: execute matplotlib code and describe the figure it drew.

``render_chart_job(payload)`` compiles the program under chart_trace.USER_FILENAME (so that stack
walks and tracebacks can tell its lines apart), captures ``savefig`` instead of writing files,
renders the chosen figure to PNG with the program's own savefig options, and returns plain data: the
image, its size, and every element with its box in image pixels and its source lines.
"""

from __future__ import annotations

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
SAVE_OPTIONS = ("dpi", "bbox_inches", "pad_inches", "facecolor", "edgecolor", "transparent")


class _Capture:
    """Figures the program saved, with the options it asked for; nothing reaches the disk."""

    def __init__(self) -> None:
        self.saved: list[tuple[Figure, dict[str, Any]]] = []
        self.original_savefig = Figure.savefig

    def install(self) -> None:
        capture = self

        def savefig(figure, fname=None, *args, **kwargs):
            capture.saved.append((figure, {k: v for k, v in kwargs.items() if k in SAVE_OPTIONS}))

        plt.show = lambda *args, **kwargs: None
        Figure.savefig = savefig

    def uninstall(self) -> None:
        Figure.savefig = self.original_savefig

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


def warm_up() -> None:
    """Called once by each sandbox worker: wrap matplotlib and load the default fonts before forking."""
    chart_trace.install()
    render_chart_job(
        {
            "code": "import matplotlib.pyplot as plt\nplt.plot([0, 1], label='a')\nplt.legend()\n"
            "plt.title('warm $x^2$')\nplt.text(0, 0, 'b', fontweight='bold')\n"
        }
    )
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
    dpi = _save_dpi(figure, options)
    image = io.BytesIO()
    options = {**options, "dpi": dpi}
    try:
        tight = options.get("bbox_inches") == "tight"
        if tight or set(options) - {"dpi"}:
            figure.savefig(image, format="png", **options)
        else:
            # The common case draws once: the picture is the canvas the elements are measured on.
            figure.set_dpi(dpi)
        elements, size = extract_elements(figure, dpi, tight=tight, pad_inches=options.get("pad_inches"))
        if not image.getvalue():
            _canvas_png(figure, image)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - a figure that cannot be drawn is the program's failure
        message, lines = user_error(error)
        return {"ok": False, "error": f"drawing the figure failed: {message}", "error_lines": lines}
    png = image.getvalue()
    width, height = _png_size(png)
    return {"ok": True, "image": png, "width": width, "height": height, "elements": elements, "size": size}


def _canvas_png(figure: Figure, out: io.BytesIO) -> None:
    from PIL import Image

    width, height = figure.canvas.get_width_height(physical=True)
    Image.frombuffer("RGBA", (width, height), figure.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).save(
        out, format="PNG", compress_level=1
    )


def _png_size(png: bytes) -> tuple[int, int]:
    # IHDR: width and height are the first two big-endian words after the 16-byte header.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
