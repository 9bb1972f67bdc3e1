"""The chart job, run inside the sandbox: execute matplotlib code and describe the figure it drew.

``render_chart_job(payload)`` compiles the program under trace.USER_FILENAME (so that stack
walks and tracebacks can tell its lines apart), captures ``savefig`` instead of writing files,
renders the chosen figure to PNG with the program's own savefig options, and returns plain data: the
image, its size, and every element with its box in image pixels and its source lines.

The figure is drawn once for both: the elements are measured on the canvas savefig has just drawn,
before it is encoded, so the boxes are those of the picture (saving dpi, tight crop included). A
"tight" picture whose content lies within the figure is cut from one full-size draw rather than
left to savefig, which would first spend a layout pass on finding the box.

With ``payload["chartmimic"]`` the same run also records the program's ChartMimic trace (``record``
in the reply), where that run provably gives the trace the benchmark's own run of the program gives
(:func:`vsdpo.metrics.chartmimic_program.single_run_names`): the tracer's hooks watch the program,
are paused while the picture is drawn, and the benchmark's ending (ticks removed, a PDF save) runs
after the picture. Elsewhere the record is ``{"chartmimic": None}`` and the scorer runs the
tracer apart.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine, PlaceHolderLayoutEngine  # noqa: E402
from matplotlib.transforms import Affine2D  # noqa: E402

from vsdpo.render import replies, user_code  # noqa: E402
from vsdpo.render.chart import compat, trace  # noqa: E402
from vsdpo.render.chart.elements import extract_elements  # noqa: E402

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

        def show(*args, **kwargs):
            return None

        plt.show = show
        Figure.savefig = savefig
        plt.savefig = pyplot_savefig
        self.installed = (show, savefig, pyplot_savefig)

    def intact(self) -> bool:
        """Whether the program left the saves and the show as installed (it may replace them)."""
        return (plt.show, Figure.savefig, plt.savefig) == self.installed

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
    return user_code.user_error(error, trace.USER_FILENAME)


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
    trace.install()
    # Without the compatibility calls: the worker stays as installed, a job that wants them adds them.
    render_chart_job({"code": WARM_UP_PROGRAM, "compat": False})
    plt.close("all")


def render_chart_job(payload: dict[str, Any]) -> dict[str, Any]:
    trace.install()
    if payload.get("compat", True):
        compat.install()  # calls the benchmarks' pinned matplotlib had (see vsdpo.render.chart.compat)
    recording = _Recording.start(payload)
    plt.close("all")
    capture = _Capture()
    capture.install()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        program = compile(payload["code"], trace.USER_FILENAME, "exec")
        exec(program, namespace)
        if recording is not None:
            recording.stopped(namespace, capture)
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

    with recording.paused() if recording is not None else contextlib.nullcontext():
        figure, options = capture.chosen()
        if figure is None or not figure.get_children()[1:]:
            return {"ok": False, "error": "the program drew no figure", "error_lines": []}
        if payload.get("width") and payload.get("height"):
            figure.set_size_inches(payload["width"] / figure.dpi, payload["height"] / figure.dpi)
        if not isinstance(figure.canvas, FigureCanvasAgg):
            FigureCanvasAgg(figure)  # a closed figure lost its canvas; give it one to draw on
            if recording is not None:
                recording.figure = None  # its final save would not be the benchmark's
        options = {**options, "dpi": _save_dpi(figure, options)}
        try:
            picture = None
            if options.get("bbox_inches") == "tight":
                picture = _tight_by_cropping(figure, options)
            if picture is None:
                picture = _saved_picture(figure, options)
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - a figure that cannot be drawn is the program's failure
            message, lines = user_error(error)
            return {"ok": False, "error": f"drawing the figure failed: {message}", "error_lines": lines}
    png, elements, size = picture
    width, height = _png_size(png)
    elements = _within_bounds(elements)
    reply = {"ok": True, "image": png, "width": width, "height": height, "elements": elements, "size": size}
    if payload.get("chartmimic"):
        reply["record"] = {"chartmimic": recording.finish() if recording is not None else None}
    return reply


class _Recording:
    """The ChartMimic trace recorded by the render's own run (see the module docstring)."""

    def __init__(self, tail_names: frozenset[str], compat_calls: bool) -> None:
        from vsdpo.metrics import chartmimic_trace

        self.tail_names = tail_names
        self.compat = compat_calls
        self.recorder = chartmimic_trace.start_recording()
        self.figure: Figure | None = None  # the current figure where the benchmark's program stops

    @classmethod
    def start(cls, payload: dict[str, Any]) -> _Recording | None:
        """A recording when the caller asks for one and the run as written can give the trace."""
        if not payload.get("chartmimic") or payload.get("width") or payload.get("height"):
            return None
        from vsdpo.metrics.chartmimic_program import single_run_names

        code = payload["code"]
        names = single_run_names(code) if isinstance(code, str) else None
        return None if names is None else cls(names, bool(payload.get("compat", True)))

    def stopped(self, namespace: dict[str, Any], capture: _Capture) -> None:
        """After the program ran to its end: keep the figure to trace when what ran after the cut
        (saves and shows) was the renderer's own and read only plain values."""
        plain = (str, int, float, bool, type(None))
        try:
            if (
                namespace.get("plt") is plt
                and capture.intact()
                and all(name in namespace and type(namespace[name]) in plain for name in self.tail_names)
                and plt.get_fignums()
            ):
                self.figure = plt.gcf()
        except Exception:  # noqa: BLE001 - whatever the program left, its render goes on; no record
            self.figure = None

    def paused(self):
        return self.recorder.paused()

    def finish(self) -> dict[str, Any] | None:
        """The trace, with the compatibility setting it was recorded under; None where there is none."""
        if self.figure is None:
            return None
        from vsdpo.metrics import chartmimic_trace

        try:
            recorded = chartmimic_trace.finish_recording(self.recorder, self.figure)
        except Exception:  # noqa: BLE001 - the picture stands; the scorer traces the program apart
            return None
        return None if recorded is None else {**recorded, "compat": self.compat}


