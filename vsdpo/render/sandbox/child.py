"""What happens in the processes of a job, before and around the untrusted call.

Two processes per job where the host allows it, both forked ahead of the job (``standby``) by the
worker's template, a process that holds the preloaded libraries and nothing of any job
(vsdpo.render.sandbox.worker):

- the *holder*, forked as the first process (the init) of a new PID namespace: it leaves the
  worker's session, opens where the job's memory cgroup will be (vsdpo.render.sandbox.memory), makes
  the job's network, IPC, UTS and mount namespaces and its allow-listed root
  (vsdpo.render.sandbox.filesystem) with the namespace's own /proc, forks the job and reaps. When the
  job ends, it kills and reaps whatever the job left running (daemons included), removes the job's
  cgroup, sends the job's exit status to the worker, and ends, which ends the namespace;
- the *job*: waits for its one job, imports the entry (trusted code, still as root), then gives up
  everything it can before the call: resource limits (the memory of all its processes together in
  the cgroup, where the host has one), a scrubbed environment, a fresh uid with no capability,
  no_new_privs, the seccomp filter (vsdpo.render.sandbox.privileges). It writes which
  layers it got on a pipe that it closes before the program starts, and refuses to run the program if
  one is missing, unless the caller opted in to a weaker sandbox.

Each process dies with its parent: killing the caller ends its workers, and with them every job.
Where no PID namespace can be made (not root), the holder runs the job itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib
import json
import os
import pickle
import resource
import shutil
import signal
import struct
import sys
import tempfile
import traceback
from typing import Any

from vsdpo.render.sandbox import filesystem, memory, privileges
from vsdpo.render.sandbox.channel import pack_reply

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# Made by the holder; the PID namespace is made by the worker as it forks the holder.
NAMESPACES = {
    "network_namespace": CLONE_NEWNET,
    "ipc_namespace": CLONE_NEWIPC,
    "uts_namespace": CLONE_NEWUTS,
    "mount_namespace": CLONE_NEWNS,
}
# Every layer a job must get before untrusted code runs; SECURITY.md says what each one stops.
LAYERS = (
    "uid",
    "no_capabilities",
    "no_new_privs",
    "seccomp",
    "network_namespace",
    "ipc_namespace",
    "mount_namespace",
    "pid_namespace",
    "private_filesystem",
)
# "memory_cgroup" is reported too where the host has a memory cgroup to write
# (vsdpo.render.sandbox.memory), and not required: without it each process is bound by its address space.
ALLOW_WEAK_ENV = "VSDPO_SANDBOX_ALLOW_WEAK"
# The size of the job's tmpfs before its job arrives; a job asking for another size gets it resized.
DEFAULT_DISK_BYTES = 256 << 20
PATH_EVENTS = ("os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.symlink", "os.link", "os.chmod")
SOCKET_EVENTS = ("socket.__new__", "socket.connect", "socket.bind")
SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "MPLBACKEND": "Agg",
}
# Parent folder of the working directories of jobs that get no private filesystem.
SANDBOX_ROOT = os.environ.get("VSDPO_SANDBOX_ROOT") or os.path.join(tempfile.gettempdir(), "vsdpo-sandbox")
EXIT_OUT_OF_MEMORY = 3
EXIT_SETUP_FAILED = 4

_libc = ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> bool:
    return _libc.unshare(flags) == 0


def set_limits(limits: dict[str, Any]) -> None:
    """This process's resource limits: ``SandboxLimits`` fields as a mapping (None: not limited)."""

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


def sweep_job_folders(worker_pid: int, root: str = SANDBOX_ROOT) -> None:
    """Remove the working directories that jobs of worker ``worker_pid`` made on the host (only jobs
    without a private filesystem make one)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            if name.startswith(f"job-{worker_pid}-"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _resolve(entry: str):
    module_name, _, function_name = entry.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"entry: expected 'package.module:function', got {entry!r}")
    return getattr(importlib.import_module(module_name), function_name)


def _receive_job(job_fd: int) -> dict[str, Any] | None:
    """The worker's message (trusted): the job and its uid; None if it sent none."""
    blob = bytearray()
    while chunk := os.read(job_fd, 1 << 16):
        blob += chunk
    os.close(job_fd)
    return pickle.loads(blob) if blob else None


def _write_all(fd: int, chunks: list[bytes | memoryview]) -> None:
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        while view:
            view = view[os.write(fd, view) :]


