"""The asyncio call-socket client: :class:`AsyncClient`.

Same protocol and behaviour as :class:`pit.Client` (one pipelined connection, replies
routed by ``id``, :class:`~pit.ConnectionLost` for calls in flight when it fails, a new
connection on the next call), with a reader task instead of a reader thread. Use it from
one event loop. A stream is an async generator reading a queue the reader task fills.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Union, cast

from . import _call_protocol
from .errors import ConnectionLost
from .paths import default_call_socket, is_url

if TYPE_CHECKING:
    # Only the type checker reads them (annotations are strings here): no runtime dependency.
    import ssl

    from typing_extensions import Self


_StreamItem = Union[dict[str, Any], ConnectionLost]


class AsyncClient:
    """``async with pit.AsyncClient() as c: await c.call("pool", "method", args)``.

    ``path`` as for :class:`pit.Client`: a call socket's path (the default one when not
    given), or the URL of pitd's HTTP front door with ``token``, ``ssl_context`` and
    ``cafile`` as there.
    """

    def __new__(
        cls,
        path: str | os.PathLike[str] | None = None,
        connect_timeout: float = 5.0,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        cafile: str | os.PathLike[str] | None = None,
    ) -> Self:
        # The one switch between the two transports: a URL makes the client an HttpAsyncClient.
        if cls is AsyncClient and is_url(path):
            from ._aio_http import HttpAsyncClient

            return cast("Self", super().__new__(HttpAsyncClient))
        return super().__new__(cls)

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        connect_timeout: float = 5.0,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        cafile: str | os.PathLike[str] | None = None,
    ) -> None:
        if is_url(path):
            raise ValueError(
                f"{type(self).__name__} takes a call socket's path; pit.AsyncClient(url) calls over HTTP"
            )
        if token is not None or ssl_context is not None or cafile is not None:
            raise ValueError("token, ssl_context and cafile are for a URL, not a call socket's path")
        self.path = os.fspath(path) if path is not None else default_call_socket()
        self.connect_timeout = connect_timeout
        self._ids = itertools.count(1)
        self._closed = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # A stream's queue holds its chunks, then its final reply or the connection's loss.
        self._streams: dict[int, asyncio.Queue[_StreamItem]] = {}
        # Created on first use: before 3.10 asyncio locks bind to the loop current at creation.
        self._connect_lock: asyncio.Lock | None = None
        self._send_lock: asyncio.Lock | None = None

    async def connect(self) -> None:
        """Opens the connection now (``call`` does it when needed)."""
        await self._connection()

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
        """As :meth:`pit.Client.call`, awaited."""
        req_id = next(self._ids)
        message = _call_protocol.encode_request(
            req_id, pool, method, args, session, _call_protocol.timeout_ms(timeout), idempotent
        )
        writer = await self._connection()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        await self._send(writer, message)
        try:
            reply = await asyncio.wait_for(future, _call_protocol.local_deadline(timeout))
        except asyncio.TimeoutError:
            raise _call_protocol.local_timeout_error(timeout or 0.0) from None
        finally:
            self._pending.pop(req_id, None)
        return _call_protocol.result_of(reply)

    async def stream(
        self,
        pool: str,
        method: str,
        args: Any = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
    ) -> AsyncGenerator[Any, None]:
        """As :meth:`pit.Client.stream`: ``async for chunk in client.stream(...)``.

        The request is sent at the first iteration. ``break``, ``aclose()``, an exception
        in the loop or the consuming task being cancelled cancels the call (after
        ``break``, once the generator is finalised: at once in CPython).
        """
        req_id = next(self._ids)
        message = _call_protocol.encode_request(
            req_id, pool, method, args, session, _call_protocol.timeout_ms(timeout), False, stream=True
        )
        writer = await self._connection()
        loop = asyncio.get_running_loop()
        grace = _call_protocol.local_deadline(timeout)
        give_up_at = None if grace is None else loop.time() + grace
        items: asyncio.Queue[_StreamItem] = asyncio.Queue()
        self._streams[req_id] = items
        answered = False
        try:
            await self._send(writer, message)
            while True:
                try:
                    if give_up_at is None:
                        item = await items.get()
                    else:
                        item = await asyncio.wait_for(items.get(), max(0.0, give_up_at - loop.time()))
                except asyncio.TimeoutError:
                    raise _call_protocol.local_timeout_error(timeout or 0.0) from None
                if isinstance(item, ConnectionLost):
                    answered = True
                    raise item
                if "chunk" in item:
                    yield item["chunk"]
                    continue
                answered = True
                _call_protocol.result_of(item)  # raises CallError for an error reply
                return
        finally:
            self._streams.pop(req_id, None)
            if not answered:
                self._cancel(writer, req_id)

    async def close(self) -> None:
        """Closes the connection; calls in flight raise :class:`~pit.ConnectionLost`."""
        self._closed = True
        self._end("the client was closed")
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _connection(self) -> asyncio.StreamWriter:
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
            self._send_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._closed:
                raise ConnectionLost(f"the client for {self.path} is closed", self.path)
            if self._writer is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_unix_connection(self.path), self.connect_timeout
                    )
                except (OSError, asyncio.TimeoutError) as e:
                    reason = getattr(e, "strerror", None) or str(e) or "timed out"
                    raise ConnectionLost(
                        f"cannot connect to pitd's call socket {self.path}: {reason}", self.path
                    ) from None
                self._writer = writer
                self._reader_task = asyncio.ensure_future(self._read_replies(reader, writer))
            return self._writer

    async def _send(self, writer: asyncio.StreamWriter, message: bytes) -> None:
        try:
            assert self._send_lock is not None
            async with self._send_lock:
                writer.write(message)
                await writer.drain()
        except OSError as e:
            self._end(f"sending to pitd at {self.path} failed: {e.strerror or e}")

    def _cancel(self, writer: asyncio.StreamWriter, req_id: int) -> None:
        """Asks pitd to cancel a stream of ``writer``'s connection, if it is still this
        client's. Not awaited (it may run in a generator being closed): ``write`` queues
        the whole message, which cannot interleave with another."""
        if self._writer is writer and not writer.is_closing():
            writer.write(_call_protocol.encode_cancel(req_id))

    async def _read_replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reason = f"pitd closed the connection on {self.path}"
        try:
            while True:
                head = await reader.readexactly(_call_protocol.LENGTH.size)
                (length,) = _call_protocol.LENGTH.unpack(head)
                reply = _call_protocol.parse_reply(await reader.readexactly(length))
                if "chunk" in reply:
                    items = self._streams.get(reply["id"])
                    if items is not None:  # else: a stream closed or timed out locally
                        items.put_nowait(reply)
                    continue
                future = self._pending.pop(reply["id"], None)
                if future is not None:
                    if not future.done():
                        future.set_result(reply)
                elif (items := self._streams.pop(reply["id"], None)) is not None:
                    items.put_nowait(reply)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                reason += " in the middle of a reply"
        except ValueError as e:
            reason = f"pitd at {self.path} sent a malformed reply: {e}"
        except OSError as e:
            reason = f"connection to pitd at {self.path} failed: {e.strerror or e}"
        finally:
            if self._writer is writer:
                self._end(reason)
            writer.close()

    def _end(self, reason: str) -> None:
        """Forgets the connection and fails every call waiting on it."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()  # the reader task sees end of stream and exits
        pending, self._pending = self._pending, {}
        streams, self._streams = self._streams, {}
        message = reason + " (a call in flight may or may not have run)"
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(message, self.path))
        for items in streams.values():
            items.put_nowait(ConnectionLost(message, self.path))
