"""Preloaded by a pool whose workers' interpreter teardown is slow, as a big ML stack's is
(freeing millions of objects, each on a page shared with the template): an object whose
finalizer, run when the interpreter tears its modules down, takes 30 s."""

import time


class _SlowToFree:
    def __del__(self):
        time.sleep(30)


KEEP = _SlowToFree()
