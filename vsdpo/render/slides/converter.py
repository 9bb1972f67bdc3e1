"""A LibreOffice kept running to draw decks, one per rendering thread, each in a sandbox of its own.

Starting LibreOffice costs about two seconds; drawing a small deck in a running one costs about a
tenth of that. So decks are drawn by converters that stay up between decks:

- each converter is a process, ``python -m vsdpo.render.slides.converter``, that isolates itself
  before it starts LibreOffice: the first process of new PID, mount, network, IPC and UTS namespaces,
  with the allow-listed, read-only root of the sandbox's jobs and a private tmpfs
  (vsdpo.render.sandbox.filesystem), then a fresh unprivileged uid with no capability, no_new_privs,
  the jobs' seccomp filter and resource limits (vsdpo.render.sandbox.privileges). Where the host has
  a memory cgroup to write (vsdpo.render.sandbox.memory), the converter first moves into one of its
  own, bounding everything its processes hold together (LibreOffice's included, and the pages of its
  tmpfs) as a per-deck job is bounded; a LibreOffice killed for passing it fails its deck with error
  kind ``memory``, and the next deck gets a fresh converter. It then starts
  LibreOffice headless, talks to it over UNO (``python3-uno``) through a pipe inside its namespace,
  and serves one deck at a time on its stdin and stdout;
- each deck gets a folder of its own, made for it and deleted, with whatever LibreOffice or poppler
  wrote in it, before the converter answers; the deck is opened hidden, read-only, with no macro run
  and no link updated, under the pptx filter whatever its bytes are, and closed after drawing; its
  external relationships are stripped first, as on the per-job path
  (``vsdpo.render.slides.picture.strip_external_links``);
- the caller holds a converter for one deck at a time. A deck still drawing when its deadline
  passes, a converter that dies or answers out of protocol, and a converter that has drawn
  ``CONVERTER_DECKS`` decks are killed (the whole PID namespace, LibreOffice with it); the next deck
  gets a fresh one. The reply is length-framed JSON and bytes, checked for size before it is read;
  nothing the converter sends is unpickled.

Where the converter cannot run (no ``python3-uno``; a sandbox layer missing and
VSDPO_SANDBOX_ALLOW_WEAK unset; LibreOffice not starting), a warning says why once and decks are
drawn as before, one sandbox job per deck with LibreOffice started in it; a converter is tried again
``RETRY_AFTER_S`` later, so that one start that failed under load does not slow the rest of a run.
``VSDPO_SLIDE_CONVERTER=job`` asks for that path; ``persistent`` (the default) for this one.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from vsdpo.render.sandbox import filesystem, memory, privileges
from vsdpo.render.sandbox.child import (
    ALLOW_WEAK_ENV,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    LAYERS,
    give_up_privileges,
    refusal,
    set_limits,
)
from vsdpo.render.sandbox.worker import JOB_UID_BASE, JOB_UID_SPAN

MODE_ENV = "VSDPO_SLIDE_CONVERTER"
MODES = ("persistent", "job")
# How long a fresh converter may take to isolate itself and have LibreOffice answer.
STARTUP_TIMEOUT_S = 90.0
# A converter is retired after this many decks, so that nothing LibreOffice accumulates lasts long.
CONVERTER_DECKS = 256
# Converters kept at most in one process; a caller past it waits for a free one.
MAX_CONVERTERS = max(2, os.cpu_count() or 1)
MAX_HEADER_BYTES = 1 << 16
MAX_PNG_BYTES = 64 << 20
MAX_DECK_BYTES = 256 << 20
# The converter's private tmpfs: LibreOffice's profile, one deck's folder at a time.
PRIVATE_BYTES = 1 << 30
# Per process of the converter, as the per-job drawing's limits (vsdpo.render.slides.picture).
MEMORY_BYTES = 8 << 30
# All of the converter's processes together, its tmpfs included, where a memory cgroup can be made:
# what a per-deck sandbox job gets (its memory limit plus its private disk).
CGROUP_BYTES = MEMORY_BYTES + PRIVATE_BYTES
# After a converter failed to start, decks are drawn the per-job way for this long, then one is tried again.
RETRY_AFTER_S = 60.0
# How long a killed converter's processes may take to leave its memory cgroup before it is removed.
REAP_WAIT_S = 2.0
PROCESSES = 256
FILE_BYTES = 512 << 20
WORKSPACE = "/tmp/converter"
SOFFICE_ARGS = ("--headless", "--invisible", "--norestore", "--nologo", "--nodefault", "--nolockcheck")
ENV_KEPT = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYTHONPATH",
    "PYTHONHOME",
    "LD_LIBRARY_PATH",
    "VSDPO_SOFFICE",
    ALLOW_WEAK_ENV,
)
PYUNO_PATHS = ("/usr/lib/python3/dist-packages", "/usr/lib/libreoffice/program")
_FRAME = struct.Struct("<II")  # header bytes, body bytes

_libc = ctypes.CDLL(None, use_errno=True)


class ConverterUnavailable(RuntimeError):
    """A converter cannot run on this machine; the reason says why."""


class ConverterFault(RuntimeError):
    """The converter died, hung past the deadline or broke the protocol; it has been killed."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


