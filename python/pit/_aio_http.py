""":class:`pit.AsyncClient` over pitd's HTTP front door: what ``pit.AsyncClient("https://...")`` is.

A minimal HTTP/1.1 client on asyncio streams, enough for pitd's answers: a status line and
headers, then a body framed by ``Content-Length``, by chunked transfer coding, or by the
end of the connection. Connections are kept alive between calls (one per call or stream at
a time, a list of free ones for the next). A call or stream whose task is cancelled, or
that times out, closes its connection, which cancels the call in pitd. Use it from one
event loop. The wire itself is :mod:`pit._http_wire`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, NamedTuple, NoReturn, TypeVar

from . import _call_protocol, _http_wire
from .aio import AsyncClient
from .errors import CallError, ConnectionLost

_T = TypeVar("_T")

#: Header lines read at most in one answer.
_MAX_HEADERS = 100
#: How long a finished stream's connection may take to show its answer's end before it is
#: closed rather than kept for the next call.
_DRAIN_TIMEOUT = 1.0

# What a kept-alive connection that pitd closed while it was idle fails with before an
# answer begins: such a call never reached pitd, and is sent again on a new connection.
_IDLE_CLOSED: tuple[type[BaseException], ...] = (
    ConnectionResetError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class _Head(NamedTuple):
    """An answer's status line and headers (names in lower case, repeats joined by ", ")."""

    status: int
    reason: str
    version: str
    headers: dict[str, str]


