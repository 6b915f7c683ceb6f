"""Where pitd's sockets live by default (INTERFACE section 1), and what a client is
pointed at: a call socket's path or the URL of pitd's HTTP front door.

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


def is_url(target: object) -> bool:
    """Whether a client's target names pitd's HTTP front door rather than its call socket.

    The one place the two are told apart: a ``str`` with ``://`` in it is a URL (which must
    then be ``http://`` or ``https://``); anything else is a socket path. A socket path
    that contains ``://`` can still be given as a :class:`pathlib.Path`.
    """
    return isinstance(target, str) and "://" in target
