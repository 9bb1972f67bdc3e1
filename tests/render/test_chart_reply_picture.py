"""A chart reply is checked against what the child writes and what the picture shows.

The program shares its process with the code that describes its figure, so it can send any reply.
A bogus element over the whole figure, a text made the parent of the texts it collides with, or a
reply that lists one element for a picture full of drawing must not lower the defects reported for
the picture it drew: such replies are refused, and the real defects of a reply around a bogus
element are still reported.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.render.test_hostile_replies import forge
from vsdpo.render import render
from vsdpo.render.chart.renderer import (
    CHART_ROLES,
    COVER_MARGIN_PX,
    INK_DISTANCE,
    MAX_UNACCOUNTED_INK,
    unaccounted_ink,
)
from vsdpo.render.types import Element

CHARTMIMIC = Path(__file__).resolve().parents[3] / "shared" / "data" / "chartmimic"
if not CHARTMIMIC.is_dir():
    CHARTMIMIC = Path("/work/shared/data/chartmimic")

CROWDED = """import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot([0, 1, 2], [0, 1, 0])
for i in range(12):
    ax.text(0.2 + 0.02 * i, 0.5, f"crowded label {i}")
fig.text(0.3, 0.95, "a title that collides")
fig.text(0.32, 0.94, "with another title")
"""


@pytest.fixture(scope="module")
def honest():
    result = render(CROWDED, "chart")
    assert result.ok, result.error
    assert len(result.defects) >= 10
    return result


def reply_of(result, elements=None) -> dict:
    """The reply the child sent for ``result``, with ``elements`` in place of its own."""
    if elements is None:
        elements = [
            {
                "id": e.id,
                "role": e.role,
                "bbox": list(e.bbox),
                "text": e.text,
                "color": e.color,
                "background": e.background,
                "lines": e.lines,
                "parent": e.parent,
                "extra": e.extra,
            }
            for e in result.elements
        ]
    return {
        "ok": True,
        "image": result.image,
        "width": result.width,
        "height": result.height,
        "elements": elements,
    }


def defect_keys(result) -> set:
    return {(d.kind, tuple(d.elements)) for d in result.defects}


def bogus(result, role: str, **fields) -> dict:
    return {
        "id": "bogus",
        "role": role,
        "bbox": [0.0, 0.0, float(result.width), float(result.height)],
        **fields,
    }


def test_the_honest_reply_forged_back_is_the_same_render(honest):
    again = forge(reply_of(honest))
    assert again.ok, again.error
    assert defect_keys(again) == defect_keys(honest)


@pytest.mark.parametrize(
    "role, fields",
    [
        ("axes", {"parent": "figure"}),
        ("legend", {}),
        ("text", {"text": "cover"}),
        ("tick_label", {"text": "cover", "parent": None}),
    ],
)
def test_a_bogus_element_over_the_figure_hides_none_of_the_real_defects(honest, role, fields):
    elements = reply_of(honest)["elements"]
    forged = forge(reply_of(honest, [bogus(honest, role, **fields), *elements]))
    assert forged.ok, forged.error
    assert defect_keys(honest) <= defect_keys(forged)


@pytest.mark.parametrize("role", ["figure", "block", "canvas"])
def test_an_element_of_a_role_the_child_never_writes_is_refused(honest, role):
    forged = forge(reply_of(honest, [bogus(honest, role), *reply_of(honest)["elements"]]))
    assert not forged.ok and forged.error_kind == "invalid_reply", forged.error
    assert role not in CHART_ROLES


@pytest.mark.parametrize("role", ["axes", "legend", "figure"])
def test_one_element_over_the_whole_figure_is_no_description_of_it(honest, role):
    forged = forge(reply_of(honest, [bogus(honest, role, parent="figure" if role == "axes" else None)]))
    assert not forged.ok and forged.error_kind == "invalid_reply", forged.error


def test_a_reply_of_one_small_element_for_a_full_picture_is_refused(honest):
    title = next(e for e in reply_of(honest)["elements"] if e["role"] == "text" and e["parent"] is None)
    forged = forge(reply_of(honest, [title]))
    assert not forged.ok and forged.error_kind == "invalid_reply", forged.error
    assert "no element's box" in forged.error


def test_a_bogus_element_named_as_the_figure_cannot_adopt_the_axes(honest):
    # The child names the figure as the parent of every axes; an element given that name would
    # become the parent of them all.
    elements = reply_of(honest)["elements"]
    forged = forge(reply_of(honest, [{**bogus(honest, "legend"), "id": "figure"}, *elements]))
    assert not forged.ok and forged.error_kind == "invalid_reply", forged.error


def test_texts_nested_in_each_other_cannot_exempt_their_collisions(honest):
    elements = reply_of(honest)["elements"]
    texts = [e for e in elements if e["role"] == "text"]
    # Each text made the parent of the next: every colliding pair would be "ancestor and descendant".
    chained = [{**e, "parent": texts[texts.index(e) - 1]["id"]} if e in texts[1:] else e for e in elements]
    forged = forge(reply_of(honest, chained))
    assert not forged.ok and forged.error_kind == "invalid_reply", forged.error


def test_unaccounted_ink_counts_drawing_outside_every_box():
    picture = Image.new("RGB", (200, 100), "white")
    ImageDraw.Draw(picture).rectangle([150, 40, 190, 60], fill="black")
    out = io.BytesIO()
    picture.save(out, format="PNG")
    png = out.getvalue()
    text = Element("t", "text", (10, 10, 60, 30), text="x")
    square = Element("s", "patch", (148, 38, 192, 62), parent="a")
    axes = Element("a", "axes", (0, 0, 200, 100), parent="figure")
    assert unaccounted_ink(png, [text]) == 1.0
    assert unaccounted_ink(png, [text, square, axes]) == 0.0
    # An axes that holds nothing accounts for its frame, not for what lies inside it.
    assert unaccounted_ink(png, [axes]) == 1.0 > MAX_UNACCOUNTED_INK


def _ink_by_the_formula(png: bytes) -> np.ndarray:
    """The ink as the check defines it: unlike the border's commonest colour, over white where clear."""
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3:4] / 255.0
    rgb = np.rint(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.int64)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    colours, counts = np.unique(border, axis=0, return_counts=True)
    paper = colours[np.argmax(counts)]
    return np.abs(rgb - paper).max(axis=2) > INK_DISTANCE


