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

Handlers of a pool with ``concurrency`` above 1 run at the same time: these share no
state between calls, which is what makes them safe to run that way.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import pit

#: How long a call waits when given no URL and no ``seconds``.
DEFAULT_SECONDS = 0.5
_CHUNK = 64 * 1024
_STEP = 0.05  # how often ask_blocking looks at ctx.cancelled while it waits


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
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(host, port, ssl=tls or None)
    try:
        netloc = host if parts.port is None else f"{host}:{port}"
        request = f"GET {target} HTTP/1.0\r\nHost: {netloc}\r\nUser-Agent: pit-agent\r\n\r\n"
        writer.write(request.encode("latin-1"))
        await writer.drain()
        status_line = await reader.readline()
        fields = status_line.split()
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
            raise ConnectionError(f"not an HTTP response from {url}: {status_line[:80]!r}")
        while (await reader.readline()).strip():
            pass  # headers
        size = 0
        while chunk := await reader.read(_CHUNK):
            size += len(chunk)
        return int(fields[1]), size
    finally:
        writer.close()
