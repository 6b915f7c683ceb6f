"""The framing of pitd's sockets, for the benchmarks that talk to them without ``pitctl``:
every message on the control socket and the call socket is a 4-byte big-endian length and
that many bytes of JSON (gunicorn's control socket frames the same way).

``request`` is one control request on a new connection, as ``pitctl`` makes it; ``frame``
and ``read_frame`` are for a connection a benchmark keeps (calls on the call socket)."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

#: Bound on one request's connect, send and reply, seconds.
TIMEOUT_S = 30.0

_LENGTH = struct.Struct(">I")


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (end of file) before a whole frame had arrived. A
    connection reset (ECONNRESET) is not this: it stays a ConnectionResetError."""


def frame(message: Any) -> bytes:
    """``message`` as JSON behind its length."""
    body = json.dumps(message).encode()
    return _LENGTH.pack(len(body)) + body


def recv_exact(s: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes; ConnectionClosed when the peer closes first."""
    chunks, got = [], 0
    while got < n:
        chunk = s.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ConnectionClosed("connection closed mid-frame")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(s: socket.socket) -> Any:
    """The next message on ``s``, decoded; None when the peer closed the connection (before
    or in the middle of it)."""
    try:
        body = recv_exact(s, _LENGTH.unpack(recv_exact(s, 4))[0])
    except ConnectionClosed:
        return None
    return json.loads(body)


def request_bytes(path: str, message: dict[str, Any], timeout: float = TIMEOUT_S) -> bytes:
    """One request on a new connection to the Unix socket ``path``: the reply's body, not
    decoded (a benchmark timing the round trip leaves the JSON decoding out)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(frame(message))
        return recv_exact(s, _LENGTH.unpack(recv_exact(s, 4))[0])


def request(path: str, message: dict[str, Any], timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """One request on a new connection to the Unix socket ``path``: the reply, decoded."""
    reply: dict[str, Any] = json.loads(request_bytes(path, message, timeout))
    return reply
