"""The preload template: ``python -m pit template MODULE --preload M [--preload M ...]
[--warmup MODULE:FUNCTION]``, what pitd runs once for a pool with ``preload = [...]``.

The template first holds fds 0-4 (/dev/null on any free one), so that files and sockets
the preload modules open at import land above the fds every worker takes from pitd; it
imports the preload modules once, then calls the pool's ``warmup`` function, if it has one
(no arguments; a coroutine it returns is run to completion): what a first call would load
lazily (modules imported inside functions, caches, compiled templates) is then loaded here
too, once, and shared by every worker instead of loaded privately by each at its first
call. Then it waits on fd 3, a ``SOCK_SEQPACKET`` socket to pitd. For every worker pitd
wants, it sends one ``fork`` message carrying, as
``SCM_RIGHTS``, the worker's four ends: calls in (its fd 3), replies out (its fd 4), stdout
and stderr. The template forks twice: the intermediate child exits at once, so the worker is
re-parented to pitd (a child subreaper), and pitd reaps and signals it exactly like a worker
it started itself. The worker

1. calls ``setsid`` (its own process group, which pitd kills as a whole),
2. reports its pid to the template through a pipe,
3. moves its four fds onto 1, 2, 3 and 4, and runs :func:`pit.worker.serve` for MODULE, whose
   own imports find the preloaded modules in ``sys.modules``;
4. before it sends ``READY``, waits until its parent is pitd, then sets ``PR_SET_PDEATHSIG``
   (SIGKILL) and checks the parent again, as a directly spawned worker does before ``exec``.
   (Importing MODULE meanwhile hides the intermediate's exit, which takes milliseconds for
   a large address space.)

The template itself reaps each intermediate child; a *spare* (below) that pitd adopted is
pitd's to reap, and it exits 0 by itself once its template is gone.

The template then answers ``forked`` with the pid (or ``fork_failed`` with why). To make a
replacement cost no fork at all, the template keeps one *spare*: a worker forked that way
ahead of need, which has done steps 1-2 and 4 and waits on a socket of its own; a fork
request hands the spare its id and fds and is answered at once, and the next spare is
forked after the reply (each spare's pid is sent as ``spare``, so pitd can count its
memory). The ``ready`` message names what is still there after the preload and the warm-up
and would be wrong in every forked worker: the threads running (fork copies none of them),
and the sockets open (every worker would share each one, so a connection a warm-up left
open, say a client's keep-alive connection, would carry the traffic of all workers at
once); it says ``gil_reenabled`` when a free-threaded build has its GIL back on after the
preload. pitd warns about all of them. The template's process name is ``pit template``.
rlimits, credentials, the working directory and the environment are the template's, which
pitd set from the pool's spec when it started it. Messages are one JSON object per datagram.

Exit statuses: 0 when pitd closes the socket or on SIGTERM; 1 when a preload module fails to
import (traceback on stderr); 2 when not started by pitd (fd 3 is not a seqpacket socket);
3 when pitd sent something this template does not understand; 4 when the warm-up fails
(its module does not import, the function is not found, or it raises; traceback on stderr).
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import importlib
import inspect
import json
import os
import select
import signal
import socket
import stat
import struct
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any, Callable

# Imported here, before any fork, so that every worker finds the runtime loaded.
from .worker import exit_process, gil_enabled, prepare_interpreter, serve

CHANNEL_FD = 3

EXIT_OK = 0
EXIT_IMPORT_FAILED = 1
EXIT_NOT_UNDER_PITD = 2
EXIT_PROTOCOL_ERROR = 3
EXIT_WARMUP_FAILED = 4

#: What a fork message carries, in this order.
FDS_PER_FORK = 4
#: The fds a forked worker gets from pitd: stdin, stdout, stderr, calls in, replies out.
WORKER_FDS = range(5)
#: How long a forked worker waits to be re-parented to pitd, and the template for its pid.
REPARENT_TIMEOUT = 5.0

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_MAX_MESSAGE = 64 * 1024


def run(module_name: str, preload: Sequence[str], warmup: str | None = None) -> int:
    """Runs the template; returns its exit status (a forked worker never returns here: it
    leaves through ``SystemExit`` with its own status). ``warmup`` is ``"module:function"``."""
    channel = _channel()
    if channel is None:
        _say(
            f"fd {CHANNEL_FD} is not a seqpacket socket. `python -m pit template` must be run by "
            "pitd (a pool with preload = [...]), which passes its channel on fd 3."
        )
        return EXIT_NOT_UNDER_PITD
    pitd_pid = os.getppid()
    _reserve_worker_fds()
    _name_process("pit template")
    prepare_interpreter()
    started = time.monotonic()
    for name in preload:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - even a SystemExit at import is exit status 1
            _say(f"cannot preload {name}:")
            traceback.print_exc()
            return EXIT_IMPORT_FAILED
    import_ms = (time.monotonic() - started) * 1000.0
    if os.environ.get("PIT_CONCURRENCY", "1") not in ("", "1"):
        # The runtime of a worker serving several calls at once (asyncio): loaded once here.
        importlib.import_module("pit._concurrent")
    warmup_ms = None
    if warmup is not None:
        started = time.monotonic()
        try:
            warm_up(warmup)
        except BaseException:  # noqa: BLE001 - a warm-up that fails in any way fails the template
            _say(f"warm-up {warmup} failed:")
            traceback.print_exc()
            return EXIT_WARMUP_FAILED
        warmup_ms = (time.monotonic() - started) * 1000.0
    # Objects that exist now are shared by every worker: keep the collector from touching
    # (and so copying) their pages in each worker.
    _libc()
    gc.collect()
    gc.freeze()
    _send(
        channel,
        {
            "type": "ready",
            "pid": os.getpid(),
            "preloaded": list(preload),
            "import_ms": import_ms,
            "warmup": warmup,
            "warmup_ms": warmup_ms,
            # pitd logs, emits and shows these: they are not in any forked worker.
            "threads": _threads_after_preload(),
            # pitd warns about these too: every forked worker would share each one.
            "sockets": sockets_open(),
            # A free-threaded build whose GIL a preloaded module turned back on: pitd warns.
            "gil_reenabled": gil_reenabled(),
        },
    )
    spare = _fork_spare(channel, pitd_pid, module_name)
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(channel, _MAX_MESSAGE, FDS_PER_FORK)
        except InterruptedError:
            continue
        except ConnectionResetError:
            return EXIT_OK
        if not data:
            for fd in fds:
                os.close(fd)
            return EXIT_OK  # pitd closed the channel
        try:
            msg = json.loads(data)
            if not isinstance(msg, dict) or msg.get("type") != "fork":
                raise ValueError(f"unknown message {data[:80]!r}")
            worker_id = msg["worker_id"]
            if not isinstance(worker_id, str):
                raise ValueError("worker_id is not a string")
        except (ValueError, KeyError) as e:
            for fd in fds:
                os.close(fd)
            _say(f"protocol error from pitd: {e}; exiting")
            return EXIT_PROTOCOL_ERROR
        if len(fds) != FDS_PER_FORK:
            for fd in fds:
                os.close(fd)
            _send(
                channel,
                {"type": "fork_failed", "worker_id": worker_id, "error": f"got {len(fds)} fds, expected 4"},
            )
            continue
        reply = spare.assign(worker_id, fds) if spare is not None else None
        if reply is None:
            reply = _fork_worker(channel, worker_id, fds, pitd_pid, module_name)
        for fd in fds:
            os.close(fd)
        _send(channel, reply)
        # The next spare is forked after the reply, so no request waits for it.
        if spare is not None:
            spare.close()
        spare = _fork_spare(channel, pitd_pid, module_name)


class _Spare:
    """A worker forked ahead of need: re-parented to pitd, in its own group, with
    PDEATHSIG set, blocked on a socket until the template hands it a worker id and its
    four fds. pitd learns of it only then, so a replacement costs no fork at all. It exits
    when the template goes (end of file on that socket)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock

    def assign(self, worker_id: str, fds: list[int]) -> dict[str, Any] | None:
        """The ``forked`` reply, or None when the spare is gone (fork afresh then)."""
        try:
            socket.send_fds(self.sock, [json.dumps({"worker_id": worker_id}).encode()], fds)
        except OSError:
            return None
        return {"type": "forked", "worker_id": worker_id, "pid": self.pid}

    def close(self) -> None:
        self.sock.close()


