"""Render generated programs and find their visual defects, each traced to the source lines behind it.

    from vsdpo.render import render
    result = render(code, "chart")
    result.ok, result.image, result.elements, result.defects, result.error_lines

Every kind runs its program in the sandbox (vsdpo.render.sandbox); the renderers of each kind are
imported only when first used, so that importing this package stays light.
"""

from __future__ import annotations

import importlib

from vsdpo.render.types import ARTIFACT_KINDS, DEFECT_KINDS, Defect, Element, RenderResult

__all__ = ["ARTIFACT_KINDS", "DEFECT_KINDS", "Defect", "Element", "RenderResult", "render"]

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
    ``draw`` (slides: False skips the LibreOffice picture).
    """
    if kind not in RENDERERS:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, RENDERERS))}, got {kind!r}")
    if not isinstance(code, str):
        raise TypeError(f"code: expected str, got {type(code).__name__}")
    module_name, function_name = RENDERERS[kind]
    renderer = getattr(importlib.import_module(module_name), function_name)
    return renderer(code, timeout_s=timeout_s, width=width, height=height, **options)
