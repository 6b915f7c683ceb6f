"""A worker serving up to ``PIT_CONCURRENCY`` calls at once (a pool's ``concurrency`` above 1).

One asyncio event loop on the main thread reads pitd's frames from fd 3 (non-blocking, by
``add_reader``), answers ``PING`` and writes every reply; it is the only writer of fd 4,
so frames never interleave. Each call is a task on that loop:

- an ``async def`` handler runs in the task itself, so a ``CANCEL`` from pitd (the call is
  past its timeout) cancels it: the handler sees ``asyncio.CancelledError`` at its current
  ``await`` and the call is answered ``cancelled`` (pitd tells its caller ``timeout``);
- a sync handler runs on a ``ThreadPoolExecutor`` of ``concurrency`` threads and its result
  comes back through the loop. A thread cannot be interrupted, so ``CANCEL`` makes its
  ``ctx.cancelled`` True; the handler may stop early, and whatever it returns is answered
  (pitd drops the answer to a call it cancelled).

A stream (:mod:`pit._streaming`) is a task too: an async generator runs in it, so its
``CANCEL`` cancels the task at the generator's ``await``; a sync generator runs each step on
a thread, and its ``CANCEL`` closes it once the step in progress returns. A stream waiting
for pitd's ``CREDIT`` awaits it on the loop: it holds its slot, never a thread, and the
other calls go on.

Every call is answered exactly once, in any order. Args are decoded and results encoded
on the loop's thread only (:mod:`pit._json` is not thread-safe). ``PING`` is answered by
the loop, never by another thread: an async handler that blocks the loop (CPU work, a
blocking call inside ``async def``) stops the pongs, which is how pitd's health check
catches it.

Handlers of such a pool must be safe to run concurrently: up to ``concurrency`` sync
handlers run at the same time in threads of one process (module-level state, caches and
clients they share need locks or must be thread-safe), and async handlers interleave at
every ``await``. Under a GIL, threads help I/O-bound sync handlers only; CPU-bound ones
need a free-threaded build (or more workers instead).

Stopping (SIGTERM, or the end of input on fd 3) stops reading fd 3 (after SIGTERM, once no
stream is open), lets the calls in flight finish and answer, then returns; the caller
exits the process as with one call at a time. At the end of input an open stream is
cancelled, as no credit can come for it any more. pitd sends no more than ``concurrency``
calls at once and no ``CALL_BY`` frames to such a worker; a ``CALL_BY`` is still honoured
as in the one-call loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import os
import signal
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any, Callable

from . import _worker_protocol
from ._dispatch import _PLAIN_RESULTS, Dispatcher, Stream, invoke
from ._streaming import Flow, pump_async, pump_threaded
from .handlers import Context, Handler, mark_cancelled

_READ_CHUNK = 256 * 1024


def serve_concurrently(
    dispatcher: Dispatcher, concurrency: int, in_fd: int, write: Callable[[bytes], None], max_frame: int
) -> None:
    """Serves frames from ``in_fd`` until told to stop and every call is answered.

    ``write`` sends one whole frame to pitd. Raises :class:`pit._worker_protocol.FrameError` when
    pitd sends a malformed frame, whatever ``write`` raised (``BrokenPipeError`` once
    pitd is gone) and what a handler raised that is not an ``Exception``; calls still
    running are then abandoned to the process's exit.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    executor = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="pit-handler")
    server = _Server(loop, executor, dispatcher, in_fd, write, max_frame)
    try:
        loop.run_until_complete(server.run())
    finally:
        # Not closed: a thread still running a handler (after a protocol error) would fail
        # to hand its result to a closed loop, on stderr, while the process exits.
        executor.shutdown(wait=False)


class _Running:
    """A call held by the worker: its task, its context, whether its handler is on a
    thread right now (only a task awaiting the loop can be cancelled), and its credit when
    the caller asked for a stream."""

    __slots__ = ("ctx", "flow", "on_thread", "task")

    def __init__(self, task: asyncio.Task[bytes], ctx: Context, on_thread: bool, flow: Flow | None) -> None:
        self.task = task
        self.ctx = ctx
        self.on_thread = on_thread
        self.flow = flow


