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
"""

from __future__ import annotations

import re

# Everything from the first match to the end of the text goes (the benchmark's patterns, flag re.S).
_CUT_AT_SAVE = re.compile(r"plt\.savefig\(.*\n*", re.S)
_CUT_AT_SHOW = re.compile(r"plt.show\(.*\n*", re.S)
INDENT = "    "
OUTPUT_NAME = "generated.pdf"
TICK_HOOK = "__chartmimic_remove_ticks__"


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
