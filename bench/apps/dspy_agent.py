"""A DSPy program behind pit, for ``bench/warmup.py``: one ``dspy.Predict`` over an
OpenAI-compatible server at ``BENCH_LLM_URL`` (the benchmark's loopback fake).

Importing it (the preload) configures DSPy; its first call loads more (DSPy's call path,
the model metadata map, a few modules imported on use): ``warm_up`` makes that first call
in the template, so every worker shares what it loaded."""

from __future__ import annotations

import os
from typing import Any

import dspy

import pit

LM = dspy.LM("openai/gpt-4o-mini", api_base=os.environ["BENCH_LLM_URL"], api_key="unused", cache=False)
dspy.configure(lm=LM)
# Every call reaches the server: no cache in memory or on disk.
dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
QA = dspy.Predict("question -> answer")


@pit.handler
def ask(args: Any, ctx: pit.Context) -> dict[str, str]:
    return {"answer": QA(question=str(args["question"])).answer}


def warm_up() -> None:
    """The pool's ``warmup``: one real call, as the first call of a worker would make, then
    the LM's connections closed: its HTTP client keeps the connection alive for the next
    call, and one left in the template would be every worker's at once."""
    QA(question="warm-up")
    LM.close()
