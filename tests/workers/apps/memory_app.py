"""Handlers that use memory on purpose, for the memory tests: held (a leak), held for a
while (a spike), and the worker's pid."""

import os
import time

import pit

_HELD = []

# A slow import, as an app's own: how long a replacement takes to be ready.
time.sleep(float(os.environ.get("MEMORY_APP_IMPORT_S", "0")))


def _touched(mib):
    # Every page written, so it is resident (RSS), not only reserved.
    block = bytearray(mib * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return block


@pit.handler
def hold(args, ctx):
    """Keeps `mib` MiB for the worker's life (a leak of that much per call)."""
    _HELD.append(_touched(args["mib"]))
    return {"pid": os.getpid(), "held_mib": sum(len(b) for b in _HELD) >> 20}


@pit.handler
def spike(args, ctx):
    """Uses `mib` MiB for `s` seconds, then frees it."""
    block = _touched(args["mib"])
    time.sleep(args.get("s", 0.2))
    del block
    return os.getpid()


@pit.handler
def pid(args, ctx):
    return os.getpid()
