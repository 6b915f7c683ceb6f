"""A fake of pitd's HTTP front door for the HTTP clients' tests: ``http.server`` in threads
on 127.0.0.1:0, optionally behind TLS, each POST answered by a function of the test.

Also self-signed certificates made with the ``openssl`` command (None without it). Every
wait is bounded by :data:`harness.DEADLINE`.
"""

from __future__ import annotations

import http.server
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pytest
from harness import DEADLINE


class Cert(NamedTuple):
    """A certificate and its key, as PEM files, and the test CA's certificate that signed it
    (what a client is given to trust)."""

    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=DEADLINE)


def make_cert(directory: Path, name: str = "server") -> Cert | None:
    """A certificate for ``localhost`` and 127.0.0.1 (server and client use), signed by a
    CA made for the directory (``openssl req -x509``) on first use; None when there is no
    ``openssl`` command. TLS stacks such as rustls and Erlang's refuse a CA's own
    certificate as a server's, hence the two."""
    if shutil.which("openssl") is None:
        return None
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    if not ca.exists():
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
            "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=pit test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    cert, key, csr = directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    return Cert(ca, cert, key)


class Request(NamedTuple):
    """One request the door received."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    connection: int  # which of the door's connections carried it, from 1


class Exchange:
    """One request being answered: what came, and ways to answer it."""

    def __init__(self, handler: _Handler, request: Request) -> None:
        self._handler = handler
        self.request = request

    @property
    def args(self) -> Any:
        return json.loads(self.request.body) if self.request.body else None

    def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """A whole answer: ``body`` as JSON (``bytes`` as they are)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = self._handler
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def error(self, status: int, kind: str, message: str, **more: Any) -> None:
        self.reply(status, {"error": {"kind": kind, "message": message, **more}})

    def start_events(self, chunked: bool = True) -> None:
        """A 200 of server-sent events; chunked, or delimited by the connection's end."""
        h = self._handler
        self._chunked = chunked
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.flush()

    def send(self, data: bytes) -> None:
        """Bytes of the event stream as they are (one chunk of the chunked coding)."""
        h = self._handler
        if self._chunked:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            h.wfile.write(data)
        h.wfile.flush()

    def event(self, event: str, value: Any) -> None:
        self.send(f"event: {event}\ndata: {json.dumps(value)}\n\n".encode())

    def end_events(self) -> None:
        if self._chunked:
            self._handler.wfile.write(b"0\r\n\r\n")
            self._handler.wfile.flush()

    def wait_for_hang_up(self, seconds: float = DEADLINE) -> bool:
        """Whether the client closes the connection within ``seconds``."""
        sock = self._handler.connection
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not select.select([sock], [], [], max(0.0, end - time.monotonic()))[0]:
                continue
            try:
                if not sock.recv(4096):
                    return True
            except ssl.SSLWantReadError:
                continue
            except OSError:
                return True
        return False

    def hang_up_after(self) -> None:
        """Closes the connection once this answer is sent (without saying so in it)."""
        self._handler.close_connection = True


OnPost = Callable[[Exchange], None]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # a head and its body in two writes, not 40 ms apart
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.number = self.server.connections

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.finished += 1

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        request = Request(
            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, self.number
        )
        with self.server.lock:
            self.server.requests.append(request)
        exchange = Exchange(self, request)
        try:
            self.server.on_post(exchange)
        except OSError:
            self.close_connection = True
            with self.server.lock:
                self.server.hang_ups += 1

    def do_GET(self) -> None:
        Exchange(self, Request("GET", self.path, {}, b"", self.number)).reply(200, {"ok": True})

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # many clients connecting at once

    def __init__(self, on_post: OnPost, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.on_post = on_post
        self.context = context
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.connections = 0
        self.finished = 0
        self.hang_ups = 0

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.context is not None:
            # The handshake happens in the connection's thread, at its first read.
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer, or failed its handshake: the test says


class FakeDoor:
    """The fake front door: ``FakeDoor(on_post)``, ``.url``, ``.requests``, ``.close()``."""

    def __init__(self, on_post: OnPost, context: ssl.SSLContext | None = None) -> None:
        self._server = _Server(on_post, context)
        port = self._server.server_address[1]
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def requests(self) -> list[Request]:
        with self._server.lock:
            return list(self._server.requests)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._server.lock:
            return self._server.connections

    @property
    def finished(self) -> int:
        """Connections the door is done with (closed) so far."""
        with self._server.lock:
            return self._server.finished

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=DEADLINE)


def server_context(cert: Cert, client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS server context with ``cert``; requiring client certificates ``client_ca`` signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


# --- the example clients (examples/clients) ----------------------------------------------------

EXAMPLE_CLIENTS = Path(__file__).resolve().parents[2] / "examples" / "clients"

#: Each example client: the command that runs it, and the program it needs.
EXAMPLES: dict[str, tuple[list[str], str]] = {
    "curl": (["bash", str(EXAMPLE_CLIENTS / "curl.sh")], "curl"),
    "node": (["node", str(EXAMPLE_CLIENTS / "node.mjs")], "node"),
    "elixir": (["elixir", str(EXAMPLE_CLIENTS / "elixir.exs")], "elixir"),
}


def run_example(
    name: str, url: str, token: str | None, ca: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs one example client against ``url`` with ``PIT_URL``, ``PIT_TOKEN`` and
    ``PIT_CA``; skips the test when its program is not installed."""
    argv, program = EXAMPLES[name]
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (needed by examples/clients/{Path(argv[1]).name})")
    env = {k: v for k, v in os.environ.items() if k not in ("PIT_URL", "PIT_TOKEN", "PIT_CA")}
    env["PIT_URL"] = url
    if token is not None:
        env["PIT_TOKEN"] = token
    if ca is not None:
        env["PIT_CA"] = str(ca)
    return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
