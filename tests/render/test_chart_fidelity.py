"""Clean charts the linter must leave alone, each standing for a class of real benchmark figures, and
the defect of the same class it must still report."""

from __future__ import annotations

from vsdpo.render import render

HEAD = "import matplotlib.pyplot as plt\n"

SLANTED_LABELS = (
    HEAD + "fig, ax = plt.subplots(figsize=(5, 3))\n"
    "names = ['Northern region', 'Southern region', 'Eastern region', 'Western region',\n"
    "         'Central region', 'Coastal region']\n"
    "ax.bar(range(6), [3, 4, 5, 2, 3, 4])\n"
    "ax.set_xticks(range(6), names, rotation=45, ha='right')\n"
    "plt.tight_layout()\n"
)
CROWDED_SLANTED_LABELS = (
    HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
    "ax.bar(range(30), range(30))\n"
    "ax.set_xticks(range(30), [f'category number {i}' for i in range(30)], rotation=30)\n"
)


def _kinds(result) -> list[tuple[str, str]]:
    return [(d.kind, d.message) for d in result.defects]


def _clean(code: str):
    result = render(code, "chart")
    assert result.ok, result.error
    assert result.defects == [], _kinds(result)
    return result


def _overlap_on(code: str, line: int) -> None:
    result = render(code, "chart")
    assert result.ok, result.error
    assert any(d.kind == "overlap" and line in d.lines for d in result.defects), _kinds(result)


def test_slanted_labels_that_do_not_touch_are_not_an_overlap():
    # Each label's upright box takes in empty corners that its neighbour's box also takes in.
    result = _clean(SLANTED_LABELS)
    assert sum(e.role == "tick_label" and "corners" in e.extra for e in result.elements) == 6


def test_slanted_labels_that_do_touch_are_an_overlap():
    _overlap_on(CROWDED_SLANTED_LABELS, 4)


REFERENCE_LINES = (
    HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
    "ax.plot([0, 1, 2, 3], [3, 2, 2, 0], label='falling')\n"
    "for x in (0.5, 1.0, 1.5, 2.0, 2.5):\n"
    "    ax.axvline(x, color='grey', linestyle=':', linewidth=0.5)\n"
    "ax.axhline(1.5, color='grey', linewidth=0.5, label='threshold')\n"
    "ax.legend(loc='upper right')\n"
)


def test_reference_lines_across_the_axes_are_not_data_under_the_legend():
    # Wherever the legend goes it sits on lines that cross the whole axes; they hold no data points.
    result = _clean(REFERENCE_LINES)
    assert sum(bool(e.extra.get("guide")) for e in result.elements) == 6


def test_a_data_line_under_the_legend_is_still_an_overlap():
    _overlap_on(REFERENCE_LINES.replace("[3, 2, 2, 0]", "[0, 1, 2, 3]"), 3)


def _overlaps(result) -> list[str]:
    return [d.message for d in result.defects if d.kind == "overlap"]


# The same words drawn twice in one spot (a radar's closing point labelled again, a tick given twice):
# the picture shows one text. Two different texts in that spot still collide.
TWICE_IN_ONE_SPOT = (
    HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
    "ax.plot([0, 1], [0, 1])\n"
    "ax.set_yticks([0.2, 0.2, 0.6, 1.0])\n"
    "ax.text(0.5, 0.3, '62.0')\n"
    "ax.text(0.5, 0.3, '62.0')\n"
)


def test_a_text_drawn_twice_in_one_spot_is_not_an_overlap():
    _clean(TWICE_IN_ONE_SPOT)


def test_two_different_texts_in_one_spot_are_an_overlap():
    _overlap_on(TWICE_IN_ONE_SPOT.replace("ax.text(0.5, 0.3, '62.0')\n", "ax.text(0.5, 0.3, '59.1')\n", 1), 5)


# Two texts stacked so that their line boxes share the first one's empty descender space (no glyph of
# "Client" goes below the baseline) while two blank rows of pixels part their glyphs; moved up by four
# pixels, the glyphs meet.
STACKED_TEXTS = (
    HEAD + "fig = plt.figure(figsize=(4, 3), dpi=100)\n"
    "fig.text(0.2, 0.5, 'Client', va='baseline')\n"
    "fig.text(0.2, 148 / 300, 'NOON', va='top')\n"
)


def test_texts_whose_line_boxes_share_only_empty_space_do_not_overlap():
    result = _clean(STACKED_TEXTS)
    first, second = (e for e in result.elements if e.id.startswith("figure.text"))
    shared = min(first.bbox[3], second.bbox[3]) - max(first.bbox[1], second.bbox[1])
    assert shared / (second.bbox[3] - second.bbox[1]) > 0.05  # what the line boxes alone reported
    assert first.extra["ink"][3] < second.extra["ink"][1]


