"""The worker process: ``python -m pit serve MODULE``, as pitd runs it for ``app = "MODULE"``.

Lifecycle: check that pitd's protocol pipes are on fds 3 (calls in) and 4 (replies out),
import MODULE with the working directory first on ``sys.path``, send ``READY``, then answer
frames one at a time until pitd closes fd 3; with ``PIT_CONCURRENCY`` above 1 (a pool's
``concurrency``), :mod:`pit._concurrent` serves up to that many calls at once instead. A
streaming handler's chunks go out as it yields them (:mod:`pit._streaming`).
stdout and stderr belong to user code: the protocol never touches them, and they are made
line-buffered because pitd captures them line by line.

Told to stop (SIGTERM, or the end of input on fd 3), a worker runs its ``atexit`` hooks,
flushes stdout and stderr and leaves with ``os._exit``: the interpreter's teardown (freeing
every module's objects, a last garbage collection) is skipped. That teardown is what costs
a big preloaded worker its CPU, its objects' pages being shared with the template until
it touches them; with many workers stopping at once it would outlast ``kill_timeout``.
Non-daemon threads are not waited for, and files user code left open without a
``close`` or an ``atexit`` hook lose what is still buffered.

Exit statuses (pitd reads them as the reason a worker went away):

- 0: end of input on fd 3, pitd gone (broken pipe), or SIGTERM;
- 1: MODULE failed to import, or its handlers are invalid (traceback on stderr);
- 2: not started by pitd (fds 3/4 missing), a bad ``PIT_MAX_FRAME`` or ``PIT_CONCURRENCY``;
- 3: pitd sent a malformed or unknown frame (one line on stderr); pitd replaces the worker.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import importlib
import os
import signal
import sys
import sysconfig
import time
import traceback
import warnings
from typing import Any, Callable, NoReturn

from . import _streaming, _worker_protocol
from ._dispatch import Dispatcher
from .handlers import collect, worker_identity

IN_FD = 3
OUT_FD = 4

EXIT_OK = 0
EXIT_IMPORT_FAILED = 1
EXIT_NOT_UNDER_PITD = 2
EXIT_PROTOCOL_ERROR = 3

#: Largest ``PIT_CONCURRENCY``: calls one worker holds at once.
MAX_CONCURRENCY = 65535

_ACCMODE = getattr(os, "O_ACCMODE", 3)


def serve(module_name: str, before_ready: Callable[[], None] | None = None) -> int:
    """Runs the worker; returns the process exit status. ``before_ready`` runs once MODULE
    is imported, just before ``READY`` is sent (a forked worker finishes its set-up there)."""
    problem = _protocol_fd_problem()
    if problem:
        _say(
            f"{problem}. `python -m pit serve {module_name}` must be run by pitd (a pool with "
            f'app = "{module_name}"), which passes the protocol pipes on fds 3 and 4.'
        )
        return EXIT_NOT_UNDER_PITD
    try:
        max_frame = _max_frame_from_env()
        concurrency = _concurrency_from_env()
    except ValueError as e:
        _say(str(e))
        return EXIT_NOT_UNDER_PITD

    _prepare_process()
    try:
        module, gil_notes = _import_noting_gil(module_name)
        handlers = collect(module)
    except Exception:  # noqa: BLE001 - any failure of user code at import is exit status 1
        _say(f"cannot serve {module_name}:")
        traceback.print_exc()
        return EXIT_IMPORT_FAILED
    reenabled = gil_reenabled_why(gil_notes)
    if os.environ.get("PIT_REQUIRE_FREE_THREADING") == "1" and gil_enabled() is not False:
        why = reenabled or (
            f"{sys.executable} (Python {sys.version.split()[0]}) is not a free-threaded build: "
            "it always runs with the GIL (a free-threaded one is python3.13t or later)"
        )
        _say(f"require_free_threading: {why}")
        return EXIT_IMPORT_FAILED

    if before_ready is not None:
        before_ready()
    identity = worker_identity()
    dispatcher = Dispatcher(module_name, handlers, max_frame, identity["worker_id"], identity["pool"])
    reader = _worker_protocol.FrameReader(functools.partial(os.read, IN_FD), max_frame)
    try:
        ready = _worker_protocol.encode_ready(
            dispatcher.names(), os.getpid(), concurrency, gil_enabled(), reenabled
        )
        _write_all(OUT_FD, ready)
        if concurrency > 1:
            from ._concurrent import serve_concurrently  # asyncio: only workers that need it

            try:
                write = functools.partial(_write_all, OUT_FD)
                serve_concurrently(dispatcher, concurrency, IN_FD, write, max_frame)
            except _worker_protocol.FrameError as e:
                _say(f"protocol error from pitd: {e}; exiting")
                return EXIT_PROTOCOL_ERROR
            return EXIT_OK
        return _serve_frames(dispatcher, reader)
    except BrokenPipeError:
        return EXIT_OK  # pitd is gone; nobody is left to answer
    except _StopRequested:
        return EXIT_OK
    finally:
        dispatcher.close()


def exit_process(status: int) -> NoReturn:
    """Ends the worker process: ``atexit`` hooks, stdout and stderr flushed, then
    ``os._exit`` without the interpreter's teardown (see the module's docstring)."""
    # A second SIGTERM must not cut the hooks short; SIGKILL after kill_timeout still can.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed or broken stream must not keep the worker alive
                pass
        os._exit(status)


def _serve_frames(dispatcher: Dispatcher, reader: _worker_protocol.FrameReader) -> int:
    """The hot loop: one frame in, one reply frame out, until end of input. A stream
    (:mod:`pit._streaming`) writes its chunks while it runs, then its reply comes out here."""
    next_frame = reader.next_frame
    reply = dispatcher.reply
    decode_call = _worker_protocol.decode_call
    CALL, PING, CANCEL = _worker_protocol.CALL, _worker_protocol.PING, _worker_protocol.CANCEL
    CALL_BY, decode_call_by, monotonic_ns = (
        _worker_protocol.CALL_BY,
        _worker_protocol.decode_call_by,
        time.monotonic_ns,
    )
    run_stream = functools.partial(
        _streaming.run_alone,
        dispatcher,
        reader=reader,
        in_fd=IN_FD,
        write=functools.partial(_write_all, OUT_FD),
    )
    while True:
        try:
            frame = next_frame()
            if frame is None:
                return EXIT_OK
            ftype, body = frame
            if ftype == CALL:
                out = reply(decode_call(body))
            elif ftype == CALL_BY:
                start_by, call = decode_call_by(body)
                out = reply(call) if monotonic_ns() < start_by else dispatcher.taken_back(call)
            elif ftype == PING:
                out = _worker_protocol.encode_pong(_worker_protocol.decode_id(body))
            elif ftype == CANCEL:
                _worker_protocol.decode_id(body)
                continue  # the call it names was answered before this frame was read
            elif ftype == _worker_protocol.CREDIT:
                _worker_protocol.decode_credit(body)
                continue  # for a stream answered before this frame was read
            else:
                raise _worker_protocol.FrameError(f"unknown frame type 0x{ftype:02x}")
            if not isinstance(out, bytes):
                out = run_stream(out)
        except _worker_protocol.FrameError as e:
            _say(f"protocol error from pitd: {e}; exiting")
            return EXIT_PROTOCOL_ERROR
        _write_all(OUT_FD, out)


def _protocol_fd_problem() -> str | None:
    """Why fds 3/4 cannot be the protocol pipes, or None when they can."""
    for fd, need, refused in ((IN_FD, "reading", os.O_WRONLY), (OUT_FD, "writing", os.O_RDONLY)):
        try:
            mode = fcntl.fcntl(fd, fcntl.F_GETFL) & _ACCMODE
        except OSError:
            return f"fd {fd} is not open"
        if mode == refused:
            return f"fd {fd} is not open for {need}"
    return None


def _max_frame_from_env() -> int:
    raw = os.environ.get("PIT_MAX_FRAME")
    if not raw:
        return _worker_protocol.DEFAULT_MAX_FRAME
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 64 <= value <= 0xFFFFFFFF:
        raise ValueError(f"PIT_MAX_FRAME={raw!r} is not a byte count between 64 and 4294967295")
    return value


def _concurrency_from_env() -> int:
    raw = os.environ.get("PIT_CONCURRENCY")
    if not raw:
        return 1
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_CONCURRENCY:
        raise ValueError(f"PIT_CONCURRENCY={raw!r} is not a number of calls between 1 and {MAX_CONCURRENCY}")
    return value


def _import_noting_gil(module_name: str) -> tuple[Any, list[str]]:
    """Imports the app, noting the warnings a free-threaded build gives when an extension
    module turns the GIL back on (they name the module); every warning is still shown."""
    notes: list[str] = []
    shown = warnings.showwarning

    def note(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
        text = str(message)
        if issubclass(category, RuntimeWarning) and "GIL" in text:
            notes.append(text)
        shown(message, category, *rest, **kw)

    warnings.showwarning = note
    try:
        return importlib.import_module(module_name), notes
    finally:
        warnings.showwarning = shown


def gil_reenabled_why(notes: list[str]) -> str | None:
    """Why the GIL is on in a free-threaded build after the app's import (the interpreter's
    own words, naming the module, when it gave them); None when the build has no GIL, or
    has one by design."""
    if not sysconfig.get_config_var("Py_GIL_DISABLED") or gil_enabled() is not True:
        return None
    if notes:
        return "GIL_REENABLED: " + " ".join(notes)
    return "GIL_REENABLED: the GIL is on in this free-threaded build after the app's import"


def gil_enabled() -> bool | None:
    """Whether the GIL is on now: an import may re-enable it in a free-threaded build
    (3.13+); builds before 3.13 always have it; None when the interpreter cannot tell."""
    probe = getattr(sys, "_is_gil_enabled", None)
    if probe is None:
        return True
    try:
        return bool(probe())
    except Exception:  # noqa: BLE001 - an unknown answer, not a reason to stop the worker
        return None


def prepare_interpreter() -> None:
    """What any process of the runtime needs before user code runs (a worker, and the
    preload template): line-buffered streams, SIGINT ignored, the working directory first
    on ``sys.path``."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    # A Ctrl-C in pitd's terminal reaches the whole foreground group; stopping workers is
    # pitd's decision (it drains first), so the worker does not die on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cwd = os.getcwd()
    if sys.path[:1] != [cwd]:
        sys.path.insert(0, cwd)  # as `python -m` does, and even under -P / PYTHONSAFEPATH


def _prepare_process() -> None:
    """Stream buffering, fd hygiene, signals and ``sys.path``, before user code runs."""
    prepare_interpreter()
    for fd in (IN_FD, OUT_FD):
        # Children of user code must not hold the pipes: a grandchild keeping fd 4 open
        # would hide this worker's death from pitd.
        os.set_inheritable(fd, False)
        os.set_blocking(fd, True)
    # pitd sends SIGTERM only while no call is in flight (or past a drain's deadline); the
    # serving loop ends and `exit_process` runs the atexit hooks.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


class _StopRequested(SystemExit):
    """SIGTERM: pitd stops the worker. A SystemExit, so handlers' ``except Exception``
    does not swallow it."""


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise _StopRequested(EXIT_OK)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)
        while written < len(data):
            written += os.write(fd, view[written:])


def _say(message: str) -> None:
    print(f"pit worker: {message}", file=sys.stderr, flush=True)
