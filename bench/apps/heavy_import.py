"""Stands in for an ML stack: about a second of import work and ~40 MB of objects that
every worker needs (weights, vocabularies, compiled tables)."""

import os
import time

_start = time.monotonic()
WEIGHTS = [os.urandom(1024) for _ in range(40_000)]
VOCAB = {f"token-{i}": i for i in range(100_000)}
time.sleep(max(0.0, float(os.environ.get("HEAVY_IMPORT_S", "1.0")) - (time.monotonic() - _start)))