# Papers whose channels sit at and beside the edges of the ink distance (24): at 0, 255, 24 and 231
# no pixel lies past the distance on one side.
PAPERS = [(0, 24, 25), (1, 23, 128), (230, 231, 232), (254, 255, 26)]


@pytest.mark.parametrize("seed", range(len(PAPERS)))
def test_unaccounted_ink_takes_the_ink_the_formula_gives(seed):
    # Random pictures around the paper (clipped to 0 and 255, so both occur), opaque and partly clear.
    rng = np.random.default_rng(seed)
    paper = np.array(PAPERS[seed])
    pixels = np.clip(paper + rng.integers(-60, 61, size=(60, 80, 3)), 0, 255).astype(np.uint8)
    pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1] = paper, paper, paper, paper
    alpha = np.full((60, 80, 1), 255, dtype=np.uint8)
    if seed % 2:
        alpha[10:50, 10:70] = rng.integers(0, 256, size=(40, 60, 1))
    out = io.BytesIO()
    Image.fromarray(np.concatenate([pixels, alpha], axis=2), "RGBA").save(out, format="PNG")
    png = out.getvalue()
    ink = _ink_by_the_formula(png)
    assert 0 < ink.sum() < ink.size
    # One element whose box covers the picture's left half: what is left is the right half's ink.
    half = Element("t", "text", (0, 0, 40 - COVER_MARGIN_PX, 60), text="x")
    assert unaccounted_ink(png, []) == 1.0
    assert unaccounted_ink(png, [half]) == ink[:, 40:].sum() / ink.sum()


@pytest.mark.slow
def test_real_charts_are_accounted_for_by_their_own_replies():
    programs = sorted(CHARTMIMIC.glob("*.py"))[::25]
    assert programs
    for program in programs:
        result = render(program.read_text(), "chart", timeout_s=60)
        assert result.ok or result.error_kind != "invalid_reply", (program.name, result.error)
        if result.ok:
            assert {e.role for e in result.elements} <= CHART_ROLES, program.name
            assert unaccounted_ink(result.image, result.elements) <= 0.25, program.name


def test_a_label_cut_by_its_axes_is_clipped_text():
    # The picture keeps its size (no tight box): only the axes cut the label that runs out of them.
    program = """import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6, 4))
fig.subplots_adjust(right=0.6)
ax.plot([0, 1], [0, 1])
ax.text(0.9, 0.5, "a label that runs out of its axes", clip_on=True)
ax.text(0.1, 0.8, "a label left whole")
"""
    result = render(program, "chart")
    assert result.ok, result.error
    cut = [d for d in result.defects if d.kind == "clipped_text"]
    assert [d.lines for d in cut] == [[5]], [(d.kind, d.message) for d in result.defects]
    assert "its container" in cut[0].message
