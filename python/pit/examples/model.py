"""Example of a pool worth preloading: ``app = "pit.examples.model"`` with
``preload = ["pit.examples.model"]`` and ``warmup = "pit.examples.model:warm_up"``.

Importing this module stands in for loading a model: it takes about a second
(``PIT_EXAMPLE_LOAD_S`` to change it) and builds a table every worker reads. Preloaded, the
import happens once, in the pool's template, and a replacement worker is ready in
milliseconds: try ``pitctl recycle worker-N`` and watch ``pitctl events``.

The first call builds more (an index of the table, as a model's first call compiles its
graph or loads its tokenizer): :func:`warm_up` builds it in the template too, so every
worker shares it instead of building its own copy at its first call.
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

#: Score -> the words that have it; built by the first call that needs it.
_index: dict[int, list[str]] | None = None
#: The process that built ``_index``: the template's after a warm-up, else each worker's own.
_index_built_by: int | None = None


def _words_by_score() -> dict[int, list[str]]:
    global _index, _index_built_by
    if _index is None:
        index: dict[int, list[str]] = {}
        for word, score in VOCABULARY.items():
            index.setdefault(score, []).append(word)
        _index, _index_built_by = index, os.getpid()
    return _index


def warm_up() -> None:
    """What the pool's ``warmup`` calls once in the template, before any worker is forked."""
    _words_by_score()


@pit.handler
def predict(args: Any, ctx: pit.Context) -> dict[str, Any]:
    """Scores the words of ``args`` (a string) and names a few words of the same score as the
    first; says which processes loaded the model and built its index."""
    words = str(args).split()
    score = sum(VOCABULARY.get(w, 0) for w in words)
    first = VOCABULARY.get(words[0], 0) if words else 0
    return {
        "score": score,
        "like_first": _words_by_score().get(first, [])[:3],
        "worker_pid": os.getpid(),
        "loaded_by_pid": LOADED_BY,
        "index_built_by_pid": _index_built_by,
    }
