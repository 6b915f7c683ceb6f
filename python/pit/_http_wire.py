"""pitd's HTTP front door as both clients speak it (INTERFACE section 10), without any I/O.

A call is ``POST {base}/v1/call/{pool}/{method}`` with the args as its JSON body and the
headers ``Authorization: Bearer TOKEN``, ``Pit-Session``, ``Pit-Timeout`` (``"{ms}ms"``)
and ``Pit-Idempotent: true``. A 200 carries the result JSON (and ``Pit-Worker``); any other
status carries ``{"error": {"kind", "message", "worker"?, "traceback"?}}``. A stream is the
same request with ``Accept: text/event-stream``: an error before its first chunk is an
error status as for a call, else a 200 whose server-sent events are ``chunk`` (data: a
chunk's JSON) per chunk, then one ``end`` (data: the final result) or ``error`` (data: the
error object). Closing the connection cancels the call.

This module parses URLs, builds requests, reads answers and parses server-sent events for
:mod:`pit._http` (threads, over ``http.client``) and :mod:`pit._aio_http` (asyncio streams).
"""

from __future__ import annotations

import json
import os
import re
import ssl
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from . import __version__, _call_protocol
from .errors import CallError, ConnectionLost

#: Media type of a streamed answer.
EVENT_STREAM = "text/event-stream"
#: Bytes asked of each read of an answer.
READ_SIZE = 64 * 1024
#: Longest line of server-sent events held while waiting for its end (pitd's chunks are
#: bounded by its frame limit, 16 MiB by default; this is far past it).
MAX_EVENT_LINE = 256 * 1024 * 1024

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_decode_json = json.JSONDecoder().decode
# A header value the front door can carry as it is: visible ASCII and inner spaces.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
_LINE_END = re.compile(rb"\r\n|\r|\n")


class Target(NamedTuple):
    """Where a front door is: parsed from the URL a client was given."""

    url: str  # as given, without a trailing slash
    host: str  # without brackets for IPv6
    port: int
    base: str  # path prefix before /v1 ("" unless pitd is behind a proxy that adds one)
    ssl_context: ssl.SSLContext | None  # None: plain HTTP

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.ssl_context is not None else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(
    url: str | os.PathLike[str],
    ssl_context: ssl.SSLContext | None,
    cafile: str | os.PathLike[str] | None,
) -> Target:
    """The :class:`Target` of ``url``; ``ValueError`` for a URL pitd cannot be reached at.

    An ``https`` URL uses ``ssl_context`` when given, else a default context that trusts the
    system's CAs, or only ``cafile``'s when given (a self-signed deployment's CA). TLS
    options on an ``http`` URL are refused rather than ignored.
    """
    text = os.fspath(url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"pitd's front door is reached over http:// or https://, not {text!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {text!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{text!r}: give the front door as scheme://host:port[/prefix], nothing more")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None
    context: ssl.SSLContext | None = None
    if scheme == "https":
        if ssl_context is not None:
            context = ssl_context
        else:
            context = ssl.create_default_context(cafile=os.fspath(cafile) if cafile is not None else None)
    elif ssl_context is not None or cafile is not None:
        raise ValueError(f"ssl_context and cafile are for an https:// URL, not {text!r}")
    return Target(
        url=text.rstrip("/"),
        host=parts.hostname,
        port=port if port is not None else (443 if context is not None else 80),
        base=parts.path.rstrip("/"),
        ssl_context=context,
    )


def check_token(token: str | None) -> str | None:
    """The bearer token, checked to fit in a header (``ValueError`` otherwise)."""
    if token is not None and not _HEADER_SAFE.fullmatch(token):
        raise ValueError("a token must be visible ASCII (a bearer token), without spaces at its ends")
    return token


class Request(NamedTuple):
    """A call's request: ``headers`` leave out the ones the connection adds (Host, length)."""

    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def encode(self, host_header: str) -> bytes:
        """The whole HTTP/1.1 request, head and body, as the asyncio client sends it."""
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {host_header}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + self.body


def build_request(
    target: Target,
    token: str | None,
    pool: str,
    method: str,
    args: Any,
    session: str | None,
    timeout: float | None,
    idempotent: bool,
    stream: bool,
) -> Request:
    """The request of one call (``ValueError`` for a timeout or session HTTP cannot carry)."""
    headers = [
        ("Content-Type", "application/json"),
        ("Accept", EVENT_STREAM if stream else "application/json"),
        ("User-Agent", f"pit-python/{__version__}"),
    ]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    if session is not None:
        if not _HEADER_SAFE.fullmatch(session):
            raise ValueError(
                f"over HTTP a session is sent as a header: it must be visible ASCII, got {session!r}"
            )
        headers.append(("Pit-Session", session))
    ms = _call_protocol.timeout_ms(timeout)
    if ms is not None:
        headers.append(("Pit-Timeout", f"{ms}ms"))
    if idempotent:
        headers.append(("Pit-Idempotent", "true"))
    path = f"{target.base}/v1/call/{quote(pool, safe='')}/{quote(method, safe='')}"
    return Request(path, headers, _encode_json(args).encode("utf-8"))


