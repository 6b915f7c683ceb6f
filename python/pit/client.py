"""The thread-safe, pipelined call-socket client: :class:`Client`.

One Unix-socket connection carries every thread's calls at once. Senders take a lock only
around ``sendall``; a reader thread owns the receiving side and hands each reply to the
thread waiting on its ``id`` (one pre-acquired lock per call, released by the reader:
the cheapest wake-up primitive there is). A stream's chunks go to a queue its
:class:`Stream` reads instead. When the connection fails, every call in flight gets
:class:`~pit.ConnectionLost`, and the next call opens a new connection.
"""

from __future__ import annotations

import itertools
import os
import queue
import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar, Union, cast

from . import _call_protocol
from .errors import ConnectionLost
from .paths import default_call_socket, is_url

if TYPE_CHECKING:
    # Only the type checker reads them (annotations are strings here): no runtime dependency.
    import ssl

    from typing_extensions import Self

#: Bytes asked of each recv of replies.
_READ_CHUNK = 64 * 1024

_P = TypeVar("_P", "_Waiter", "_Chunks")


class Client:
    """Calls pools through pitd's call socket, or its HTTP front door.

    ``path`` defaults to :func:`pit.default_call_socket` (``$PITD_CALL_SOCKET``, then the
    daemon's default). The constructor connects, so a wrong path fails at once with
    :class:`~pit.ConnectionLost`. Usable from many threads at once; a context manager.

    ``path`` may be a URL instead, ``http://host:port`` or ``https://host:port``: the
    calls then go to pitd's HTTP front door, with ``token`` as the bearer token. An
    ``https`` URL trusts the system's CAs, or only those in ``cafile`` when given;
    ``ssl_context`` replaces both (load a client certificate into it for mTLS). Same
    methods, same errors.
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
        # The one switch between the two transports: a URL makes the client an HttpClient.
        if cls is Client and is_url(path):
            from ._http import HttpClient

            return cast("Self", super().__new__(HttpClient))
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
                f"{type(self).__name__} takes a call socket's path; pit.Client(url) calls over HTTP"
            )
        if token is not None or ssl_context is not None or cafile is not None:
            raise ValueError("token, ssl_context and cafile are for a URL, not a call socket's path")
        self.path = os.fspath(path) if path is not None else default_call_socket()
        self.connect_timeout = connect_timeout
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _conn and _closed
        self._closed = False
        self._conn = _Connection(self.path, connect_timeout)

    def call(
        self,
        pool: str,
        method: str,
        args: Any = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Runs ``method(args)`` on a worker of ``pool`` and returns its result.

        ``timeout`` (seconds) is enforced by pitd; the client itself gives up a little
        later in case pitd never answers. ``idempotent=True`` lets pitd retry the call once
        on another worker if its worker dies. Raises :class:`~pit.CallError`.
        """
        req_id = next(self._ids)
        message = _call_protocol.encode_request(
            req_id, pool, method, args, session, _call_protocol.timeout_ms(timeout), idempotent
        )
        conn = self._connection()
        waiter = conn.send(req_id, message, _Waiter(self.path))
        if not waiter.lock.acquire(timeout=_call_protocol.local_deadline(timeout) or -1):
            if conn.forget(req_id):
                raise _call_protocol.local_timeout_error(timeout or 0.0)
            waiter.lock.acquire()  # the reader took it first; its answer is imminent
        return waiter.outcome()

    def stream(
        self,
        pool: str,
        method: str,
        args: Any = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
    ) -> Stream:
        """Calls a streaming handler: iterate the :class:`Stream` for its chunks as they come.

        The request is sent now. ``timeout`` (seconds) bounds the whole stream, as pitd
        enforces it and, a little later, as the client gives up. A failed call raises
        :class:`~pit.CallError` from the iteration, after the chunks that came before.
        Leaving the loop early (``break``, an exception), ``close()`` or the stream being
        garbage-collected cancels the call.
        """
        req_id = next(self._ids)
        message = _call_protocol.encode_request(
            req_id, pool, method, args, session, _call_protocol.timeout_ms(timeout), False, stream=True
        )
        conn = self._connection()
        return Stream(conn, req_id, conn.send(req_id, message, _Chunks()), timeout)

    def close(self) -> None:
        """Closes the connection; calls in flight raise :class:`~pit.ConnectionLost`."""
        with self._lock:
            self._closed = True
            conn = self._conn
        conn.close("the client was closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(path={self.path!r})"

    def _connection(self) -> _Connection:
        with self._lock:
            if self._closed:
                raise ConnectionLost(f"the client for {self.path} is closed", self.path)
            if self._conn.lost is not None:
                self._conn = _Connection(self.path, self.connect_timeout)
            return self._conn


class _Waiter:
    """One call in flight: ``lock`` is released by the reader once ``reply`` or ``lost`` is set."""

    __slots__ = ("lock", "lost", "path", "reply")

    def __init__(self, path: str) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.reply: dict[str, Any] | None = None
        self.lost: str | None = None
        self.path = path

    def chunk(self, reply: dict[str, Any]) -> None:
        """A chunk for a call that is no stream: pitd sends none, so there is none to keep."""

    def deliver(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.lock.release()

    def fail(self, lost: str) -> None:
        self.lost = lost
        self.lock.release()

    def outcome(self) -> Any:
        if self.reply is None:
            # A fresh exception per caller: one instance raised in many threads would
            # collect all their tracebacks.
            raise ConnectionLost(self.lost or "connection lost", self.path)
        return _call_protocol.result_of(self.reply)


class _Chunks:
    """One stream in flight: the reader queues its chunks, then its final reply (a dict
    too) or why the connection was lost (a str)."""

    __slots__ = ("queue",)

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[dict[str, Any] | str] = queue.SimpleQueue()

    def chunk(self, reply: dict[str, Any]) -> None:
        self.queue.put(reply)

    def deliver(self, reply: dict[str, Any]) -> None:
        self.queue.put(reply)

    def fail(self, lost: str) -> None:
        self.queue.put(lost)


_Pending = Union[_Waiter, _Chunks]


class Stream:
    """The chunks of one streaming call (:meth:`Client.stream`), decoded, as they come.

    An iterator, to be read by one thread; a context manager that closes it. Chunks that
    came but were not read yet are held here: pitd's flow control (``stream_window``)
    counts what this connection took, not what the loop consumed.
    """

    def __init__(self, conn: _Connection, req_id: int, chunks: _Chunks, timeout: float | None) -> None:
        self._conn = conn
        self._req_id = req_id
        self._queue = chunks.queue
        self._timeout = timeout
        grace = _call_protocol.local_deadline(timeout)
        self._give_up_at = None if grace is None else time.monotonic() + grace
        self._done = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            item = self._queue.get(timeout=self._time_left())
        except queue.Empty:
            self.close()
            raise _call_protocol.local_timeout_error(self._timeout or 0.0) from None
        if isinstance(item, dict) and "chunk" in item:
            return item["chunk"]
        self._done = True
        if isinstance(item, str):
            raise ConnectionLost(item, self._conn.path)
        _call_protocol.result_of(item)  # raises CallError for an error reply
        raise StopIteration

    def close(self) -> None:
        """Cancels the call unless it is over: pitd is sent ``{"cancel": id}`` and the
        call's final reply is dropped. Calling it again does nothing."""
        if not self._done:
            self._done = True
            self._conn.cancel(self._req_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing to tell at garbage collection; pitd cancels on hang-up too
            pass

    def _time_left(self) -> float | None:
        if self._give_up_at is None:
            return None
        return max(0.0, self._give_up_at - time.monotonic())


class _Connection:
    """One socket, its reader thread and the table of calls waiting on it."""

    def __init__(self, path: str, connect_timeout: float) -> None:
        self.path = path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
            sock.settimeout(None)
        except OSError as e:
            sock.close()
            reason = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e))
            raise ConnectionLost(f"cannot connect to pitd's call socket {path}: {reason}", path) from None
        self._sock = sock
        # Reentrant: a Stream collected by the garbage collector cancels its call from
        # whatever thread the collection runs in, maybe one holding these locks.
        self._send_lock = threading.RLock()
        self._lock = threading.RLock()  # guards _pending and lost
        self._pending: dict[int, _Pending] = {}
        #: Why the connection ended, once it has; set exactly once, under _lock.
        self.lost: str | None = None
        self._reader = threading.Thread(target=self._read_replies, name=f"pit-client {path}", daemon=True)
        self._reader.start()

    def send(self, req_id: int, message: bytes, waiter: _P) -> _P:
        """Sends a request whose replies go to ``waiter``; returns ``waiter``."""
        with self._lock:
            if self.lost is not None:
                waiter.fail(self.lost)
                return waiter
            self._pending[req_id] = waiter
        try:
            with self._send_lock:
                self._sock.sendall(message)
        except OSError as e:
            self._end(
                f"sending to pitd at {self.path} failed: {e.strerror or e}; the call was not sent whole"
            )
        return waiter

    def forget(self, req_id: int) -> bool:
        """Drops a call that timed out locally; False if its reply is being delivered."""
        with self._lock:
            return self._pending.pop(req_id, None) is not None

    def cancel(self, req_id: int) -> None:
        """Drops a call and asks pitd to cancel it, unless its final reply came already."""
        if not self.forget(req_id):
            return
        try:
            with self._send_lock:
                self._sock.sendall(_call_protocol.encode_cancel(req_id))
        except OSError:
            pass  # the connection is failing: pitd cancels the calls of a connection that ends

    def close(self, reason: str) -> None:
        self._end(reason)
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=5.0)

    def _read_replies(self) -> None:
        reason = f"pitd closed the connection on {self.path}"
        sock = self._sock
        # Waiting in poll rather than in recv: a reader blocked in recv on a Unix stream
        # socket is also woken each time pitd takes a request off it (freed send space
        # wakes the socket's sleepers), a wake-up and a context switch per call for nothing.
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        buf = bytearray()
        at = 0
        head = _call_protocol.LENGTH.size
        try:
            while True:
                while len(buf) - at >= head:
                    (length,) = _call_protocol.LENGTH.unpack_from(buf, at)
                    end = at + head + length
                    if len(buf) < end:
                        break
                    reply = _call_protocol.parse_reply(bytes(buf[at + head : end]))
                    at = end
                    if "chunk" in reply:
                        with self._lock:
                            stream = self._pending.get(reply["id"])
                        if stream is not None:  # else: a stream closed or timed out locally
                            stream.chunk(reply)
                        continue
                    with self._lock:
                        waiter = self._pending.pop(reply["id"], None)
                    if waiter is not None:  # else: a call that already timed out locally
                        waiter.deliver(reply)
                del buf[:at]
                at = 0
                poller.poll()
                chunk = sock.recv(_READ_CHUNK)
                if not chunk:
                    if buf:
                        reason = f"pitd closed the connection on {self.path} in the middle of a reply"
                    break
                buf += chunk
        except ValueError as e:
            reason = f"pitd at {self.path} sent a malformed reply: {e}"
        except OSError as e:
            reason = f"connection to pitd at {self.path} failed: {e.strerror or e}"
        finally:
            self._end(reason)
            # Under the send lock: closing a socket another thread is writing to could let
            # its fd number be reused by an unrelated file mid-write.
            with self._send_lock:
                self._sock.close()

    def _end(self, reason: str) -> None:
        """Marks the connection lost and fails every call waiting on it (first reason wins)."""
        with self._lock:
            if self.lost is not None:
                return
            self.lost = reason + " (a call in flight may or may not have run)"
            pending, self._pending = self._pending, {}
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader if it is still in recv
        except OSError:
            pass
        for waiter in pending.values():
            waiter.fail(self.lost)
