"""The ``@pit.handler`` decorator, the per-call :class:`Context`, and handler discovery.

The decorator only marks a function (it stays callable as before, so users can unit-test
it directly); :func:`collect` later finds the marked functions in the served module's
namespace, which includes handlers it imports from elsewhere. ``ping`` is reserved
because pitd's health checks rely on it: claiming it raises at import time rather than
silently shadowing the built-in.
"""

from __future__ import annotations

import inspect
import os
import time
from types import ModuleType
from typing import Any, Callable, NamedTuple, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

#: Method names the runtime answers itself.
BUILTIN_NAMES = ("ping",)

_MARK = "__pit_handler__"
_MAX_NAME_BYTES = 0xFFFF  # method_len is a u16 in the CALL frame


class Context:
    """What a handler may want to know about the call it is serving.

    ``session`` (str or None), ``request_id`` (the frame's req_id), ``deadline`` (a
    ``time.monotonic()`` value, or None without a timeout), ``worker_id`` and ``pool``
    (from ``PIT_WORKER_ID`` / ``PIT_POOL``, set by pitd), and ``cancelled``.
    """

    __slots__ = ("_cancelled", "deadline", "pool", "request_id", "session", "worker_id")

    def __init__(
        self,
        session: str | None,
        worker_id: str | None,
        pool: str | None,
        request_id: int,
        deadline: float | None,
    ) -> None:
        self.session = session
        self.worker_id = worker_id
        self.pool = pool
        self.request_id = request_id
        self.deadline = deadline
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """True once pitd cancelled the call (past its timeout in a worker serving several
        calls at once, or a stream its caller gave up on): a sync handler may stop early;
        its answer is dropped anyway."""
        return self._cancelled

    def time_left(self) -> float | None:
        """Seconds until the deadline (may be negative), or None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name.lstrip('_'))!r}" for name in self.__slots__)
        return f"Context({fields})"


def mark_cancelled(ctx: Context) -> None:
    """Makes ``ctx.cancelled`` True (the runtime's side of a ``CANCEL`` from pitd)."""
    ctx._cancelled = True


@overload
def handler(fn: F, /) -> F: ...
@overload
def handler(name: str | None = None, /) -> Callable[[F], F]: ...


def handler(arg: Callable[..., Any] | str | None = None, /) -> Any:
    """Exposes a function as a pit method: ``@pit.handler`` or ``@pit.handler("name")``.

    The function takes ``(args, ctx)``, ``(args)`` or nothing; ``async def`` works too.
    A generator function (``def`` or ``async def`` with ``yield``) streams: each value it
    yields is one chunk of the reply.
    """
    if callable(arg):
        return _mark(arg, arg.__name__)
    if arg is not None and not isinstance(arg, str):
        raise TypeError(f"pit.handler() takes a function or a method name, not {type(arg).__name__}")
    return lambda fn: _mark(fn, arg if arg is not None else fn.__name__)


def _mark(fn: F, name: str) -> F:
    where = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
    if not name:
        raise ValueError(f"handler {where}: the method name is empty")
    if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        raise ValueError(f"handler {where}: the method name is longer than {_MAX_NAME_BYTES} bytes")
    if name in BUILTIN_NAMES:
        raise ValueError(
            f"handler {where} would override the built-in {name!r} that pitd's health checks "
            f'use; rename it with @pit.handler("other_name")'
        )
    setattr(fn, _MARK, name)
    return fn


class Handler(NamedTuple):
    """A discovered handler: ``nargs`` is how many of ``(args, ctx)`` it takes (0, 1 or 2);
    ``streams`` says it is a generator function, sync or async, whose values are chunks."""

    name: str
    fn: Callable[..., Any]
    nargs: int
    is_async: bool
    streams: bool = False


def collect(module: ModuleType) -> dict[str, Handler]:
    """The marked functions in ``module``'s namespace, by method name.

    Raises ``ValueError`` when two different functions claim one name and ``TypeError``
    when a handler's signature cannot take ``(args, ctx)``.
    """
    found: dict[str, Handler] = {}
    for obj in list(vars(module).values()):
        name = getattr(obj, _MARK, None) if callable(obj) else None
        if not isinstance(name, str):
            continue
        other = found.get(name)
        if other is not None:
            if other.fn is obj:
                continue  # the same function under two attribute names
            raise ValueError(
                f"module {module.__name__}: method {name!r} is claimed by both "
                f"{_describe(other.fn)} and {_describe(obj)}"
            )
        found[name] = Handler(
            name,
            obj,
            _arity(name, obj),
            inspect.iscoroutinefunction(obj),
            inspect.isgeneratorfunction(obj) or inspect.isasyncgenfunction(obj),
        )
    return found


def _arity(name: str, fn: Callable[..., Any]) -> int:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return 2  # builtins without a signature: assume the full form
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    kw_required = [p for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if len(required) > 2 or kw_required:
        raise TypeError(
            f"handler {name!r} ({_describe(fn)}) must take (args, ctx), (args) or no "
            f"arguments; its signature is {inspect.signature(fn)}"
        )
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    return min(len(positional), 2)


def _describe(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"


def worker_identity() -> dict[str, str | None]:
    """``worker_id`` and ``pool`` as pitd passed them in the environment."""
    return {"worker_id": os.environ.get("PIT_WORKER_ID"), "pool": os.environ.get("PIT_POOL")}
