"""Handlers that write to the files their preload module opened at import."""

import os

import pit
import preload_opens_files


@pit.handler
def note(args, ctx):
    preload_opens_files.log.info("logged by %s: %s", ctx.worker_id, args)
    preload_opens_files.NOTES.write(f"noted by {ctx.worker_id}: {args}\n")
    return {"worker": ctx.worker_id, "pid": os.getpid(), "log_fd": preload_opens_files._handler.stream.fileno()}
