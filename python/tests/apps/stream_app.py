"""Streaming handlers for the tests: each prints ``produced N`` just before it yields
chunk N, so a test sees how far a generator was advanced, and ``closed REQ_ID`` (stdout)
plus a marker file from its ``finally:``, so a test sees it was closed."""

import asyncio
import functools
import os
import sys
import threading
import time

import pit

_LIMIT = 20.0  # no handler here outlives the tests' own deadlines by much


def _say(text):
    # One write per line: handlers on threads printing at once would interleave.
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _closed(args, ctx):
    _say(f"closed {ctx.request_id}")
    marker = (args or {}).get("marker") if isinstance(args, dict) else None
    if marker:
        with open(marker, "w") as f:
            f.write(repr(time.monotonic()))


@pit.handler
def count(args, ctx):
    """Yields ``{"i": i}`` for i in range(args["n"])."""
    try:
        for i in range(args["n"]):
            _say(f"produced {i}")
            yield {"i": i}
    finally:
        _closed(args, ctx)


@pit.handler
async def acount(args, ctx):
    """``count`` as an async generator, awaiting between chunks."""
    try:
        for i in range(args["n"]):
            await asyncio.sleep(0)
            _say(f"produced {i}")
            yield {"i": i}
    finally:
        _closed(args, ctx)


@pit.handler
async def await_long(args, ctx):
    """Yields one chunk, then awaits ``args["seconds"]``; its finally writes the marker."""
    try:
        yield "started"
        await asyncio.sleep(args["seconds"])
        yield "woke up"
    finally:
        _closed(args, ctx)


@pit.handler
def sleep_between(args, ctx):
    """A sync generator that sleeps ``args["seconds"]`` before each of its endless chunks."""
    try:
        i = 0
        end = time.monotonic() + _LIMIT
        while time.monotonic() < end:
            _say(f"produced {i}")
            yield i
            i += 1
            time.sleep(args["seconds"])
    finally:
        _closed(args, ctx)


@pit.handler
def boom_after(args):
    """Yields ``args`` chunks, then raises."""
    yield from range(args)
    raise ValueError(f"broke after {args}")


@pit.handler
async def aboom_after(args):
    for i in range(args):
        yield i
    raise ValueError(f"broke after {args}")


@pit.handler
def sized(args, ctx):
    """Yields a string of each size in ``args["sizes"]``."""
    try:
        for size in args["sizes"]:
            yield "x" * size
    finally:
        _closed(args, ctx)


@pit.handler
def unsendable(args):
    yield 1
    yield {1, 2}
    yield 3


@pit.handler
def plain(args):
    return {"plain": args}


def _logged(fn):
    """A decorator in the ``functools.wraps`` style: returns what ``fn`` returns."""

    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)

    return wrapper


@pit.handler
@_logged
def wrapped(args):
    yield from range(args)


@pit.handler
@_logged
async def awrapped(args):
    for i in range(args):
        yield i


@pit.handler
def thread_name(args):
    """A sync generator that says which thread runs each step."""
    for _ in range(args):
        yield threading.current_thread().name


@pit.handler
def pid(args):
    return os.getpid()
