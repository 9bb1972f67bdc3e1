"""Checks on what an untrusted program's side sends back, before the caller uses any of it.

A sandboxed job runs the untrusted program in its own process, so its reply is a claim the program
could have written itself; a page's extraction runs in a renderer process the page drives. Every
renderer passes what it gets through these checks: the schema (each field the caller reads, with
its type), counts (elements, points, lines, slides, rules), sizes (strings; numbers finite and
within range) and pixels (a real PNG whose header matches the size claimed, within
``MAX_IMAGE_PIXELS``). Anything else raises ``InvalidReply``, which a renderer turns into a failed
RenderResult of error kind "invalid_reply".

What these checks cost is bounded by the reply's size: a sandboxed job's reply reaches them only as a
tree (no object shared between two places, no more nodes than its bytes can write;
vsdpo.render.sandbox.channel), a page's extraction is JSON, and every check visits each node a
bounded number of times. Where the caller runs them under a render's deadline
(vsdpo.render.deadline), a reply that cannot be checked in time is an invalid reply too.

What the checks cannot catch: a program can describe its own picture falsely yet consistently
(the program and the code that describes its figure share a process); SECURITY.md says more.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from typing import Any

from vsdpo.render import deadline as clock
from vsdpo.render.types import Element

MAX_ELEMENTS = 4000
MAX_IMAGE_PIXELS = 16_000_000
MAX_IMAGE_SIDE = 1 << 15
MAX_TEXT_CHARS = 10_000
MAX_NAME_CHARS = 300
MAX_ERROR_CHARS = 4000
MAX_LINES_PER_ELEMENT = 2000
MAX_LINE = 10_000_000
MAX_COORDINATE = 1e7
MAX_POINTS = 200_000  # data points over all elements of a chart
MAX_EXTRA_ITEMS = 64
MAX_SLIDES = 8
MAX_RULES = 20_000
_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class InvalidReply(ValueError):
    """A reply that breaks its schema or its bounds."""


def _fail(where: str, expected: str, got: Any) -> InvalidReply:
    shown = repr(got)
    return InvalidReply(f"{where}: expected {expected}, got {shown[:80]}{'...' if len(shown) > 80 else ''}")


def field(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise _fail(where, "a dict", data)
    if key not in data:
        raise InvalidReply(f"{where}: missing {key!r}")
    return data[key]


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "a bool", value)
    return value


def integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(where, f"an integer in [{low}, {high}]", value)
    return value


def number(value: Any, where: str, bound: float = MAX_COORDINATE) -> float:
    """A finite number, clamped to +-``bound`` (a label placed a light year away is still a label).
    An integer of any size is finite (and too large for ``math.isfinite``): it is clamped too."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, "a finite number", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(where, "a finite number", value)
    return float(min(bound, max(-bound, value)))


def in_time(where: str) -> None:
    """InvalidReply once the render's deadline (if the caller set one) has passed."""
    left = clock.remaining()
    if left is not None and left < 0:
        raise InvalidReply(f"{where}: the reply could not be checked within the render's deadline")


def text(value: Any, where: str, limit: int = MAX_TEXT_CHARS, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _fail(where, "a string", value)
    return value[:limit]


def items(value: Any, where: str, limit: int) -> list | tuple:
    if not isinstance(value, list | tuple):
        raise _fail(where, "a list", value)
    if len(value) > limit:
        raise InvalidReply(f"{where}: {len(value)} items, more than {limit}")
    return value


def box(value: Any, where: str) -> tuple[float, float, float, float]:
    values = items(value, where, 4)
    if len(values) != 4:
        raise _fail(where, "four numbers", value)
    return tuple(number(v, where) for v in values)  # type: ignore[return-value]


def colour(value: Any, where: str, strict: bool = True) -> str | None:
    """'#rgb', '#rrggbb' or '#rrggbbaa'; anything else is refused, or None when not ``strict``."""
    if value is None:
        return None
    if not isinstance(value, str) or not _COLOUR.match(value):
        if strict:
            raise _fail(where, "a colour '#rrggbb'", value)
        return None
    return value


def lines(value: Any, where: str) -> list[int]:
    return [integer(line, where, 1, MAX_LINE) for line in items(value, where, MAX_LINES_PER_ELEMENT)]


def failure(reply: Any, where: str) -> tuple[str, list[int]]:
    """A job's report of the program's failure: {"ok": False, "error": str, "error_lines": [int]}."""
    message = text(field(reply, "error", where), f"{where}.error", MAX_ERROR_CHARS, optional=False)
    return message, lines(reply.get("error_lines", []), f"{where}.error_lines")


# ---------------------------------------------------------------------------------------------- pictures


def png_size(blob: Any, where: str = "image") -> tuple[int, int]:
    """Width and height from a PNG's header, within the pixel bounds; nothing is decoded."""
    if not isinstance(blob, bytes) or len(blob) < 33 or not blob.startswith(_PNG_SIGNATURE):
        raise InvalidReply(f"{where}: expected a PNG")
    length, kind = struct.unpack(">I4s", blob[8:16])
    if kind != b"IHDR" or length != 13:
        raise InvalidReply(f"{where}: expected a PNG (no IHDR chunk first)")
    width, height = struct.unpack(">II", blob[16:24])
    if zlib.crc32(blob[12:29]) != struct.unpack(">I", blob[29:33])[0]:
        raise InvalidReply(f"{where}: the PNG's header is corrupt")
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        raise InvalidReply(f"{where}: a {width}x{height} PNG is out of bounds")
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidReply(f"{where}: {width}x{height} pixels, more than {MAX_IMAGE_PIXELS}")
    return width, height


def image(blob: Any, width: Any, height: Any, where: str = "image") -> tuple[bytes, int, int]:
    """The PNG and its size, which must be the size claimed."""
    size = png_size(blob, where)
    claimed = (
        integer(width, f"{where} width", 1, MAX_IMAGE_SIDE),
        integer(height, f"{where} height", 1, MAX_IMAGE_SIDE),
    )
    if size != claimed:
        raise InvalidReply(
            f"{where}: the PNG is {size[0]}x{size[1]}, the reply says {claimed[0]}x{claimed[1]}"
        )
    return blob, size[0], size[1]


def is_blank(blob: bytes) -> bool:
    """True when the picture has one colour only (decoded; ``png_size`` bounds its pixels first)."""
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(blob)) as picture:
        extrema = picture.convert("RGBA").getextrema()
    return all(low == high for low, high in extrema)


