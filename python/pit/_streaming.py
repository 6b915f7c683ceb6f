"""Running a streaming call: its chunks, its credit, and its cancellation.

A stream's generator is advanced only while it has credit: it starts with the call's
``window`` and each ``CHUNK`` sent uses one; pitd's ``CREDIT`` frames add more. At 0 the
generator waits at its ``yield``, so a caller that reads slowly slows only its own stream.
(Finding that a generator has ended means advancing it, so that takes credit too: a stream
of exactly its window's chunks is answered once the next ``CREDIT`` comes.)
A ``CANCEL`` closes the generator: an async one gets ``asyncio.CancelledError`` at the
``await`` it is in (its task is cancelled), then ``aclose()``; a sync one is closed
(``GeneratorExit`` at its ``yield``) once its current step returns, as a running thread
cannot be interrupted. Either way its ``finally:`` blocks run and the call is answered once,
``ERR`` ``cancelled``. A generator that ends is answered ``OK`` ``null``, one that raises
``handler_error`` (after the chunks it sent), one that yields a value JSON cannot carry
``handler_error`` and one that yields a value over the frame limit ``too_large``: it is
closed then, and the worker serves on.

:func:`run_alone` runs a stream in a worker serving one call at a time: between chunks it
looks at fd 3 without blocking, applies ``CREDIT`` and ``CANCEL`` for the stream, answers
``PING`` at once and sets every other frame aside, to be served in order once the stream
has been answered. An async generator runs on the worker's event loop with fd 3 watched, so
a ``CANCEL`` reaches it while it awaits. :func:`pump_async` and :func:`pump_threaded` are
the coroutines that run a stream in a worker serving several calls at once
(:mod:`pit._concurrent`), where frames are read by the loop and routed to a :class:`Flow`.
"""

from __future__ import annotations

import select
import sys
import traceback
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any, Callable

from . import _worker_protocol
from .handlers import mark_cancelled

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

    from ._dispatch import Dispatcher, Stream

Write = Callable[[bytes], None]

# What one step of a sync generator on a thread gave.
_YIELDED, _ENDED, _RAISED = range(3)


class Flow:
    """One stream's credit, and whether pitd cancelled it; wakes a coroutine waiting for
    either (:meth:`wait`)."""

    __slots__ = ("_waiter", "cancelled", "credit")

    def __init__(self, window: int) -> None:
        self.credit = window
        self.cancelled = False
        self._waiter: asyncio.Future[None] | None = None

    def grant(self, n: int) -> None:
        """pitd's ``CREDIT``: ``n`` more chunks may be sent."""
        self.credit += n
        self._wake()

    def cancel(self) -> None:
        """pitd's ``CANCEL``: the stream stops at its next step."""
        self.cancelled = True
        self._wake()

    async def wait(self) -> None:
        """Returns once there is credit, or the stream is cancelled."""
        import asyncio

        while self.credit <= 0 and not self.cancelled:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


# --- one call at a time ----------------------------------------------------------------


def run_alone(
    dispatcher: Dispatcher,
    stream: Stream,
    reader: _worker_protocol.FrameReader,
    in_fd: int,
    write: Write,
) -> bytes:
    """Runs ``stream``, writing its chunks, and returns its final answer frame. Frames of
    ``reader`` set aside meanwhile are put back into it, in order."""
    flow = Flow(stream.call.window)
    watch = _Watch(reader, in_fd, stream, flow, write)
    try:
        if stream.is_async:
            return watch.run_on_loop(dispatcher.event_loop(), pump_async(dispatcher, stream, flow, write))
        return _run_sync(dispatcher, stream, flow, watch, write)
    finally:
        reader.unread(watch.set_aside)