def _fork_spare(channel: socket.socket, pitd_pid: int, module_name: str) -> _Spare | None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = _double_fork(lambda report_w: _run_spare(channel, ours, theirs, report_w, pitd_pid, module_name))
    theirs.close()
    if pid is None:
        ours.close()
        _say("could not fork a spare worker; workers are forked on request")
        return None
    # pitd samples the spare's memory as the pool's (it is no worker yet).
    try:
        _send(channel, {"type": "spare", "pid": pid})
    except OSError:
        pass  # pitd closed the channel: the next receive says so, and the template exits 0
    return _Spare(pid, ours)


def _run_spare(
    channel: socket.socket,
    ours: socket.socket,
    theirs: socket.socket,
    report_w: int,
    pitd_pid: int,
    module_name: str,
) -> None:
    """The spare's life; never returns."""
    try:
        ours.close()
        _start_own_group(report_w)
        _adopted_by_pitd(pitd_pid, "spare")
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(theirs, _MAX_MESSAGE, FDS_PER_FORK)
                break
            except InterruptedError:
                continue
        if not data or len(fds) != FDS_PER_FORK:
            os._exit(EXIT_OK)  # the template is gone, or retired this spare
        worker_id = json.loads(data)["worker_id"]
        theirs.close()
        _name_process(f"pit {worker_id}")
    except BaseException:  # noqa: BLE001 - a forked child must never unwind into the template's loop
        traceback.print_exc()
        os._exit(EXIT_NOT_UNDER_PITD)
    _serve_as(channel, worker_id, fds, module_name, before_ready=None)


