"""The ChartMimic tracer: runs one matplotlib program and records what ChartMimic's evaluators look at.

Runs inside the render sandbox (entry ``vsdpo.metrics.chartmimic_trace:trace``), never in the caller:
the hooks below patch matplotlib classes, which is harmless in a forked child that exits afterwards.
ChartMimic runs each program four times, once per evaluator, each time with its own prefix of hooks
(``chart2code/utils/evaluator/*_evaluator.py`` and ``*_prefix.py``); one run here records all four,
with the definitions read from those files:

- ``texts``: every string ``RendererPdf.draw_text`` draws during the whole run, so at every PDF save
  the program makes, with the ticks removed right before the first ``plt.savefig`` of the program's
  text (``TextEvaluator`` with ``use_axs=False``, its published setting). A program that saves a PDF
  itself (``fig.savefig("x.pdf")``) records its texts, tick labels included, once more.
- ``layout``: per axes of ``plt.gcf()`` once the program has finished, its grid geometry and the rows
  and columns it spans, axes without a subplot spec left out (``LayoutEvaluator``); with
  ``graph_layout`` every axes counts as ``1x1`` spanning rows and columns 0..1, the benchmark's rule
  for programs whose path contains ``/graph``.
- ``types``: how often each plotting function was called while no other traced function runs
  (``chart_type_evaluator_prefix.py``); the key is the function's defining file and name (plus
  ``_polar`` for ``plot`` on a ``PolarAxes``), the benchmark's own key, so functions that share a
  definition site (decorated Axes methods, ``Circle``/``Ellipse``) share a count.
- ``colors``: ``"group--color"`` entries (``color_evaluator_prefix.py``). An outermost call of a
  traced function keys each artist it made by the function and the artist's colour at that moment
  (``#RRGGBB``, a colormap name, or ``#RRGGBBAA`` when a program gives that string); an artist made
  later under the same key replaces the earlier one. When the program has finished, the final colour
  of each kept artist is read. So a box plot whose boxes all start in one colour and are recoloured
  afterwards counts one box, the last, in its final colour. Duplicates are dropped; more than ten
  colours are thinned to mutually distinct ones (similarity at most 0.7). The benchmark takes the
  entries in Python's set order, which changes from run to run; here they keep the order in which
  they were first recorded, so a score is reproducible.

As in the benchmark, a traced call that raises leaves its evaluator's "inside a traced call" flag
set, so nothing is counted or coloured after it; and an unreadable colour fails that call (at the
call) or empties the colour list (when read at the end).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import warnings
from collections import Counter
from typing import Any

import matplotlib
import matplotlib.cbook as cbook
import matplotlib.colors as mcolors
import matplotlib.patches as mpatches
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axes._base import _process_plot_var_args
from matplotlib.backends.backend_pdf import RendererPdf
from matplotlib.figure import Figure
from matplotlib.image import NonUniformImage
from matplotlib.projections.polar import PolarAxes
from mpl_toolkits.mplot3d import Axes3D
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from vsdpo.metrics.chartmimic_program import (
    GRAPH_CELL,
    OUTPUT_NAME,
    TICK_HOOK,
    benchmark_program,
    with_tick_removal,
)
from vsdpo.metrics.color import color_similarity

# A colour list longer than this is thinned, as ChartMimic does.
MAX_COLORS_BEFORE_FILTER = 10
# Colours more similar than this to an already kept one are dropped when thinning.
FILTER_SIMILARITY = 0.7


class UnreadableColor(TypeError):
    """A colour the benchmark's hex conversion refuses (it fails where this is raised)."""


def to_hex(color: Any) -> str:
    """The benchmark's colour key: ``#RRGGBB``; a ``#``-string of 7 or 9 characters kept as given."""
    try:
        if isinstance(color, str):
            if color.startswith("#") and len(color) in (7, 9):
                return color.upper()
            return mcolors.to_hex(mcolors.to_rgba(color)).upper()
        if isinstance(color, list | tuple | np.ndarray) and len(color) in (3, 4):
            return mcolors.to_hex(color).upper()
    except (ValueError, TypeError):
        pass
    raise UnreadableColor(f"color: cannot read {color!r} as a colour")