# ---------------------------------------------------------------------------------------------- elements


def _extra(value: Any, where: str, budget: list[int]) -> dict[str, Any]:
    """Element extras: font size, weight, data points and outline corners (both counted against
    MAX_POINTS), and small plain values."""
    if not isinstance(value, dict):
        raise _fail(where, "a dict", value)
    if len(value) > MAX_EXTRA_ITEMS:
        raise InvalidReply(f"{where}: {len(value)} entries, more than {MAX_EXTRA_ITEMS}")
    extra: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{where}.{key}"
        if not isinstance(key, str):
            raise _fail(where, "string keys", key)
        if key in ("points", "outline"):
            points = items(item, name, budget[0])
            budget[0] -= len(points)
            extra[key] = [_point(p, name) for p in points]
        elif key == "font_px":
            extra[key] = None if item is None else number(item, name, 10_000)
        elif key == "bold":
            extra[key] = boolean(item, name)
        else:
            extra[key] = _plain(item, name, depth=2)
    return extra


def _point(value: Any, where: str) -> tuple[float, float]:
    pair = items(value, where, 2)
    if len(pair) != 2:
        raise _fail(where, "an (x, y) pair", value)
    return number(pair[0], where), number(pair[1], where)


def _plain(value: Any, where: str, depth: int) -> Any:
    """A small plain value: None, bool, a finite number, a short string, or a short list of them."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return number(value, where, 1e15)
    if isinstance(value, str):
        return value[:MAX_NAME_CHARS]
    if isinstance(value, list | tuple) and depth > 0:
        return [_plain(v, where, depth - 1) for v in items(value, where, 64)]
    raise _fail(where, "a small plain value", value)


def elements(value: Any, where: str = "elements", roles: frozenset[str] | None = None) -> list[Element]:
    """Element dicts (as vsdpo.render.types.Element) with unique ids and a parent chain without loops.

    ``roles``: the roles the job's own code gives its elements, where the caller knows them. An
    element of any other role was written by something else (the program, forging the reply), and
    the reply is refused: an element of a made-up role ("figure") is one no check knows what to do
    with, and only a forger has a reason to send one.
    """
    raw = items(value, where, MAX_ELEMENTS)
    budget = [MAX_POINTS]
    found: list[Element] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if i % 256 == 0:
            in_time(where)
        role = text(field(item, "role", at), f"{at}.role", MAX_NAME_CHARS, optional=False)
        if roles is not None and role not in roles:
            raise _fail(f"{at}.role", f"one of {', '.join(sorted(roles))}", role)
        found.append(
            Element(
                id=text(field(item, "id", at), f"{at}.id", MAX_NAME_CHARS, optional=False),
                role=role,
                bbox=box(field(item, "bbox", at), f"{at}.bbox"),
                text=text(item.get("text"), f"{at}.text"),
                color=colour(item.get("color"), f"{at}.color"),
                background=colour(item.get("background"), f"{at}.background"),
                lines=lines(item.get("lines", []), f"{at}.lines"),
                parent=text(item.get("parent"), f"{at}.parent", MAX_NAME_CHARS),
                extra=_extra(item.get("extra", {}), f"{at}.extra", budget),
            )
        )
    check_tree([e.id for e in found], [e.parent for e in found], where)
    return found


def check_tree(ids: list[str], parents: list[str | None], where: str) -> None:
    """Ids are unique and following parents never loops."""
    index = {}
    for i, element_id in enumerate(ids):
        if element_id in index:
            raise InvalidReply(f"{where}: the id {element_id[:40]!r} appears twice")
        index[element_id] = i
    state = [0] * len(ids)  # 0 unseen, 1 on the current path, 2 done
    for start in range(len(ids)):
        path, node = [], start
        while node is not None and state[node] == 0:
            state[node] = 1
            path.append(node)
            parent = parents[node]
            node = index.get(parent) if parent is not None else None
        if node is not None and state[node] == 1:
            raise InvalidReply(f"{where}: the parents of {ids[node][:40]!r} loop back to it")
        for visited in path:
            state[visited] = 2
