"""Warm-ups of a preloaded pool: what a first call would do lazily (import a module, build a
cache), done once in the template, and warm-ups that go wrong."""

import os
import socket

#: How many times a warm-up ran in this process, and in which process it last ran.
RUNS = 0
WARMED_BY = None
#: What a first call would build.
CACHE = None
#: Sockets a warm-up kept open.
KEPT = []


def warm_up():
    global RUNS, WARMED_BY, CACHE
    RUNS += 1
    WARMED_BY = os.getpid()
    import colorsys  # noqa: F401 - what a first call would import lazily

    CACHE = {i: str(i) for i in range(10_000)}
    print(f"warm-up ran in {os.getpid()}", flush=True)


def fails():
    raise RuntimeError("the model server refused the warm-up call")


def leaves_a_connection():
    """A real call to a server whose client keeps its connection alive for the next call."""
    host, port = os.environ["WARMUP_CONNECT"].rsplit(":", 1)
    KEPT.append(socket.create_connection((host, int(port))))
