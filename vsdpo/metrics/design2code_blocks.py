"""Design2Code's text blocks of a web page, found as the benchmark finds them: by recolouring the page.

The definition is that of Design2Code's code (``Design2Code/metrics/ocr_free_utils.py``,
``get_blocks_ocr_free`` and the functions it calls; ``Design2Code/metrics/visual_score.py``,
``pre_process`` and ``merge_blocks_by_bbox``; ``Design2Code/data_utils/dedup_post_gen.py``,
``check_repetitive_content``):

1. **Generated pages only, first**: a page whose text (tags removed) repeats a 100-character chunk
   (``SequenceMatcher`` ratio >= 0.8) five times is cut where the repetition starts; a page without an
   ``<html>`` tag is wrapped in ``<html><body><p>...</p></body></html>``; an element whose markup
   occurs more than 50 times loses its later copies; named character references in its text are
   read as BeautifulSoup's ``html.parser`` reads them (the benchmark re-serialises the page with it:
   an unknown ``&name;`` loses its semicolon, see :func:`beautifulsoup_entities`).
2. The page is shot as it is (full page, 1280 px wide). Then every element's background is made
   transparent and every element of the tag list (``p``, ``h1``-``h6``, ``div``, ``span``, ``a``, ``b``,
   ``li``, ``table``, ``td``, ``th``, ``button``, ``footer``, ``header``, ``figcaption``) gets a colour of
   its own (``color`` and ``opacity: 1``, ``!important``, in its ``style`` attribute), in document
   order, from a pool of 4096 colours; the page is shot again, and once more with every colour
   shifted by 50 per channel. Text pixels are those whose colour moved by 50 (within 8 per channel).
3. Every non-blank text node under ``<body>`` (script and style text included) gets the colour of
   the nearest element whose ``style`` attribute declares a colour (a ``#`` value as written, else
   ``rgb(...)`` or a colour name), ``#000000`` when none does. Its block is the text, stripped and
   lowercased; the tight box around the text pixels within 4 per channel of that colour; and the
   mean colour of those pixels in the unmodified shot (truncated to integers). A node whose colour
   matches no text pixel gives no block.
4. Blocks with identical boxes are merged: texts joined by a space, colours averaged.

So an element of the list makes one block holding its own text (the text of nested non-list
elements included, that of nested list elements not), boxed by its own painted pixels; text
styled with a colour of its own inside a non-list element shows in no shot and is dropped; a page
without a ``<body>`` tag in its source has no blocks. Here the page is loaded once and recoloured in
place rather than rewritten and loaded three times; the document tree is Chromium's, not
BeautifulSoup's (they differ only on malformed markup). Of BeautifulSoup's rewriting only its reading
of entity references is reproduced, and only for generated pages: the benchmark's marked shots of a
reference page go through it too (its unmodified shot does not), which would need a second load.
"""

from __future__ import annotations

import html.entities
import io
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

import numpy as np
from PIL import Image, ImageColor

from vsdpo.render.web import browser

TEXT_TAGS = (
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "div",
    "span",
    "a",
    "b",
    "li",
    "table",
    "td",
    "th",
    "button",
    "footer",
    "header",
    "figcaption",
)
POOL_VALUES = tuple(range(10, 251, 16))
SHIFT = 50  # the second shot's colour offset
SHIFT_TOLERANCE = 8  # a text pixel moved by SHIFT within this, per channel
COLOR_TOLERANCE = 4  # a text pixel lies within this of its element's colour, per channel
MAX_REPEATS = 50  # copies of one element's markup kept in a generated page
CHUNK = 100  # characters per chunk of the repetition check
CHUNK_REPEATS = 5
CHUNK_SIMILARITY = 0.8
DEFAULT_COLOR = "#000000"


@dataclass
class Block:
    text: str
    bbox: tuple[float, float, float, float]  # (x, y, w, h), fractions of the shot's width and height
    color: tuple[float, float, float]


# ------------------------------------------------------------------------------------------ the source


def _position_map(clean: str, original: str) -> list[int]:
    positions, at = [], 0
    for char in clean:
        while original[at] != char:
            at += 1
        positions.append(at)
        at += 1
    return positions


