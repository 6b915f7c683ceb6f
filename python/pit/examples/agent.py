"""Example of an I/O-bound pool worth running with ``concurrency``: ``app = "pit.examples.agent"``.

Its calls spend their time waiting (on a remote service, say a model API), so one worker
can hold many at once::

    [pools.agent]
    app         = "pit.examples.agent"
    size        = 2
    concurrency = 16

``ask`` is an ``async def``: it runs as a task on the worker's event loop and, past its
timeout, pitd cancels the task. ``ask_blocking`` does the same with blocking calls: it
runs on one of the worker's ``concurrency`` threads and checks ``ctx.cancelled`` to stop
early. Both take ``{"url": "http://..."}`` (a GET; the status and the body's size come
back) or ``{"seconds": 0.5}`` to just wait, and need nothing beyond the standard library.

``tokens`` and ``relay`` stream (call them with ``pitctl call --stream``,
``pit.Client.stream`` or ``pit.AsyncClient.stream``): ``tokens`` is a fake model that
yields ``{"token": ...}`` at a set pace, ``relay`` passes on the tokens of a server-sent
events endpoint as they arrive, such as the one :class:`TokenServer` serves (run
``python -m pit.examples.agent`` to start one on the loopback interface). Each is an async
generator: it waits at its ``yield`` while the caller reads slowly, and a cancelled stream
gets ``asyncio.CancelledError`` at its ``await`` (``relay`` then closes its connection).

Handlers of a pool with ``concurrency`` above 1 run at the same time: these share no
state between calls, which is what makes them safe to run that way.
"""

from __future__ import annotations

import asyncio
import http.server
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import pit

if TYPE_CHECKING:
    from typing_extensions import Self

#: How long a call waits when given no URL and no ``seconds``.
DEFAULT_SECONDS = 0.5
_CHUNK = 64 * 1024
_STEP = 0.05  # how often ask_blocking looks at ctx.cancelled while it waits
#: What the fake model says when given no prompt.
DEFAULT_PROMPT = "the quick brown fox jumps over the lazy dog"
#: The last event of a TokenServer stream, as OpenAI-style endpoints end theirs.
DONE = "[DONE]"


@pit.handler
async def ask(args: Any, ctx: pit.Context) -> dict[str, Any]:
    """GETs ``args["url"]`` with asyncio streams, or awaits ``args["seconds"]``."""
    url, seconds = _parse(args)
    started = time.monotonic()
    if url is None:
        await asyncio.sleep(seconds)
        return {"slept": seconds, "elapsed_s": time.monotonic() - started}
    status, size = await _get(url)
    return {"url": url, "status": status, "bytes": size, "elapsed_s": time.monotonic() - started}


@pit.handler
def ask_blocking(args: Any, ctx: pit.Context) -> dict[str, Any]:
    """``ask`` with blocking calls (``urllib.request``, ``time.sleep``), on a thread; stops
    early once ``ctx.cancelled`` (pitd gave up on the call) and says so."""
    url, seconds = _parse(args)
    started = time.monotonic()
    if url is None:
        end = started + seconds
        while not ctx.cancelled and time.monotonic() < end:
            time.sleep(min(_STEP, max(0.0, end - time.monotonic())))
        return {"slept": time.monotonic() - started, "cancelled": ctx.cancelled}
    left = ctx.time_left()
    size = 0
    try:
        response = urllib.request.urlopen(url, timeout=left if left and left > 0 else 30.0)
    except urllib.error.HTTPError as e:
        response = e  # a 4xx/5xx answer still has a status and a body, as in ask
    with response:
        while not ctx.cancelled:
            chunk = response.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
        status = response.getcode()
    return {
        "url": url,
        "status": status,
        "bytes": size,
        "elapsed_s": time.monotonic() - started,
        "cancelled": ctx.cancelled,
    }


@pit.handler
async def tokens(args: Any) -> AsyncIterator[dict[str, str]]:
    """A fake model: yields ``{"token": word}`` ``count`` times, one every ``interval``
    seconds, cycling through the words of ``prompt``."""
    prompt, count, interval = _token_args(args)
    for token in fake_tokens(prompt, count):
        await asyncio.sleep(interval)
        yield {"token": token}


@pit.handler
async def relay(args: Any) -> AsyncIterator[dict[str, str]]:
    """GETs ``args["url"]``, a server-sent events endpoint, and yields ``{"token": data}``
    for each event as it arrives, until the stream ends or sends ``[DONE]``."""
    url, _ = _parse(args)
    if url is None:
        raise ValueError('relay takes {"url": "http://..."}, a server-sent events endpoint')
    reader, writer, status, headers = await _request(url, "text/event-stream")
    try:
        if status != 200:
            raise ConnectionError(f"{url} answered {status}")
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        async for data in _sse_data(_body(reader, chunked)):
            if data == DONE:
                return
            yield {"token": data}
    finally:
        writer.close()


def fake_tokens(prompt: str, count: int) -> Iterator[str]:
    """``count`` tokens of the fake model: the words of ``prompt``, over and over."""
    words = prompt.split() or DEFAULT_PROMPT.split()
    for i in range(count):
        yield words[i % len(words)]


