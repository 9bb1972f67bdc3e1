"""Run untrusted programs: a pool of pre-warmed worker processes that fork one child per job.

    from vsdpo.render.sandbox import run_in_sandbox
    result = run_in_sandbox("vsdpo.render.chart_child:render_chart_job", {"code": code}, timeout_s=20)
    result.ok, result.value, result.error, result.error_kind

``entry`` names a function ``package.module:function``; the child imports it and calls
``function(payload)`` inside a fresh temporary working directory. Each job runs with a wall-clock
timeout (the whole process group, and every process of the job's own uid, killed when it runs out),
CPU-time, address-space, file-size and process-count limits, a scrubbed environment, no network (a
network namespace of its own, else sockets refused) and a capped stdout/stderr. The return value
must be plain data (dicts, lists, str, bytes, numbers, None): the pool decodes it with an unpickler
that builds nothing else, so a hostile child cannot run code in the caller.

Workers import matplotlib, pyplot, python-pptx, numpy and the libraries chart programs commonly use
once, so a job costs a fork, not an interpreter start. ``run_in_sandbox`` uses a module-level pool started on first use; ``run_many`` and
``SandboxPool.map`` run several jobs side by side.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from vsdpo.render._sandbox_worker import receive, send

# Imported once per worker, so that a job does not pay for them: the renderers, and what chart programs
# commonly import besides matplotlib (ChartMimic's: scipy.stats, 3-D axes, pandas, seaborn, networkx).
# Modules that are not installed are skipped.
DEFAULT_PRELOAD = (
    "numpy",
    "matplotlib",
    "matplotlib.pyplot",
    "mpl_toolkits.mplot3d",
    "scipy.stats",
    "pandas",
    "seaborn",
    "networkx",
    "pptx",
    "vsdpo.render.chart_child",
    "vsdpo.render.slides_child",
)
# Time a worker gets beyond the job's own timeout to kill, sweep and answer before it is replaced.
SUPERVISION_GRACE_S = 30.0


@dataclass
class SandboxLimits:
    """Resource limits of one job. ``None`` leaves a limit unset."""

    memory_bytes: int | None = 4 << 30  # address space; matplotlib alone maps ~1 GB
    cpu_s: float | None = None  # default: the wall-clock timeout, rounded up
    file_bytes: int | None = 64 << 20
    processes: int | None = 64
    open_files: int | None = 1024  # matplotlib keeps its font files open in the worker
    output_bytes: int = 1 << 20  # stdout and stderr each
    result_bytes: int = 256 << 20


@dataclass
class SandboxResult:
    ok: bool
    value: Any = None
    error: str | None = None
    error_kind: str | None = None  # "timeout", "memory", "cpu_limit", "file_size", "killed", "exited",
    #                                "exception", "output_limit", "sandbox"
    elapsed_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    traceback: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _PlainDataUnpickler(pickle.Unpickler):
    """Decodes only what pickle builds without importing anything: the child's reply is untrusted."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"sandbox results must be plain data; refused {module}.{name}")


def _decode_reply(blob: bytes) -> dict[str, Any]:
    reply = _PlainDataUnpickler(io.BytesIO(blob)).load()
    if not isinstance(reply, dict) or "ok" not in reply:
        raise pickle.UnpicklingError(f"malformed sandbox reply of type {type(reply).__name__}")
    return reply


class _Worker:
    def __init__(self, preload: tuple[str, ...], root: str | None):
        env = dict(os.environ, MPLBACKEND="Agg")
        if root is not None:
            env["VSDPO_SANDBOX_ROOT"] = root
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vsdpo.render._sandbox_worker", *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        hello = receive(self.process.stdout)
        if not hello.get("ready"):
            raise RuntimeError(f"sandbox worker failed to start: {hello!r}")

    def call(self, job: dict[str, Any], wait_s: float) -> dict[str, Any]:
        """Send a job and wait for the reply; a worker that stays silent past ``wait_s`` is killed."""
        send(self.process.stdin, job)
        box: dict[str, Any] = {}

        def read() -> None:
            try:
                box["reply"] = receive(self.process.stdout)
            except (EOFError, OSError) as error:
                box["error"] = error

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(wait_s)
        if "reply" in box:
            return box["reply"]
        self.close(kill=True)
        reason = "stopped answering" if reader.is_alive() else f"died ({box.get('error')})"
        return {
            "ok": False,
            "error_kind": "sandbox",
            "error": f"the sandbox worker {reason}",
            "result_blob": None,
        }

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            if not kill:
                try:
                    self.process.stdin.close()
                    self.process.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()