def _fork_worker(
    channel: socket.socket, worker_id: str, fds: list[int], pitd_pid: int, module_name: str
) -> dict[str, Any]:
    def worker(report_w: int) -> None:
        try:
            _start_own_group(report_w)
        except BaseException:  # noqa: BLE001 - a forked child must never unwind into the template's loop
            traceback.print_exc()
            os._exit(EXIT_NOT_UNDER_PITD)
        # Importing the app meanwhile hides the intermediate's exit.
        _serve_as(
            channel, worker_id, fds, module_name, before_ready=lambda: _adopted_by_pitd(pitd_pid, worker_id)
        )

    pid = _double_fork(worker)
    if pid is None:
        return {
            "type": "fork_failed",
            "worker_id": worker_id,
            "error": "the forked worker died before it started",
        }
    return {"type": "forked", "worker_id": worker_id, "pid": pid}


def _double_fork(child: Callable[[int], None]) -> int | None:
    """Forks ``child`` (given the pipe to report its pid on) through an intermediate that
    exits at once, so the child is re-parented to pitd. Returns the child's pid once the
    intermediate is reaped, or None when the child died before reporting it."""
    report_r, report_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    intermediate = os.fork()
    if intermediate == 0:
        try:
            os.close(report_r)
            is_child = os.fork() == 0
        except BaseException:  # noqa: BLE001 - the intermediate must never unwind into the template's loop
            os._exit(1)
        if not is_child:
            os._exit(0)
        child(report_w)
        os._exit(EXIT_NOT_UNDER_PITD)  # child() never returns
    os.close(report_w)
    _wait_child(intermediate)
    try:
        return _read_pid(report_r)
    finally:
        os.close(report_r)


def _start_own_group(report_w: int) -> None:
    os.setsid()
    os.write(report_w, struct.pack(">Q", os.getpid()))
    os.close(report_w)


def _adopted_by_pitd(pitd_pid: int, name: str) -> None:
    """Waits to be re-parented to pitd, then dies with it (as an exec'd worker would)."""
    deadline = time.monotonic() + REPARENT_TIMEOUT
    while os.getppid() != pitd_pid:
        if time.monotonic() > deadline:
            _say(
                f"not re-parented to pitd (pid {pitd_pid}) within {REPARENT_TIMEOUT:.0f}s; "
                "is pitd a subreaper?"
            )
            os._exit(EXIT_NOT_UNDER_PITD)
        time.sleep(0.0001)
    _die_with_parent()
    if os.getppid() != pitd_pid:
        os._exit(EXIT_NOT_UNDER_PITD)  # pitd died between the check and the prctl
    _name_process(f"pit {name}")


def _serve_as(
    channel: socket.socket,
    worker_id: str,
    fds: list[int],
    module_name: str,
    before_ready: Callable[[], None] | None,
) -> None:
    """Moves the four fds onto 1-4 and serves MODULE as ``worker_id``; never returns
    (``exit_process`` ends it)."""
    try:
        channel.detach()  # fd 3 is about to be the calls pipe: the socket object must not close it
        parked = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]
        for fd in fds:
            os.close(fd)
        calls_in, replies_out, stdout, stderr = parked
        for fd, target in ((stdout, 1), (stderr, 2), (calls_in, 3), (replies_out, 4)):
            os.dup2(fd, target, inheritable=True)
            os.close(fd)
        os.environ["PIT_WORKER_ID"] = worker_id
        os.environ.pop("PIT_TEMPLATE", None)
    except BaseException:  # noqa: BLE001 - a forked child must never unwind into the template's loop
        traceback.print_exc()
        os._exit(EXIT_NOT_UNDER_PITD)
    gc.unfreeze()
    exit_process(serve(module_name, before_ready=before_ready))


def _reserve_worker_fds() -> None:
    """Holds every fd a worker will take from pitd (``WORKER_FDS``) before any preload
    runs, with /dev/null on the free ones: a file or socket a preloaded module opens at
    import then lands above them, instead of on fd 4 where every forked worker puts its
    replies pipe (the module would write its log lines into pit's protocol, or read
    pit's traffic). A worker's ``dup2`` onto 1-4 replaces the placeholders."""
    for fd in WORKER_FDS:
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
            continue  # open: stdio from pitd, or the channel
        except OSError:
            pass
        placeholder = os.open(os.devnull, os.O_RDWR)
        if placeholder != fd:
            os.dup2(placeholder, fd, inheritable=False)
            os.close(placeholder)


