"""callapp's echo behind a gate: while the file named by $PIT_TEST_GATE exists, a new
worker waits at import (a slow import that the test ends when it chooses)."""
import os
import time

gate = os.environ.get("PIT_TEST_GATE")
while gate and os.path.exists(gate):
    time.sleep(0.01)

from callapp import echo  # noqa: E402,F401
