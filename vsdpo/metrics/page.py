"""The page layout the web metrics score: text blocks and content boxes of an HTML page in Chromium.

Design2Code's blocks are the text nodes of a page with their boxes and text colours; AeSlides' rewards
look at the boxes of the visible content. Both come from one load of the page in the shared headless
Chromium of :mod:`vsdpo.render.web.browser` (one browser per process, a fresh context per page), with
every request other than ``data:``/``blob:`` and files beside the page aborted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from vsdpo.render.web import browser

PAGE_WIDTH = 1280

# Text nodes -> blocks (text, box, colour); visible replaced or painted elements -> content boxes.
# Every box carries the DOM path of its element so that nesting is never taken for a collision.
_EXTRACT_JS = r"""
() => {
  const doc = document.documentElement;
  const body = document.body;
  const width = Math.max(doc.scrollWidth, body ? body.scrollWidth : 0);
  const height = Math.max(doc.scrollHeight, body ? body.scrollHeight : 0);
  const ids = new Map();
  const idOf = (el) => { if (!ids.has(el)) ids.set(el, ids.size); return ids.get(el); };
  const pathOf = (el) => { const p = []; for (let e = el; e && e.nodeType === 1; e = e.parentElement) p.push(idOf(e)); return p; };
  const rgb = (text) => { const m = /rgba?\(([^)]+)\)/.exec(text || ""); if (!m) return null;
    const v = m[1].split(/[ ,\/]+/).filter((s) => s.length).map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
  const visible = (el) => { const cs = getComputedStyle(el);
    return cs.visibility !== "hidden" && cs.display !== "none" && Number(cs.opacity) > 0; };
  const unionOf = (rects) => { let b = null;
    for (const r of rects) { if (r.width <= 0 || r.height <= 0) continue;
      const x0 = r.left + scrollX, y0 = r.top + scrollY, x1 = r.right + scrollX, y1 = r.bottom + scrollY;
      b = b ? [Math.min(b[0], x0), Math.min(b[1], y0), Math.max(b[2], x1), Math.max(b[3], y1)] : [x0, y0, x1, y1]; }
    return b; };
  const texts = [];
  if (body) {
    const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent.replace(/\s+/g, " ").trim();
      const parent = node.parentElement;
      if (!text || !parent || ["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE"].includes(parent.tagName)) continue;
      if (!visible(parent)) continue;
      range.selectNodeContents(node);
      const box = unionOf(range.getClientRects());
      if (!box) continue;
      const color = rgb(getComputedStyle(parent).color) || [0, 0, 0, 1];
      texts.push({ text, box, color: color.slice(0, 3), element: idOf(parent), path: pathOf(parent) });
    }
  }
  const boxes = [];
  const REPLACED = new Set(["IMG", "SVG", "CANVAS", "VIDEO", "PICTURE", "IFRAME", "OBJECT", "EMBED", "INPUT", "BUTTON", "SELECT", "TEXTAREA"]);
  for (const el of (body ? body.querySelectorAll("*") : [])) {
    if (["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "BR"].includes(el.tagName) || !visible(el)) continue;
    const box = unionOf([el.getBoundingClientRect()]);
    if (!box) continue;
    const cs = getComputedStyle(el);
    const bg = rgb(cs.backgroundColor);
    const painted = (bg && bg[3] > 0.05) || cs.backgroundImage !== "none" ||
      ["borderTopWidth", "borderLeftWidth"].some((k) => parseFloat(cs[k]) > 0 && cs.borderTopStyle !== "none");
    const replaced = REPLACED.has(el.tagName.toUpperCase());
    if (replaced || painted) boxes.push({ box, kind: replaced ? "media" : "shape", element: idOf(el), path: pathOf(el) });
  }
  return { width, height, texts, boxes };
}
"""


@dataclass
class TextBlock:
    text: str
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1), page pixels
    color: tuple[int, int, int]
    element: int  # id of the element holding the text
    path: list[int] = field(default_factory=list)  # ids of that element and its ancestors


@dataclass
class ContentBox:
    box: tuple[float, float, float, float]
    kind: str  # "media" (replaced elements) or "shape" (painted background or border)
    element: int
    path: list[int] = field(default_factory=list)


@dataclass
class PageLayout:
    width: float
    height: float
    texts: list[TextBlock]
    boxes: list[ContentBox]
    image: bytes | None = None  # PNG of the page, when asked for


def render_page(
    html: str,
    *,
    width: int = PAGE_WIDTH,
    height: int | None = None,
    timeout_s: float = 20,
    screenshot: bool = False,
    assets_dir: str | os.PathLike | None = None,
) -> PageLayout:
    """Load ``html`` in Chromium, ``width`` wide (a fixed ``width`` x ``height`` canvas when given).

    Raises ``TimeoutError`` when the page does not finish within ``timeout_s``.
    """
    if not isinstance(html, str):
        raise TypeError(f"html: expected str, got {type(html).__name__}")

    async def extract(page: Any) -> dict[str, Any]:
        data = await page.evaluate(_EXTRACT_JS)
        if screenshot:
            data["image"] = await browser.page_screenshot(page, width, height, data["height"])
        return data

    try:
        data = browser.run_local_page(
            html, extract, width=width, height=height, timeout_s=timeout_s, assets_dir=assets_dir
        )
    except TimeoutError:
        raise TimeoutError(f"html: the page did not finish rendering within {timeout_s:g}s") from None
    as_box = lambda values: tuple(float(v) for v in values)
    texts = [
        TextBlock(
            t["text"], as_box(t["box"]), tuple(int(round(c)) for c in t["color"]), t["element"], t["path"]
        )
        for t in data["texts"]
    ]
    boxes = [ContentBox(as_box(b["box"]), b["kind"], b["element"], b["path"]) for b in data["boxes"]]
    page_width = float(width if height else max(width, data["width"]))
    page_height = float(height or min(max(data["height"], 1), browser.MAX_PAGE_HEIGHT))
    return PageLayout(page_width, page_height, texts, boxes, data.get("image"))
