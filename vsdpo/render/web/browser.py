"""One headless Chromium per process, shared by every web render, driven from its own event-loop thread.

Playwright objects belong to the event loop that made them, so the browser lives on a daemon thread
running an asyncio loop; any thread submits a coroutine and waits for its result. Renders from
several threads therefore run concurrently in one browser, each in a context of its own, which
serves one page at a time and is emptied between pages (``_Slot``). The browser is
started on first use, relaunched if it dies, started afresh in a forked child, and closed at exit.

Pages are untrusted, so the browser starts through vsdpo.render.web.launcher: no network at all (its
own network namespace; WebRTC's UDP included), a read-only host with private temporary folders, an
unprivileged uid and Chromium's own sandbox, and an environment with nothing of the caller's but
what it needs to start. The first launch probes which of those layers the machine gives; if one is
missing, web renders fail with error kind "sandbox" unless the caller opted in
(VSDPO_SANDBOX_ALLOW_WEAK=1), and a warning says so once. What the renderer reads from a page is
read in a JavaScript world of its own (``evaluate_isolated``), whose functions page scripts cannot
replace, once the page is frozen (``freeze_page``): its scripts off, its animations at rest.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import os
import random
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from playwright.async_api import async_playwright

CHROMIUM_PATH = os.environ.get("VSDPO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A page must not get back to the page its tab showed before (tabs are reused, see _Slot).
    "--disable-back-forward-cache",
    # Walls behind the network namespace: no host name resolves, WebRTC sends no UDP of its own.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
)
# Pages rendered at once per browser; more only queue.
MAX_CONCURRENT_PAGES = 4
# A browser context and its tab are kept warm and reused by the pages rendered one after another (see
# _Slot), emptied between pages; a context whose page failed, or that served this many pages, is closed
# and made anew. With the variable set to 1, each page gets a context of its own instead (the path
# before; the benchmarks compare the two).
MAX_PAGES_PER_CONTEXT = 256
FRESH_CONTEXT_ENV = "VSDPO_WEB_FRESH_CONTEXT"
ALLOW_WEAK_ENV = "VSDPO_SANDBOX_ALLOW_WEAK"
# What the browser's environment keeps of the caller's: enough to find Python and start.
BROWSER_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH")
BROWSER_UID_BASE = 1_000_000  # the range the sandbox's jobs use, far from any real account
BROWSER_UID_SPAN = 1 << 24
MAX_ASSET_BYTES = 64 << 20  # assets copied beside a page, all together
CLOSE_TIMEOUT_S = 5.0  # a context that does not close by then takes the browser with it
BACKSTOP_S = 2.0  # past the page's own deadline, the caller stops waiting for the browser


# page -> (main frame id, DevTools session, isolated world's execution context id)
_worlds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Where the isolated world keeps the closed shadow roots that freeze_page hands it.
CLOSED_ROOTS_GLOBAL = "__vsdpoClosedShadowRoots"
MAX_CLOSED_SHADOW_ROOTS = 256  # closed roots reached at most (one DevTools call each); more are reported
# Awaited once a page has loaded: its fonts, then two animation frames, so that what the page starts
# on load in a frame callback (a class set to start a transition, a layout of a framework) has run.
_SETTLED_JS = """() => document.fonts.ready.then(() => new Promise((done) =>
  requestAnimationFrame(() => requestAnimationFrame(() => done(true)))))"""
# Evaluated in the isolated world by freeze_page; shipped beside this module as package data.
_SETTLE_JS = Path(__file__).with_name("settle.js").read_text()


class BrowserRefused(RuntimeError):
    """The browser cannot get every layer of its sandbox here, and the caller did not opt in."""


T = TypeVar("T")


class BrowserHost:
    """A Chromium instance and the event loop that owns it."""

    def __init__(self, executable_path: str = CHROMIUM_PATH):
        self.executable_path = executable_path
        self.pid = os.getpid()
        self.allow_weak = os.environ.get(ALLOW_WEAK_ENV, "") not in ("", "0")
        self.uid = BROWSER_UID_BASE + random.randrange(BROWSER_UID_SPAN) if os.geteuid() == 0 else 0
        _sweep_folders_of_dead_hosts()
        # Pages are written here; the browser sees this folder, read-only, and nothing else of /tmp.
        self.pages = tempfile.mkdtemp(prefix=f"vsdpo-pages-{self.pid}-")
        os.chmod(self.pages, 0o755)
        # Where a reused tab waits between pages: an empty document of the pages' own site (a blank
        # of another, about:blank, would move the tab to another renderer process and back each time).
        self.blank = Path(self.pages, BLANK_NAME)
        self.blank.write_text("")
        os.chmod(self.blank, 0o644)
        self._launcher_dir = tempfile.mkdtemp(prefix=f"vsdpo-browser-{self.pid}-")
        self.launcher = os.path.join(self._launcher_dir, "chromium")
        with open(self.launcher, "w") as script:
            script.write(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m vsdpo.render.web.launcher "$@"\n')
        os.chmod(self.launcher, 0o700)
        self.layers: dict[str, Any] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vsdpo-chromium", daemon=True)
        self._thread.start()
        self._playwright: Any = None
        self._browser: Any = None
        self._launch_lock = asyncio.Lock()
        self._page_slots = asyncio.Semaphore(MAX_CONCURRENT_PAGES)
        self._idle: list[_Slot] = []  # warm contexts free for the next page
        self.contexts_opened = 0  # contexts made for pages, for the tests and the benchmarks

    async def take_slot(self, browser: Any) -> _Slot:
        """A warm context of ``browser`` free for one page, or a new one."""
        while self._idle and not _fresh_contexts():
            slot = self._idle.pop()
            if slot.browser is browser and browser.is_connected():
                return slot
            # One of a browser since discarded or lost: gone with it.
        self.contexts_opened += 1
        return await _Slot.open(browser)

    async def give_back_slot(self, slot: _Slot, reusable: bool) -> None:
        """Empty ``slot`` for the next page; close it instead where its page failed, where it cannot be
        emptied, or where it served MAX_PAGES_PER_CONTEXT pages."""
        if reusable and slot.served < MAX_PAGES_PER_CONTEXT and not _fresh_contexts():
            try:
                await asyncio.wait_for(slot.empty(), CLOSE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a context that cannot be emptied is not reused
                pass
            else:
                self._idle.append(slot)
                return
        await _close_context(slot.context)

    def run(self, make_coroutine: Callable[[Any], Awaitable[T]], timeout_s: float) -> T:
        """Run ``make_coroutine(browser)`` on the browser's loop; wait at most ``timeout_s`` for it."""
        future = asyncio.run_coroutine_threadsafe(self._with_browser(make_coroutine), self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def _with_browser(self, make_coroutine: Callable[[Any], Awaitable[T]]) -> T:
        async with self._page_slots:
            browser = await self._ensure_browser()
            return await make_coroutine(browser)

    async def _ensure_browser(self) -> Any:
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            await self._close_browser()
            if not os.path.exists(self.executable_path):
                raise FileNotFoundError(
                    f"Chromium: expected an executable at {self.executable_path!r} "
                    "(apt-get install chromium, or set VSDPO_CHROMIUM)"
                )
            if self.layers is None:
                self.layers = await asyncio.get_running_loop().run_in_executor(None, self._probe)
            missing = self.layers.get("missing") or []
            if missing and not self.allow_weak:
                raise BrowserRefused(
                    f"the browser sandbox lacks {', '.join(missing)} on this machine; "
                    f"set {ALLOW_WEAK_ENV}=1 to render untrusted pages anyway"
                )
            self._playwright = await async_playwright().start()
            self._browser = await self._playwright.chromium.launch(
                executable_path=self.launcher,
                args=list(CHROMIUM_ARGS),
                # Chromium's popup blocker stays on: no page opens a tab without a user's gesture, and
                # no render makes one.
                ignore_default_args=["--disable-popup-blocking"],
                headless=True,
                chromium_sandbox=True,
                env=self.environment(),
            )
            return self._browser

    def environment(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in BROWSER_ENV if name in os.environ}
        env.update(
            VSDPO_CHROMIUM=self.executable_path,
            VSDPO_BROWSER_UID=str(self.uid),
            VSDPO_BROWSER_PAGES=self.pages,
            VSDPO_BROWSER_ALLOW_WEAK="1" if self.allow_weak else "0",
        )
        return env

    def _probe(self) -> dict[str, Any]:
        """Which sandbox layers the launcher gets here; a warning says so once if one is missing."""
        probe = subprocess.run(
            [self.launcher, "--probe"], env=self.environment(), capture_output=True, text=True, timeout=60
        )
        try:
            layers = json.loads(probe.stdout)
        except ValueError:
            layers = {"layers": [], "missing": ["all"], "notes": {"probe": probe.stderr[-300:]}}
        missing = layers.get("missing") or []
        if missing:
            notes = "; ".join(f"{k}: {v}" for k, v in (layers.get("notes") or {}).items())
            consequence = (
                "rendering untrusted pages anyway, as asked"
                if self.allow_weak
                else f"web renders are refused (set {ALLOW_WEAK_ENV}=1 to run them anyway)"
            )
            warnings.warn(
                f"browser sandbox: this machine lacks {', '.join(missing)} ({notes}); {consequence}",
                RuntimeWarning,
                stacklevel=2,
            )
        return layers

    async def discard_browser(self) -> None:
        """Drop a browser that stopped answering; the next render launches a new one."""
        async with self._launch_lock:
            await self._close_browser()

    async def _close_browser(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        self._idle.clear()  # their contexts close with the browser
        for closing in (browser.close() if browser else None, playwright.stop() if playwright else None):
            if closing is None:
                continue
            # A dead browser cannot be closed twice; its process is gone with the driver.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closing, 10)

    def close(self) -> None:
        if self._loop.is_closed() or not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close_browser(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        for folder in (self.pages, self._launcher_dir):
            shutil.rmtree(folder, ignore_errors=True)


def _sweep_folders_of_dead_hosts() -> None:
    """Remove the page and launcher folders of hosts whose process is gone (killed, say)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(tempfile.gettempdir()):
            kind, _, rest = name.partition("-")
            owner = rest.split("-")[1] if rest.count("-") >= 2 else ""
            if kind != "vsdpo" or not rest.startswith(("pages-", "browser-")) or not owner.isdigit():
                continue
            try:
                os.kill(int(owner), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(tempfile.gettempdir(), name), ignore_errors=True)
            except PermissionError:
                pass


_host: BrowserHost | None = None
_host_lock = threading.Lock()


def browser_host() -> BrowserHost:
    """The process's browser host, made on first use (and again in a forked child)."""
    global _host
    with _host_lock:
        if _host is None or _host.pid != os.getpid():
            # A host inherited through fork has no thread behind it: start over, leave the parent's alone.
            _host = BrowserHost()
        return _host


def close_browser() -> None:
    global _host
    with _host_lock:
        host, _host = _host, None
    if host is not None and host.pid == os.getpid():
        host.close()


atexit.register(close_browser)


# ------------------------------------------------------------------------------------------ local pages

VIEWPORT_HEIGHT = 720  # the layout viewport of a full-page render (what `100vh` means)
MAX_PAGE_HEIGHT = 8192  # full-page screenshots are cut here
PAGE_NAME = "index.html"
BLANK_NAME = "blank.html"


def run_local_page(
    html: str,
    extract: Callable[[Any], Awaitable[T]],
    *,
    width: int,
    height: int | None,
    timeout_s: float,
    assets_dir: str | os.PathLike | None = None,
) -> T:
    """Open ``html`` in a warm browser context of its own and return ``await extract(page)``.

    The page lies in a private folder beside links to the files of ``assets_dir``; every request that
    leaves that folder (other than ``data:``, ``blob:``, ``about:``) is blocked. The viewport is
    ``width`` x ``height`` (x ``VIEWPORT_HEIGHT`` for a full page). Raises ``TimeoutError`` when the
    page and ``extract`` do not finish within ``timeout_s``.
    """
    host = browser_host()
    # Readable by the browser's uid: the folder and the files in it, never anything else of the caller's.
    root = Path(tempfile.mkdtemp(prefix="page-", dir=host.pages))
    os.chmod(root, 0o755)
    try:
        if assets_dir is not None:
            source = Path(assets_dir)
            if not source.is_dir():
                raise NotADirectoryError(f"assets_dir: expected a directory, got {str(assets_dir)!r}")
            _copy_assets(source, root)
        page_path = root / PAGE_NAME
        page_path.write_text(html, encoding="utf-8")
        os.chmod(page_path, 0o644)
        job = _LocalPage(page_path, width, height, timeout_s, extract)
        try:
            # The host's own deadline is a backstop; the job enforces timeout_s itself and cleans up.
            return host.run(job.run, timeout_s + BACKSTOP_S)
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            raise TimeoutError(f"the page did not finish rendering within {timeout_s:g}s") from None
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _copy_assets(source: Path, root: Path) -> None:
    """Put the files of ``source`` beside the page (links followed), readable by all, up to
    MAX_ASSET_BYTES in all: the browser's uid may not be able to read the caller's folders. A file
    that others may read already is linked where the filesystem allows, else copied."""
    budget = MAX_ASSET_BYTES

    def place(src: str, dst: str) -> str:
        nonlocal budget
        info = os.stat(src)
        budget -= info.st_size
        if budget < 0:
            raise ValueError(f"assets_dir: more than {MAX_ASSET_BYTES} bytes of files")
        if info.st_mode & stat.S_IROTH:
            with contextlib.suppress(OSError):
                os.link(os.path.realpath(src), dst)
                return dst
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)
        return dst

    for entry in source.iterdir():
        if entry.name == PAGE_NAME:
            continue
        if entry.is_dir():
            shutil.copytree(entry, root / entry.name, copy_function=place)
            for folder, _, _ in os.walk(root / entry.name):
                os.chmod(folder, 0o755)
        elif entry.is_file():
            place(str(entry), str(root / entry.name))


def canvas_height(height: int | None, document_height: float) -> int:
    """The fixed canvas's height, or the full page's (cut at MAX_PAGE_HEIGHT)."""
    return height or max(1, min(int(document_height), MAX_PAGE_HEIGHT))


async def page_screenshot(page: Any, width: int, height: int | None, document_height: float) -> bytes:
    """PNG of the fixed ``width`` x ``height`` canvas, or of the full page (cut at MAX_PAGE_HEIGHT)."""
    return await page.screenshot(
        clip={"x": 0, "y": 0, "width": width, "height": canvas_height(height, document_height)},
        full_page=height is None,
        animations="disabled",
        caret="hide",
    )


async def _close_context(context: Any) -> None:
    try:
        await asyncio.wait_for(context.close(), CLOSE_TIMEOUT_S)
    except Exception:
        # A renderer stuck in a script loop can hold its context: drop the whole browser.
        await browser_host().discard_browser()


def _fresh_contexts() -> bool:
    return os.environ.get(FRESH_CONTEXT_ENV, "") not in ("", "0")


class _Slot:
    """A browser context and its one tab, kept warm for one page at a time.

    A new context and a tab in it start a renderer process (about 0.2 s of a core, a third of a small
    page's render). So the pages rendered one after another reuse both, and nothing of one page may
    reach the next: once its job is done, the page is stopped (scripts off, so neither its timers nor
    its unload handlers run again), any tab it opened is closed (the popup blocker is on, so there
    should be none), the tab goes to a blank document whose history is then erased (no way back to
    the page before, the back-forward cache being off as well), and what the context stores for pages
    (local and session storage, IndexedDB, caches, cookies, permissions) and the window's name are
    cleared (``empty``). Requests are allowed only inside the folder of the page the slot serves now
    (``root``).
    """

    def __init__(self, browser: Any, context: Any):
        self.browser, self.context = browser, context
        self.tab: Any = None
        self.session: Any = None  # the tab's DevTools session, also that of its isolated world
        self.frame_id: str | None = None
        self.root: str | None = None
        self.served = 0

    @classmethod
    async def open(cls, browser: Any) -> _Slot:
        context = await browser.new_context(
            viewport={"width": 1280, "height": VIEWPORT_HEIGHT},
            device_scale_factor=1,
            service_workers="block",
            accept_downloads=False,
        )
        try:
            slot = cls(browser, context)
            await context.route("**/*", slot._allow_only_local)
        except BaseException:
            asyncio.get_running_loop().create_task(_close_context(context))
            raise
        return slot

    async def new_page(self, root: str, width: int, height: int) -> Any:
        """The tab, blank, with its viewport ``width`` x ``height``, for a page inside ``root``."""
        self.root, self.served = root, self.served + 1
        if self.tab is None:
            self.tab = await self.context.new_page()
            self.session = await self.context.new_cdp_session(self.tab)
            self.frame_id = (await self.session.send("Page.getFrameTree"))["frameTree"]["frame"]["id"]
        # The world is made again for each document, through the session that also stops the page.
        _worlds[self.tab] = (self.frame_id, self.session, None)
        await self.tab.set_viewport_size({"width": width, "height": height})
        return self.tab

    async def empty(self) -> None:
        """Stop the page, close the tabs it opened, blank the tab and clear what the context keeps."""
        self.root = None
        if self.tab is None:
            return
        await self.session.send("Emulation.setScriptExecutionDisabled", {"value": True})
        for page in list(self.context.pages):
            if page is not self.tab:
                await page.close()
        await self.tab.goto(browser_host().blank.as_uri())
        await self.session.send("Page.resetNavigationHistory")
        await self.session.send("Storage.clearDataForOrigin", {"origin": "file://", "storageTypes": "all"})
        await self.context.clear_cookies()
        await self.context.clear_permissions()
        _worlds[self.tab] = (self.frame_id, self.session, None)
        await evaluate_isolated(self.tab, "() => { window.name = ''; return true; }", None)
        await self.session.send("Emulation.setScriptExecutionDisabled", {"value": False})
        if self.context.pages != [self.tab]:
            raise RuntimeError(f"tabs opened while the context was emptied: {len(self.context.pages) - 1}")

    async def _allow_only_local(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:", "about:")) or self._inside_root(url) or self._blank(url):
            await route.continue_()
        else:
            await route.abort("blockedbyclient")

    def _inside_root(self, url: str) -> bool:
        parsed = urlparse(url)
        if parsed.scheme != "file" or self.root is None:
            return False
        return os.path.realpath(unquote(parsed.path)).startswith(self.root + os.sep)

    def _blank(self, url: str) -> bool:
        """The blank document, loaded by ``empty`` only: no page reaches it while the slot serves one."""
        return self.root is None and url == browser_host().blank.as_uri()


class _LocalPage:
    def __init__(self, page_path: Path, width: int, height: int | None, timeout_s: float, extract):
        self.page_path, self.width, self.height, self.timeout_s = page_path, width, height, timeout_s
        self.extract = extract
        self.root = str(page_path.parent.resolve())

    async def run(self, browser: Any) -> Any:
        host = browser_host()
        slot = await host.take_slot(browser)
        try:
            result = await asyncio.wait_for(self._open_and_extract(slot), self.timeout_s)
        except BaseException:
            # A page still busy (a script loop, a huge document) can hold its context for long: it is
            # closed in the background, so that the render's deadline holds.
            asyncio.get_running_loop().create_task(host.give_back_slot(slot, reusable=False))
            raise
        await host.give_back_slot(slot, reusable=True)
        return result

    async def _open_and_extract(self, slot: _Slot) -> Any:
        page = await slot.new_page(self.root, self.width, self.height or VIEWPORT_HEIGHT)
        try:
            await page.goto(self.page_path.as_uri(), wait_until="load", timeout=self.timeout_s * 600)
        except Exception as error:  # a load that never ends is still a page; a stuck script times out above
            if "Timeout" not in type(error).__name__:
                raise
        await evaluate_isolated(page, _SETTLED_JS, None)
        return await self.extract(page)


async def _isolated_world(page: Any) -> tuple[Any, int]:
    """The page's DevTools session and the execution context id of its isolated world (see
    ``evaluate_isolated``), made once per document."""
    frame_id, session, context_id = _worlds.get(page, (None, None, None))
    if session is None:
        session = await page.context.new_cdp_session(page)
        tree = await session.send("Page.getFrameTree")
        frame_id = tree["frameTree"]["frame"]["id"]
    if context_id is None:
        world = await session.send(
            "Page.createIsolatedWorld",
            {"frameId": frame_id, "worldName": "vsdpo-extract", "grantUniveralAccess": False},
        )
        context_id = world["executionContextId"]
        _worlds[page] = (frame_id, session, context_id)
    return session, context_id


async def evaluate_isolated(page: Any, function: str, arg: Any) -> Any:
    """``(function)(arg)`` evaluated in a JavaScript world of its own on the page's main frame.

    The world shares the page's DOM but none of its JavaScript: prototypes and globals there are the
    browser's own, so a page script that replaces getBoundingClientRect or getComputedStyle changes
    nothing the function sees. ``arg`` must be JSON; the value comes back as JSON. The world (and the
    DevTools session that made it) is made once per document and reused.
    """
    session, context_id = await _isolated_world(page)
    try:
        reply = await session.send(
            "Runtime.evaluate",
            {
                "expression": f"({function})({json.dumps(arg)})",
                "contextId": context_id,
                "returnByValue": True,
                "awaitPromise": True,
            },
        )
    except Exception:
        # A navigation ends the world: the next call makes a new one, through the same session (the
        # one whose switches, such as scripts off, hold for the page).
        frame_id, _, _ = _worlds.get(page, (None, None, None))
        _worlds[page] = (frame_id, session, None)
        raise
    if "exceptionDetails" in reply:
        details = reply["exceptionDetails"]
        description = details.get("exception", {}).get("description") or details.get("text")
        raise RuntimeError(f"in-page extraction failed: {description}")
    return reply["result"].get("value")


async def freeze_page(page: Any) -> dict[str, int]:
    """Stop the page in the state it has reached, so that its screenshot and its extraction see one.

    - Page scripts are switched off (``Emulation.setScriptExecutionDisabled``): from here on no timer,
      event listener, animation frame or observer of the page runs, so nothing the renderer does
      (a screenshot that resizes, an extraction that scrolls) can make the page move its text between
      the picture and the description of it. The isolated world still runs: DevTools evaluates there.
    - Closed shadow roots are handed to the isolated world, the one way to reach them: a page must not
      hide its drawn text from the checks behind one (see ``_register_closed_shadow_roots``).
    - Animations and transitions are played to their end, infinite ones cancelled (``settle.js``),
      in the document, its shadow roots and its same-origin frames: the screenshot shows the end of
      a finite animation, and the extraction must measure that end, not its start.

    Returns ``{"closed_roots": found, "unreached_roots": left out past MAX_CLOSED_SHADOW_ROOTS}``.
    """
    session, _ = await _isolated_world(page)
    await session.send("Emulation.setScriptExecutionDisabled", {"value": True})
    found, unreached = await _register_closed_shadow_roots(page)
    await evaluate_isolated(page, _SETTLE_JS, {"closedRoots": CLOSED_ROOTS_GLOBAL})
    return {"closed_roots": found, "unreached_roots": unreached}


async def _register_closed_shadow_roots(page: Any) -> tuple[int, int]:
    """Put the page's closed shadow roots in the isolated world's ``CLOSED_ROOTS_GLOBAL`` list.

    ``DOMSnapshot.captureSnapshot`` lists every node of the document and its same-process frames in
    flat arrays (``DOM.getDocument`` nests them, and a page nested deep enough makes its reply fail),
    with the kind of shadow root each node lies in. One node of each closed root, resolved in the
    isolated world, gives the root (``getRootNode``). Children of a host outside any closed root come
    first; then nodes whose parent lies in a closed root (a closed root nested in another, or merely an
    element inside one), one per parent, while the bound allows. Returns (roots registered, hosts
    outside closed roots left past the bound: their content goes unchecked, and the renderer says so).
    """
    session, context_id = await _isolated_world(page)
    snapshot = await session.send("DOMSnapshot.captureSnapshot", {"computedStyles": []})
    strings = snapshot["strings"]
    outer: dict[tuple[int, int], int] = {}
    nested: dict[tuple[int, int], int] = {}
    for number, document in enumerate(snapshot["documents"]):
        nodes = document["nodes"]
        rare = nodes.get("shadowRootType") or {}
        closed = {
            i
            for i, v in zip(rare.get("index", ()), rare.get("value", ()), strict=False)
            if strings[v] == "closed"
        }
        for i in sorted(closed):
            parent = nodes["parentIndex"][i]
            (nested if parent in closed else outer).setdefault((number, parent), nodes["backendNodeId"][i])
    candidates = [*outer.values(), *nested.values()]
    objects = []
    for backend_id in candidates[:MAX_CLOSED_SHADOW_ROOTS]:
        try:
            node = await session.send(
                "DOM.resolveNode", {"backendNodeId": backend_id, "executionContextId": context_id}
            )
        except Exception:  # noqa: BLE001 - a node of another frame's document: out of this world's reach
            continue
        objects.append({"objectId": node["object"]["objectId"]})
    unreached = max(0, len(outer) - MAX_CLOSED_SHADOW_ROOTS)
    if not objects:
        return 0, unreached
    registered = await session.send(
        "Runtime.callFunctionOn",
        {
            "functionDeclaration": _REGISTER_ROOTS_JS,
            "executionContextId": context_id,
            "arguments": objects,
            "returnByValue": True,
        },
    )
    return int(registered["result"].get("value") or 0), unreached


# Called with one node of each closed shadow root: keeps the roots, each once, for the extraction.
_REGISTER_ROOTS_JS = f"""function (...nodes) {{
  const roots = (globalThis.{CLOSED_ROOTS_GLOBAL} ||= []);
  for (const node of nodes) {{
    const root = node.getRootNode();
    if (root instanceof ShadowRoot && !roots.includes(root)) roots.push(root);
  }}
  return roots.length;
}}"""
