"""Shared helpers of the hostile-program tests: run an attack as a real chart program and read what it found.

An attack's code binds ``found``; the chart program wraps it so that whatever it found, or the type
and message of the error that stopped it, becomes the figure's title, which comes back through
``render()`` as an element's text. Nothing here runs outside the sandbox but the test's own servers.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import textwrap
import threading

from vsdpo.render import render

MARK = "FOUND:"


def chart_probe(attack: str, *, timeout_s: float = 20) -> str:
    """Run ``attack`` (code binding ``found``) as a chart program; its result or error, as text."""
    program = (
        "import matplotlib.pyplot as plt\n"
        "try:\n" + textwrap.indent(textwrap.dedent(attack), "    ") + "\nexcept BaseException as error:\n"
        "    found = f'{type(error).__name__}: {error}'\n"
        f"plt.title({MARK!r} + repr(found)[:400])\n"
    )
    result = render(program, "chart", timeout_s=timeout_s)
    assert result.ok, result.error
    titles = [e.text for e in result.elements if e.text and e.text.startswith(MARK)]
    assert titles, [e.text for e in result.elements]
    return titles[0][len(MARK) :]


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server name
        self.server.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args):
        pass


class LocalServers:
    """A TCP (HTTP) and a UDP server on 127.0.0.1 that record whatever reaches them."""

    def __enter__(self) -> LocalServers:
        self.http = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Quiet)
        self.http.hits = []
        self.http.daemon_threads = True
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.1)
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True),
            threading.Thread(target=self._listen, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                self.datagrams.append(self.udp.recvfrom(2048)[0])
            except OSError:
                continue

    @property
    def http_port(self) -> int:
        return self.http.server_address[1]

    @property
    def udp_port(self) -> int:
        return self.udp.getsockname()[1]

    @property
    def hits(self) -> list[str]:
        return list(self.http.hits)

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self.http.shutdown()
        self.http.server_close()
        for thread in self._threads:
            thread.join(2)
        self.udp.close()
