"""Handlers for pitd's call tests: each one misbehaves in a way production code does."""
import os
import sys
import threading
import time

import pit


@pit.handler
def echo(args):
    return args


@pit.handler
def sleep(args):
    time.sleep(float(args))
    return args


@pit.handler
def whoami(args, ctx):
    return {"worker": ctx.worker_id, "session": ctx.session, "pid": os.getpid()}


@pit.handler
def fail(args):
    raise ValueError(f"bad input: {args}")


@pit.handler
def shout(args):
    print(f"shouting {args}")
    print(f"to stderr {args}", file=sys.stderr)
    return str(args).upper()


@pit.handler
def die(args):
    """The worker dies in the middle of the call."""
    os._exit(int(args or 7))


@pit.handler
def answer_then_exit(args):
    """Answers with `args` bytes, and the worker dies (os._exit) the moment its reply is
    written: a thread watches the serving thread and exits once that is back reading its
    next call. The exit can reach pitd before the reply has been read; the reply must
    still answer the call."""
    serving = threading.get_ident()

    def exit_once_answered():
        while True:
            frame = sys._current_frames().get(serving)
            if frame is not None and frame.f_code.co_name in ("next_frame", "_fill"):
                os._exit(0)
            time.sleep(0.0002)

    threading.Thread(target=exit_once_answered, daemon=True).start()
    return "x" * int(args)


@pit.handler
def die_once(args):
    """Dies the first time it runs anywhere (marker file `args`), answers afterwards."""
    if not os.path.exists(args):
        open(args, "w").close()
        os._exit(9)
    return "survived"


@pit.handler
def garbage(args):
    """Writes bytes that are not a frame onto the protocol pipe."""
    os.write(4, b"\xff\xff\xff\xffnot a frame at all")
    time.sleep(5)
    return "unreachable"


_kept = []


@pit.handler
def allocate(args):
    """Keeps `args` MiB alive (every page touched so it counts in RSS); returns the total."""
    block = bytearray(int(args) * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    _kept.append(block)
    return sum(len(b) for b in _kept) // (1024 * 1024)


@pit.handler
def spam(args):
    """Prints `args` lines to stdout as fast as it can."""
    line = "x" * 100
    for _ in range(int(args)):
        print(line)
    sys.stdout.flush()
    return int(args)


@pit.handler
def fork_bomb(args):
    """Forks sleeping children until the kernel refuses (at most `args`); reports how many
    it got and what stopped it, then kills them."""
    children = []
    error = None
    try:
        for _ in range(int(args)):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}


_marks = []


@pit.handler
def mark(args):
    """Counts its runs in this worker: a call that ran twice shows here."""
    _marks.append(args)
    return len(_marks)


@pit.handler
def marks(args):
    return list(_marks)


@pit.handler
def close_reply_pipe(args):
    """Closes the worker's reply pipe (fd 4), as a library that closes the fds it did not
    open might, then goes on working for `args` seconds: the worker lives, but nothing it
    answers can reach pitd."""
    os.close(4)
    time.sleep(float(args))
    return "unreachable"
