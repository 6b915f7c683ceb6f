"""One handler that answers with the id of the worker that ran it, after ``args`` seconds
of sleep (none when ``args`` is null)."""

from __future__ import annotations

import time
from typing import Any

import pit


@pit.handler
def whoami(args: Any, ctx: pit.Context) -> str | None:
    if args:
        time.sleep(float(args))
    return ctx.worker_id
