"""Prints from an atexit hook, to show that SIGTERM exits through the normal shutdown path."""

import atexit

import pit

atexit.register(lambda: print("atexit ran", flush=True))


@pit.handler
def hello(args):
    return "hi"
