"""Turns one decoded ``CALL`` into the bytes of its ``OK`` or ``ERR`` reply frame.

Everything a handler can do wrong (raise, return something JSON cannot carry, return too
much) becomes an error reply here, so the serve loop only moves frames. Async handlers run
on one event loop kept for the worker's life, so connection pools and other loop-bound
state created by one call are still usable by the next.

A streaming handler (a generator function, or a function that returns a generator, as a
``functools.wraps`` decorator around one does) gives a :class:`Stream` instead of a frame:
the generator, not yet started. Running it means reading pitd's ``CREDIT`` and ``CANCEL``
frames while it runs, which is the serve loop's business (:mod:`pit._streaming`); this
module still encodes each of its chunks and its final answer.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
import traceback
from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _json, _worker_protocol
from .handlers import BUILTIN_NAMES, Context, Handler

if TYPE_CHECKING:
    import asyncio

# Results of these types are final; anything else may be an awaitable to run on the loop
# (a sync wrapper around a coroutine function, say).
_PLAIN_RESULTS = frozenset({dict, list, str, int, float, bool, type(None)})
_PONG_JSON = b'"pong"'
_NULL_JSON = b"null"
# What a streaming handler returns; the abstract types also cover compiled generators.
_GENERATORS = (Generator, AsyncGenerator)
# Frames of this runtime and of asyncio are noise at the top of a handler's traceback.
# asyncio is imported only by workers with async handlers: it costs start-up time.
_HERE = os.path.dirname(os.path.abspath(__file__))
_OWN_FILES = tuple(os.path.join(_HERE, name) for name in ("_dispatch.py", "_concurrent.py", "_streaming.py"))


def _asyncio_dir() -> str | None:
    module = sys.modules.get("asyncio")
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep if module and module.__file__ else None


class Stream(NamedTuple):
    """A streaming call ready to run: its generator (not started yet) and its ``ctx``."""

    call: _worker_protocol.Call
    gen: Generator[Any, None, None] | AsyncGenerator[Any, None]
    ctx: Context

    @property
    def is_async(self) -> bool:
        return isinstance(self.gen, AsyncGenerator)


class Dispatcher:
    """Holds the handler table and the event loop; :meth:`reply` answers one call."""

    def __init__(
        self,
        module_name: str,
        handlers: dict[str, Handler],
        max_frame: int = _worker_protocol.DEFAULT_MAX_FRAME,
        worker_id: str | None = None,
        pool: str | None = None,
    ) -> None:
        self.module_name = module_name
        self.handlers = handlers
        self.max_frame = max_frame
        self.worker_id = worker_id
        self.pool = pool
        self._loop: asyncio.AbstractEventLoop | None = None

    def names(self) -> list[str]:
        """Every method this worker answers, built-ins included, sorted."""
        return sorted(set(self.handlers) | set(BUILTIN_NAMES))

    def reply(self, call: _worker_protocol.Call) -> bytes | Stream:
        """Runs ``call`` and returns its reply frame, or the :class:`Stream` to run when
        the handler streams and the caller asked for a stream; never raises for the
        handler's faults."""
        prepared = self.prepare(call)
        if isinstance(prepared, bytes):
            return prepared
        h, args = prepared
        if h.streams:
            return self.open_stream(call, h, args)
        try:
            if h.nargs == 2:
                result = h.fn(args, self.context(call))
            elif h.nargs == 1:
                result = h.fn(args)
            else:
                result = h.fn()
            if type(result) not in _PLAIN_RESULTS:
                if h.is_async or inspect.isawaitable(result):
                    result = self._event_loop().run_until_complete(result)
                elif isinstance(result, _GENERATORS):
                    return self.stream_of(call, result, self.context(call))
        except Exception as e:  # noqa: BLE001 - whatever a handler raises is the caller's handler_error
            return self.exception_frame(call.req_id, e)
        return self.result_frame(call, result)

    def open_stream(self, call: _worker_protocol.Call, h: Handler, args: Any) -> bytes | Stream:
        """The :class:`Stream` of a generator handler, or the ``bad_request`` answer when
        the caller did not ask for a stream (the generator is then not even created)."""
        if not call.stream:
            return self.not_streamed(call)
        ctx = self.context(call)
        try:
            gen = invoke(h, args, ctx)
        except Exception as e:  # noqa: BLE001 - a generator function that raised when called
            return self.exception_frame(call.req_id, e)
        return self.stream_of(call, gen, ctx)

    def stream_of(self, call: _worker_protocol.Call, gen: Any, ctx: Context) -> bytes | Stream:
        """``gen``, a handler's generator, as a :class:`Stream`; the ``bad_request`` answer
        when the caller did not ask for a stream (``gen`` is closed unstarted)."""
        if not call.stream:
            if isinstance(gen, Generator):
                gen.close()  # an unstarted async generator needs nothing: no code of it ran
            return self.not_streamed(call)
        return Stream(call, gen, ctx)

    def prepare(self, call: _worker_protocol.Call) -> bytes | tuple[Handler, Any]:
        """``(handler, args)`` to run for ``call``, or the reply frame when there is nothing
        to run (the built-in ``ping``, an unknown method, args that are not JSON)."""
        h = self.handlers.get(call.method)
        if h is None:
            if call.method == "ping":
                return _worker_protocol.encode_ok(call.req_id, _PONG_JSON)
            return self._error(
                call.req_id,
                "no_such_method",
                f"no handler {call.method!r} in {self.module_name}; available: {', '.join(self.names())}",
            )
        try:
            args = _json.loads(call.args.decode("utf-8")) if call.args else None
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return self._error(call.req_id, "bad_request", f"args of {call.method!r} are not valid JSON: {e}")
        return h, args

    def context(self, call: _worker_protocol.Call) -> Context:
        """The handler's ``ctx`` for ``call``, starting now (its deadline counts from now)."""
        deadline = time.monotonic() + call.timeout_ms / 1000.0 if call.timeout_ms else None
        return Context(call.session, self.worker_id, self.pool, call.req_id, deadline)

    def result_frame(self, call: _worker_protocol.Call, result: Any) -> bytes:
        """The ``OK`` frame of ``result``, or the error when it cannot be sent."""
        try:
            payload = _json.dumps(result).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as e:  # odd type, NaN, cycle, lone surrogate
            return self._error(
                call.req_id,
                "handler_error",
                f"the result of {call.method!r} is not JSON-serialisable: {e}",
                type(e).__name__,
            )
        if len(payload) + _worker_protocol.ID_FRAME_OVERHEAD > self.max_frame:
            return self._error(
                call.req_id,
                "too_large",
                f"the result of {call.method!r} is {len(payload)} bytes of JSON, over the "
                f"frame limit of {self.max_frame} bytes (PIT_MAX_FRAME)",
            )
        return _worker_protocol.encode_ok(call.req_id, payload)

    def chunk_frame(self, call: _worker_protocol.Call, value: Any) -> tuple[bool, bytes]:
        """``(True, CHUNK frame)`` of one yielded value, or ``(False, ERR frame)`` answering
        the call when the value cannot be sent: not JSON (``handler_error``, as a result),
        or over the frame limit (``too_large``)."""
        try:
            payload = _json.dumps(value).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as e:  # as in result_frame
            return False, self._error(
                call.req_id,
                "handler_error",
                f"a chunk of {call.method!r} is not JSON-serialisable: {e}",
                type(e).__name__,
            )
        if len(payload) + _worker_protocol.ID_FRAME_OVERHEAD > self.max_frame:
            return False, self._error(
                call.req_id,
                "too_large",
                f"a chunk of {call.method!r} is {len(payload)} bytes of JSON, over the "
                f"frame limit of {self.max_frame} bytes (PIT_MAX_FRAME); the stream was closed",
            )
        return True, _worker_protocol.encode_chunk(call.req_id, payload)

    def stream_end(self, call: _worker_protocol.Call) -> bytes:
        """The answer of a stream whose generator finished: ``OK`` with ``null``."""
        return _worker_protocol.encode_ok(call.req_id, _NULL_JSON)

    def not_streamed(self, call: _worker_protocol.Call) -> bytes:
        """The answer to a streaming handler called without ``STREAM``."""
        return self._error(
            call.req_id,
            "bad_request",
            f"{call.method!r} streams its reply (it is a generator): call it as a stream "
            "(`pitctl call --stream`, pit.Client.stream or pit.AsyncClient.stream)",
        )

    def exception_frame(self, req_id: int, e: BaseException) -> bytes:
        """The ``handler_error`` frame of an exception the handler raised."""
        return self._error(
            req_id,
            "handler_error",
            _exc_message(e),
            type(e).__name__,
            "".join(traceback.format_exception(type(e), e, _user_frames(e.__traceback__))),
        )

    def close(self) -> None:
        """Closes the event loop, if an async handler ever created it."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The worker's one event loop, created on first use."""
        return self._event_loop()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        import asyncio

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop

    def taken_back(self, call: _worker_protocol.Call) -> bytes:
        """The answer to a ``CALL_BY`` whose ``start_by`` has passed: not run."""
        return self._error(call.req_id, "queue_timeout", "not started: pitd took the call back")

    def cancelled(self, req_id: int) -> bytes:
        """The answer to a call stopped on pitd's ``CANCEL``: pitd decides what its caller
        sees (``timeout`` past the call's timeout, ``cancelled`` for a cancelled stream)."""
        return self._error(req_id, "cancelled", "cancelled by pitd")

    def _error(
        self,
        req_id: int,
        kind: str,
        message: str,
        exc_type: str | None = None,
        tb: str | None = None,
    ) -> bytes:
        """An ``ERR`` frame; halves message and traceback until it fits the frame limit."""
        limit: int | None = None
        while True:
            err: dict[str, Any] = {
                "kind": kind,
                "message": _clip(message, limit),
                "type": exc_type,
                "traceback": _clip(tb, limit),
            }
            payload = _json.dumps(err).encode("utf-8")
            if len(payload) + _worker_protocol.ID_FRAME_OVERHEAD <= self.max_frame or limit == 0:
                return _worker_protocol.encode_err(req_id, payload)
            limit = max(len(message), len(tb or "")) // 2 if limit is None else limit // 2


def invoke(h: Handler, args: Any, ctx: Context) -> Any:
    """Calls the handler with as many of ``(args, ctx)`` as it takes."""
    if h.nargs == 2:
        return h.fn(args, ctx)
    if h.nargs == 1:
        return h.fn(args)
    return h.fn()


def _exc_message(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:  # noqa: BLE001 - a broken __str__ must not take the worker down
        text = "<str() of the exception failed>"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """Skips this module's and asyncio's frames at the top of a handler's traceback."""
    first = tb
    asyncio_dir = _asyncio_dir()
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename not in _OWN_FILES and not (asyncio_dir and filename.startswith(asyncio_dir)):
            return tb
        tb = tb.tb_next
    return first


def _clip(text: str | None, limit: int | None) -> str | None:
    """``text`` cut to ``limit`` characters, with lone surrogates (undecodable file names
    in OS errors) spelled out so the result always encodes as UTF-8."""
    if text is None:
        return None
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} characters cut to fit the frame limit]"
