"""A preload module that opens files at import, as real libraries do: a logging
FileHandler and a plain file kept open for appending. Forked workers share both."""

import logging
import os

LOG_PATH = os.environ["PRELOAD_LOG"]

log = logging.getLogger("preload_opens_files")
log.setLevel(logging.INFO)
_handler = logging.FileHandler(LOG_PATH)
_handler.setFormatter(logging.Formatter("%(message)s"))
log.addHandler(_handler)
log.info("imported by %d", os.getpid())

NOTES = open(LOG_PATH + ".notes", "a", buffering=1)
NOTES.write(f"opened by {os.getpid()}\n")
