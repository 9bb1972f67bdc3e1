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
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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
