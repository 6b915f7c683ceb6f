"""pitd specs as TOML lines, built from Python values so that a path or a list in a spec is
always quoted right: ``table("pools.echo", {"app": "pit.examples.echo", "size": 2})``.

A benchmark's spec is a list of lines: ``PitdProcess.spec_head()`` (the ``[daemon]`` table
with the sockets), then a ``table`` per pool and per sub-table (``pools.NAME.restart``)."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Union

from pitbench.paths import APPS, PYTHON_DIR

#: What a spec value can be: a string, a number, a boolean, an array (a list or a tuple) or
#: an inline table.
Value = Union[str, int, float, bool, Sequence["Value"], Mapping[str, "Value"]]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key(name: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def value(v: Value) -> str:
    """A TOML value. Strings are written as JSON strings, which are valid TOML basic
    strings (the same escapes)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    return "[" + ", ".join(value(x) for x in v) + "]"


def keys(values: Mapping[str, Value | None]) -> list[str]:
    """``key = value`` lines; a None value is left out (the spec's default applies)."""
    return [f"{key(k)} = {value(v)}" for k, v in values.items() if v is not None]


def table(name: str, values: Mapping[str, Value | None]) -> list[str]:
    """``[name]`` and its ``key = value`` lines, after a blank line."""
    return ["", f"[{name}]", *keys(values)]


def pit_env(**extra: str) -> dict[str, str]:
    """A pool's ``env`` for workers that import this checkout's ``pit`` (and ``extra``)."""
    return {"PYTHONPATH": str(PYTHON_DIR), **extra}


def heavy_pool(size: int, preload: bool = True, **extra: Value) -> dict[str, Value]:
    """A pool of ``bench/apps/heavy_app.py`` (its import takes ~1 s and builds ~40 MB of
    objects) run by this interpreter, ``heavy_import`` preloaded unless ``preload`` is false,
    with a benchmark's own keys in ``extra``."""
    pool: dict[str, Value] = {
        "app": "heavy_app",
        "python": os.path.realpath(sys.executable),
        "size": size,
        "cwd": str(APPS),
        "env": pit_env(),
    }
    if preload:
        pool["preload"] = ["heavy_import"]
    return {**pool, **extra}
