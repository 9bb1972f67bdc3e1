"""Realistic flaws for the warm-start's repair examples: small edits of a working program that make
it fail (syntax, names, arguments) or draw something else (values, colours, texts, chart type, series,
layout), as a model's first attempts do. The second family keeps the program running: its feedback is
a comparison with the target, which the teacher must learn to read as well as an error.

Every corruption takes the program's lines and a ``random.Random`` and returns the flawed program,
or None when it does not apply. The flaw's feedback is never written here: the flawed program is
rendered for real in the sandbox, and its error or defects become the feedback, exactly as the
teacher sees them in training.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

Corruption = Callable[[list[str], random.Random], "str | None"]


def _pick(lines: list[str], rng: random.Random, pattern: str) -> int | None:
    candidates = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    return rng.choice(candidates) if candidates else None


def _edit(lines: list[str], index: int, line: str) -> str:
    return "\n".join(lines[:index] + [line] + lines[index + 1 :]) + "\n"


def drop_closing_bracket(lines, rng):
    index = _pick(lines, rng, r"[)\]]\s*$")
    if index is None:
        return None
    line = lines[index].rstrip()
    return _edit(lines, index, line[:-1])


def mismatch_bracket(lines, rng):
    index = _pick(lines, rng, r"\]")
    if index is None:
        return None
    line = lines[index]
    at = rng.choice([m.start() for m in re.finditer(r"\]", line)])
    return _edit(lines, index, line[:at] + ")" + line[at + 1 :])


def unterminated_string(lines, rng):
    index = _pick(lines, rng, r"'[^']*'")
    if index is None:
        return None
    line = lines[index]
    closing = [m.end() - 1 for m in re.finditer(r"'[^']*'", line)]
    at = rng.choice(closing)
    return _edit(lines, index, line[:at] + line[at + 1 :])


def misspell_method(lines, rng):
    index = _pick(lines, rng, r"\bax\.\w{3,}\(")
    if index is None:
        return None
    line = lines[index]
    match = rng.choice(list(re.finditer(r"\bax\.(\w{3,})\(", line)))
    name = match.group(1)
    at = rng.randrange(len(name) - 1)
    wrong = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
    if wrong == name:
        return None
    return _edit(lines, index, line[: match.start(1)] + wrong + line[match.end(1) :])


def bad_keyword(lines, rng):
    index = _pick(lines, rng, r"\b(color|marker|labels|figsize)=")
    if index is None:
        return None
    line = lines[index]
    wrong = {"color": "colour", "marker": "markr", "labels": "label_list", "figsize": "size"}
    return _edit(
        lines,
        index,
        re.sub(r"\b(color|marker|labels|figsize)=", lambda m: wrong[m.group(1)] + "=", line, count=1),
    )


def undefined_name(lines, rng):
    index = _pick(lines, rng, r"\b(plt|ax)\.")
    if index is None:
        return None
    line = lines[index]
    return _edit(lines, index, re.sub(r"\b(plt|ax)\.", lambda m: m.group(1)[:-1] + ".", line, count=1))


def wrong_values(lines, rng):
    index = _pick(lines, rng, r"\[\d+(, \d+)*\]")
    if index is None:
        return None
    line = lines[index]
    numbers = re.sub(
        r"\[\d+(, \d+)*\]", lambda m: str([rng.randint(1, 9) for _ in m.group(0).split(",")]), line, count=1
    )
    return None if numbers == line else _edit(lines, index, numbers)


def oversized_title(lines, rng):
    index = _pick(lines, rng, r"\.set_title\(.*\)\s*$")
    if index is None:
        return None
    line = lines[index].rstrip()
    return _edit(lines, index, line[:-1] + f", fontsize={rng.choice((36, 44, 52))})")


_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "black", "gray", "gold", "teal")
_WORDS = (
    "Sales",
    "Revenue",
    "Visitors",
    "Growth",
    "Costs",
    "Scores",
    "Rainfall",
    "Orders",
    "Month",
    "Year",
    "Region",
    "Product",
    "Week",
    "Value",
    "Count",
    "Total",
    "Share",
)
_PLOT_CALLS = {"bar": "barh", "barh": "bar", "plot": "scatter", "scatter": "plot"}


def recolour(program: str, rng: random.Random) -> str | None:
    """The program drawing in another colour (the first ``color=`` of a randomly picked line), or None
    where it names none: a *target* the task's prompt cannot tell apart from the original, since
    prompts name no colours."""
    return swap_color(program.rstrip("\n").split("\n"), rng)


def swap_color(lines, rng):
    index = _pick(lines, rng, r"color='[^']+'")
    if index is None:
        return None
    line = lines[index]
    current = re.search(r"color='([^']+)'", line).group(1)
    other = rng.choice([c for c in _COLORS if c != current])
    return _edit(lines, index, line.replace(f"color='{current}'", f"color='{other}'", 1))


def other_text(lines, rng):
    """Another title or axis label: a text the target does not have."""
    index = _pick(lines, rng, r"\.set_(title|xlabel|ylabel)\('[^']*'")
    if index is None:
        return None
    line = lines[index]
    current = re.search(r"\.set_(?:title|xlabel|ylabel)\('([^']*)'", line).group(1)
    other = rng.choice([w for w in _WORDS if w != current])
    return _edit(lines, index, line.replace(f"('{current}'", f"('{other}'", 1))


def other_chart_type(lines, rng):
    index = _pick(lines, rng, r"\bax\.(bar|barh|plot|scatter)\(")
    if index is None:
        return None
    line = lines[index]
    match = re.search(r"\bax\.(bar|barh|plot|scatter)\(", line)
    other = _PLOT_CALLS[match.group(1)]
    edited = line[: match.start(1)] + other + line[match.end(1) :]
    if other == "scatter":
        edited = re.sub(r", marker='[^']*'", "", edited)
    return _edit(lines, index, edited)


def extra_series(lines, rng):
    """One more series, drawn by a copy of the plotting call in another colour."""
    index = _pick(lines, rng, r"\bax\.(bar|barh|plot|scatter)\(.*color='[^']+'")
    if index is None:
        return None
    line = lines[index]
    current = re.search(r"color='([^']+)'", line).group(1)
    copy = line.replace(
        f"color='{current}'", f"color='{rng.choice([c for c in _COLORS if c != current])}'", 1
    )
    return "\n".join(lines[: index + 1] + [copy] + lines[index + 1 :]) + "\n"


def drop_layout(lines, rng):
    """The layout call dropped: the title and axis labels may then be cut by the figure's edge."""
    index = _pick(lines, rng, r"^\s*(plt|fig)\.tight_layout\(\)\s*$")
    if index is None:
        return None
    return "\n".join(lines[:index] + lines[index + 1 :]) + "\n"


