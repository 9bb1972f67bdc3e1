"""A pre-warmed sandbox worker: imports the heavy libraries once, then forks one child per job.

The child for the next job is forked as soon as the last one is done (a ``Standby``), so that a job
finds it waiting, past the fork of this large process and the set-up no job decides; every job
still runs in a brand-new process that no earlier job could reach.

Run as ``python -m vsdpo.render._sandbox_worker MODULE...``. It speaks length-prefixed pickles on
stdin/stdout with the pool that started it (trusted both ways). The child's reply comes back on a
pipe as raw bytes that this worker never unpickles: the pool reads it with a plain-data unpickler.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import importlib
import os
import pickle
import random
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
from typing import Any, BinaryIO

# uids handed to jobs, one fresh per job, far from any real account.
JOB_UID_BASE = 1_000_000
JOB_UID_SPAN = 1 << 24
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Parent folder of the jobs' working directories; the pool may choose another.
SANDBOX_ROOT = os.environ.get("VSDPO_SANDBOX_ROOT") or os.path.join(tempfile.gettempdir(), "vsdpo-sandbox")


def send(stream: BinaryIO, message: Any) -> None:
    blob = pickle.dumps(message, protocol=4)
    stream.write(struct.pack("<Q", len(blob)) + blob)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("sandbox channel closed")
    (size,) = struct.unpack("<Q", header)
    blob = stream.read(size)
    if len(blob) < size:
        raise EOFError("sandbox channel closed mid-message")
    return pickle.loads(blob)


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


def reap_orphans() -> None:
    """Collect the exit status of every dead descendant: this worker is their subreaper."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Standby:
    """A child forked ahead of its job, waiting on a pipe; it runs exactly one job, or none."""

    def __init__(self, privileged: bool):
        from vsdpo.render._sandbox_child import standby

        pipes = {name: os.pipe() for name in ("job", "stdout", "stderr", "result")}
        worker_pid = os.getpid()
        try:
            pid = os.fork()
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
            for name in ("stdout", "stderr", "result"):
                os.close(pipes[name][0])
            standby(worker_pid, pipes["job"][0], pipes["result"][1], privileged)
        self.pid = pid
        self.job_fd = pipes["job"][1]
        os.close(pipes["job"][0])
        for name in ("stdout", "stderr", "result"):
            os.close(pipes[name][1])
        # Read ends, handed to the supervisor with the job.
        self.readers = {pipes[name][0]: name for name in ("stdout", "stderr", "result")}
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
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        for fd in self.readers:
            os.close(fd)


def prefork(privileged: bool) -> Standby | None:
    """The next job's child, or None when it cannot be forked now: the job then forks its own."""
    try:
        return Standby(privileged)
    except OSError:
        return None


class Supervisor:
    """Runs one job in a forked child and turns whatever happens into a reply for the pool."""

    def __init__(self, job: dict[str, Any]):
        self.job = job
        self.limits = job["limits"]
        self.privileged = os.geteuid() == 0
        self.uid = JOB_UID_BASE + random.randrange(JOB_UID_SPAN) if self.privileged else None
        self.output = {"stdout": bytearray(), "stderr": bytearray()}
        self.result = bytearray()
        self.failure: tuple[str, str] | None = None  # (error_kind, error) decided here, not by the child

    def run(self, standby: Standby | None) -> dict[str, Any]:
        """Run the job in ``standby`` (or, failing that, a child forked now); ``standby`` is used up."""
        os.makedirs(SANDBOX_ROOT, mode=0o711, exist_ok=True)
        workdir = tempfile.mkdtemp(prefix="job-", dir=SANDBOX_ROOT)
        if self.uid is not None:
            os.chown(workdir, self.uid, self.uid)
        start = time.monotonic()
        try:
            status = self._hand_and_watch(standby, workdir, start)
        finally:
            if self.uid is not None:
                sweep_uid(self.uid)
            reap_orphans()
            shutil.rmtree(workdir, ignore_errors=True)
        reply = self._reply(status)
        reply["elapsed_s"] = time.monotonic() - start
        reply["stdout"] = self.output["stdout"].decode("utf-8", "replace")
        reply["stderr"] = self.output["stderr"].decode("utf-8", "replace")
        reply["uid"] = self.uid
        return reply

    def _hand_and_watch(self, standby: Standby | None, workdir: str, start: float) -> int:
        message = {"job": self.job, "workdir": workdir, "uid": self.uid}
        child = None
        if standby is not None:
            try:
                standby.hand(message)
                child = standby
            except OSError:  # it died while waiting: a fresh one is forked below
                standby.discard()
        if child is None:
            child = Standby(self.privileged)
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
                done, raw = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = raw
            if status is None:
                self._kill(pid)
                _, status = os.waitpid(pid, 0)
            else:
                self._drain(readers)
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
        if name == "result":
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
        if code == 3:
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
    gc.collect()
    gc.freeze()
    channel_in, channel_out = sys.stdin.buffer, sys.stdout.buffer
    # Nothing but protocol messages may reach the pool's channel.
    sys.stdout = sys.stderr
    send(channel_out, {"ready": True, "pid": os.getpid()})
    privileged = os.geteuid() == 0
    standby = prefork(privileged)
    while True:
        try:
            job = receive(channel_in)
        except EOFError:
            if standby is not None:
                standby.discard()
            return
        try:
            reply = Supervisor(job).run(standby)
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
        standby = prefork(privileged)


if __name__ == "__main__":
    main(sys.argv[1:])
