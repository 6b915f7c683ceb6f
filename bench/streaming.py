#!/usr/bin/env python3
"""Streaming replies (a generator handler's chunks, INTERFACE section 9): what a stream of
small chunks costs through pitd against its floor and against gunicorn's dirty workers, how
soon a stream's first chunk comes, how evenly paced streams arrive under load, how soon a
hang-up stops the generator, and whether a slow reader keeps pitd's memory bounded.

Everything is measured in one run of this script against the release ``pitd`` and
``pitctl``, one thing after the other. The pools serve ``bench/apps/stream_app.py``, whose
handlers run ``bench/apps/stream_gen.py``'s generators: the floor's writer and gunicorn's
dirty app run the same ones. The interpreter running this script runs every worker.

1. Throughput: one stream of ``--chunks`` values (1,000,000; ``--quick``: 50,000) from
   ``stream_gen.values``, an int or a short word in turn (a few bytes of JSON each), read
   as fast as the reader can. The rows:

   ``floor``
       the generator in a child process of this script, each value encoded as pit's
       worker encodes a chunk (``pit._json.dumps``, ``_worker_protocol.encode_chunk``) and
       written to a pipe with one ``write``, as the worker writes; this process reads the
       pipe (64 KiB reads, ``_worker_protocol.FrameReader``) and decodes each chunk's JSON.
       Two Python processes and a pipe: what any design moving a stream through a pipe pays.
   ``floor, pit's worker runtime``
       the real worker (``python -m pit serve stream_app``), its pipes on fds 3 and 4 as
       pitd starts it, sent a streaming ``CALL`` of ``count`` with a window of 64 (the
       pools' default ``stream_window``); this process reads its ``CHUNK`` frames as the
       floor does and grants ``CREDIT`` for 32 chunks each time it has read 32: the least
       credit traffic that never leaves the worker waiting (pitd grants credit for the
       chunks of each write to its caller, more often when the caller keeps up). The floor
       with pit's runtime in it, pitd left out.
   ``pit: pitctl bench``
       through pitd: ``pitctl bench one --stream --method count --args N -c 1``, pitctl's
       Rust reader on the call socket (it parses each chunk's frame). pitctl first runs
       one whole stream as its probe, which is not counted.
   ``pit: Python reader``
       the same stream read by this process on the call socket: 1 MiB reads, each
       frame's JSON decoded, as the floor's reader does.
   ``pit: pit.Client.stream``
       the same through pit's sync client, iterating its ``Stream``.
   ``gunicorn dirty: DirtyClient.stream``
       gunicorn's dirty worker pool (below) running the same generator as a dirty app;
       its client's ``stream`` iterator, in a process of gunicorn's virtual environment,
       connected straight to the dirty arbiter's socket (no HTTP in the way).

   The floor and pit rows are measured ``--runs`` times (3; ``--quick``: 1), taking turns,
   and the table has each row's median; gunicorn's row is measured once. CPU per chunk:
   pitd's and its worker's from ``/proc``, the floors' writer from its rusage. Targets:
   pit (``pitctl bench``) at >= 50% of the floor's chunks/s; pit >= 2x gunicorn's, client
   for client (``pit.Client.stream`` against ``DirtyClient.stream``).

2. First chunk: ``pitctl bench one --stream`` of ``count`` with 1 chunk against ``pitctl
   bench one`` of ``echo``, both c=1 on the same 1-worker pool: the p50 of the time to a
   stream's first chunk over the p50 of one call, each the median over 10 runs of 1 s
   (``--quick``: 2 of 0.5 s), the two taking turns (so that the machine's other load
   falls on both alike). Target: within 1.2x. Beside it, the same without pitd: the
   worker runtime on its pipes sent a ``CALL`` of ``echo`` and a streaming one of a
   1-chunk ``count`` in turn (20,000 of each; ``--quick``: 2,000), the p50 of the time
   to the first frame back: what the worker's side of a stream adds to its first chunk.

3. Paced streams under load: ``pitctl bench agents --stream -c 64`` of ``tokens`` (an async
   generator: 200 tokens, each after ``asyncio.sleep(0.02)``) on a pool of 4 workers x
   ``concurrency = 16``: 64 streams at once (each caller starts its next stream until 10 s
   are over, about 3 each; ``--quick``: one each). Every token is counted (chunks = 200 x
   streams, no error); the gap between two tokens of a stream, p50/p99/max, as pitctl
   times it, and what it adds to the 20 ms. Target: gap p99 <= 25 ms.

4. Cancel on hang-up: ``hang_async`` (one chunk, then ``await asyncio.sleep``) and
   ``hang_sync`` (one chunk, then one every 2 ms after ``time.sleep``), on the 1-worker pool
   and on the 4 x 16 one. A client on its own connection sends the streaming call, reads
   the first chunk and closes the socket; the generator's ``finally:`` writes
   ``time.monotonic()`` to a file (CLOCK_MONOTONIC is one clock for all processes); the
   figure is that time less the one taken just before the close, over ``--trials`` trials
   (20; ``--quick``: 5): p50/p99/max, and any generator that ran to its end instead
   (``hang_s`` 20 s; ``--quick``: 5). Target: p99 <= 50 ms.

5. Slow reader: a fresh pitd with one pool of 1 worker and ``stream_window = 8`` whose
   ``blobs`` yields strings of 1 MiB as fast as it is let; a reader takes 1 MB/s for 30 s
   (``--quick``: 5 s). pitd's ``VmRSS`` is sampled before the stream and every 100 ms
   during it; the growth is the highest sample during less the one before. What pitd may
   hold of the stream is ``stream_window`` x chunk = 8 MiB, plus its buffers. Target:
   growth < 16 MiB.

6. The peer: gunicorn's dirty workers (``--dirty-app``, ``--dirty-workers 1``, the default
   ``--dirty-threads 1``), gunicorn >= 27 from PyPI in ``bench/.venv`` (``--venv``),
   installed as ``peers.py`` installs its peers (``pitbench.venv``); its HTTP side is one
   sync worker on a Unix socket, unused. Beside its throughput row (1.), the hang-up of
   4.: the same generators as dirty actions, a ``DirtyClient.stream`` read to its first
   chunk, then ``DirtyClient.close()``: how long until the generator's ``finally:`` ran,
   or that it ran its whole ``hang_s`` (10 s; ``--quick``: 3 s) instead (``--trials``
   times the sync generator, 3 times the async one; ``--quick``: once). A gunicorn that
   cannot be installed, or has no dirty streaming, gets a line saying so; its figures are
   left out, and the script goes on.

Timings are printed with their targets, never asserted. Every pitd, gunicorn and child
process is stopped; the script exits 1 if one outlives it (or if a stream failed).

Usage::

    cargo build --release --bins
    python3 bench/streaming.py [--quick] [--chunks N] [--runs N] [--trials N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pitbench import specs, stats, wire
from pitbench.daemon import DaemonProcess, PitdProcess
from pitbench.paths import APPS, BENCH, BIN_DIR, PYTHON_DIR
from pitbench.pipes import PipeChild
from pitbench.procfs import CpuUse, cpu_seconds, process_cpu_ns, start_time, status_kib
from pitbench.report import columns, fmt_ms, loadavg, progress
from pitbench.venv import install as install_peers, python as venv_python

import pit
from pit import _json, _worker_protocol

PYTHON = os.path.realpath(sys.executable)
WAIT_S = 60.0  # bound on every start-up, reply and stop
REQ_ID = 1
WINDOW = 64  # the pools' default stream_window: the runtime floor's window too
MIB = 1024 * 1024
ONE, AGENTS, BLOBS = "one", "agents", "blobs"
TOKENS, TOKEN_EVERY_S = 200, 0.02
AGENT_WORKERS, AGENT_CONCURRENCY = 4, 16
CALLERS = AGENT_WORKERS * AGENT_CONCURRENCY
BLOB_WINDOW, BLOB_BYTES, READ_RATE = 8, MIB, 1_000_000  # stream_window, chunk, reader B/s
SAMPLE_EVERY_S = 0.1
POLL_S = 0.0005  # how often a hang-up trial looks for the generator's file
GUNICORN = "gunicorn>=27"  # the first release whose dirty pool streams to a client as described
DIRTY_APP_PATH = "dirty_stream:StreamApp"

# gunicorn's side, written into its temporary directory: the dirty app runs stream_gen's
# generators (found through --pythonpath), the WSGI app is only there because gunicorn
# needs one.
DIRTY_APP = '''\
"""stream_gen's generators as a gunicorn dirty app."""
import stream_gen
from gunicorn.dirty import DirtyApp


