"""Handlers for a worker serving several calls at once: each records what it saw, and prints
``started REQ_ID`` when it begins, so a test knows a call is running before it acts on it."""

import asyncio
import atexit
import os
import sys
import threading
import time

import pit

# Calls started and finished so far, over async and sync handlers alike.
_lock = threading.Lock()
_counts = {"started": 0, "finished": 0}
_seen_cancelled = []
_LIMIT = 20.0  # no handler here outlives the tests' own deadlines by much


def _begin(ctx):
    with _lock:
        _counts["started"] += 1
        finished = _counts["finished"]
    # One write per line: print() writes the end of line apart, and handlers on threads
    # printing at once would interleave their lines.
    sys.stdout.write(f"started {ctx.request_id}\n")
    sys.stdout.flush()
    return finished


def _end():
    with _lock:
        _counts["finished"] += 1
        return _counts["started"]


@pit.handler
async def nap(args, ctx):
    """Awaits ``args`` seconds; says how many calls had finished when it started and how
    many had started when it finished."""
    finished_before = _begin(ctx)
    await asyncio.sleep(args)
    return {"finished_before_start": finished_before, "started_before_end": _end()}


@pit.handler
def doze(args, ctx):
    """``nap`` blocking a thread with ``time.sleep``."""
    finished_before = _begin(ctx)
    time.sleep(args)
    return {
        "finished_before_start": finished_before,
        "started_before_end": _end(),
        "thread": threading.current_thread().name,
    }


@pit.handler
async def hold(args, ctx):
    """Awaits until the file ``args`` exists."""
    _begin(ctx)
    deadline = time.monotonic() + _LIMIT
    while not os.path.exists(args):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{args} never appeared")
        await asyncio.sleep(0.01)
    return "released"


def _block_until_exists(path):
    """Blocks the calling thread (sleeping, not awaiting) until the file ``path`` exists."""
    deadline = time.monotonic() + _LIMIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


@pit.handler
def spin_until(args, ctx):
    """``hold`` blocking a thread."""
    _begin(ctx)
    _block_until_exists(args)
    return "released"


@pit.handler
async def block_loop(args, ctx):
    """Blocks the event loop (``time.sleep`` in an ``async def``) until the file ``args`` exists."""
    _begin(ctx)
    _block_until_exists(args)
    return "unblocked"


@pit.handler
async def wait_forever(args, ctx):
    """Awaits until cancelled; records the cancellation and lets it propagate."""
    _begin(ctx)
    try:
        await asyncio.sleep(_LIMIT)
    except asyncio.CancelledError:
        _seen_cancelled.append(ctx.request_id)
        raise
    return "not cancelled"


@pit.handler
def spin(args, ctx):
    """Loops in a thread until ``ctx.cancelled`` becomes True."""
    _begin(ctx)
    deadline = time.monotonic() + _LIMIT
    loops = 0
    while not ctx.cancelled and time.monotonic() < deadline:
        loops += 1
        time.sleep(0.005)
    return {"cancelled": ctx.cancelled, "loops": loops}


@pit.handler
def seen_cancelled(args):
    return list(_seen_cancelled)


@pit.handler
def sync_boom(args):
    raise KeyError(args)


@pit.handler
def cancelled_flag(args, ctx):
    return ctx.cancelled


atexit.register(lambda: print("atexit ran", flush=True))


class Escape(BaseException):
    """Not an ``Exception``: no handler's fault that can be answered."""


@pit.handler
async def escape(args):
    raise Escape(args)


@pit.handler
def sync_escape(args):
    raise Escape(args)
