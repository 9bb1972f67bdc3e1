"""Slides renderer: python-pptx programs, run in the sandbox, drawn by LibreOffice, checked for defects.

The program runs in a sandboxed child (vsdpo.render.slides_child), which hands back the deck it built
as .pptx bytes and the elements of its slides from the object model: shape boxes, text laid out with
real font metrics, colours, and the user lines that made or styled each shape. Outside the child,
LibreOffice (trusted, converting a file) turns the deck into a PDF and ``pdftoppm`` into one PNG per
slide; slides are stacked top to bottom in the image, and every slide is its own canvas for the checks.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from vsdpo.render import defects as checks
from vsdpo.render.sandbox import SandboxLimits, run_in_sandbox
from vsdpo.render.types import Defect, Element, RenderResult

SLIDES_ENTRY = "vsdpo.render.slides_child:render_slides_job"
SOFFICE = os.environ.get("VSDPO_SOFFICE") or shutil.which("soffice") or "/usr/bin/soffice"
PDFTOPPM = shutil.which("pdftoppm") or "/usr/bin/pdftoppm"
# LibreOffice starts slowly on a busy machine; its conversion gets its own, longer deadline.
CONVERT_TIMEOUT_S = 90.0
# Which recorded calls a defect of each kind is blamed on (slides_trace categories).
DEFECT_CATEGORIES: dict[str, frozenset[str]] = {
    "overlap": frozenset({"create", "geometry"}),
    "clipped_text": frozenset({"create", "geometry", "text", "font"}),
    "overflow": frozenset({"create", "geometry", "text", "font"}),
    "misalignment": frozenset({"create", "geometry"}),
    "low_contrast": frozenset({"create", "font", "color", "fill"}),
}
VISUAL_ROLES = frozenset({"shape", "image", "table", "chart"})


def render_slides(
    code: str,
    *,
    timeout_s: float = 20,
    width: int | None = None,
    height: int | None = None,
    limits: SandboxLimits | None = None,
    draw: bool = True,
) -> RenderResult:
    """Run python-pptx ``code``; return its slides' picture, elements with source lines, and defects.

    ``width``/``height`` set the pixel size of one slide (default 96 pixels per inch). ``draw=False``
    skips LibreOffice: elements and defects come from the object model alone, and ``image`` is None.
    """
    started = time.perf_counter()
    outcome = run_in_sandbox(
        SLIDES_ENTRY, {"code": code, "width": width, "height": height}, timeout_s=timeout_s, limits=limits
    )
    if not outcome.ok:
        return _finish(RenderResult.failure("slides", f"{outcome.error_kind}: {outcome.error}"), started)
    job = outcome.value
    if not job["ok"]:
        return _finish(RenderResult.failure("slides", job["error"], job["error_lines"]), started)
    slide_w, slide_h = job["slide_size"]
    count = job["slide_count"]
    elements = [_element(item, slide_h) for item in job["elements"]]
    found = []
    for number in range(1, count + 1):
        on_slide = [e for e in elements if e.extra["slide"] == number]
        found += find_slide_defects(on_slide, (0.0, (number - 1) * slide_h, slide_w, number * slide_h))
    result = RenderResult(
        kind="slides",
        ok=True,
        image=draw_deck(job["pptx"], (slide_w, slide_h), count) if draw else None,
        width=slide_w,
        height=slide_h * count,
        elements=elements,
        defects=found,
    )
    return _finish(result, started)


def _finish(result: RenderResult, started: float) -> RenderResult:
    result.elapsed_s = time.perf_counter() - started
    return result


def _element(item: dict[str, Any], slide_h: float) -> Element:
    """An element of slide n, moved down to where that slide sits in the stacked image."""
    dy = (item["slide"] - 1) * slide_h
    shift = lambda box: (box[0], box[1] + dy, box[2], box[3] + dy)
    provenance = {int(line): set(categories) for line, categories in item["provenance"].items()}
    extra = {"slide": item["slide"], "provenance": provenance}
    for key in ("font_px", "bold", "shrinks", "name"):
        if key in item:
            extra[key] = item[key]
    if "frame" in item:
        extra["frame"] = shift(item["frame"])
    return Element(
        id=item["id"],
        role=item["role"],
        bbox=shift(item["bbox"]),
        text=item.get("text"),
        color=item.get("color"),
        background=item.get("background"),
        lines=sorted(provenance),
        parent=item.get("parent") or f"slide{item['slide']}",
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------- defects


def find_slide_defects(elements: list[Element], canvas: tuple[float, float, float, float]) -> list[Defect]:
    """The five defect kinds on one slide, each blamed on the calls of its category."""
    by_id = {element.id: element for element in elements}
    # Text in a frame that neither grows nor shrinks to fit must stay inside the frame.
    frames = {e.id: e.extra["frame"] for e in elements if e.role == "text" and not e.extra.get("shrinks")}
    found = [
        *checks.find_overlaps(elements, should_not_overlap=_should_not_overlap),
        *checks.find_clipped_text(elements, canvas),
        *checks.find_overflow(elements, canvas, containers=frames),
        *checks.find_misalignment([e for e in elements if e.role != "text"]),
        *checks.find_low_contrast(elements),
    ]
    return [_narrow_lines(defect, by_id) for defect in found]


def _should_not_overlap(a: Element, b: Element) -> bool:
    if a.role == "text" and b.role == "text":
        return True
    if a.role not in VISUAL_ROLES or b.role not in VISUAL_ROLES:
        return False
    # One shape wholly on another is layering by design (a card on a panel); a partial cover is not.
    shared = checks.intersection(a.bbox, b.bbox)
    return shared is not None and shared not in (a.bbox, b.bbox)


def _narrow_lines(defect: Defect, by_id: dict[str, Element]) -> Defect:
    categories = DEFECT_CATEGORIES[defect.kind]
    lines = {
        line
        for element_id in defect.elements
        for line, made in by_id[element_id].extra["provenance"].items()
        if made & categories
    }
    defect.lines = sorted(lines) or defect.lines
    return defect


# ---------------------------------------------------------------------------------------------- picture

_profiles: dict[int, Path] = {}
_profiles_lock = threading.Lock()


def _profile_dir() -> Path:
    """A LibreOffice user profile private to this thread: parallel conversions must not share one."""
    key = threading.get_ident()
    with _profiles_lock:
        if key not in _profiles or _profiles[key].parent.name != f"vsdpo-lo-{os.getpid()}":
            _profiles[key] = Path(tempfile.gettempdir()) / f"vsdpo-lo-{os.getpid()}" / f"profile-{key}"
        return _profiles[key]


@atexit.register
def _remove_profiles() -> None:
    shutil.rmtree(Path(tempfile.gettempdir()) / f"vsdpo-lo-{os.getpid()}", ignore_errors=True)


def _run(command: list[str], timeout_s: float) -> None:
    """Run a converter in its own process group; on timeout kill the whole group."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} exited {process.returncode}: {stderr.decode()[-500:]}")