def _run_sync(dispatcher: Dispatcher, stream: Stream, flow: Flow, watch: _Watch, write: Write) -> bytes:
    gen = stream.gen
    assert isinstance(gen, Generator)
    call = stream.call
    finished = False
    try:
        while True:
            watch.poll()
            while flow.credit <= 0 and not flow.cancelled:
                watch.wait()
            if flow.cancelled:
                return dispatcher.cancelled(call.req_id)
            try:
                value = next(gen)
            except StopIteration:
                finished = True
                return dispatcher.stream_end(call)
            except Exception as e:  # noqa: BLE001 - the generator's fault is the caller's handler_error
                finished = True
                return dispatcher.exception_frame(call.req_id, e)
            sendable, frame = dispatcher.chunk_frame(call, value)
            if not sendable:
                return frame
            write(frame)
            flow.credit -= 1
    finally:
        if not finished:
            _close(gen, call.method)


class _Watch:
    """pitd's frames while one stream runs in a worker serving one call at a time."""

    def __init__(
        self,
        reader: _worker_protocol.FrameReader,
        in_fd: int,
        stream: Stream,
        flow: Flow,
        write: Write,
    ) -> None:
        self.set_aside: list[tuple[int, bytes]] = []
        self._reader = reader
        self._in_fd = in_fd
        self._stream = stream
        self._flow = flow
        self._write = write
        self._ended = False
        self._on_cancel: Callable[[], Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    def poll(self) -> None:
        """Takes every frame that has come, without blocking."""
        reader = self._reader
        while True:
            frame = reader.buffered_frame()
            if frame is not None:
                self._take(*frame)
            elif self._ended or not select.select([self._in_fd], [], [], 0)[0]:
                return
            elif not reader.read_once():
                self._end_of_input()

    def wait(self) -> None:
        """Blocks until one frame has come, and takes it."""
        frame = self._reader.next_frame()
        if frame is None:
            self._end_of_input()
        else:
            self._take(*frame)

    def run_on_loop(self, loop: asyncio.AbstractEventLoop, pump: Any) -> bytes:
        """Runs ``pump`` (an async stream's coroutine) to its answer on ``loop``, with fd 3
        watched: a ``CANCEL`` cancels the task at the ``await`` it is in."""
        task = loop.create_task(pump)
        self._on_cancel = task.cancel
        self._loop = loop
        loop.add_reader(self._in_fd, self._on_readable)
        try:
            answer: bytes = loop.run_until_complete(task)
        finally:
            loop.remove_reader(self._in_fd)
            self._on_cancel = self._loop = None
        if self._error is not None:
            raise self._error  # a protocol error, or pitd gone: the serve loop ends
        return answer

    def _on_readable(self) -> None:
        try:
            if not self._reader.read_once():
                self._end_of_input()
            while (frame := self._reader.buffered_frame()) is not None:
                self._take(*frame)
        except Exception as e:  # noqa: BLE001 - raised again from run_on_loop, once the stream is closed
            self._error = e
            self._cancel()
        if (self._ended or self._error is not None) and self._loop is not None:
            self._loop.remove_reader(self._in_fd)  # else an ended pipe stays readable: a busy loop

    def _take(self, ftype: int, body: bytes) -> None:
        req_id = self._stream.call.req_id
        if ftype == _worker_protocol.CREDIT:
            for_id, n = _worker_protocol.decode_credit(body)
            if for_id == req_id:
                self._flow.grant(n)
                return
        elif ftype == _worker_protocol.CANCEL:
            if _worker_protocol.decode_id(body) == req_id:
                self._cancel()
                return
        elif ftype == _worker_protocol.PING:
            self._write(_worker_protocol.encode_pong(_worker_protocol.decode_id(body)))
            return
        self.set_aside.append((ftype, body))

    def _end_of_input(self) -> None:
        """pitd closed fd 3: no credit or cancel can come any more, so the stream stops."""
        self._ended = True
        self._cancel()

    def _cancel(self) -> None:
        mark_cancelled(self._stream.ctx)
        self._flow.cancel()
        if self._on_cancel is not None:
            self._on_cancel()


# --- several calls at once, and async generators anywhere ------------------------------


async def pump_async(dispatcher: Dispatcher, stream: Stream, flow: Flow, write: Write) -> bytes:
    """Runs an async generator's stream in the current task; returns its answer frame.
    Cancelling the task is how pitd's ``CANCEL`` reaches the generator's ``await``."""
    import asyncio

    agen = stream.gen
    assert isinstance(agen, AsyncGenerator)
    call = stream.call
    finished = False
    try:
        while True:
            if flow.credit <= 0:
                await flow.wait()
            if flow.cancelled:
                return dispatcher.cancelled(call.req_id)
            try:
                value = await agen.__anext__()
            except StopAsyncIteration:
                finished = True
                return dispatcher.cancelled(call.req_id) if flow.cancelled else dispatcher.stream_end(call)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the generator's fault is the caller's handler_error
                finished = True
                return (
                    dispatcher.cancelled(call.req_id)
                    if flow.cancelled
                    else dispatcher.exception_frame(call.req_id, e)
                )
            if flow.cancelled:  # it caught the CancelledError and yielded on: it is closed
                return dispatcher.cancelled(call.req_id)
            sendable, frame = dispatcher.chunk_frame(call, value)
            if not sendable:
                return frame
            write(frame)
            flow.credit -= 1
    except asyncio.CancelledError:
        return dispatcher.cancelled(call.req_id)
    finally:
        if not finished:
            await _aclose(agen, call.method)


async def pump_threaded(
    dispatcher: Dispatcher,
    stream: Stream,
    flow: Flow,
    write: Write,
    executor: concurrent.futures.Executor,
) -> bytes:
    """Runs a sync generator's stream, each step on a thread of ``executor``; returns its
    answer frame. Its task must not be cancelled while a step runs (that step would go on
    in its thread): pitd's ``CANCEL`` goes through ``flow``, seen after the step."""
    import asyncio

    gen = stream.gen
    assert isinstance(gen, Generator)
    call = stream.call
    loop = asyncio.get_running_loop()
    finished = False
    try:
        while True:
            if flow.credit <= 0:
                await flow.wait()
            if flow.cancelled:
                return dispatcher.cancelled(call.req_id)
            outcome, value = await loop.run_in_executor(executor, _step, gen)
            if flow.cancelled:
                finished = outcome != _YIELDED
                return dispatcher.cancelled(call.req_id)
            if outcome == _ENDED:
                finished = True
                return dispatcher.stream_end(call)
            if outcome == _RAISED:
                finished = True
                return dispatcher.exception_frame(call.req_id, value)
            sendable, frame = dispatcher.chunk_frame(call, value)
            if not sendable:
                return frame
            write(frame)
            flow.credit -= 1
    finally:
        if not finished:
            # On a thread too: the generator's finally: may block.
            await loop.run_in_executor(executor, _close, gen, call.method)


def _step(gen: Generator[Any, None, None]) -> tuple[int, Any]:
    """One step of ``gen`` on a thread: caught here, StopIteration cannot cross a future,
    and an exception's traceback starts at the generator."""
    try:
        return _YIELDED, next(gen)
    except StopIteration:
        return _ENDED, None
    except Exception as e:  # noqa: BLE001 - answered as handler_error on the loop
        return _RAISED, e


def _close(gen: Generator[Any, None, None], method: str) -> None:
    """Closes a generator the runtime stopped; what its ``finally:`` raises goes to stderr
    (the call is answered for the reason it was stopped)."""
    try:
        gen.close()
    except Exception:  # noqa: BLE001 - the answer is decided already
        _report_close_failure(method)


async def _aclose(agen: AsyncGenerator[Any, None], method: str) -> None:
    """``_close`` for an async generator."""
    import asyncio

    try:
        await agen.aclose()
    except (Exception, asyncio.CancelledError):  # noqa: BLE001 - the answer is decided already
        _report_close_failure(method)


def _report_close_failure(method: str) -> None:
    print(f"pit worker: closing the stream of {method!r} raised:", file=sys.stderr, flush=True)
    traceback.print_exc()
