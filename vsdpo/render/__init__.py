"""Render generated programs and find their visual defects, each traced to the source lines behind it.

    from vsdpo.render import render
    result = render(code, "chart")
    result.ok, result.image, result.elements, result.defects, result.error_lines

Every kind runs its program in the sandbox (vsdpo.render.sandbox); the renderers of each kind are
imported only when first used, so that importing this package stays light.

One package per kind, ``chart``, ``web`` and ``slides``, each with the renderer the caller runs and,
for chart and slides, the job its sandboxed child runs; ``sandbox`` runs untrusted programs. Shared by
all: ``types`` (the one result type), ``defects`` (the generic checks), ``replies`` (the checks on
what an untrusted program's side sends back), ``deadline`` (the caller's work under a render's
deadline), ``user_code`` (the program's lines in a stack),
``annotate`` (defect boxes on a picture) and ``cli`` (`vsdpo render`, `vsdpo lint`).

Nothing a program does raises out of ``render``: its failures, the sandbox's limits, replies that
break their schema and faults of the renderer itself all come back as a failed RenderResult whose
``error_kind`` says which (SECURITY.md has the threat model).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import os
import time

from vsdpo.render.types import ARTIFACT_KINDS, DEFECT_KINDS, Defect, Element, RenderResult

__all__ = ["ARTIFACT_KINDS", "DEFECT_KINDS", "Defect", "Element", "RenderResult", "render", "render_retrying"]

# Programs and pages longer than this are refused before anything runs (the source tagging and
# tracing of a page or program take time in the caller that grows with its length).
MAX_CODE_CHARS = 2_000_000
_log = logging.getLogger(__name__)

# kind -> (module, function(code, *, timeout_s, width, height) -> RenderResult)
RENDERERS: dict[str, tuple[str, str]] = {
    "chart": ("vsdpo.render.chart", "render_chart"),
    "web": ("vsdpo.render.web", "render_web"),
    "slides": ("vsdpo.render.slides", "render_slides"),
}


def render(
    code: str,
    kind: str,
    *,
    timeout_s: float = 20,
    width: int | None = None,
    height: int | None = None,
    **options,
) -> RenderResult:
    """Run ``code`` of artifact ``kind`` ("chart", "web" or "slides") and inspect its picture.

    ``options`` go to the kind's renderer: ``assets_dir`` (web: files the page may load),
    ``draw`` (slides: False skips the LibreOffice picture). The caller's own mistakes (an unknown
    kind, code that is not a string, a timeout or size that is not a positive finite number) raise
    ValueError or TypeError; everything else comes back in the result.
    """
    if kind not in RENDERERS:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, RENDERERS))}, got {kind!r}")
    if not isinstance(code, str):
        raise TypeError(f"code: expected str, got {type(code).__name__}")
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ValueError(f"timeout_s: expected a finite number of seconds > 0, got {timeout_s!r}")
    for name, size in (("width", width), ("height", height)):
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= 1 << 15
        ):
            raise ValueError(f"{name}: expected a pixel size in [1, 32768], got {size!r}")
    started = time.perf_counter()
    if len(code) > MAX_CODE_CHARS:
        result = RenderResult.failure(
            kind,
            f"too_large: the {kind} source has {len(code)} characters, more than {MAX_CODE_CHARS}",
            error_kind="too_large",
        )
        return result
    module_name, function_name = RENDERERS[kind]
    renderer = getattr(importlib.import_module(module_name), function_name)
    accepted = inspect.signature(renderer).parameters
    for name in options:
        if name not in accepted:
            raise TypeError(f"render: the {kind} renderer takes no option {name!r}")
    assets_dir = options.get("assets_dir")
    if assets_dir is not None and not os.path.isdir(assets_dir):
        raise NotADirectoryError(f"assets_dir: expected a directory, got {str(assets_dir)!r}")
    try:
        return renderer(code, timeout_s=timeout_s, width=width, height=height, **options)
    except Exception as error:  # noqa: BLE001 - a fault of the renderer must not end the caller's run
        return _internal(kind, error, started)


def render_retrying(
    code: str, kind: str, *, timeout_s: float = 20, retries: int = 1, **options
) -> RenderResult:
    """``render``, run again (up to ``retries`` times) while the result is a fault of the system, not
    of the program (``RenderResult.fault``): a lost worker or a renderer fault says nothing of the
    program, and a fresh worker usually renders it. What comes back may still be a system fault; the
    trainers then leave the rollout out. Both trainers render through this one policy."""
    result = render(code, kind, timeout_s=timeout_s, **options)
    for _ in range(retries):
        if result.fault != "system":
            break
        _log.warning("%s render: a fault of the system (%s); rendering once more", kind, result.error_kind)
        result = render(code, kind, timeout_s=timeout_s, **options)
    return result


def _internal(kind: str, error: Exception, started: float) -> RenderResult:
    _log.warning("%s renderer failed", kind, exc_info=error)
    result = RenderResult.failure(kind, f"internal: {type(error).__name__}: {error}", error_kind="internal")
    result.elapsed_s = time.perf_counter() - started
    return result
