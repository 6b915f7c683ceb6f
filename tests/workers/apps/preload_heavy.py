"""A module worth preloading: slow to import, and it remembers which process imported it."""

import os
import time

LOADED_BY = os.getpid()
time.sleep(float(os.environ.get("PRELOAD_DELAY", "0.3")))
TABLE = [str(i) for i in range(50_000)]
