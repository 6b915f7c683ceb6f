""":class:`pit.Client` over pitd's HTTP front door: what ``pit.Client("https://...")`` is.

Calls travel over ``http.client`` connections kept alive between calls: a free list
guarded by a lock, one connection per call or stream at a time, so any number of threads
may call at once (a connection is opened when none is free, and a call's connection goes
back to the list once its answer was read whole). A stream reads its server-sent events as
they come; ending it early closes its connection, which cancels the call in pitd. The wire
itself is :mod:`pit._http_wire`.
"""

from __future__ import annotations

import collections
import http.client
import os
import select
import socket
import ssl
import threading
import time
from typing import Any, NoReturn

from . import _call_protocol, _http_wire
from .client import Client, Stream
from .errors import CallError, ConnectionLost

#: How long a finished stream's connection may take to show its answer's end before it is
#: closed rather than kept for the next call.
_DRAIN_TIMEOUT = 1.0

# What a kept-alive connection that pitd closed while it was idle fails with before an
# answer begins: such a call never reached pitd, and is sent again on a new connection.
_IDLE_CLOSED: tuple[type[BaseException], ...] = (
    ConnectionResetError,  # http.client.RemoteDisconnected too
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class _Conn:
    """One kept-alive connection: its ``http.client`` object, its socket, its last answer."""

    __slots__ = ("http", "resp", "reused", "sock")

    def __init__(self, conn: http.client.HTTPConnection, sock: socket.socket) -> None:
        self.http = conn
        self.sock = sock
        self.resp: http.client.HTTPResponse | None = None
        #: Whether it was kept alive from an earlier call (pitd may have closed it since).
        self.reused = False

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    def reusable(self) -> bool:
        """Whether the answer was read whole and the connection stays open after it."""
        resp = self.resp
        return resp is not None and resp.isclosed() and not resp.will_close and self.http.sock is not None

    def stale(self) -> bool:
        """Whether an idle connection was closed by pitd (or has bytes nobody asked for)."""
        sock = self.sock
        try:
            if sock.fileno() < 0 or not select.select([sock], [], [], 0)[0]:
                return sock.fileno() < 0
        except (OSError, ValueError):
            return True
        if not isinstance(sock, ssl.SSLSocket):
            return True
        # TLS: the bytes may be protocol records only (TLS 1.3 session tickets).
        sock.settimeout(0.0)
        try:
            sock.recv(1)
        except ssl.SSLWantReadError:
            return False
        except OSError:
            return True
        finally:
            try:
                sock.settimeout(None)
            except OSError:
                pass
        return True

    def wake(self) -> None:
        """Makes a call blocked on this connection in another thread fail at once."""
        try:
            # The plain socket's shutdown: TLS state is the owning thread's to touch.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.http.close()
        if self.resp is not None:
            self.resp.close()


def _left(deadline: float | None) -> float | None:
    """Seconds to the deadline, for a socket timeout (``socket.timeout`` once past it)."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("the call's deadline passed")
    return left


class HttpClient(Client):
    """:class:`pit.Client` for an ``http://`` or ``https://`` URL (see :class:`pit.Client`)."""

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
        # Guards _idle, _busy and _closed. Reentrant: a stream collected by the garbage
        # collector gives its connection back from whatever thread the collection runs in,
        # maybe one holding it.
        self._pool_lock = threading.RLock()
        self._closed = False
        self._idle: list[_Conn] = []
        self._busy: set[_Conn] = set()
        # Connect now, as the socket client does: a wrong address or certificate fails here.
        self._release(self._acquire(None, fresh=True), True)

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
        request = _http_wire.build_request(
            self._target, self._token, pool, method, args, session, timeout, idempotent, False
        )
        deadline = _deadline(timeout)
        try:
            conn = self._response(self._send(request, deadline), request, deadline)
            try:
                resp = conn.resp
                assert resp is not None
                conn.settimeout(_left(deadline))
                body = resp.read()
            except BaseException:
                self._release(conn, False)
                raise
        except (OSError, http.client.HTTPException) as e:
            self._raise(e, timeout)
        self._release(conn, conn.reusable())
        return _http_wire.result_of(resp.status, resp.reason, resp.getheader("Pit-Worker"), body, self.path)

    def stream(
        self,
        pool: str,
        method: str,
        args: Any = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
    ) -> Stream:
        request = _http_wire.build_request(
            self._target, self._token, pool, method, args, session, timeout, False, True
        )
        deadline = _deadline(timeout)
        try:
            conn = self._send(request, deadline)
        except (OSError, http.client.HTTPException) as e:
            self._raise(e, timeout)
        return HttpStream(self, request, conn, timeout, deadline)

    def close(self) -> None:
        """Closes the kept-alive connections; calls in flight raise :class:`~pit.ConnectionLost`."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for conn in self._busy:
                conn.wake()
        for conn in idle:
            conn.close()

    def __repr__(self) -> str:
        return f"Client(url={self.path!r})"

    # connections

    def _connect(self, deadline: float | None) -> _Conn:
        target = self._target
        timeout = self.connect_timeout
        if deadline is not None:
            timeout = min(timeout, max(0.001, deadline - time.monotonic()))
        conn: http.client.HTTPConnection
        if target.ssl_context is None:
            conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection(
                target.host, target.port, timeout=timeout, context=target.ssl_context
            )
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            reason = "timed out" if isinstance(e, socket.timeout) else _http_wire.describe(e)
            raise ConnectionLost(f"cannot connect to pitd at {self.path}: {reason}", self.path) from None
        assert conn.sock is not None
        return _Conn(conn, conn.sock)

    def _acquire(self, deadline: float | None, fresh: bool = False) -> _Conn:
        """A connection for one call: a kept-alive one unless ``fresh``, else a new one."""
        while True:
            with self._pool_lock:
                if self._closed:
                    raise ConnectionLost(f"the client for {self.path} is closed", self.path)
                conn = None if fresh or not self._idle else self._idle.pop()
                if conn is not None:
                    self._busy.add(conn)
            if conn is None:
                break
            if not conn.stale():
                conn.resp = None
                conn.reused = True
                return conn
            self._release(conn, False)
        conn = self._connect(deadline)
        with self._pool_lock:
            if not self._closed:
                self._busy.add(conn)
                return conn
        conn.close()
        raise ConnectionLost(f"the client for {self.path} is closed", self.path)

    def _release(self, conn: _Conn, reusable: bool) -> None:
        """Gives a connection back: kept for the next call if ``reusable``, else closed."""
        with self._pool_lock:
            self._busy.discard(conn)
            keep = reusable and not self._closed
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()

    # one exchange: the request, then the answer's head

    def _send(self, request: _http_wire.Request, deadline: float | None, fresh: bool = False) -> _Conn:
        """Sends the request on a connection of its own, which the caller must release."""
        conn = self._acquire(deadline, fresh)
        while True:
            try:
                conn.settimeout(_left(deadline))
                conn.http.request("POST", request.path, request.body, dict(request.headers))
                return conn
            except BaseException as e:
                self._release(conn, False)
                if not (conn.reused and isinstance(e, _IDLE_CLOSED)):
                    raise
            conn = self._acquire(deadline, fresh=True)

    def _response(self, conn: _Conn, request: _http_wire.Request, deadline: float | None) -> _Conn:
        """Reads the answer's head into ``conn.resp`` and returns the connection it came on:
        a kept-alive connection that pitd had closed before it saw the request is replaced
        by a new one, on which the request is sent again. The caller must release it."""
        while True:
            try:
                conn.settimeout(_left(deadline))
                conn.resp = conn.http.getresponse()
                return conn
            except BaseException as e:
                self._release(conn, False)
                if not (conn.reused and isinstance(e, _IDLE_CLOSED)):
                    raise
            conn = self._send(request, deadline, fresh=True)

    def _raise(self, e: OSError | http.client.HTTPException, timeout: float | None) -> NoReturn:
        """Raises what a call whose connection failed with ``e`` raises: a timeout once
        the deadline passed, else :class:`~pit.ConnectionLost`."""
        if isinstance(e, socket.timeout) and timeout is not None:
            raise _call_protocol.local_timeout_error(timeout) from None
        raise ConnectionLost(
            f"connection to pitd at {self.path} failed: {_http_wire.describe(e)}"
            " (a call in flight may or may not have run)",
            self.path,
        ) from None


def _deadline(timeout: float | None) -> float | None:
    """When the client gives up on a call: a little past the timeout pitd enforces."""
    grace = _call_protocol.local_deadline(timeout)
    return None if grace is None else time.monotonic() + grace


class HttpStream(Stream):
    """A :class:`pit.Stream` over HTTP: the server-sent events of one answer, read as they
    come. Its connection is given back for other calls once the stream has ended, and
    closed (cancelling the call in pitd) when it is closed before."""

    def __init__(
        self,
        client: HttpClient,
        request: _http_wire.Request,
        conn: _Conn,
        timeout: float | None,
        deadline: float | None,
    ) -> None:
        self._client = client
        self._request = request
        self._http_conn: _Conn | None = conn
        self._timeout = timeout
        self._give_up_at = deadline
        self._done = False
        self._opened = False
        self._parser = _http_wire.EventParser()
        self._events: collections.deque[tuple[str, str]] = collections.deque()

    def __next__(self) -> Any:
        url = self._client.path
        while not self._done:
            if not self._events:
                try:
                    try:
                        self._read()
                    except BaseException:
                        self._end(False)
                        raise
                except (OSError, http.client.HTTPException) as e:
                    self._client._raise(e, self._timeout)
                continue
            try:
                kind, value = _http_wire.stream_event(*self._events.popleft(), url)
            except CallError as e:
                self._end(not isinstance(e, ConnectionLost))
                raise
            if kind == "chunk":
                return value
            if kind == "end":
                self._end(True)
        raise StopIteration

    def close(self) -> None:
        """Closes the stream's connection unless the stream has ended, which cancels the
        call in pitd. Calling it again does nothing."""
        if not self._done:
            self._end(False)

    def _read(self) -> None:
        """Reads the answer's head the first time, then its events as they come."""
        conn = self._http_conn
        assert conn is not None
        client = self._client
        if not self._opened:
            self._opened = True
            self._http_conn = None  # _response releases it if it fails
            conn = self._http_conn = client._response(conn, self._request, self._give_up_at)
            resp = conn.resp
            assert resp is not None
            if resp.status != 200:
                body = resp.read()
                self._end(True)
                raise _http_wire.error_of(
                    resp.status, resp.reason, resp.getheader("Pit-Worker"), body, client.path
                )
            if _http_wire.media_type(resp.getheader("Content-Type")) != _http_wire.EVENT_STREAM:
                # A plain answer: the final result of a stream that sent no chunk.
                _http_wire.decode(resp.read(), client.path)
                self._events.append(("end", "null"))
            return
        resp = conn.resp
        assert resp is not None
        conn.settimeout(_left(self._give_up_at))
        data = resp.read1(_http_wire.READ_SIZE)
        if not data:
            raise ConnectionLost(
                f"pitd at {client.path} ended the stream's answer before its end event", client.path
            )
        try:
            self._events.extend(self._parser.feed(data))
        except ValueError as e:
            raise ConnectionLost(f"pitd at {client.path} sent malformed events: {e}", client.path) from None

    def _end(self, drain: bool) -> None:
        """Marks the stream done and gives its connection back: kept for other calls when
        ``drain`` and the rest of the answer (its last chunk) comes promptly, else closed."""
        self._done = True
        conn, self._http_conn = self._http_conn, None
        if conn is None:
            return
        reusable = False
        if drain and conn.resp is not None:
            try:
                left = _left(self._give_up_at)
                conn.settimeout(_DRAIN_TIMEOUT if left is None else min(left, _DRAIN_TIMEOUT))
                conn.resp.read()
                reusable = conn.reusable()
            except (OSError, http.client.HTTPException):
                pass
        self._client._release(conn, reusable)