def _definition_file(function: Any) -> str:
    """Where ``function`` is defined, as ``inspect.getfile`` says, shortened to the package path.

    Deprecation shims matplotlib added after 3.8.4 (the benchmark's version) and the compatibility
    wrappers of :mod:`vsdpo.render.chart.compat` are looked through: the key stays the pinned one.
    """
    shims = (os.path.join("_api", "deprecation.py"), os.path.join("chart", "compat.py"))
    code = getattr(function, "__code__", None)
    while code is not None and code.co_filename.endswith(shims):
        function = getattr(function, "__wrapped__", None)
        code = getattr(function, "__code__", None)
    path = code.co_filename if code is not None else repr(function)
    for marker in ("site-packages", "dist-packages"):
        if marker in path:
            return path.rsplit(marker + os.sep, 1)[1]
    return path


# --- what one outermost call keys: (colour at call time, artist, reader of its final colours) ----------


def _single(read):
    return lambda artist, key: [to_hex(read(artist))]


_LINE = _single(lambda line: line.get_color())
_FACE = _single(lambda artist: artist.get_facecolor())
_FIRST_FACE = _single(lambda artist: list(artist.get_facecolors()[0]))
_FIRST_OF_FACE = _single(lambda artist: list(artist.get_facecolor()[0]))
_ORIGINAL_FACE = _single(lambda patch: list(patch._original_facecolor))
_CMAP = lambda artist, key: [artist.get_cmap().name]


def _all_faces(artist, key):
    return [to_hex(color) for color in artist.get_facecolors().tolist()]


def _all_edges(artist, key):
    return [to_hex(list(color)) for color in artist.get_edgecolors()]


def _scatter_face(artist, key):
    if not key.startswith("#"):
        return [key]  # a colormap name stays as recorded
    faces = artist.get_facecolor()
    return [to_hex(list(faces[0]))] if len(faces) else []


def _first_face_or_cmap(artist, key):
    return [key] if not key.startswith("#") else [to_hex(artist.get_facecolors().tolist()[0])]


def _all_faces_or_cmap(artist, key):
    return [key] if not key.startswith("#") else _all_faces(artist, key)


def _network_edges(artist, key):
    if isinstance(artist, list):
        return [to_hex(patch.get_facecolor()) for patch in artist]
    return [to_hex(color) for color in artist.get_edgecolors().tolist()]


def _venn(diagram, key):
    return [to_hex(patch.get_facecolor()) for patch in diagram.patches]


def _keyed_by_last(colors: list[str], artist, reader) -> list[tuple[str, Any, Any]]:
    """One artist for several colours, keyed by the last (the benchmark's loop variable after its loop)."""
    if not colors:
        raise UnreadableColor("color: a traced call drew no colour to key its artist by")
    return [(colors[-1], artist, reader)]


def _cmap_keyword(kwargs: dict[str, Any]) -> str | None:
    cmap = kwargs.get("cmap")
    if cmap is None:
        return None
    return cmap if isinstance(cmap, str) else cmap.name


