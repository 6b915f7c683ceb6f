"""The asyncio call-socket client: :class:`AsyncClient`.

Same protocol and behaviour as :class:`pit.Client` (one pipelined connection, replies
routed by ``id``, :class:`~pit.ConnectionLost` for calls in flight when it fails, a new
connection on the next call), with a reader task instead of a reader thread. Use it from
one event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import TYPE_CHECKING, Any

from . import _call_protocol
from .errors import ConnectionLost
from .paths import default_call_socket

if TYPE_CHECKING:
    # Only the type checker reads it (annotations are strings here): no runtime dependency.
    from typing_extensions import Self


class AsyncClient:
    """``async with pit.AsyncClient() as c: await c.call("pool", "method", args)``."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.path = os.fspath(path) if path is not None else default_call_socket()
        self.connect_timeout = connect_timeout
        self._ids = itertools.count(1)
        self._closed = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
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
        try:
            assert self._send_lock is not None
            async with self._send_lock:
                writer.write(message)
                await writer.drain()
        except OSError as e:
            self._end(f"sending to pitd at {self.path} failed: {e.strerror or e}")
        try:
            reply = await asyncio.wait_for(future, _call_protocol.local_deadline(timeout))
        except asyncio.TimeoutError:
            raise _call_protocol.local_timeout_error(timeout or 0.0) from None
        finally:
            self._pending.pop(req_id, None)
        return _call_protocol.result_of(reply)

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

    async def _read_replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reason = f"pitd closed the connection on {self.path}"
        try:
            while True:
                head = await reader.readexactly(_call_protocol.LENGTH.size)
                (length,) = _call_protocol.LENGTH.unpack(head)
                reply = _call_protocol.parse_reply(await reader.readexactly(length))
                future = self._pending.pop(reply["id"], None)
                if future is not None and not future.done():
                    future.set_result(reply)
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
        message = reason + " (a call in flight may or may not have run)"
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(message, self.path))
