"""A pre-warmed sandbox worker: imports the heavy libraries once; a template it forks then forks the
processes of each job.

No job may find anything of an earlier one, and a forked process starts with a copy of all its
parent's memory: the worker's holds the program and reply of the job before, in live objects, on its
stack, or in freed memory that no collection clears (and a program can read all of its memory, a
reward's reference program included). So the worker forks,
once, right after its imports and before it reads any job, a *template*: a process that never
receives anything but "fork one" and sends back the new processes' pipes (``Template``). Every
job's processes are forked from the template, so they start from a state that holds no job data at
all, and the job reaches the worker only through its own pipe. The template is the parent of those
processes, reaps them and tells the worker how each ended.

The processes of the next job are forked as soon as the last one is done (a ``Standby``), so that a
job finds them waiting, past the fork of this large process and the set-up no job decides (its
namespaces and filesystem, vsdpo.render.sandbox.child); every job still runs in brand-new processes
that no earlier job could reach.

Run as ``python -m vsdpo.render.sandbox.worker MODULE...``. It speaks with the pool that started it
on stdin/stdout (vsdpo.render.sandbox.channel). The job's reply comes back on a pipe as raw bytes
that this worker never decodes: the pool checks and decodes it. Which sandbox layers the job got
comes on a pipe of its own, written before the program starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import importlib
import json
import os
import pickle
import random
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import time
from typing import Any

from vsdpo.render.sandbox import filesystem, memory
from vsdpo.render.sandbox.channel import receive, send
from vsdpo.render.sandbox.child import EXIT_OUT_OF_MEMORY, SANDBOX_ROOT, standby, sweep_job_folders
from vsdpo.render.sandbox.privileges import syscall_filter

# uids handed to jobs, one fresh per job, far from any real account.
JOB_UID_BASE = 1_000_000
JOB_UID_SPAN = 1 << 24
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# The job's report of its sandbox layers is a few hundred bytes; more is not read.
MAX_REPORT_BYTES = 1 << 14
PIPES = ("job", "stdout", "stderr", "result", "report", "status")
CLONE_NEWPID = 0x20000000
# How long a killed job's namespace may take to empty before its uid is swept instead.
REAP_WAIT_S = 5.0
# How long a killed job's first process may take to be reaped before the worker stops waiting.
KILL_WAIT_S = 30.0
# Messages from the template: what (b"stby", b"exit", b"fail"), a pid, and a status or an errno.
_MESSAGE = struct.Struct("<4sii")
READERS = ("stdout", "stderr", "result", "report", "status")


def _processes_of(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as status:
                for line in status:
                    if line.startswith("State:") and line.split()[1] in "ZX":
                        break  # already dead; the template reaps it
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(name))
                        break
        except (OSError, ValueError):
            continue  # exited while we looked
    return pids


def sweep_uid(uid: int, rounds: int = 200) -> None:
    """Kill every process running as ``uid``: whatever the job forked, whichever group it moved to.

    Repeated until none is left, since a fork bomb may fork between a scan and its kill; the job's
    process-count limit bounds how long that takes.
    """
    for _ in range(rounds):
        pids = _processes_of(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def sweep_dead_workers(root: str = SANDBOX_ROOT) -> None:
    """Remove the folders of jobs whose worker is gone (killed with its caller, say)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            _, _, rest = name.partition("job-")
            pid = rest.partition("-")[0]
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            except PermissionError:
                pass  # alive, someone else's


_libc = ctypes.CDLL(None, use_errno=True)
_own_pid_namespace: int | None = None


def _fork_into_new_pid_namespace() -> int:
    """Fork a child that is the first process (the init) of a PID namespace of its own; plain fork
    where none can be made. Each call resets where this process's children go, so every job gets a
    fresh namespace."""
    global _own_pid_namespace
    made = False
    if os.geteuid() == 0:
        if _own_pid_namespace is None:
            _own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        made = _libc.setns(_own_pid_namespace, CLONE_NEWPID) == 0 and _libc.unshare(CLONE_NEWPID) == 0
    try:
        return os.fork()
    finally:
        if made and os.getpid() != 1:  # the parent: its later children are its own namespace's again
            _libc.setns(_own_pid_namespace, CLONE_NEWPID)


