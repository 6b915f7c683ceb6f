"""Fails at once, the way a worker with a broken import does."""
import sys

print("Traceback (most recent call last):", file=sys.stderr)
print("ModuleNotFoundError: No module named 'missing_dependency'", file=sys.stderr, flush=True)
sys.exit(3)
