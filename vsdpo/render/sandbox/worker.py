"""A pre-warmed sandbox worker: imports the heavy libraries once, then forks the processes of each job.

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
import select
import shutil
import signal
import struct
import sys
import time
from typing import Any

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


def _processes_of(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as status:
                for line in status:
                    if line.startswith("State:") and line.split()[1] in "ZX":
                        break  # already dead; reaped by reap_orphans
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


def reap_orphans(wait_s: float = 0.0) -> bool:
    """Collect the exit status of every dead descendant (this worker is their subreaper), waiting up
    to ``wait_s`` for those still dying; True when none is left."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            if time.monotonic() >= deadline:
                return False
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
    where none can be made. Each call resets where this worker's children go, so every job gets a
    fresh namespace."""
    global _own_pid_namespace
    made = False
    if os.geteuid() == 0:
        if _own_pid_namespace is None:
            _own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY)
        made = _libc.setns(_own_pid_namespace, CLONE_NEWPID) == 0 and _libc.unshare(CLONE_NEWPID) == 0
    try:
        return os.fork()
    finally:
        if made and os.getpid() != 1:  # the worker: its later children are its own namespace's again
            _libc.setns(_own_pid_namespace, CLONE_NEWPID)


class Standby:
    """A job's processes forked ahead of the job, waiting on a pipe; they run exactly one job, or none."""

    def __init__(self, privileged: bool, syscalls: Any):
        pipes = {name: os.pipe() for name in PIPES}
        worker_pid = os.getpid()
        try:
            pid = _fork_into_new_pid_namespace()
        except OSError:
            for pair in pipes.values():
                for fd in pair:
                    os.close(fd)
            raise
        if pid == 0:
            os.close(pipes["job"][1])
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(pipes["stdout"][1], 1)
            os.dup2(pipes["stderr"][1], 2)
            for name in ("stdout", "stderr", "result", "report", "status"):
                os.close(pipes[name][0])
            for name in ("stdout", "stderr"):
                os.close(pipes[name][1])
            fds = {name: pipes[name][1] for name in ("result", "report", "status")}
            standby(worker_pid, {"job": pipes["job"][0], **fds}, privileged, syscalls)
        self.pid = pid
        self.job_fd = pipes["job"][1]
        os.close(pipes["job"][0])
        for name in ("stdout", "stderr", "result", "report", "status"):
            os.close(pipes[name][1])
        # Read ends, handed to the supervisor with the job.
        self.readers = {pipes[name][0]: name for name in ("stdout", "stderr", "result", "report", "status")}
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
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        for fd in self.readers:
            os.close(fd)


def prefork(privileged: bool, syscalls: Any) -> Standby | None:
    """The next job's processes, or None when they cannot be forked now: the job then forks its own."""
    try:
        return Standby(privileged, syscalls)
    except OSError:
        return None


