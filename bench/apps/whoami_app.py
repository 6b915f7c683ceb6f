"""One handler that answers with the id of the worker that ran it, after ``args`` seconds
of sleep (none when ``args`` is null)."""

import time

import pit


@pit.handler
def whoami(args, ctx):
    if args:
        time.sleep(float(args))
    return ctx.worker_id
