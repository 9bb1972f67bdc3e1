"""Sandbox workers outlive the threads that first asked for them.

A worker asks to die with its parent (PR_SET_PDEATHSIG), and for Linux the parent is the *thread*
that started it: workers started from a caller's short-lived thread pool used to die with it, and
every later job of theirs failed ("the sandbox worker died"), which a metric reads as a score of 0.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from vsdpo.metrics import chartmimic
from vsdpo.tasks import builtin_chart_tasks


def test_jobs_from_short_lived_threads_keep_their_workers():
    program = builtin_chart_tasks(1, seed=2)[0].reference
    for _ in range(3):  # each round's threads end before the next round starts
        with ThreadPoolExecutor(2) as threads:
            scores = list(threads.map(lambda _: chartmimic.score(program, program), range(2)))
        assert [s.error for s in scores] == [None, None]
        assert all(s.mean > 0.5 for s in scores)
