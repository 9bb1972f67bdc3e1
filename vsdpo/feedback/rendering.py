"""The render pool both trainers and ``VisualReward`` render through.

Programs render on worker threads, each calling :func:`vsdpo.render.render_retrying`: a render that
failed by a fault of the system (``RenderResult.fault == "system"``) is rendered once more, and what
comes back may still be one, which the trainers then leave out. A pool is kept for its owner's life
(a trainer's run): the sandbox's worker processes end with the thread that started them, so a pool
made per batch would start them again every step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import vsdpo.render
from vsdpo.render import RenderResult
from vsdpo.render.sandbox import pool as sandbox_pool

log = logging.getLogger(__name__)


class RenderPool:
    """``workers`` threads that render programs in the sandbox, each within ``timeout_s``, over at least
    as many sandbox workers (the default pool grows to ``workers``). With
    ``record_chartmimic`` (the trainers' setting where the reward compares charts with a reference),
    a chart's render also records its ChartMimic trace (``RenderResult.record``), so that its reward
    does not run the program a second time (vsdpo.metrics.chartmimic.score)."""

    def __init__(self, workers: int, timeout_s: float, *, record_chartmimic: bool = False):
        if workers < 1:
            raise ValueError(f"RenderPool.workers: expected >= 1, got {workers!r}")
        if not timeout_s > 0:
            raise ValueError(f"RenderPool.timeout_s: expected > 0, got {timeout_s!r}")
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vsdpo-render")
        # As many sandbox workers as threads: with fewer, the threads' jobs wait for each other.
        sandbox_pool.default_pool().grow_to(workers)
        self.timeout_s = timeout_s
        self.record_chartmimic = record_chartmimic

    def submit(self, code: str, kind: str) -> Future:
        """Render ``code`` as ``kind`` (the result: a ``RenderResult``)."""
        return self.executor.submit(self._render, code, kind)

    def _render(self, code: str, kind: str) -> RenderResult:
        # Looked up on the module at each call, so that a test's stand-in for it is the one called.
        options = {"chartmimic": True} if kind == "chart" and self.record_chartmimic else {}
        return vsdpo.render.render_retrying(code, kind, timeout_s=self.timeout_s, **options)

    def render(self, programs: Sequence[str], kinds: Sequence[str]) -> list[RenderResult]:
        """The renders of ``programs``, in order. A renderer that raises (it is not meant to) gives a
        failure of the system (``error_kind="internal"``), so that the caller leaves that program out
        instead of ending its run."""
        if len(kinds) != len(programs):
            raise ValueError(f"kinds: expected {len(programs)} kinds (one per program), got {len(kinds)}")
        futures = [self.submit(code, kind) for code, kind in zip(programs, kinds, strict=True)]
        return [resolved(future, kind) for future, kind in zip(futures, kinds, strict=True)]

    def map(self, function: Callable[[Any], Any], items: Iterable[Any]) -> list:
        """``function`` over ``items`` on the pool's threads (rewards run sandboxed metrics too)."""
        return list(self.executor.map(function, items))

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()


def resolved(future: Future, kind: str) -> RenderResult:
    """The result of a render ``future``; a failure of the system where the renderer raised."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - the run goes on without this program
        log.warning("%s render crashed: %s: %s", kind, type(error).__name__, error)
        return RenderResult.failure(
            kind, f"render crashed: {type(error).__name__}: {error}", error_kind="internal"
        )
