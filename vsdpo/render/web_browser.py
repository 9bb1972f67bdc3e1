"""One headless Chromium per process, shared by every web render, driven from its own event-loop thread.

Playwright objects belong to the event loop that made them, so the browser lives on a daemon thread
running an asyncio loop; any thread submits a coroutine and waits for its result. Renders from
several threads therefore run concurrently in one browser (each in its own context). The browser is
started on first use, relaunched if it dies, started afresh in a forked child, and closed at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

CHROMIUM_PATH = os.environ.get("VSDPO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A second wall behind the request router: no host name resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
# Pages rendered at once per browser; more only queue.
MAX_CONCURRENT_PAGES = 4

T = TypeVar("T")


class BrowserHost:
    """A Chromium instance and the event loop that owns it."""

    def __init__(self, executable_path: str = CHROMIUM_PATH):
        self.executable_path = executable_path
        self.pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vsdpo-chromium", daemon=True)
        self._thread.start()
        self._playwright: Any = None
        self._browser: Any = None
        self._launch_lock = asyncio.Lock()
        self._pages = asyncio.Semaphore(MAX_CONCURRENT_PAGES)

    def run(self, make_coroutine: Callable[[Any], Awaitable[T]], timeout_s: float) -> T:
        """Run ``make_coroutine(browser)`` on the browser's loop; wait at most ``timeout_s`` for it."""
        future = asyncio.run_coroutine_threadsafe(self._with_browser(make_coroutine), self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def _with_browser(self, make_coroutine: Callable[[Any], Awaitable[T]]) -> T:
        async with self._pages:
            browser = await self._ensure_browser()
            return await make_coroutine(browser)

    async def _ensure_browser(self) -> Any:
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            await self._close_browser()
            from playwright.async_api import async_playwright

            if not os.path.exists(self.executable_path):
                raise FileNotFoundError(
                    f"Chromium: expected an executable at {self.executable_path!r} "
                    "(apt-get install chromium, or set VSDPO_CHROMIUM)"
                )
            self._playwright = await async_playwright().start()
            self._browser = await self._playwright.chromium.launch(
                executable_path=self.executable_path, args=list(CHROMIUM_ARGS), headless=True
            )
            return self._browser

    async def discard_browser(self) -> None:
        """Drop a browser that stopped answering; the next render launches a new one."""
        async with self._launch_lock:
            await self._close_browser()

    async def _close_browser(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
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


def run_local_page(
    html: str,
    extract: Callable[[Any], Awaitable[T]],
    *,
    width: int,
    height: int | None,
    timeout_s: float,
    assets_dir: str | os.PathLike | None = None,
) -> T:
    """Open ``html`` in its own browser context and return ``await extract(page)``.

    The page lies in a private folder beside links to the files of ``assets_dir``; every request that
    leaves that folder (other than ``data:``, ``blob:``, ``about:``) is blocked. The viewport is
    ``width`` x ``height`` (x ``VIEWPORT_HEIGHT`` for a full page). Raises ``TimeoutError`` when the
    page and ``extract`` do not finish within ``timeout_s``.
    """
    root = Path(tempfile.mkdtemp(prefix="vsdpo-page-"))
    try:
        if assets_dir is not None:
            source = Path(assets_dir)
            if not source.is_dir():
                raise NotADirectoryError(f"assets_dir: expected a directory, got {str(assets_dir)!r}")
            for entry in source.iterdir():
                if entry.name != PAGE_NAME:
                    (root / entry.name).symlink_to(entry.resolve())
        page_path = root / PAGE_NAME
        page_path.write_text(html, encoding="utf-8")
        job = _LocalPage(page_path, width, height, timeout_s, extract)
        try:
            # The host's own deadline is a backstop; the job enforces timeout_s itself and cleans up.
            return browser_host().run(job.run, timeout_s + 15)
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            raise TimeoutError(f"the page did not finish rendering within {timeout_s:g}s") from None
    finally:
        shutil.rmtree(root, ignore_errors=True)


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


class _LocalPage:
    def __init__(self, page_path: Path, width: int, height: int | None, timeout_s: float, extract):
        self.page_path, self.width, self.height, self.timeout_s = page_path, width, height, timeout_s
        self.extract = extract
        self.root = str(page_path.parent.resolve())

    async def run(self, browser: Any) -> Any:
        context = await browser.new_context(
            viewport={"width": self.width, "height": self.height or VIEWPORT_HEIGHT},
            device_scale_factor=1,
            service_workers="block",
        )
        try:
            return await asyncio.wait_for(self._open_and_extract(context), self.timeout_s)
        finally:
            try:
                await asyncio.wait_for(context.close(), 10)
            except Exception:
                # A renderer stuck in a script loop can hold its context: drop the whole browser.
                await browser_host().discard_browser()

    async def _allow_only_local(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:", "about:")) or self._inside_root(url):
            await route.continue_()
        else:
            await route.abort("blockedbyclient")

    def _inside_root(self, url: str) -> bool:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            return False
        path = os.path.realpath(unquote(parsed.path))
        # Linked assets resolve outside the root: allow a path whose link inside the root exists.
        inside = os.path.normpath(unquote(parsed.path)).startswith(self.root + os.sep)
        return inside or path.startswith(self.root + os.sep)

    async def _open_and_extract(self, context: Any) -> Any:
        await context.route("**/*", self._allow_only_local)
        page = await context.new_page()
        try:
            await page.goto(self.page_path.as_uri(), wait_until="load", timeout=self.timeout_s * 600)
        except Exception as error:  # a load that never ends is still a page; a stuck script times out above
            if "Timeout" not in type(error).__name__:
                raise
        await page.evaluate("document.fonts.ready.then(() => true)")
        return await self.extract(page)
