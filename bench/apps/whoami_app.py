"""One quick handler that answers with the id of the worker that ran it."""

import pit


@pit.handler
def whoami(args, ctx):
    return ctx.worker_id