def draw_deck(
    pptx: bytes, slide_size: tuple[int, int], count: int, timeout_s: float = CONVERT_TIMEOUT_S
) -> bytes | None:
    """PNG of the first ``count`` slides stacked top to bottom, each ``slide_size`` pixels; None on failure."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="vsdpo-slides-") as tmp:
        deck = Path(tmp) / "deck.pptx"
        deck.write_bytes(pptx)
        try:
            _run(
                [
                    SOFFICE,
                    f"-env:UserInstallation={_profile_dir().as_uri()}",
                    "--headless",
                    "--norestore",
                    "--nologo",
                    "--nodefault",
                    "--convert-to",
                    "pdf",
                    "--outdir",
                    tmp,
                    str(deck),
                ],
                timeout_s,
            )
            _run(
                [
                    PDFTOPPM,
                    "-png",
                    "-f",
                    "1",
                    "-l",
                    str(count),
                    "-scale-to-x",
                    str(slide_size[0]),
                    "-scale-to-y",
                    str(slide_size[1]),
                    str(deck.with_suffix(".pdf")),
                    str(Path(tmp) / "slide"),
                ],
                timeout_s,
            )
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            return None  # the elements and defects stand without a picture
        pages = sorted(Path(tmp).glob("slide-*.png"), key=lambda p: int(p.stem.rpartition("-")[2]))
        if not pages:
            return None
        sheet = Image.new("RGB", (slide_size[0], slide_size[1] * len(pages)), "white")
        for i, page in enumerate(pages):
            with Image.open(page) as picture:
                sheet.paste(picture.convert("RGB"), (0, i * slide_size[1]))
        out = io.BytesIO()
        sheet.save(out, format="PNG")
        return out.getvalue()
