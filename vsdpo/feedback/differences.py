"""How a render differs from its task's target, written as defects the teacher and the credit can use.

The reward already compares a rollout with the target: ChartMimic's traces for a chart (texts,
subplot grid, plotting functions, colours per function), Design2Code's matched text blocks for a page
(texts, positions, colours). A layout defect list says nothing of that larger error, and a teacher
told "No defects found" knows no more than the student. This module turns the comparison into
*differences*: ``Defect`` records of kind :data:`DIFFERENCE`, each naming what the target has (the
target's text, its colour with a name where one fits, its chart type), worst first, with the program
lines that made the element where the source shows them.

A difference's severity is what it costs: the rise of its metric's F1 (chart) or score (page) were
that difference alone fixed, clipped to [0.05, 1]. Differences never enter the reward's ``defects``
term (the reward already pays for them through ``similarity``); they feed the teacher's feedback
(vsdpo.feedback.teacher_context) and the credit weights (vsdpo.feedback.credit), so that credit reaches the lines
behind content errors too.

Provenance is read from the program's source: the line that spells a text, a colour (any spelling
whose hex is the drawn one: ``'tab:blue'``, ``'#1f77b4'``, ``'C0'``) or calls a plotting function.
A difference the source does not show (a missing text) has no line; it still reaches the feedback.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from difflib import SequenceMatcher
from typing import Any

import matplotlib.colors as mcolors

from vsdpo.metrics.color import color_similarity
from vsdpo.render.types import Defect

DIFFERENCE = "difference"  # the Defect.kind of a difference from the target
MIN_SEVERITY = 0.05
# Two colours closer than this (1 - CIEDE2000/100) count as the same colour: no difference reported.
SAME_COLOR = 0.9
# A missing and an extra text this similar are one text written wrong ("'Sales' should be 'Sale'").
PAIR_TEXT = 0.3
MOVED = 0.05  # a page block whose centre is off by more than this share of the page has moved

# Colour names a program is likely to write, first match wins: Tableau's palette, then CSS names.
_NAMED: dict[str, str] = {}
for _names in (mcolors.TABLEAU_COLORS, mcolors.CSS4_COLORS):
    for _name, _hex in _names.items():
        _NAMED.setdefault(_hex.upper(), _name)  # the first spelling: "gray" before "grey"


def color_name(hex_color: str) -> str:
    """``#1F77B4 (tab:blue)``: the hex, and the matplotlib name of exactly that colour if it has one."""
    hex_color = hex_color.upper()
    name = _NAMED.get(hex_color[:7])
    return f"{hex_color} ({name})" if name else hex_color


def _severity(value: float) -> float:
    return min(1.0, max(MIN_SEVERITY, float(value)))


def _difference(cost: float, lines: list[int], message: str) -> Defect:
    """A difference that costs its metric ``cost`` (its severity), made at ``lines``."""
    return Defect(DIFFERENCE, _severity(cost), [], lines, message)


def _f1(correct: float, generated: float, reference: float) -> float:
    if not generated or not reference or not correct:
        return 0.0
    precision, recall = correct / generated, correct / reference
    return 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------- provenance from source


