"""A preload module that prints far more at import than pitd should copy into its log."""

import sys
import time

for i in range(3000):
    print(f"chatty line {i}")
print("x" * 20000)  # one line longer than pitd keeps as one
sys.stdout.flush()
time.sleep(0.2)  # a pause earns the log budget back: the next line says what was left out
print("chatty done", flush=True)
