"""Decks whose relationships reach outside the package: every mode that is not "Internal" (in any
case), every target with a scheme, an absolute host path, or ``..`` climbing out of the package is
removed before LibreOffice reads the deck, and no host file is drawn into a slide."""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import tempfile
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vsdpo
from tests.render.hostile import chart_probe
from vsdpo.render import render
from vsdpo.render.slides.picture import draw_deck, strip_external_links

SLIDE_RELS = "ppt/slides/_rels/slide1.xml.rels"
IMAGE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/image"
HOST = "/work/host/red.png"  # in the unit tests, a path that only has to look like a host file
UP = "../" * 12
# (TargetMode, Target) with the host file's path as {path}, {relative} (no leading slash), {windows}.
VARIANTS = {
    "lowercase mode, absolute path": ("external", "{path}"),
    "uppercase mode, absolute path": ("EXTERNAL", "{path}"),
    "mixed case mode, padded": (" eXtErNaL ", "{path}"),
    "lowercase mode, relative path": ("external", UP + "{relative}"),
    "unknown mode, a part of the deck": ("Linked", "../media/image1.png"),
    "no mode, absolute path": (None, "{path}"),
    "no mode, climbing out": (None, UP + "{relative}"),
    "no mode, /proc/self/root": (None, "/proc/self/root{path}"),
    "no mode, percent-encoded dots": (None, "%2e%2e/" * 12 + "{relative}"),
    "no mode, backslashes": (None, "..\\" * 12 + "{windows}"),
    "internal mode, file scheme": ("Internal", "file://{path}"),
    "internal mode, network path": ("internal", "//server/share/red.png"),
    "no mode, control character": (None, "../media/image1.png\n{path}"),
}


def _links(path: str) -> list[tuple[str | None, str]]:
    names = {"path": path, "relative": path.lstrip("/"), "windows": path.lstrip("/").replace("/", "\\")}
    return [(mode, target.format(**names)) for mode, target in VARIANTS.values()]