def color_records(name: str, kind: str, args: tuple, kwargs: dict, result: Any) -> list[tuple[str, Any, Any]]:
    """(key colour, artist, reader) for what one outermost call of ``name`` made; ``kind`` is "2d",
    "polar" (``plot``/``scatter`` on a ``PolarAxes``), "3d", "squarify", "networkx" or "init"."""
    first = args[0] if args else None
    if kind == "3d":
        if name in ("scatter", "plot_surface") and (cmap := _cmap_keyword(kwargs)) is not None:
            return [(cmap, result, _first_face_or_cmap if name == "plot_surface" else _all_faces_or_cmap)]
        if name == "scatter":
            return _keyed_by_last(_all_faces(result, ""), result, _all_faces_or_cmap)
        if name == "plot":
            return [(to_hex(line.get_color()), line, _LINE) for line in result]
        if name in ("plot_surface", "bar3d"):
            return [(to_hex(result.get_facecolors().tolist()[0]), result, _first_face_or_cmap)]
        if name == "bar":
            return [(to_hex(patch.get_facecolor()), patch, _FACE) for patch in result]
        if name == "add_collection3d":
            return _keyed_by_last(_all_faces(result, ""), result, _all_faces)
        return []
    if kind == "networkx":
        if name == "draw_networkx_labels":
            return [(to_hex(text.get_color()), text, _LINE) for text in result.values()]
        if name == "draw_networkx_edges":
            return _keyed_by_last(_network_edges(result, ""), result, _network_edges)
        return _keyed_by_last(_all_faces(result, ""), result, _all_faces)
    if kind == "squarify":
        patches = [patch for container in result.containers for patch in container]
        return [(to_hex(list(patch.get_facecolor())), patch, _FACE) for patch in patches]
    if kind == "init":
        if type(first) is NonUniformImage:
            return [(first.get_cmap().name, first, _CMAP)]
        if type(first) in (mpatches.Ellipse, mpatches.Circle):
            return [(to_hex(first.get_facecolor()), first, _FACE)]
        if type(first).__name__ == "VennDiagram":
            return _keyed_by_last(_venn(first, ""), first, _venn)
        return []
    if name == "_make_line" or name == "_makeline":
        return [(to_hex(result[1]["color"]), result[0], _LINE)]
    if name in ("axhline", "axvline"):
        return [(to_hex(result.get_color()), result, _LINE)]
    if name == "_fill_between_x_or_y":
        return [(to_hex(list(result.get_facecolors()[0])), result, _FIRST_FACE)]
    if name == "bar":
        return [(to_hex(list(patch._original_facecolor)), patch, _ORIGINAL_FACE) for patch in result]
    if name == "scatter":
        if (cmap := _cmap_keyword(kwargs)) is not None:
            return [(cmap, result, _scatter_face)]
        faces = result.get_facecolor()
        return [(to_hex(list(faces[0])), result, _scatter_face)] if len(faces) else []
    if name == "plot" and kind == "polar":
        return [(to_hex(line.get_color()), line, _LINE) for line in result]
    if name == "pie":
        return [(to_hex(wedge.get_facecolor()), wedge, _FACE) for wedge in result[0]]
    if name in ("axvspan", "axhspan"):
        return [(to_hex(result.get_facecolor()), result, _FACE)]
    if name in ("hlines", "vlines"):
        return _keyed_by_last(_all_edges(result, ""), result, _all_edges)
    if name == "boxplot":
        boxes = [box for box in result["boxes"] if type(box) is mpatches.PathPatch]
        return [(to_hex(list(box.get_facecolor())), box, _FACE) for box in boxes]
    if name == "violinplot":
        return [(to_hex(list(body.get_facecolor()[0])), body, _FIRST_OF_FACE) for body in result["bodies"]]
    if name == "hist":
        patches = result[2]
        items = patches if type(patches) is not cbook.silent_list else [p for group in patches for p in group]
        return [(to_hex(list(patch.get_facecolor())), patch, _FACE) for patch in items]
    if name in ("quiver", "broken_barh"):
        return _keyed_by_last(_all_faces(result, ""), result, _all_faces)
    if name in ("imshow", "pcolor", "contour", "contourf", "tripcolor"):
        return [(result.get_cmap().name, result, _CMAP)]
    if name == "fill":
        return [(to_hex(list(patch.get_facecolor())), patch, _FACE) for patch in result]
    return []