def cut_repetition(html: str) -> str:
    """The page cut where its text starts repeating (Design2Code's ``check_repetitive_content``).

    Positions mix the text without tags and the page itself exactly as the benchmark's code does.
    """
    clean = re.sub("<.*?>", "", html)
    positions = _position_map(clean, html)
    chunks = [clean[i : i + CHUNK] for i in range(0, len(clean), CHUNK)]
    seen: dict[str, list[int]] = {}
    start = len(clean)
    for index, chunk in enumerate(chunks):
        for seen_chunk, indexes in seen.items():
            matcher = SequenceMatcher(None, chunk, seen_chunk)
            # ratio <= quick_ratio <= real_quick_ratio: the cheap bounds skip only true misses.
            if matcher.real_quick_ratio() < CHUNK_SIMILARITY or matcher.quick_ratio() < CHUNK_SIMILARITY:
                continue
            if matcher.ratio() >= CHUNK_SIMILARITY:
                indexes.append(index)
                if len(indexes) >= CHUNK_REPEATS:
                    clean_start = min(start, indexes[0] * CHUNK)
                    page_start = positions[clean_start] if clean_start < len(positions) else len(html)
                    start = min(start, page_start)
                break
        else:
            seen[chunk] = [index]
    return html[:start] if start != len(clean) else html


# Entity names BeautifulSoup's html.parser knows (HTML5's, without the semicolon); those HTML5 lets
# stand without a semicolon (``&copy``) are the ones a browser also decodes without one.
_ENTITY_NAMES = frozenset(name.rstrip(";") for name in html.entities.html5)
_BARE_ENTITIES = frozenset(name for name in html.entities.html5 if not name.endswith(";"))
# Python's HTMLParser: a named reference ends at the first character that is not [-.a-zA-Z0-9]; a
# terminating ";" is consumed with it, any other character is not.
_ENTITY_REF = re.compile(r"&([a-zA-Z][-.a-zA-Z0-9]*)(;?)")
_RAW_TEXT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def _as_beautifulsoup_reads(text: str) -> str:
    """Named references in markup text rewritten so that a browser reads them as BeautifulSoup does."""

    def replace(match: re.Match) -> str:
        name, semicolon = match.group(1), match.group(2)
        if name not in _ENTITY_NAMES:
            return "&amp;" + name  # unknown: the literal "&name", its ";" dropped
        if not semicolon and name not in _BARE_ENTITIES:
            return f"&{name};"  # known without ";" (``&hellip``): decoded all the same
        return match.group(0)

    return _ENTITY_REF.sub(replace, text)


def beautifulsoup_entities(html: str) -> str:
    """``html`` with the named character references of its text read as BeautifulSoup's html.parser reads them.

    The benchmark re-serialises a generated page with BeautifulSoup (``html.parser``) before shooting
    it. For well-formed references nothing changes; the difference a browser shows is in the others:
    an unknown ``&name;`` becomes the literal text ``&name`` (the semicolon is lost, so the line is
    shorter and what follows on it moves), and a known name written without its semicolon is decoded
    even where HTML5 does not decode it (``&hellip`` -> ``…``). Only text between tags changes; tags,
    attribute values, ``<script>`` and ``<style>`` keep theirs.
    """
    pieces, last = [], 0
    raw = [(m.start(), m.end()) for m in _RAW_TEXT.finditer(html)]
    spans = [(m.start(), m.end()) for m in re.finditer(r"<[^>]*>", html)]
    protected = sorted(raw + [span for span in spans if not any(a <= span[0] < b for a, b in raw)])
    for start, end in protected:
        if start < last:
            continue
        pieces.append(_as_beautifulsoup_reads(html[last:start]))
        pieces.append(html[start:end])
        last = end
    pieces.append(_as_beautifulsoup_reads(html[last:]))
    return "".join(pieces)


def prepare_generated(html: str) -> str:
    """Steps the benchmark applies to a generated page's source before shooting it (cut, wrap, entities)."""
    html = cut_repetition(html)
    if not re.search(r"<html[^>]*>", html, re.IGNORECASE):
        html = f"<html><body><p>{html}</p></body></html>"
    return beautifulsoup_entities(html)


# ------------------------------------------------------------------------------------------ the styles