class StreamApp(DirtyApp):
    def ping(self):
        return "pong"

    def count(self, n):
        yield from stream_gen.values(n)

    def hang_sync(self, path, hang_s):
        yield from stream_gen.hang_sync(path, hang_s)

    async def hang_async(self, path, hang_s):
        inner = stream_gen.hang_async(path, hang_s)
        try:
            async for chunk in inner:
                yield chunk
        finally:
            await inner.aclose()
'''
WSGI_APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
"""

# The client of gunicorn's dirty pool, run by gunicorn's virtual environment: one JSON
# argument says what to do, one JSON line on stdout says what happened.
DIRTY_CLIENT = r"""
import json, os, sys, time
from gunicorn.dirty import DirtyClient

POLL_S = 0.0005


def wait_file(path, bound_s):
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                t, how = f.read().split()
            return float(t), how
        except FileNotFoundError:
            time.sleep(POLL_S)
    return None, "still running"


def main(a):
    sock, app = a["socket"], a["app"]
    if a["mode"] == "ping":
        deadline = time.monotonic() + a["bound_s"]
        while True:
            try:
                with DirtyClient(sock, timeout=5.0) as c:
                    return {"result": c.execute(app, "ping")}
            except Exception as e:
                if time.monotonic() > deadline:
                    return {"error": f"{type(e).__name__}: {e}"}
                time.sleep(0.05)
    if a["mode"] == "count":
        with DirtyClient(sock, timeout=a["timeout_s"]) as c:
            t0 = time.monotonic()
            n = 0
            for _ in c.stream(app, "count", a["n"]):
                n += 1
            return {"chunks": n, "seconds": time.monotonic() - t0}
    trials = []
    for i in range(a["trials"]):
        path = os.path.join(a["dir"], f"{a['kind']}-{i}")
        c = DirtyClient(sock, timeout=a["hang_s"] + 30)
        chunks = c.stream(app, a["kind"], path, a["hang_s"])
        first = next(chunks)
        closed = time.monotonic()
        c.close()
        t, how = wait_file(path, a["hang_s"] + 10)
        trials.append({"first": first, "close": closed, "finally": t, "how": how})
    return {"trials": trials}


print(json.dumps(main(json.loads(sys.argv[1]))))
"""


# --- the floor's writer (a child process of this script) ---------------------------------


def floor_writer(n: int) -> int:
    """``--floor-writer N``: stream_gen's ``n`` values as pit's CHUNK frames on fd 4, one
    ``write`` each, once a byte has come on fd 3; ``READY`` first, so that the reader
    starts its clock with the interpreter up."""
    sys.path.insert(0, str(APPS))
    import stream_gen

    out = 4
    write, encode, dumps = os.write, _worker_protocol.encode_chunk, _json.dumps
    write(out, _worker_protocol.encode_ready([], os.getpid()))
    if not os.read(3, 1):
        return 1
    for value in stream_gen.values(n):
        write(out, encode(REQ_ID, dumps(value).encode("utf-8")))  # a few bytes: one write
    write(out, _worker_protocol.encode_ok(REQ_ID, b"null"))
    return 0


# --- readers -------------------------------------------------------------------------------


def read_worker_stream(child: PipeChild, expected: int, credit: bool) -> int:
    """A stream's frames from ``child``'s fd 4 to its ``OK``: each chunk's JSON decoded,
    and with ``credit`` a ``CREDIT`` each time half the window has been read (the fewest
    credit frames that never leave the worker waiting on a reader that keeps up). Returns
    the chunks read."""
    reader = _worker_protocol.FrameReader(lambda size: os.read(child.rfd, size))
    loads, split, chunk_type = _json.loads, _worker_protocol.split_reply, _worker_protocol.CHUNK
    n = owed = 0
    half = WINDOW // 2
    for _ in range(4 * expected + 100_000):  # frames and reads, bounded
        frame = reader.buffered_frame()
        if frame is None:
            if not reader.read_once():
                raise RuntimeError(f"pid {child.pid} closed its pipe after {n} chunks")
            continue
        ftype, body = frame
        if ftype == chunk_type:
            loads(split(body)[1].decode("utf-8"))
            n += 1
            owed += 1
            if credit and owed == half:
                os.write(child.wfd, _worker_protocol.encode_credit(REQ_ID, owed))
                owed = 0
        elif ftype == _worker_protocol.OK:
            return n
        elif ftype != _worker_protocol.PONG:
            raise RuntimeError(f"frame 0x{ftype:02x} in the stream: {body[:200]!r}")
    raise RuntimeError(f"the stream did not end within {4 * expected + 100_000} frames")


def read_socket_stream(path: str, pool: str, method: str, args: Any) -> tuple[int, float]:
    """One streaming call on a new connection to pitd's call socket, read to its final
    reply as fast as this process can: (chunks, seconds from the request to the reply)."""
    loads, length = _json.loads, struct.Struct(">I").unpack_from
    request = {"id": REQ_ID, "pool": pool, "method": method, "args": args, "stream": True}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(WAIT_S)
        s.connect(path)
        t0 = time.monotonic()
        s.sendall(wire.frame(request))
        buf, pos, n = b"", 0, 0
        for _ in range(10_000_000):  # reads, bounded
            data = s.recv(MIB)
            if not data:
                raise RuntimeError(f"pitd closed the connection after {n} chunks")
            buf = buf[pos:] + data if pos < len(buf) else data
            pos = 0
            while len(buf) - pos >= 4:
                end = pos + 4 + length(buf, pos)[0]
                if end > len(buf):
                    break
                message = loads(buf[pos + 4 : end].decode("utf-8"))
                pos = end
                if "chunk" in message:
                    n += 1
                elif message.get("ok"):
                    return n, time.monotonic() - t0
                else:
                    raise RuntimeError(f"the stream failed after {n} chunks: {message.get('error')}")
    raise RuntimeError("the stream did not end")


def wait_record(path: Path, bound_s: float) -> tuple[float | None, str]:
    """The (time, how) a generator's ``finally:`` wrote to ``path`` (``stream_gen.record``),
    polled every POLL_S for ``bound_s``; (None, "still running") if it never came."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        try:
            t, how = path.read_text().split()
            return float(t), how
        except FileNotFoundError:
            time.sleep(POLL_S)
    return None, "still running"


# --- pitd ----------------------------------------------------------------------------------


class Pitd(PitdProcess):
    """A release pitd with the pools of ``pools`` (name -> extra keys), all serving
    ``stream_app``."""

    wait_s = WAIT_S

    def __init__(self, bin_dir: Path, pools: dict[str, dict[str, specs.Value]]) -> None:
        super().__init__(bin_dir, "pit-streaming-")
        self.require_binaries()
        self.sizes = {name: int(str(keys.get("size", 1))) for name, keys in pools.items()}
        spec = self.spec_head()
        for name, keys in pools.items():
            pool: dict[str, specs.Value] = {
                "app": "stream_app",
                "python": PYTHON,
                "size": 1,
                "cwd": str(APPS),
                "env": specs.pit_env(),
                "startup_timeout": "60s",
            }
            spec += specs.table(f"pools.{name}", {**pool, **keys})
        self.start(spec)
        self.wait_workers(self.sizes)

    def worker_pid(self, pool: str) -> int:
        pid: int = self.pool(pool)["workers"][0]["pid"]
        return pid

    def bench(self, pool: str, method: str, args: Any, concurrency: int, duration: str, stream: bool) -> Any:
        """``pitctl bench ... --json``, decoded; bounded by the duration and the stream."""
        extra = ["--stream"] if stream else []
        argv = ["bench", pool, "--method", method, "--args", json.dumps(args), "-c", str(concurrency)]
        out = self.ctl(*argv, "-d", duration, "--json", *extra, timeout=WAIT_S * 10)
        if out.returncode != 0:
            raise RuntimeError(f"pitctl bench {pool} {method} failed: {out.stderr.strip()[-400:]}")
        return json.loads(out.stdout)

    def stop(self, wait_s: float | None = None) -> list[str]:
        left = super().stop(wait_s)
        self.cleanup()
        return left


# --- 1. throughput -------------------------------------------------------------------------

Run = dict[str, float]


def cpu_per_chunk(child: PipeChild, cpu0_ns: int, chunks: int) -> float:
    """µs of the child's CPU per chunk from the go on (its start-up left out): its CPU time
    at its exit less what it had used by the go."""
    return (1e6 * (child.cpu_s or 0.0) - cpu0_ns / 1e3) / max(chunks, 1)


def floor_raw(n: int) -> Run:
    child = PipeChild([PYTHON, __file__, "--floor-writer", str(n)], os.environ)
    try:
        if child.read_frame(timeout=WAIT_S)[4] != _worker_protocol.READY:
            raise RuntimeError("the floor's writer did not start")
        cpu0 = process_cpu_ns(child.pid) or 0
        t0 = time.monotonic()
        os.write(child.wfd, b"g")
        got = read_worker_stream(child, n, credit=False)
        seconds = time.monotonic() - t0
    finally:
        child.close()
    return {"chunks": got, "seconds": seconds, "writer_cpu_us": cpu_per_chunk(child, cpu0, got)}


def floor_runtime(n: int) -> Run:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PYTHON_DIR), str(APPS)]))
    child = PipeChild([PYTHON, "-m", "pit", "serve", "stream_app"], env)
    try:
        if child.read_frame(timeout=WAIT_S)[4] != _worker_protocol.READY:
            raise RuntimeError("the worker did not start")
        call = _worker_protocol.encode_call(REQ_ID, "count", str(n).encode(), stream=True, window=WINDOW)
        cpu0 = process_cpu_ns(child.pid) or 0
        t0 = time.monotonic()
        os.write(child.wfd, call)
        got = read_worker_stream(child, n, credit=True)
        seconds = time.monotonic() - t0
    finally:
        child.close()
    return {"chunks": got, "seconds": seconds, "worker_cpu_us": cpu_per_chunk(child, cpu0, got)}


def through_pitd(d: Pitd, n: int, reader: str) -> Run:
    """One stream of ``n`` chunks of pool ``one`` through pitd, read by ``reader``; with
    pitd's and the worker's CPU per chunk (pitctl's probe stream included in both)."""
    worker = d.worker_pid(ONE)
    cpu0 = (cpu_seconds(d.pid), cpu_seconds(worker))
    if reader == "pitctl":
        r = d.bench(ONE, "count", n, 1, "200ms", stream=True)
        if r["errors"] or not r["streams"]:
            raise RuntimeError(f"pitctl bench --stream: {r}")
        got, seconds, moved = int(r["chunks"]), float(r["duration_s"]), n + int(r["chunks"])
    elif reader == "python":
        got, seconds = read_socket_stream(d.call_socket, ONE, "count", n)
        moved = got
    else:
        with pit.Client(d.call_socket) as client:
            t0 = time.monotonic()
            got = sum(1 for _ in client.stream(ONE, "count", n, timeout=WAIT_S * 10))
            seconds = time.monotonic() - t0
        moved = got
    pitd_s, worker_s = cpu_seconds(d.pid) - cpu0[0], cpu_seconds(worker) - cpu0[1]
    return {
        "chunks": got,
        "seconds": seconds,
        "pitd_cpu_us": 1e6 * pitd_s / max(moved, 1),
        "worker_cpu_us": 1e6 * worker_s / max(moved, 1),
    }


THROUGHPUT_ROWS = {
    "floor": "floor: generator -> CHUNK frames -> pipe -> decoding reader",
    "floor_runtime": "floor with pit's worker runtime (CREDIT every 32 chunks)",
    "pit_pitctl": "pit: pitctl bench --stream -c 1 (Rust reader)",
    "pit_python": "pit: Python reader on the call socket",
    "pit_client": "pit: pit.Client.stream",
    "gunicorn": "gunicorn dirty: DirtyClient.stream",
}


def summarize_runs(runs: list[Run]) -> dict[str, Any]:
    rates = [r["chunks"] / r["seconds"] for r in runs]
    row: dict[str, Any] = {"chunks_per_s": stats.median(rates), "runs": runs, "rates": rates}
    for key in ("pitd_cpu_us", "worker_cpu_us", "writer_cpu_us"):
        if all(key in r for r in runs):
            row[key] = stats.median(r[key] for r in runs)
    return row


# --- 2.-4. first chunk, paced streams, hang-ups ----------------------------------------------


def first_chunk(d: Pitd, pairs: int, seconds: float) -> dict[str, Any]:
    """``pairs`` times one ``pitctl bench`` of ``echo`` and one of a 1-chunk stream, the
    order swapped every pair, ``seconds`` each: the medians of their p50s (and p99s)."""
    duration = f"{round(seconds * 1000)}ms"
    d.bench(ONE, "echo", None, 1, "300ms", stream=False)  # warm-ups, not counted
    d.bench(ONE, "count", 1, 1, "300ms", stream=True)
    calls, firsts = [], []
    for i in range(pairs):
        for stream in (False, True) if i % 2 == 0 else (True, False):
            if stream:
                firsts.append(d.bench(ONE, "count", 1, 1, duration, stream=True))
            else:
                calls.append(d.bench(ONE, "echo", None, 1, duration, stream=False))
    call_p50 = stats.median(r["p50_us"] for r in calls)
    first_p50 = stats.median(r["first_chunk_p50_us"] for r in firsts)
    return {
        "call_p50_us": call_p50,
        "call_p99_us": stats.median(r["p99_us"] for r in calls),
        "first_chunk_p50_us": first_p50,
        "first_chunk_p99_us": stats.median(r["first_chunk_p99_us"] for r in firsts),
        "ratio": first_p50 / call_p50,
        "pairs": pairs,
        "seconds_each": seconds,
        "calls": calls,
        "streams": firsts,
    }


def runtime_first_chunk(pairs: int) -> dict[str, float]:
    """The same comparison without pitd: pit's worker runtime on its pipes (as in the
    runtime floor), one ``CALL`` of ``echo`` and one streaming ``CALL`` of a 1-chunk
    ``count`` in turn, ``pairs`` times; p50s of the time from the write to the first frame
    back (the ``OK``, the ``CHUNK``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PYTHON_DIR), str(APPS)]))
    child = PipeChild([PYTHON, "-m", "pit", "serve", "stream_app"], env)
    calls: list[int] = []
    firsts: list[int] = []
    try:
        if child.read_frame(timeout=WAIT_S)[4] != _worker_protocol.READY:
            raise RuntimeError("the worker did not start")
        reader = _worker_protocol.FrameReader(lambda size: os.read(child.rfd, size))
        clock, write = time.perf_counter_ns, os.write
        for i in range(pairs):
            call = _worker_protocol.encode_call(2 * i + 1, "echo", b"null")
            t0 = clock()
            write(child.wfd, call)
            got = reader.next_frame()
            calls.append(clock() - t0)
            stream = _worker_protocol.encode_call(2 * i + 2, "count", b"1", stream=True, window=WINDOW)
            t0 = clock()
            write(child.wfd, stream)
            first = reader.next_frame()
            firsts.append(clock() - t0)
            end = reader.next_frame()
            if got is None or first is None or end is None:
                raise RuntimeError("the worker closed its pipe")
    finally:
        child.close()
    call_p50, first_p50 = stats.percentile(calls, 0.5), stats.percentile(firsts, 0.5)
    return {"pairs": pairs, "call_p50_us": call_p50 / 1e3, "first_chunk_p50_us": first_p50 / 1e3}


def paced(d: Pitd, seconds: float) -> dict[str, Any]:
    args = {"n": TOKENS, "every_s": TOKEN_EVERY_S}
    r = d.bench(AGENTS, "tokens", args, CALLERS, f"{round(seconds * 1000)}ms", stream=True)
    every_us = TOKEN_EVERY_S * 1e6
    return {
        **r,
        "expected_chunks": TOKENS * int(r["streams"]),
        "added_p50_us": r["gap_p50_us"] - every_us,
        "added_p99_us": r["gap_p99_us"] - every_us,
    }


def hangup_trials(d: Pitd, pool: str, kind: str, trials: int, hang_s: float) -> list[dict[str, Any]]:
    """``trials`` times: a streaming call of ``kind`` on a connection of its own, its first
    chunk read, the socket closed; when the generator's ``finally:`` ran."""
    out = []
    for i in range(trials):
        path = d.dir / f"{pool}-{kind}-{i}"
        request = {
            "id": REQ_ID,
            "pool": pool,
            "method": kind,
            "args": {"file": str(path), "hang_s": hang_s},
            "stream": True,
        }
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(WAIT_S)
            s.connect(d.call_socket)
            s.sendall(wire.frame(request))
            first = wire.read_frame(s)
            closed = time.monotonic()
        if not isinstance(first, dict) or "chunk" not in first:
            raise RuntimeError(f"{pool}.{kind}: no first chunk: {first}")
        t, how = wait_record(path, hang_s + 10)
        out.append({"close": closed, "finally": t, "how": how})
    return out


def hangup_summary(trials: list[dict[str, Any]]) -> dict[str, Any]:
    closed = [1e3 * (t["finally"] - t["close"]) for t in trials if t["how"] == "closed" and t["finally"]]
    p50, p99, top = stats.percentiles(closed, [0.5, 0.99, 1.0])
    ran = [1e3 * (t["finally"] - t["close"]) for t in trials if t["how"] == "completed" and t["finally"]]
    return {
        "trials": len(trials),
        "closed": len(closed),
        "completed": len(ran),
        "still_running": sum(t["how"] == "still running" for t in trials),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": top,
        "completed_after_ms": ran,
        "close_to_finally_ms": closed,
    }


# --- 5. slow reader --------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    return status_kib(pid, "VmRSS") / 1024


def slow_reader(bin_dir: Path, seconds: float) -> tuple[dict[str, Any], list[str]]:
    d = Pitd(bin_dir, {BLOBS: {"stream_window": BLOB_WINDOW}})
    try:
        return read_slowly(d, seconds), d.stop()
    except BaseException:
        d.stop()
        raise


def read_slowly(d: Pitd, seconds: float) -> dict[str, Any]:
    """``blobs`` read at READ_RATE for ``seconds``, pitd's RSS sampled before and during."""
    before_samples = []
    for _ in range(5):
        before_samples.append(rss_mib(d.pid))
        time.sleep(SAMPLE_EVERY_S)
    before = stats.median(before_samples)
    request = {
        "id": REQ_ID,
        "pool": BLOBS,
        "method": "blobs",
        "args": {"n": 100_000, "size": BLOB_BYTES},
        "stream": True,
    }
    samples: list[tuple[float, float]] = []
    got = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(WAIT_S)
        s.connect(d.call_socket)
        t0 = time.monotonic()
        s.sendall(wire.frame(request))
        next_sample, end = t0, t0 + seconds
        for _ in range(int(seconds * 100_000)):  # reads and sleeps, bounded
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - t0, rss_mib(d.pid)))
                next_sample += SAMPLE_EVERY_S
            if now >= end:
                break
            ahead = got / READ_RATE - (now - t0)  # seconds read ahead of the pace
            if ahead > 0:
                time.sleep(min(ahead, next_sample - now, end - now) + 1e-4)
                continue
            data = s.recv(16 * 1024)
            if not data:
                raise RuntimeError(f"pitd closed the slow reader's stream after {got} bytes")
            got += len(data)
        elapsed = time.monotonic() - t0
    # The hang-up cancels the stream; what pitd gives back to the system is its allocator's call.
    time.sleep(1.0)
    after = rss_mib(d.pid)
    during = [rss for _, rss in samples]
    quarter = max(len(during) // 4, 1)
    return {
        "before_mib": before,
        "max_during_mib": max(during),
        "max_first_quarter_mib": max(during[:quarter]),
        "max_last_quarter_mib": max(during[-quarter:]),
        "last_during_mib": during[-1],
        "after_close_mib": after,
        "growth_mib": max(during) - before,
        "read_bytes": got,
        "read_rate_bps": got / elapsed,
        "seconds": elapsed,
        "samples": samples,
        "window": BLOB_WINDOW,
        "chunk_bytes": BLOB_BYTES,
        "bound_mib": BLOB_WINDOW * BLOB_BYTES / MIB,
        "streams_open_after": d.pool(BLOBS).get("streams_open"),
    }


# --- 6. gunicorn's dirty workers ------------------------------------------------------------


class GunicornDirty(DaemonProcess):
    """gunicorn with one sync HTTP worker (on a Unix socket, unused) and a dirty pool of one
    worker running ``DIRTY_APP``; every file in its temporary directory, ``TMPDIR`` too
    (where its dirty arbiter puts its sockets and pid file)."""

    name = "gunicorn"
    wait_s = WAIT_S

    def __init__(self, venv: Path) -> None:
        super().__init__("pit-streaming-gunicorn-", "gunicorn.log")
        self.venv = venv
        (self.dir / "dirty_stream.py").write_text(DIRTY_APP)
        (self.dir / "wsgi.py").write_text(WSGI_APP)
        d = str(self.dir)
        argv = [
            str(venv / "bin" / "gunicorn"),
            *("--workers", "1", "--worker-class", "sync", "--bind", f"unix:{d}/http.sock"),
            *("--control-socket", f"{d}/gunicorn.ctl", "--pid", f"{d}/gunicorn.pid"),
            *("--worker-tmp-dir", d, "--chdir", d, "--pythonpath", str(APPS), "--log-level", "info"),
            *("--graceful-timeout", "5", "--dirty-graceful-timeout", "5", "--dirty-timeout", "600"),
            *("--dirty-app", DIRTY_APP_PATH, "--dirty-workers", "1", "--dirty-threads", "1"),
            "wsgi:app",
        ]
        self.launch(argv, env=dict(os.environ, TMPDIR=d), cwd=self.dir, merged=True)
        started = start_time(self.pid)
        if started is not None:
            with self.seen_lock:
                self.seen[self.pid] = started
        self.socket: str = self.wait_for(self.arbiter_socket, WAIT_S, 0.05, "gunicorn's dirty arbiter")
        ping = self.client({"mode": "ping", "bound_s": WAIT_S}, WAIT_S * 2)
        if ping.get("result") != "pong":
            raise RuntimeError(f"gunicorn's dirty app does not answer: {ping}\n{self.log_tail()}")
        self.remember()

    def arbiter_socket(self) -> str | None:
        """The dirty arbiter's socket once it and a worker's are there."""
        for sub in self.dir.glob("gunicorn-dirty-*"):
            arbiter = sub / "arbiter.sock"
            if arbiter.exists() and any(sub.glob("worker-*.sock")):
                return str(arbiter)
        return None

    def client(self, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """``DIRTY_CLIENT`` with ``args`` in gunicorn's environment; its answer."""
        message = {"socket": self.socket, "app": DIRTY_APP_PATH, **args}
        out = subprocess.run(
            [str(venv_python(self.venv)), "-c", DIRTY_CLIENT, json.dumps(message)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
        )
        if out.returncode != 0:
            raise RuntimeError(f"gunicorn's client failed: {out.stderr.strip()[-600:]}\n{self.log_tail()}")
        answer: dict[str, Any] = json.loads(out.stdout)
        return answer


def dirty_streaming(venv: Path) -> str | None:
    """Why gunicorn in ``venv`` cannot stream from a dirty worker, None when it can."""
    out = subprocess.run(
        [
            str(venv_python(venv)),
            "-c",
            "from gunicorn.dirty import DirtyApp, DirtyClient; DirtyClient.stream",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode == 0:
        return None
    return f"no dirty streaming (gunicorn.dirty.DirtyClient.stream): {out.stderr.strip().splitlines()[-1:]}"


def gunicorn_figures(
    venv: Path, n: int, trials: int, async_trials: int, hang_s: float
) -> tuple[dict[str, Any], list[str]]:
    g = GunicornDirty(venv)
    try:
        progress(f"gunicorn dirty: one stream of {n:,} chunks")
        r = g.client({"mode": "count", "n": n, "timeout_s": WAIT_S + n / 1000}, WAIT_S * 2 + n / 1000)
        g.remember()
        if r["chunks"] != n:
            raise RuntimeError(f"gunicorn's stream gave {r['chunks']} of {n} chunks")
        hangups = {}
        for kind, count in (("hang_sync", trials), ("hang_async", async_trials)):
            progress(f"gunicorn dirty: {count} hang-ups of {kind}")
            a = {"mode": "hang", "kind": kind, "trials": count, "hang_s": hang_s, "dir": str(g.dir)}
            got = g.client(a, count * (hang_s + 60) + WAIT_S)
            hangups[kind] = hangup_summary(got["trials"])
        return {"throughput": {"chunks": r["chunks"], "seconds": r["seconds"]}, "hangups": hangups}, stop(g)
    except BaseException:
        stop(g)
        raise


def stop(d: DaemonProcess) -> list[str]:
    left = d.stop()
    d.cleanup()
    return left


# --- the report ----------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def us(v: float) -> str:
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def print_report(f: dict[str, Any]) -> None:
    info, t = f["info"], f["throughput"]
    n = info["chunks"]
    runs = f"median of {info['runs']} run(s)"
    print(f"\n1. one stream of {n:,} small chunks (stream_gen.values), chunks/s, {runs}")
    lines = []
    for key, label in THROUGHPUT_ROWS.items():
        row = t.get(key)
        if row is None:
            continue
        cpu = []
        for k, who in (("pitd_cpu_us", "pitd"), ("worker_cpu_us", "worker"), ("writer_cpu_us", "writer")):
            if k in row:
                cpu.append(f"{who} {row[k]:.2f}")
        spread = "/".join(f"{x:,.0f}" for x in row["rates"]) if len(row["rates"]) > 1 else ""
        lines.append((label, f"{row['chunks_per_s']:,.0f}", spread, ", ".join(cpu)))
    columns(("", "chunks/s", "runs", "CPU µs/chunk"), lines)
    if info.get("gunicorn_skipped"):
        print(f"gunicorn: {info['gunicorn_skipped']}")

    fc = f["first_chunk"]
    print(
        f"\n2. first chunk against one call, pool '{ONE}' (1 worker), c=1: medians of {fc['pairs']} "
        f"pitctl bench runs of each, {fc['seconds_each']:g} s, taking turns"
    )
    print(
        f"   one call (echo) p50 {us(fc['call_p50_us'])}, p99 {us(fc['call_p99_us'])}; "
        f"stream's first chunk p50 {us(fc['first_chunk_p50_us'])}, p99 {us(fc['first_chunk_p99_us'])}"
    )
    rt = fc["runtime"]
    print(
        f"   without pitd, pit's worker runtime on its pipes ({rt['pairs']:,} of each in turn): one call "
        f"p50 {us(rt['call_p50_us'])}, first chunk p50 {us(rt['first_chunk_p50_us'])}"
    )

    p = f["paced"]
    every = f"{TOKEN_EVERY_S * 1000:.0f} ms"
    print(
        f"\n3. {CALLERS} streams at once of {TOKENS} tokens every {every} (async), pool '{AGENTS}' "
        f"({AGENT_WORKERS} workers x concurrency {AGENT_CONCURRENCY}), {p['duration_s']:.1f} s"
    )
    print(
        f"   {p['streams']} streams, {p['chunks']:,} tokens delivered of {p['expected_chunks']:,}, "
        f"{p['errors']} errors; first token p50 {us(p['first_chunk_p50_us'])}, "
        f"p99 {us(p['first_chunk_p99_us'])}"
    )
    print(
        f"   gap between tokens p50 {us(p['gap_p50_us'])}, p99 {us(p['gap_p99_us'])}, "
        f"max {us(p['gap_max_us'])}; added over {every}: p50 {us(p['added_p50_us'])}, "
        f"p99 {us(p['added_p99_us'])}"
    )

    print("\n4. cancel on hang-up: socket closed after the first chunk -> the generator's finally: ran, ms")
    lines = []
    for label, h in f["hangups"].items():
        ran = f"{h['completed']} ran to the end" if h["completed"] else ""
        if h["still_running"]:
            ran += f"{', ' if ran else ''}{h['still_running']} still running"
        cells = [fmt_ms(h[k]) if h["closed"] else "-" for k in ("p50_ms", "p99_ms", "max_ms")]
        lines.append((label, f"{h['closed']}/{h['trials']}", *cells, ran))
    columns(("", "closed", "p50", "p99", "max", ""), lines)

    s = f["slow_reader"]
    print(
        f"\n5. slow reader: pool '{BLOBS}' (stream_window {s['window']}) yielding "
        f"{s['chunk_bytes'] / MIB:.0f} MiB strings, read at {s['read_rate_bps'] / 1e6:.2f} MB/s "
        f"for {s['seconds']:.1f} s ({s['read_bytes'] / MIB:.1f} MiB); "
        f"bound window x chunk = {s['bound_mib']:.0f} MiB"
    )
    print(
        f"   pitd VmRSS before {s['before_mib']:.1f} MiB, during max {s['max_during_mib']:.1f} "
        f"(max in the first / last quarter {s['max_first_quarter_mib']:.1f} / "
        f"{s['max_last_quarter_mib']:.1f}), 1 s after the hang-up {s['after_close_mib']:.1f}; "
        f"streams open after: {s['streams_open_after']}"
    )

    if "dirty_hangups" in f:
        hang = f"hang_s {info['dirty_hang_s']:.0f} s"
        print(f"\n6. gunicorn {info['gunicorn']} dirty pool, the same hang-ups ({hang}): ms")
        lines = []
        for label, h in f["dirty_hangups"].items():
            stopped = [fmt_ms(x) for x in sorted(h["close_to_finally_ms"])]
            whole = [fmt_ms(x) for x in sorted(h["completed_after_ms"])]
            lines.append(
                (
                    label,
                    f"{h['closed']}/{h['trials']} closed",
                    f"p50 {fmt_ms(h['p50_ms'])} max {fmt_ms(h['max_ms'])}" if stopped else "-",
                    f"{len(whole)} ran their whole hang_s: finally: {', '.join(whole)} ms after the close"
                    if whole
                    else "",
                )
            )
        columns(("", "", "close -> finally", ""), lines)
    print("\ntargets")
    for target in f["targets"].values():
        print(f"   {target['what']}: {verdict(target['met'])} ({target['value']})")


def targets(f: dict[str, Any]) -> dict[str, dict[str, Any]]:
    t = f["throughput"]
    out: dict[str, dict[str, Any]] = {}
    pit_rate, floor_rate = t["pit_pitctl"]["chunks_per_s"], t["floor"]["chunks_per_s"]
    out["over_floor"] = {
        "what": "pit (pitctl bench) >= 50% of the floor's chunks/s",
        "ratio": pit_rate / floor_rate,
        "met": pit_rate >= 0.5 * floor_rate,
        "value": f"{pit_rate:,.0f} / {floor_rate:,.0f} = {100 * pit_rate / floor_rate:.0f}%",
    }
    if "gunicorn" in t:
        mine, theirs = t["pit_client"]["chunks_per_s"], t["gunicorn"]["chunks_per_s"]
        out["over_gunicorn"] = {
            "what": "pit >= 2x gunicorn dirty's chunks/s (pit.Client.stream / DirtyClient.stream)",
            "ratio": mine / theirs,
            "met": mine >= 2 * theirs,
            "value": f"{mine:,.0f} / {theirs:,.0f} = {mine / theirs:.1f}x; "
            f"pitctl bench / DirtyClient.stream {pit_rate / theirs:.1f}x",
        }
    fc = f["first_chunk"]
    out["first_chunk"] = {
        "what": "first chunk p50 within 1.2x one call's p50",
        "ratio": fc["ratio"],
        "met": fc["ratio"] <= 1.2,
        "value": f"{us(fc['first_chunk_p50_us'])} / {us(fc['call_p50_us'])} = {fc['ratio']:.2f}x",
    }
    p = f["paced"]
    whole = p["chunks"] == p["expected_chunks"] and p["errors"] == 0
    out["paced"] = {
        "what": f"{CALLERS} paced streams: every token delivered, gap p99 <= 25 ms",
        "met": whole and p["gap_p99_us"] <= 25_000,
        "value": f"{p['chunks']:,} of {p['expected_chunks']:,} tokens, {p['errors']} errors, gap p99 "
        f"{us(p['gap_p99_us'])}",
    }
    worst = max((h["p99_ms"] for h in f["hangups"].values() if h["closed"]), default=float("nan"))
    ok = all(h["closed"] == h["trials"] and h["p99_ms"] <= 50 for h in f["hangups"].values())
    out["hangup"] = {
        "what": "hang-up -> the generator's finally: p99 <= 50 ms, every pit row",
        "met": ok,
        "value": f"worst p99 {fmt_ms(worst)} ms",
    }
    s = f["slow_reader"]
    out["slow_reader"] = {
        "what": f"slow reader: pitd's RSS growth < 16 MiB (window {s['window']} x "
        f"{s['chunk_bytes'] / MIB:.0f} MiB)",
        "met": s["growth_mib"] < 16,
        "value": f"{s['growth_mib']:.1f} MiB",
    }
    return out


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer chunks, runs and trials; short loads")
    parser.add_argument(
        "--chunks", type=int, help="chunks of the throughput stream (1,000,000; quick 50,000)"
    )
    parser.add_argument("--runs", type=int, help="runs of the throughput rows (3; quick 1)")
    parser.add_argument("--trials", type=int, help="hang-ups per generator and pool (20; quick 5)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    parser.add_argument(
        "--venv",
        type=Path,
        default=BENCH / ".venv",
        help="gunicorn's virtual environment (default bench/.venv)",
    )
    parser.add_argument("--no-gunicorn", action="store_true", help="leave gunicorn out")
    parser.add_argument("--floor-writer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_writer is not None:
        return floor_writer(args.floor_writer)
    n = args.chunks or (50_000 if args.quick else 1_000_000)
    runs = args.runs or (1 if args.quick else 3)
    trials = args.trials or (5 if args.quick else 20)
    paced_s = 1.0 if args.quick else 10.0
    pairs, first_s = (2, 0.5) if args.quick else (10, 1.0)
    slow_s = 5.0 if args.quick else 30.0
    hang_s, dirty_hang_s = (5.0, 3.0) if args.quick else (20.0, 10.0)
    if not (1 <= n <= 100_000_000 and 1 <= runs <= 20 and 1 <= trials <= 1000):
        parser.error("--chunks 1..1e8, --runs 1..20, --trials 1..1000")

    load_before = os.getloadavg()
    cpu_use = CpuUse()
    versions: dict[str, str] = {}
    skipped = ""
    if args.no_gunicorn:
        skipped = "left out (--no-gunicorn)"
    else:
        versions, missing = install_peers(args.venv.resolve(), {"gunicorn": GUNICORN})
        if "gunicorn" in missing:
            skipped = f"not available, its figures are left out: {missing['gunicorn'][:300]}"
        else:
            why = dirty_streaming(args.venv.resolve())
            if why:
                skipped = f"gunicorn {versions['gunicorn']} has {why}; its figures are left out"
    pitd_version = subprocess.run(
        [str(args.bin_dir / "pitd"), "--version"], capture_output=True, text=True, timeout=WAIT_S
    ).stdout.strip()
    print(
        f"# streaming: {os.cpu_count()} cores, load {loadavg(load_before)}, {pitd_version or 'pitd'}, "
        f"python {platform.python_version()} ({PYTHON}), gunicorn "
        f"{versions.get('gunicorn', '-') if not skipped else '- (' + skipped + ')'}",
        flush=True,
    )
    figures: dict[str, Any] = {
        "info": {
            "cores": os.cpu_count(),
            "loadavg_before": load_before,
            "python": PYTHON,
            "pitd": pitd_version,
            "chunks": n,
            "runs": runs,
            "trials": trials,
            "quick": args.quick,
            "gunicorn": versions.get("gunicorn") if not skipped else None,
            "gunicorn_skipped": skipped,
            "hang_s": hang_s,
            "dirty_hang_s": dirty_hang_s,
        }
    }
    survivors: list[str] = []

    d = Pitd(
        args.bin_dir,
        {
            ONE: {"size": 1},
            AGENTS: {"size": AGENT_WORKERS, "concurrency": AGENT_CONCURRENCY},
        },
    )
    try:
        measures: dict[str, Callable[[], Run]] = {
            "floor": lambda: floor_raw(n),
            "floor_runtime": lambda: floor_runtime(n),
            "pit_pitctl": lambda: through_pitd(d, n, "pitctl"),
            "pit_python": lambda: through_pitd(d, n, "python"),
            "pit_client": lambda: through_pitd(d, n, "client"),
        }
        collected: dict[str, list[Run]] = {k: [] for k in measures}
        read_socket_stream(d.call_socket, ONE, "count", 1000)  # the worker's first stream
        for i in range(runs):
            for key, measure in measures.items():
                progress(f"{THROUGHPUT_ROWS[key]}, run {i + 1}/{runs}")
                collected[key].append(measure())
        figures["throughput"] = {k: summarize_runs(v) for k, v in collected.items()}
        progress(f"first chunk against one call, {pairs} pairs of {first_s:g} s")
        figures["first_chunk"] = first_chunk(d, pairs, first_s)
        figures["first_chunk"]["runtime"] = runtime_first_chunk(2_000 if args.quick else 20_000)
        progress(f"{CALLERS} paced streams for {paced_s:.0f} s")
        figures["paced"] = paced(d, paced_s)
        hangups = {}
        for pool, label in ((ONE, "1 worker x 1"), (AGENTS, f"{AGENT_WORKERS} x {AGENT_CONCURRENCY}")):
            for kind, what in (("hang_async", "async generator"), ("hang_sync", "sync generator")):
                progress(f"{trials} hang-ups of {kind} on pool {pool}")
                hangups[f"pit, {what}, {label}"] = hangup_summary(
                    hangup_trials(d, pool, kind, trials, hang_s)
                )
        figures["hangups"] = hangups
    finally:
        survivors += d.stop()

    progress(f"slow reader for {slow_s:.0f} s")
    figures["slow_reader"], left = slow_reader(args.bin_dir, slow_s)
    survivors += left

    if not skipped:
        # An async generator gunicorn does not stop runs its whole hang_s each time: a few.
        async_trials = min(trials, 1 if args.quick else 3)
        g, left = gunicorn_figures(args.venv.resolve(), n, trials, async_trials, dirty_hang_s)
        survivors += left
        figures["gunicorn"] = g
        figures["throughput"]["gunicorn"] = summarize_runs([g["throughput"]])
        for kind, what in (("hang_async", "async generator"), ("hang_sync", "sync generator")):
            g["hangups"][kind]["hang_s"] = dirty_hang_s
            figures.setdefault("dirty_hangups", {})[f"gunicorn dirty, {what}"] = g["hangups"][kind]

    figures["targets"] = targets(figures)
    figures["info"]["loadavg_after"] = load_after = os.getloadavg()
    figures["info"]["cpu_use"] = use = cpu_use.summary()
    figures["survivors"] = survivors
    print_report(figures)
    print(
        f"\nload average after: {loadavg(load_after)}; CPU time of the {os.cpu_count()} cores: "
        f"{use['ours_percent']:.0f}% this benchmark and what it started, {use['others_percent']:.0f}% "
        f"other processes, {use['steal_percent']:.0f}% stolen"
    )
    if survivors:
        print("processes outlived their daemon (killed now):", *survivors, sep="\n  ")
    else:
        print("every pitd and gunicorn stopped; none of the processes they started is left")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
