"""Handlers for the tests of pools with concurrency > 1: each says when it ran (on the
worker's monotonic clock) and which worker ran it, so the tests see overlap without
timing assertions; the cancellable ones leave a marker file when they see the cancel."""

import asyncio
import os
import time

import pit


def _mark(path, text):
    with open(path, "w") as f:
        f.write(text)


@pit.handler
async def nap(args, ctx):
    start = time.monotonic()
    await asyncio.sleep(args.get("s", 0.3))
    return {"worker": ctx.worker_id, "pid": os.getpid(), "start": start, "end": time.monotonic()}


@pit.handler
def snooze(args, ctx):
    start = time.monotonic()
    time.sleep(args.get("s", 0.3))
    return {"worker": ctx.worker_id, "pid": os.getpid(), "start": start, "end": time.monotonic()}


@pit.handler
async def wait_cancel(args, ctx):
    """Waits for a long time; marks `args["started"]` (if given) once running, and
    `args["marker"]` when cancelled."""
    if "started" in args:
        _mark(args["started"], "started")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        _mark(args["marker"], "cancelled")
        raise
    return "not cancelled"


@pit.handler
def wait_flag(args, ctx):
    """A sync handler that polls ctx.cancelled; marks `args["marker"]` when it sees it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ctx.cancelled:
            _mark(args["marker"], "cancelled")
            return "stopped"
        time.sleep(0.01)
    return "not cancelled"


@pit.handler
async def block_loop(args, ctx):
    """Blocks the event loop (a CPU-bound call in an async handler)."""
    time.sleep(args.get("s", 2.0))
    return "unblocked"


@pit.handler
def whoami(args, ctx):
    return {"worker": ctx.worker_id, "pid": os.getpid()}