class Recorder:
    """What one run records: texts, type counts, the kept artists per colour key.

    ``shadow``: the run is the renderer's, which must draw what the program draws without the
    tracer. A colour the benchmark's wrapper would fail on then raises nothing into the program; the
    recorder is marked ``broken`` instead (its trace is not the benchmark's) and the caller traces apart.
    """

    def __init__(self, *, shadow: bool = False) -> None:
        self.texts: list[str] = []
        self.types: Counter[str] = Counter()
        self.in_type = False  # the type evaluator's flag
        self.in_color = False  # the colour evaluator's flag
        self.artists: dict[str, tuple[str, Any, Any]] = {}  # "group--key colour" -> (group, artist, reader)
        self.shadow = shadow
        self.broken = False
        self.calls = 0  # calls of the traced functions, outermost or not

    def keep(self, group: str, name: str, kind: str, args: tuple, kwargs: dict, result: Any) -> None:
        """Key the artists an outermost call made by their colour now (``color_records``)."""
        if self.shadow and _projects(result):
            self.broken = True  # reading its colour would change what the renderer draws
            return
        try:
            records = color_records(name, kind, args, kwargs, result)
        except Exception:
            if not self.shadow:
                raise
            self.broken = True
            return
        for key, artist, reader in records:
            self.artists[f"{group}--{key}"] = (group, artist, reader)

    @contextlib.contextmanager
    def paused(self):
        """Record nothing inside: the renderer's own draws are no part of the benchmark's run."""
        flags = self.in_type, self.in_color
        self.in_type = self.in_color = True
        try:
            yield
        finally:
            self.in_type, self.in_color = flags

    def remove_ticks(self) -> None:
        for axes in plt.gcf().get_axes():
            axes.set_xticks([])
            axes.set_yticks([])

    def wrap(self, owner: Any, attribute: str, *, kind: str = "2d", types: bool = True, colors: bool = True):
        """Replace ``owner.attribute`` by a wrapper that counts and colours its outermost calls."""
        original = getattr(owner, attribute)
        name = original.__name__
        where = _definition_file(original)
        suffix = {"polar": "_polar", "3d": "_3d", "squarify": "_squarify"}.get(kind, "")
        recorder = self

        def traced(*args, **kwargs):
            recorder.calls += 1
            count = types and not recorder.in_type
            record = colors and not recorder.in_color
            polar = kind == "2d" and name == "plot" and bool(args) and type(args[0]) is PolarAxes
            if count:
                recorder.types[f"{where}{'_polar' if polar else ''}:{name}"] += 1
                recorder.in_type = True
            if record:
                recorder.in_color = True
            # An exception leaves both flags set, as the benchmark's wrappers do.
            result = original(*args, **kwargs)
            if record:
                record_kind = kind
                if kind == "2d" and name == "scatter" and args and type(args[0]) is PolarAxes:
                    record_kind = "polar"
                group = f"{where}/{name}{suffix or ('_polar' if record_kind == 'polar' else '')}"
                recorder.keep(group, name, record_kind, args, kwargs, result)
                recorder.in_color = False
            if count:
                recorder.in_type = False
            return result

        traced.__wrapped__ = original
        setattr(owner, attribute, traced)
        return traced

    def final_colors(self) -> list[str]:
        """The kept artists' final colours, deduplicated in first-recorded order, thinned above ten."""
        entries: dict[str, None] = {}
        try:
            for key, (group, artist, reader) in self.artists.items():
                recorded = key.split("--", 1)[1]
                for value in reader(artist, recorded):
                    entries[f"{group}--{value}"] = None
        except Exception:  # noqa: BLE001 - the benchmark's final read fails whole: no colours at all
            return []
        colors = list(entries)
        if len(colors) <= MAX_COLORS_BEFORE_FILTER:
            return colors
        kept: list[str] = []
        for entry in colors:
            value = entry.split("--", 1)[1]
            if all(_similarity(value, other.split("--", 1)[1]) <= FILTER_SIMILARITY for other in kept):
                kept.append(entry)
        return kept


def _projects(artist: Any) -> bool:
    """Whether reading ``artist``'s colours runs a 3-D projection first: a ``Poly3DCollection`` not yet
    drawn projects itself, which settles its axes' view limits early (the benchmark's run draws
    another picture than the program's, as ``set_zticks`` after ``bar3d`` shows)."""
    return isinstance(artist, Poly3DCollection) and not hasattr(artist, "_facecolors2d")


def _similarity(a: str, b: str) -> float:
    if a.startswith("#") and b.startswith("#"):
        return color_similarity(a[:7], b[:7])
    if a.startswith("#") or b.startswith("#"):
        return 0.0
    return 1.0 if a == b else 0.0


def _install(recorder: Recorder) -> None:
    """The hooks of every evaluator, matplotlib's savefig included."""
    _install_hooks(recorder)
    _install_savefig()


