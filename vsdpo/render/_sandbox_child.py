"""What happens inside the forked child of a sandbox worker, before and around the untrusted call.

The worker forks each child ahead of its job (``standby``): the child first does what no job
decides, leaving the worker's process group, network and mount namespace, then waits on a pipe for
its one job. Order matters after that: it imports the entry (trusted code, with full rights), then
gives up everything it can before the call: a private /tmp, resource limits, an unprivileged uid of
its own (keeping only the right to read files, so installed packages stay importable), a scrubbed
environment, and an audit hook that refuses writes outside its working directory and, where no
network namespace could be made, any socket.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import pickle
import resource
import signal
import sys
import traceback
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_BIND = 4096
MS_RDONLY = 1
MS_REMOUNT = 32
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
PATH_EVENTS = ("os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.symlink", "os.link", "os.chmod")
SOCKET_EVENTS = ("socket.__new__", "socket.connect", "socket.bind")
SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "MPLBACKEND": "Agg",
}

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _unshare(flags: int) -> bool:
    return _libc.unshare(flags) == 0


def _own_mount_namespace() -> bool:
    """A mount namespace whose mounts stay inside it, ready for the job's private /tmp."""
    return _unshare(CLONE_NEWNS) and _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0


def _installation_under(place: str) -> list[str]:
    """The entries of ``place`` that hold this Python installation (a checkout or virtual environment
    under /tmp, say): covering ``place`` must not hide the code and data the job still reads."""
    base = os.path.realpath(place)
    entries = set()
    for path in {sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path}:
        real = os.path.realpath(path) if path else ""
        if real.startswith(base + os.sep):
            entries.add(os.path.join(base, real[len(base) + 1 :].split(os.sep)[0]))
    return sorted(entries)


def _private_tmp(workdir: str) -> None:
    """Bind the job's own directory over every world-writable place (in the child's own mount
    namespace); the parts of the Python installation that lived there come back, read-only."""
    for place in WORLD_WRITABLE:
        if not os.path.isdir(place):
            continue
        keep = [(path, os.open(path, os.O_PATH)) for path in _installation_under(place)]
        try:
            if _libc.mount(workdir.encode(), place.encode(), None, MS_BIND, None) != 0:
                continue
            for path, fd in keep:  # the same path, now inside the job's directory
                os.makedirs(path, exist_ok=True)
                source = f"/proc/self/fd/{fd}".encode()
                _libc.mount(source, path.encode(), None, MS_BIND | MS_REC, None)
                _libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        finally:
            for _, fd in keep:
                os.close(fd)


def _drop_privileges(uid: int) -> None:
    """Become ``uid``, keeping only CAP_DAC_READ_SEARCH so that libraries under /root stay readable."""
    _libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_DAC_READ_SEARCH
    _libc.capset(ctypes.byref(header), data)
    # Cleared by setuid, so set after it: the job dies with its worker.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _set_limits(limits: dict[str, Any]) -> None:
    def cap(which: int, value: float | None) -> None:
        if value is not None:
            resource.setrlimit(which, (int(value), int(value)))

    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_AS, limits.get("memory_bytes"))
    cpu = limits.get("cpu_s")
    if cpu is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu) + 1))
    cap(resource.RLIMIT_FSIZE, limits.get("file_bytes"))
    cap(resource.RLIMIT_NPROC, limits.get("processes"))
    cap(resource.RLIMIT_NOFILE, limits.get("open_files"))


