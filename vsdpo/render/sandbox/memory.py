"""A memory cgroup per job: one bound on all the memory that a job's processes hold together.

``RLIMIT_AS`` bounds the address space of each process alone: a job of 64 processes may map 64 times
its limit, and what the kernel holds for a job (pipe buffers, socket buffers, page tables, the pages
of its tmpfs) lies in no address space at all. A memory cgroup counts all of it, over every process
of the job, and the kernel's OOM killer ends a process of the job when the job passes its limit.

Where: under the memory cgroup this process is in, where root can make one there. cgroup v2 when
that cgroup passes the memory controller on to its children (``memory`` in its
``cgroup.subtree_control``); else cgroup v1's memory hierarchy. The job's holder
(vsdpo.render.sandbox.child) opens that folder before it makes the job's namespaces and root (which
hide /sys); the job, still root, makes ``vsdpo-<worker pid>-<holder pid>`` in it through that
descriptor, writes its limit, moves itself in and closes the descriptor before the program runs, so
that everything it forks is in. Once every process of the job is gone, the holder reads whether the
kernel killed one for memory and removes the cgroup; the worker removes what a killed holder left,
and at its start the cgroups of workers that died.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass

PREFIX = "vsdpo-"
# Where the limit is written; v1 bounds memory and swap together in memsw, where swap is accounted.
LIMIT_FILES = {1: ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"), 2: ("memory.max",)}
NO_SWAP_FILES = {2: "memory.swap.max"}


@dataclass(frozen=True)
class Controller:
    """Where jobs' memory cgroups are made: the folder of this process's memory cgroup."""

    version: int  # 1 or 2
    path: str


def _mounts() -> list[tuple[str, str, str, str]]:
    """(root, mount point, file system type, super options) of every mount, from mountinfo."""
    mounts = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields, _, tail = line.partition(" - ")
            parts, rest = fields.split(), tail.split()
            if len(parts) >= 5 and len(rest) >= 3:
                mounts.append((parts[3], parts[4].replace("\\040", " "), rest[0], rest[2]))
    return mounts


def _folder(mount_root: str, mount_point: str, cgroup: str) -> str | None:
    if mount_root != "/" and not (cgroup == mount_root or cgroup.startswith(mount_root + "/")):
        return None
    relative = cgroup[len(mount_root) :] if mount_root != "/" else cgroup
    return os.path.join(mount_point, relative.lstrip("/"))


def _usable(path: str | None, needed: str) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, needed)) and os.access(path, os.W_OK)


@functools.cache
def controller() -> Controller | None:
    """The memory cgroup that jobs' cgroups are made in; None where there is none to write (not
    root, no memory controller, or a v2 cgroup that does not pass it on to children)."""
    if os.geteuid() != 0:
        return None
    try:
        with open("/proc/self/cgroup") as own:
            entries = [line.rstrip("\n").split(":", 2) for line in own]
        mounts = _mounts()
    except OSError:
        return None
    for hierarchy, controllers, cgroup in (e for e in entries if len(e) == 3):
        if hierarchy != "0" or controllers:
            continue
        for root, point, kind, _ in mounts:
            if kind != "cgroup2":
                continue
            path = _folder(root, point, cgroup)
            if path is None:
                continue
            try:
                with open(os.path.join(path, "cgroup.subtree_control")) as passed:
                    delegated = "memory" in passed.read().split()
            except OSError:
                continue
            if delegated and os.access(path, os.W_OK):
                return Controller(2, path)
    for _, controllers, cgroup in (e for e in entries if len(e) == 3):
        if "memory" not in controllers.split(","):
            continue
        for root, point, kind, options in mounts:
            if kind == "cgroup" and "memory" in options.split(","):
                path = _folder(root, point, cgroup)
                if _usable(path, "memory.limit_in_bytes"):
                    return Controller(1, path)
    return None


def name_of(worker_pid: int, holder_pid: int) -> str:
    return f"{PREFIX}{worker_pid}-{holder_pid}"


class JobCgroup:
    """The memory cgroup of one job (see the module's docstring): the holder opens the folder it is made
    in ahead of the job; the job makes it, bounds it and moves in; the holder reads how it ended and
    removes it."""

    def __init__(self, place: Controller, name: str):
        self.version = place.version
        self.name = name
        self.parent = os.open(place.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    @classmethod
    def prepare(cls, worker_pid: int) -> JobCgroup | None:
        """In the holder, before its PID namespace hides its pid from it; None where there is no
        controller. Nothing is made yet: a holder that never gets a job leaves nothing behind."""
        place = controller()
        if place is None:
            return None
        holder_pid = int(os.readlink("/proc/self"))  # the host's /proc names the host's pid
        return cls(place, name_of(worker_pid, holder_pid))

    def enter(self, total_bytes: int) -> None:
        """Make the cgroup, bound the memory in it, swap included, at ``total_bytes``, and move this
        process (the job, still root) into it: whatever it forks from now on is in it too."""
        with contextlib.suppress(FileExistsError):  # left by a holder of the same pid
            os.mkdir(self.name, 0o700, dir_fd=self.parent)
        folder = os.open(self.name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.parent)
        try:
            for name in LIMIT_FILES[self.version]:
                with contextlib.suppress(FileNotFoundError):  # v1 without swap accounting has no memsw
                    _write(folder, name, str(int(total_bytes)))
            swap = NO_SWAP_FILES.get(self.version)
            if swap:
                with contextlib.suppress(FileNotFoundError):
                    _write(folder, swap, "0")
            _write(folder, "cgroup.procs", "0")  # "0": the writer itself
        finally:
            os.close(folder)

    def out_of_memory_kills(self) -> int:
        """How many of the job's processes the kernel killed for passing the limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            fd = os.open(f"{self.name}/{name}", os.O_RDONLY, dir_fd=self.parent)
            try:
                text = os.read(fd, 4096).decode()
            finally:
                os.close(fd)
        except OSError:
            return 0
        for line in text.splitlines():
            field, _, value = line.partition(" ")
            if field == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def remove(self) -> None:
        """Remove the cgroup once no process of the job is left in it (the worker retries)."""
        with contextlib.suppress(OSError):
            os.rmdir(self.name, dir_fd=self.parent)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.parent)


