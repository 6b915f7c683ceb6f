"""The generators of ``bench/streaming.py``, with no import beyond the standard library, so
that every side runs the same ones: pit's pool (``stream_app``), the floor's writer process,
and gunicorn's dirty app (in gunicorn's own virtual environment).

``values`` is the stream every throughput figure runs: ``n`` small values, an int or a short
word in turn, as a model's token stream is. ``hang_async`` and ``hang_sync`` yield one chunk
and then run until they are closed (or ``hang_s`` is over); their ``finally:`` writes the
``time.monotonic()`` it ran at to a file, with how the generator ended.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Generator, Iterator

#: The words ``values`` yields at odd positions.
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog")
#: How often ``hang_sync`` yields: a sync generator is closed at a ``yield``.
SYNC_STEP_S = 0.002


def values(n: int) -> Iterator[int | str]:
    """``0, "quick", 2, "fox", ...``: ``n`` values of a few bytes of JSON each."""
    words = WORDS
    for i in range(n):
        yield i if i % 2 == 0 else words[i % 9]


def record(path: str, how: str) -> None:
    """Writes ``"<time.monotonic()> <how>"`` to ``path``, whole or not at all (a reader
    polling for the file never sees half of it). CLOCK_MONOTONIC is one clock for every
    process of the machine, so the time compares with the reader's own."""
    now = time.monotonic()
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{now!r} {how}".encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def hang_sync(path: str, hang_s: float) -> Generator[str, None, None]:
    """``"first"``, then ``"tick"`` every ``SYNC_STEP_S`` (``time.sleep``) for ``hang_s``;
    its ``finally:`` records ``closed`` or ``completed``."""
    how = "closed"
    try:
        yield "first"
        end = time.monotonic() + hang_s
        while time.monotonic() < end:
            time.sleep(SYNC_STEP_S)
            yield "tick"
        how = "completed"
    finally:
        record(path, how)


async def hang_async(path: str, hang_s: float) -> AsyncGenerator[str, None]:
    """``"first"``, then one ``asyncio.sleep(hang_s)``; its ``finally:`` records
    ``closed`` (cancelled at that ``await``, or closed) or ``completed``."""
    how = "closed"
    try:
        yield "first"
        await asyncio.sleep(hang_s)
        how = "completed"
    finally:
        record(path, how)
