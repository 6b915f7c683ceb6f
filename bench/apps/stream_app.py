"""The pools of ``bench/streaming.py``: its generators (``stream_gen``) as pit handlers, and
the plain ``echo`` a stream's first chunk is compared with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import stream_gen

import pit


@pit.handler
def echo(args: Any) -> Any:
    """Returns ``args``: the one-call round trip."""
    return args


@pit.handler
def count(args: Any) -> Iterator[int | str]:
    """``args`` (an int) small values (``stream_gen.values``), as fast as they are taken."""
    yield from stream_gen.values(int(args))


@pit.handler
async def tokens(args: Any) -> AsyncIterator[dict[str, int]]:
    """``args["n"]`` tokens, each after ``asyncio.sleep(args["every_s"])``."""
    every = float(args["every_s"])
    for i in range(int(args["n"])):
        await asyncio.sleep(every)
        yield {"token": i}


@pit.handler
def hang_sync(args: Any) -> Iterator[str]:
    """``stream_gen.hang_sync(args["file"], args["hang_s"])``."""
    yield from stream_gen.hang_sync(str(args["file"]), float(args["hang_s"]))


@pit.handler
async def hang_async(args: Any) -> AsyncIterator[str]:
    """``stream_gen.hang_async(args["file"], args["hang_s"])``, closed with this one."""
    inner = stream_gen.hang_async(str(args["file"]), float(args["hang_s"]))
    try:
        async for chunk in inner:
            yield chunk
    finally:
        await inner.aclose()


@pit.handler
def blobs(args: Any) -> Iterator[str]:
    """``args["n"]`` strings of ``args["size"]`` characters as fast as they are taken: the
    same string each time, so what it costs is its JSON and its way to the caller."""
    blob = "x" * int(args["size"])
    for _ in range(int(args["n"])):
        yield blob
