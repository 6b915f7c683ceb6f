"""A supervise-only worker: says hello on stdout and stderr, then sleeps until killed.
With FORK_CHILD=1 it first forks a child that also sleeps (and reports its pid)."""
import os
import sys
import time

print(f"sleeper up pid={os.getpid()}", flush=True)
print("sleeper stderr hello", file=sys.stderr, flush=True)
if os.environ.get("FORK_CHILD") == "1":
    child = os.fork()
    if child == 0:
        while True:
            time.sleep(3600)
    print(f"child pid={child}", flush=True)
while True:
    time.sleep(3600)
