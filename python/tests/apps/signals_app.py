"""Prints from an atexit hook and from a finalizer that only the interpreter's teardown
runs: a worker told to stop runs the first and skips the second."""

import atexit

import pit

atexit.register(lambda: print("atexit ran", flush=True))


class _Finalized:
    def __del__(self):
        print("teardown ran", flush=True)


KEEP = _Finalized()


@pit.handler
def hello(args):
    return "hi"