def _install_hooks(recorder: Recorder) -> None:
    """The wrappers of the plotting functions and the PDF text hook."""
    both_2d = (
        "bar",
        "scatter",
        "axhline",
        "axvline",
        "axvspan",
        "axhspan",
        "hlines",
        "vlines",
        "boxplot",
        "violinplot",
        "hist",
        "quiver",
        "pie",
        "fill",
        "imshow",
        "pcolor",
        "contour",
        "contourf",
        "broken_barh",
        "tripcolor",
    )
    for name in both_2d:
        recorder.wrap(Axes, name)
    for name in ("barh", "plot", "errorbar", "violin", "fill_between", "fill_betweenx"):
        recorder.wrap(Axes, name, colors=False)
    line_maker = "_make_line" if hasattr(_process_plot_var_args, "_make_line") else "_makeline"
    recorder.wrap(_process_plot_var_args, line_maker, types=False)
    recorder.wrap(Axes, "_fill_between_x_or_y", types=False)
    # Lines on a PolarAxes get a colour group of their own; their count goes through Axes.plot.
    _wrap_polar_plot(recorder)
    for name in ("scatter", "plot", "plot_surface", "bar3d", "bar", "add_collection3d"):
        recorder.wrap(Axes3D, name, kind="3d")
    for cls in (NonUniformImage, mpatches.Ellipse, mpatches.Circle):
        recorder.wrap(cls, "__init__", kind="init")
    _install_optional(recorder)

    original_draw_text = RendererPdf.draw_text

    def draw_text(renderer, gc, x, y, s, *args, **kwargs):
        recorder.texts.append(s)
        return original_draw_text(renderer, gc, x, y, s, *args, **kwargs)

    RendererPdf.draw_text = draw_text


def _install_savefig() -> None:
    original_savefig = Figure.savefig

    def savefig(figure, fname, *args, **kwargs):
        # Drawn for real, in the format the name asks for, into memory: nothing reaches the disk.
        if kwargs.get("format") is None and isinstance(fname, str | os.PathLike):
            extension = os.path.splitext(os.fspath(fname))[1][1:]
            if extension:
                kwargs["format"] = extension
        return original_savefig(figure, io.BytesIO(), *args, **kwargs)

    Figure.savefig = savefig


def _wrap_polar_plot(recorder: Recorder) -> None:
    """``PolarAxes.plot``: colour only (its count is the type wrapper's on ``Axes.plot``)."""
    through = Axes.plot  # already wrapped for the type count
    where = _definition_file(Axes.plot.__wrapped__)

    def traced(self, *args, **kwargs):
        recorder.calls += 1
        record = not recorder.in_color
        if record:
            recorder.in_color = True
        result = through(self, *args, **kwargs)
        if record:
            if type(self) is PolarAxes:
                recorder.keep(f"{where}/plot_polar", "plot", "polar", (self, *args), kwargs, result)
            recorder.in_color = False
        return result

    PolarAxes.plot = traced


def _install_optional(recorder: Recorder) -> None:
    """squarify, matplotlib-venn and networkx, where installed (the benchmark imports all three)."""
    try:
        import squarify

        recorder.wrap(squarify, "plot", kind="squarify")
    except ImportError:
        pass
    try:
        from matplotlib_venn._common import VennDiagram

        recorder.wrap(VennDiagram, "__init__", kind="init")
    except ImportError:
        pass
    try:
        import networkx
        import networkx.drawing.nx_pylab as nx_pylab
    except ImportError:
        return
    for name in ("draw_networkx_nodes", "draw_networkx_edges", "draw_networkx_labels"):
        # Two wrappers of one function, as in the benchmark: the one nx_pylab calls and networkx's.
        for module in (nx_pylab, networkx):
            recorder.wrap(module, name, kind="networkx")


def _layout(figure, graph_layout: bool) -> list[dict[str, int]]:
    if graph_layout:
        return [dict(GRAPH_CELL) for _ in figure.axes]
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


def _execute(program: str, recorder: Recorder) -> None:
    namespace = {"__name__": "__main__", "__builtins__": __builtins__, TICK_HOOK: recorder.remove_ticks}
    exec(compile(program, "<program>", "exec"), namespace)


