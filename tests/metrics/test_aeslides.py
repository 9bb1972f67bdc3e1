"""AeSlides layout rewards: from content boxes, and from an HTML slide rendered in Chromium."""

from __future__ import annotations

import pytest

from vsdpo.metrics import aeslides
from vsdpo.metrics.aeslides import ContentItem, aspect_score, score_items, whitespace_score

W, H = 1280, 720


def test_aspect_fit_to_16_9():
    assert aspect_score(1280, 720) == 1.0
    assert aspect_score(1280, 1440) == pytest.approx(0.5)
    assert aspect_score(960, 720) == pytest.approx((4 / 3) / (16 / 9))


def test_whitespace_band():
    assert whitespace_score(0.5) == 1.0
    assert whitespace_score(0.0) == 0.0 and whitespace_score(1.0) == 0.0
    assert whitespace_score(0.175) == pytest.approx(0.5)


def test_centred_content_is_balanced_and_corner_content_is_not():
    centred = score_items([ContentItem((340, 160, 940, 560), (1,))], W, H)
    corner = score_items([ContentItem((0, 0, 100, 100), (1,))], W, H)
    assert centred.balance == pytest.approx(1.0)
    assert corner.balance < 0.3
    assert centred.content_ratio == pytest.approx(600 * 400 / (W * H), rel=0.02)


def test_collisions_count_unrelated_boxes_only():
    a = ContentItem((100, 100, 300, 200), (1, 0))
    b = ContentItem((200, 100, 400, 200), (2, 0))
    nested = ContentItem((100, 100, 300, 200), (3, 1, 0))  # text inside box a
    assert score_items([a, nested], W, H).collision == 1.0
    collided = score_items([a, b], W, H)
    assert collided.collision == pytest.approx(1 - 100 * 100 / (300 * 100), rel=0.02)


SLIDE = """<!doctype html><html><head><style>
body {{ margin: 0; width: 1280px; height: 720px; font-family: sans-serif; }}
h1 {{ position: absolute; left: 440px; top: 200px; margin: 0; font-size: 48px; }}
p {{ position: absolute; left: {p_left}px; top: {p_top}px; margin: 0; font-size: 32px; }}
</style></head><body><h1>Quarterly results</h1><p>Revenue grew in every region</p></body></html>"""


@pytest.mark.browser
def test_html_slide_collision_and_aspect():
    clean = aeslides.score(SLIDE.format(p_left=420, p_top=320))
    overlapping = aeslides.score(SLIDE.format(p_left=440, p_top=210))
    assert clean.ok and clean.aspect == 1.0 and clean.collision == 1.0
    assert overlapping.collision < 0.9
    tall = aeslides.score(SLIDE.replace("height: 720px", "height: 1440px").format(p_left=420, p_top=320))
    assert tall.aspect == pytest.approx(0.5)
