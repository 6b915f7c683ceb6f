"""pit: the Python side of pitd.

Worker side: decorate functions with :func:`handler` in a module; pitd runs
``python -m pit serve MODULE`` (see :mod:`pit.worker`) for a pool with ``app = "MODULE"``.
Client side: :class:`Client` (threads) and :class:`AsyncClient` (asyncio) send calls over
pitd's call socket and raise :class:`CallError` when a call fails.
"""

from .aio import AsyncClient
from .client import Client
from .errors import ERROR_KINDS, CallError, ConnectionLost
from .handlers import Context, handler
from .paths import default_call_socket

__version__ = "0.1.0"

__all__ = [
    "ERROR_KINDS",
    "AsyncClient",
    "CallError",
    "Client",
    "ConnectionLost",
    "Context",
    "default_call_socket",
    "handler",
]
