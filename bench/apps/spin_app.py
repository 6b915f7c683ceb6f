"""A CPU-bound handler in pure Python, for the free-threading benchmark: ``spin`` runs a
loop of ``args["n"]`` multiplications, remainders and additions and returns the sum; no
I/O, no C extension, nothing that releases the GIL.

With ``PIT_BENCH_GIL_MODULE=1`` in its environment the import also loads a module that
turns a free-threaded build's GIL back on (``gil_extension``), as an extension that does
not declare itself free-thread safe does: the benchmark's row of what that costs."""

from __future__ import annotations

import os
from typing import Any

import pit

if os.environ.get("PIT_BENCH_GIL_MODULE") == "1":
    import gil_extension  # noqa: F401 - imported for what its import does


@pit.handler
def spin(args: Any, ctx: pit.Context) -> int:
    total = 0
    for i in range(int(args["n"])):
        total += i * i % 7
    return total
