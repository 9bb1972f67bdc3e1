"""Run chart programs written for the library versions the benchmarks pin on the newer ones installed here.

ChartMimic's programs were written for, and are scored with, matplotlib 3.8.4 (with the numpy and
pandas of its day). A few calls they make were removed since; run as they are, those programs fail
here although they are correct where they are scored. The policy: a removed call that has a plain
replacement is restored, inside the chart sandbox only, with the meaning the pinned version gave it;
anything else is left failing. Restored (each only where the installed library lacks it):

- ``matplotlib.cm.get_cmap(name=None, lut=None)`` (removed in matplotlib 3.9): the registered colormap,
  resampled to ``lut`` entries when given;
- ``boxplot(labels=...)`` on Axes and pyplot (renamed ``tick_labels`` in 3.9, the old name removed
  later): passed on as ``tick_labels``;
- ``pandas.DataFrame.applymap`` (removed in pandas 3): ``DataFrame.map``;
- one-element arrays as the ``xy``/``xytext`` coordinates of ``annotate`` (numpy 2 refuses to turn them
  into floats, the numpy of matplotlib 3.8.4 did): their single value.

The chart job and the ChartMimic tracer install it unless their payload says ``"compat": False``.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any

_INSTALLED = "_vsdpo_compat"


def install() -> None:
    """Restore the removed calls listed in the module docstring; idempotent."""
    import matplotlib
    import matplotlib.cm
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    if getattr(matplotlib, _INSTALLED, False):
        return
    setattr(matplotlib, _INSTALLED, True)
    if not hasattr(matplotlib.cm, "get_cmap"):
        matplotlib.cm.get_cmap = _get_cmap
    if "labels" not in inspect.signature(Axes.boxplot).parameters:
        Axes.boxplot = _accept_labels(Axes.boxplot)
        plt.boxplot = _accept_labels(plt.boxplot)
    Axes.annotate = _scalar_coordinates(Axes.annotate)
    pandas = sys.modules.get("pandas")
    if pandas is None:
        try:
            import pandas
        except ImportError:
            pandas = None
    if pandas is not None and not hasattr(pandas.DataFrame, "applymap"):
        pandas.DataFrame.applymap = pandas.DataFrame.map


def _get_cmap(name: Any = None, lut: int | None = None):
    """matplotlib 3.8's ``cm.get_cmap``: a colormap by name (the default one for None), ``lut`` entries."""
    import matplotlib
    from matplotlib.colors import Colormap

    if isinstance(name, Colormap):
        return name
    colormap = matplotlib.colormaps[name if name is not None else matplotlib.rcParams["image.cmap"]]
    return colormap if lut is None else colormap.resampled(lut)


def _accept_labels(boxplot):
    @functools.wraps(boxplot)
    def wrapper(*args, labels=None, **kwargs):
        if labels is not None:
            kwargs.setdefault("tick_labels", labels)
        return boxplot(*args, **kwargs)

    return wrapper


def _scalar(value: Any) -> Any:
    size = getattr(value, "size", None)
    if size == 1 and getattr(value, "ndim", 0) > 0:
        return value.item()
    return value


def _scalar_coordinates(annotate):
    @functools.wraps(annotate)
    def wrapper(self, text, xy, *args, xytext=None, **kwargs):
        if isinstance(xy, tuple | list):
            xy = type(xy)(_scalar(value) for value in xy)
        if isinstance(xytext, tuple | list):
            xytext = type(xytext)(_scalar(value) for value in xytext)
        return annotate(self, text, xy, *args, xytext=xytext, **kwargs)

    return wrapper
