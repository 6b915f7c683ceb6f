"""The call protocol: messages of the call socket (INTERFACE section 5), shared by both clients.

Each message is a ``u32`` big-endian length and that many bytes of UTF-8 JSON. Requests
carry a client-chosen ``id``; replies carry it back and may arrive in any order. A request
with ``"stream": true`` gets zero or more ``{"id": ..., "chunk": ...}`` messages before its
one final reply; ``{"cancel": id}`` cancels a call of the same connection. This module
builds requests, parses replies and turns an error reply into :class:`~pit.CallError`; the
clients own the sockets. Its counterpart between pitd and a worker is
:mod:`pit._worker_protocol`.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from .errors import CallError

LENGTH = struct.Struct(">I")

#: Seconds the client waits past a call's own timeout before giving up on pitd's reply.
LOCAL_GRACE_MIN = 0.5
LOCAL_GRACE_FRACTION = 0.1

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_decode_json = json.JSONDecoder().decode


def encode_request(
    req_id: int,
    pool: str,
    method: str,
    args: Any,
    session: str | None,
    timeout_ms: int | None,
    idempotent: bool,
    stream: bool = False,
) -> bytes:
    """One framed request; optional fields are left out when not given."""
    request: dict[str, Any] = {"id": req_id, "pool": pool, "method": method, "args": args}
    if session is not None:
        request["session"] = session
    if timeout_ms is not None:
        request["timeout_ms"] = timeout_ms
    if idempotent:
        request["idempotent"] = True
    if stream:
        request["stream"] = True
    body = _encode_json(request).encode("utf-8")
    return LENGTH.pack(len(body)) + body


def encode_cancel(req_id: int) -> bytes:
    """``{"cancel": id}``: pitd cancels that call of the connection (a stream, typically)."""
    body = _encode_json({"cancel": req_id}).encode("utf-8")
    return LENGTH.pack(len(body)) + body


def timeout_ms(timeout: float | None) -> int | None:
    """``timeout`` seconds as whole milliseconds, rounded up (None stays None)."""
    if timeout is None:
        return None
    if not timeout > 0 or math.isinf(timeout):
        raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")
    return max(1, math.ceil(timeout * 1000))


def local_deadline(timeout: float | None) -> float | None:
    """How long to wait locally for a reply: a little past the timeout pitd enforces."""
    if timeout is None:
        return None
    return timeout + max(LOCAL_GRACE_MIN, timeout * LOCAL_GRACE_FRACTION)


def local_timeout_error(timeout: float) -> CallError:
    return CallError(
        "timeout",
        f"no reply from pitd within {local_deadline(timeout):.3g}s "
        f"(the call's timeout was {timeout:g}s); gave up on the client side",
    )


def parse_reply(body: bytes) -> dict[str, Any]:
    """A reply object with an integer ``id``; ``ValueError`` when it is not one."""
    reply = _decode_json(body.decode("utf-8"))
    if not isinstance(reply, dict) or not isinstance(reply.get("id"), int):
        raise ValueError(f"reply without an integer id: {body[:200]!r}")
    return reply


def result_of(reply: dict[str, Any]) -> Any:
    """The result of a successful reply; raises :class:`CallError` for an error reply."""
    if reply.get("ok") is True:
        return reply.get("result")
    error = reply.get("error")
    if not isinstance(error, dict):
        error = {}
    raise CallError(
        str(error.get("kind") or "bad_request"),
        str(error.get("message") or "pitd returned an error reply without a message"),
        error.get("traceback"),
        reply.get("worker"),
    )
