"""A deck as one PNG, drawn in the sandbox: LibreOffice turns the .pptx into a PDF, pdftoppm each page into a PNG.

The deck is whatever an untrusted program built, so it is drawn as an untrusted job of its own
(``draw_deck_job``, run through vsdpo.render.sandbox with its own, longer deadline): no network, no
privileges, no file of the host writable, and a fresh LibreOffice profile on the job's private tmpfs.
Before LibreOffice reads the deck, every link to something outside it (pictures, media, OLE objects
or hyperlinks by URL or file path) is stripped. Slides are stacked top to bottom, each scaled to the
same pixel size; the caller checks the PNG it gets back against the size it asked for. When the
conversion fails, the picture is None: the elements and defects of the render stand without it.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from vsdpo.render import replies
from vsdpo.render.sandbox import SandboxLimits, run_in_sandbox

PICTURE_ENTRY = "vsdpo.render.slides.picture:draw_deck_job"
SOFFICE = os.environ.get("VSDPO_SOFFICE") or shutil.which("soffice") or "/usr/bin/soffice"
PDFTOPPM = shutil.which("pdftoppm") or "/usr/bin/pdftoppm"
# LibreOffice starts slowly on a busy machine, with a fresh profile each time: its own, longer deadline.
CONVERT_TIMEOUT_S = 90.0
# LibreOffice maps more address space than a chart and runs a few dozen threads.
PICTURE_LIMITS = SandboxLimits(memory_bytes=8 << 30, processes=256, result_bytes=64 << 20)
RELATIONSHIPS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def draw_deck(
    pptx: bytes, slide_size: tuple[int, int], count: int, timeout_s: float = CONVERT_TIMEOUT_S
) -> bytes | None:
    """PNG of the first ``count`` slides stacked top to bottom, each ``slide_size`` pixels; None on failure."""
    outcome = run_in_sandbox(
        PICTURE_ENTRY,
        {"pptx": pptx, "slide_size": list(slide_size), "count": count},
        timeout_s=timeout_s,
        limits=PICTURE_LIMITS,
    )
    if not outcome.ok or not isinstance(outcome.value, dict):
        return None
    png = outcome.value.get("png")
    if png is None:
        return None
    try:
        width, height = replies.png_size(png)
    except replies.InvalidReply:
        return None
    pages, rest = divmod(height, slide_size[1])
    if width != slide_size[0] or rest or not 1 <= pages <= count:
        return None
    return png


def strip_external_links(pptx: bytes) -> bytes:
    """The deck without relationships that point outside it (external mode, or a target with a scheme)."""
    source = zipfile.ZipFile(io.BytesIO(pptx))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as deck:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith(".rels"):
                data = _internal_only(data)
            deck.writestr(item, data)
    return out.getvalue()


def _internal_only(rels: bytes) -> bytes:
    root = ElementTree.fromstring(rels)
    for relationship in list(root):
        if relationship.tag != RELATIONSHIPS:
            continue
        target = relationship.get("Target", "")
        if relationship.get("TargetMode") == "External" or _SCHEME.match(target) or target.startswith("\\"):
            root.remove(relationship)
    ElementTree.register_namespace("", RELATIONSHIPS[1:].partition("}")[0])
    return ElementTree.tostring(root, xml_declaration=True, encoding="UTF-8")


def draw_deck_job(payload: dict[str, Any]) -> dict[str, Any]:
    """In the sandbox: the deck's picture, {"png": bytes}, or {"png": None} when it cannot be drawn."""
    from PIL import Image

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
    rasterise = [
        PDFTOPPM,
        "-png",
        "-f",
        "1",
        "-l",
        str(payload["count"]),
        "-scale-to-x",
        str(slide_w),
        "-scale-to-y",
        str(slide_h),
        str(deck.with_suffix(".pdf")),
        str(here / "slide"),
    ]
    subprocess.run(rasterise, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pages = sorted(here.glob("slide-*.png"), key=lambda p: int(p.stem.rpartition("-")[2]))
    if not pages:
        return {"png": None}
    sheet = Image.new("RGB", (slide_w, slide_h * len(pages)), "white")
    for i, page in enumerate(pages):
        with Image.open(page) as picture:
            sheet.paste(picture.convert("RGB"), (0, i * slide_h))
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return {"png": out.getvalue()}
