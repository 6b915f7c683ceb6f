"""An app that leaks on purpose, for ``memory.py``: ``leak`` keeps the bytes it is asked
for (every page written, so that all of them are resident) for the rest of the worker's
life, then sleeps ``ms`` milliseconds, standing for the call's own work.

With ``PIT_BENCH_IMPORT_S`` set (seconds), importing the app sleeps that long: a stand-in
for an import that loads a model, so that a worker of a pool without ``preload`` is ready
about that long after it starts."""

from __future__ import annotations

import os
import time
from typing import Any

import pit

_PAGE = os.sysconf("SC_PAGE_SIZE")
_kept: list[bytearray] = []

time.sleep(float(os.environ.get("PIT_BENCH_IMPORT_S", "0")))


@pit.handler
def leak(args: Any, ctx: pit.Context) -> int:
    """``{"bytes": N, "ms": M}``: keeps N more bytes, then works (sleeps) M ms; the pid."""
    n = int(args["bytes"])
    block = bytearray(n)
    block[::_PAGE] = b"\x01" * len(range(0, n, _PAGE))
    _kept.append(block)
    ms = float(args.get("ms", 0))
    if ms > 0:
        time.sleep(ms / 1000)
    return os.getpid()
