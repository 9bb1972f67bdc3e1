"""A deck as one PNG, drawn in a sandbox: LibreOffice turns the .pptx into a PDF, pdftoppm rasterises
each page, and the pages are stacked top to bottom, each scaled to the same pixel size.

The deck is whatever an untrusted program built, so it is drawn under the sandbox's layers: by a
LibreOffice kept running in a converter of its own (vsdpo.render.slides.converter, the default), or,
where converters cannot run or ``VSDPO_SLIDE_CONVERTER=job`` asks for it, by an untrusted job of its
own that starts LibreOffice with a fresh profile on the job's private tmpfs (``draw_deck_job``, run
through vsdpo.render.sandbox). Both draw the same pixels. Before LibreOffice reads the deck, every
relationship that could reach outside it is stripped (``strip_external_links``): pictures, media,
OLE objects or hyperlinks by URL, by file path, or by a relative path that climbs out of the
package. The caller checks the PNG it gets back against the size it asked for.

How long the drawing may take is the render's business: ``render_slides`` gives it what is left of
the render's own timeout, so a deck heavy enough to keep LibreOffice busy past it ends the render as
a timeout of the program (``Drawing.error_kind == "timeout"``), with LibreOffice killed (its
converter, or its job). Other failures of the conversion leave the picture None: the elements and
defects stand without it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import subprocess
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any, NamedTuple
from xml.etree import ElementTree

from vsdpo.render import replies
from vsdpo.render.sandbox import SandboxLimits, run_in_sandbox
from vsdpo.render.slides import converter

PICTURE_ENTRY = "vsdpo.render.slides.picture:draw_deck_job"
SOFFICE = os.environ.get("VSDPO_SOFFICE") or shutil.which("soffice") or "/usr/bin/soffice"
PDFTOPPM = shutil.which("pdftoppm") or "/usr/bin/pdftoppm"
# The deadline of ``draw_deck`` called on its own; a render passes what is left of its own timeout.
CONVERT_TIMEOUT_S = 90.0
# LibreOffice runs several threads: the CPU-time limit of its job is this many times its wall-clock
# time, so that the wall clock, the render's own deadline, is the limit that ends a slow conversion.
CPU_S_PER_WALL_S = 4
# LibreOffice maps more address space than a chart and runs a few dozen threads.
PICTURE_LIMITS = SandboxLimits(memory_bytes=8 << 30, processes=256, result_bytes=64 << 20)
RELATIONSHIPS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class Drawing(NamedTuple):
    """What drawing a deck gave: the PNG, or None with the sandbox's error kind and message."""

    png: bytes | None
    error_kind: str | None = None
    error: str | None = None


def draw_deck(
    pptx: bytes, slide_size: tuple[int, int], count: int, timeout_s: float = CONVERT_TIMEOUT_S
) -> bytes | None:
    """PNG of the first ``count`` slides stacked top to bottom, each ``slide_size`` pixels; None on failure."""
    return draw_deck_within(pptx, slide_size, count, timeout_s).png


def draw_deck_within(pptx: bytes, slide_size: tuple[int, int], count: int, timeout_s: float) -> Drawing:
    """As ``draw_deck``, and why it failed: ``error_kind="timeout"`` when the conversion was still
    running ``timeout_s`` seconds after it started (LibreOffice is killed then).

    Drawn by a persistent converter (vsdpo.render.slides.converter) unless VSDPO_SLIDE_CONVERTER=job
    or converters cannot run here; else by a sandbox job of its own that starts LibreOffice."""
    reply = converter.draw(pptx, slide_size, count, timeout_s) if converter.mode() == "persistent" else None
    if reply is None:
        reply = _draw_in_job(pptx, slide_size, count, timeout_s)
    if "error" in reply:
        return Drawing(None, reply.get("error_kind"), reply["error"])
    png = reply.get("png")
    if png is None:
        return Drawing(None, None, "the deck has no page to draw")
    try:
        width, height = replies.png_size(png)
    except replies.InvalidReply as error:
        return Drawing(None, "invalid_reply", str(error))
    pages, rest = divmod(height, slide_size[1])
    if width != slide_size[0] or rest or not 1 <= pages <= count:
        return Drawing(None, "invalid_reply", f"a picture of {width}x{height} pixels for {count} slides")
    return Drawing(png)


def _draw_in_job(pptx: bytes, slide_size: tuple[int, int], count: int, timeout_s: float) -> dict[str, Any]:
    """The per-job path: ``{"png": bytes | None}``, or ``{"error": ..., "error_kind": ...}``."""
    limits = dataclasses.replace(PICTURE_LIMITS, cpu_s=int(timeout_s * CPU_S_PER_WALL_S) + 1)
    outcome = run_in_sandbox(
        PICTURE_ENTRY,
        {"pptx": pptx, "slide_size": list(slide_size), "count": count},
        timeout_s=timeout_s,
        limits=limits,
    )
    if not outcome.ok:
        return {"error": outcome.error, "error_kind": outcome.error_kind}
    if not isinstance(outcome.value, dict):
        return {"error": "the drawing job's reply is not a mapping", "error_kind": "invalid_reply"}
    return {"png": outcome.value.get("png")}


