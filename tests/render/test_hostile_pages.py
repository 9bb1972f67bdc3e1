"""Hostile pages and decks: requests and WebRTC to the caller's own servers, page scripts that forge
the element extraction, and decks whose pictures link to a local server or a root-only file."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.render.hostile import LocalServers
from vsdpo.render import render
from vsdpo.render.slides.picture import strip_external_links
from vsdpo.render.web import browser

OVERLAPPING = """<html><head><style>
p {{ position: absolute; top: 20px; left: 20px; margin: 0; font: 24px sans-serif; color: #000; }}
</style></head><body><p>first label here</p><p>second label here</p>{script}</body></html>"""
# Page scripts that would hide every box from an extraction running in the page's own world.
SPOOF = """<script>
const nowhere = () => new DOMRect(-9000, -9000, 0, 0);
Element.prototype.getBoundingClientRect = nowhere;
Element.prototype.getClientRects = () => [];
Range.prototype.getBoundingClientRect = nowhere;
Range.prototype.getClientRects = () => [];
window.getComputedStyle = () => ({ getPropertyValue: () => "", display: "none", visibility: "hidden" });
Element.prototype.checkVisibility = () => false;
</script>"""


@pytest.mark.browser
def test_requests_and_webrtc_reach_no_host():
    with LocalServers() as servers:
        page = f"""<html><body><p>calling home</p>
<img src="http://127.0.0.1:{servers.http_port}/image.png">
<script>
fetch("http://127.0.0.1:{servers.http_port}/fetch").catch(() => null);
try {{ new WebSocket("ws://127.0.0.1:{servers.http_port}/socket"); }} catch (e) {{}}
const peer = new RTCPeerConnection({{iceServers: [{{urls: "stun:127.0.0.1:{servers.udp_port}"}}]}});
peer.createDataChannel("out");
peer.createOffer().then((offer) => peer.setLocalDescription(offer));
</script></body></html>"""
        result = render(page, "web")
        time.sleep(1.0)  # what ICE gathering would still send
        assert result.ok, result.error
        assert servers.hits == [] and servers.datagrams == []


@pytest.mark.browser
def test_page_scripts_cannot_forge_the_extraction():
    honest = render(OVERLAPPING.format(script=""), "web")
    spoofed = render(OVERLAPPING.format(script=SPOOF), "web")
    assert honest.ok and spoofed.ok, (honest.error, spoofed.error)
    assert any(d.kind == "overlap" for d in honest.defects)
    assert sorted(d.kind for d in spoofed.defects) == sorted(d.kind for d in honest.defects)
    assert [e.bbox for e in spoofed.elements] == [e.bbox for e in honest.elements]


@pytest.mark.browser
def test_chromium_runs_unprivileged_sandboxed_and_offline():
    assert render("<p>x</p>", "web").ok
    host = browser.browser_host()
    assert not host.layers["missing"], host.layers
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if f"VSDPO_BROWSER_PAGES={host.pages}".encode() not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
            with open(f"/proc/{pid}/status") as status:
                uid = next(line.split()[1] for line in status if line.startswith("Uid:"))
            found.append((args, int(uid), os.readlink(f"/proc/{pid}/ns/net")))
        except (OSError, StopIteration):
            continue
    browsers = [entry for entry in found if entry[0][0].endswith(b"chromium")]
    assert browsers, "no browser process found"
    for args, uid, network in browsers:
        assert uid != 0 and b"--no-sandbox" not in args
        assert network != os.readlink("/proc/self/ns/net")


@pytest.mark.browser
def test_without_a_browser_layer_pages_are_refused(monkeypatch):
    host = browser.BrowserHost()
    host.layers = {"layers": [], "missing": ["network_namespace"], "notes": {}}
    host.allow_weak = False
    monkeypatch.setattr(browser, "_host", host)
    try:
        result = render("<p>x</p>", "web")
    finally:
        host.close()
    assert not result.ok and result.error_kind == "sandbox" and "network_namespace" in result.error


def _red_pixels(png: bytes) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (soffice)")
def test_linked_pictures_reach_neither_a_server_nor_a_root_only_file(tmp_path):
    # The deck is drawn inside the sandbox: a profile folder planted where LibreOffice once kept the
    # caller's lands on the job's own /tmp, and the caller never looks there.
    planted = Path(f"/tmp/vsdpo-lo-{os.getpid()}")
    secret = tmp_path / "secret.png"
    Image.new("RGB", (64, 64), "red").save(secret)
    os.chmod(secret, 0o600)
    blue = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(blue, format="PNG")
    with LocalServers() as servers:
        program = f"""import io
from pptx import Presentation
from pptx.oxml.ns import qn
from pptx.opc.constants import RELATIONSHIP_TYPE as RT
from pptx.util import Inches
prs = Presentation()
slide = prs.slides.add_slide(prs.slide_layouts[6])
for n, target in enumerate(["http://127.0.0.1:{servers.http_port}/remote.png", "file://{secret}"]):
    picture = slide.shapes.add_picture(io.BytesIO({blue.getvalue()!r}), Inches(1 + 4 * n), Inches(1), Inches(3), Inches(3))
    blip = picture._element.blipFill.find(qn("a:blip"))
    del blip.attrib[qn("r:embed")]
    blip.set(qn("r:link"), slide.part.relate_to(target, RT.IMAGE, is_external=True))
import os
os.makedirs("{planted}/profile", exist_ok=True)
"""
        result = render(program, "slides", timeout_s=30)
        assert result.ok, result.error
        assert result.image is not None
        assert servers.hits == []
    assert _red_pixels(result.image) == 0
    assert not planted.exists()


def test_external_links_are_stripped_from_a_deck():
    from pptx import Presentation
    from pptx.opc.constants import RELATIONSHIP_TYPE as RT

    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[6])
    slide.part.relate_to("http://127.0.0.1:9/x.png", RT.IMAGE, is_external=True)
    slide.part.relate_to("file:///etc/passwd", RT.HYPERLINK, is_external=True)
    deck = io.BytesIO()
    prs.save(deck)
    stripped = zipfile.ZipFile(io.BytesIO(strip_external_links(deck.getvalue())))
    rels = stripped.read("ppt/slides/_rels/slide1.xml.rels").decode()
    assert "127.0.0.1" not in rels and "passwd" not in rels and "slideLayout" in rels


@pytest.mark.browser
def test_a_huge_page_keeps_to_its_timeout():
    assert render("<p>warm</p>", "web").ok  # the browser's start is not the page's time
    page = "<html><body>" + "<div class='row'><p>row</p></div>\n" * 50_000 + "</body></html>"
    started = time.monotonic()
    result = render(page, "web", timeout_s=3)
    assert not result.ok and result.error_kind == "timeout", (result.error_kind, result.error)
    assert time.monotonic() - started < 3 + 5  # the browser backstop (2 s) and a busy machine


def _warm_slot():
    """The browser host, the warm context the next page will take, and how many pages it has served."""
    assert render("<p>warm</p>", "web").ok
    host = browser.browser_host()
    slot = host._idle[-1]
    return host, slot, slot.served


@pytest.mark.browser
def test_a_context_whose_page_timed_out_is_not_served_again():
    host, held, served = _warm_slot()

    async def stalls(page):
        await asyncio.sleep(30)

    with pytest.raises(TimeoutError):
        browser.run_local_page("<p>slow</p>", stalls, width=640, height=None, timeout_s=1)
    assert held.served == served + 1 and held not in host._idle
    assert render("<p>after</p>", "web").ok
    assert held not in host._idle


# A page that leaves what it can behind it: in the context's stores, in its window, in its history, in
# a tab of its own, and in handlers and timers that would run after its job ends.
LEAVER = """<html><body><p>leaver</p><script>
localStorage.setItem("k", "left"); sessionStorage.setItem("k", "left"); window.name = "left";
document.cookie = "k=left";
history.pushState({}, "", "#pushed");
window.open(location.href + "?popup", "popup");
const form = Object.assign(document.createElement("form"), {action: location.href + "?form", target: "_blank"});
document.body.append(form); form.submit();
const link = Object.assign(document.createElement("a"), {href: location.href + "?link", target: "_blank"});
document.body.append(link); link.click();
setInterval(() => localStorage.setItem("timer", "left"), 1);
addEventListener("pagehide", () => localStorage.setItem("pagehide", "left"));
addEventListener("unload", () => localStorage.setItem("unload", "left"));
window.stored = Promise.all([
  new Promise((done) => {
    const opening = indexedDB.open("left", 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore("s");
    opening.onsuccess = () => {
      const writing = opening.result.transaction("s", "readwrite");
      writing.objectStore("s").put("left", "k");
      writing.oncomplete = done;
    };
  }),
  caches.open("left").then((cache) => cache.put(new Request("https://left.invalid/"), new Response("left"))),
]).then(() => true);
</script></body></html>"""
# What the next page of the same slot finds of it.
FIND_JS = """async () => ({
  local: Object.keys(localStorage), session: Object.keys(sessionStorage), name: window.name,
  cookie: document.cookie, databases: (await indexedDB.databases()).map((d) => d.name),
  caches: await caches.keys(), history: history.length,
})"""


@pytest.mark.browser
def test_a_page_finds_nothing_of_the_page_before_it_in_its_slot():
    _, slot, served = _warm_slot()

    async def stores(page):
        return await page.evaluate("() => window.stored")

    async def find(page):
        return await page.evaluate(FIND_JS)

    # The leaver is not frozen (as the reward's own page loads are not): its scripts still run when
    # its job ends.
    assert browser.run_local_page(LEAVER, stores, width=640, height=None, timeout_s=20) is True
    found = browser.run_local_page("<p>finder</p>", find, width=640, height=None, timeout_s=20)
    assert slot.served == served + 2, "the pages did not share a context: nothing was tested"
    assert found == {
        "local": [], "session": [], "name": "", "cookie": "", "databases": [], "caches": [], "history": 2,
    }  # fmt: skip


@pytest.mark.browser
def test_a_page_cannot_go_back_to_the_page_before_it():
    _, slot, served = _warm_slot()
    before = render("<h1>the page before, 7319</h1>", "web")
    back = render("<p>own text</p><script>history.back(); history.go(-1);</script>", "web")
    assert slot.served == served + 2, "the pages did not share a context: nothing was tested"
    assert before.ok and any("7319" in (e.text or "") for e in before.elements)
    assert not any("7319" in (e.text or "") for e in back.elements), [e.text for e in back.elements]
