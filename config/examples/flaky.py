"""Demo worker (supervise only): runs for a while, then crashes with a traceback.

Watch pitd restart it under a new id with backoff: `pitctl status`, `pitctl logs flaky`.
"""
import os
import random
import sys
import time

life = random.uniform(5, 15)
print(f"flaky worker {os.environ.get('PIT_WORKER_ID')} up, will crash in {life:.0f}s", flush=True)
time.sleep(life)
print("RuntimeError: simulated crash", file=sys.stderr, flush=True)
sys.exit(1)