def _within_bounds(elements: list[dict]) -> list[dict]:
    """The elements the caller accepts (vsdpo.render.replies): the first MAX_ELEMENTS, and data points
    and outline corners thinned evenly where all of them together pass MAX_POINTS."""
    elements = elements[: replies.MAX_ELEMENTS]
    keys = ("points", "outline")
    total = sum(len(e["extra"].get(key) or ()) for e in elements for key in keys)
    if total > replies.MAX_POINTS:
        step = -(-total // replies.MAX_POINTS)
        for element in elements:
            if element["extra"].get("points"):
                element["extra"]["points"] = element["extra"]["points"][::step]
            outline = element["extra"].get("outline")
            if outline:
                outline = outline[::step]
                if len(outline) >= 3:
                    element["extra"]["outline"] = outline
                else:
                    del element["extra"]["outline"]
    return elements


def _saved_picture(figure: Figure, options: dict[str, Any]) -> tuple[bytes, list[dict], tuple[int, int]]:
    """PNG, elements and size of the figure as savefig renders it, measured on savefig's own draw.

    savefig draws through ``FigureCanvasAgg.draw`` and then encodes the canvas. Measured in between,
    the figure is at the saving dpi and, with bbox_inches="tight", already shifted to the cropped
    box, so display coordinates are image pixels; no second draw is needed. savefig's layout pass
    (for "tight" or a layout engine) never completes a draw and is not measured.
    """
    measured: dict[str, Any] = {}

    def measure(renderer) -> None:
        measured["elements"], measured["size"] = extract_elements(figure, renderer)

    image = io.BytesIO()
    with _after_draw(figure, measure), _without_placeholder_layout(figure):
        figure.savefig(image, format="png", pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL}, **options)
    if "elements" not in measured:
        raise RuntimeError("savefig did not draw the figure on an Agg canvas")
    return image.getvalue(), measured["elements"], measured["size"]


def _tight_by_cropping(
    figure: Figure, options: dict[str, Any]
) -> tuple[bytes, list[dict], tuple[int, int]] | None:
    """The bbox_inches="tight" picture as a crop of one full-size draw; None when it cannot be one.

    savefig finds the tight box with a layout pass (a whole draw with rendering off) before its real
    draw. The box measured after the real draw of the whole figure is the same, so when it lies within
    the figure the picture is that draw cut to it. Content beyond the figure's edge (a legend placed
    outside) widens the picture past the draw: None, and savefig does it.
    """
    layout_engine = figure.get_layout_engine()  # savefig switches it off for its draw
    pad_inches = options.get("pad_inches")
    whole = {name: value for name, value in options.items() if name not in ("bbox_inches", "pad_inches")}
    measured: dict[str, Any] = {}

    def measure(renderer) -> None:
        crop = _tight_crop(figure, renderer, layout_engine, pad_inches)
        if crop is None:
            return
        measured["elements"], measured["size"] = extract_elements(figure, renderer, crop)
        pixels = _cut(np.asarray(renderer.buffer_rgba()), crop, to_rgba(figure.patch.get_facecolor()))
        image = io.BytesIO()
        matplotlib.image.imsave(
            image,
            pixels,
            format="png",
            origin="upper",
            dpi=figure.dpi,
            pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL},
        )
        measured["png"] = image.getvalue()

    # The raw format encodes nothing: the PNG is made from the crop above.
    with _after_draw(figure, measure), _without_placeholder_layout(figure):
        figure.savefig(io.BytesIO(), format="raw", **whole)
    if "png" not in measured:
        return None
    return measured["png"], measured["elements"], measured["size"]


