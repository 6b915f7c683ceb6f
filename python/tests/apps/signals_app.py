"""Reports readiness through stdout so a test can signal the worker while it is idle."""

import atexit

import pit

atexit.register(lambda: print("atexit ran", flush=True))


@pit.handler
def hello(args):
    return "hi"
