"""Where the user's program stands in a stack or a traceback.

Renderers compile the untrusted program under a filename of their own ("<chart>", "<slides>"), so
its frames are told apart from the libraries' frames by that name alone.
"""

from __future__ import annotations

import sys
import traceback


def innermost_line(filename: str, skip: int = 1) -> int | None:
    """Line of the innermost frame of ``filename`` on the caller's stack (``skip`` frames up), if any."""
    frame = sys._getframe(skip + 1)
    while frame is not None:
        if frame.f_code.co_filename == filename:
            return frame.f_lineno
        frame = frame.f_back
    return None


def user_error(error: BaseException, filename: str) -> tuple[str, list[int]]:
    """'Type: message (line N)' and the lines of ``filename`` in the traceback, innermost last."""
    lines: list[int] = []
    if isinstance(error, SyntaxError) and error.filename == filename and error.lineno:
        lines.append(error.lineno)
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename == filename and frame.lineno and frame.lineno not in lines:
            lines.append(frame.lineno)
    message = f"{type(error).__name__}: {error}"
    return (message + f" (line {lines[-1]})" if lines else message), lines
