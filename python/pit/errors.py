"""Errors a caller of pitd can see, and the list of wire-stable error kinds.

``ERROR_KINDS`` mirrors the daemon's list of error kinds (INTERFACE section 5, ``cancelled``
from section 9, and the HTTP front door's ``unauthenticated``, ``forbidden`` and ``quota``
from section 10) in the same order; a test on the Rust side compares the two, so add a kind
in both places or in neither. ``connection_lost`` is deliberately *not*
in it: pitd never sends it, the client raises it when the socket itself fails.
"""

from __future__ import annotations

from typing import Any

ERROR_KINDS: tuple[str, ...] = (
    "bad_request",
    "no_such_pool",
    "no_such_method",
    "handler_error",
    "timeout",
    "worker_crashed",
    "queue_full",
    "queue_timeout",
    "pool_drained",
    "pool_failing",
    "too_large",
    "shutting_down",
    "cancelled",
    "unauthenticated",
    "forbidden",
    "quota",
)

#: Kind of :class:`ConnectionLost`; client-side only, never on the wire.
CONNECTION_LOST = "connection_lost"


class CallError(Exception):
    """A call that did not produce a result.

    ``kind`` is one of :data:`ERROR_KINDS` (or ``connection_lost`` for
    :class:`ConnectionLost`), ``message`` says what happened, ``traceback`` is the
    worker's formatted traceback for ``handler_error`` (else ``None``) and ``worker`` the
    id of the worker that answered, when pitd names one.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        traceback: str | None = None,
        worker: str | None = None,
    ) -> None:
        super().__init__(kind, message, traceback, worker)
        self.kind = kind
        self.message = message
        self.traceback = traceback
        self.worker = worker

    def __str__(self) -> str:
        where = f" from {self.worker}" if self.worker else ""
        text = f"{self.kind}{where}: {self.message}"
        if self.traceback:
            # Same idea as concurrent.futures' remote traceback: the frames that matter
            # ran in another process, so show them where the caller will look.
            text += "\n\nRemote traceback:\n" + self.traceback.rstrip()
        return text


class ConnectionLost(CallError):
    """The call socket could not be reached, or failed while calls were in flight.

    Client-side only: ``kind`` is ``"connection_lost"``, which pitd never sends. A call in
    flight when the connection drops may or may not have run on a worker.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(CONNECTION_LOST, message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.path))
