"""ChartMimic's low-level scores between a generated and a reference matplotlib program.

ChartMimic (Yang et al., ICLR 2025, arXiv 2406.09961) scores chart-to-code outputs with four
evaluators, each a precision/recall/F1 between what the two programs draw. The definitions are those
of its code (``chart2code/utils/evaluator/``: ``text_evaluator.py``, ``layout_evaluator.py``,
``chart_type_evaluator.py``, ``color_evaluator.py`` with ``color_utils.py``), including where they are
odd; what each run records is described in :mod:`vsdpo.metrics.chartmimic_trace`.

- **text**: the strings drawn into PDFs (tick labels removed before the final save), matched as a
  multiset of exact strings;
- **layout**: per gridded axes the grid shape and the rows and columns it spans, as a multiset;
- **type**: the plotting functions called (outermost calls only) with their counts; matches are
  ``min(count_gen, count_ref)`` per function;
- **color**: per plotting function the colours it drew; within each function the two lists are
  matched one-to-one to maximise the summed similarity ``max(0, 1 - CIEDE2000 / 100)`` (colormap
  names match only by equal name), and precision and recall divide the summed similarity over all
  functions by the number of generated and of reference colours.

The generated program is run the way the benchmark runs a model's output: cut at its first
``plt.savefig(``/``plt.show(``, wrapped in ``try: ... except Exception: pass`` and saved, so a program
that raises still scores what it drew before the error; only a syntax error or a failing final save
scores 0 on all four (:mod:`vsdpo.metrics.chartmimic_program`). The reference runs as it is; a
reference that fails raises :class:`ReferenceProgramError`. When either side records nothing, that
score is 0.

Where the benchmark's code depends on more than the two programs, a keyword chooses:

- ``reference_name`` (the benchmark's file name of the pair, e.g. ``"graph_3.py"``): the benchmark
  tests its file paths. A name starting with ``graph`` makes every axes of both programs a 1x1 cell
  spanning rows and columns 0..1 for the layout score; a name containing ``box`` gives a reference
  without any colour a colour recall of 0.
- ``strict_zero_division``: the benchmark divides by the number of reference colours and, outside
  ``box`` paths, fails with ``ZeroDivisionError`` when there are none. That is a bug, not a score:
  by default such a pair scores colour 0 (as the ``box`` rule does); True raises as the benchmark.
- ``compat`` (default True): programs run with the calls of the matplotlib the benchmark pins
  (:mod:`vsdpo.render.chart.compat`).

Not reproduced: the benchmark's evaluator objects keep the previous pair's values when a pair
records no plotting function at all (the type score then repeats the last pair's); here every pair
is scored on its own, and such a pair scores 0. Its colour thinning above ten colours follows
Python's set order (it varies between runs); here it follows the order of drawing.

Both programs run in the render sandbox; nothing of them runs in the calling process. A generated
program that was just rendered need not run again: the renderer records its trace in the same run
when asked (``render(code, "chart", chartmimic=True)``, ``RenderResult.record``), where that run
provably gives the benchmark's trace, and :func:`score` takes it as ``recorded``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from vsdpo.metrics.chartmimic_program import GRAPH_CELL
from vsdpo.metrics.color import color_similarity
from vsdpo.metrics.kept import KeptResults
from vsdpo.render.sandbox import run_in_sandbox

TRACE_ENTRY = "vsdpo.metrics.chartmimic_trace:trace"
METRICS = ("text", "layout", "type", "color")


@dataclass
class ChartMimicScore:
    """F1 of each low-level metric in [0, 1], their mean, and precision/recall per metric."""

    text: float
    layout: float
    type: float
    color: float
    mean: float
    ok: bool = True  # False when the generated program did not run
    error: str | None = None
    details: dict[str, dict[str, float]] = field(default_factory=dict)
    # What each program drew (the tracer's dicts), kept for the feedback on how the two differ.
    generated_trace: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    reference_trace: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in (*METRICS, "mean")}


class ReferenceProgramError(ValueError):
    """The reference program itself failed: the pair cannot be scored."""


def _f1(n_correct: float, n_generated: int, n_reference: int) -> dict[str, float]:
    precision = n_correct / n_generated if n_generated else 0.0
    recall = n_correct / n_reference if n_reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def multiset_f1(generated: Iterable[Hashable], reference: Iterable[Hashable]) -> dict[str, float]:
    """Precision/recall/F1 of a multiset match; 0 when either side is empty."""
    generated_counts, reference_counts = Counter(generated), Counter(reference)
    n_generated, n_reference = sum(generated_counts.values()), sum(reference_counts.values())
    if not n_generated or not n_reference:
        return _f1(0, 0, 0)
    n_correct = sum((generated_counts & reference_counts).values())
    return _f1(n_correct, n_generated, n_reference)


def text_f1(generated: list[str], reference: list[str]) -> dict[str, float]:
    return multiset_f1(generated, reference)


def layout_f1(generated: list[dict[str, int]], reference: list[dict[str, int]]) -> dict[str, float]:
    as_key = lambda cell: tuple(sorted(cell.items()))
    return multiset_f1(map(as_key, generated), map(as_key, reference))


def type_f1(generated: dict[str, int], reference: dict[str, int]) -> dict[str, float]:
    return multiset_f1(Counter(generated).elements(), Counter(reference).elements())


def _color_pair_similarity(a: str, b: str) -> float:
    if a.startswith("#") and b.startswith("#"):
        return color_similarity(a, b)
    if a.startswith("#") or b.startswith("#"):
        return 0.0
    return 1.0 if a == b else 0.0


def _group(colors: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for entry in colors:
        function, _, color = entry.partition("--")
        groups.setdefault(function, []).append(color)
    return groups


def color_f1(
    generated: list[str], reference: list[str], *, empty_reference: str = "zero"
) -> dict[str, float]:
    """Colour F1 over ``"function--color"`` entries (see the module docstring).

    ``empty_reference``: "zero" scores a reference without colours 0; "raise" fails with
    ``ZeroDivisionError`` as the benchmark's code does outside its ``box`` paths.
    """
    if not reference and empty_reference == "raise":
        raise ZeroDivisionError("reference: no colours to divide by (the benchmark's own failure)")
    generated_groups, reference_groups = _group(generated), _group(reference)
    matched = 0.0
    for function in generated_groups.keys() & reference_groups.keys():
        ours, theirs = generated_groups[function], reference_groups[function]
        similarity = np.array([[_color_pair_similarity(a, b) for b in theirs] for a in ours])
        # The best one-to-one matching of the shorter list into the longer one.
        rows, cols = linear_sum_assignment(similarity, maximize=True)
        matched += float(similarity[rows, cols].sum())
    return _f1(matched, len(generated), len(reference))


def score_traces(
    generated: dict[str, Any], reference: dict[str, Any], *, empty_reference_colors: str = "zero"
) -> ChartMimicScore:
    """The four scores from two traces (the dicts :func:`vsdpo.metrics.chartmimic_trace.trace` returns)."""
    details = {
        "text": text_f1(generated["texts"], reference["texts"]),
        "layout": layout_f1(generated["layout"], reference["layout"]),
        "type": type_f1(generated["types"], reference["types"]),
        "color": color_f1(generated["colors"], reference["colors"], empty_reference=empty_reference_colors),
    }
    f1 = {name: details[name]["f1"] for name in METRICS}
    return ChartMimicScore(**f1, mean=sum(f1.values()) / len(f1), details=details)


def failed_score(error: str | None) -> ChartMimicScore:
    return ChartMimicScore(0.0, 0.0, 0.0, 0.0, 0.0, ok=False, error=error)


def trace_program(
    code: str,
    *,
    role: str = "generated",
    graph_layout: bool = False,
    compat: bool = True,
    timeout_s: float = 20,
) -> tuple[dict[str, Any] | None, str | None]:
    """Run one program through the sandbox with the tracer: ``(trace, None)`` or ``(None, error)``.

    ``role`` "generated" runs it as the benchmark runs a model's program, "reference" as it is.
    """
    if role not in ("generated", "reference"):
        raise ValueError(f"role: expected 'generated' or 'reference', got {role!r}")
    payload = {"code": code, "role": role, "graph_layout": graph_layout, "compat": compat}
    result = run_in_sandbox(TRACE_ENTRY, payload, timeout_s=timeout_s)
    if not result.ok:
        return None, result.error or "the program failed"
    return result.value, None


# Reference programs recur across rollouts: their traces are kept (successful runs only).
_REFERENCE_CACHE: KeptResults[dict[str, Any]] = KeptResults(1024)


def trace_reference(
    code: str, *, graph_layout: bool = False, compat: bool = True, timeout_s: float = 20
) -> dict[str, Any]:
    def trace() -> dict[str, Any]:
        reference_trace, error = trace_program(
            code, role="reference", graph_layout=graph_layout, compat=compat, timeout_s=timeout_s
        )
        if reference_trace is None:
            raise ReferenceProgramError(f"reference: the reference program failed to run: {error}")
        return reference_trace

    return _REFERENCE_CACHE.get((code, graph_layout, compat), trace)


def recorded_trace(
    record: dict[str, Any] | None, *, graph_layout: bool = False, compat: bool = True
) -> dict[str, Any] | None:
    """The tracer's trace of a generated program from the one the renderer recorded in its run
    (``RenderResult.record["chartmimic"]``); None without one, or when it was recorded under other
    compatibility calls than ``compat``."""
    if record is None or record.get("compat") != compat:
        return None
    if graph_layout:
        layout = [dict(GRAPH_CELL) for _ in range(record["axes"])]
    else:
        layout = [dict(cell) for cell in record["layout"]]
    return {
        "texts": list(record["texts"]),
        "layout": layout,
        "types": dict(record["types"]),
        "colors": list(record["colors"]),
    }


def name_rules(reference_name: str | None) -> tuple[bool, str]:
    """(graph layout, what a reference without colours scores) for the benchmark's file name."""
    if reference_name is None:
        return False, "zero"
    base = reference_name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.startswith("graph"), "zero" if "box" in reference_name else "raise"