def _png(colour: str, size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def _deck(links: list[tuple[str | None, str]], control: bytes | None = None) -> bytes:
    """A deck whose first slide has one blue picture per link, each picture's image replaced by a
    relationship (``TargetMode``, ``Target``) written at the XML level; ``control``, when given, is a
    picture embedded the ordinary way on a second slide."""
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[6])
    for n in range(len(links)):
        x, y = Inches(0.2 + 2.4 * (n % 4)), Inches(0.2 + 1.8 * (n // 4))
        slide.shapes.add_picture(io.BytesIO(_png("blue")), x, y, Inches(2.2), Inches(1.6))
    if control is not None:
        second = prs.slides.add_slide(prs.slide_layouts[6])
        second.shapes.add_picture(io.BytesIO(control), Inches(1), Inches(1), Inches(4), Inches(4))
    saved = io.BytesIO()
    prs.save(saved)
    source = zipfile.ZipFile(io.BytesIO(saved.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as deck:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == SLIDE_RELS:
                added = "".join(
                    f'<Relationship Id="rIdLink{n}" Type="{IMAGE}" Target="{_attribute(target)}"'
                    + ("" if mode is None else f' TargetMode="{mode}"')
                    + "/>"
                    for n, (mode, target) in enumerate(links)
                )
                data = data.replace(b"</Relationships>", added.encode() + b"</Relationships>")
            elif item.filename == "ppt/slides/slide1.xml":
                for n in range(len(links)):  # picture n draws what link n points to
                    data = data.replace(b'r:embed="rId2"', f'r:link="rIdLink{n}"'.encode(), 1)
            deck.writestr(item, data)
    return out.getvalue()


def _attribute(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace("\n", "&#10;")


def _relationships(pptx: bytes) -> list[tuple[str, dict[str, str]]]:
    """(relationships part, attributes) of every relationship in the package."""
    from xml.etree import ElementTree

    package = zipfile.ZipFile(io.BytesIO(pptx))
    found = []
    for name in package.namelist():
        if name.lower().endswith(".rels"):
            for element in ElementTree.fromstring(package.read(name)):
                found.append((name, dict(element.attrib)))
    return found


def _points_inside(rels_name: str, attributes: dict[str, str], parts: set[str]) -> bool:
    """An independent reading of "inside the package": internal mode, a target that, decoded and
    resolved from its part's folder, names a part of the package."""
    if attributes.get("TargetMode", "Internal") != "Internal":
        return False
    target = urllib.parse.unquote(attributes["Target"])
    if ":" in target or "\\" in target or any(ord(c) < 32 for c in target):
        return False
    folder = posixpath.dirname(posixpath.dirname(rels_name))
    resolved = posixpath.normpath(
        target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
    )
    return not resolved.startswith("..") and resolved in parts


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_outside_link_is_removed_and_the_deck_keeps_its_own(variant):
    deck = _deck([dict(zip(VARIANTS, _links(HOST), strict=True))[variant]])
    assert any(a["Id"] == "rIdLink0" for _, a in _relationships(deck))  # the link is there before
    stripped = strip_external_links(deck)
    parts = set(zipfile.ZipFile(io.BytesIO(stripped)).namelist())
    kept = _relationships(stripped)
    assert not [a for _, a in kept if a["Id"] == "rIdLink0"], variant
    outside = [(name, a) for name, a in kept if not _points_inside(name, a, parts)]
    assert outside == []
    slide = {a["Target"] for name, a in kept if name == SLIDE_RELS}
    assert slide == {"../slideLayouts/slideLayout7.xml", "../media/image1.png"}  # its own parts stay
    assert len(kept) == len(_relationships(deck)) - 1  # nothing else was lost


def test_package_absolute_and_relative_targets_inside_stay():
    deck = _deck([(None, "/ppt/media/image1.png"), ("INTERNAL", "../media/./image1.png")])
    kept = {a["Id"] for name, a in _relationships(strip_external_links(deck)) if name == SLIDE_RELS}
    assert {"rIdLink0", "rIdLink1"} <= kept


def _red_pixels(png: bytes, box: tuple[int, int, int, int]) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB").crop(box)).astype(int)
    return int(((pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum())


@pytest.fixture
def host_picture():
    """A red PNG on the host, in a folder a job can read: inside the package that the sandbox shows to
    every job (a test folder, a checkout or /tmp may be hidden from it)."""
    folder = Path(tempfile.mkdtemp(prefix="host-picture-", dir=Path(vsdpo.__file__).parent))
    try:
        os.chmod(folder, 0o755)
        picture = folder / "red.png"
        picture.write_bytes(_png("red", 64))
        os.chmod(picture, 0o644)
        # The attack is live: a job can read the file, so only the stripping keeps it off the slide.
        assert chart_probe(f"found = len(open({str(picture)!r}, 'rb').read())") == str(picture.stat().st_size)
        yield picture
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (soffice)")
def test_no_variant_draws_a_host_picture(host_picture):
    links = _links(str(host_picture))
    png = draw_deck(_deck(links, control=_png("red", 64)), (960, 720), 2, timeout_s=120)
    assert png is not None
    assert _red_pixels(png, (0, 0, 960, 720)) == 0  # slide 1: every link, none drawn
    assert _red_pixels(png, (0, 720, 960, 1440)) > 1000  # slide 2: a red picture in the deck is seen


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (soffice)")
def test_a_program_that_rewrites_its_link_mode_draws_no_host_file(host_picture):
    # The program itself turns "External" into "external" as python-pptx writes the deck.
    program = f"""import io
import pptx.opc.package as package
from pptx import Presentation
from pptx.opc.constants import RELATIONSHIP_TYPE as RT
from pptx.oxml.ns import qn
from pptx.util import Inches
written = package._Relationships.xml.fget
package._Relationships.xml = property(lambda self: written(self).replace(b'TargetMode="External"', b'TargetMode="external"'))
prs = Presentation()
slide = prs.slides.add_slide(prs.slide_layouts[6])
picture = slide.shapes.add_picture(io.BytesIO({_png("blue")!r}), Inches(1), Inches(1), Inches(4), Inches(4))
blip = picture._element.blipFill.find(qn("a:blip"))
del blip.attrib[qn("r:embed")]
blip.set(qn("r:link"), slide.part.relate_to({str(host_picture)!r}, RT.IMAGE, is_external=True))
"""
    result = render(program, "slides", timeout_s=60)
    assert result.ok, result.error
    assert result.image is not None
    assert _red_pixels(result.image, (0, 0, result.width, result.height)) == 0
