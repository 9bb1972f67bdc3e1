"""The deadline of a render, for the work the caller does on what an untrusted program produced.

A renderer runs its caller-side work (tagging a page's source, the defect checks) inside
``deadline(at)``; the loops of that work call ``check_deadline()``, which raises DeadlineExceeded once
``time.monotonic()`` has passed ``at``. The deadline lives in a context variable, so renders on
several threads each keep their own.
"""

from __future__ import annotations

import contextlib
import contextvars
import time

# The checks of a render whose program used up its time still get this long.
MIN_CHECK_S = 2.0
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("render_deadline", default=None)


class DeadlineExceeded(TimeoutError):
    """The caller's work on a render ran past that render's deadline."""


@contextlib.contextmanager
def deadline(at: float | None):
    """Run the block until ``time.monotonic()`` reaches ``at`` (None: no deadline)."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def checks_deadline(started: float, timeout_s: float) -> float:
    """When the checks of a render begun at ``started`` (monotonic) must end: the render's own
    deadline, but never less than ``MIN_CHECK_S`` (or the whole timeout, if shorter) from now."""
    return max(started + timeout_s, time.monotonic() + min(timeout_s, MIN_CHECK_S))


def remaining() -> float | None:
    """Seconds left before the current deadline (None: no deadline)."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def check_deadline() -> None:
    """Raise DeadlineExceeded once the current deadline has passed."""
    at = _deadline.get()
    if at is not None and time.monotonic() > at:
        raise DeadlineExceeded("the render's caller-side work ran past its deadline")