def _string_literals(program: str) -> list[tuple[int, str]]:
    """(line, value) of every string literal of the program; a program that does not parse gives none."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return []
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def text_lines(program: str, text: str) -> list[int]:
    """The lines whose string literals spell ``text`` (compared without case, as pages lowercase it)."""
    wanted = text.strip().lower()
    if not wanted:
        return []
    exact = sorted({line for line, value in _string_literals(program) if value.strip().lower() == wanted})
    if exact:
        return exact
    lines = program.splitlines()
    return [n for n, line in enumerate(lines, start=1) if wanted in line.lower()][:3]


def color_lines(program: str, hex_color: str) -> list[int]:
    """The lines whose string literals name ``hex_color`` in any spelling matplotlib accepts."""
    found = set()
    for line, value in _string_literals(program):
        try:
            if mcolors.is_color_like(value) and mcolors.to_hex(value).upper() == hex_color[:7].upper():
                found.add(line)
        except ValueError:
            continue
    return sorted(found)


def call_lines(program: str, function: str) -> list[int]:
    """The lines that call ``function`` as a method or a function (``ax.bar(``, ``plt.bar(``)."""
    pattern = re.compile(rf"(?:\.|\b){re.escape(function)}\s*\(")
    return [n for n, line in enumerate(program.splitlines(), start=1) if pattern.search(line)]


# Internal functions that ChartMimic's colour hooks record, by the call a program writes.
_CALLED_AS = {"_make_line": "plot", "_makeline": "plot", "_plot_args": "plot"}


def _plot_function(key: str) -> str:
    """ChartMimic's function key (``matplotlib/axes/_axes.py:barh``, ``.../bar--``) as a name."""
    name = re.split(r"[:/]", key)[-1].removesuffix("_polar")
    return _CALLED_AS.get(name, name)


# ------------------------------------------------------------------------------------------- charts


def chart_differences(program: str, generated: dict[str, Any], reference: dict[str, Any]) -> list[Defect]:
    """Differences of a chart from its target, from the two ChartMimic traces, worst first."""
    found = _text_differences(program, generated["texts"], reference["texts"])
    found += _type_differences(program, generated["types"], reference["types"])
    found += _layout_differences(program, generated["layout"], reference["layout"])
    found += _color_differences(program, generated["colors"], reference["colors"])
    return sorted(found, key=lambda d: -d.severity)


def _text_differences(program: str, generated: list[str], reference: list[str]) -> list[Defect]:
    ours, theirs = Counter(generated), Counter(reference)
    correct, n_gen, n_ref = sum((ours & theirs).values()), sum(ours.values()), sum(theirs.values())
    base = _f1(correct, n_gen, n_ref)
    extra, missing = list((ours - theirs).elements()), list((theirs - ours).elements())
    found = []
    for wrong, best in _paired_texts(generated, reference, extra, missing):
        extra.remove(wrong)
        missing.remove(best)
        cost = _f1(correct + 1, n_gen, n_ref) - base
        message = f"text {wrong!r} should be {best!r}"
        found.append(_difference(cost, text_lines(program, wrong), message))
    for text in missing:
        found.append(_difference(_f1(correct + 1, n_gen + 1, n_ref) - base, [], f"text {text!r} is missing"))
    for text in extra:
        found.append(
            _difference(
                _f1(correct, n_gen - 1, n_ref) - base,
                text_lines(program, text),
                f"text {text!r} is not in the target",
            )
        )
    return found


def _paired_texts(generated: list[str], reference: list[str], extra: list[str], missing: list[str]):
    """(wrong, right) pairs: a text the target lacks standing where the target has one it lacks.

    Both lists are in drawing order, so the alignment of the two sequences pairs a wrong title with
    the target's title; a pair left apart by the alignment is still taken when the two texts are
    alike (``PAIR_TEXT``).
    """
    extra, missing = Counter(extra), Counter(missing)
    pairs = []
    for tag, i0, i1, j0, j1 in SequenceMatcher(None, generated, reference, autojunk=False).get_opcodes():
        if tag != "replace":
            continue
        for wrong, right in zip(generated[i0:i1], reference[j0:j1], strict=False):
            if extra[wrong] and missing[right]:
                extra[wrong] -= 1
                missing[right] -= 1
                pairs.append((wrong, right))
    for wrong in list(extra.elements()):
        candidates = list(missing.elements())
        best = max(candidates, key=lambda t: SequenceMatcher(None, wrong, t).ratio(), default=None)
        if best is not None and SequenceMatcher(None, wrong, best).ratio() >= PAIR_TEXT:
            extra[wrong] -= 1
            missing[best] -= 1
            pairs.append((wrong, best))
    return pairs


def _type_differences(program: str, generated: dict[str, int], reference: dict[str, int]) -> list[Defect]:
    # Matched on the benchmark's own keys (the defining file and the function), named by the function.
    ours, theirs = Counter(generated), Counter(reference)
    correct, n_gen, n_ref = sum((ours & theirs).values()), sum(ours.values()), sum(theirs.values())
    base = _f1(correct, n_gen, n_ref)
    extra = [_plot_function(key) for key in (ours - theirs).elements()]
    missing = [_plot_function(key) for key in (theirs - ours).elements()]
    found = []
    while extra and missing:  # one plotting call where the target has another: a wrong chart type
        drawn, wanted = extra.pop(0), missing.pop(0)
        found.append(
            _difference(
                _f1(correct + 1, n_gen, n_ref) - base,
                call_lines(program, drawn),
                f"chart type: draws {drawn}, the target draws {wanted}",
            )
        )
    for wanted in missing:
        found.append(
            _difference(
                _f1(correct + 1, n_gen + 1, n_ref) - base, [], f"chart type: the target also draws {wanted}"
            )
        )
    for drawn in extra:
        found.append(
            _difference(
                _f1(correct, n_gen - 1, n_ref) - base,
                call_lines(program, drawn),
                f"chart type: draws {drawn}, which the target does not",
            )
        )
    return found


def _layout_differences(program: str, generated: list[dict], reference: list[dict]) -> list[Defect]:
    grid = lambda cells: sorted({(c["nrows"], c["ncols"]) for c in cells})
    ours, theirs = grid(generated), grid(reference)
    if ours == theirs:
        return []
    as_key = lambda cell: tuple(sorted(cell.items()))
    overlap = sum((Counter(map(as_key, generated)) & Counter(map(as_key, reference))).values())
    cost = _f1(len(reference), len(reference), len(reference)) - _f1(overlap, len(generated), len(reference))
    show = lambda cells: ", ".join(f"{r}x{c}" for r, c in cells) or "none"
    lines = (
        call_lines(program, "subplots")
        or call_lines(program, "subplot")
        or call_lines(program, "add_subplot")
    )
    return [_difference(cost, lines, f"subplot grid {show(ours)}, the target's is {show(theirs)}")]


def _group_colors(entries: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for entry in entries:
        function, _, color = entry.partition("--")
        groups.setdefault(function, []).append(color)  # the benchmark's key; named by _plot_function
    return groups


def _pair_similarity(a: str, b: str) -> float:
    if a.startswith("#") and b.startswith("#"):
        return color_similarity(a[:7], b[:7])
    return 1.0 if a == b else 0.0


def _color_differences(program: str, generated: list[str], reference: list[str]) -> list[Defect]:
    from scipy.optimize import linear_sum_assignment

    ours, theirs = _group_colors(generated), _group_colors(reference)
    n_gen, n_ref = len(generated), len(reference)
    found = []
    # The matched similarity of all functions, as the colour score sums it, to price each fix.
    pairs_by_function, total = {}, 0.0
    for key in ours.keys() & theirs.keys():
        similarity = [[_pair_similarity(a, b) for b in theirs[key]] for a in ours[key]]
        rows, cols = linear_sum_assignment(similarity, maximize=True)
        pairs = [(int(i), int(j), similarity[i][j]) for i, j in zip(rows, cols, strict=True)]
        pairs_by_function[key] = pairs
        total += sum(s for _, _, s in pairs)
    base = _f1(total, n_gen, n_ref)
    for key, pairs in pairs_by_function.items():
        function = _plot_function(key)
        for i, j, similarity in pairs:
            if similarity >= SAME_COLOR:
                continue
            drawn, wanted = ours[key][i], theirs[key][j]
            lines = color_lines(program, drawn) or call_lines(program, function)
            cost = _f1(total - similarity + 1, n_gen, n_ref) - base
            found.append(
                _difference(
                    cost, lines, f"{function} colour {color_name(drawn)} should be {color_name(wanted)}"
                )
            )
        for j, wanted in enumerate(theirs[key]):
            if j not in {col for _, col, _ in pairs}:
                cost = _f1(total + 1, n_gen + 1, n_ref) - base
                found.append(
                    _difference(
                        cost,
                        call_lines(program, function),
                        f"{function}: the target has one more series, in {color_name(wanted)}",
                    )
                )
    for key in theirs.keys() - ours.keys():
        function = _plot_function(key)
        for wanted in theirs[key]:
            found.append(
                _difference(
                    _f1(total + 1, n_gen + 1, n_ref) - base,
                    [],
                    f"the target draws {function} in {color_name(wanted)}",
                )
            )
    return found


# -------------------------------------------------------------------------------------------- pages


def page_differences(program: str, generated: list, reference: list, matches: list) -> list[Defect]:
    """Differences of a page from its target, from Design2Code's blocks after matching.

    ``matches`` holds ``(generated index, reference index, text similarity)`` of the kept pairs.
    """
    found = []
    matched_gen = {i for i, _, _ in matches}
    matched_ref = {j for _, j, _ in matches}
    area = lambda block: block.bbox[2] * block.bbox[3]
    total_area = sum(map(area, generated)) + sum(map(area, reference)) or 1.0
    n = max(len(matches), 1)
    for j, block in enumerate(reference):
        if j not in matched_ref:
            found.append(
                _difference(
                    area(block) / total_area, [], f"text block {block.text[:60]!r} of the target is missing"
                )
            )
    for i, block in enumerate(generated):
        if i not in matched_gen:
            found.append(
                _difference(
                    area(block) / total_area,
                    text_lines(program, block.text),
                    f"text block {block.text[:60]!r} is not in the target",
                )
            )
    for i, j, similarity in matches:
        ours, theirs = generated[i], reference[j]
        lines = text_lines(program, ours.text)
        if similarity < 1.0:
            found.append(
                _difference(
                    (1 - similarity) / n, lines, f"text {ours.text[:60]!r} should be {theirs.text[:60]!r}"
                )
            )
        dx = (theirs.bbox[0] + theirs.bbox[2] / 2) - (ours.bbox[0] + ours.bbox[2] / 2)
        dy = (theirs.bbox[1] + theirs.bbox[3] / 2) - (ours.bbox[1] + ours.bbox[3] / 2)
        if max(abs(dx), abs(dy)) > MOVED:
            where = ", ".join(
                f"{abs(v) * 100:.0f}% of the page {word}"
                for v, word in (
                    (dy, "lower" if dy > 0 else "higher"),
                    (dx, "to the right" if dx > 0 else "to the left"),
                )
                if abs(v) > MOVED
            )
            found.append(
                _difference(max(abs(dx), abs(dy)) / n, lines, f"text {ours.text[:40]!r} should sit {where}")
            )
        color = color_similarity(ours.color, theirs.color)
        if color < SAME_COLOR:
            to_hex = lambda rgb: "#{:02X}{:02X}{:02X}".format(*(int(round(c)) for c in rgb))
            found.append(
                _difference(
                    (1 - color) / n,
                    lines,
                    f"text {ours.text[:40]!r} colour {to_hex(ours.color)} should be {color_name(to_hex(theirs.color))}",
                )
            )
    return sorted(found, key=lambda d: -d.severity)
