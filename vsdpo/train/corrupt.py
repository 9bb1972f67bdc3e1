"""Realistic flaws for the warm-start's repair examples: small edits of a working program that make
it fail (syntax, names, arguments) or draw worse (values, layout), as a model's first attempts do.

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


CORRUPTIONS: tuple[Corruption, ...] = (
    drop_closing_bracket,
    mismatch_bracket,
    unterminated_string,
    misspell_method,
    bad_keyword,
    undefined_name,
    wrong_values,
    oversized_title,
)


def corrupt(program: str, rng: random.Random, count: int) -> list[str]:
    """Up to ``count`` distinct flawed versions of ``program``, each by one corruption."""
    lines = program.rstrip("\n").split("\n")
    flawed: list[str] = []
    for corruption in rng.sample(CORRUPTIONS, len(CORRUPTIONS)):
        if len(flawed) == count:
            break
        result = corruption(lines, rng)
        if result is not None and result != program and result not in flawed:
            flawed.append(result)
    return flawed
