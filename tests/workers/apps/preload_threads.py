"""A preload module that starts a thread at import, as some client libraries do (a
background poller or flusher). Forked workers do not have it."""

import threading

_stop = threading.Event()
POLLER = threading.Thread(target=_stop.wait, name="poller", daemon=True)
POLLER.start()
print("preload_threads: poller started", flush=True)