def _write(folder: int, name: str, value: str) -> None:
    fd = os.open(name, os.O_WRONLY, dir_fd=folder)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def exists(worker_pid: int, holder_pid: int) -> bool:
    place = controller()
    return place is not None and os.path.isdir(os.path.join(place.path, name_of(worker_pid, holder_pid)))


def remove(worker_pid: int, holder_pid: int) -> bool:
    """Remove a job's cgroup once it holds no process; False where it is still busy or missing."""
    place = controller()
    if place is None:
        return False
    try:
        os.rmdir(os.path.join(place.path, name_of(worker_pid, holder_pid)))
    except OSError:
        return False
    return True


def remove_when_empty(worker_pid: int, holder_pid: int, wait_s: float) -> bool:
    """Remove a job's cgroup once its processes have left it (a killed job's may take a moment),
    waiting up to ``wait_s``; False where it is still busy then (the caller tries again later)."""
    deadline = time.monotonic() + wait_s
    while exists(worker_pid, holder_pid) and not remove(worker_pid, holder_pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def out_of_memory_kills(worker_pid: int, holder_pid: int) -> int:
    """How many processes of a cgroup the kernel killed for passing its bound; 0 where it is gone."""
    place = controller()
    if place is None:
        return 0
    cgroup = JobCgroup(place, name_of(worker_pid, holder_pid))
    try:
        return cgroup.out_of_memory_kills()
    finally:
        cgroup.close()


def sweep_dead_workers() -> None:
    """Remove the jobs' cgroups of workers that are gone (killed with their caller, say)."""
    place = controller()
    if place is None:
        return
    try:
        names = os.listdir(place.path)
    except OSError:
        return
    for name in names:
        worker, _, holder = name[len(PREFIX) :].partition("-")
        if not name.startswith(PREFIX) or not worker.isdigit() or not holder.isdigit():
            continue
        try:
            os.kill(int(worker), 0)
            continue  # its worker is alive and removes it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(place.path, name))