def _close_all_but(keep: set[int]) -> None:
    """Close every descriptor but ``keep``: a job's processes hold only their own pipes."""
    top = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    top = top if top != resource.RLIM_INFINITY and top < (1 << 20) else (1 << 20)
    start = 0
    for fd in sorted(keep):
        if fd > start:
            os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, top)


def _fork_standby(worker_pid: int, privileged: bool, syscalls: Any) -> tuple[int, list[int]]:
    """Fork a job's processes (in the template): its pid and the worker's ends of its pipes (the job
    pipe's write end, then the read ends of READERS), which the caller must close once sent."""
    pipes = {name: os.pipe() for name in PIPES}
    parent_pid = os.getpid()
    try:
        pid = _fork_into_new_pid_namespace()
    except OSError:
        for pair in pipes.values():
            for fd in pair:
                os.close(fd)
        raise
    if pid == 0:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(pipes["stdout"][1], 1)
            os.dup2(pipes["stderr"][1], 2)
            fds = {
                "job": pipes["job"][0],
                **{name: pipes[name][1] for name in ("result", "report", "status")},
            }
            # Nothing of the template's (its channel to the worker above all) reaches the job.
            _close_all_but({0, 1, 2, *fds.values()})
        except BaseException:  # noqa: BLE001 - a child that cannot be set up must not return
            os._exit(4)
        standby(worker_pid, parent_pid, fds, privileged, syscalls)
    os.close(pipes["job"][0])
    for name in READERS:
        os.close(pipes[name][1])
    return pid, [pipes["job"][1], *(pipes[name][0] for name in READERS)]


def _serve(channel: socket.socket, worker_pid: int, privileged: bool, syscalls: Any) -> None:
    """Body of the template: fork a job's processes whenever the worker asks, send the worker their
    pipes, reap every child and report how it ended. Never returns; ends with the worker."""
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != worker_pid:
            os._exit(0)
        # Orphans of a job outside a PID namespace are re-parented here, and reaped.
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)  # the pool's channel is the worker's alone
        os.dup2(null, 1)
        os.close(null)
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_write)
        while True:
            ready, _, _ = select.select([channel, wake_read], [], [], 1.0)
            if wake_read in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_read, 512):
                        pass
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                channel.send(_MESSAGE.pack(b"exit", pid, status))
            if channel in ready:
                if not channel.recv(16):
                    os._exit(0)  # the worker is gone
                try:
                    pid, fds = _fork_standby(worker_pid, privileged, syscalls)
                except OSError as error:
                    channel.send(_MESSAGE.pack(b"fail", 0, error.errno or 0))
                    continue
                try:
                    socket.send_fds(channel, [_MESSAGE.pack(b"stby", pid, 0)], fds)
                finally:
                    for fd in fds:
                        os.close(fd)
    except BaseException:  # noqa: BLE001 - the worker sees the channel close and gives up
        os._exit(1)


