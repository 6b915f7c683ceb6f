"""Handlers of a preloaded pool: they report what a forked worker inherited."""

import os
import resource

import pit
import preload_heavy


@pit.handler
def whoami(args, ctx):
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "loaded_by": preload_heavy.LOADED_BY,
        "table": len(preload_heavy.TABLE),
        "env_worker": os.environ.get("PIT_WORKER_ID"),
        "ctx_worker": ctx.worker_id,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    }


@pit.handler
def shout(args, ctx):
    print(f"shouting {args}", flush=True)
    return args