def result_of(status: int, reason: str, worker: str | None, body: bytes, url: str) -> Any:
    """A call's result from its answer; raises :class:`CallError` for an error answer."""
    if status == 200:
        return decode(body, url)
    raise error_of(status, reason, worker, body, url)


def error_of(status: int, reason: str, worker: str | None, body: bytes, url: str) -> CallError:
    """The error of an answer that is not a 200.

    pitd's error body gives a :class:`CallError`. An answer without one comes from
    something between the client and pitd (a proxy that could not reach it, say): that is
    a :class:`ConnectionLost`, as the call may or may not have run.
    """
    try:
        document = _decode_json(body.decode("utf-8"))
    except ValueError:
        document = None
    error = error_from_object(document.get("error") if isinstance(document, dict) else None, worker)
    if error is not None:
        return error
    text = body[:200].decode("utf-8", "replace")
    return ConnectionLost(f"{url} answered HTTP {status} {reason} without a pit error: {text!r}", url)


def error_from_object(error: object, worker: str | None = None) -> CallError | None:
    """The :class:`CallError` an error object (``{"kind", "message", ...}``) stands for."""
    if not isinstance(error, dict) or not isinstance(error.get("kind"), str):
        return None
    message = error.get("message")
    traceback = error.get("traceback")
    named = error.get("worker")
    return CallError(
        error["kind"],
        message if isinstance(message, str) else "pitd returned an error without a message",
        traceback if isinstance(traceback, str) else None,
        named if isinstance(named, str) else worker,
    )


def decode(body: bytes | str, url: str) -> Any:
    """A JSON document pitd sent; :class:`ConnectionLost` when it is none."""
    try:
        return _decode_json(body.decode("utf-8") if isinstance(body, bytes) else body)
    except ValueError as e:
        raise ConnectionLost(f"pitd at {url} sent a malformed answer: {e}", url) from None


def describe(e: BaseException) -> str:
    """What went wrong, in words, for a message."""
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def media_type(content_type: str | None) -> str:
    """``text/event-stream`` from ``text/event-stream; charset=utf-8``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def stream_event(event: str, data: str, url: str) -> tuple[str, Any]:
    """What one event of a stream means: ``("chunk", value)``, ``("end", None)`` (the final
    result is not used: a stream's chunks are what it gives) or ``("skip", None)`` for
    an event of another type; raises :class:`CallError` for ``error``."""
    if event == "chunk":
        return "chunk", decode(data, url)
    if event == "end":
        return "end", None
    if event == "error":
        error = error_from_object(decode(data, url))
        if error is None:
            raise ConnectionLost(f"pitd at {url} sent a malformed error event: {data[:200]!r}", url)
        raise error
    return "skip", None


class EventParser:
    """Server-sent events, incrementally: :meth:`feed` bytes as they come, get each whole
    event as ``(type, data)``.

    Lines end at ``\\r\\n``, ``\\n`` or ``\\r``, anywhere in the bytes fed (a line, or a
    UTF-8 character, may be split across reads); a blank line ends an event; ``data`` lines
    are joined with ``\\n``; comment lines (``:``) and ``id``/``retry`` are skipped; an
    event without ``data`` is not dispatched. ``ValueError`` for text that is not UTF-8 or a
    line past :data:`MAX_EVENT_LINE`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._event = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        buf = self._buf
        buf += data
        events: list[tuple[str, str]] = []
        at = 0
        while True:
            end = _LINE_END.search(buf, at)
            if end is None:
                break
            if end.group() == b"\r" and end.end() == len(buf):
                break  # a \n may follow in the next read: one line end, not two
            self._line(bytes(buf[at : end.start()]).decode("utf-8"), events)
            at = end.end()
        del buf[:at]
        if len(buf) > MAX_EVENT_LINE:
            raise ValueError(f"an event line longer than {MAX_EVENT_LINE} bytes")
        return events

    def _line(self, line: str, events: list[tuple[str, str]]) -> None:
        if not line:
            if self._data:
                events.append((self._event or "message", "\n".join(self._data)))
            self._event = ""
            self._data = []
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