# --- the caller's side ------------------------------------------------------------------------------


def mode() -> str:
    chosen = os.environ.get(MODE_ENV, "persistent").strip().lower() or "persistent"
    if chosen not in MODES:
        raise ValueError(f"{MODE_ENV}: expected one of {', '.join(MODES)}, got {chosen!r}")
    return chosen


class DeckConverter:
    """One converter process and its LibreOffice; used by one thread at a time."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.decks = 0
        self.layers: list[str] = []
        self.tail: list[bytes] = []  # the last lines the converter wrote on stderr
        # A fresh uid in the range of the sandbox's jobs, far from any real account.
        self.uid = JOB_UID_BASE + random.randrange(JOB_UID_SPAN) if os.geteuid() == 0 else 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        env = {name: os.environ[name] for name in ENV_KEPT if name in os.environ}
        env["VSDPO_CONVERTER_UID"] = str(self.uid)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vsdpo.render.slides.converter"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        os.set_blocking(self.process.stdout.fileno(), False)
        os.set_blocking(self.process.stdin.fileno(), False)
        try:
            ready, _ = self._receive(time.monotonic() + STARTUP_TIMEOUT_S, max_body=0)
        except ConverterFault as error:
            detail = self._stderr()
            self.kill()
            raise ConverterUnavailable(f"the deck converter did not start: {error}{detail}") from None
        if not ready.get("ready"):
            self.kill()
            raise ConverterUnavailable(str(ready.get("error") or "the deck converter refused to start"))
        self.layers = [str(layer) for layer in ready.get("layers") or ()]
        self._drain_stderr()

    def draw(self, pptx: bytes, slide_size: tuple[int, int], count: int, timeout_s: float) -> dict[str, Any]:
        """``{"png": bytes | None}`` or ``{"error": str}`` for one deck; ConverterFault (the converter
        killed) when it does not answer within ``timeout_s`` or breaks the protocol."""
        deadline = time.monotonic() + timeout_s
        if len(pptx) > MAX_DECK_BYTES:
            return {"error": f"the deck is {len(pptx)} bytes, more than {MAX_DECK_BYTES}"}
        request = {"slide_size": [int(slide_size[0]), int(slide_size[1])], "count": int(count)}
        try:
            self._send(request, pptx, deadline)
            reply, png = self._receive(deadline, max_body=MAX_PNG_BYTES)
        except ConverterFault as error:
            self._out_of_memory(error)
            self.kill()
            raise
        self.decks += 1
        if reply.get("fault"):
            said = b"".join(self.tail[-3:]).decode(errors="replace").strip()
            error = ConverterFault(
                f"{reply.get('error') or 'LibreOffice stopped'}{f' ({said})' if said else ''}", "fault"
            )
            self._out_of_memory(error)
            self.kill()
            raise error
        if reply.get("error"):
            return {"error": str(reply["error"])[:2000]}
        return {"png": png if reply.get("png") else None}

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        for stream in (process.stdin, process.stdout, process.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        _remove_cgroup(process.pid)

    def _out_of_memory(self, error: ConverterFault) -> None:
        """Make a fault that the kernel caused, killing a process of the converter for passing its
        memory cgroup's bound, a fault of kind ``memory``."""
        process = self.process
        if process is None or error.kind not in ("fault", "timeout"):
            return
        if memory.out_of_memory_kills(os.getpid(), process.pid):
            error.kind = "memory"
            error.args = (f"the deck ran LibreOffice out of the converter's memory cgroup: {error}",)

    def _send(self, header: dict[str, Any], body: bytes, deadline: float) -> None:
        fd = self.process.stdin.fileno()
        view = memoryview(_frame(header, body))
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConverterFault("the converter did not take the deck in time", "timeout")
            _, writable, _ = select.select([], [fd], [], left)
            if not writable:
                continue
            try:
                written = os.write(fd, view[: 1 << 16])
            except BlockingIOError:
                continue
            except OSError as error:
                raise ConverterFault(f"the converter is gone ({error})", "fault") from None
            view = view[written:]

    def _receive(self, deadline: float, max_body: int) -> tuple[dict[str, Any], bytes]:
        head = self._read(_FRAME.size, deadline)
        header_bytes, body_bytes = _FRAME.unpack(head)
        if header_bytes > MAX_HEADER_BYTES or body_bytes > max_body:
            raise ConverterFault(
                f"a reply of {header_bytes}+{body_bytes} bytes is out of bounds", "invalid_reply"
            )
        try:
            header = json.loads(self._read(header_bytes, deadline))
        except ValueError:
            raise ConverterFault("the reply's header is not JSON", "invalid_reply") from None
        if not isinstance(header, dict):
            raise ConverterFault("the reply's header is not a mapping", "invalid_reply")
        return header, self._read(body_bytes, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        chunks, got = [], 0
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConverterFault("no answer before the deadline", "timeout")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            try:
                chunk = os.read(fd, min(size - got, 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise ConverterFault("the converter closed its channel", "fault")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _drain_stderr(self) -> None:
        """Keep the converter's stderr from filling up: read it on a daemon thread, keep the tail."""
        stream, tail = self.process.stderr, self.tail

        def drain() -> None:
            with contextlib.suppress(OSError, ValueError):
                for line in stream:
                    tail.append(line)
                    del tail[:-20]

        threading.Thread(target=drain, name="vsdpo-converter-stderr", daemon=True).start()

    def _stderr(self) -> str:
        process = self.process
        if process is None or process.stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            os.set_blocking(process.stderr.fileno(), False)
            text = (process.stderr.read() or b"").decode(errors="replace").strip()
            return f" ({text[-500:]})" if text else ""
        return ""


class _Converters:
    """The converters of this process: idle ones kept for the next deck, at most MAX_CONVERTERS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[DeckConverter] = []
        self.slots = threading.BoundedSemaphore(MAX_CONVERTERS)
        self.unavailable: str | None = None
        self.retry_at = 0.0  # while unavailable, when a converter is tried again
        self.started = 0

    def take(self) -> DeckConverter:
        self.slots.acquire()
        try:
            with self.lock:
                while self.idle:
                    converter = self.idle.pop()
                    if converter.alive:
                        return converter
                    converter.kill()
                if self.unavailable and time.monotonic() < self.retry_at:
                    raise ConverterUnavailable(self.unavailable)
                _remove_cgroups_left()
            converter = DeckConverter()
            try:
                converter.start()
            except ConverterUnavailable as error:
                with self.lock:
                    self.unavailable, self.retry_at = str(error), time.monotonic() + RETRY_AFTER_S
                raise
            with self.lock:
                self.started += 1
                self.unavailable = None
            return converter
        except BaseException:
            self.slots.release()
            raise

    def give_back(self, converter: DeckConverter) -> None:
        try:
            if converter.alive and converter.decks < CONVERTER_DECKS:
                with self.lock:
                    self.idle.append(converter)
            else:
                converter.kill()
        finally:
            self.slots.release()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for converter in idle:
            converter.kill()


_converters = _Converters()
_warned: set[str] = set()
_cgroups_left: set[int] = set()  # converters whose memory cgroup outlived REAP_WAIT_S


def _remove_cgroup(pid: int) -> None:
    """Remove the memory cgroup of the converter ``pid`` once its processes have left it; one that
    is still busy after REAP_WAIT_S is tried again before the next converter starts, and at exit."""
    if memory.remove_when_empty(os.getpid(), pid, REAP_WAIT_S):
        _cgroups_left.discard(pid)
    else:
        _cgroups_left.add(pid)


def _remove_cgroups_left() -> None:
    for pid in list(_cgroups_left):
        if memory.remove(os.getpid(), pid) or not memory.exists(os.getpid(), pid):
            _cgroups_left.discard(pid)


def _after_fork() -> None:
    """A forked child shares none of its parent's converters (their pipes are the parent's)."""
    global _converters
    _converters = _Converters()
    _cgroups_left.clear()


def _close_at_exit() -> None:
    _converters.close()
    _remove_cgroups_left()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_close_at_exit)


def draw(pptx: bytes, slide_size: tuple[int, int], count: int, timeout_s: float) -> dict[str, Any] | None:
    """Draw with a persistent converter: ``{"png": ...}``, ``{"error": ...}``, or
    ``{"error": ..., "error_kind": "timeout" | "fault" | "invalid_reply"}`` when the converter had to
    be killed; None where converters cannot run here (the caller draws the deck the per-job way)."""
    pool = _converters
    try:
        converter = pool.take()
    except ConverterUnavailable as error:
        reason = str(error)
        if reason not in _warned:
            _warned.add(reason)
            warnings.warn(
                f"slides: decks are drawn one LibreOffice per deck, slower: {reason}",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    # Starting a converter is the renderer's cost, not the deck's: the deck's time starts once it is up.
    try:
        return converter.draw(pptx, slide_size, count, timeout_s)
    except ConverterFault as error:
        return {"error": str(error), "error_kind": error.kind}
    finally:
        pool.give_back(converter)


def close_all() -> None:
    """Stop every idle converter of this process (the next deck starts a fresh one)."""
    _converters.close()


def converters_started() -> int:
    return _converters.started


# --- the converter's side ----------------------------------------------------------------------------


def _frame(header: dict[str, Any], body: bytes) -> bytes:
    """One message of the channel, either way: the two lengths, the JSON header, the body."""
    data = json.dumps(header).encode()
    return _FRAME.pack(len(data), len(body)) + data + body


def _write_frame(fd: int, header: dict[str, Any], body: bytes = b"") -> None:
    view = memoryview(_frame(header, body))
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_request(fd: int) -> tuple[dict[str, Any], bytes] | None:
    head = _read_exactly(fd, _FRAME.size)
    if head is None:
        return None
    header_bytes, body_bytes = _FRAME.unpack(head)
    if header_bytes > MAX_HEADER_BYTES or body_bytes > MAX_DECK_BYTES:
        return None
    header = _read_exactly(fd, header_bytes)
    body = _read_exactly(fd, body_bytes)
    if header is None or body is None:
        return None
    return json.loads(header), body


def _isolate(channel: tuple[int, ...]) -> tuple[set[str], list[str]]:
    """Namespaces, the jobs' root, a fresh uid, no privileges, the seccomp filter: the layers got.

    Called as the converter starts; the process that called it returns in the PID namespace's first
    process (its parent only waits for it, and exits with it, holding none of the ``channel`` fds)."""
    layers: set[str] = set()
    notes: list[str] = []
    if os.geteuid() != 0:
        notes.append("not root: no namespaces, no fresh uid")
        return layers, notes
    try:  # while /sys is still the host's; named after the caller and this process, as a job's
        cgroup = memory.JobCgroup.prepare(os.getppid())
        if cgroup is not None:
            try:
                cgroup.enter(CGROUP_BYTES)
                layers.add("memory_cgroup")
            finally:
                cgroup.close()
    except OSError as error:
        notes.append(f"memory_cgroup: {error}")
    flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if _libc.unshare(flags) != 0:
        notes.append(f"namespaces: {os.strerror(ctypes.get_errno())}")
        return layers, notes
    child = os.fork()
    if child:
        # The channel is the child's; without these ends open here, its death reads as EOF at once.
        for fd in (0, 1, *channel):
            os.close(fd)
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    privileges.die_with_parent(signal.SIGKILL)
    layers.update(("pid_namespace", "mount_namespace", "network_namespace", "ipc_namespace", "uts_namespace"))
    try:
        filesystem.isolate(PRIVATE_BYTES, fresh_proc=True)
        layers.add("private_filesystem")
    except OSError as error:
        notes.append(f"private_filesystem: {error}")
    set_limits({"memory_bytes": MEMORY_BYTES, "processes": PROCESSES, "file_bytes": FILE_BYTES})
    syscalls = privileges.syscall_filter()
    if syscalls is None:
        notes.append("seccomp: libseccomp is missing")
    uid = int(os.environ.get("VSDPO_CONVERTER_UID") or 0)
    got, said = give_up_privileges(uid or None, syscalls)
    return layers | got, notes + said


class _Office:
    """LibreOffice headless and the UNO desktop that drives it, inside the converter."""

    def __init__(self, uno: Any, soffice: str):
        from com.sun.star.beans import PropertyValue  # noqa: PLC0415 - only importable once uno is

        self._property = PropertyValue
        name = f"vsdpo-converter-{os.getpid()}-{random.randrange(1 << 32):08x}"
        profile = Path(WORKSPACE, "profile")
        self.process = subprocess.Popen(
            [
                soffice,
                f"-env:UserInstallation={profile.as_uri()}",
                *SOFFICE_ARGS,
                f"--accept=pipe,name={name};urp;",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                context = resolver.resolve(f"uno:pipe,name={name};urp;StarOffice.ComponentContext")
                break
            except Exception:  # noqa: BLE001 - NoConnectException until LibreOffice listens
                if self.process.poll() is not None:
                    raise RuntimeError(f"LibreOffice exited with status {self.process.returncode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("LibreOffice did not answer on its pipe") from None
                time.sleep(0.05)
        self.desktop = context.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", context)

    def _properties(self, **values: Any) -> tuple:
        made = []
        for name, value in values.items():
            item = self._property()
            item.Name, item.Value = name, value
            made.append(item)
        return tuple(made)

    def to_pdf(self, deck: Path, pdf: Path) -> bool:
        """Draw ``deck`` into ``pdf``; False when LibreOffice cannot open it as a presentation."""
        load = self._properties(
            Hidden=True,
            ReadOnly=True,
            MacroExecutionMode=0,  # NEVER_EXECUTE
            UpdateDocMode=0,  # NO_UPDATE: links are not refreshed
            FilterName="Impress MS PowerPoint 2007 XML",
        )
        document = self.desktop.loadComponentFromURL(deck.as_uri(), "_blank", 0, load)
        if document is None:
            return False
        try:
            document.storeToURL(pdf.as_uri(), self._properties(FilterName="impress_pdf_Export"))
        finally:
            with contextlib.suppress(Exception):
                document.close(True)
        return True

    def lost(self, error: Exception) -> bool:
        """Whether ``error`` means LibreOffice is gone: it exited, or its end of the bridge is
        disposed (pyuno names the exception's class after its UNO type), or it no longer answers."""
        if self.process.poll() is not None or "DisposedException" in type(error).__name__:
            return True
        try:
            self.desktop.getComponents()
        except Exception:  # noqa: BLE001 - any failure of the bridge itself
            return True
        return False

    def close_leftovers(self) -> None:
        """Close whatever document is still open (none, unless one would not close)."""
        components = self.desktop.getComponents().createEnumeration()
        while components.hasMoreElements():
            with contextlib.suppress(Exception):
                components.nextElement().close(True)


def serve(soffice: str | None = None) -> None:
    """Body of the converter process (see the module's docstring)."""
    channel_in, channel_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # nothing but frames on the channel
    os.close(null)
    for path in PYUNO_PATHS:
        if path not in sys.path:
            sys.path.append(path)
    try:
        import uno  # noqa: PLC0415
    except ImportError as error:
        _write_frame(channel_out, {"ready": False, "error": f"python3-uno is not installed ({error})"})
        return
    from vsdpo.render.slides import picture  # noqa: PLC0415

    soffice = soffice or picture.SOFFICE
    if not os.path.exists(soffice):
        _write_frame(channel_out, {"ready": False, "error": f"LibreOffice: no executable at {soffice!r}"})
        return
    layers, notes = _isolate((channel_in, channel_out))
    missing = [layer for layer in LAYERS if layer not in layers]
    if missing and os.environ.get(ALLOW_WEAK_ENV, "") in ("", "0"):
        error = f"{refusal(missing)} ({'; '.join(notes)})"
        _write_frame(channel_out, {"ready": False, "error": error})
        return
    home = Path(WORKSPACE, "home")
    home.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.environ.clear()
    os.environ.update(PATH="/usr/local/bin:/usr/bin:/bin", LANG="C.UTF-8", LC_ALL="C.UTF-8", HOME=str(home))
    os.environ["TMPDIR"] = str(home)
    try:
        office = _Office(uno, soffice)
    except Exception as error:  # noqa: BLE001 - why LibreOffice would not start, for the caller
        _write_frame(channel_out, {"ready": False, "error": f"LibreOffice did not start: {error}"})
        return
    _write_frame(channel_out, {"ready": True, "layers": sorted(layers), "missing": missing, "notes": notes})
    for number in range(CONVERTER_DECKS):
        request = _read_request(channel_in)
        if request is None:
            break
        header, pptx = request
        folder = Path(WORKSPACE, f"deck-{number}")
        folder.mkdir(mode=0o700)
        try:
            reply = _draw_one(office, picture, folder, pptx, header)
            png = reply.pop("png_bytes", b"")
        except Exception as error:  # noqa: BLE001
            fault = office.lost(error)
            reply, png = {"error": f"{type(error).__name__}: {error}"[:2000], "fault": fault}, b""
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if reply.get("fault"):
            _write_frame(channel_out, reply)
            break
        with contextlib.suppress(Exception):
            office.close_leftovers()
        _write_frame(channel_out, reply, png)
    with contextlib.suppress(Exception):
        office.desktop.terminate()
    office.process.kill()


def _draw_one(
    office: _Office, picture: Any, folder: Path, pptx: bytes, header: dict[str, Any]
) -> dict[str, Any]:
    slide_w, slide_h = (int(side) for side in header["slide_size"])
    count = int(header["count"])
    deck = folder / "deck.pptx"
    try:
        deck.write_bytes(picture.strip_external_links(pptx))
    except Exception as error:  # noqa: BLE001 - not a zip, or relationships that are not XML
        return {"error": f"the deck cannot be read: {type(error).__name__}: {error}"}
    pdf = deck.with_suffix(".pdf")
    if not office.to_pdf(deck, pdf) or not pdf.exists():
        return {"error": "LibreOffice could not open the deck as a presentation"}
    png = picture.rasterise(pdf, (slide_w, slide_h), count, folder)
    return {"png": png is not None, "png_bytes": png or b""}


if __name__ == "__main__":
    serve()
