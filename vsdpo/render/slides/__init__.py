"""Slides: python-pptx programs, run in the sandbox, drawn by LibreOffice.

- ``renderer``: ``render_slides``, run on the caller's side, and the slide defect checks;
- ``picture``: the deck as one PNG, through LibreOffice and ``pdftoppm`` (trusted converters);
- ``converter``: LibreOffice kept running between decks, in a sandbox of its own, one per thread;
- ``child``: the job the sandbox runs (execute the program, describe the deck it built);
- ``trace``: inside the sandbox, records which user lines made or styled each shape;
- ``text``: text frames laid out with real font metrics, and a deck's theme colours.
"""

from __future__ import annotations

from vsdpo.render.slides.picture import draw_deck
from vsdpo.render.slides.renderer import find_slide_defects, render_slides

__all__ = ["draw_deck", "find_slide_defects", "render_slides"]