class _Conn:
    """One kept-alive connection."""

    __slots__ = ("reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        #: Whether it was kept alive from an earlier call (pitd may have closed it since).
        self.reused = False

    def stale(self) -> bool:
        """Whether an idle connection was closed by pitd (or has bytes nobody asked for)."""
        return self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_head(self) -> _Head:
        reader = self.reader
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionResetError("pitd closed the connection without answering")
            version, _, rest = _line(line).partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise ValueError(f"not an HTTP/1.1 status line: {line[:100]!r}")
            headers: dict[str, str] = {}
            for _ in range(_MAX_HEADERS):
                field = _line(await reader.readline())
                if not field:
                    break
                name, colon, value = field.partition(":")
                if not colon:
                    raise ValueError(f"not a header line: {field[:100]!r}")
                key, value = name.strip().lower(), value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            else:
                raise ValueError(f"more than {_MAX_HEADERS} header lines")
            if not 100 <= int(code) < 200:  # an interim answer (100 Continue): the next one
                return _Head(int(code), reason, version, headers)

    def abort(self) -> None:
        """Closes at once, whatever is buffered: pitd sees the connection end."""
        self.writer.transport.abort()


def _line(raw: bytes) -> str:
    """A line of an answer's head without its end (``IncompleteReadError`` when it has none)."""
    if not raw.endswith(b"\n"):
        raise asyncio.IncompleteReadError(raw, None)
    return raw.decode("latin-1").rstrip("\r\n")


class _Body:
    """The body of one answer, read piece by piece as it comes."""

    def __init__(self, reader: asyncio.StreamReader, head: _Head) -> None:
        self._reader = reader
        headers = head.headers
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        self._keep_alive = head.version == "HTTP/1.1" and "close" not in tokens
        self._chunked = False
        self._left: int | None = None  # bytes left: of the body, or of the current chunk
        self.done = False
        if head.status in (204, 304):
            self._left = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            self._left = int(headers["content-length"])
            if self._left < 0:
                raise ValueError(f"a negative Content-Length: {self._left}")
        else:
            self._keep_alive = False  # the body ends with the connection
        self.done = self._left == 0 and not self._chunked

    @property
    def keep_alive(self) -> bool:
        """Whether the connection can carry the next call: the body was read whole and pitd
        keeps the connection open after it."""
        return self.done and self._keep_alive

    async def read_some(self) -> bytes:
        """The next piece of the body as soon as some of it is there; ``b""`` at its end."""
        if self.done:
            return b""
        reader = self._reader
        if self._chunked and not self._left:
            if self._left == 0 and await reader.readexactly(2) != b"\r\n":
                raise ValueError("a chunk not followed by CRLF")
            size_line = _line(await reader.readline())
            self._left = int(size_line.split(";", 1)[0].strip(), 16)
            if self._left < 0:
                raise ValueError(f"a negative chunk size: {size_line!r}")
            if self._left == 0:
                while _line(await reader.readline()):  # trailer fields, then a blank line
                    pass
                self.done = True
                return b""
        want = _http_wire.READ_SIZE if self._left is None else min(self._left, _http_wire.READ_SIZE)
        data = await reader.read(want)
        if not data:
            if self._left is None:  # delimited by the connection's end: this is it
                self.done = True
                return b""
            raise asyncio.IncompleteReadError(data, self._left)
        if self._left is not None:
            self._left -= len(data)
            if self._left == 0 and not self._chunked:
                self.done = True
        return data

    async def read_all(self) -> bytes:
        pieces: list[bytes] = []
        while True:
            data = await self.read_some()
            if not data:
                return b"".join(pieces)
            pieces.append(data)


class HttpAsyncClient(AsyncClient):
    """:class:`pit.AsyncClient` for an ``http://`` or ``https://`` URL."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        connect_timeout: float = 5.0,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        cafile: str | os.PathLike[str] | None = None,
    ) -> None:
        if path is None:
            raise ValueError("a URL is needed")
        self._target = _http_wire.parse_target(path, ssl_context, cafile)
        self.path = self._target.url
        self.connect_timeout = connect_timeout
        self._token = _http_wire.check_token(token)
        self._closed = False
        self._idle: list[_Conn] = []
        self._busy: set[_Conn] = set()

    async def connect(self) -> None:
        """Opens a connection now, unless one is open (``call`` does it when needed)."""
        if not self._idle and not self._busy:
            self._release(await self._acquire(fresh=True), True)

    async def call(
        self,
        pool: str,
        method: str,
        args: Any = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> Any:
        request = _http_wire.build_request(
            self._target, self._token, pool, method, args, session, timeout, idempotent, False
        )
        data = request.encode(self._target.host_header)
        grace = _call_protocol.local_deadline(timeout)
        if grace is None:
            return await self._call(data)
        try:
            return await asyncio.wait_for(self._call(data), grace)
        except asyncio.TimeoutError:
            raise _call_protocol.local_timeout_error(timeout or 0.0) from None

    async def stream(
        self,
        pool: str,
        method: str,
        args: Any = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
    ) -> AsyncGenerator[Any, None]:
        """As :meth:`pit.AsyncClient.stream`; ``break``, ``aclose()``, an exception in the
        loop or the consuming task being cancelled closes the stream's connection, which
        cancels the call in pitd."""
        request = _http_wire.build_request(
            self._target, self._token, pool, method, args, session, timeout, False, True
        )
        data = request.encode(self._target.host_header)
        url = self.path
        loop = asyncio.get_running_loop()
        grace = _call_protocol.local_deadline(timeout)
        give_up_at = None if grace is None else loop.time() + grace

        async def within(step: Awaitable[_T], most: float | None = None) -> _T:
            left = None if give_up_at is None else give_up_at - loop.time()
            if most is not None:
                left = most if left is None else min(left, most)
            if left is None:
                return await step
            try:
                return await asyncio.wait_for(step, max(0.0, left))
            except asyncio.TimeoutError:
                raise _call_protocol.local_timeout_error(timeout or 0.0) from None

        conn: _Conn | None = None
        reusable = False
        try:
            opened, head = await within(self._exchange(data))
            conn = opened
            body = _Body(opened.reader, head)
            if head.status != 200:
                text = await within(body.read_all())
                reusable = body.keep_alive
                worker = head.headers.get("pit-worker")
                raise _http_wire.error_of(head.status, head.reason, worker, text, url)
            if _http_wire.media_type(head.headers.get("content-type")) != _http_wire.EVENT_STREAM:
                # A plain answer: the final result of a stream that sent no chunk.
                _http_wire.decode(await within(body.read_all()), url)
                reusable = body.keep_alive
                return
            parser = _http_wire.EventParser()
            while True:
                piece = await within(body.read_some())
                if not piece:
                    raise ConnectionLost(f"pitd at {url} ended the stream's answer before its end event", url)
                try:
                    events = parser.feed(piece)
                except ValueError as e:
                    raise ConnectionLost(f"pitd at {url} sent malformed events: {e}", url) from None
                for event, payload in events:
                    try:
                        kind, value = _http_wire.stream_event(event, payload, url)
                    except CallError as e:
                        if not isinstance(e, ConnectionLost):
                            reusable = await self._drain(body, within)
                        raise
                    if kind == "chunk":
                        yield value
                    elif kind == "end":
                        reusable = await self._drain(body, within)
                        return
        except (OSError, EOFError, ValueError) as e:
            self._raise(e)
        finally:
            if conn is not None:
                self._release(conn, reusable)

    async def close(self) -> None:
        """Closes the kept-alive connections; calls in flight raise :class:`~pit.ConnectionLost`."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.writer.close()
        for conn in list(self._busy):
            conn.abort()

    # connections

    async def _acquire(self, fresh: bool = False) -> _Conn:
        """A connection for one call: a kept-alive one unless ``fresh``, else a new one."""
        if self._closed:
            raise ConnectionLost(f"the client for {self.path} is closed", self.path)
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.stale():
                conn.abort()
                continue
            conn.reused = True
            self._busy.add(conn)
            return conn
        target = self._target
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    target.host,
                    target.port,
                    ssl=target.ssl_context,
                    server_hostname=target.host if target.ssl_context is not None else None,
                ),
                self.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as e:
            reason = "timed out" if isinstance(e, asyncio.TimeoutError) else _http_wire.describe(e)
            raise ConnectionLost(f"cannot connect to pitd at {self.path}: {reason}", self.path) from None
        conn = _Conn(reader, writer)
        if self._closed:
            conn.abort()
            raise ConnectionLost(f"the client for {self.path} is closed", self.path)
        self._busy.add(conn)
        return conn

    def _release(self, conn: _Conn, reusable: bool) -> None:
        """Gives a connection back: kept for the next call if ``reusable``, else closed."""
        self._busy.discard(conn)
        if reusable and not self._closed:
            self._idle.append(conn)
        else:
            conn.abort()

    async def _exchange(self, data: bytes) -> tuple[_Conn, _Head]:
        """Sends a request and reads its answer's head; the connection is then the caller's
        to release. A kept-alive connection that pitd had closed before it saw the request
        is replaced by a new one, on which the request is sent again."""
        conn = await self._acquire()
        while True:
            try:
                await conn.send(data)
                return conn, await conn.read_head()
            except BaseException as e:
                self._release(conn, False)
                if conn.reused and isinstance(e, _IDLE_CLOSED):
                    conn = await self._acquire(fresh=True)
                    continue
                raise

    async def _call(self, data: bytes) -> Any:
        try:
            conn, head = await self._exchange(data)
            try:
                body = _Body(conn.reader, head)
                text = await body.read_all()
            except BaseException:
                self._release(conn, False)
                raise
        except (OSError, EOFError, ValueError) as e:
            self._raise(e)
        self._release(conn, body.keep_alive)
        return _http_wire.result_of(head.status, head.reason, head.headers.get("pit-worker"), text, self.path)

    @staticmethod
    async def _drain(body: _Body, within: Any) -> bool:
        """Reads the rest of a finished stream's answer; whether its connection is reusable."""
        try:
            await within(body.read_all(), _DRAIN_TIMEOUT)
        except (OSError, EOFError, ValueError, CallError):
            return False
        return body.keep_alive

    def _raise(self, e: BaseException) -> NoReturn:
        """A failed connection, or a malformed answer, as :class:`~pit.ConnectionLost`."""
        if isinstance(e, CallError):
            raise e
        raise ConnectionLost(
            f"connection to pitd at {self.path} failed: {_http_wire.describe(e)}"
            " (a call in flight may or may not have run)",
            self.path,
        ) from None
