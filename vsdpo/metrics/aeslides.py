"""AeSlides-style layout rewards for an HTML slide, each in [0, 1] (1 is best).

The slide is rendered in Chromium on a 1280 x 720 viewport; its canvas is the whole document
(so content that spills below the fold stretches the canvas and costs aspect-ratio fit). The content
is the union of the visible text runs, replaced elements (images, SVG, canvas, controls) and painted
boxes (a background or a border) smaller than the canvas itself.

- **aspect**: fit of the canvas to 16:9, ``min(r, 16/9) / max(r, 16/9)`` for ``r = width / height``.
- **whitespace**: the content ratio (content area / canvas area) against a comfortable band
  ``[0.35, 0.65]``: 1 inside it, falling linearly to 0 at an empty and at a completely full slide.
- **balance**: ``1 - d``, where ``d`` is the distance from the area-weighted centroid of the content
  to the canvas centre, in units where the canvas corners lie at distance 1.
- **collision**: ``1 - min(1, overlap / content)``: the area where two content boxes overlap that are
  not nested in each other (text inside its own coloured box is no collision), over the content area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from vsdpo.metrics.page import PageLayout, render_page

SLIDE_ASPECT = 16 / 9
SLIDE_WIDTH, SLIDE_HEIGHT = 1280, 720
WHITESPACE_BAND = (0.35, 0.65)
# A painted box covering this much of the canvas is the slide's background, not content.
BACKGROUND_FRACTION = 0.9

Box = tuple[float, float, float, float]


@dataclass
class AeSlidesScore:
    aspect: float
    whitespace: float
    balance: float
    collision: float
    content_ratio: float = 0.0
    ok: bool = True
    error: str | None = None

    @property
    def mean(self) -> float:
        return (self.aspect + self.whitespace + self.balance + self.collision) / 4

    def as_dict(self) -> dict[str, float]:
        return {
            "aspect": self.aspect,
            "whitespace": self.whitespace,
            "balance": self.balance,
            "collision": self.collision,
            "mean": self.mean,
        }


@dataclass
class ContentItem:
    box: Box
    path: tuple[int, ...]  # the element and its ancestors (ids), to tell nesting from collision


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _intersection(a: Box, b: Box) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def _clip_to(box: Box, width: float, height: float) -> Box:
    return (max(box[0], 0.0), max(box[1], 0.0), min(box[2], width), min(box[3], height))


def aspect_score(width: float, height: float) -> float:
    if width <= 0 or height <= 0:
        return 0.0
    ratio = width / height
    return min(ratio, SLIDE_ASPECT) / max(ratio, SLIDE_ASPECT)


def whitespace_score(content_ratio: float) -> float:
    low, high = WHITESPACE_BAND
    if content_ratio < low:
        return max(0.0, content_ratio / low)
    if content_ratio > high:
        return max(0.0, (1 - content_ratio) / (1 - high))
    return 1.0


def union_area(boxes: list[Box], width: float, height: float) -> float:
    """Area covered by the boxes, counted once, on a coarse grid of the canvas (1 cell = 4 px)."""
    cell = 4.0
    grid = np.zeros((int(math.ceil(height / cell)), int(math.ceil(width / cell))), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        grid[int(y0 // cell) : int(math.ceil(y1 / cell)), int(x0 // cell) : int(math.ceil(x1 / cell))] = True
    return float(grid.sum()) * cell * cell


def score_items(items: list[ContentItem], width: float, height: float) -> AeSlidesScore:
    """The four rewards from content boxes on a ``width`` x ``height`` canvas."""
    canvas_area = width * height
    boxes = [_clip_to(item.box, width, height) for item in items]
    kept = [(box, item) for box, item in zip(boxes, items, strict=True) if _area(box) > 0]
    if not kept or canvas_area <= 0:
        return AeSlidesScore(aspect_score(width, height), 0.0, 0.0, 1.0, 0.0)
    content = union_area([box for box, _ in kept], width, height)
    content_ratio = min(1.0, content / canvas_area)

    areas = np.array([_area(box) for box, _ in kept])
    centres = np.array([((box[0] + box[2]) / 2, (box[1] + box[3]) / 2) for box, _ in kept])
    cx, cy = (centres * areas[:, None]).sum(axis=0) / areas.sum()
    offset = math.hypot((cx - width / 2) / (width / 2), (cy - height / 2) / (height / 2)) / math.sqrt(2)

    overlap = 0.0
    for (box_a, item_a), (box_b, item_b) in combinations(kept, 2):
        nested = item_a.path[0] in item_b.path or item_b.path[0] in item_a.path
        if not nested:
            overlap += _intersection(box_a, box_b)
    collision = 1.0 - min(1.0, overlap / content) if content > 0 else 1.0
    return AeSlidesScore(
        aspect=aspect_score(width, height),
        whitespace=whitespace_score(content_ratio),
        balance=max(0.0, 1.0 - offset),
        collision=collision,
        content_ratio=content_ratio,
    )


def items_of(layout: PageLayout) -> list[ContentItem]:
    canvas_area = layout.width * layout.height
    items = [ContentItem(text.box, tuple(text.path)) for text in layout.texts]
    for box in layout.boxes:
        if box.kind == "shape" and _area(box.box) >= BACKGROUND_FRACTION * canvas_area:
            continue
        items.append(ContentItem(box.box, tuple(box.path)))
    return items


def score(html: str, *, timeout_s: float = 20, assets_dir: str | None = None) -> AeSlidesScore:
    """Aspect, whitespace, balance and collision rewards of an HTML slide (0 each if it cannot render)."""
    try:
        layout = render_page(html, width=SLIDE_WIDTH, timeout_s=timeout_s, assets_dir=assets_dir)
    except Exception as error:
        return AeSlidesScore(0.0, 0.0, 0.0, 0.0, ok=False, error=f"{type(error).__name__}: {error}")
    return score_items(items_of(layout), layout.width, layout.height)
