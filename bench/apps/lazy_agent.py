"""Stands in for an LLM framework whose first call loads more than its import, for
``bench/warmup.py`` when DSPy cannot be installed: the first call imports a set of standard
library modules and builds a table of prompt templates, then every call POSTs to an
OpenAI-compatible server at ``BENCH_LLM_URL`` with ``urllib`` (one connection per call).
``warm_up`` makes that first call in the template."""

from __future__ import annotations

import importlib
import json
import os
import threading
import urllib.request
from typing import Any

import pit

#: What the first call imports: modules a framework imports inside its functions.
LAZY_MODULES = [
    "asyncio",
    "csv",
    "decimal",
    "difflib",
    "email.parser",
    "fractions",
    "http.cookiejar",
    "inspect",
    "pydoc",
    "sqlite3",
    "statistics",
    "tarfile",
    "typing",
    "unittest",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "zipfile",
]
_lock = threading.Lock()
_templates: dict[int, str] | None = None


def _prompt_templates() -> dict[int, str]:
    global _templates
    with _lock:
        if _templates is None:
            for name in LAZY_MODULES:
                importlib.import_module(name)
            _templates = {i: f"You are assistant {i}. Answer the question. " * 4 for i in range(40_000)}
    return _templates


def _complete(question: str) -> str:
    body = json.dumps(
        {
            "model": "bench-model",
            "messages": [
                {"role": "system", "content": _prompt_templates()[hash(question) % 40_000]},
                {"role": "user", "content": question},
            ],
        }
    ).encode()
    request = urllib.request.Request(
        os.environ["BENCH_LLM_URL"] + "/chat/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        content: str = json.loads(reply.read())["choices"][0]["message"]["content"]
        return content


@pit.handler
def ask(args: Any, ctx: pit.Context) -> dict[str, str]:
    return {"answer": _complete(str(args["question"]))}


def warm_up() -> None:
    """The pool's ``warmup``: one real call, as the first call of a worker would make."""
    _complete("warm-up")
