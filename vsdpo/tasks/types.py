"""The task record every task source produces."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Task:
    """One prompt to train on.

    ``image`` is the target picture shown with the prompt (PNG bytes), ``image_path`` where it came
    from; ``reference`` is the reference program (chart/slides) or page (web), used to render a target
    image when none is given and by similarity rewards.
    """

    id: str
    kind: str  # "chart" | "web" | "slides"
    prompt: str
    reference: str | None = None
    image_path: str | None = None
    image: bytes | None = None