def score(
    generated: str,
    reference: str,
    *,
    reference_name: str | None = None,
    strict_zero_division: bool = False,
    compat: bool = True,
    timeout_s: float = 20,
    recorded: dict[str, Any] | None = None,
) -> ChartMimicScore:
    """ChartMimic's text, layout, type and colour F1 of ``generated`` against ``reference``.

    The keywords are the choices described in the module docstring. ``recorded``: the trace the
    renderer recorded in its run of ``generated`` (``RenderResult.record["chartmimic"]``), scored
    instead of running the program again; without one (None) the program runs through the tracer.
    Raises :class:`ReferenceProgramError` when the reference program itself does not run.
    """
    if not isinstance(generated, str):
        raise TypeError(f"generated: expected the program as a str, got {type(generated).__name__}")
    if not isinstance(reference, str):
        raise TypeError(f"reference: expected the program as a str, got {type(reference).__name__}")
    graph_layout, empty_colors = name_rules(reference_name)
    if not strict_zero_division:
        empty_colors = "zero"
    reference_trace = trace_reference(
        reference, graph_layout=graph_layout, compat=compat, timeout_s=timeout_s
    )
    generated_trace = recorded_trace(recorded, graph_layout=graph_layout, compat=compat)
    if generated_trace is None:
        generated_trace, error = trace_program(
            generated, role="generated", graph_layout=graph_layout, compat=compat, timeout_s=timeout_s
        )
    if generated_trace is None:
        return failed_score(error)
    result = score_traces(generated_trace, reference_trace, empty_reference_colors=empty_colors)
    result.generated_trace, result.reference_trace = generated_trace, reference_trace
    return result
