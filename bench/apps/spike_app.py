"""An app whose memory spikes, for ``memory.py``: at import it keeps ``PIT_BENCH_BASE_MIB``
MiB (every page written), and a thread of its own then doubles the worker's resident
memory for ``PIT_BENCH_SPIKE_HOLD_S`` seconds (default 1) every ``PIT_BENCH_SPIKE_EVERY_S``
seconds (default 30), the first ``PIT_BENCH_SPIKE_FIRST_S`` seconds (default 10) after the
import: a block as large as its RSS is written, held, and freed (a block that large is
its own mapping, given back to the system when freed). ``work`` stands for the calls it
serves meanwhile."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pit

_PAGE = os.sysconf("SC_PAGE_SIZE")
_MIB = 1024 * 1024


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _block(n: int) -> bytearray:
    block = bytearray(n)
    block[::_PAGE] = b"\x01" * len(range(0, n, _PAGE))
    return block


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _spikes(first: float, every: float, hold: float) -> None:
    due = time.monotonic() + first
    while True:
        time.sleep(max(0.0, due - time.monotonic()))
        spike = _block(_rss())
        time.sleep(hold)
        del spike
        due += every


_base = _block(int(_env("PIT_BENCH_BASE_MIB", 64) * _MIB))
threading.Thread(
    target=_spikes,
    args=(
        _env("PIT_BENCH_SPIKE_FIRST_S", 10),
        _env("PIT_BENCH_SPIKE_EVERY_S", 30),
        _env("PIT_BENCH_SPIKE_HOLD_S", 1),
    ),
    name="spikes",
    daemon=True,
).start()


@pit.handler
def work(args: Any, ctx: pit.Context) -> int:
    """Works (sleeps) ``args`` milliseconds; the pid."""
    time.sleep(float(args or 0) / 1000)
    return os.getpid()