def pool_colors(count: int, offset: int = 0) -> list[str]:
    """The first ``count`` colours handed out (the pool is used from its end), shifted by ``offset``."""
    pool = [
        f"#{(r + offset) % 256:02X}{(g + offset) % 256:02X}{(b + offset) % 256:02X}"
        for r in POOL_VALUES
        for g in POOL_VALUES
        for b in POOL_VALUES
    ]
    if count > len(pool):
        raise ValueError(
            f"page: {count} elements of the tag list, more than the {len(pool)} colours to mark them"
        )
    return pool[::-1][:count]


def update_style(style: str | None, name: str, value: str) -> str:
    """``style`` with every declaration starting with ``name`` replaced by ``name: value !important``."""
    kept = [part for part in (style or "").split(";") if not part.strip().startswith(name) and part.strip()]
    kept.append(f"{name}: {value} !important")
    return "; ".join(kept).strip()


def marked_styles(elements: list[tuple[str, str | None]], offset: int) -> list[str]:
    """The ``style`` attribute of every element (tag, style) once the page is marked with ``offset``."""
    listed = sum(tag in TEXT_TAGS for tag, _ in elements)
    colors = iter(pool_colors(listed, offset))
    styles = []
    for tag, style in elements:
        style = update_style(style, "background-color", "rgba(255, 255, 255, 0.0)")
        if tag in TEXT_TAGS:
            style = update_style(update_style(style, "color", next(colors)), "opacity", "1.0")
        styles.append(style)
    return styles


def declared_color(style: str | None) -> str | None:
    """The text colour a ``style`` attribute declares, as Design2Code reads it (None: inherit)."""
    if style is None:
        return None
    declared = [part for part in style.split(";") if "color" in part and "background-color" not in part]
    if not declared:
        return None
    try:
        color = declared[-1].split(":")[1].strip().replace(" !important", "")
        if color[0] == "#":
            return color
        if color.startswith("rgb"):
            rgb = tuple(map(int, color[4:-1].split(",")))
        else:
            rgb = ImageColor.getrgb(color)
        return "#{:02x}{:02x}{:02x}".format(*rgb)
    except (ValueError, IndexError):
        return None


