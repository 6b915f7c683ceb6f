"""Test doubles for pitd: a worker driver (plays pitd on fds 3/4) and a fake call socket.

Every wait is bounded by :data:`DEADLINE` and fails with a message naming what was awaited
and what was seen, so a hung worker or client fails the test instead of hanging it.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from pit import _worker_protocol

#: One generous bound for anything a test waits for.
DEADLINE = 15.0

PACKAGE_ROOT = Path(_worker_protocol.__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"


def wait_until(what: str, predicate: Callable[[], Any], seen: Callable[[], Any] = lambda: None) -> Any:
    """Polls ``predicate`` until it is truthy; fails naming ``what`` and the last state seen."""
    end = time.monotonic() + DEADLINE
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}; last seen: {seen()!r}")
        time.sleep(0.01)


def nothing_within(worker: WorkerProcess, seconds: float) -> bool:
    """True when the worker writes nothing for ``seconds`` (nothing was buffered before)."""
    return not select.select([worker.from_worker], [], [], seconds)[0]


# --- worker side --------------------------------------------------------------------------


class Reply(NamedTuple):
    """A worker's answer to a CALL: ``value`` is the result (OK) or the error object (ERR)."""

    ok: bool
    req_id: int
    value: Any


class Chunk(NamedTuple):
    """One ``CHUNK`` frame of a stream, its JSON decoded."""

    req_id: int
    value: Any


class WorkerProcess:
    """``python -m pit serve MODULE`` with its protocol pipes on fds 3/4, driven like pitd."""

    def __init__(self, module: str, cwd: Path, env: dict[str, str] | None = None, fds: bool = True) -> None:
        full_env = dict(os.environ)
        full_env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])),
            PYTHONDONTWRITEBYTECODE="1",
            PIT_WORKER_ID="worker-7",
            PIT_POOL="tests",
        )
        full_env.update(env or {})
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()

        def put_pipes_on_3_and_4() -> None:
            # Park both ends above 10 first so neither dup2 can clobber the other.
            a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.close(a)
            os.close(b)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pit", "serve", module],
            cwd=str(cwd),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Keep fds 3/4 made by the hook; every other fd of ours is close-on-exec.
            close_fds=not fds,
            preexec_fn=put_pipes_on_3_and_4 if fds else None,
        )
        os.close(to_r)
        os.close(from_w)
        self.to_worker: int | None = to_w
        self.from_worker = from_r
        self._until = 0.0
        self.frames = _worker_protocol.FrameReader(self._read_frame_bytes)
        self._output: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._next_id = 100

    # frames

    def send(self, data: bytes) -> None:
        assert self.to_worker is not None, "input already closed"
        os.write(self.to_worker, data)

    def recv(self) -> tuple[int, bytes]:
        self._until = time.monotonic() + DEADLINE
        frame = self.frames.next_frame()
        assert frame is not None, f"worker closed fd 4; stderr: {self.output('stderr')}"
        return frame

    def ready(self) -> dict[str, Any]:
        ftype, body = self.recv()
        assert ftype == _worker_protocol.READY, f"expected READY, got 0x{ftype:02x}"
        return json.loads(body)

    def call(
        self,
        method: str,
        args: Any = None,
        *,
        raw_args: bytes | None = None,
        session: str | None = None,
        timeout_ms: int = 0,
    ) -> Reply:
        req_id = self.start_call(method, args, raw_args=raw_args, session=session, timeout_ms=timeout_ms)
        reply = self.reply()
        assert reply.req_id == req_id, f"reply for req {reply.req_id}, expected {req_id}"
        return reply

    def call_frame(
        self,
        method: str,
        args: Any = None,
        *,
        raw_args: bytes | None = None,
        session: str | None = None,
        timeout_ms: int = 0,
        stream: bool = False,
        window: int = 0,
    ) -> tuple[int, bytes]:
        """``(req_id, CALL frame)`` with a fresh req_id, not sent."""
        self._next_id += 1
        if raw_args is None:
            raw_args = b"" if args is None else json.dumps(args).encode()
        return self._next_id, _worker_protocol.encode_call(
            self._next_id, method, raw_args, session, timeout_ms, stream, window
        )

    def start_call(self, method: str, args: Any = None, **kw: Any) -> int:
        """Sends a CALL without waiting for its reply; returns its req_id."""
        req_id, frame = self.call_frame(method, args, **kw)
        self.send(frame)
        return req_id

    def reply(self) -> Reply:
        """The next frame, which must be an OK or an ERR."""
        ftype, body = self.recv()
        assert ftype in (_worker_protocol.OK, _worker_protocol.ERR), f"expected OK or ERR, got 0x{ftype:02x}"
        got_id, payload = _worker_protocol.split_reply(body)
        return Reply(ftype == _worker_protocol.OK, got_id, json.loads(payload))

    def start_stream(self, method: str, args: Any = None, window: int = 64, **kw: Any) -> int:
        """Sends a CALL with STREAM and ``window`` credit; returns its req_id."""
        return self.start_call(method, args, stream=True, window=window, **kw)

    def credit(self, req_id: int, n: int) -> None:
        self.send(_worker_protocol.encode_credit(req_id, n))

    def cancel(self, req_id: int) -> None:
        self.send(_worker_protocol.encode_cancel(req_id))

    def event(self) -> Chunk | Reply:
        """The next frame, which must be a CHUNK, an OK or an ERR."""
        ftype, body = self.recv()
        got_id, payload = _worker_protocol.split_reply(body)
        if ftype == _worker_protocol.CHUNK:
            return Chunk(got_id, json.loads(payload))
        assert ftype in (_worker_protocol.OK, _worker_protocol.ERR), f"expected a reply, got 0x{ftype:02x}"
        return Reply(ftype == _worker_protocol.OK, got_id, json.loads(payload))

    def chunks(self, req_id: int, n: int) -> list[Any]:
        """The next ``n`` frames, which must be chunks of ``req_id``; their values."""
        got = [self.event() for _ in range(n)]
        assert all(isinstance(e, Chunk) and e.req_id == req_id for e in got), got
        return [e.value for e in got]

    def stream(self, req_id: int) -> tuple[list[Any], Reply]:
        """Chunks of ``req_id`` until its reply (no other frame may come meanwhile)."""
        values: list[Any] = []
        while True:
            event = self.event()
            assert event.req_id == req_id, f"a frame for req {event.req_id} inside the stream of {req_id}"
            if isinstance(event, Reply):
                return values, event
            values.append(event.value)

    def close_input(self) -> None:
        if self.to_worker is not None:
            os.close(self.to_worker)
            self.to_worker = None

    def _read_frame_bytes(self, n: int) -> bytes:
        left = self._until - time.monotonic()
        ready, _, _ = select.select([self.from_worker], [], [], max(0.0, left))
        if not ready:
            raise AssertionError(
                f"no frame from the worker within {DEADLINE}s; exit status {self.proc.poll()}, "
                f"stderr: {self.output('stderr')!r}"
            )
        return os.read(self.from_worker, n)

    # process and captured output

    def wait_exit(self) -> int:
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {DEADLINE}s; stderr: {self.output('stderr')!r}"
            ) from None

    def output(self, stream: str) -> str:
        """Everything the worker wrote to ``stream`` so far (reads what is available)."""
        pipe = getattr(self.proc, stream)
        while pipe is not None and select.select([pipe], [], [], 0)[0]:
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            self._output[stream] += chunk
        return self._output[stream].decode("utf-8", "replace")

    def wait_for_output(self, stream: str, text: str) -> str:
        return wait_until(
            f"{text!r} on the worker's {stream}",
            lambda: text in self.output(stream) and self.output(stream),
            lambda: self.output(stream),
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)
        self.close_input()
        for fd in (self.from_worker,):
            try:
                os.close(fd)
            except OSError:
                pass
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def copy_apps(into: Path) -> None:
    """Puts the test handler modules in ``into`` (the worker's working directory)."""
    for source in APPS.glob("*.py"):
        shutil.copy(source, into / source.name)


