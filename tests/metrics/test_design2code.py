"""Design2Code's visual scores: the matching on block lists, and real pages rendered in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vsdpo.metrics import design2code
from vsdpo.metrics.design2code import Block, score_blocks

DATA = Path("/work/shared/data/design2code")
PAGES = ["1002", "9719", "13302"]


def blocks(*texts: str) -> list[Block]:
    return [Block(text, (0.1, 0.1 * i, 0.3, 0.05), (0, 0, 0)) for i, text in enumerate(texts)]


def test_identical_blocks_score_one():
    page = blocks("Welcome", "About us", "Contact", "Read more", "Read more")
    result = score_blocks(page, page)
    assert (result.block, result.text, result.position, result.color) == (1.0, 1.0, 1.0, 1.0)
    assert result.clip is None


def test_removed_block_loses_block_score_only():
    page = blocks("Welcome home", "About us here", "Contact the team")
    result = score_blocks(page[:1] + page[2:], page)
    assert result.block == pytest.approx((2 * 0.015 * 2) / (2 * 0.015 * 2 + 0.015))
    assert (result.text, result.position, result.color) == (1.0, 1.0, 1.0)


def test_recoloured_and_moved_blocks_lose_the_right_score():
    page = blocks("Welcome home", "About us here")
    recoloured = [Block(page[0].text, page[0].bbox, (255, 0, 0)), page[1]]
    result = score_blocks(recoloured, page)
    assert result.color < 1.0 and (result.block, result.text, result.position) == (1.0, 1.0, 1.0)
    moved = [Block(page[0].text, (0.5, 0.0, 0.3, 0.05), (0, 0, 0)), page[1]]
    result = score_blocks(moved, page)
    assert result.position == pytest.approx(1 - 0.4 / 2) and result.color == 1.0


def test_split_text_is_merged_before_matching():
    reference = blocks("The quick brown fox jumps over the lazy dog")
    generated = blocks("The quick brown fox", "jumps over the lazy dog")
    result = score_blocks(generated, reference)
    assert result.n_matched == 1 and result.text > 0.95


def test_dissimilar_text_is_not_matched():
    result = score_blocks(blocks("alpha beta"), blocks("zzzz qqqq"))
    assert result.n_matched == 0 and result.block == 0.0


def _page(name: str) -> str:
    return (DATA / f"{name}.html").read_text()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("name", PAGES)
def test_real_page_against_itself_scores_one(name):
    html = _page(name)
    result = design2code.score(html, html, assets_dir=str(DATA))
    assert (result.block, result.text, result.position, result.color) == (1.0, 1.0, 1.0, 1.0)
    assert result.clip is None


@pytest.mark.browser
@pytest.mark.slow
def test_real_page_with_a_block_removed_or_recoloured():
    html = _page("13302")
    headings = re.findall(r"<h[1-3][^>]*>.*?</h[1-3]>", html, flags=re.S)
    assert headings
    removed = html.replace(headings[0], "", 1)
    result = design2code.score(removed, html, assets_dir=str(DATA))
    assert result.block < 1.0 and (result.text, result.color) == (1.0, 1.0)

    recoloured = html.replace("<body", '<body style="color: #d01010 !important"', 1)
    recoloured = recoloured.replace("</head>", "<style>* { color: #d01010 !important; }</style></head>", 1)
    result = design2code.score(recoloured, html, assets_dir=str(DATA))
    assert result.color < 0.9 and (result.block, result.text, result.position) == (1.0, 1.0, 1.0)


def test_a_reference_page_is_loaded_once_for_every_score_against_it(monkeypatch):
    loads = []
    real = design2code.page_blocks

    def counted(html, **kwargs):
        loads.append((html, kwargs["generated"]))
        return real(html, **kwargs)

    monkeypatch.setattr(design2code, "page_blocks", counted)
    monkeypatch.setattr(design2code, "_references", design2code.KeptResults(design2code.REFERENCE_CACHE_SIZE))
    reference = "<html><body><h1>Quarterly report</h1><p style='color:#1F77B4'>Sales rose</p></body></html>"
    generated = [
        "<html><body><h1>Quarterly report</h1><p>Sales rose</p></body></html>",
        "<html><body><h1>Annual report</h1><p style='color:#1F77B4'>Sales rose</p></body></html>",
    ]
    first = [design2code.score(page, reference) for page in generated]
    assert [g for _, g in loads].count(False) == 1 and len(
        loads
    ) == 3  # the reference once, each rollout once
    again = [design2code.score(page, reference) for page in generated]
    assert [g for _, g in loads].count(False) == 1
    assert [s.as_dict() for s in again] == [s.as_dict() for s in first]
    assert first[0].color < 1.0 and first[1].text < 1.0  # the scores still see each page's difference
    # Kept blocks are copies: a score cannot change what the next one is compared with.
    cached = design2code.reference_page_blocks(reference)[0]
    cached[0].text = "changed"
    assert design2code.reference_page_blocks(reference)[0][0].text != "changed"
    other = reference.replace("Quarterly", "Monthly")
    design2code.score(generated[0], other)
    assert [h for h, g in loads if not g] == [reference, other]  # another reference is loaded