def test_texts_whose_glyphs_meet_overlap():
    _overlap_on(STACKED_TEXTS.replace("148 / 300", "152 / 300"), 4)


# Bars from zero with the axes starting at 40: the axes clip them, and a legend below the axes lies
# where their clipped-away feet would have been. Put on the bars, it covers them.
CLIPPED_BARS = (
    HEAD + "fig, ax = plt.subplots(figsize=(5, 3))\n"
    "ax.bar(range(6), [70, 90, 60, 85, 75, 95], label='score')\n"
    "ax.set_ylim(40, 100)\n"
    "ax.legend(loc='lower center', bbox_to_anchor=(0.5, -0.45))\n"
    "plt.tight_layout()\n"
)


def test_the_clipped_away_part_of_a_bar_is_not_under_the_legend():
    result = _clean(CLIPPED_BARS)
    axes = next(e for e in result.elements if e.role == "axes")
    assert all(e.bbox[3] <= axes.bbox[3] + 1 for e in result.elements if e.role == "patch")


def test_a_legend_on_the_bars_is_an_overlap():
    _overlap_on(CLIPPED_BARS.replace("loc='lower center', bbox_to_anchor=(0.5, -0.45)", "loc='center'"), 5)


# A filled histogram is one step polygon: its upright box takes in the empty upper corners where the
# legend goes. A legend on the steps themselves covers them.
STEP_HISTOGRAM = (
    HEAD + "fig, ax = plt.subplots(figsize=(4, 3))\n"
    "ax.hist([0, 1, 1, 2, 2, 2, 3, 3, 4] * 10, bins=5, range=(0, 5), histtype='stepfilled',\n"
    "        label='sample')\n"
    "ax.legend(loc='upper right', fontsize=14)\n"
)


def test_the_empty_corner_of_a_step_histogram_is_not_under_the_legend():
    result = _clean(STEP_HISTOGRAM)
    (polygon,) = (e for e in result.elements if e.role == "patch")
    assert len(polygon.extra["outline"]) >= 4


def test_a_legend_on_the_steps_of_a_histogram_is_an_overlap():
    _overlap_on(STEP_HISTOGRAM.replace("loc='upper right'", "loc='center left'"), 5)


# A legend without a frame paints its entries only; the axis label above it comes close to their line
# boxes, not to their glyphs or markers. Pulled up onto the label, its entries cover it.
FRAMELESS_LEGEND = (
    HEAD + "fig, ax = plt.subplots(figsize=(6, 4))\n"
    "ax.plot([1, 2, 3], [1, 2, 3], 'o-', label='BPE')\n"
    "ax.plot([1, 2, 3], [2, 3, 1], 'o-', label='Wordpunct')\n"
    "ax.set_xlabel('Vocabulary Size', fontsize=14)\n"
    "ax.legend(frameon=False, fontsize=12, loc='lower center', bbox_to_anchor=(0.5, -0.29), ncol=2)\n"
    "plt.tight_layout()\n"
)


def test_the_empty_padding_of_a_frameless_legend_is_not_an_overlap():
    result = _clean(FRAMELESS_LEGEND)
    legend = next(e for e in result.elements if e.role == "legend")
    label = next(e for e in result.elements if e.id == "axes0.xlabel")
    # The box is what the entries paint (their glyphs and markers), not their line boxes and padding.
    assert legend.bbox[1] >= label.extra["ink"][3]


def test_a_frameless_legend_on_the_axis_label_is_an_overlap():
    _overlap_on(FRAMELESS_LEGEND.replace("-0.29", "-0.2"), 6)


# An inset drawn within the left subplot is that subplot's, not a fellow of the right one: their middle
# lines lying 4 px apart is no near-miss. Two subplots 4 px apart are.
INSET = (
    HEAD + "fig = plt.figure(figsize=(8, 4))\n"
    "left = fig.add_axes([0.08, 0.1, 0.4, 0.8])\n"
    "right = fig.add_axes([0.55, 0.1, 0.4, 0.8])\n"
    "zoom = fig.add_axes([0.25, 0.39, 0.2, 0.2])\n"
    "left.plot([0, 1], [0, 1])\n"
    "zoom.plot([0, 1], [1, 0])\n"
)


def test_an_inset_is_not_aligned_with_the_subplots_beside_its_host():
    result = _clean(INSET)
    zoom = [e for e in result.elements if e.role == "axes"][2]
    assert zoom.parent == "axes0"


def test_subplots_a_few_pixels_apart_are_misaligned():
    result = render(INSET.replace("[0.55, 0.1, 0.4, 0.8]", "[0.55, 0.11, 0.4, 0.8]"), "chart")
    assert any(d.kind == "misalignment" and 4 in d.lines for d in result.defects), _kinds(result)
