"""The generic defect checks on hand-made element lists: each finds its defect, and leaves clean twins alone."""

import pytest

from vsdpo.render.defects import (
    detect_all,
    find_clipped_text,
    find_low_contrast,
    find_misalignment,
    find_overflow,
    find_overlaps,
    wcag_contrast,
)
from vsdpo.render.types import Element

CANVAS = (0.0, 0.0, 400.0, 300.0)


def text(id, bbox, lines, **kw):
    return Element(id=id, role="text", bbox=bbox, text=id, lines=lines, **kw)


def test_wcag_contrast_known_values():
    assert wcag_contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert wcag_contrast("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert wcag_contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    with pytest.raises(ValueError, match="rrggbb"):
        wcag_contrast("red", "#ffffff")


def test_overlap_of_texts_is_found_with_both_lines():
    a, b = text("a", (10, 10, 60, 30), [3]), text("b", (40, 15, 90, 35), [7])
    (defect,) = find_overlaps([a, b])
    assert defect.kind == "overlap" and defect.elements == ["a", "b"] and defect.lines == [3, 7]
    assert 0 < defect.severity <= 1


def test_overlap_ignores_apart_boxes_ancestors_and_allowed_pairs():
    a, b = text("a", (10, 10, 60, 30), [3]), text("b", (70, 10, 120, 30), [7])
    assert find_overlaps([a, b]) == []
    box = Element("box", "shape", (0, 0, 200, 200), lines=[1])
    child = Element("inner", "shape", (10, 10, 50, 50), lines=[2], parent="box")
    assert find_overlaps([box, child]) == []
    assert find_overlaps([a, text("c", (40, 15, 90, 35), [8])], should_not_overlap=lambda x, y: False) == []


def test_overlap_default_pairs():
    legend = Element("legend", "legend", (0, 0, 50, 50), lines=[4])
    line = Element("line", "line", (10, 10, 100, 100), lines=[2])
    axes = Element("axes", "axes", (0, 0, 200, 200), lines=[1])
    assert [d.elements for d in find_overlaps([legend, line, axes])] == [["legend", "line"]]


def test_overflow_of_canvas_and_container():
    inside = Element("in", "shape", (10, 10, 50, 50), lines=[1])
    out = Element("out", "shape", (350, 10, 450, 50), lines=[2])
    (defect,) = find_overflow([inside, out], CANVAS)
    assert defect.kind == "overflow" and defect.elements == ["out"] and defect.lines == [2]
    assert defect.severity == pytest.approx(0.5)
    (defect,) = find_overflow([inside], CANVAS, containers={"in": (0, 0, 40, 40)})
    assert "container" in defect.message
    assert find_overflow([inside], CANVAS, containers={"in": (0, 0, 60, 60)}) == []


def test_clipped_text_by_canvas_and_clip_box():
    cut = text("cut", (380, 100, 440, 120), [5])
    (defect,) = find_clipped_text([cut], CANVAS)
    assert defect.kind == "clipped_text" and defect.lines == [5]
    whole = text("whole", (100, 100, 160, 120), [6])
    assert find_clipped_text([whole], CANVAS) == []
    (defect,) = find_clipped_text([whole], CANVAS, clip_boxes={"whole": (90, 90, 140, 130)})
    assert defect.elements == ["whole"]


def test_misalignment_near_miss_only():
    top = Element("a", "shape", (10, 10, 100, 40), lines=[1], parent="p")
    shifted = Element("b", "shape", (13, 60, 103, 90), lines=[2], parent="p")
    (defect,) = find_misalignment([top, shifted])
    assert defect.kind == "misalignment" and defect.lines == [1, 2]
    aligned = Element("b", "shape", (10, 60, 100, 90), lines=[2], parent="p")
    far = Element("b", "shape", (60, 60, 150, 90), lines=[2], parent="p")
    other_parent = Element("b", "shape", (13, 60, 103, 90), lines=[2], parent="q")
    for twin in (aligned, far, other_parent):
        assert find_misalignment([top, twin]) == []


def test_low_contrast_flags_text_below_three_to_one():
    pale = text("pale", (0, 0, 10, 10), [9], color="#b0b0b0", background="#ffffff")  # 2.2:1
    (defect,) = find_low_contrast([pale])
    assert defect.kind == "low_contrast" and defect.lines == [9] and "below 3:1" in defect.message
    # Grey at 3.95:1 (matplotlib's "gray") and link blue at 3.8:1 are read by everyone.
    gray = text("gray", (0, 0, 10, 10), [9], color="#808080", background="#ffffff")
    link = text("link", (0, 0, 10, 10), [9], color="#0086e3", background="#ffffff")
    assert find_low_contrast([gray, link]) == []
    with pytest.raises(ValueError, match="level"):
        find_low_contrast([pale], level="AAA")


def test_low_contrast_at_wcag_aa_with_large_text_threshold():
    grey = text("grey", (0, 0, 10, 10), [9], color="#949494", background="#ffffff")  # about 3:1
    (defect,) = find_low_contrast([grey], level="AA")
    assert defect.kind == "low_contrast" and defect.lines == [9] and "below 4.5:1" in defect.message
    large = text("large", (0, 0, 10, 10), [9], color="#949494", background="#ffffff", extra={"font_px": 32})
    bold = text(
        "bold",
        (0, 0, 10, 10),
        [9],
        color="#949494",
        background="#ffffff",
        extra={"font_px": 19, "bold": True},
    )
    dark = text("dark", (0, 0, 10, 10), [9], color="#333333", background="#ffffff")
    unknown = text("unknown", (0, 0, 10, 10), [9], color="#eeeeee")
    assert find_low_contrast([large, bold, dark, unknown], level="AA") == []


def test_detect_all_collects_every_kind():
    elements = [
        text("a", (10, 10, 60, 30), [1], color="#eeeeee", background="#ffffff"),
        text("b", (40, 15, 90, 35), [2]),
        text("edge", (380, 100, 440, 120), [3]),
    ]
    kinds = {defect.kind for defect in detect_all(elements, CANVAS)}
    assert {"overlap", "low_contrast", "clipped_text", "overflow"} <= kinds
    for defect in detect_all(elements, CANVAS):
        assert 0 < defect.severity <= 1 and defect.lines
