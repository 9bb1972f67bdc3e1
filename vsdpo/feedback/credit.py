"""Visual-grounded code credit weighting: defects -> source lines -> response characters -> token weights.

The renderer traces every defect to the 1-based lines of the program that made or styled the
affected elements (and a failed run to the lines its traceback names). The program is a slice of the
model's response: the first fenced code block, or the whole response when it has none. This module
maps those lines back to character spans of the response, and then to the tokens whose characters
overlap them, using the character offsets of a fast tokenizer's ``offset_mapping``.

A token's weight is ``1 + alpha * agg(severities)`` where ``agg`` is ``max`` or ``sum`` over the
distinct defects touching any of its lines; every other token keeps weight 1. A token "touches" a
line only through its non-whitespace characters inside the program, so whitespace-only tokens, the
fence markers and the prose around the block keep 1, and a token spanning a line break (``")\\n)"``)
touches every line on which it has visible characters. Lines are split as Python and HTML split
them: at ``\\r\\n``, ``\\r`` and ``\\n``.

For a failed run the error lines count as one defect of severity 1 (:data:`ERROR_SEVERITY`): an
exception is the strongest defect there is, and the renderer's severities lie in (0, 1]. The
render's differences from its target (vsdpo.feedback.differences), when given, count as defects too: credit
then reaches the lines behind a wrong colour, text or chart type, not only those behind layout flaws.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vsdpo.render.types import Defect, RenderResult

ERROR_SEVERITY = 1.0

# An opening fence with an optional info string ("```python"), up to the end of its line.
_LINE_START = r"(?:\A|(?<=\n)|(?<=\r))"
_FENCE_OPEN = re.compile(_LINE_START + r"[ \t]*(`{3,}|~{3,})[^\n\r`]*(?:\r\n|\r|\n)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class CodeSpan:
    """The program inside a response: ``response[start:end] == code``."""

    code: str
    start: int
    end: int
    fenced: bool


def extract_code(response_text: str) -> CodeSpan:
    """The first fenced code block of a response, or the whole response when it has none.

    An opening fence without a closing one (a generation cut at the length limit) runs to the end
    of the text. Use this same function wherever the program is taken out of a response, so that the
    renderer's line numbers and this module's agree.
    """
    opening = _FENCE_OPEN.search(response_text)
    if opening is None:
        return CodeSpan(response_text, 0, len(response_text), fenced=False)
    fence = opening.group(1)
    start = opening.end()
    closing_fence = rf"[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*(?=\r|\n|\Z)"
    closing = re.compile(_LINE_START + closing_fence).search(response_text, start)
    end = closing.start() if closing else len(response_text)
    # The line break before the closing fence belongs to the fence, not to the program.
    if closing and response_text.endswith("\r\n", start, end):
        end -= 2
    elif closing and end > start and response_text[end - 1] in "\r\n":
        end -= 1
    return CodeSpan(response_text[start:end], start, end, fenced=True)


def line_starts(code: str) -> list[int]:
    """Character offset (into ``code``) at which each 1-based line begins; index 0 is line 1."""
    return [0] + [match.end() for match in _LINE_BREAK.finditer(code)]


def line_severities(
    render_result: RenderResult, differences: Sequence[Defect] = ()
) -> dict[int, list[tuple[int, float]]]:
    """line -> [(defect index, severity)] for every defect and difference (and, for a failed run, the error)."""
    touching: dict[int, list[tuple[int, float]]] = {}
    for index, defect in enumerate([*render_result.defects, *differences]):
        for line in set(defect.lines):
            touching.setdefault(int(line), []).append((index, float(defect.severity)))
    if not render_result.ok:
        error_index = len(render_result.defects) + len(differences)
        for line in set(render_result.error_lines):
            touching.setdefault(int(line), []).append((error_index, ERROR_SEVERITY))
    return touching


def token_credit(
    response_text: str,
    token_offsets: Sequence[tuple[int, int]],
    render_result: RenderResult,
    alpha: float = 1.0,
    reduce: Literal["max", "sum"] = "max",
    differences: Sequence[Defect] | None = None,
) -> list[float]:
    """One credit weight per response token (see the module docstring for the rule).

    ``token_offsets`` are ``(start, end)`` character offsets into ``response_text``, as a fast
    tokenizer's ``offset_mapping`` gives them; empty spans (special tokens) keep weight 1.
    ``differences``: the render's differences from its target, credited like defects.
    """
    if alpha < 0:
        raise ValueError(f"alpha: expected a value >= 0, got {alpha}")
    if reduce not in ("max", "sum"):
        raise ValueError(f"reduce: expected 'max' or 'sum', got {reduce!r}")
    touching = line_severities(render_result, tuple(differences or ()))
    if not touching:
        return [1.0] * len(token_offsets)

    span = extract_code(response_text)
    starts = line_starts(span.code)
    weights = []
    for token_index, offset in enumerate(token_offsets):
        try:
            token_start, token_end = int(offset[0]), int(offset[1])
        except (TypeError, IndexError, ValueError):
            raise ValueError(
                f"token_offsets[{token_index}]: expected a (start, end) pair, got {offset!r}"
            ) from None
        # Only the token's characters inside the program count, and only the visible ones.
        lo, hi = max(token_start, span.start), min(token_end, span.end)
        defects: dict[int, float] = {}
        for position in range(lo, hi):
            if response_text[position].isspace():
                continue
            line = bisect.bisect_right(starts, position - span.start)
            for defect_index, severity in touching.get(line, ()):
                defects[defect_index] = severity
        if not defects:
            weights.append(1.0)
            continue
        aggregate = max(defects.values()) if reduce == "max" else sum(defects.values())
        weights.append(1.0 + alpha * aggregate)
    return weights