class Supervisor:
    """Runs one job in its forked processes and turns whatever happens into a reply for the pool."""

    def __init__(self, job: dict[str, Any], syscalls: Any):
        self.job = job
        self.syscalls = syscalls
        self.limits = job["limits"]
        self.privileged = os.geteuid() == 0
        self.uid = JOB_UID_BASE + random.randrange(JOB_UID_SPAN) if self.privileged else None
        self.output = {"stdout": bytearray(), "stderr": bytearray()}
        self.result = bytearray()
        self.report = bytearray()
        self.status = bytearray()  # the job's wait status, from the holder of its PID namespace
        self.holder_left_running = False
        self.failure: tuple[str, str] | None = None  # (error_kind, error) decided here, not by the child

    def run(self, standby: Standby | None) -> dict[str, Any]:
        """Run the job in ``standby`` (or, failing that, processes forked now); ``standby`` is used up."""
        start = time.monotonic()
        try:
            status = self._hand_and_watch(standby, start)
        finally:
            layers = self._layers()
            in_namespace = "pid_namespace" in layers.get("layers", ())
            if in_namespace and self.holder_left_running:
                # It killed and reaped all of the job before it sent the job's status; it ends on
                # its own (with the namespace) and is reaped later.
                reap_orphans()
            elif in_namespace and reap_orphans(wait_s=REAP_WAIT_S):
                pass  # the holder, the namespace's init, is reaped: the kernel ended all of the job
            else:  # no namespace, or one that hangs: every process of the job's uid is killed
                if self.uid is not None:
                    sweep_uid(self.uid)
                reap_orphans()
            sweep_job_folders(os.getpid())
        reply = self._reply(status)
        reply["elapsed_s"] = time.monotonic() - start
        reply["stdout"] = self.output["stdout"].decode("utf-8", "replace")
        reply["stderr"] = self.output["stderr"].decode("utf-8", "replace")
        reply["uid"] = self.uid
        reply["layers"] = layers
        return reply

    def _layers(self) -> dict[str, Any]:
        try:
            report = json.loads(self.report.decode())
        except ValueError:
            return {}
        return report if isinstance(report, dict) else {}

    def _hand_and_watch(self, standby: Standby | None, start: float) -> int:
        message = {"job": self.job, "uid": self.uid}
        child = None
        if standby is not None:
            try:
                standby.hand(message)
                child = standby
            except OSError:  # it died while waiting: a fresh one is forked below
                standby.discard()
        if child is None:
            child = Standby(self.privileged, self.syscalls)
            try:
                child.hand(message)
            except OSError:
                child.discard()
                raise
        pid, readers = child.pid, child.readers
        deadline = start + self.job["timeout_s"]
        status = None
        try:
            while status is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.failure = ("timeout", f"the program ran longer than {self.job['timeout_s']:g}s")
                    break
                ready, _, _ = (
                    select.select(list(readers), [], [], min(remaining, 0.05)) if readers else ([], [], [])
                )
                for fd in ready:
                    if not self._read(fd, readers):
                        break
                if self.failure:
                    break
                if len(self.status) == 4:  # the holder's word: the job and all it started are gone
                    status = struct.unpack("<i", self.status)[0]
                    self.holder_left_running = True
                    break
                done, raw = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = raw
            if status is None:
                self._kill(pid)
                _, status = os.waitpid(pid, 0)
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


def main(preload: list[str]) -> None:
    # The worker dies with its pool; the pool is the only reader of its stdout.
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Orphans of a job are re-parented here rather than to init, so the worker can reap them.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in preload:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional library that is missing or broken is skipped
            continue
        # A module may warm caches (fonts, wrapped classes) once here rather than in every job.
        if callable(getattr(module, "warm_up", None)):
            module.warm_up()
    # Objects made so far are never collected: a job's garbage collector then leaves their pages
    # shared with the worker instead of copying them all.
    # Built once; each job loads it as its last step before the program.
    syscalls = syscall_filter()
    gc.collect()
    gc.freeze()
    channel_in, channel_out = sys.stdin.buffer, sys.stdout.buffer
    # Nothing but protocol messages may reach the pool's channel.
    sys.stdout = sys.stderr
    sweep_dead_workers()
    send(channel_out, {"ready": True, "pid": os.getpid()})
    privileged = os.geteuid() == 0
    standby = prefork(privileged, syscalls)
    while True:
        try:
            job = receive(channel_in)
        except EOFError:
            if standby is not None:
                standby.discard()
            return
        try:
            reply = Supervisor(job, syscalls).run(standby)
            standby = None
        except OSError as error:
            reply = {
                "ok": False,
                "error_kind": "sandbox",
                "error": f"sandbox failure: {error}",
                "result_blob": None,
            }
            if error.errno == errno.EAGAIN:
                reply["error"] = f"sandbox could not fork a job: {error}"
        if standby is not None:  # the job failed before it could take its child
            standby.discard()
        send(channel_out, reply)
        # Forked after the reply is sent, so the pool reads it meanwhile.
        standby = prefork(privileged, syscalls)


if __name__ == "__main__":
    main(sys.argv[1:])