_LAYOUT = re.compile(r"tight_layout|constrained_layout|layout=|subplots_adjust|bbox_inches")


def laid_out(program: str) -> str | None:
    """The fix of ``drop_layout``: ``program`` with ``plt.tight_layout()`` added at its end, or None
    where it already lays its figure out (or has no pyplot to call it on)."""
    if _LAYOUT.search(program) or not re.search(r"^import matplotlib\.pyplot as plt\s*$", program, re.M):
        return None
    return program.rstrip("\n") + "\nplt.tight_layout()\n"


def drop_series(lines, rng):
    index = _pick(lines, rng, r"\bax\.(bar|barh|plot|scatter|pie)\(")
    if index is None:
        return None
    return "\n".join(lines[:index] + lines[index + 1 :]) + "\n"


# Corruptions that make the program fail, and those that keep it running but drawing something else.
FAILING: tuple[Corruption, ...] = (
    drop_closing_bracket,
    mismatch_bracket,
    unterminated_string,
    misspell_method,
    bad_keyword,
    undefined_name,
)
RUNNING: tuple[Corruption, ...] = (
    wrong_values,
    oversized_title,
    swap_color,
    other_text,
    other_chart_type,
    extra_series,
    drop_series,
    drop_layout,
)
CORRUPTIONS: tuple[Corruption, ...] = FAILING + RUNNING


def corrupt(program: str, rng: random.Random, count: int, running_only: bool = False) -> list[str]:
    """Up to ``count`` distinct flawed versions of ``program``, each by one corruption, taken in turn
    from the failing and the running family (so about half of them run), or from the running family
    only."""
    lines = program.rstrip("\n").split("\n")
    families = (
        [rng.sample(RUNNING, len(RUNNING))] * 2
        if running_only
        else [rng.sample(FAILING, len(FAILING)), rng.sample(RUNNING, len(RUNNING))]
    )
    rng.shuffle(families)
    flawed: list[str] = []
    turn = 0
    while len(flawed) < count and any(families):
        family = families[turn % 2] or families[(turn + 1) % 2]
        turn += 1
        result = family.pop(0)(lines, rng)
        if result is not None and result != program and result not in flawed:
            flawed.append(result)
    return flawed