def _token_args(args: Any) -> tuple[str, int, float]:
    """``(prompt, count, interval)`` from ``args`` (an object, or null for the defaults)."""
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise TypeError(f'takes {{"prompt": ..., "count": ..., "interval": ...}}, got {args!r}')
    prompt, count, interval = (
        args.get("prompt", DEFAULT_PROMPT),
        args.get("count", 10),
        args.get("interval", 0.05),
    )
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {prompt!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
        raise ValueError(f"interval must be a non-negative number of seconds, got {interval!r}")
    return prompt, count, float(interval)


def _parse(args: Any) -> tuple[str | None, float]:
    """``(url, seconds)`` from ``args`` (an object, or null for the defaults)."""
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise TypeError(f'takes {{"url": ...}} or {{"seconds": ...}}, got {args!r}')
    url = args.get("url")
    if url is not None and not (isinstance(url, str) and urlsplit(url).scheme in ("http", "https")):
        raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
    seconds = args.get("seconds", DEFAULT_SECONDS)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"seconds must be a non-negative number, got {seconds!r}")
    return url, float(seconds)


async def _get(url: str) -> tuple[int, int]:
    """``(status, body bytes)`` of an HTTP/1.0 GET of ``url``: the body runs to the end of
    the connection, never chunked."""
    reader, writer, status, _ = await _request(url)
    try:
        size = 0
        while chunk := await reader.read(_CHUNK):
            size += len(chunk)
        return status, size
    finally:
        writer.close()


async def _request(
    url: str, accept: str = "*/*", version: str = "1.0"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, dict[str, str]]:
    """Sends a GET of ``url`` and reads the response's head: ``(reader, writer, status,
    headers)``, header names in lower case; the caller reads the body and closes ``writer``."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(host, port, ssl=tls or None)
    try:
        netloc = host if parts.port is None else f"{host}:{port}"
        request = (
            f"GET {target} HTTP/{version}\r\nHost: {netloc}\r\nUser-Agent: pit-agent\r\n"
            f"Accept: {accept}\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        status_line = await reader.readline()
        fields = status_line.split()
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
            raise ConnectionError(f"not an HTTP response from {url}: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        while line := (await reader.readline()).strip():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    except BaseException:
        writer.close()
        raise
    return reader, writer, int(fields[1]), headers


async def _body(reader: asyncio.StreamReader, chunked: bool) -> AsyncIterator[bytes]:
    """A response body's bytes as they arrive, its chunked transfer coding undone."""
    if not chunked:
        while piece := await reader.read(_CHUNK):
            yield piece
        return
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            return
        yield await reader.readexactly(size)
        await reader.readexactly(2)  # the CRLF after each chunk


async def _sse_data(body: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event in ``body`` (its lines joined), as soon as
    the blank line ending the event has come."""
    pending = b""
    data: list[str] = []
    async for piece in body:
        *lines, pending = (pending + piece).split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:
                if data:
                    yield "\n".join(data)
                data = []
            elif line.startswith("data:"):
                value = line[len("data:") :]
                data.append(value[1:] if value.startswith(" ") else value)
            # other fields (event:, id:, retry:) and comments (":") are not needed here


# --- a server-sent events endpoint to relay, for the demo and the tests -----------------


class TokenServer:
    """A loopback HTTP server streaming the fake model's tokens as server-sent events.

    ``GET /tokens?prompt=...&count=N&interval=S`` answers ``text/event-stream`` with chunked
    transfer coding: one ``data:`` event per token, every ``interval`` seconds, then
    ``data: [DONE]``. Each response runs in a thread of its own. A context manager::

        with TokenServer() as server:
            server.url_for("hello world", count=5)  # http://127.0.0.1:PORT/tokens?...
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._http = http.server.ThreadingHTTPServer((host, port), _TokenHandler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="token-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The endpoint's URL, without a query (the defaults)."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/tokens"

    def url_for(self, prompt: str, count: int = 10, interval: float = 0.05) -> str:
        """The endpoint's URL for ``count`` tokens of ``prompt``, one every ``interval`` s."""
        return f"{self.url}?prompt={quote(prompt)}&count={count}&interval={interval}"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked transfer coding needs 1.1

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/tokens":
            self.send_error(404)
            return
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        try:
            prompt, count, interval = _token_args(
                {
                    "prompt": query.get("prompt", DEFAULT_PROMPT),
                    "count": int(query.get("count", "10")),
                    "interval": float(query.get("interval", "0.05")),
                }
            )
        except ValueError as e:
            self.send_error(400, str(e))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for token in [*fake_tokens(prompt, count), DONE]:
                self._chunk(f"data: {token}\n\n".encode())
                time.sleep(interval)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller hung up (a cancelled relay): nothing to finish
        self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: a demo's terminal is for the tokens


def main() -> None:
    """``python -m pit.examples.agent [PORT]``: serves :class:`TokenServer` until Ctrl-C."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    with TokenServer(port=port) as server:
        print(
            f"server-sent events at {server.url} (?prompt=...&count=N&interval=S); Ctrl-C stops", flush=True
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