class _Server:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: concurrent.futures.Executor,
        dispatcher: Dispatcher,
        in_fd: int,
        write: Callable[[bytes], None],
        max_frame: int,
    ) -> None:
        self._loop = loop
        self._executor = executor
        self._dispatcher = dispatcher
        self._in_fd = in_fd
        self._write_frame = write
        self._feed = _worker_protocol.FrameFeed(max_frame)
        self._calls: dict[int, _Running] = {}
        self._reading = False
        self._stopping = False
        self._done: asyncio.Future[None] = loop.create_future()

    async def run(self) -> None:
        os.set_blocking(self._in_fd, False)
        self._loop.add_reader(self._in_fd, self._on_readable)
        self._reading = True
        # Replaces the one-call loop's handler, which raises wherever the main thread is.
        self._loop.add_signal_handler(signal.SIGTERM, self._stop)
        try:
            await self._done
        finally:
            # The SIGTERM handler stays: a second SIGTERM while the process exits is a no-op.
            self._stop_reading()

    # --- input ---------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            try:
                data = os.read(self._in_fd, _READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                self._feed.end()
                self._end_of_input()
                return
            for ftype, body in self._feed.feed(data):
                self._on_frame(ftype, body)
        except Exception as e:  # noqa: BLE001 - a protocol error, or a reply's write failed: the worker stops
            self._fail(e)

    def _on_frame(self, ftype: int, body: bytes) -> None:
        if ftype == _worker_protocol.CALL:
            self._start(_worker_protocol.decode_call(body))
        elif ftype == _worker_protocol.PING:
            self._write(_worker_protocol.encode_pong(_worker_protocol.decode_id(body)))
        elif ftype == _worker_protocol.CANCEL:
            self._cancel(_worker_protocol.decode_id(body))
        elif ftype == _worker_protocol.CREDIT:
            self._credit(*_worker_protocol.decode_credit(body))
        elif ftype == _worker_protocol.CALL_BY:
            start_by, call = _worker_protocol.decode_call_by(body)
            if time.monotonic_ns() < start_by:
                self._start(call)
            else:
                self._write(self._dispatcher.taken_back(call))
        else:
            raise _worker_protocol.FrameError(f"unknown frame type 0x{ftype:02x}")

    # --- calls ---------------------------------------------------------------------------

    def _start(self, call: _worker_protocol.Call) -> None:
        if call.req_id in self._calls:
            raise _worker_protocol.FrameError(f"CALL with req_id {call.req_id}, which is still running")
        prepared = self._dispatcher.prepare(call)
        if isinstance(prepared, bytes):
            self._write(prepared)  # nothing to run: ping, unknown method, bad args
            return
        h, args = prepared
        if h.streams:
            opened = self._dispatcher.open_stream(call, h, args)
            if isinstance(opened, bytes):
                self._write(opened)  # not asked for as a stream
                return
            self._track(call, self._stream(opened), opened.ctx, isinstance(opened.gen, Generator))
            return
        ctx = self._dispatcher.context(call)
        self._track(call, self._run(call, h, args, ctx), ctx, not h.is_async)

    def _track(self, call: _worker_protocol.Call, run: Any, ctx: Context, on_thread: bool) -> None:
        """Starts the task of ``call`` and holds it until it is answered."""
        task = self._loop.create_task(run)
        flow = Flow(call.window) if call.stream else None
        self._calls[call.req_id] = _Running(task, ctx, on_thread, flow)
        task.add_done_callback(functools.partial(self._answer, call.req_id))

    async def _run(self, call: _worker_protocol.Call, h: Handler, args: Any, ctx: Context) -> bytes:
        """The call's answer frame."""
        try:
            if h.is_async:
                result = await invoke(h, args, ctx)
            else:
                ok, result = await self._loop.run_in_executor(self._executor, _invoke_on_thread, h, args, ctx)
                if not ok:
                    raise result
                if type(result) not in _PLAIN_RESULTS and isinstance(result, (Generator, AsyncGenerator)):
                    # A sync wrapper around a generator function: the handler streams.
                    stream = self._dispatcher.stream_of(call, result, ctx)
                    if isinstance(stream, bytes):
                        return stream
                    return await self._stream(stream)
                self._calls[call.req_id].on_thread = False
                if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
                    result = await result  # a sync wrapper around a coroutine function
        except asyncio.CancelledError:
            return self._dispatcher.cancelled(call.req_id)
        except Exception as e:  # noqa: BLE001 - the handler's fault becomes its answer
            return self._dispatcher.exception_frame(call.req_id, e)
        return self._dispatcher.result_frame(call, result)

    async def _stream(self, stream: Stream) -> bytes:
        """A stream's answer frame, its chunks written meanwhile."""
        running = self._calls[stream.call.req_id]
        flow = running.flow
        assert flow is not None  # a Stream is made only for a call that asked for one
        if isinstance(stream.gen, Generator):
            return await pump_threaded(self._dispatcher, stream, flow, self._write, self._executor)
        running.on_thread = False
        return await pump_async(self._dispatcher, stream, flow, self._write)

    def _answer(self, req_id: int, task: asyncio.Task[bytes]) -> None:
        """Writes the answer of a finished task; the slot is free once it is written."""
        if task.cancelled():
            # Cancelled before its first step: the coroutine never ran to catch it.
            frame = self._dispatcher.cancelled(req_id)
        elif (error := task.exception()) is not None:
            # Not an Exception (`_run` answers those). The loop re-raises SystemExit and
            # KeyboardInterrupt itself; any other would leave the call unanswered and its
            # slot taken for good: it ends the serving, and the worker exits, as the
            # one-call loop does.
            if not isinstance(error, (SystemExit, KeyboardInterrupt)):
                self._fail(error)
            return
        else:
            frame = task.result()
        self._write(frame)
        del self._calls[req_id]
        self._finish_if_idle()

    def _cancel(self, req_id: int) -> None:
        running = self._calls.get(req_id)
        if running is None:
            return  # already answered: pitd drops that answer
        mark_cancelled(running.ctx)
        if running.flow is not None:
            running.flow.cancel()
        if not running.on_thread:
            running.task.cancel()

    def _credit(self, req_id: int, n: int) -> None:
        running = self._calls.get(req_id)
        if running is not None and running.flow is not None:
            running.flow.grant(n)
        # else: a stream answered already, or a call that is no stream: nothing to do

    # --- output and stopping -------------------------------------------------------------

    def _write(self, frame: bytes) -> None:
        if self._done.done():
            return  # failed already: nothing more goes out
        try:
            self._write_frame(frame)
        except Exception as e:  # noqa: BLE001 - pitd gone (BrokenPipeError) or worse: the worker stops
            self._fail(e)

    def _stop(self) -> None:
        """SIGTERM: no new calls; the ones in flight finish. An open stream still needs
        pitd's ``CREDIT`` and ``CANCEL``: fd 3 is read on until the last one is answered
        (pitd sends no new call to a worker it stops)."""
        self._stopping = True
        if not any(running.flow is not None for running in self._calls.values()):
            self._stop_reading()
        self._finish_if_idle()

    def _end_of_input(self) -> None:
        """pitd closed fd 3: the calls in flight finish, but no ``CREDIT`` or ``CANCEL``
        can come any more, so the open streams are cancelled."""
        self._stop_reading()
        for req_id, running in list(self._calls.items()):
            if running.flow is not None:
                self._cancel(req_id)
        self._stopping = True
        self._finish_if_idle()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._in_fd)

    def _finish_if_idle(self) -> None:
        if self._stopping and not self._calls and not self._done.done():
            self._done.set_result(None)

    def _fail(self, error: BaseException) -> None:
        self._stop_reading()
        if not self._done.done():
            self._done.set_exception(error)


def _invoke_on_thread(h: Handler, args: Any, ctx: Context) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, exception)``: caught here, the exception's traceback
    starts at the handler, not in the executor's machinery."""
    try:
        return True, invoke(h, args, ctx)
    except Exception as e:  # noqa: BLE001 - answered as handler_error on the loop
        return False, e
