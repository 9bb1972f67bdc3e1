"""What a job may cost its caller: the reading of its reply, and memory outside the job's limits.

A reply of a few kilobytes whose pickle refers to the same lists again and again once cost the caller
38 s and 475 MB to check (after a job of 0.01 s), and was then accepted; memory files (memfd) once
held 5.2 GiB of the host's shared memory against a 4 GiB address-space limit and a 256 MiB tmpfs.
Each attack here is a real program run through render() or a pool, or the frame such a program
writes; none of the assertions is on time.
"""

from __future__ import annotations

import os
import pickle
import struct
import time
import tracemalloc

import pytest

from vsdpo.render import render
from vsdpo.render.sandbox import SandboxLimits, SandboxPool, channel
from vsdpo.render.sandbox.channel import ReplyRefused, pack_reply, unpack_reply

PROGRAM = "vsdpo.render.sandbox.child:exec_program"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full sandbox needs root")

# Builds a chart reply with a real picture whose every element is one shared dict, its lines one
# shared list and its extras lists of one shared list: some 20 KB of pickle that reads as 4000
# elements of 2000 lines and 4096 values each when followed.
BOMB = """
import io
from PIL import Image
out = io.BytesIO()
Image.new("RGB", (10, 10), "white").save(out, format="PNG")
leaf = [0] * 64
element = {
    "id": "e", "role": "text", "bbox": [1.0, 1.0, 5.0, 5.0], "text": "x" * 10000, "lines": [1] * 2000,
    "extra": {"k": [leaf] * 64},
}
chart = {"ok": True, "image": out.getvalue(), "width": 10, "height": 10, "elements": [element] * 4000}
REPLY = {"ok": True, "value": chart}
"""

# Writes the pickle of REPLY, memo and all, on the job's result pipe and leaves before the real reply.
FORGE = """
import gc, os, pickle, struct
from vsdpo.render.sandbox.child import JobSetup
setup = next(o for o in gc.get_objects() if isinstance(o, JobSetup))
structure = pickle.dumps(REPLY, protocol=5)
view = memoryview(struct.pack("<QI", len(structure), 0) + structure)
while view:
    view = view[os.write(setup.fds["result"], view):]
os._exit(0)
"""


def _bomb_frame() -> bytes:
    namespace: dict = {}
    exec(BOMB, namespace)
    structure = pickle.dumps(namespace["REPLY"], protocol=5)
    return struct.pack("<QI", len(structure), 0) + structure


def test_a_reply_of_shared_references_is_refused_as_an_invalid_reply():
    result = render(BOMB + FORGE, "chart")
    assert not result.ok and result.error_kind == "invalid_reply", (result.error_kind, result.error)
    # Refused as the reply was read, before any check of its elements ran.
    assert "unreadable result" in result.error and "container twice" in result.error, result.error


def test_refusing_it_walks_a_few_nodes_and_builds_nothing():
    frame = _bomb_frame()
    assert len(frame) < 32 << 10  # a small reply...
    tracemalloc.start()
    try:
        with pytest.raises(ReplyRefused) as refused:
            unpack_reply(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "twice" in str(refused.value)
    # ...refused after a few of the 4000 x 6000 nodes it stands for, with memory of its own size.
    assert 0 < refused.value.nodes < 20_000, refused.value.nodes
    assert peak < 20 * len(frame) + (1 << 20), peak


def test_the_walk_costs_at_most_what_the_bytes_say():
    """Shared strings (which CPython may share on its own) are allowed, but each use counts its length:
    one long string named 4000 times is refused before the walk passes the reply's size."""
    structure = pickle.dumps({"ok": True, "value": ["y" * 10_000] * 4000}, protocol=5)
    with pytest.raises(ReplyRefused) as refused:
        unpack_reply(struct.pack("<QI", len(structure), 0) + structure)
    assert refused.value.nodes <= len(structure) // 10_000 + 8, refused.value.nodes
    # The same reply written by the job's own packer (no memo) is a tree of its bytes, and passes.
    reply = {"ok": True, "value": {"texts": [f"label {i}" for i in range(5000)], "image": b"\x89PNG" * 5000}}
    frame = b"".join(bytes(chunk) for chunk in pack_reply(reply))
    assert unpack_reply(frame) == reply


def test_a_cycle_or_a_deep_nest_is_refused():
    loop: list = []
    loop.append(loop)
    structure = pickle.dumps({"ok": True, "value": loop}, protocol=5)
    with pytest.raises(ReplyRefused, match="twice"):
        unpack_reply(struct.pack("<QI", len(structure), 0) + structure)
    deep: list = []
    for _ in range(channel.MAX_DEPTH + 5):
        deep = [deep]
    frame = b"".join(bytes(chunk) for chunk in pack_reply({"ok": True, "value": deep}))
    with pytest.raises(ReplyRefused, match="deeper"):
        unpack_reply(frame)


def test_a_reply_that_cannot_be_checked_in_time_is_refused():
    reply = {"ok": True, "value": list(range(50_000))}
    frame = b"".join(bytes(chunk) for chunk in pack_reply(reply))
    assert unpack_reply(frame, deadline=time.monotonic() + 3600) == reply
    with pytest.raises(ReplyRefused, match="deadline"):
        unpack_reply(frame, deadline=time.monotonic() - 1)


def _host_shared_memory() -> int:
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) << 10
    raise AssertionError("no Shmem line in /proc/meminfo")


MEMORY_FILES = """
import os
made = []
block = b"x" * (1 << 20)
for i in range(16):  # 1 GiB, twice the job's memory limit, were it allowed
    fd = os.memfd_create(f"hoard{i}")
    for offset in range(0, 64 << 20, 1 << 20):
        os.pwrite(fd, block, offset)
    made.append(fd)
result = len(made)
"""

SHARED_FILES = """
import errno, os
try:
    os.memfd_create("hoard")
    refused = None
except OSError as error:
    refused = errno.errorcode.get(error.errno)
written = 0
block = b"x" * (1 << 20)
try:  # /tmp and /dev/shm are one tmpfs, of the job's quota
    with open("/tmp/hoard", "wb") as file:
        for _ in range(1024):
            file.write(block)
            file.flush()
            written += 1 << 20
except OSError as error:
    result = (refused, written, errno.errorcode.get(error.errno))
"""


def test_memory_files_cannot_hold_memory_outside_the_limits():
    before = _host_shared_memory()
    with SandboxPool(preload=()) as pool:
        hoard = pool.run(
            PROGRAM, {"code": MEMORY_FILES}, timeout_s=60, limits=SandboxLimits(memory_bytes=512 << 20)
        )
        fallback = pool.run(
            PROGRAM, {"code": SHARED_FILES}, timeout_s=60, limits=SandboxLimits(disk_bytes=32 << 20)
        )
        grown = _host_shared_memory() - before  # measured while the worker is still there
    assert not hoard.ok and hoard.error_kind == "memory", (hoard.error_kind, hoard.error)
    assert fallback.ok, fallback.error
    refused, written, stopped = fallback.value
    assert refused == "ENOMEM"
    assert written <= 32 << 20 and stopped == "ENOSPC", fallback.value  # the job's own quota
    # Other processes on the machine move Shmem too: allow for them, below the 1 GiB asked for.
    assert grown < 512 << 20, grown