class Template:
    """The worker's side of its template (see the module's docstring): asks it for a job's processes,
    and keeps the exit statuses it reports for those processes."""

    def __init__(self, privileged: bool, syscalls: Any):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        worker_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            _serve(theirs, worker_pid, privileged, syscalls)
            os._exit(0)
        theirs.close()
        self.pid = pid
        self.channel = ours
        self.pending = 0  # standbys asked for and not received
        self.children: set[int] = set()
        self.exits: dict[int, int] = {}
        self.gone = False

    def fileno(self) -> int:
        return self.channel.fileno()

    def ask(self) -> None:
        """Ask for the next job's processes (the template forks them while the worker waits)."""
        if self.pending or self.gone:
            return
        try:
            self.channel.send(b"fork")
            self.pending += 1
        except OSError:
            self.gone = True

    def _receive(self, timeout: float | None) -> tuple[bytes, int, int, list[int]] | None:
        if self.gone:
            return None
        ready, _, _ = select.select([self.channel], [], [], timeout)
        if not ready:
            return None
        try:
            data, fds, _, _ = socket.recv_fds(self.channel, _MESSAGE.size, len(PIPES))
        except OSError:
            data, fds = b"", []
        if len(data) != _MESSAGE.size:
            for fd in fds:
                os.close(fd)
            self.gone = True
            return None
        kind, pid, value = _MESSAGE.unpack(data)
        if kind == b"exit" and pid in self.children:
            self.exits[pid] = value
        return kind, pid, value, fds

    def poll(self) -> None:
        """Take in every report that has arrived, without waiting."""
        while self._receive(0) is not None:
            pass

    def standby(self) -> Standby:
        """The processes of a job (asked for now unless asked already); OSError when none can be had."""
        self.ask()
        while not self.gone:
            message = self._receive(None)
            if message is None:
                continue
            kind, pid, value, fds = message
            if kind == b"stby":
                self.pending -= 1
                self.children.add(pid)
                return Standby(self, pid, fds)
            if kind == b"fail":
                self.pending -= 1
                raise OSError(value, f"could not fork a job's processes: {os.strerror(value)}")
        raise OSError(errno.EPIPE, "the sandbox worker's template is gone")

    def wait_exit(self, pid: int, timeout: float) -> int | None:
        """The wait status of ``pid`` once the template has reaped it; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while pid not in self.exits:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.gone:
                return None
            self._receive(min(remaining, 1.0))
        return self.exits[pid]

    def forget(self, pid: int) -> None:
        self.children.discard(pid)
        self.exits.pop(pid, None)


class Standby:
    """A job's processes forked ahead of the job, waiting on a pipe; they run exactly one job, or none."""

    def __init__(self, template: Template, pid: int, fds: list[int]):
        self.template = template
        self.pid = pid
        self.job_fd = fds[0]
        # Read ends, handed to the supervisor with the job.
        self.readers = dict(zip(fds[1:], READERS, strict=True))
        self.handed = False

    def hand(self, message: dict[str, Any]) -> None:
        """Send the child its job; OSError (BrokenPipeError) if it is no longer there to take it."""
        blob = memoryview(pickle.dumps(message, protocol=4))
        try:
            while blob:
                blob = blob[os.write(self.job_fd, blob) :]
        finally:
            os.close(self.job_fd)
            self.job_fd = -1
        self.handed = True

    def discard(self) -> None:
        """End a child that never got its job: it is killed, reaped and its pipes closed."""
        if self.handed:
            return
        self.handed = True
        if self.job_fd >= 0:
            os.close(self.job_fd)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.template.wait_exit(self.pid, KILL_WAIT_S)
        self.template.forget(self.pid)
        for fd in self.readers:
            os.close(fd)