def trace(payload: dict[str, Any]) -> dict[str, Any]:
    """Run ``payload["code"]``; return its texts, layout, plotting-function counts and colours.

    ``payload["role"]`` is "generated" (prepared as the benchmark prepares a model's program, see
    :mod:`vsdpo.metrics.chartmimic_program`) or "reference" (run as it is; a reference that never calls
    ``plt.savefig`` gets one at its end, as every reference of the benchmark ends, so that its texts,
    drawn only at a save, are recorded: without it a task's reference would record no text at all and
    every generated text would count as extra); ``graph_layout`` selects
    the benchmark's layout rule for graph programs; ``compat`` (default True) restores the calls of
    the pinned matplotlib (:mod:`vsdpo.render.chart.compat`).
    """
    matplotlib.use("Agg", force=True)
    warnings.filterwarnings("ignore")
    if payload.get("compat", True):
        from vsdpo.render.chart import compat

        compat.install()
    recorder = Recorder()
    _install(recorder)
    plt.close("all")
    program = payload["code"]
    if payload.get("role") == "generated":
        program = benchmark_program(program)
    elif "plt.savefig" not in program:
        program = f'{program.rstrip()}\nplt.savefig("{OUTPUT_NAME}")\n'
    with_hook, at_line_start = with_tick_removal(program)
    if at_line_start:
        try:
            compile(with_hook, "<program>", "exec")
        except SyntaxError:
            at_line_start = False
    rc = dict(matplotlib.rcParams)
    _execute(with_hook if at_line_start else program, recorder)
    result = {
        "texts": list(recorder.texts),
        "layout": _layout(plt.gcf(), bool(payload.get("graph_layout"))),
        "types": dict(recorder.types),
        "colors": recorder.final_colors(),
    }
    if not at_line_start:
        # The benchmark's text pass runs a reshaped program: run it apart; if it fails, it records nothing.
        plt.close("all")
        matplotlib.rcParams.update(rc)
        recorder.texts, recorder.in_type, recorder.in_color = [], False, False
        try:
            _execute(with_hook, recorder)
            result["texts"] = list(recorder.texts)
        except Exception:  # noqa: BLE001
            result["texts"] = []
    return result


def start_recording() -> Recorder:
    """The hooks for the renderer's own run of a generated program (``vsdpo.render.chart.child``), when
    :func:`vsdpo.metrics.chartmimic_program.single_run_names` says that run passes through the state
    the benchmark's program ends in. Installed after the compatibility calls, as :func:`trace` does;
    the program's saves stay the renderer's, and a colour the benchmark would fail on breaks the
    recorder instead of the program (``Recorder.shadow``)."""
    recorder = Recorder(shadow=True)
    _install_hooks(recorder)
    return recorder


def finish_recording(recorder: Recorder, figure: Figure) -> dict[str, Any] | None:
    """The end of the benchmark's program, run once the renderer has drawn its picture: ticks removed
    and the final PDF save of ``figure`` (the current figure where the program stopped), then the
    trace. The layout comes by the common rule, with ``axes`` (the figure's number of axes) for the
    graph rule. None when the recorder broke; a failing save raises, as it fails :func:`trace`."""
    if recorder.broken:
        return None
    if plt.gcf() is not figure:
        plt.figure(figure)
    _install_savefig()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recorder.remove_ticks()
        calls = recorder.calls
        # plt.savefig: this save, then a redraw on the figure's own canvas. The redraw records only
        # where a draw calls traced functions; else it leaves the state the PDF draw left, and is skipped.
        figure.savefig(OUTPUT_NAME)
        if recorder.calls != calls:
            figure.canvas.draw_idle()
    if recorder.broken:
        return None
    return {
        "texts": list(recorder.texts),
        "layout": _layout(figure, False),
        "axes": len(figure.axes),
        "types": dict(recorder.types),
        "colors": recorder.final_colors(),
    }


def warm_up() -> None:
    """Called once by each sandbox worker before it forks: one PDF save of a small figure with text,
    so that every traced job (the benchmark's program ends in a PDF save) inherits the PDF backend's
    fonts and encoder instead of loading them again. The optional libraries whose functions the hooks
    wrap are imported here too (matplotlib-venn brings scipy.optimize, seconds of imports): they bind
    matplotlib's classes, not the functions the compatibility calls replace, so a job that installs
    those calls first finds them as it would have imported them. No hook is installed here."""
    for name in ("squarify", "matplotlib_venn", "networkx"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    figure = Figure()
    axes = figure.add_subplot()
    axes.plot([0, 1], label="a")
    axes.bar([0, 1], [1, 2])
    axes.legend(title="legend")
    axes.set_title("warm $x^2$", fontweight="bold")
    axes.set_xlabel("x", fontstyle="italic")
    figure.savefig(io.BytesIO(), format="pdf")