def _quiet() -> None:
    """Point stdin, stdout and stderr at /dev/null: the job's pipes must close when the job does."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


class JobSetup:
    """What the processes of one job share: the pipes' ends and the layers made so far."""

    def __init__(
        self, worker_pid: int, parent_pid: int, fds: dict[str, int], privileged: bool, syscalls: Any
    ):
        self.worker_pid = worker_pid  # names the job folders made on the host (none with a private root)
        self.parent_pid = parent_pid  # the template that forked the holder
        # "job" (read); "result", "report" and "status" (write); stdout and stderr are 1 and 2.
        self.fds = fds
        self.privileged = privileged
        self.syscalls = syscalls
        self.layers: set[str] = set()
        self.notes: list[str] = []
        self.cgroup: memory.JobCgroup | None = None

    def hold(self) -> None:
        """Body of the holder (see the module's docstring); never returns."""
        _exit_after(self._hold)

    def _hold(self) -> None:
        privileges.die_with_parent(signal.SIGKILL)
        in_namespace = os.getpid() == 1  # forked into a PID namespace of its own
        # The template died before the line above took effect (outside a namespace the parent shows;
        # inside, a dead worker closes the job pipe, and the job leaves when it reads nothing).
        if not in_namespace and os.getppid() != self.parent_pid:
            os._exit(0)
        os.setsid()
        if self.privileged and in_namespace:
            try:
                self.cgroup = memory.JobCgroup.prepare(self.worker_pid)
            except OSError as error:
                self.notes.append(f"memory_cgroup: {error}")
        self._make_namespaces(in_namespace)
        if in_namespace:
            if "private_filesystem" in self.layers:  # its /proc is the namespace's own already
                self.layers.add("pid_namespace")
            else:
                try:
                    filesystem.mount_proc()
                    self.layers.add("pid_namespace")
                except OSError as error:  # the host's /proc would still list the host's processes
                    self.notes.append(f"pid_namespace: {error}")
            self._init()
        self._run()

    def _make_namespaces(self, in_namespace: bool) -> None:
        if not self.privileged:
            if _unshare(CLONE_NEWNET):  # possible for some unprivileged users; refused for most
                self.layers.add("network_namespace")
            return
        for name, flag in NAMESPACES.items():
            if _unshare(flag):
                self.layers.add(name)
            else:
                self.notes.append(f"{name}: {os.strerror(ctypes.get_errno())}")
        if "mount_namespace" in self.layers:
            try:
                filesystem.isolate(DEFAULT_DISK_BYTES, fresh_proc=in_namespace)
                self.layers.add("private_filesystem")
            except OSError as error:
                self.notes.append(f"private_filesystem: {error}")

    def _init(self) -> None:
        """Body of the PID namespace's init: fork the job, reap; when the job ends, kill and reap
        whatever it left, then tell the worker how the job ended. Never returns."""
        job = os.fork()
        if job == 0:
            os.close(self.fds.pop("status"))
            self._run()
        status_fd = self.fds.pop("status")
        for fd in self.fds.values():
            os.close(fd)
        _quiet()
        status = None
        while True:
            try:
                pid, raw = os.waitpid(-1, 0)
            except ChildProcessError:  # everything of the job is gone
                break
            if pid == job:
                status = raw
                with contextlib.suppress(ProcessLookupError):  # none left is the usual case
                    os.kill(-1, signal.SIGKILL)  # every other process of the namespace
        if self.cgroup is not None:
            # The kernel's OOM killer sends SIGKILL: the job ran out of the memory of its cgroup.
            killed = status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            if killed and self.cgroup.out_of_memory_kills():
                status = EXIT_OUT_OF_MEMORY << 8
            self.cgroup.remove()
            self.cgroup.close()
        # Sent once nothing of the job runs any more: the worker may answer at once, while this
        # process and the namespace are still being torn down.
        os.write(status_fd, struct.pack("<i", status if status is not None else 0))
        os._exit(0)

    def _run(self) -> None:
        """Body of the job: wait for it, give up every privilege, run it, reply. Never returns."""
        _exit_after(self._job)

    def _job(self) -> None:
        if "status" in self.fds:  # the holder's to write, never the program's
            os.close(self.fds.pop("status"))
        message = _receive_job(self.fds["job"])
        if message is None:
            os._exit(0)
        job, uid = message["job"], message["uid"]
        function = _resolve(job["entry"])
        workdir = self._workdir(job["limits"], uid)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(SAFE_ENV, HOME=workdir, TMPDIR=workdir, MPLCONFIGDIR=workdir)
        tempfile.tempdir = workdir
        set_limits(job["limits"])
        self._limit_cgroup(job["limits"])
        self._give_up_privileges(uid)
        missing = [layer for layer in LAYERS if layer not in self.layers]
        # Written and closed before any untrusted code runs: the program cannot change it.
        report = {"layers": sorted(self.layers), "missing": missing, "notes": self.notes}
        _write_all(self.fds["report"], [json.dumps(report).encode()])
        os.close(self.fds["report"])
        if missing and not job.get("allow_weak"):
            reply = {"ok": False, "error_kind": "sandbox", "error": refusal(missing)}
        else:
            _install_guard(workdir, block_sockets="network_namespace" not in self.layers)
            reply = _call(function, job["payload"])
        chunks = _packed(reply)
        sys.stdout.flush()
        sys.stderr.flush()
        _write_all(self.fds["result"], chunks)

    def _workdir(self, limits: dict[str, Any], uid: int | None) -> str:
        """/tmp on the job's own tmpfs; else a fresh folder on the host's, swept by the worker."""
        if "private_filesystem" in self.layers:
            wanted = limits.get("disk_bytes") or DEFAULT_DISK_BYTES
            if wanted != DEFAULT_DISK_BYTES:
                filesystem.set_quota(int(wanted))
            return "/tmp"
        os.makedirs(SANDBOX_ROOT, mode=0o711, exist_ok=True)
        workdir = tempfile.mkdtemp(prefix=f"job-{self.worker_pid}-", dir=SANDBOX_ROOT)
        if uid is not None:
            os.chown(workdir, uid, uid)
        return workdir

    def _limit_cgroup(self, limits: dict[str, Any]) -> None:
        """Bound the memory of all of the job's processes: ``memory_bytes`` and, since the pages of its
        tmpfs are charged too, ``disk_bytes``. The descriptor it is made through is closed here."""
        if self.cgroup is None:
            return
        try:
            if limits.get("memory_bytes"):
                disk = limits.get("disk_bytes") or DEFAULT_DISK_BYTES
                self.cgroup.enter(int(limits["memory_bytes"]) + int(disk))
                self.layers.add("memory_cgroup")
        except OSError as error:
            self.notes.append(f"memory_cgroup: {error}")
        finally:
            self.cgroup.close()
            self.cgroup = None

    def _give_up_privileges(self, uid: int | None) -> None:
        layers, notes = give_up_privileges(uid, self.syscalls)
        self.layers |= layers
        self.notes += notes


