"""Handlers over the heavy module: `echo`, and `score`, which reads the shared tables."""

from __future__ import annotations

from typing import Any

import heavy_import

import pit


@pit.handler
def echo(args: Any, ctx: pit.Context) -> Any:
    return args


@pit.handler
def score(args: Any, ctx: pit.Context) -> int:
    return heavy_import.VOCAB.get(str(args), -1) + len(heavy_import.WEIGHTS)
