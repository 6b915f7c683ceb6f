"""Streaming handlers for the stream tests: each chunk says its number, so the tests see
order and loss; a handler given `args["marker"]` writes that file in its `finally`, so a
test sees its generator closed."""

import asyncio
import os
import time

import pit


def _mark(path, text):
    with open(path, "w") as f:
        f.write(text)


@pit.handler
async def tokens(args, ctx):
    """`count` chunks `{"i": n, "pid": ...}`, `interval` seconds apart (async)."""
    try:
        for i in range(args.get("count", 10)):
            if i:
                await asyncio.sleep(args.get("interval", 0.01))
            yield {"i": i, "pid": os.getpid()}
    finally:
        if "marker" in args:
            _mark(args["marker"], str(time.monotonic()))


@pit.handler
def sync_tokens(args, ctx):
    """The same from a sync generator."""
    try:
        for i in range(args.get("count", 10)):
            if i:
                time.sleep(args.get("interval", 0.01))
            yield {"i": i, "pid": os.getpid()}
    finally:
        if "marker" in args:
            _mark(args["marker"], str(time.monotonic()))


@pit.handler
def burst(args, ctx):
    """`count` small chunks as fast as the credit allows."""
    for i in range(args.get("count", 1000)):
        yield i


@pit.handler
async def silent(args, ctx):
    """One chunk, then nothing for a long time."""
    try:
        yield "first"
        await asyncio.sleep(args.get("s", 60))
        yield "late"
    finally:
        if "marker" in args:
            _mark(args["marker"], "closed")


@pit.handler
def huge(args, ctx):
    """A small chunk, then one of `bytes` bytes."""
    yield "small"
    yield "x" * args["bytes"]


@pit.handler
def pid(args, ctx):
    return os.getpid()
