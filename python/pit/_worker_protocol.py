"""The worker protocol: binary frames pitd writes on the worker's fd 3 and reads on fd 4.

Every frame is ``u32 length`` (of what follows), ``u8 type``, then the body; integers are
big-endian. pitd -> worker:

- ``CALL``: ``u64 req_id, u32 timeout_ms, u8 flags, u32 window, u16 method_len,
  u16 session_len``, method, session, args JSON (the rest). ``flags`` bit 0 (``STREAM``):
  the caller asked for a stream; ``window`` is the stream's initial credit, the chunks the
  worker may send before a ``CREDIT`` (0 for other calls);
- ``CALL_BY``: a ``CALL`` body after a ``u64`` ``start_by``: a call written while the
  worker runs another, to be started only before that instant of ``time.monotonic_ns()``,
  the CLOCK_MONOTONIC clock pitd shares; after it, pitd has taken the call back and the
  worker answers ``ERR`` ``queue_timeout`` without running it;
- ``PING`` (a ``u64`` req_id);
- ``CANCEL`` (a ``u64`` req_id): pitd gave up on that call (past its timeout, or a stream
  whose caller hung up or cancelled it), whatever the worker's concurrency; the worker
  stops it and still answers it once (``ERR`` ``cancelled``). Ignored for a call the worker
  already answered or does not know;
- ``CREDIT``: ``u64 req_id, u32 n``: the caller's connection took ``n`` more chunks of that
  stream, so the worker may send ``n`` more.

Worker -> pitd: ``READY``, ``OK``, ``ERR``, ``PONG``, and ``CHUNK`` (``u64 req_id``, one
yielded value as JSON: zero or more of them come before a stream's ``OK`` or ``ERR``).
This module is the single home of that layout: the worker runtime and the tests (which
play pitd) both encode and decode through it. Its counterpart between a caller and pitd
is :mod:`pit._call_protocol`.

The call round trip is benchmarked against a raw pipe echo loop, so encoders build each
frame as one ``bytes`` object (written with one ``os.write``) from precompiled structs, and
:class:`FrameReader` reads in large chunks so one ``os.read`` usually yields a whole frame.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import Callable, NamedTuple

CALL = 0x01
PING = 0x02
CALL_BY = 0x03
CANCEL = 0x04
CREDIT = 0x05
READY = 0x81
OK = 0x82
ERR = 0x83
PONG = 0x84
CHUNK = 0x85

#: ``flags`` bit of a ``CALL``: the caller asked for a stream. Other bits are reserved (0).
STREAM = 0x01

PROTOCOL_VERSION = 1

#: Largest ``length`` field accepted or produced unless ``PIT_MAX_FRAME`` says otherwise.
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

_HEADER = struct.Struct(">IB")  # length (type + body), type
_HEADER_ID = struct.Struct(">IBQ")  # header followed by the req_id that starts most bodies
# req_id, timeout_ms, flags, window, method_len, session_len
_CALL_HEAD = struct.Struct(">QIBIHH")
_ID = struct.Struct(">Q")
_CREDIT = struct.Struct(">QI")  # req_id, n
_CREDIT_FRAME = struct.Struct(">IBQI")

#: ``length`` of a frame whose body is a req_id followed by ``n`` payload bytes is ``n`` + this.
ID_FRAME_OVERHEAD = 1 + _ID.size

_READ_CHUNK = 64 * 1024


class FrameError(Exception):
    """A frame that breaks the protocol: bad length, unknown type, short or invalid body."""


class Call(NamedTuple):
    """A decoded ``CALL``: ``args`` is the raw JSON (``b""`` means ``null``); ``stream``
    says the caller asked for a stream, ``window`` is its initial credit."""

    req_id: int
    timeout_ms: int
    method: str
    session: str | None
    args: bytes
    stream: bool = False
    window: int = 0


# --- encoders ---------------------------------------------------------------------------


def encode_call(
    req_id: int,
    method: str,
    args: bytes = b"",
    session: str | None = None,
    timeout_ms: int = 0,
    stream: bool = False,
    window: int = 0,
) -> bytes:
    """A ``CALL`` frame (pitd's side; used by tests and tools that stand in for pitd)."""
    m = method.encode("utf-8")
    s = session.encode("utf-8") if session is not None else b""
    head = _CALL_HEAD.pack(req_id, timeout_ms, STREAM if stream else 0, window, len(m), len(s))
    return _HEADER.pack(1 + len(head) + len(m) + len(s) + len(args), CALL) + head + m + s + args


def encode_call_by(call_frame: bytes, start_by_ns: int) -> bytes:
    """The ``CALL_BY`` frame of a ``CALL`` frame (pitd's side; for tests)."""
    body = call_frame[5:]
    return _HEADER.pack(1 + _ID.size + len(body), CALL_BY) + _ID.pack(start_by_ns) + body


def encode_ping(req_id: int) -> bytes:
    """A ``PING`` frame (pitd's side)."""
    return _HEADER_ID.pack(ID_FRAME_OVERHEAD, PING, req_id)


def encode_cancel(req_id: int) -> bytes:
    """A ``CANCEL`` frame (pitd's side; for tests)."""
    return _HEADER_ID.pack(ID_FRAME_OVERHEAD, CANCEL, req_id)


def encode_credit(req_id: int, n: int) -> bytes:
    """A ``CREDIT`` frame: ``n`` more chunks of stream ``req_id`` (pitd's side; for tests)."""
    return _CREDIT_FRAME.pack(1 + _CREDIT.size, CREDIT, req_id, n)


def encode_ready(
    handlers: Iterable[str],
    pid: int,
    concurrency: int = 1,
    gil_enabled: bool | None = None,
    gil_reenabled: str | None = None,
) -> bytes:
    """The ``READY`` frame a worker sends once its module is imported: ``concurrency`` is
    how many calls it serves at once, ``gil_enabled`` whether the GIL is on (None: unknown),
    ``gil_reenabled`` why a free-threaded build's GIL is on again (None when it is not)."""
    fields: dict[str, object] = {
        "protocol": PROTOCOL_VERSION,
        "pid": pid,
        "handlers": list(handlers),
        "concurrency": concurrency,
        "gil_enabled": gil_enabled,
    }
    if gil_reenabled is not None:
        fields["gil_reenabled"] = gil_reenabled
    body = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(1 + len(body), READY) + body


def encode_ok(req_id: int, result_json: bytes) -> bytes:
    """An ``OK`` frame carrying an already-serialised result."""
    return _HEADER_ID.pack(ID_FRAME_OVERHEAD + len(result_json), OK, req_id) + result_json


def encode_err(req_id: int, error_json: bytes) -> bytes:
    """An ``ERR`` frame carrying an already-serialised ``{"kind", "message", ...}`` object."""
    return _HEADER_ID.pack(ID_FRAME_OVERHEAD + len(error_json), ERR, req_id) + error_json


def encode_pong(req_id: int) -> bytes:
    """A ``PONG`` frame answering ``PING`` ``req_id``."""
    return _HEADER_ID.pack(ID_FRAME_OVERHEAD, PONG, req_id)


def encode_chunk(req_id: int, chunk_json: bytes) -> bytes:
    """A ``CHUNK`` frame carrying one already-serialised value of stream ``req_id``."""
    return _HEADER_ID.pack(ID_FRAME_OVERHEAD + len(chunk_json), CHUNK, req_id) + chunk_json


# --- decoders ---------------------------------------------------------------------------


def decode_call(body: bytes) -> Call:
    """Decodes the body of a ``CALL`` frame; raises :class:`FrameError` when malformed."""
    if len(body) < _CALL_HEAD.size:
        raise FrameError(f"CALL body of {len(body)} bytes is shorter than its {_CALL_HEAD.size}-byte header")
    req_id, timeout_ms, flags, window, method_len, session_len = _CALL_HEAD.unpack_from(body)
    start = _CALL_HEAD.size
    args_at = start + method_len + session_len
    if args_at > len(body):
        raise FrameError(
            f"CALL method ({method_len} bytes) and session ({session_len} bytes) overrun "
            f"the {len(body)}-byte body"
        )
    try:
        method = body[start : start + method_len].decode("utf-8")
        session = body[start + method_len : args_at].decode("utf-8") if session_len else None
    except UnicodeDecodeError as e:
        raise FrameError(f"CALL method or session is not UTF-8: {e}") from None
    return Call(req_id, timeout_ms, method, session, body[args_at:], bool(flags & STREAM), window)


def decode_call_by(body: bytes) -> tuple[int, Call]:
    """``(start_by_ns, call)`` of a ``CALL_BY`` body."""
    if len(body) < _ID.size:
        raise FrameError(f"CALL_BY body of {len(body)} bytes has no start_by")
    return int(_ID.unpack_from(body)[0]), decode_call(body[_ID.size :])


def decode_id(body: bytes) -> int:
    """The req_id of a ``PING``, ``CANCEL`` or ``PONG`` body (exactly 8 bytes)."""
    if len(body) != _ID.size:
        raise FrameError(f"expected an 8-byte req_id body, got {len(body)} bytes")
    return int(_ID.unpack(body)[0])


def decode_credit(body: bytes) -> tuple[int, int]:
    """``(req_id, n)`` of a ``CREDIT`` body (exactly 12 bytes)."""
    if len(body) != _CREDIT.size:
        raise FrameError(f"expected a {_CREDIT.size}-byte CREDIT body, got {len(body)} bytes")
    req_id, n = _CREDIT.unpack(body)
    return int(req_id), int(n)


def split_reply(body: bytes) -> tuple[int, bytes]:
    """``(req_id, json_bytes)`` of an ``OK``, ``ERR`` or ``CHUNK`` body."""
    if len(body) < _ID.size:
        raise FrameError(f"reply body of {len(body)} bytes has no req_id")
    return int(_ID.unpack_from(body)[0]), body[_ID.size :]


# --- reading ----------------------------------------------------------------------------


class FrameReader:
    """Splits a byte stream into ``(type, body)`` frames.

    ``read(n)`` returns up to ``n`` bytes, ``b""`` at end of stream (``os.read`` on a
    blocking fd, typically). Frames whose length field is 0 or above ``max_frame``, and a
    stream ending inside a frame, raise :class:`FrameError`; a clean end between frames
    makes :meth:`next_frame` return ``None``.
    """

    def __init__(self, read: Callable[[int], bytes], max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._read = read
        self._max = max_frame
        self._buf = b""
        self._pos = 0

    def next_frame(self) -> tuple[int, bytes] | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < _HEADER.size:
            buf = self._fill(buf[pos:], _HEADER.size)
            pos = 0
            if not buf:
                return None
        length, ftype = _HEADER.unpack_from(buf, pos)
        if length == 0 or length > self._max:
            raise FrameError(f"frame length {length} is outside 1..{self._max}")
        end = pos + 4 + length
        if len(buf) < end:
            buf = self._fill(buf[pos:], 4 + length)
            end -= pos
            pos = 0
        self._buf, self._pos = buf, end
        return ftype, buf[pos + _HEADER.size : end]

    def buffered_frame(self) -> tuple[int, bytes] | None:
        """The next frame when it is whole in the buffer already, else None; never reads.
        A worker streaming a reply looks at pitd's frames between chunks this way."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < _HEADER.size:
            return None
        length, ftype = _HEADER.unpack_from(buf, pos)
        if length == 0 or length > self._max:
            raise FrameError(f"frame length {length} is outside 1..{self._max}")
        end = pos + 4 + length
        if len(buf) < end:
            return None
        self._pos = end
        return ftype, buf[pos + _HEADER.size : end]

    def read_once(self) -> bool:
        """One ``read`` into the buffer (call it when the source is readable, so that it
        does not block); False at the end of the stream."""
        chunk = self._read(_READ_CHUNK)
        if not chunk:
            return False
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0
        return True

    def unread(self, frames: Iterable[tuple[int, bytes]]) -> None:
        """Puts ``frames`` back in front of what is buffered, in order: the frames a
        worker set aside while it streamed are then served as if they came next."""
        data = b"".join(_HEADER.pack(1 + len(body), ftype) + body for ftype, body in frames)
        if data:
            self._buf = data + self._buf[self._pos :]
            self._pos = 0

    def _fill(self, have: bytes, want: int) -> bytes:
        """Reads until at least ``want`` bytes are buffered; joins the chunks once."""
        parts: list[bytes] = [have]
        size = len(have)
        while size < want:
            chunk = self._read(max(want - size, _READ_CHUNK))
            if not chunk:
                if size == 0:
                    return b""
                raise FrameError(f"stream ended inside a frame ({size} of {want} bytes)")
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts) if len(parts) > 1 else have


class FrameFeed:
    """Splits bytes pushed as they arrive (a non-blocking fd read by an event loop) into
    ``(type, body)`` frames, with the checks of :class:`FrameReader`."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._max = max_frame
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The frames completed by ``data``; raises :class:`FrameError` on a bad length."""
        buf = self._buf + data if self._buf else data
        frames: list[tuple[int, bytes]] = []
        pos = 0
        while len(buf) - pos >= _HEADER.size:
            length, ftype = _HEADER.unpack_from(buf, pos)
            if length == 0 or length > self._max:
                raise FrameError(f"frame length {length} is outside 1..{self._max}")
            end = pos + 4 + length
            if len(buf) < end:
                break
            frames.append((ftype, buf[pos + _HEADER.size : end]))
            pos = end
        self._buf = buf[pos:]
        return frames

    def end(self) -> None:
        """The stream ended: raises :class:`FrameError` when it ended inside a frame."""
        if self._buf:
            raise FrameError(f"stream ended inside a frame ({len(self._buf)} bytes buffered)")
