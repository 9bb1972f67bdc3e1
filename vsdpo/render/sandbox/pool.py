"""The caller's side of the sandbox: a pool of pre-warmed worker processes that fork each job's processes.

``entry`` names a function ``package.module:function``; the job imports it and calls
``function(payload)`` in a private working directory. The module must be importable from what a job
sees: the Python installation, a package the worker imported (and its distribution's other
packages), or a plain folder on PYTHONPATH (vsdpo.render.sandbox.filesystem). Each job runs in
processes forked from a template that never held any job (vsdpo.render.sandbox.worker), as a fresh
uid with no capability, no_new_privs and a seccomp filter, in its own PID, mount, network, IPC and UTS
namespaces, on an allow-listed read-only root (the system, the Python installation, the package's
code: no task data, no repository) with a private tmpfs (its disk quota) over every folder anyone
may write to, with a wall-clock timeout, CPU-time, address-space, file-size and process-count
limits, no memory files, a scrubbed environment and a capped stdout/stderr
(vsdpo.render.sandbox.child, SECURITY.md). Where a layer cannot be had, jobs are refused unless the
caller opted in (``allow_weak``, or VSDPO_SANDBOX_ALLOW_WEAK=1); either way a warning says so once. The return
value must be plain data (dicts, lists, str, bytes, numbers, None): the pool checks the reply's frame,
decodes it with an unpickler that builds nothing else, and walks it once within the job's deadline,
refusing shared references and more nodes than its bytes can hold (vsdpo.render.sandbox.channel), so
a hostile job can neither run code in the caller nor make it build or read more than a bounded
reply. A reply refused there fails the job with error kind "invalid_reply".

Workers import matplotlib, pyplot, python-pptx, numpy and the libraries chart programs commonly use
once, so a job costs a fork, not an interpreter start. ``run_in_sandbox`` uses a module-level pool
started on first use; ``run_many`` and ``SandboxPool.map`` run several jobs side by side.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import queue
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from vsdpo.render.sandbox.channel import ReplyError, ReplyRefused, receive, send, unpack_reply
from vsdpo.render.sandbox.child import ALLOW_WEAK_ENV, DEFAULT_DISK_BYTES, SANDBOX_ROOT, sweep_job_folders

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
    "vsdpo.render.chart.child",
    "vsdpo.metrics.chartmimic_trace",
    "vsdpo.render.slides.child",
)
# Time a worker gets beyond the job's own timeout to kill, sweep and answer before it is replaced.
SUPERVISION_GRACE_S = 30.0
# A reply that comes back as its job's time runs out still gets this long to be checked.
MIN_DECODE_S = 2.0
# The only variables of the caller's environment a worker gets; a job gets fewer still.
WORKER_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "MPLCONFIGDIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    ALLOW_WEAK_ENV,
)
# What a job may say of its own failure; the pool adds "invalid_reply" (a reply it refused).
ERROR_KINDS = frozenset(
    {
        "timeout",
        "memory",
        "cpu_limit",
        "file_size",
        "killed",
        "exited",
        "exception",
        "output_limit",
        "sandbox",
    }
)


@dataclass
class SandboxLimits:
    """Resource limits of one job. ``None`` leaves a limit unset."""

    memory_bytes: int | None = 4 << 30  # address space; matplotlib alone maps ~1 GB
    cpu_s: float | None = None  # default: the wall-clock timeout, rounded up
    file_bytes: int | None = 64 << 20
    processes: int | None = 64
    open_files: int | None = 1024  # matplotlib keeps its font files open in the worker
    output_bytes: int = 1 << 20  # stdout and stderr each
    result_bytes: int = 64 << 20
    disk_bytes: int | None = DEFAULT_DISK_BYTES  # the job's private tmpfs: everything it writes


@dataclass
class SandboxResult:
    ok: bool
    value: Any = None
    error: str | None = None
    error_kind: str | None = None  # one of ERROR_KINDS, or "invalid_reply"
    elapsed_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    traceback: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_warned: set[tuple[tuple[str, ...], bool]] = set()


def _warn_once(missing: tuple[str, ...], allowed: bool) -> None:
    if (missing, allowed) in _warned:
        return
    _warned.add((missing, allowed))
    consequence = (
        "running untrusted code anyway, as asked"
        if allowed
        else f"refusing untrusted code (set {ALLOW_WEAK_ENV}=1 to run it anyway)"
    )
    warnings.warn(
        f"sandbox: this machine lacks the layers {', '.join(missing)}; {consequence}",
        RuntimeWarning,
        stacklevel=3,
    )


def _worker_env(root: str | None) -> dict[str, str]:
    env = {name: os.environ[name] for name in WORKER_ENV if name in os.environ}
    env["MPLBACKEND"] = "Agg"
    if root is not None:
        env["VSDPO_SANDBOX_ROOT"] = root
    return env


# Workers are started from this one long-lived thread: a worker asks to die with its parent
# (PR_SET_PDEATHSIG), and for Linux the parent is the *thread* that started it, so a worker started
# from a short-lived thread (a caller's ThreadPoolExecutor) would die when that thread ends.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vsdpo-sandbox-spawn")


class _Worker:
    def __init__(self, preload: tuple[str, ...], root: str | None):
        self.root = root
        # A scrubbed environment: what the worker execs with is what /proc/self/environ shows its jobs.
        self.process = _SPAWNER.submit(
            subprocess.Popen,
            [sys.executable, "-m", "vsdpo.render.sandbox.worker", *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_worker_env(root),
            start_new_session=True,
        ).result()
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
        # Its jobs died with it (they die with their parent); folders they made on the host go now.
        sweep_job_folders(self.process.pid, self.root or SANDBOX_ROOT)
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
        self,
        workers: int = 1,
        *,
        preload: Iterable[str] = DEFAULT_PRELOAD,
        root: str | None = None,
        allow_weak: bool | None = None,
    ):
        """``root``: folder for the working directories of jobs that get no private filesystem (default:
        $TMPDIR/vsdpo-sandbox). ``allow_weak``: run untrusted code even where a sandbox layer is missing
        (default: the VSDPO_SANDBOX_ALLOW_WEAK environment variable)."""
        if workers < 1:
            raise ValueError(f"workers: expected >= 1, got {workers}")
        self.size = workers
        self.root = root
        if allow_weak is None:
            allow_weak = os.environ.get(ALLOW_WEAK_ENV, "") not in ("", "0")
        self.allow_weak = allow_weak
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

    def grow_to(self, workers: int) -> SandboxPool:
        """At least ``workers`` workers from now on (a pool never shrinks); the new ones start when
        first needed."""
        if workers < 1:
            raise ValueError(f"workers: expected >= 1, got {workers}")
        with self._lock:
            if workers > self.size:
                if self._started:
                    for _ in range(workers - self.size):
                        self._idle.put(None)
                self.size = workers
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
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s: expected a finite number of seconds > 0, got {timeout_s!r}")
        limits = limits or SandboxLimits()
        limit_values = asdict(limits)
        if limit_values["cpu_s"] is None:
            limit_values["cpu_s"] = int(timeout_s) + 1
        job = {
            "entry": entry,
            "payload": payload,
            "timeout_s": float(timeout_s),
            "limits": limit_values,
            "allow_weak": self.allow_weak,
        }
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
        # The job's reply is checked within the job's own time (but never in less than MIN_DECODE_S).
        decode_by = max(start + timeout_s, time.monotonic() + min(timeout_s, MIN_DECODE_S))
        return self._result(reply, time.monotonic() - start, decode_by)

    def _result(
        self, reply: dict[str, Any], elapsed_s: float, deadline: float | None = None
    ) -> SandboxResult:
        """The SandboxResult of a worker's reply (trusted) around the job's reply (not trusted), which
        is checked by ``deadline`` (``time.monotonic()``)."""
        layers = reply.get("layers") or {}
        missing = tuple(layers.get("missing") or ())
        if missing:
            _warn_once(missing, self.allow_weak)
        common = {
            "elapsed_s": reply.get("elapsed_s", elapsed_s),
            "stdout": reply.get("stdout", ""),
            "stderr": reply.get("stderr", ""),
            "extra": {"uid": reply.get("uid"), "layers": list(layers.get("layers") or ())},
        }
        blob = reply.get("result_blob")
        if blob is None:
            return SandboxResult(ok=False, error=reply["error"], error_kind=reply["error_kind"], **common)
        try:
            child = unpack_reply(blob, deadline=deadline)
        except ReplyRefused as error:  # it decodes, but would cost more to read than its bytes allow
            return SandboxResult(
                ok=False, error=f"unreadable result: {error}", error_kind="invalid_reply", **common
            )
        except ReplyError as error:  # a reply that breaks the frame is the program's failure
            return SandboxResult(
                ok=False, error=f"unreadable result: {error}", error_kind="exception", **common
            )
        if not isinstance(child, dict) or not isinstance(child.get("ok"), bool):
            return SandboxResult(
                ok=False, error="unreadable result: not a reply", error_kind="exception", **common
            )
        if child["ok"]:
            return SandboxResult(ok=True, value=child.get("value"), **common)
        kind = child.get("error_kind")
        error, trace = child.get("error"), child.get("traceback")
        return SandboxResult(
            ok=False,
            error=error[:2000] if isinstance(error, str) else "the program failed",
            error_kind=kind if kind in ERROR_KINDS else "exception",
            traceback=trace[-20000:] if isinstance(trace, str) else None,
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
    """The process-wide pool (``VSDPO_SANDBOX_WORKERS`` workers, default 1, grown by a render pool to
    its number of threads), shut down at exit."""
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
