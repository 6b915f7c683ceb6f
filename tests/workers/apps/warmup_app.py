"""Handlers of a pool with a warm-up: they report what the warm-up left in the worker."""

import os
import sys

import pit
import warm_state


@pit.handler
def warmed(args, ctx):
    return {
        "pid": os.getpid(),
        "worker": ctx.worker_id,
        "runs": warm_state.RUNS,
        "warmed_by": warm_state.WARMED_BY,
        "cache": len(warm_state.CACHE or ()),
        "lazy_module_loaded": "colorsys" in sys.modules,
    }