class Supervisor:
    """Runs one job in its forked processes and turns whatever happens into a reply for the pool."""

    def __init__(self, job: dict[str, Any], template: Template):
        self.job = job
        self.template = template
        self.pid: int | None = None  # the holder's, once the job is handed
        self.limits = job["limits"]
        self.privileged = os.geteuid() == 0
        self.uid = JOB_UID_BASE + random.randrange(JOB_UID_SPAN) if self.privileged else None
        self.output = {"stdout": bytearray(), "stderr": bytearray()}
        self.result = bytearray()
        self.report = bytearray()
        self.status = bytearray()  # the job's wait status, from the holder of its PID namespace
        self.holder_left_running = False
        self.failure: tuple[str, str] | None = None  # (error_kind, error) decided here, not by the child

    def run(self) -> dict[str, Any]:
        """Run the job in the processes the template forked for it."""
        start = time.monotonic()
        try:
            status = self._hand_and_watch(start)
        finally:
            layers = self._layers()
            in_namespace = "pid_namespace" in layers.get("layers", ())
            if self.pid is not None:
                if in_namespace and self.holder_left_running:
                    pass  # it killed and reaped all of the job before it sent the job's status
                elif in_namespace and self.template.wait_exit(self.pid, REAP_WAIT_S) is not None:
                    pass  # the holder, the namespace's init, is reaped: the kernel ended all of the job
                elif self.uid is not None:  # no namespace, or one that hangs: the job's uid is swept
                    sweep_uid(self.uid)
                self.template.forget(self.pid)
                self._remove_cgroup()
            sweep_job_folders(os.getpid())
        reply = self._reply(status)
        reply["elapsed_s"] = time.monotonic() - start
        reply["stdout"] = self.output["stdout"].decode("utf-8", "replace")
        reply["stderr"] = self.output["stderr"].decode("utf-8", "replace")
        reply["uid"] = self.uid
        reply["layers"] = layers
        return reply

    def _remove_cgroup(self) -> None:
        """Remove the job's memory cgroup (vsdpo.render.sandbox.memory); one still busy after
        REAP_WAIT_S is left to sweep_dead_workers once this worker is gone."""
        memory.remove_when_empty(os.getpid(), self.pid, REAP_WAIT_S)

    def _layers(self) -> dict[str, Any]:
        try:
            report = json.loads(self.report.decode())
        except ValueError:
            return {}
        return report if isinstance(report, dict) else {}

    def _hand_and_watch(self, start: float) -> int:
        message = {"job": self.job, "uid": self.uid}
        child = self.template.standby()
        try:
            child.hand(message)
        except OSError:  # it died while waiting: fresh ones are asked for
            child.discard()
            child = self.template.standby()
            try:
                child.hand(message)
            except OSError:
                child.discard()
                raise
        self.pid = pid = child.pid
        readers = child.readers
        deadline = start + self.job["timeout_s"]
        status = None
        try:
            while status is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.failure = ("timeout", f"the program ran longer than {self.job['timeout_s']:g}s")
                    break
                # The template's reports wake the loop as the job's pipes do.
                template = [] if self.template.gone else [self.template.fileno()]
                ready, _, _ = select.select([*readers, *template], [], [], min(remaining, 0.05))
                for fd in ready:
                    if fd in template:
                        self.template.poll()
                    elif not self._read(fd, readers):
                        break
                if self.failure:
                    break
                if len(self.status) == 4:  # the holder's word: the job and all it started are gone
                    status = struct.unpack("<i", self.status)[0]
                    self.holder_left_running = True
                    break
                status = self.template.exits.get(pid)
            if status is None:
                self._kill(pid)
                status = self.template.wait_exit(pid, KILL_WAIT_S)
                if status is None:  # not reaped in time: it was killed, and is left to the template
                    status = signal.SIGKILL
            else:
                self._drain(readers)
                if len(self.status) == 4:
                    status = struct.unpack("<i", self.status)[0]
        finally:
            for fd in readers:
                os.close(fd)
        return status

    def _read(self, fd: int, readers: dict[int, str]) -> bool:
        chunk = os.read(fd, 1 << 16)
        name = readers[fd]
        if not chunk:
            # Closed here, not just forgotten: every later child would inherit it.
            del readers[fd]
            os.close(fd)
            return True
        if name == "status":
            self.status += chunk[: 4 - len(self.status)]
        elif name == "report":
            if len(self.report) < MAX_REPORT_BYTES:
                self.report += chunk[: MAX_REPORT_BYTES - len(self.report)]
        elif name == "result":
            self.result += chunk
            if len(self.result) > self.limits["result_bytes"]:
                self.failure = ("output_limit", f"the result exceeded {self.limits['result_bytes']} bytes")
        else:
            buffer = self.output[name]
            buffer += chunk
            if len(buffer) > self.limits["output_bytes"]:
                del buffer[self.limits["output_bytes"] :]
                self.failure = (
                    "output_limit",
                    f"the program printed more than {self.limits['output_bytes']} bytes",
                )
        return not self.failure

    def _drain(self, readers: dict[int, str]) -> None:
        """Read what the exited child left in the pipes; grandchildren holding them open are not waited for."""
        while readers and not self.failure:
            ready, _, _ = select.select(list(readers), [], [], 0)
            if not ready:
                break
            for fd in ready:
                if not self._read(fd, readers):
                    break

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def _reply(self, status: int) -> dict[str, Any]:
        if self.failure:
            kind, error = self.failure
            return {"ok": False, "error_kind": kind, "error": error, "result_blob": None}
        if self.result and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return {"ok": None, "error_kind": None, "error": None, "result_blob": bytes(self.result)}
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            kind, error = {
                signal.SIGXCPU: (
                    "cpu_limit",
                    f"the program used more than {self.limits['cpu_s']}s of CPU time",
                ),
                signal.SIGXFSZ: (
                    "file_size",
                    f"the program wrote a file larger than {self.limits['file_bytes']} bytes",
                ),
            }.get(number, ("killed", f"the program was killed by {_signal_name(number)}"))
            return {"ok": False, "error_kind": kind, "error": error, "result_blob": None}
        code = os.WEXITSTATUS(status)
        if code == EXIT_OUT_OF_MEMORY:
            return {
                "ok": False,
                "error_kind": "memory",
                "error": "the program ran out of memory",
                "result_blob": None,
            }
        return {
            "ok": False,
            "error_kind": "exited",
            "error": f"the program exited with status {code} before returning a result",
            "result_blob": None,
        }


