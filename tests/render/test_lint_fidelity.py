"""The linter's reports on cases where it went wrong: one test per class, on inputs built here."""

from __future__ import annotations

import json

from vsdpo.render import render
from vsdpo.render.defects import find_misalignment
from vsdpo.render.types import Element

DECK = """from pptx import Presentation
from pptx.util import Inches
prs = Presentation()
slide = prs.slides.add_slide(prs.slide_layouts[6])
box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))
box.text_frame.text = "Quarterly results"
prs.save("deck.pptx")
"""


def test_slide_results_are_plain_json():
    result = render(DECK, "slides", draw=False)
    assert result.ok, result.error
    data = json.loads(json.dumps(result.to_dict()))
    assert data["elements"][0]["extra"]["provenance"]


def _block(element_id: str, box, text_rect) -> Element:
    return Element(element_id, "block", box, text="words", parent="body", extra={"rects": [text_rect]})


def test_stacked_blocks_are_compared_on_the_edges_of_their_text():
    # Two auto-width blocks: the right edges meet the container's; the texts start 3 px apart.
    first = _block("p-1", (40, 0, 800, 20), (40, 0, 260, 20))
    second = _block("p-2", (43, 30, 800, 50), (43, 30, 250, 50))
    (defect,) = find_misalignment([first, second])
    assert defect.elements == ["p-1", "p-2"] and "text left edges off by 3.0px" in defect.message
    # Same start, or a deliberate indent, is no near-miss; nor are the ragged right ends.
    aligned = _block("p-3", (40, 30, 800, 50), (40, 30, 251, 50))
    indented = _block("p-4", (80, 30, 800, 50), (80, 30, 300, 50))
    assert find_misalignment([first, aligned]) == []
    assert find_misalignment([first, indented]) == []


FIGURE = """import matplotlib.pyplot as plt
fig = plt.figure(figsize=(8, 4))
cube = fig.add_subplot(1, 3, 1, projection="3d")
cube.plot([0, 1], [0, 1], [0, 1])
bare = fig.add_subplot(1, 3, 2)
bare.plot([0, 1], [1, 0])
bare.axis("off")
bars = fig.add_subplot(1, 3, 3)
bars.bar([0, 1], [3, 2], color="#08306b")
bars.text(0, 1.5, "inside", color="white", ha="center")
bars.text(1, 2.5, "ghost", color="white", ha="center")
fig.suptitle("Overview")
plt.savefig("figure.png")
"""


def test_chart_elements_are_what_the_picture_shows():
    result = render(FIGURE, "chart")
    assert result.ok, result.error
    texts = [e for e in result.elements if e.text is not None]
    # A suptitle is one element, not two; the hidden axes draws no tick labels.
    assert [e.text for e in texts].count("Overview") == 1
    assert not [e for e in texts if e.id.startswith("axes1.") and e.role == "tick_label"]
    # Tick labels the 3-D axes did not draw are not reported as cut by the canvas.
    assert not [d for d in result.defects if d.kind == "clipped_text"]
    # White on the dark bar reads; white on the white axes does not.
    low = [d.message for d in result.defects if d.kind == "low_contrast"]
    assert any("'ghost'" in message for message in low)
    assert not any("'inside'" in message for message in low)
