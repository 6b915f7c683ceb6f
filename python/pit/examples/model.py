"""Example of a pool worth preloading: ``app = "pit.examples.model"`` with
``preload = ["pit.examples.model"]``.

Importing this module stands in for loading a model: it takes about a second
(``PIT_EXAMPLE_LOAD_S`` to change it) and builds a table every worker reads. Preloaded, the
import happens once, in the pool's template, and a replacement worker is ready in
milliseconds: try ``pitctl recycle worker-N`` and watch ``pitctl events``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pit

_started = time.monotonic()
#: Word -> score, shared copy-on-write by every worker forked from the template.
VOCABULARY: dict[str, int] = {f"word{i}": i % 97 for i in range(200_000)}
time.sleep(max(0.0, float(os.environ.get("PIT_EXAMPLE_LOAD_S", "1.0")) - (time.monotonic() - _started)))
#: The process that did the loading: the template's pid in a preloaded pool.
LOADED_BY = os.getpid()


@pit.handler
def predict(args: Any, ctx: pit.Context) -> dict[str, Any]:
    """Scores the words of ``args`` (a string); says which process loaded the model."""
    words = str(args).split()
    return {
        "score": sum(VOCABULARY.get(w, 0) for w in words),
        "worker_pid": os.getpid(),
        "loaded_by_pid": LOADED_BY,
    }
