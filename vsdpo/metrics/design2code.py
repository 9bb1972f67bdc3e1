"""Design2Code's visual scores between a generated and a reference web page.

Design2Code (Si et al., 2024, arXiv 2403.03163) compares the text blocks of two rendered pages; the
definitions are those of its code (``Design2Code/metrics/visual_score.py``, ``visual_eval_v3_multi``):

1. Blocks: one per element of Design2Code's tag list, its own text lowercased, the tight box of its
   text pixels (normalised by the page's width and height) and their mean colour in the page's
   picture, found by recolouring the page as the benchmark does (:mod:`vsdpo.metrics.design2code_blocks`;
   generated pages first go through the benchmark's clean-up). Blocks with identical boxes are merged.
2. Matching: blocks are paired one-to-one to maximise text similarity (``difflib.SequenceMatcher``
   ratio), with a bonus for well-matched neighbours (``consecutive_bonus=0.1``, window 1). Before the
   final matching, neighbouring blocks on either side are merged greedily wherever the merge raises
   the similarity of the matched pairs by more than 0.05 (text split differently across elements).
   Pairs with text similarity below 0.5 are dropped.
3. Scores: **block** = area of the matched blocks (both pages) over the area of all blocks;
   **text** = mean text similarity of matched pairs; **position** = mean of
   ``1 - max(|dx|, |dy|)`` between matched block centres; **color** = mean
   ``max(0, 1 - CIEDE2000 / 100)`` between matched text colours; **clip** = cosine similarity of CLIP
   image embeddings of the two screenshots with the text blocks painted over (only with a local CLIP
   checkpoint; None otherwise). Without any matched block, every score is 0.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment

from vsdpo.metrics.color import color_similarity
from vsdpo.metrics.design2code_blocks import Block, merge_by_box, page_blocks
from vsdpo.metrics.kept import KeptResults

__all__ = ["Block", "Design2CodeScore", "match_blocks", "merge_by_box", "score", "score_blocks"]

CONSECUTIVE_BONUS = 0.1
CONTEXT_WINDOW = 1
MIN_TEXT_SIMILARITY = 0.5
MERGE_GAIN = 0.05
# Only breaks exact ties between equally good matchings (repeated texts), in favour of nearby blocks.
_TIE_BREAK = 1e-6
# Reference pages whose blocks are kept: a training task's reference is scored against every rollout
# of it, and loading it again each time would cost as much as loading the rollout's own page.
REFERENCE_CACHE_SIZE = 64


@dataclass
class Design2CodeScore:
    block: float
    text: float
    position: float
    color: float
    clip: float | None = None  # None without a CLIP checkpoint
    ok: bool = True
    error: str | None = None
    n_matched: int = 0
    # The blocks after merging and the kept pairs (generated index, reference index, text similarity),
    # kept for the feedback on how the two pages differ.
    blocks: tuple[list[Block], list[Block], list[tuple[int, int, float]]] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def mean(self) -> float:
        """Mean of the scores present (CLIP included only when computed)."""
        values = [self.block, self.text, self.position, self.color]
        if self.clip is not None:
            values.append(self.clip)
        return sum(values) / len(values)

    def as_dict(self) -> dict[str, float | None]:
        return {
            "block": self.block,
            "text": self.text,
            "position": self.position,
            "color": self.color,
            "clip": self.clip,
            "mean": self.mean,
        }


def _merge(first: Block, second: Block) -> Block:
    x0 = min(first.bbox[0], second.bbox[0])
    y0 = min(first.bbox[1], second.bbox[1])
    x1 = max(first.bbox[0] + first.bbox[2], second.bbox[0] + second.bbox[2])
    y1 = max(first.bbox[1] + first.bbox[3], second.bbox[1] + second.bbox[3])
    color = tuple((a + b) // 2 for a, b in zip(first.color, second.color, strict=True))
    return Block(first.text + " " + second.text, (x0, y0, x1 - x0, y1 - y0), color)


def _centre(block: Block) -> tuple[float, float]:
    return block.bbox[0] + block.bbox[2] / 2, block.bbox[1] + block.bbox[3] / 2


@dataclass
class _Matcher:
    """Text-similarity matching with the ratio cache shared by all the merge trials of one pair."""

    cache: dict[tuple[str, str], float] = field(default_factory=dict)

    def ratio(self, a: str, b: str) -> float:
        key = (a, b)
        if key not in self.cache:
            self.cache[key] = SequenceMatcher(None, a, b).ratio()
        return self.cache[key]

    def costs(self, blocks_a: list[Block], blocks_b: list[Block]) -> np.ndarray:
        return -np.array([[self.ratio(a.text, b.text) for b in blocks_b] for a in blocks_a]).reshape(
            len(blocks_a), len(blocks_b)
        )

    def match(
        self, blocks_a: list[Block], blocks_b: list[Block], bonus: float, window: int
    ) -> tuple[list[tuple[int, int]], list[float]]:
        """One-to-one matching maximising (context-adjusted) similarity; returns pairs and their costs."""
        cost = _with_context(self.costs(blocks_a, blocks_b), bonus, window)
        centres_a = np.array([_centre(b) for b in blocks_a]).reshape(-1, 2)
        centres_b = np.array([_centre(b) for b in blocks_b]).reshape(-1, 2)
        distance = np.abs(centres_a[:, None, :] - centres_b[None, :, :]).max(axis=-1)
        rows, cols = linear_sum_assignment(cost + _TIE_BREAK * distance)
        return list(zip(rows.tolist(), cols.tolist(), strict=True)), cost[rows, cols].tolist()


def _with_context(cost: np.ndarray, bonus: float, window: int) -> np.ndarray:
    """Reward a good pair (similarity > 0.5) by the best ``2 * window`` pairs in its neighbourhood."""
    if window <= 0 or bonus == 0:
        return cost
    adjusted = cost.copy()
    n, m = cost.shape
    for i, j in zip(*np.nonzero(cost < -0.5), strict=True):
        around = cost[max(0, i - window) : i + window + 1, max(0, j - window) : j + window + 1].ravel()
        around = np.sort(around)
        # Leave the pair itself out once, then take the most similar (most negative) neighbours.
        own = int(np.nonzero(around == cost[i, j])[0][0])
        neighbours = np.delete(around, own)[: 2 * window]
        adjusted[i, j] += bonus * neighbours.sum()
    return adjusted


def _gain(current: list[float], updated: list[float]) -> float:
    """How much better ``updated`` pair costs are than ``current`` once the pairs both share are removed."""
    remaining_current, remaining_updated = list(current), list(updated)
    for value in list(remaining_current):
        if value in remaining_updated:
            remaining_current.remove(value)
            remaining_updated.remove(value)
    mean_current = sum(remaining_current) / len(remaining_current) if remaining_current else 0.0
    mean_updated = sum(remaining_updated) / len(remaining_updated) if remaining_updated else 0.0
    difference = mean_current - mean_updated
    if (
        difference > 0
        and remaining_current
        and remaining_updated
        and min(remaining_current) <= min(remaining_updated)
    ):
        return 0.0
    return difference


def _merge_pass(
    blocks: list[Block], other: list[Block], matcher: _Matcher, merging_first: bool
) -> list[Block] | None:
    """Merge the neighbouring blocks of ``blocks`` whose merge improves the matching; None if none does."""
    order = (lambda mine, theirs: (mine, theirs)) if merging_first else (lambda mine, theirs: (theirs, mine))
    _, current = matcher.match(*order(blocks, other), 0.0, CONTEXT_WINDOW)
    candidates = []
    for i in range(len(blocks) - 1):
        trial = blocks[:i] + [_merge(blocks[i], blocks[i + 1])] + blocks[i + 2 :]
        _, updated = matcher.match(*order(trial, other), 0.0, CONTEXT_WINDOW)
        gain = _gain(current, updated)
        if gain > MERGE_GAIN:
            candidates.append((gain, i))
    if not candidates:
        return None
    merged, removed, touched = list(blocks), set(), set()
    for _, i in sorted(candidates, key=lambda c: -c[0]):
        if {i, i + 1} & touched:
            continue
        merged[i] = _merge(merged[i], merged[i + 1])
        removed.add(i + 1)
        touched.update((i, i + 1))
    return [block for k, block in enumerate(merged) if k not in removed]


def match_blocks(
    generated: list[Block], reference: list[Block]
) -> tuple[list[Block], list[Block], list[tuple[int, int, float]]]:
    """Merge split blocks on both sides, match, and keep pairs with text similarity >= 0.5."""
    matcher = _Matcher()
    while True:
        changed = False
        if len(generated) >= 2 and (merged := _merge_pass(generated, reference, matcher, True)) is not None:
            generated, changed = merged, True
        if len(reference) >= 2 and (merged := _merge_pass(reference, generated, matcher, False)) is not None:
            reference, changed = merged, True
        if not changed:
            break
    pairs, _ = matcher.match(generated, reference, CONSECUTIVE_BONUS, CONTEXT_WINDOW)
    kept = []
    for i, j in pairs:
        similarity = matcher.ratio(generated[i].text, reference[j].text)
        if similarity >= MIN_TEXT_SIMILARITY:
            kept.append((i, j, similarity))
    return generated, reference, kept


def score_blocks(generated: list[Block], reference: list[Block]) -> Design2CodeScore:
    """Block, text, position and colour scores of two block lists (CLIP left to :func:`score`)."""
    if not generated or not reference:
        return Design2CodeScore(0.0, 0.0, 0.0, 0.0, blocks=(generated, reference, []))
    generated, reference, matches = match_blocks(generated, reference)
    if not matches:
        return Design2CodeScore(0.0, 0.0, 0.0, 0.0, blocks=(generated, reference, []))
    area = lambda block: block.bbox[2] * block.bbox[3]
    matched_generated = {i for i, _, _ in matches}
    matched_reference = {j for _, j, _ in matches}
    unmatched_area = sum(area(b) for k, b in enumerate(generated) if k not in matched_generated)
    unmatched_area += sum(area(b) for k, b in enumerate(reference) if k not in matched_reference)
    matched_area = sum(area(generated[i]) + area(reference[j]) for i, j, _ in matches)
    positions, colors = [], []
    for i, j, _ in matches:
        (gx, gy), (rx, ry) = _centre(generated[i]), _centre(reference[j])
        positions.append(1 - max(abs(gx - rx), abs(gy - ry)))
        colors.append(color_similarity(generated[i].color, reference[j].color))
    total_area = matched_area + unmatched_area
    return Design2CodeScore(
        block=float(matched_area / total_area) if total_area > 0 else 0.0,
        text=float(np.mean([s for _, _, s in matches])),
        position=float(np.mean(positions)),
        color=float(np.mean(colors)),
        n_matched=len(matches),
        blocks=(generated, reference, matches),
    )


def clip_similarity(
    image_a: bytes, image_b: bytes, blocks_a: list[Block], blocks_b: list[Block], model_path: str
) -> float:
    """Cosine similarity of CLIP image embeddings, text blocks painted over, images squared."""
    # torch and transformers load only for the optional CLIP score: the other scores need neither.
    import torch

    model, processor = _clip(model_path)
    pictures = [_masked_square(image, blocks) for image, blocks in ((image_a, blocks_a), (image_b, blocks_b))]
    with torch.no_grad():
        inputs = processor(images=pictures, return_tensors="pt")
        features = model.get_image_features(**inputs)
        if not isinstance(features, torch.Tensor):  # some versions return a model output
            features = features.pooler_output
    features = features / features.norm(dim=-1, keepdim=True)
    return float((features[0] * features[1]).sum())


_CLIP_MODELS: dict[str, Any] = {}


def _clip(model_path: str):
    if model_path not in _CLIP_MODELS:
        from transformers import CLIPModel, CLIPProcessor

        _CLIP_MODELS[model_path] = (
            CLIPModel.from_pretrained(model_path).eval(),
            CLIPProcessor.from_pretrained(model_path),
        )
    return _CLIP_MODELS[model_path]


def _masked_square(png: bytes, blocks: list[Block]):
    """Paint each text block with the median colour of its border (text removed), then squash to a square."""
    image = np.array(Image.open(io.BytesIO(png)).convert("RGB"))
    height, width = image.shape[:2]
    for block in blocks:
        x0, y0 = int(block.bbox[0] * width), int(block.bbox[1] * height)
        x1, y1 = int((block.bbox[0] + block.bbox[2]) * width), int((block.bbox[1] + block.bbox[3]) * height)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        ring = np.concatenate([image[max(y0 - 1, 0), x0:x1], image[min(y1, height - 1), x0:x1]])
        image[y0:y1, x0:x1] = np.median(ring, axis=0).astype(np.uint8)
    side = min(width, height)
    return Image.fromarray(image).resize((side, side), Image.LANCZOS)


def score(
    generated_html: str,
    reference_html: str,
    *,
    clip_model_path: str | None = None,
    timeout_s: float = 30,
    assets_dir: str | None = None,
) -> Design2CodeScore:
    """Design2Code's block, text, position and colour scores (and CLIP with a local checkpoint)."""
    if not isinstance(generated_html, str):
        raise TypeError(f"generated_html: expected str, got {type(generated_html).__name__}")
    if not isinstance(reference_html, str):
        raise TypeError(f"reference_html: expected str, got {type(reference_html).__name__}")
    with_clip = clip_model_path is not None
    reference_blocks, reference_image = reference_page_blocks(
        reference_html, timeout_s=timeout_s, assets_dir=assets_dir
    )
    try:
        generated_blocks, generated_image = page_blocks(
            generated_html, generated=True, timeout_s=timeout_s, assets_dir=assets_dir
        )
    except Exception as error:  # a page that cannot be rendered scores 0
        return Design2CodeScore(
            0.0, 0.0, 0.0, 0.0, 0.0 if with_clip else None, ok=False, error=f"{type(error).__name__}: {error}"
        )
    result = score_blocks(generated_blocks, reference_blocks)
    if with_clip:
        result.clip = clip_similarity(
            generated_image, reference_image, generated_blocks, reference_blocks, clip_model_path
        )
    return result


_references: KeptResults[tuple[list[Block], bytes]] = KeptResults(REFERENCE_CACHE_SIZE)


def reference_page_blocks(
    html: str, *, timeout_s: float = 30, assets_dir: str | None = None
) -> tuple[list[Block], bytes]:
    """``page_blocks`` of a reference page, kept for the next score against the same page (the last
    ``REFERENCE_CACHE_SIZE`` pages, keyed by the source, the assets folder and its modification time).
    A page that fails to load is not kept."""
    folder = None
    if assets_dir is not None:
        with contextlib.suppress(OSError):
            folder = (os.path.realpath(assets_dir), os.stat(assets_dir).st_mtime_ns)
    key = (hashlib.sha256(html.encode("utf-8", "surrogatepass")).hexdigest(), assets_dir, folder)
    blocks, image = _references.get(
        key, lambda: page_blocks(html, generated=False, timeout_s=timeout_s, assets_dir=assets_dir)
    )
    return copy.deepcopy(blocks), image