def strip_external_links(pptx: bytes) -> bytes:
    """The deck with only the relationships that name a part inside it.

    LibreOffice follows a relationship whose ``TargetMode`` is "External" in any case ("external",
    "EXTERNAL"), and reads a target with no scheme as a path on the host, absolute or relative to
    the deck's folder: a linked picture so drew a host file into the slide. So a relationship is kept
    only when its mode is absent or "Internal" (in any case) and its target, percent-decoded, with
    backslashes read as slashes and resolved against the folder of the part it belongs to, stays
    inside the package and names one of its parts. Everything else goes: a scheme, a network path,
    an absolute host path, ``..`` climbing out of the package, a control character, an element that
    is not a relationship.
    """
    source = zipfile.ZipFile(io.BytesIO(pptx))
    parts = {item.filename.lower() for item in source.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as deck:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.lower().endswith(".rels"):
                data = _internal_only(data, _source_folder(item.filename), parts)
            deck.writestr(item, data)
    return out.getvalue()


def _source_folder(rels_name: str) -> list[str]:
    """The folder of the part a relationships part belongs to: ``ppt/slides/_rels/slide1.xml.rels``
    -> ``["ppt", "slides"]``, ``_rels/.rels`` -> ``[]``."""
    folder = [segment for segment in rels_name.split("/")[:-1] if segment]
    if folder and folder[-1].lower() == "_rels":
        folder.pop()
    return folder


def _resolve(target: str, folder: list[str]) -> str | None:
    """The part name ``target`` points to from ``folder``, or None when it climbs out of the package."""
    segments = [] if target.startswith("/") else list(folder)
    for segment in target.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                return None
            segments.pop()
        else:
            segments.append(segment)
    return "/".join(segments)


def _inside(relationship: ElementTree.Element, folder: list[str], parts: set[str]) -> bool:
    mode = relationship.get("TargetMode")
    if mode is not None and mode.strip().lower() != "internal":
        return False
    target = relationship.get("Target")
    if not target:
        return False
    resolved = []
    for form in (target, urllib.parse.unquote(target)):
        if any(ord(char) < 0x20 or char == "\x7f" for char in form):
            return False
        form = form.strip().replace("\\", "/")
        if _SCHEME.match(form) or form.startswith("//"):
            return False
        name = _resolve(form, folder)
        if name is None:
            return False
        resolved.append(name.lower())
    return any(name in parts for name in resolved)


def _internal_only(rels: bytes, folder: list[str], parts: set[str]) -> bytes:
    root = ElementTree.fromstring(rels)
    for child in list(root):
        if child.tag != RELATIONSHIPS or not _inside(child, folder, parts):
            root.remove(child)
        else:  # a relationship has no content: nothing else rides along in it
            child.text = None
            for inner in list(child):
                child.remove(inner)
    ElementTree.register_namespace("", RELATIONSHIPS[1:].partition("}")[0])
    return ElementTree.tostring(root, xml_declaration=True, encoding="UTF-8")


def draw_deck_job(payload: dict[str, Any]) -> dict[str, Any]:
    """In the sandbox: the deck's picture, {"png": bytes}, or {"png": None} when it cannot be drawn."""
    here = Path.cwd()
    slide_w, slide_h = payload["slide_size"]
    deck = here / "deck.pptx"
    deck.write_bytes(strip_external_links(payload["pptx"]))
    profile = here / "libreoffice-profile"
    convert = [
        SOFFICE,
        f"-env:UserInstallation={profile.as_uri()}",
        "--headless",
        "--norestore",
        "--nologo",
        "--nodefault",
        "--convert-to",
        "pdf",
        "--outdir",
        str(here),
        str(deck),
    ]
    subprocess.run(convert, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {"png": rasterise(deck.with_suffix(".pdf"), (slide_w, slide_h), payload["count"], here)}


def rasterise(pdf: Path, slide_size: tuple[int, int], count: int, folder: Path) -> bytes | None:
    """The first ``count`` pages of ``pdf`` as one PNG, stacked top to bottom, each ``slide_size``
    pixels (pdftoppm writes the pages into ``folder``); None when the PDF has no page.

    pdftoppm writes PPM, not PNG: the same pixels, in 0.17 s for six slides where writing PNG took
    0.58 s; the sheet is encoded once, at zlib level 1."""
    from PIL import Image

    slide_w, slide_h = slide_size
    command = [
        PDFTOPPM,
        "-f",
        "1",
        "-l",
        str(count),
        "-scale-to-x",
        str(slide_w),
        "-scale-to-y",
        str(slide_h),
        str(pdf),
        str(folder / "slide"),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pages = sorted(folder.glob("slide-*.ppm"), key=lambda p: int(p.stem.rpartition("-")[2]))
    if not pages:
        return None
    sheet = Image.new("RGB", (slide_w, slide_h * len(pages)), "white")
    for i, page in enumerate(pages):
        with Image.open(page) as picture:
            sheet.paste(picture.convert("RGB"), (0, i * slide_h))
    out = io.BytesIO()
    sheet.save(out, format="PNG", compress_level=1)
    return out.getvalue()