def _die_with_parent() -> None:
    if _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def _name_process(name: str) -> None:
    """The command line stays the template's; ``ps -o comm`` and top show this name."""
    _libc().prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    """The C library, loaded once in the template (a lookup by name can take milliseconds
    and run programs: not something a fresh worker should pay)."""
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _read_pid(fd: int) -> int | None:
    data = b""
    deadline = time.monotonic() + REPARENT_TIMEOUT
    while len(data) < 8:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 8 - len(data))
        if not chunk:
            return None
        data += chunk
    return int(struct.unpack(">Q", data)[0])


def _wait_child(pid: int) -> None:
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def _channel() -> socket.socket | None:
    try:
        sock = socket.socket(fileno=CHANNEL_FD)
    except OSError:
        return None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        sock.detach()
        return None
    sock.setblocking(True)
    os.set_inheritable(CHANNEL_FD, False)
    return sock


def parse_warmup(spec: str) -> tuple[str, str]:
    """``"module:function"`` as (module, attribute path); ValueError when it is not that."""
    module, sep, function = spec.partition(":")
    names = [*module.split("."), *function.split(".")]
    if not sep or not all(name.isidentifier() for name in names):
        raise ValueError(f'expected "module:function" like "myapp.model:warm_up", found {spec!r}')
    return module, function


def warm_up(spec: str) -> None:
    """Imports the module of ``spec`` (``"module:function"``), calls the function with no
    arguments, and runs a coroutine it returns to completion (``asyncio.run``)."""
    module_name, function = parse_warmup(spec)
    target: Any = importlib.import_module(module_name)
    for name in function.split("."):
        target = getattr(target, name)
    result = target()
    if inspect.isawaitable(result):
        import asyncio

        async def until_done() -> None:
            await result

        asyncio.run(until_done())


def sockets_open() -> list[dict[str, Any]]:
    """Every socket open in this process but pitd's channel, as ``fd``, ``kind`` (``tcp``,
    ``udp``, ``unix``, or the address family's name), ``local`` and ``peer`` addresses
    (None when it has none) and ``listening``. Read from the fds themselves, so sockets a
    C library opened count too."""
    found: list[dict[str, Any]] = []
    try:
        fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    except OSError:
        return found
    for fd in fds:
        if fd == CHANNEL_FD:
            continue
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
        except OSError:
            continue  # the listing's own fd, closed by now
        found.append(_describe_socket(fd))
    return found


def _describe_socket(fd: int) -> dict[str, Any]:
    described: dict[str, Any] = {"fd": fd, "kind": "socket", "local": None, "peer": None, "listening": False}
    try:
        # A duplicate, so that closing the object leaves the process's own fd alone.
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return described
    with sock:
        described["kind"] = _socket_kind(sock.family, sock.type)
        described["local"] = _address(sock, sock.getsockname)
        described["peer"] = _address(sock, sock.getpeername)
        try:
            described["listening"] = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            pass
    return described


def _socket_kind(family: int, type_: int) -> str:
    if family in (socket.AF_INET, socket.AF_INET6):
        return "tcp" if type_ == socket.SOCK_STREAM else "udp" if type_ == socket.SOCK_DGRAM else "raw"
    if family == socket.AF_UNIX:
        return "unix"
    name = getattr(family, "name", "")
    return name.removeprefix("AF_").lower() if name else f"family {int(family)}"


def _address(sock: socket.socket, get: Callable[[], Any]) -> str | None:
    """An address as a person writes it (``127.0.0.1:80``, ``[::1]:80``, a path, ``@name``
    for an abstract one); None when there is none (not bound, not connected, unnamed)."""
    try:
        address: Any = get()
    except OSError:
        return None
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host, port = address[:2]
        if port == 0:
            return None  # not bound yet
        return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
    if sock.family == socket.AF_UNIX:
        if isinstance(address, bytes):
            address = address.decode(errors="replace")
        if not address:
            return None
        return "@" + address[1:] if address.startswith("\0") else str(address)
    return str(address)


def _threads_after_preload() -> list[str]:
    """Names of the threads other than this one: fork copies none of them."""
    return [t.name for t in threading.enumerate() if t is not threading.main_thread()]


def gil_reenabled() -> bool:
    """True in a free-threaded build (``Py_GIL_DISABLED``) whose GIL is on now: an extension
    module imported without declaring itself free-thread safe turns it back on for the
    whole process, so threads of a concurrent pool run one at a time again."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED")) and gil_enabled() is True


def _send(channel: socket.socket, msg: dict[str, Any]) -> None:
    channel.send(json.dumps(msg).encode())


def _say(message: str) -> None:
    print(f"pit template: {message}", file=sys.stderr, flush=True)
