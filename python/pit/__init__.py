"""pit: the Python side of pitd.

Worker side: decorate functions with :func:`handler` in a module; pitd runs
``python -m pit serve MODULE`` (see :mod:`pit.worker`) for a pool with ``app = "MODULE"``.
Client side: :class:`Client` (threads) and :class:`AsyncClient` (asyncio) send calls over
pitd's call socket, or over its HTTP front door when given an ``http(s)://`` URL, and raise
:class:`CallError` when a call fails; their ``stream`` methods iterate the chunks of a
streaming handler (a :class:`Stream`, or an async generator).
"""

from typing import TYPE_CHECKING, Any

from .client import Client, Stream
from .errors import ERROR_KINDS, CallError, ConnectionLost
from .handlers import Context, handler
from .paths import default_call_socket

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .aio import AsyncClient
else:
    # AsyncClient pulls in asyncio, which workers rarely need: import it on first use.
    # Type checkers see the import above instead: a module-level __getattr__ would type
    # every misspelt ``pit.X`` as Any rather than report it.
    def __getattr__(name: str) -> Any:
        if name == "AsyncClient":
            from .aio import AsyncClient

            return AsyncClient
        raise AttributeError(f"module 'pit' has no attribute {name!r}")


__all__ = [
    "ERROR_KINDS",
    "AsyncClient",
    "CallError",
    "Client",
    "ConnectionLost",
    "Context",
    "Stream",
    "default_call_socket",
    "handler",
]