class SandboxPool:
    """``workers`` pre-warmed processes; each runs one job at a time. Thread-safe."""

    def __init__(
        self, workers: int = 1, *, preload: Iterable[str] = DEFAULT_PRELOAD, root: str | None = None
    ):
        """``root``: folder for the jobs' working directories (default: $TMPDIR/vsdpo-sandbox)."""
        if workers < 1:
            raise ValueError(f"workers: expected >= 1, got {workers}")
        self.size = workers
        self.root = root
        self.preload = tuple(preload)
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._started = False
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> SandboxPool:
        with self._lock:
            if not self._started:
                for _ in range(self.size):
                    self._idle.put(None)  # a slot; its worker starts when first needed
                self._started = True
        return self

    def run(
        self,
        entry: str,
        payload: dict[str, Any],
        *,
        timeout_s: float = 20,
        limits: SandboxLimits | None = None,
    ) -> SandboxResult:
        if self._closed:
            raise RuntimeError("sandbox pool: already shut down")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s: expected > 0, got {timeout_s}")
        limits = limits or SandboxLimits()
        limit_values = asdict(limits)
        if limit_values["cpu_s"] is None:
            limit_values["cpu_s"] = int(timeout_s) + 1
        job = {"entry": entry, "payload": payload, "timeout_s": float(timeout_s), "limits": limit_values}
        self.start()
        worker = self._idle.get()
        start = time.monotonic()
        try:
            if worker is None or not worker.alive():
                worker = _Worker(self.preload, self.root)
            reply = worker.call(job, timeout_s + SUPERVISION_GRACE_S)
            if not worker.alive():
                worker = None
        finally:
            self._idle.put(worker)
        return self._result(reply, time.monotonic() - start)

    @staticmethod
    def _result(reply: dict[str, Any], elapsed_s: float) -> SandboxResult:
        common = {
            "elapsed_s": reply.get("elapsed_s", elapsed_s),
            "stdout": reply.get("stdout", ""),
            "stderr": reply.get("stderr", ""),
            "extra": {"uid": reply.get("uid")},
        }
        blob = reply.get("result_blob")
        if blob is None:
            return SandboxResult(ok=False, error=reply["error"], error_kind=reply["error_kind"], **common)
        try:
            child = _decode_reply(blob)
        except Exception as error:  # noqa: BLE001 - any undecodable reply is the program's failure
            return SandboxResult(
                ok=False, error=f"unreadable result: {error}", error_kind="exception", **common
            )
        if child["ok"]:
            return SandboxResult(ok=True, value=child.get("value"), **common)
        return SandboxResult(
            ok=False,
            error=child.get("error"),
            error_kind=child.get("error_kind", "exception"),
            traceback=child.get("traceback"),
            **common,
        )

    def map(
        self,
        entry: str,
        payloads: Iterable[dict[str, Any]],
        *,
        timeout_s: float = 20,
        limits: SandboxLimits | None = None,
    ) -> list[SandboxResult]:
        """Run one job per payload, ``workers`` at a time; results in the order of ``payloads``."""
        payloads = list(payloads)
        with ThreadPoolExecutor(max_workers=self.size) as executor:
            futures = [
                executor.submit(self.run, entry, payload, timeout_s=timeout_s, limits=limits)
                for payload in payloads
            ]
            return [future.result() for future in futures]

    def shutdown(self) -> None:
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.close()

    def __enter__(self) -> SandboxPool:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.shutdown()


_default_pool: SandboxPool | None = None
_default_lock = threading.Lock()


def default_pool() -> SandboxPool:
    """The process-wide pool (``VSDPO_SANDBOX_WORKERS`` workers, default 1), shut down at exit."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = SandboxPool(workers=int(os.environ.get("VSDPO_SANDBOX_WORKERS", "1")))
            atexit.register(_default_pool.shutdown)
        return _default_pool


def run_in_sandbox(
    entry: str,
    payload: dict[str, Any],
    *,
    timeout_s: float = 20,
    limits: SandboxLimits | None = None,
) -> SandboxResult:
    """Run ``entry(payload)`` in a fresh sandboxed child of the default pool."""
    return default_pool().run(entry, payload, timeout_s=timeout_s, limits=limits)


def run_many(
    entry: str,
    payloads: Iterable[dict[str, Any]],
    *,
    workers: int = 2,
    timeout_s: float = 20,
    limits: SandboxLimits | None = None,
) -> list[SandboxResult]:
    """Run one job per payload on a temporary pool of ``workers`` processes."""
    with SandboxPool(workers=workers) as pool:
        return pool.map(entry, payloads, timeout_s=timeout_s, limits=limits)
