"""The program text ChartMimic runs: how it prepares a generated program, and where it removes the ticks.

Plain string work, no matplotlib: the tracer (:mod:`vsdpo.metrics.chartmimic_trace`) applies it inside
the sandbox, and tests check it directly. Both rules are the benchmark's definition, taken from its
code (``chart2code/utils/post_process/code_interpreter.py``, ``_muti_process_run``, and
``chart2code/utils/evaluator/text_evaluator.py``, ``TextEvaluator._log_texts``):

- **A generated program** is indented into a ``try:`` block, cut at the first ``plt.savefig(`` and at
  the first ``plt.show(`` (whichever comes first; text in comments and strings counts, and the ``.``
  of ``plt.show`` matches any character, as the benchmark's pattern does), followed by
  ``except Exception: pass`` and a final ``plt.savefig`` of a PDF. A run-time error therefore keeps
  what was drawn before it; only a syntax error, an error outside ``Exception`` (``SystemExit``) or
  a failing final save leave nothing. Reference programs run as they are.
- **Tick removal** for the text score: every axes of the current figure loses its ticks right before
  the first ``plt.savefig`` of the program's text (the final save, for a generated program). A
  program without one keeps its ticks: the benchmark inserts the removal after it has recorded.

:func:`single_run_names` tells when the program as written, run once to draw its picture, passes
through the state the benchmark's program ends in, so that the trace can be recorded by that run.
"""

from __future__ import annotations

import ast
import re

# Everything from the first match to the end of the text goes (the benchmark's patterns, flag re.S).
_CUT_AT_SAVE = re.compile(r"plt\.savefig\(.*\n*", re.S)
_CUT_AT_SHOW = re.compile(r"plt.show\(.*\n*", re.S)
INDENT = "    "
OUTPUT_NAME = "generated.pdf"
TICK_HOOK = "__chartmimic_remove_ticks__"
# The layout cell of every axes under the benchmark's rule for graph programs.
GRAPH_CELL = {"nrows": 1, "ncols": 1, "row_start": 0, "row_end": 1, "col_start": 0, "col_end": 1}
# What the statements after the cut may be for the run as written to end where the benchmark's does:
# ``plt.savefig(...)`` or ``plt.show(...)`` with arguments built of names and constants only.
_TAIL_CALLS = frozenset({"savefig", "show"})
_TAIL_NODES = (ast.Constant, ast.Name, ast.JoinedStr, ast.FormattedValue, ast.Tuple, ast.List, ast.Load)


def benchmark_program(code: str, output_name: str = OUTPUT_NAME) -> str:
    """The program the benchmark runs for a generated ``code`` (see the module docstring)."""
    body = code.replace("\n", "\n" + INDENT)
    body = _CUT_AT_SHOW.sub("", _CUT_AT_SAVE.sub("", body))
    return f'try:\n{INDENT}{body.strip()}\nexcept Exception as e:\n{INDENT}pass\nplt.savefig("{output_name}")'


def with_tick_removal(program: str) -> tuple[str, bool]:
    """``program`` with a call of :data:`TICK_HOOK` put where the benchmark removes the ticks.

    Returns (text, at_line_start). The call goes on a line of its own right before the first
    ``plt.savefig``; when that does not start a line (it is indented or follows other code), the
    benchmark's insertion reshapes the program around it, and the caller runs the text pass apart.
    Without any ``plt.savefig`` the program is returned unchanged (ticks are never removed).
    """
    at = program.find("plt.savefig")
    if at < 0:
        return program, True
    at_line_start = at == 0 or program[at - 1] == "\n"
    return f"{program[:at]}\n{TICK_HOOK}()\n{program[at:]}", at_line_start


def single_run_names(code: str) -> frozenset[str] | None:
    """The names the statements after the cut read, when one run of ``code`` as written gives the
    trace of :func:`benchmark_program`'s run; None when it may not (the caller then runs the
    benchmark's program apart, as it always may). The caller checks that those names hold plain
    values once the program has run.

    The run as written runs the same statements up to the cut and nothing that draws after it when
    the cut (the first ``plt.savefig(``/``plt.show(`` as the benchmark finds it) starts a line; the
    statements before it parse, once re-indented into the benchmark's ``try:``, to the same syntax
    tree (no string spanning lines, no docstring, no ``__future__`` import that the ``try:`` would
    refuse) and never mention ``savefig``; and the statements from it on are only
    ``plt.savefig``/``plt.show`` calls on names and constants.
    """
    if TICK_HOOK in code:  # a name the benchmark's run binds and the run as written does not
        return None
    found = [match.start() for match in (_CUT_AT_SAVE.search(code), _CUT_AT_SHOW.search(code)) if match]
    cut = min(found, default=len(code))
    if cut < len(code) and cut > 0 and code[cut - 1] != "\n":
        return None
    head = code[:cut]
    if "savefig" in head:  # a save before the cut draws in the benchmark's run; the renderer keeps it
        return None
    try:
        module = ast.parse(code)
        prepared = benchmark_program(code)
        with_hook, at_line_start = with_tick_removal(prepared)
        compile(with_hook, "<program>", "exec", dont_inherit=True)
        prepared_module = ast.parse(prepared)
    except (SyntaxError, ValueError):
        return None
    cut_line = head.count("\n") + 1
    before = [statement for statement in module.body if statement.end_lineno < cut_line]
    after = [statement for statement in module.body if statement.lineno >= cut_line]
    if not at_line_start or not before or len(before) + len(after) != len(module.body):
        return None
    first = before[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return None  # a docstring sets __doc__ as a module's first statement, not inside the try
    expected = ast.parse(benchmark_program("pass"))
    expected.body[0].body = before
    if ast.dump(prepared_module) != ast.dump(expected):
        return None
    names: set[str] = set()
    for statement in after:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "plt"
            and call.func.attr in _TAIL_CALLS
        ):
            return None
        for argument in (*call.args, *(keyword.value for keyword in call.keywords)):
            for node in ast.walk(argument):
                if not isinstance(node, _TAIL_NODES):
                    return None
                if isinstance(node, ast.Name):
                    names.add(node.id)
        if any(keyword.arg is None for keyword in call.keywords):
            return None
    return frozenset(names)
