"""Where pitd's sockets live by default (INTERFACE section 1).

``/run/pitd/`` when running as root, else ``$XDG_RUNTIME_DIR/pitd/``, else
``/tmp/pitd-<uid>/``. The client resolves the call socket from ``PITD_CALL_SOCKET`` first,
so a deployment can point every client at a non-default daemon without code changes.
"""

from __future__ import annotations

import os

CALL_SOCKET_ENV = "PITD_CALL_SOCKET"


def default_socket_dir() -> str:
    """The directory pitd puts its sockets in when the spec does not say."""
    if os.geteuid() == 0:
        return "/run/pitd"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "pitd")
    return f"/tmp/pitd-{os.getuid()}"


def default_call_socket() -> str:
    """``$PITD_CALL_SOCKET``, else ``call.sock`` in :func:`default_socket_dir`."""
    explicit = os.environ.get(CALL_SOCKET_ENV)
    if explicit:
        return explicit
    return os.path.join(default_socket_dir(), "call.sock")
