"""Token credit: defect and error lines -> response characters -> exact token weights."""

from __future__ import annotations

import re

import pytest

from vsdpo.feedback.credit import extract_code, token_credit
from vsdpo.render.types import Defect, RenderResult


def ok_result(*defects: tuple[list[int], float]) -> RenderResult:
    return RenderResult(
        kind="chart",
        ok=True,
        defects=[Defect("overlap", severity, [], lines, "") for lines, severity in defects],
    )


def word_tokens(text: str) -> list[tuple[int, int]]:
    """Offsets of maximal runs of non-space characters and of whitespace (a tokenizer stand-in)."""
    return [m.span() for m in re.finditer(r"\S+|\s+", text)]


def weights_by_token(text, offsets, weights):
    return [(text[s:e], w) for (s, e), w in zip(offsets, weights, strict=True)]


def test_whole_text_without_fence():
    text = "a = 1\nb = 2\nc = 3"
    offsets = word_tokens(text)
    weights = token_credit(text, offsets, ok_result(([2], 0.5)), alpha=2.0)
    got = weights_by_token(text, offsets, weights)
    assert got == [
        ("a", 1.0),
        (" ", 1.0),
        ("=", 1.0),
        (" ", 1.0),
        ("1", 1.0),
        ("\n", 1.0),
        ("b", 2.0),
        (" ", 1.0),
        ("=", 2.0),
        (" ", 1.0),
        ("2", 2.0),
        ("\n", 1.0),
        ("c", 1.0),
        (" ", 1.0),
        ("=", 1.0),
        (" ", 1.0),
        ("3", 1.0),
    ]


def test_fenced_block_keeps_offsets_and_fences_keep_one():
    text = "Here is the chart:\n```python\nimport x\nplt.title('t')\n```\nDone."
    offsets = word_tokens(text)
    weights = dict(weights_by_token(text, offsets, token_credit(text, offsets, ok_result(([2], 1.0)))))
    assert weights["plt.title('t')"] == 2.0
    assert weights["import"] == 1.0 and weights["x"] == 1.0
    assert weights["```python"] == 1.0 and weights["```"] == 1.0
    assert weights["Here"] == 1.0 and weights["Done."] == 1.0


def test_crlf_line_endings():
    text = "```py\r\nx = 1\r\ny = 2\r\nz = 3\r\n```\r\n"
    offsets = word_tokens(text)
    weights = weights_by_token(text, offsets, token_credit(text, offsets, ok_result(([3], 0.25)), alpha=4.0))
    assert [(token, weight) for token, weight in weights if weight != 1.0] == [
        ("z", 2.0),
        ("=", 2.0),
        ("3", 2.0),
    ]
    assert all(weight == 1.0 for token, weight in weights if token.strip() == "")


def test_lone_cr_counts_as_a_line_break():
    text = "x = 1\ry = 2"
    offsets = [(0, 1), (6, 7)]
    assert token_credit(text, offsets, ok_result(([2], 1.0))) == [1.0, 2.0]


def test_multibyte_characters_use_character_offsets():
    text = "```\ntitle = 'Température €'\nlabel = '日本語'\n```"
    code_start = text.index("label")
    quote = text.index("日")
    # Byte-level tokenizers may give two tokens the same span of one multi-byte character.
    offsets = [
        (0, 3),
        (4, 9),
        (code_start, code_start + 5),
        (quote, quote + 1),
        (quote, quote + 1),
        (quote + 1, quote + 3),
    ]
    weights = token_credit(text, offsets, ok_result(([2], 0.5)), alpha=1.0)
    assert weights == [1.0, 1.0, 1.5, 1.5, 1.5, 1.5]


def test_token_spanning_two_lines_takes_both_lines():
    text = "f(a,\n  b)\nc\n"
    # ")\nc" spans lines 2 and 3; "\n  " only whitespace on line 2.
    offsets = [(0, 4), (4, 7), (7, 8), (8, 11)]
    defects = ok_result(([2], 0.3), ([3], 0.6))
    assert token_credit(text, offsets, defects, alpha=1.0, reduce="max") == [1.0, 1.0, 1.3, 1.6]
    assert token_credit(text, offsets, defects, alpha=1.0, reduce="sum") == pytest.approx(
        [1.0, 1.0, 1.3, 1.9]
    )


def test_sum_and_max_over_defects_touching_a_line():
    text = "a\nb\n"
    offsets = [(0, 1), (2, 3)]
    result = ok_result(([1], 0.5), ([1, 2], 0.25))
    assert token_credit(text, offsets, result, reduce="max") == [1.5, 1.25]
    assert token_credit(text, offsets, result, reduce="sum") == [1.75, 1.25]


def test_failed_run_error_lines_weigh_one():
    text = "```python\nimport matplotlib\nplt.plot(x)\n```"
    offsets = word_tokens(text)
    failed = RenderResult.failure("chart", "NameError: name 'plt' is not defined", error_lines=[2])
    weights = dict(weights_by_token(text, offsets, token_credit(text, offsets, failed, alpha=0.5)))
    assert weights["plt.plot(x)"] == 1.5
    assert weights["import"] == 1.0
    # Error lines of a successful run are not blamed.
    fine = RenderResult(kind="chart", ok=True, error_lines=[2])
    assert set(token_credit(text, offsets, fine)) == {1.0}


def test_special_tokens_and_lines_outside_the_program():
    text = "x\n"
    assert token_credit(text, [(0, 0), (0, 1)], ok_result(([1], 1.0), ([99], 1.0))) == [1.0, 2.0]


def test_unclosed_fence_runs_to_the_end():
    span = extract_code("text\n```python\nx = 1\ny = 2")
    assert span.code == "x = 1\ny = 2" and span.fenced


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="alpha"):
        token_credit("x", [(0, 1)], ok_result(), alpha=-1)
    with pytest.raises(ValueError, match="reduce"):
        token_credit("x", [(0, 1)], ok_result(), reduce="mean")
