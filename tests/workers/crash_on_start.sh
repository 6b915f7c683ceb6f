# Fails at once, the way a worker with a broken import does. A shell, not Python: on a
# loaded machine an interpreter can take a second to start, which pitd would rightly count
# as a worker that stayed up.
echo "Traceback (most recent call last):" >&2
echo "ModuleNotFoundError: No module named 'missing_dependency'" >&2
exit 3
