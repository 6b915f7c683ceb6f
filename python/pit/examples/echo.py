"""Example handlers for trying pitd out: ``app = "pit.examples.echo"``.

Each handler exercises one behaviour of the daemon: round trips (``echo``), timeouts
(``sleep``), error replies (``fail``), output capture (``shout``), routing and affinity
(``pid``, ``env``) and memory-based recycling (``allocate``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import pit

# Blocks kept alive by `allocate`, so the worker's RSS grows until pitd recycles it.
_kept: list[bytearray] = []
_PAGE = 4096


@pit.handler
def echo(args: Any) -> Any:
    """Returns ``args`` unchanged: the cheapest possible round trip."""
    return args


@pit.handler
def sleep(args: Any) -> Any:
    """Sleeps ``args`` seconds (a number) and returns them: drives timeouts and drains."""
    if isinstance(args, bool) or not isinstance(args, (int, float)) or args < 0:
        raise ValueError(f"sleep takes a non-negative number of seconds, got {args!r}")
    time.sleep(args)
    return args


@pit.handler
def fail(args: Any) -> Any:
    """Always raises ``ValueError(args)``: the caller gets a ``handler_error``."""
    raise ValueError(args)


@pit.handler
def shout(args: Any) -> str:
    """Prints ``args`` to stdout and to stderr, returns it upper-cased: shows output capture."""
    text = str(args)
    print(text)
    print(text, file=sys.stderr)
    return text.upper()


@pit.handler
def pid(args: Any) -> int:
    """Returns the worker's process id: shows which worker answered."""
    return os.getpid()


@pit.handler
def env(args: Any, ctx: pit.Context) -> dict[str, Any]:
    """Returns the call context (session, worker id, pool, request id, deadline as a
    ``time.monotonic()`` value and the seconds left before it) and the worker's ``PIT_*``
    environment variables under ``env``."""
    return {
        "session": ctx.session,
        "worker_id": ctx.worker_id,
        "pool": ctx.pool,
        "request_id": ctx.request_id,
        "deadline": ctx.deadline,
        "time_left": ctx.time_left(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("PIT_")},
    }


@pit.handler
def allocate(args: Any) -> int:
    """Keeps a block of ``args`` MiB alive for the worker's life and returns the total MiB
    kept: makes a worker leak on purpose, to trigger ``max_rss``/``hard_rss`` recycling."""
    if isinstance(args, bool) or not isinstance(args, int) or args < 0:
        raise ValueError(f"allocate takes a whole number of MiB, got {args!r}")
    block = bytearray(args * 1024 * 1024)
    # Touch every page: untouched pages would not count in the RSS that pitd watches.
    block[::_PAGE] = b"\x01" * len(range(0, len(block), _PAGE))
    _kept.append(block)
    return sum(len(b) for b in _kept) // (1024 * 1024)
