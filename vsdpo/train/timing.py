"""Where a training step's time goes: seconds per stage, logged with the step's metrics.

Stages (``STAGES``, in the order they run): ``generate`` (sampling the rollouts), ``render`` (the
sandboxed renders), ``score`` (rewards, the benchmark metrics and differences, advantages),
``teacher`` (the teacher's own pass over the feedback context, and its moving-average update;
with the live teacher, ``algorithm.teacher: live``, its rows share the student's pass and
count under ``update``), ``update`` (the student's pass, the fused loss, backward and the optimiser
step), ``eval`` (a held-out evaluation, on the steps that have one), ``wait`` (waiting for rollouts
made in the background) and ``other`` (the rest: batching, sample renders). A step's record is
written before its checkpoint, whose time is logged apart.

Synchronous (``rollout.max_lag: 0``), the loop runs the stages one after another, so the renderers
wait while the model works and the other way round; ``renderers_idle_s`` (the step less render and
score) and ``model_idle_s`` (render plus score) say how long each side waited. With
``rollout.max_lag: 1`` the next step's rollouts are sampled, rendered and scored on a thread of their
own while this step updates: those seconds are ``background_generate_s``, ``background_render_s``
and ``background_score_s``, outside the step's own stages, and the step waits for them in ``wait``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("generate", "render", "score", "teacher", "update", "eval", "wait", "other")
BACKGROUND = ("generate", "render", "score")  # the stages that run on a thread of their own with max_lag 1


class StepClock:
    """Seconds spent per stage since the clock was made (one clock per training step)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.background: dict[str, float] = {}  # seconds of BACKGROUND stages run on another thread

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Count the time inside the ``with`` block to ``name``; a nested stage's time counts to the
        nested stage only (the teacher's pass inside the update, say)."""
        if name not in self.seconds:
            raise ValueError(f"name: expected one of {STAGES}, got {name!r}")
        started = time.perf_counter()
        nested_before = sum(self.seconds.values())
        try:
            yield
        finally:
            nested = sum(self.seconds.values()) - nested_before
            self.seconds[name] += time.perf_counter() - started - nested

    def metrics(self) -> dict[str, float]:
        """``<stage>_s`` for every stage, ``step_s``, ``background_<stage>_s`` where stages ran on
        another thread, and how long the renderers and the model waited."""
        step = time.perf_counter() - self.started
        seconds = dict(self.seconds)
        seconds["other"] = max(0.0, step - sum(v for k, v in seconds.items() if k != "other"))
        rendering = seconds["render"] + seconds["score"]
        background = {f"background_{name}_s": value for name, value in self.background.items()}
        behind = self.background.get("render", 0.0) + self.background.get("score", 0.0)
        return {
            **{f"{name}_s": value for name, value in seconds.items()},
            **background,
            "step_s": step,
            "renderers_idle_s": max(0.0, step - rendering - behind),
            "model_idle_s": rendering + seconds["wait"],
        }


def null_stage(name: str) -> contextlib.AbstractContextManager[None]:
    """A stage that counts nothing: for callers run without a clock."""
    return contextlib.nullcontext()
