"""The deck's drawing keeps to the render's timeout: a deck heavy enough to keep LibreOffice busy
past it ends the render as a timeout of the program, and LibreOffice is stopped then."""

from __future__ import annotations

import shutil
import time

import pytest

from vsdpo.render import render

# The program takes about 12 s on a quiet two-core machine, and up to twice that under load: the
# timeout leaves it room, so that what runs out is the drawing.
TIMEOUT_S = 25.0
# 60 slides of a 30 x 12 table: python-pptx builds it in about 12 s, LibreOffice lays it out for about
# a minute on a quiet two-core machine.
HEAVY_DECK = """
from pptx import Presentation
from pptx.util import Inches
prs = Presentation()
for s in range(60):
    slide = prs.slides.add_slide(prs.slide_layouts[6])
    table = slide.shapes.add_table(30, 12, Inches(0.2), Inches(0.2), Inches(9.6), Inches(7)).table
    for r in range(30):
        for c in range(12):
            table.cell(r, c).text = f"{s}.{r}.{c}"
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (soffice)")
def test_a_deck_that_draws_past_the_timeout_is_a_timeout():
    # The program alone fits in its time: what runs out is the drawing.
    undrawn = render(HEAVY_DECK, "slides", timeout_s=TIMEOUT_S, draw=False)
    assert undrawn.ok, undrawn.error
    started = time.monotonic()
    result = render(HEAVY_DECK, "slides", timeout_s=TIMEOUT_S)
    took = time.monotonic() - started
    assert not result.ok and result.error_kind == "timeout", (result.error_kind, result.error)
    assert "drawing" in result.error and result.image is None
    # A bound on behaviour, not a speed claim: the conversion did not run to its end (about a minute).
    assert took < 3 * TIMEOUT_S + 10, took