# --- call socket side ---------------------------------------------------------------------

_LENGTH = struct.Struct(">I")


class FakeConnection:
    """One accepted client connection; ``send`` is safe from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        with self._lock:
            self.sock.sendall(_LENGTH.pack(len(body)) + body)

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


OnRequest = Callable[[FakeConnection, dict[str, Any]], None]


def echo_request(conn: FakeConnection, request: dict[str, Any]) -> None:
    """Answers every call with ``args`` as the result, from ``worker-1``."""
    conn.send({"id": request["id"], "ok": True, "result": request.get("args"), "worker": "worker-1"})


class FakeCallServer:
    """A call socket in a thread: ``on_request(conn, request)`` decides how to answer."""

    def __init__(self, path: Path, on_request: OnRequest = echo_request) -> None:
        self.path = str(path)
        self.on_request = on_request
        self.requests: list[dict[str, Any]] = []
        self.connections: list[FakeConnection] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._listener.settimeout(0.05)  # lets the accept loop notice close()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(None)
            conn = FakeConnection(sock)
            with self._lock:
                self.connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: FakeConnection) -> None:
        stream = conn.sock.makefile("rb")
        try:
            while True:
                head = stream.read(4)
                if len(head) < 4:
                    return
                request = json.loads(stream.read(_LENGTH.unpack(head)[0]))
                with self._lock:
                    self.requests.append(request)
                self.on_request(conn, request)
        except (OSError, ValueError):
            return
        finally:
            stream.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            connections = list(self.connections)
        for conn in connections:
            conn.close()
        for thread in self._threads:
            thread.join(timeout=DEADLINE)


def stream_request(conn: FakeConnection, request: dict[str, Any]) -> None:
    """Plays pitd for streams: ``count`` sends ``args`` chunks then ``null``, ``fail`` two
    chunks then a ``handler_error``, ``hold`` ``args`` chunks and waits for a cancel,
    ``silent`` nothing at all, ``drop`` one chunk and hangs up; a cancel is answered
    ``cancelled``, as pitd answers it; anything else is echoed."""
    if "cancel" in request:
        error = {"kind": "cancelled", "message": "cancelled by its caller"}
        conn.send({"id": request["cancel"], "ok": False, "error": error})
        return
    req_id, method, args = request["id"], request["method"], request.get("args")
    if method in ("count", "hold"):
        for i in range(args):
            conn.send({"id": req_id, "chunk": {"i": i}})
        if method == "count":
            conn.send({"id": req_id, "ok": True, "result": None, "worker": "worker-1"})
    elif method == "fail":
        for i in range(2):
            conn.send({"id": req_id, "chunk": i})
        error = {"kind": "handler_error", "message": "ValueError: broke", "traceback": "Traceback ..."}
        conn.send({"id": req_id, "ok": False, "error": error, "worker": "worker-2"})
    elif method == "drop":
        conn.send({"id": req_id, "chunk": "last words"})
        conn.close()
    elif method != "silent":
        echo_request(conn, request)
