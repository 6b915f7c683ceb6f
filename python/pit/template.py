"""The preload template: ``python -m pit template MODULE --preload M [--preload M ...]``, what
pitd runs once for a pool with ``preload = [...]``.

The template imports the preload modules once, then waits on fd 3, a ``SOCK_SEQPACKET``
socket to pitd. For every worker pitd wants, it sends one ``fork`` message carrying, as
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

The template then answers ``forked`` with the pid (or ``fork_failed`` with why). rlimits,
credentials, the working directory and the environment are the template's, which pitd set
from the pool's spec when it started it. Messages are one JSON object per datagram.

Exit statuses: 0 when pitd closes the socket or on SIGTERM; 1 when a preload module fails to
import (traceback on stderr); 2 when not started by pitd (fd 3 is not a seqpacket socket);
3 when pitd sent something this template does not understand.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence

# Imported here, before any fork, so that every worker finds the runtime loaded.
from .worker import serve

CHANNEL_FD = 3

EXIT_OK = 0
EXIT_IMPORT_FAILED = 1
EXIT_NOT_UNDER_PITD = 2
EXIT_PROTOCOL_ERROR = 3

#: What a fork message carries, in this order.
FDS_PER_FORK = 4
#: How long a forked worker waits to be re-parented to pitd, and the template for its pid.
REPARENT_TIMEOUT = 5.0

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_MAX_MESSAGE = 64 * 1024


def run(module_name: str, preload: Sequence[str]) -> int:
    """Runs the template; returns its exit status (a forked worker never returns here: it
    leaves through ``SystemExit`` with its own status)."""
    channel = _channel()
    if channel is None:
        _say(
            f"fd {CHANNEL_FD} is not a seqpacket socket. `python -m pit template` must be run by "
            "pitd (a pool with preload = [...]), which passes its channel on fd 3."
        )
        return EXIT_NOT_UNDER_PITD
    pitd_pid = os.getppid()
    _prepare_process()
    started = time.monotonic()
    for name in preload:
        try:
            importlib.import_module(name)
        except BaseException:
            _say(f"cannot preload {name}:")
            traceback.print_exc()
            return EXIT_IMPORT_FAILED
    import_ms = (time.monotonic() - started) * 1000.0
    # Objects that exist now are shared by every worker: keep the collector from touching
    # (and so copying) their pages in each worker.
    _libc()
    gc.collect()
    gc.freeze()
    _warn_about_threads()
    _send(channel, {"type": "ready", "pid": os.getpid(), "preloaded": list(preload), "import_ms": import_ms})
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
        _send(channel, _fork_worker(channel, worker_id, fds, pitd_pid, module_name))


def _fork_worker(
    channel: socket.socket, worker_id: str, fds: List[int], pitd_pid: int, module_name: str
) -> Dict[str, Any]:
    if len(fds) != FDS_PER_FORK:
        for fd in fds:
            os.close(fd)
        return {"type": "fork_failed", "worker_id": worker_id, "error": f"got {len(fds)} fds, expected 4"}
    report_r, report_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    intermediate = os.fork()
    if intermediate == 0:
        # The intermediate: fork the worker and leave, so the worker is re-parented to pitd.
        try:
            os.close(report_r)
            is_worker = os.fork() == 0
        except BaseException:
            os._exit(1)
        if not is_worker:
            os._exit(0)
        _become_worker(channel, worker_id, fds, report_w, pitd_pid, module_name)
    os.close(report_w)
    for fd in fds:
        os.close(fd)
    _wait_child(intermediate)
    try:
        pid = _read_pid(report_r)
    finally:
        os.close(report_r)
    if pid is None:
        return {"type": "fork_failed", "worker_id": worker_id, "error": "the forked worker died before it started"}
    return {"type": "forked", "worker_id": worker_id, "pid": pid}


def _become_worker(
    channel: socket.socket, worker_id: str, fds: List[int], report_w: int, pitd_pid: int, module_name: str
) -> None:
    """The worker's first steps after the fork; never returns (``SystemExit`` ends it)."""
    try:
        os.setsid()
        os.write(report_w, struct.pack(">Q", os.getpid()))
        os.close(report_w)
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
    except BaseException:
        traceback.print_exc()
        os._exit(EXIT_NOT_UNDER_PITD)
    gc.unfreeze()

    def adopted_by_pitd() -> None:
        deadline = time.monotonic() + REPARENT_TIMEOUT
        while os.getppid() != pitd_pid:
            if time.monotonic() > deadline:
                _say(f"not re-parented to pitd (pid {pitd_pid}) within {REPARENT_TIMEOUT:.0f}s; is pitd a subreaper?")
                os._exit(EXIT_NOT_UNDER_PITD)
            time.sleep(0.0001)
        _die_with_parent(worker_id)
        if os.getppid() != pitd_pid:
            os._exit(EXIT_NOT_UNDER_PITD)  # pitd died between the check and the prctl

    raise SystemExit(serve(module_name, before_ready=adopted_by_pitd))


def _die_with_parent(worker_id: str) -> None:
    libc = _libc()
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    # The command line stays the template's; `ps -o comm` and top show the worker's id.
    libc.prctl(_PR_SET_NAME, f"pit {worker_id}".encode()[:15], 0, 0, 0)


_LIBC: Optional[ctypes.CDLL] = None


def _libc() -> ctypes.CDLL:
    """The C library, loaded once in the template (a lookup by name can take milliseconds
    and run programs: not something a fresh worker should pay)."""
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _read_pid(fd: int) -> Optional[int]:
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
    return struct.unpack(">Q", data)[0]


def _wait_child(pid: int) -> None:
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def _channel() -> Optional[socket.socket]:
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


def _prepare_process() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping is pitd's decision
    cwd = os.getcwd()
    if sys.path[:1] != [cwd]:
        sys.path.insert(0, cwd)


def _warn_about_threads() -> None:
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        _say(
            f"{len(others)} thread(s) running after preload ({', '.join(others[:5])}): forked workers "
            "get none of them, and a lock one of them held stays locked in every worker"
        )


def _send(channel: socket.socket, msg: Dict[str, Any]) -> None:
    channel.send(json.dumps(msg).encode())


def _say(message: str) -> None:
    print(f"pit template: {message}", file=sys.stderr, flush=True)
