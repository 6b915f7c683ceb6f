"""Handlers covering each behaviour of the worker runtime."""

import asyncio
import sys

import pit


@pit.handler
def add(args, ctx):
    return args["a"] + args["b"]


@pit.handler("renamed")
def original_name(args):
    return "served under another name"


@pit.handler
def context(args, ctx):
    return {
        "session": ctx.session,
        "worker_id": ctx.worker_id,
        "pool": ctx.pool,
        "request_id": ctx.request_id,
        "time_left": ctx.time_left(),
    }


def _parse(text):
    return int(text)


@pit.handler
def boom(args):
    return _parse(args)


@pit.handler
def chatty(args):
    print("hello from the handler")
    print("and a warning", file=sys.stderr)
    return "done"


@pit.handler
async def double_later(args):
    await asyncio.sleep(0)
    return args * 2


@pit.handler
async def loop_id(args):
    return id(asyncio.get_running_loop())


@pit.handler
def a_set(args):
    return {1, 2}


@pit.handler
def not_a_number(args):
    return float("nan")


@pit.handler
def big(args):
    return "x" * args


@pit.handler
def huge_error(args):
    raise RuntimeError("y" * args)


@pit.handler
def no_args():
    return "nothing needed"


alias = add  # the same handler under a second attribute is not a conflict


@pit.handler
async def async_boom(args):
    await asyncio.sleep(0)
    raise LookupError("nothing here")


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


@pit.handler
def unprintable(args):
    raise _Unprintable()
