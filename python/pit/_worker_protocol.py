"""The worker protocol: binary frames pitd writes on the worker's fd 3 and reads on fd 4.

Every frame is ``u32 length`` (of what follows), ``u8 type``, then the body; integers are
big-endian. pitd -> worker: ``CALL``, ``CALL_BY`` (a ``CALL`` body after a ``u64``
``start_by``: a call written while the worker runs another, to be started only before
that instant of ``time.monotonic_ns()``, the CLOCK_MONOTONIC clock pitd shares; after it,
pitd has taken the call back and the worker answers ``ERR`` ``queue_timeout`` without
running it), ``PING`` and ``CANCEL`` (a ``u64`` req_id: pitd gave up on that call, past its
timeout; sent only to workers serving more than one call at a time, and ignored for a call
the worker already answered); worker -> pitd: ``READY``, ``OK``,
``ERR`` and ``PONG``. This module is the single home of that layout: the worker runtime
and the tests (which play pitd) both encode and decode through it. Its counterpart between a
caller and pitd is :mod:`pit._call_protocol`.

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
READY = 0x81
OK = 0x82
ERR = 0x83
PONG = 0x84

PROTOCOL_VERSION = 1

#: Largest ``length`` field accepted or produced unless ``PIT_MAX_FRAME`` says otherwise.
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

_HEADER = struct.Struct(">IB")  # length (type + body), type
_HEADER_ID = struct.Struct(">IBQ")  # header followed by the req_id that starts most bodies
_CALL_HEAD = struct.Struct(">QIHH")  # req_id, timeout_ms, method_len, session_len
_ID = struct.Struct(">Q")

#: ``length`` of a frame whose body is a req_id followed by ``n`` payload bytes is ``n`` + this.
ID_FRAME_OVERHEAD = 1 + _ID.size

_READ_CHUNK = 64 * 1024


class FrameError(Exception):
    """A frame that breaks the protocol: bad length, unknown type, short or invalid body."""


class Call(NamedTuple):
    """A decoded ``CALL``: ``args`` is the raw JSON (``b""`` means ``null``)."""

    req_id: int
    timeout_ms: int
    method: str
    session: str | None
    args: bytes


# --- encoders ---------------------------------------------------------------------------


def encode_call(
    req_id: int,
    method: str,
    args: bytes = b"",
    session: str | None = None,
    timeout_ms: int = 0,
) -> bytes:
    """A ``CALL`` frame (pitd's side; used by tests and tools that stand in for pitd)."""
    m = method.encode("utf-8")
    s = session.encode("utf-8") if session is not None else b""
    head = _CALL_HEAD.pack(req_id, timeout_ms, len(m), len(s))
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


def encode_ready(
    handlers: Iterable[str], pid: int, concurrency: int = 1, gil_enabled: bool | None = None
) -> bytes:
    """The ``READY`` frame a worker sends once its module is imported: ``concurrency`` is
    how many calls it serves at once, ``gil_enabled`` whether the GIL is on (None: unknown)."""
    body = json.dumps(
        {
            "protocol": PROTOCOL_VERSION,
            "pid": pid,
            "handlers": list(handlers),
            "concurrency": concurrency,
            "gil_enabled": gil_enabled,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
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


# --- decoders ---------------------------------------------------------------------------


def decode_call(body: bytes) -> Call:
    """Decodes the body of a ``CALL`` frame; raises :class:`FrameError` when malformed."""
    if len(body) < _CALL_HEAD.size:
        raise FrameError(f"CALL body of {len(body)} bytes is shorter than its {_CALL_HEAD.size}-byte header")
    req_id, timeout_ms, method_len, session_len = _CALL_HEAD.unpack_from(body)
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
    return Call(req_id, timeout_ms, method, session, body[args_at:])


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


def split_reply(body: bytes) -> tuple[int, bytes]:
    """``(req_id, json_bytes)`` of an ``OK`` or ``ERR`` body."""
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
