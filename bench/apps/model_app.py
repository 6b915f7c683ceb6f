"""A handler that reads a large read-only model held by its module, for the
free-threading benchmark: the import builds ``MODEL``, a dict of
``PIT_BENCH_MODEL_ENTRIES`` (default 1,500,000) int keys to int values (PSS of
about 190 MiB with the GIL, 235 MiB on a free-threaded build), as an app that loads a
table or an index at start-up does; ``lookup`` reads ``args["reads"]`` entries of it at
pseudo-random keys and returns their sum. A worker of ``concurrency = N`` holds one copy
for its N threads; N workers hold N copies."""

from __future__ import annotations

import os
import time
from typing import Any

import pit

ENTRIES = int(os.environ.get("PIT_BENCH_MODEL_ENTRIES", "1500000"))
MODEL: dict[int, int] = {i: (i * 2654435761) % 1000003 for i in range(ENTRIES)}


@pit.handler
def lookup(args: Any, ctx: pit.Context) -> int:
    key = time.perf_counter_ns() % ENTRIES
    total = 0
    for _ in range(int(args["reads"])):
        key = (key * 1103515245 + 12345) % ENTRIES
        total += MODEL[key]
    return total
