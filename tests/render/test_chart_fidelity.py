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
