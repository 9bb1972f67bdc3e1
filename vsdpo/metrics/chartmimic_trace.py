"""The ChartMimic tracer: runs one matplotlib program and records what ChartMimic's evaluators look at.

Runs inside the render sandbox (entry ``vsdpo.metrics.chartmimic_trace:trace``), never in the caller:
the hooks below patch matplotlib classes, which is harmless in a forked child that exits afterwards.
One run records all four things that ChartMimic records in four separate runs:

- ``texts``: every string the PDF backend draws when the figure is saved, after the ticks of every
  axes are removed (ChartMimic's text evaluator with ``use_axs=False``, its published setting);
- ``layout``: per axes placed on a grid, its grid geometry and the rows and columns it spans;
- ``types``: how often each plotting function was called from outside another traced function;
- ``colors``: ``"group--#RRGGBB"`` (or a colormap name) per distinct colour drawn by each plotting
  function, read from the artists after the program finished, thinned to mutually distinct colours
  when there are more than ten.

Two separate call depths (one per evaluator) keep "outermost call" exactly as in separate runs.
Saving and showing are captured: they record the figure and write nothing.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from functools import partial
from typing import Any

# A colour group with more members than this is thinned, as ChartMimic does.
MAX_COLORS_BEFORE_FILTER = 10
# Colours more similar than this to an already kept one are dropped when thinning.
FILTER_SIMILARITY = 0.7


def _to_hex(color: Any) -> str | None:
    import matplotlib.colors as mcolors
    import numpy as np

    try:
        if isinstance(color, np.ndarray) and color.ndim == 2:
            color = color[0]
        return mcolors.to_hex(mcolors.to_rgba(color)).upper()
    except (ValueError, TypeError, IndexError):
        return None


def _cmap_name(kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """A colormap passed by keyword, tagged so that its name is never read as a colour."""
    cmap = kwargs.get("cmap")
    if cmap is None:
        return None
    return ("cmap", cmap if isinstance(cmap, str) else getattr(cmap, "name", str(cmap)))


def _cmap_of(mappable: Any) -> tuple[str, str]:
    return ("cmap", mappable.get_cmap().name)


def _color(artist: Any) -> list[Any]:
    return [artist.get_color()]


def _facecolor(artist: Any) -> list[Any]:
    return [artist.get_facecolor()]


def _first_facecolor(artist: Any) -> list[Any]:
    return [artist.get_facecolor()[0]]


def _original_facecolor(patch: Any) -> list[Any]:
    # Bars keep the colour asked for here, before alpha and edge handling alter the face colour.
    return [patch._original_facecolor]


class _Recorder:
    def __init__(self) -> None:
        self.types: Counter[str] = Counter()
        self.type_depth = 0
        self.color_depth = 0
        # (group, reader) in call order; a reader returns the artist's final colours at the end.
        self.color_readers: list[tuple[str, Any]] = []
        self.saved_figure: Any = None

    # --- colour readers: what each plotting function drew, read when the program has finished ---

    def colors_of(self, name: str, owner: str, args: tuple, kwargs: dict, result: Any) -> list[Any]:
        """Closures returning the final colours of what one outermost call created."""
        import matplotlib.cbook as cbook

        first = args[0] if args else None
        cmap = _cmap_name(kwargs)
        face = lambda artist: partial(_facecolor, artist)
        color = lambda artist: partial(_color, artist)
        if name == "_make_line":
            line = result[0]
            return [lambda: [line.get_color()]]
        if name in ("axhline", "axvline"):
            return [lambda: [result.get_color()]]
        if name in ("_fill_between_x_or_y", "axvspan", "axhspan"):
            return [lambda: [result.get_facecolor()]]
        if name == "bar" and owner == "Axes":
            return [partial(_original_facecolor, item) for item in result]
        if name == "scatter" and owner != "Axes3D":
            if cmap is not None:
                return [lambda: [cmap]]
            return [lambda: [result.get_facecolor()[0]] if len(result.get_facecolor()) else []]
        if name == "pie":
            return [face(wedge) for wedge in result[0]]
        if name in ("hlines", "vlines"):
            return [lambda: list(result.get_edgecolors())]
        if name == "boxplot":
            import matplotlib.patches as mpatches

            boxes = [box for box in result["boxes"] if isinstance(box, mpatches.PathPatch)]
            return [face(box) for box in boxes]
        if name == "violinplot":
            return [partial(_first_facecolor, body) for body in result["bodies"]]
        if name == "hist":
            patches = result[2]
            containers = (
                patches
                if isinstance(patches, cbook.silent_list)
                and patches
                and not hasattr(patches[0], "get_facecolor")
                else [patches]
            )
            return [face(patch) for container in containers for patch in container]
        if name in ("quiver", "broken_barh", "draw_networkx_nodes"):
            return [lambda: list(result.get_facecolors())]
        if name == "plot" and owner == "PolarAxes":
            return [color(line) for line in result]
        if name in ("imshow", "pcolor", "contour", "contourf", "tripcolor"):
            return [lambda: [_cmap_of(result)]]
        if name == "fill":
            return [face(patch) for patch in result]
        if name == "__init__" and owner == "NonUniformImage":
            return [lambda: [_cmap_of(first)]]
        if name == "__init__" and owner in ("Ellipse", "Circle"):
            return [lambda: [first.get_facecolor()]]
        if name == "draw_networkx_edges":
            if isinstance(result, list):
                return [face(patch) for patch in result]
            return [lambda: list(result.get_edgecolors())]
        if name == "draw_networkx_labels":
            return [color(text) for text in result.values()]
        if owner == "Axes3D":
            if name in ("scatter", "plot_surface") and cmap is not None:
                return [lambda: [cmap]]
            if name == "scatter":
                return [lambda: list(result.get_facecolors())]
            if name == "plot":
                return [color(line) for line in result]
            if name in ("plot_surface", "bar3d"):
                return [lambda: list(result.get_facecolors())[:1]]
            if name == "bar":
                return [face(patch) for patch in result]
            if name == "add_collection3d":
                return [lambda: list(result.get_facecolors())]
        return []

    def wrap(
        self, owner_cls: type, name: str, *, traced_type: bool, traced_color: bool, module: str | None = None
    ) -> None:
        """Replace ``owner_cls.name`` by a wrapper counting outermost calls and collecting colours.

        Keys are ``module.function`` of the defining module, as ChartMimic keys by defining file.
        """
        original = getattr(owner_cls, name)
        owner = owner_cls.__name__
        module = module or getattr(original, "__module__", None) or owner_cls.__module__
        recorder = self

        def traced(*args, **kwargs):
            first = args[0] if args else None
            polar = type(first).__name__ == "PolarAxes"
            count_type = traced_type and recorder.type_depth == 0
            record_color = traced_color and recorder.color_depth == 0
            if count_type:
                suffix = "_polar" if polar and name == "plot" else ""
                recorder.types[f"{module}.{name}{suffix}"] += 1
            recorder.type_depth += traced_type
            recorder.color_depth += traced_color
            try:
                result = original(*args, **kwargs)
            finally:
                recorder.type_depth -= traced_type
                recorder.color_depth -= traced_color
            if record_color:
                # Only scatter and plot get a polar group of their own (ChartMimic's convention).
                color_owner = "PolarAxes" if polar and owner == "Axes" and name == "scatter" else owner
                group = f"{module}.{name}" + {"PolarAxes": "_polar", "Axes3D": "_3d"}.get(color_owner, "")
                readers = recorder.colors_of(name, color_owner, args, kwargs, result)
                recorder.color_readers.extend((group, reader) for reader in readers)
            return result

        traced.__wrapped__ = original
        setattr(owner_cls, name, traced)

    def final_colors(self) -> list[str]:
        from vsdpo.metrics.color import color_similarity

        seen: dict[str, None] = {}
        for group, reader in self.color_readers:
            try:
                values = reader()
            except Exception:  # an artist the program removed or emptied draws no colour
                continue
            for value in values:
                is_cmap = isinstance(value, tuple) and len(value) == 2 and value[0] == "cmap"
                color = value[1] if is_cmap else _to_hex(value)
                if color is not None:
                    seen[f"{group}--{color}"] = None
        colors = list(seen)
        if len(colors) <= MAX_COLORS_BEFORE_FILTER:
            return colors
        kept: list[str] = []
        for entry in colors:
            value = entry.split("--", 1)[1]
            if all(
                _similarity(value, other.split("--", 1)[1], color_similarity) <= FILTER_SIMILARITY
                for other in kept
            ):
                kept.append(entry)
        return kept


def _similarity(a: str, b: str, color_similarity) -> float:
    if a.startswith("#") and b.startswith("#"):
        return color_similarity(a, b)
    if a.startswith("#") or b.startswith("#"):
        return 0.0
    return 1.0 if a == b else 0.0


def _install(recorder: _Recorder) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.axes._base import _process_plot_var_args
    from matplotlib.figure import Figure
    from matplotlib.image import NonUniformImage
    from matplotlib.patches import Circle, Ellipse
    from matplotlib.projections.polar import PolarAxes
    from mpl_toolkits.mplot3d import Axes3D

    both = dict(traced_type=True, traced_color=True)
    type_only = dict(traced_type=True, traced_color=False)
    color_only = dict(traced_type=False, traced_color=True)
    for name in (
        "bar", "axhline", "axvline", "axvspan", "axhspan", "hlines", "vlines", "boxplot", "violinplot",
        "hist", "scatter", "quiver", "pie", "fill", "imshow", "pcolor", "contour", "contourf",
        "broken_barh", "tripcolor",
    ):  # fmt: skip
        recorder.wrap(Axes, name, **both)
    for name in ("barh", "plot", "errorbar", "violin", "fill_between", "fill_betweenx"):
        recorder.wrap(Axes, name, **type_only)
    recorder.wrap(_process_plot_var_args, "_make_line", **color_only)
    # Both fill_between and fill_betweenx draw through this one; ChartMimic groups their colours there.
    recorder.wrap(Axes, "_fill_between_x_or_y", **color_only)
    # Polar lines get a colour group of their own; the type side counts them through Axes.plot.
    PolarAxes.plot = lambda self, *a, **k: Axes.plot(self, *a, **k)
    recorder.wrap(PolarAxes, "plot", **color_only, module=Axes.plot.__wrapped__.__module__)
    for name in ("scatter", "plot", "plot_surface", "bar3d", "bar", "add_collection3d"):
        recorder.wrap(Axes3D, name, **both)
    for cls in (NonUniformImage, Ellipse, Circle):
        recorder.wrap(cls, "__init__", **both)
    try:
        import networkx as nx
        import networkx.drawing.nx_pylab as nx_pylab
    except ImportError:
        nx = None
    if nx is not None:
        for name in ("draw_networkx_nodes", "draw_networkx_edges", "draw_networkx_labels"):
            holder = type("networkx", (), {name: staticmethod(getattr(nx_pylab, name))})
            recorder.wrap(holder, name, **both)
            wrapped = holder.__dict__[name]
            setattr(nx_pylab, name, wrapped)
            setattr(nx, name, wrapped)

    def capture_savefig(figure, *args, **kwargs):
        recorder.saved_figure = figure

    def capture_show(*args, **kwargs):
        recorder.saved_figure = plt.gcf()

    Figure.savefig = capture_savefig
    Figure.show = lambda figure, *a, **k: capture_savefig(figure)
    plt.show = capture_show


def _layout(figure) -> list[dict[str, int]]:
    layout = []
    for axes in figure.axes:
        spec = axes.get_subplotspec()
        if spec is None:
            continue
        nrows, ncols = spec.get_gridspec().get_geometry()
        layout.append(
            dict(
                nrows=nrows,
                ncols=ncols,
                row_start=spec.rowspan.start,
                row_end=spec.rowspan.stop - 1,
                col_start=spec.colspan.start,
                col_end=spec.colspan.stop - 1,
            )
        )
    return layout


def _drawn_texts(figure) -> list[str]:
    from matplotlib.backends.backend_pdf import RendererPdf

    texts: list[str] = []
    original = RendererPdf.draw_text

    def record(renderer, gc, x, y, s, *args, **kwargs):
        texts.append(s)
        return original(renderer, gc, x, y, s, *args, **kwargs)

    for axes in figure.get_axes():
        axes.set_xticks([])
        axes.set_yticks([])
    RendererPdf.draw_text = record
    try:
        from matplotlib.backends.backend_pdf import FigureCanvasPdf

        FigureCanvasPdf(figure).print_pdf(io.BytesIO())
    finally:
        RendererPdf.draw_text = original
    return texts


def trace(payload: dict[str, Any]) -> dict[str, Any]:
    """Run ``payload["code"]`` and return its texts, layout, plotting-function counts and colours."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    warnings.filterwarnings("ignore")
    recorder = _Recorder()
    _install(recorder)
    plt.close("all")
    program = compile(payload["code"], "<program>", "exec")
    exec(program, {"__name__": "__main__", "__builtins__": __builtins__})

    figure = recorder.saved_figure
    if figure is None:
        figure = plt.gcf()
    colors = recorder.final_colors()
    layout = _layout(figure)
    texts = _drawn_texts(figure)
    return {"texts": texts, "layout": layout, "types": dict(recorder.types), "colors": colors}