# ------------------------------------------------------------------------------------------ the pixels


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _channels(hex_color: str) -> np.ndarray | None:
    value = hex_color.lstrip("#")
    try:
        return np.array([int(value[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.int16)
    except ValueError:
        return None


def blocks_from_shots(
    texts: list[tuple[str, str]], original: bytes, marked: bytes, shifted: bytes
) -> list[Block]:
    """Blocks of the (text, colour) items from the three shots (steps 2-3 of the module docstring)."""
    first, second = _rgb(marked), _rgb(shifted)
    if first.shape != second.shape:
        return []
    moved = np.all(np.abs((first + SHIFT) % 256 - second) <= SHIFT_TOLERANCE, axis=2)
    if not moved.any():
        return []
    picture = _rgb(original)
    height, width = first.shape[:2]
    found: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {}
    blocks = []
    for text, color in texts:
        if color not in found:
            found[color] = _locate(color, first, moved, picture)
        located = found[color]
        if located is None:
            continue
        (top, left, bottom, right), mean = located
        box = (left / width, top / height, (right - left + 1) / width, (bottom - top + 1) / height)
        box = tuple(float(value) for value in box)
        blocks.append(Block(text.lower(), box, mean))
    return blocks


def _locate(color: str, marked: np.ndarray, moved: np.ndarray, picture: np.ndarray):
    channels = _channels(color)
    if channels is None:
        return None
    # The benchmark's bounds are unsigned bytes: below 4 the lower bound wraps and nothing matches.
    lower, upper = (channels - COLOR_TOLERANCE) % 256, (channels + COLOR_TOLERANCE) % 256
    inside = np.all((marked >= lower) & (marked <= upper), axis=2) & moved
    rows, columns = np.nonzero(inside)
    if not len(rows):
        return None
    if rows.max() >= picture.shape[0] or columns.max() >= picture.shape[1]:
        return None  # the unmodified shot is smaller: the benchmark finds no blocks on such a page
    mean = picture[rows, columns].mean(axis=0).astype(int)
    extent = (int(rows.min()), int(columns.min()), int(rows.max()), int(columns.max()))
    return extent, tuple(int(v) for v in mean)


def merge_by_box(blocks: list[Block]) -> list[Block]:
    """Blocks with identical boxes merged: texts joined by a space, colours averaged pairwise."""
    merged: dict[tuple[float, ...], Block] = {}
    for block in blocks:
        if block.bbox in merged:
            kept = merged[block.bbox]
            kept.text += " " + block.text
            kept.color = tuple((a + b) / 2 for a, b in zip(kept.color, block.color, strict=True))
        else:
            merged[block.bbox] = Block(block.text, block.bbox, block.color)
    return list(merged.values())


# ------------------------------------------------------------------------------------------ the page

_PREPARE_JS = r"""
(args) => {
  if (args.truncate) {
    const counts = new Map();
    for (const el of Array.from(document.querySelectorAll("*"))) {
      const markup = el.outerHTML;
      const count = (counts.get(markup) || 0) + 1;
      counts.set(markup, count);
      if (count > args.maxRepeats) el.remove();
    }
  }
  const elements = Array.from(document.querySelectorAll("*"));
  window.__vsdpoMarked = elements;
  const index = new Map(elements.map((el, i) => [el, i]));
  const texts = [];
  const walk = (node) => {
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE || child.nodeType === Node.CDATA_SECTION_NODE) {
        texts.push([child.data, index.get(node)]);
      } else if (child.nodeType === Node.ELEMENT_NODE) {
        walk(child);
      }
    }
  };
  if (document.body) walk(document.body);
  return {
    elements: elements.map((el) => [el.localName, el.getAttribute("style"),
      el.parentElement && index.has(el.parentElement) ? index.get(el.parentElement) : -1]),
    texts,
    body: document.body ? index.get(document.body) : -1,
  };
}
"""
_MARK_JS = "(styles) => { window.__vsdpoMarked.forEach((el, i) => el.setAttribute('style', styles[i])); }"


def text_colors(prepared: dict[str, Any], styles: list[str]) -> list[tuple[str, str]]:
    """(stripped text, colour) of every non-blank text node under ``<body>``, in document order."""
    elements = prepared["elements"]
    body = prepared["body"]
    resolved: dict[int, str] = {}

    def color_of(index: int) -> str:
        if index in resolved:
            return resolved[index]
        own = declared_color(styles[index])
        parent = elements[index][2]
        if own is None:
            own = color_of(parent) if index != body and parent >= 0 else DEFAULT_COLOR
        resolved[index] = own
        return own

    items = []
    for text, parent in prepared["texts"]:
        stripped = text.strip()
        if stripped:
            items.append((stripped, color_of(parent)))
    return items


def page_blocks(
    html: str,
    *,
    generated: bool,
    width: int = 1280,
    timeout_s: float = 30,
    assets_dir: str | None = None,
) -> tuple[list[Block], bytes]:
    """Design2Code's blocks of ``html`` (see the module docstring) and the page's unmodified shot."""
    if generated:
        html = prepare_generated(html)
    has_body = re.search(r"<body[\s>/]", html, re.IGNORECASE) is not None

    async def shoot(page: Any) -> dict[str, Any]:
        prepared = await page.evaluate(_PREPARE_JS, {"truncate": generated, "maxRepeats": MAX_REPEATS})
        original = await page.screenshot(full_page=True)
        pairs = [(tag, style) for tag, style, _ in prepared["elements"]]
        try:
            styles = [marked_styles(pairs, offset) for offset in (0, SHIFT)]
        except ValueError:
            return {"prepared": prepared, "original": original, "shots": None, "styles": None}
        shots = []
        for offset_styles in styles:
            await page.evaluate(_MARK_JS, offset_styles)
            shots.append(await page.screenshot(full_page=True, animations="disabled"))
        return {"prepared": prepared, "original": original, "shots": shots, "styles": styles[0]}

    try:
        data = browser.run_local_page(
            html, shoot, width=width, height=None, timeout_s=timeout_s, assets_dir=assets_dir
        )
    except TimeoutError:
        raise TimeoutError(f"html: the page did not finish rendering within {timeout_s:g}s") from None
    if not has_body or data["shots"] is None:
        return [], data["original"]
    texts = text_colors(data["prepared"], data["styles"])
    blocks = blocks_from_shots(texts, data["original"], *data["shots"])
    return merge_by_box(blocks), data["original"]
