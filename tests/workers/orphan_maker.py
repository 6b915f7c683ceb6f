"""A supervise-only worker that leaves an orphan behind: it double-forks a grandchild
that leaves the process group (setsid), so only a subreaper (or PID 1) can reap it when
it exits a moment later. Then the worker sleeps until killed."""
import os
import sys
import time

pid = os.fork()
if pid == 0:
    if os.fork() == 0:
        os.setsid()
        time.sleep(0.3)
        os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
print(f"orphan maker {os.getpid()} up", flush=True)
while True:
    time.sleep(3600)