def _tight_crop(figure: Figure, renderer, layout_engine, pad_inches) -> tuple[int, int, int, int] | None:
    """(left, top, width, height), in image pixels of the figure just drawn, of savefig's tight box
    padded as savefig pads it; None when content lies beyond the figure or the padding cannot be
    filled in (a see-through or edged figure background). The padding may reach past the figure."""
    box = figure.get_tightbbox(renderer)
    if box is None or not np.all(np.isfinite(box.extents)):
        return None
    dpi = figure.dpi
    edge = 1e-6  # content on the figure's edge may poke past it by a float tick
    x0, y0, x1, y1 = (float(value) * dpi for value in box.extents)
    if x0 < -edge or y0 < -edge or x1 > figure.bbox.width + edge or y1 > figure.bbox.height + edge:
        return None
    if isinstance(layout_engine, ConstrainedLayoutEngine) and pad_inches == "layout":
        w_pad, h_pad = layout_engine.get()["w_pad"], layout_engine.get()["h_pad"]
    else:
        if pad_inches in (None, "layout"):
            pad_inches = matplotlib.rcParams["savefig.pad_inches"]
        w_pad = h_pad = pad_inches
    box = box.padded(w_pad, h_pad)
    # savefig's canvas is the padded box scaled to the saving dpi, truncated to whole pixels but for a
    # float tick below the next one (FigureCanvasBase.get_width_height); the same arithmetic, the same size.
    width, height = (int(value + 1e-8) for value in Affine2D().scale(dpi).transform(box.size))
    if width < 1 or height < 1:
        return None
    # savefig puts the box's lower-left corner at the bottom of its canvas: the crop starts where that
    # lands in the whole draw (rows count down from the top of a canvas of renderer.height rows).
    left = round(float(box.x0) * dpi)
    top = round(renderer.height - float(box.y0) * dpi - height)
    patch = figure.patch
    if patch.get_linewidth() > 0 and to_rgba(patch.get_edgecolor())[3] > 0:
        return None  # savefig draws the figure's edge around the picture, not around the figure
    inside = left >= 0 and top >= 0 and left + width <= renderer.width and top + height <= renderer.height
    if not inside and to_rgba(patch.get_facecolor())[3] < 1:
        return None
    return left, top, width, height


def _cut(pixels: np.ndarray, crop: tuple[int, int, int, int], fill: tuple[float, ...]) -> np.ndarray:
    """The ``crop`` window of the RGBA ``pixels``; where it reaches past them, the colour ``fill``
    (savefig draws the figure's background over its whole canvas, padding included)."""
    left, top, width, height = crop
    rows, columns = pixels.shape[:2]
    if left >= 0 and top >= 0 and left + width <= columns and top + height <= rows:
        return pixels[top : top + height, left : left + width]
    out = np.empty((height, width, 4), dtype=np.uint8)
    out[:] = np.round(np.asarray(fill) * 255).astype(np.uint8)  # as Agg turns a colour into bytes
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, rows), min(left + width, columns)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = pixels[y0:y1, x0:x1]
    return out


@contextlib.contextmanager
def _without_placeholder_layout(figure: Figure):
    """Save ``figure`` without the stand-in layout engine that ``tight_layout()`` leaves behind.

    The stand-in lays nothing out, yet any layout engine makes savefig run a layout pass (a whole draw
    with rendering off) before its draw; without it, a figure that is not saved "tight" is drawn once.
    """
    engine = figure.get_layout_engine()
    if not isinstance(engine, PlaceHolderLayoutEngine):
        yield
        return
    figure._layout_engine = None  # set_layout_engine("none") would put the stand-in back
    try:
        yield
    finally:
        figure._layout_engine = engine


@contextlib.contextmanager
def _after_draw(figure: Figure, measure):
    """Call ``measure(renderer)`` right after each draw of ``figure`` on an Agg canvas."""
    original_draw = FigureCanvasAgg.draw

    def draw(canvas) -> None:
        original_draw(canvas)
        if canvas.figure is figure:
            measure(canvas.get_renderer())

    FigureCanvasAgg.draw = draw
    try:
        yield
    finally:
        FigureCanvasAgg.draw = original_draw


def _png_size(png: bytes) -> tuple[int, int]:
    # IHDR: width and height are the first two big-endian words after the 16-byte header.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