def _without_working_directory() -> None:
    """Leave the caller's working directory out of sys.path (``-P`` does so from Python 3.11 on): it
    is no installation, and it is no folder of a job's view (vsdpo.render.sandbox.filesystem)."""
    if not getattr(sys.flags, "safe_path", False) and sys.path and sys.path[0] in ("", os.getcwd()):
        python_path = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if sys.path[0] not in python_path:
            del sys.path[0]


def main(preload: list[str]) -> None:
    # The worker dies with its pool; the pool is the only reader of its stdout.
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _without_working_directory()
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in preload:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional library that is missing or broken is skipped
            continue
        # A module may warm caches (fonts, wrapped classes) once here rather than in every job.
        if callable(getattr(module, "warm_up", None)):
            module.warm_up()
    # Built once; each job loads it as its last step before the program.
    syscalls = syscall_filter()
    filesystem.job_view()  # what jobs see of the filesystem: worked out once, before the template
    # Objects made so far are never collected: a job's garbage collector then leaves their pages
    # shared with the worker instead of copying them all.
    gc.collect()
    gc.freeze()
    channel_in, channel_out = sys.stdin.buffer, sys.stdout.buffer
    # Nothing but protocol messages may reach the pool's channel.
    sys.stdout = sys.stderr
    sweep_dead_workers()
    memory.sweep_dead_workers()
    privileged = os.geteuid() == 0
    # Forked before any job is read: every job's processes come from a process that never held one.
    template = Template(privileged, syscalls)
    send(channel_out, {"ready": True, "pid": os.getpid()})
    template.ask()
    while True:
        try:
            job = receive(channel_in)
        except EOFError:
            return
        try:
            reply = Supervisor(job, template).run()
        except OSError as error:
            reply = {
                "ok": False,
                "error_kind": "sandbox",
                "error": f"sandbox failure: {error}",
                "result_blob": None,
            }
            if error.errno == errno.EAGAIN:
                reply["error"] = f"sandbox could not fork a job: {error}"
        send(channel_out, reply)
        if template.gone:  # the pool starts a fresh worker
            return
        # Asked for after the reply is sent, so the pool reads it meanwhile.
        template.ask()


if __name__ == "__main__":
    main(sys.argv[1:])