def _install_guard(workdir: str, block_sockets: bool) -> None:
    """Refuse, from inside Python, writes outside the working directory and (if needed) sockets."""
    allowed = (os.path.realpath(workdir) + os.sep, "/dev/null")
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def inside(path: Any) -> bool:
        if isinstance(path, int):
            return True
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        real = os.path.realpath(os.fspath(path))
        return real == allowed[0][:-1] or real.startswith(allowed[0]) or real == allowed[1]

    watched = frozenset(("open", *PATH_EVENTS, *(SOCKET_EVENTS if block_sockets else ())))

    def guard(event: str, args: tuple) -> None:
        # Called for every audited event (tens of thousands per chart, mostly attribute reads): the
        # events it does not watch must leave at the first test.
        if event not in watched:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(flags & write_flags)
            if writing and path is not None and not inside(path):
                raise PermissionError(
                    f"sandbox: writing outside the working directory is not allowed: {path}"
                )
        elif event in PATH_EVENTS:
            for path in args[:2]:
                if isinstance(path, str | bytes | os.PathLike) and not inside(path):
                    raise PermissionError(
                        f"sandbox: {event} outside the working directory is not allowed: {path}"
                    )
        else:  # a socket event, watched only when no network namespace could be made
            raise PermissionError("sandbox: network access is not allowed")

    sys.addaudithook(guard)


def _resolve(entry: str):
    module_name, _, function_name = entry.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"entry: expected 'package.module:function', got {entry!r}")
    return getattr(importlib.import_module(module_name), function_name)


def _receive_job(job_fd: int) -> dict[str, Any] | None:
    """The worker's message (trusted): the job, its working directory and uid; None if it sent none."""
    blob = bytearray()
    while chunk := os.read(job_fd, 1 << 16):
        blob += chunk
    os.close(job_fd)
    return pickle.loads(blob) if blob else None


def standby(worker_pid: int, job_fd: int, result_fd: int, privileged: bool) -> None:
    """Body of a child forked ahead of its job; never returns.

    It dies with the worker, and leaves without running anything if the worker closes ``job_fd``
    before sending a job.
    """
    status = 0
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != worker_pid:  # the worker died before the line above took effect
            os._exit(0)
        # What no job decides is done while waiting: this is what forking ahead saves a job.
        os.setsid()
        network_isolated = _unshare(CLONE_NEWNET)
        own_mounts = privileged and _own_mount_namespace()
        message = _receive_job(job_fd)
        if message is None:
            os._exit(0)
        job, workdir, uid = message["job"], message["workdir"], message["uid"]
        function = _resolve(job["entry"])
        os.chdir(workdir)
        if uid is not None and own_mounts:
            _private_tmp(workdir)
            # The job's directory now is /tmp as the job sees it: one consistent view of where it may write.
            workdir = "/tmp"
            os.chdir(workdir)
        os.environ.clear()
        os.environ.update(SAFE_ENV, HOME=workdir, TMPDIR=workdir, MPLCONFIGDIR=workdir)
        import tempfile

        tempfile.tempdir = workdir
        _set_limits(job["limits"])
        if uid is not None:
            _drop_privileges(uid)
        _install_guard(workdir, block_sockets=not network_isolated)
        try:
            value = function(job["payload"])
            reply = {"ok": True, "value": value}
        except MemoryError:
            reply = {
                "ok": False,
                "error_kind": "memory",
                "error": "MemoryError: the program ran out of memory",
            }
        except SystemExit as error:
            reply = {"ok": False, "error_kind": "exited", "error": f"the program called exit({error.code!r})"}
        except BaseException as error:  # noqa: BLE001 - everything the program raises is its failure
            reply = {
                "ok": False,
                "error_kind": "exception",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        try:
            blob = pickle.dumps(reply, protocol=4)
        except Exception as error:  # noqa: BLE001
            blob = pickle.dumps(
                {"ok": False, "error_kind": "exception", "error": f"the result is not plain data: {error}"}
            )
        sys.stdout.flush()
        sys.stderr.flush()
        view = memoryview(blob)
        while view:
            view = view[os.write(result_fd, view) :]
    except MemoryError:
        status = 3
    except BaseException:  # noqa: BLE001 - the set-up itself failed; say so on stderr and exit non-zero
        traceback.print_exc()
        status = 4
    finally:
        os._exit(status)


def exec_program(payload: dict[str, Any]) -> Any:
    """A ready-made entry: run ``payload["code"]`` as a script and return the value it binds to ``result``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(payload["code"], payload.get("filename", "<program>"), "exec"), namespace)
    return namespace.get("result")
