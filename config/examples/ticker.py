"""Demo worker (supervise only): prints a tick every few seconds, forever.

pitd captures its stdout line by line: see it with `pitctl logs ticker -f`.
"""
import os
import time

worker = os.environ.get("PIT_WORKER_ID", "?")
n = 0
while True:
    n += 1
    print(f"{worker} tick {n}", flush=True)
    time.sleep(2)
