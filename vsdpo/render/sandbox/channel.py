"""The two channels of the sandbox: pool <-> worker messages, and a job's reply to the pool.

Pool and workers trust each other: length-prefixed pickles over a pipe (``send``, ``receive``).

A job's reply is untrusted and travels unread through the worker: ``pack_reply`` (in the job) writes
its large byte strings (images, decks) as raw buffers beside a small pickle of the rest, written
without a memo, so that every object appears where it is used and the reply is a tree;
``unpack_reply`` (in the pool) checks the frame's sizes before it decodes anything, decodes with an
unpickler that builds plain data only (dict, list, tuple, str, bytes, numbers, bool, None) and
imports nothing, then walks what it built once (``check_tree``): a container reached twice (a memo
reference, which a hostile pickle may use to make a few bytes stand for millions of nodes), a node
count or a total length of strings beyond what the reply's bytes can hold when written as a tree,
nesting deeper than ``MAX_DEPTH``, or any other type, and the reply is refused. Whatever reads the
reply afterwards (the renderers' checks) then costs at most what its bytes say, and the walk itself
stops at a deadline: so a hostile job can neither run code in the caller nor make it build or walk
more than a bounded reply.

Frame: ``<Q structure size><I buffer count>``, one ``<Q size>`` per buffer, the structure (a protocol-5
pickle whose buffers are out of band), then the buffers; nothing may follow.
"""

from __future__ import annotations

import io
import pickle
import struct
import time
from typing import Any, BinaryIO

# Byte strings at least this long travel as raw buffers, outside the pickle.
OUT_OF_BAND_BYTES = 4096
MAX_BUFFERS = 64
# The pickled structure (everything but the large byte strings): elements, texts, numbers.
MAX_STRUCTURE_BYTES = 8 << 20
# Nesting of a reply (a chart's is about 7 deep); deeper is refused before anything recurses into it.
MAX_DEPTH = 64
# Allowance for the frame's own bytes (protocol, frame and stop opcodes) in the walk's budgets.
TREE_SLACK = 64
# How often (in nodes) the walk looks at the clock.
_CLOCK_EVERY = 4096
_HEAD = struct.Struct("<QI")
_LEAVES = (str, bytes, int, float, bool, type(None))


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


class ReplyError(ValueError):
    """A job's reply that breaks the frame or holds more than plain data."""


class ReplyRefused(ReplyError):
    """A reply that decodes, but whose reading would cost more than its bytes allow (``check_tree``);
    ``nodes`` says how many nodes the walk visited before it refused."""

    def __init__(self, message: str, nodes: int = 0):
        super().__init__(message)
        self.nodes = nodes


def _out_of_band(value: Any) -> Any:
    if isinstance(value, bytes) and len(value) >= OUT_OF_BAND_BYTES:
        return pickle.PickleBuffer(value)
    if isinstance(value, dict):
        return {key: _out_of_band(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_out_of_band(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_out_of_band(item) for item in value)
    return value


def _tree_pickle(value: Any, buffer_callback=None) -> bytes:
    """``value`` pickled without a memo: an object used twice is written twice, so the pickle's size
    bounds the tree the reader walks (``check_tree``); a cycle raises ValueError."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=5, buffer_callback=buffer_callback)
    pickler.fast = True
    pickler.dump(value)
    return out.getvalue()


def pack_reply(reply: Any) -> list[bytes | memoryview]:
    """The frame of ``reply`` as chunks to write one after another (large buffers are not copied)."""
    buffers: list[pickle.PickleBuffer] = []
    structure = _tree_pickle(_out_of_band(reply), buffers.append)
    if len(buffers) > MAX_BUFFERS:  # too many large strings: all of them in the pickle instead
        buffers, structure = [], _tree_pickle(reply)
    raw = [buffer.raw() for buffer in buffers]
    head = _HEAD.pack(len(structure), len(raw)) + struct.pack(f"<{len(raw)}Q", *map(len, raw))
    return [head, structure, *raw]


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"sandbox results must be plain data; refused {module}.{name}")


def check_tree(value: Any, *, max_nodes: int, max_weight: int, deadline: float | None = None) -> int:
    """Walk ``value`` once, without recursion; the number of nodes visited.

    ReplyRefused when a container (dict, list, non-empty tuple) is reached twice, when more than
    ``max_nodes`` nodes are visited or their weight (one per node, plus the length of each string
    and byte string wherever it appears) passes ``max_weight``, when nesting passes ``MAX_DEPTH``,
    when a node is not plain data, or when ``time.monotonic()`` passes ``deadline``. A reply written
    by ``pack_reply`` needs at least a byte per node and per character, so a budget of its own size
    never refuses it, while shared references are refused at the second visit: the walk never
    costs more than the budget, whatever the reply.
    """
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = weight = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        weight += 1
        kind = type(node)
        if kind is str or kind is bytes:
            weight += len(node)
        elif kind is dict or kind is list or kind is tuple:
            if node or kind is not tuple:  # the empty tuple is one shared object in CPython
                if id(node) in seen:
                    raise ReplyRefused("a reply may not refer to one container twice", nodes)
                seen.add(id(node))
            if depth >= MAX_DEPTH:
                raise ReplyRefused(f"the reply is nested deeper than {MAX_DEPTH}", nodes)
            if kind is dict:
                for key, item in node.items():
                    stack.append((key, depth + 1))
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)
        elif kind not in _LEAVES:
            raise ReplyRefused(f"a reply must be plain data; got a {kind.__name__}", nodes)
        if nodes > max_nodes or weight > max_weight:
            raise ReplyRefused(
                f"the reply holds more than its {max_weight} bytes can (a structure of {max_nodes} bytes "
                "written as a tree); shared references are not allowed",
                nodes,
            )
        if deadline is not None and nodes % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
            raise ReplyRefused("the reply could not be checked within the job's deadline", nodes)
    return nodes


def unpack_reply(blob: bytes, *, deadline: float | None = None) -> Any:
    """The reply in a frame from ``pack_reply``; ReplyError if the frame or its content is not as made,
    ReplyRefused if checking it (``check_tree``) refuses it or does not finish by ``deadline``
    (``time.monotonic()``)."""
    view = memoryview(blob)
    if len(view) < _HEAD.size:
        raise ReplyError("the reply is shorter than its header")
    structure_size, count = _HEAD.unpack_from(view)
    if structure_size > MAX_STRUCTURE_BYTES:
        raise ReplyError(f"the reply's structure has {structure_size} bytes, more than {MAX_STRUCTURE_BYTES}")
    if count > MAX_BUFFERS:
        raise ReplyError(f"the reply has {count} buffers, more than {MAX_BUFFERS}")
    at = _HEAD.size + 8 * count
    if len(view) < at:
        raise ReplyError("the reply is shorter than its header")
    sizes = struct.unpack_from(f"<{count}Q", view, _HEAD.size)
    if at + structure_size + sum(sizes) != len(view):
        raise ReplyError("the reply's length does not match its header")
    structure = io.BytesIO(view[at : at + structure_size])
    at += structure_size
    buffers = []
    for size in sizes:
        buffers.append(bytes(view[at : at + size]))
        at += size
    try:
        value = _PlainDataUnpickler(structure, buffers=buffers).load()
    except Exception as error:  # noqa: BLE001 - whatever a hostile pickle provokes
        raise ReplyError(f"unreadable reply: {type(error).__name__}: {error}") from None
    if structure.tell() != structure_size:
        raise ReplyError("the reply has bytes after its structure")
    check_tree(
        value, max_nodes=structure_size + TREE_SLACK, max_weight=len(view) + TREE_SLACK, deadline=deadline
    )
    return value
