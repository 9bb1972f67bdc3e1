"""The two channels of the sandbox: pool <-> worker messages, and a job's reply to the pool.

Pool and workers trust each other: length-prefixed pickles over a pipe (``send``, ``receive``).

A job's reply is untrusted and travels unread through the worker: ``pack_reply`` (in the job) writes
its large byte strings (images, decks) as raw buffers beside a small pickle of the rest;
``unpack_reply`` (in the pool) checks the frame's sizes before it decodes anything, and decodes with
an unpickler that builds plain data only (dict, list, tuple, str, bytes, numbers, bool, None) and
imports nothing, so a hostile job can neither run code in the caller nor make it build millions of
objects from a reply of a few bytes each.

Frame: ``<Q structure size><I buffer count>``, one ``<Q size>`` per buffer, the structure (a protocol-5
pickle whose buffers are out of band), then the buffers; nothing may follow.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any, BinaryIO

# Byte strings at least this long travel as raw buffers, outside the pickle.
OUT_OF_BAND_BYTES = 4096
MAX_BUFFERS = 64
# The pickled structure (everything but the large byte strings): elements, texts, numbers.
MAX_STRUCTURE_BYTES = 8 << 20
_HEAD = struct.Struct("<QI")


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


def pack_reply(reply: Any) -> list[bytes | memoryview]:
    """The frame of ``reply`` as chunks to write one after another (large buffers are not copied)."""
    buffers: list[pickle.PickleBuffer] = []
    structure = pickle.dumps(_out_of_band(reply), protocol=5, buffer_callback=buffers.append)
    if len(buffers) > MAX_BUFFERS:  # too many large strings: all of them in the pickle instead
        buffers, structure = [], pickle.dumps(reply, protocol=5)
    raw = [buffer.raw() for buffer in buffers]
    head = _HEAD.pack(len(structure), len(raw)) + struct.pack(f"<{len(raw)}Q", *map(len, raw))
    return [head, structure, *raw]


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"sandbox results must be plain data; refused {module}.{name}")


def unpack_reply(blob: bytes) -> Any:
    """The reply in a frame from ``pack_reply``; ReplyError if the frame or its content is not as made."""
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
    return value