def give_up_privileges(uid: int | None, syscalls: Any) -> tuple[set[str], list[str]]:
    """Become ``uid`` (when given) with no capability, die with the parent, no_new_privs, then load
    ``syscalls`` (the seccomp filter, when given): the layers got, and notes on those that failed."""
    layers: set[str] = set()
    notes: list[str] = []
    if uid is not None:
        privileges.drop_to(uid)
        layers.add("uid")
    if not any(privileges.capabilities().values()):
        layers.add("no_capabilities")
    # Cleared by the change of uid, so set after it: the process dies with its parent.
    privileges.die_with_parent(signal.SIGKILL)
    if privileges.forbid_new_privileges():
        layers.add("no_new_privs")
    if syscalls is not None:
        try:
            syscalls.load()
            layers.add("seccomp")
        except OSError as error:
            notes.append(f"seccomp: {error}")
    return layers, notes


def refusal(missing: list[str]) -> str:
    return (
        f"this machine cannot give untrusted code every sandbox layer (missing: {', '.join(missing)}); "
        f"run as root on Linux with namespaces and libseccomp, or set {ALLOW_WEAK_ENV}=1 to run it anyway"
    )


def _call(function, payload: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "value": function(payload)}
    except MemoryError:
        return {"ok": False, "error_kind": "memory", "error": "MemoryError: the program ran out of memory"}
    except OSError as error:
        if error.errno == errno.ENOMEM:  # mmap, a memory file: the same fault as a MemoryError
            return {"ok": False, "error_kind": "memory", "error": f"the program ran out of memory: {error}"}
        return {
            "ok": False,
            "error_kind": "exception",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }
    except SystemExit as error:
        return {"ok": False, "error_kind": "exited", "error": f"the program called exit({error.code!r})"}
    except BaseException as error:  # noqa: BLE001 - everything the program raises is its failure
        return {
            "ok": False,
            "error_kind": "exception",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }


def _packed(reply: dict[str, Any]) -> list[bytes | memoryview]:
    try:
        return pack_reply(reply)
    except Exception as error:  # noqa: BLE001
        return pack_reply(
            {"ok": False, "error_kind": "exception", "error": f"the result is not plain data: {error}"}
        )


def _exit_after(body) -> None:
    """Run ``body``, then exit: 0, or 3 when out of memory, or 4 (the traceback on stderr) when the
    set-up itself failed. Never returns."""
    status = 0
    try:
        body()
    except MemoryError:
        status = EXIT_OUT_OF_MEMORY
    except BaseException:  # noqa: BLE001 - the set-up itself failed; say so on stderr and exit non-zero
        traceback.print_exc()
        status = EXIT_SETUP_FAILED
    os._exit(status)


def standby(worker_pid: int, parent_pid: int, fds: dict[str, int], privileged: bool, syscalls: Any) -> None:
    """Body of a child forked ahead of its job by the template ``parent_pid`` of worker ``worker_pid``;
    never returns.

    It dies with the template (which dies with the worker), and leaves without running anything if the
    worker closes the job pipe before sending a job.
    """
    JobSetup(worker_pid, parent_pid, fds, privileged, syscalls).hold()


def exec_program(payload: dict[str, Any]) -> Any:
    """A ready-made entry: run ``payload["code"]`` as a script and return the value it binds to ``result``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(payload["code"], payload.get("filename", "<program>"), "exec"), namespace)
    return namespace.get("result")
