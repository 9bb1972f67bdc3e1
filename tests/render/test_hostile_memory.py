"""Memory a job may hold outside its address-space limit, path by path: many processes at once,
shared memory on /dev/shm, SysV shared memory, pipe buffers. (Memory files are refused by seccomp:
tests/render/test_hostile_reply_costs.py.)

``RLIMIT_AS`` bounds each process alone; six processes of a job each held 160 MiB, 960 MiB in all,
against a 384 MiB limit. Where the host has a memory cgroup to write, all of a job's processes are
bound together by one (vsdpo.render.sandbox.memory). Each attack is a real program run through a pool.
"""

from __future__ import annotations

import os

import pytest

from vsdpo.render.sandbox import SandboxLimits, SandboxPool, memory

PROGRAM = "vsdpo.render.sandbox.child:exec_program"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full sandbox needs root")

MIB = 1 << 20

# Six processes that each fill 160 MiB (well within their own address space), then wait; the result
# is how many hold their memory at once.
HOARDERS = """
import os, select, signal, time
reader, writer = os.pipe()
children = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        block = b"x" * (160 << 20)
        os.write(writer, b"1")
        time.sleep(60)
        os._exit(0)
    children.append(pid)
os.close(writer)
held, dead = 0, set()
deadline = time.time() + 30
while held + len(dead) < len(children) and time.time() < deadline:
    if select.select([reader], [], [], 0.1)[0]:
        held += len(os.read(reader, 16))
    for pid in children:
        if pid not in dead and os.waitpid(pid, os.WNOHANG)[0]:
            dead.add(pid)
# A hoarder the kernel is ending to make room for the last one is not reaped at once: let its end
# complete before counting (the others sleep on).
time.sleep(1.0)
holding = 0
for pid in children:
    if pid not in dead and os.waitpid(pid, os.WNOHANG)[0] == 0:
        holding += 1
        os.kill(pid, signal.SIGKILL)
result = (held, holding)
"""

# POSIX shared memory is a file on /dev/shm (libc's shm_open, past Python's audit hooks): what it
# holds is the job's tmpfs quota.
SHARED_MEMORY = """
import ctypes, mmap, os
with open("/proc/self/mountinfo") as info:
    shm = [line.split(" - ")[1].split()[0] for line in info if line.split()[4] == "/dev/shm"]
fd = ctypes.CDLL(None, use_errno=True).shm_open(b"/hoard", os.O_RDWR | os.O_CREAT, 0o600)
assert fd >= 0, os.strerror(ctypes.get_errno())
written = 0
try:
    for _ in range(256):
        os.posix_fallocate(fd, written, 1 << 20)  # ENOSPC at the quota (a write to the map: SIGBUS)
        with mmap.mmap(fd, 1 << 20, offset=written) as view:
            view[:] = b"x" * (1 << 20)
        written += 1 << 20
    stopped = None
except (OSError, ValueError) as error:
    stopped = type(error).__name__
result = (shm, written, stopped)
"""

# The name of the job's memory cgroup, as the kernel lists it.
OWN_CGROUP = """
with open("/proc/self/cgroup") as own:
    result = next((line.strip().rsplit("/", 1)[-1] for line in own if "/vsdpo-" in line), None)
"""

# Pipes filled to the most the kernel lets each hold; what they hold is kernel memory.
PIPES = """
import fcntl, os
held, pipes = 0, []
try:
    for _ in range(2000):
        reader, writer = os.pipe()
        pipes.append((reader, writer))
        try:
            fcntl.fcntl(writer, 1031, 1 << 20)  # F_SETPIPE_SZ
        except OSError:
            pass
        os.set_blocking(writer, False)
        while True:
            try:
                held += os.write(writer, b"x" * 65536)
            except BlockingIOError:
                break
except OSError:
    pass
result = (held, len(pipes))
"""


def test_a_jobs_processes_share_one_memory_limit():
    if memory.controller() is None:
        pytest.skip("this host has no memory cgroup to write: each process is bound alone")
    limits = SandboxLimits(memory_bytes=384 * MIB, disk_bytes=32 * MIB)
    with SandboxPool(preload=()) as pool:
        result = pool.run(PROGRAM, {"code": HOARDERS}, timeout_s=60, limits=limits)
    assert "memory_cgroup" in result.extra["layers"], (result.extra["layers"], result.extra.get("notes"))
    if not result.ok:  # the kernel may end the job's first process rather than a hoarder
        assert result.error_kind == "memory", (result.error_kind, result.error)
        return
    # The job's cgroup holds its memory and its tmpfs: 416 MiB, room for two hoarders, not six.
    filled, holding = result.value
    assert holding * 160 * MIB <= limits.memory_bytes + limits.disk_bytes, result.value


def test_a_job_ended_by_the_kernel_for_memory_is_a_memory_error():
    if memory.controller() is None:
        pytest.skip("this host has no memory cgroup to write")
    # Two children hold 150 MiB each, then the job's own process asks for 350 MiB: each within its
    # address space, 650 MiB together against a cgroup of 544 MiB. The kernel ends the largest.
    code = (
        "import os, time\n"
        "for _ in range(2):\n"
        "    if os.fork() == 0:\n"
        "        block = b'x' * (150 << 20)\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "time.sleep(1)\n"
        "block = b'x' * (350 << 20)\n"
        "result = 'held'\n"
    )
    with SandboxPool(preload=()) as pool:
        result = pool.run(
            PROGRAM,
            {"code": code},
            timeout_s=60,
            limits=SandboxLimits(memory_bytes=512 * MIB, disk_bytes=32 * MIB),
        )
        again = pool.run(PROGRAM, {"code": OWN_CGROUP}, timeout_s=60)
    assert not result.ok and result.error_kind == "memory", (result.error_kind, result.error)
    # The next job runs, in a cgroup of its own, which is gone with it.
    assert again.ok and again.value.startswith(memory.PREFIX), (again.error, again.value)
    assert not os.path.exists(os.path.join(memory.controller().path, again.value))


def test_shared_memory_lies_on_the_jobs_quota_tmpfs():
    with SandboxPool(preload=()) as pool:
        result = pool.run(
            PROGRAM, {"code": SHARED_MEMORY}, timeout_s=60, limits=SandboxLimits(disk_bytes=32 * MIB)
        )
    assert result.ok, result.error
    kinds, written, stopped = result.value
    assert kinds == ["tmpfs"], kinds
    assert written <= 32 * MIB and stopped is not None, result.value


def test_pipe_buffers_stay_within_the_per_user_pipe_budget():
    """Each job runs as a fresh uid: its pipes share that user's budget of pipe pages
    (/proc/sys/fs/pipe-user-pages-soft), past which a new pipe gets two pages. Within a memory
    cgroup, pipe buffers are charged to the job as well."""
    with open("/proc/sys/fs/pipe-user-pages-soft") as soft:
        budget = int(soft.read()) * os.sysconf("SC_PAGE_SIZE")
    if budget == 0:
        pytest.skip("this host sets no budget of pipe pages per user")
    limits = SandboxLimits(open_files=1024)
    with SandboxPool(preload=()) as pool:
        result = pool.run(PROGRAM, {"code": PIPES}, timeout_s=60, limits=limits)
    assert result.ok, result.error
    held, pipes = result.value
    two_pages = 2 * os.sysconf("SC_PAGE_SIZE")
    assert held <= budget + pipes * two_pages + (1 << 20), (held, pipes)
