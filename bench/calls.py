#!/usr/bin/env python3
"""Round trips of a small call: pit against its physical floor and against Python's own pools.

Every row echoes the same 32-character string through the same ``echo`` function
(``pit.examples.echo.echo``, a module-level function returning its argument), and all rows
are measured in one run of this script, with one interpreter (the one running it):

``floor-raw``
    A minimal Python loop (no pit code) echoing length-prefixed 32-byte frames over two
    pipes, driven one frame at a time from here: the cost of one hop between two Python
    processes.
``floor-pit-runtime``
    The real worker, ``python -m pit serve pit.examples.echo``, started here with its
    protocol pipes on fds 3/4 exactly as pitd starts it; after its ``READY`` frame it gets
    ``CALL`` frames for ``echo`` one at a time. The gap to ``floor-raw`` is what the pit
    runtime itself costs per call; this row is the floor pitd is judged against.
``floor-relay``
    ``floor-raw`` with a relay between the driver and the echo loop: ``bench/relay.rs``, a
    blocking Rust loop that moves each frame on and the reply back, with nothing else in
    its way (no parsing, routing, timers or event loop). A call through pitd crosses the
    same two hops; this row is what they cost on this machine with a process in the middle
    that does no work, so pit's rows can be read against it: pitd's overhead is what it
    adds beyond the relay. The relay's own CPU (as for pitd, below) is in the CPU columns.
    ``cargo build --release --example relay`` builds it; this script runs that when the
    binary is missing or older than its source, and leaves the rows out if it cannot.
``pit(W) c=C``
    The real ``pitd`` with a W-worker ``echo`` pool (sockets and spec in a temporary
    directory), loaded by ``pitctl bench --concurrency C``: C client threads, each with one
    call in flight, C = 1, W, 2W and 4W (from 2W on, calls wait for a worker, and pitd
    pipelines them behind running calls). A call crosses three processes: client -> pitd ->
    worker and back. One pitd holds one pool per worker count (``--workers``, default 1, 2
    and the core count); the pools not being measured sit idle. The row also gives pitd's
    own CPU time over the ``pitctl bench`` process's lifetime (utime + stime of the pitd
    process from ``/proc/PID/stat``, all its threads, workers and guard excluded), as a
    percentage of one core and per call.
``pit(W) c=64 conn=1``
    The same pool loaded by ``pitctl bench --concurrency 64 --connections 1``: one client
    thread keeping 64 calls in flight on one connection, writing the requests it can send
    together in one write and taking every reply it has from one read, as a process that
    multiplexes its callers over one connection does (``pit.Client`` carries the calls of
    all its threads on one connection). This is the like-for-like row for the Python
    pools' C=64 rows below, which are also one process with 64 calls in flight. (The
    throughput ratios below take each side's fastest row.)
``mp.Pool(W) c=C`` / ``ProcessPoolExecutor(W) c=C``
    ``multiprocessing.Pool(W).apply_async`` and ``ProcessPoolExecutor(W).submit`` with C
    calls kept in flight: C=1 is latency, C=64 is throughput.
``..., 1 CPU``
    ``floor-raw``, ``floor-pit-runtime``, ``floor-relay`` and ``pit(2) c=1`` (2 workers, or the largest
    count asked for when 2 is not) again, with every process of the
    row (driver or client, pitd with all its threads, workers) pinned to one CPU. A
    one-at-a-time round trip is a chain of wake-ups, and waking a process on another CPU
    can cost several times a switch on the same CPU (much more in a virtual machine, where
    an idle virtual CPU has to be woken by the host). Without pinning the scheduler decides
    which kind each hop is, so the unpinned c=1 rows can move between runs; the pinned rows
    show the cost without cross-CPU wake-ups.

Each measurement runs for a fixed time (after a short warm-up that is not counted) and
records every call's latency from just before the request leaves the caller to just after
the reply is back; calls/s is completed calls over the measured time. Percentiles are
``pitbench.stats``'s, the definition ``pitctl bench`` uses. Each row is measured
``--runs`` times, the rows of one kind taking turns in each round so that drift on the
machine affects them alike, and the table shows the median of each column over the runs;
``--json FILE`` keeps every run. In the JSON, the 2-worker rows are also under their names
from before the worker count was a parameter (``pit c=1``, ``mp.Pool c=64``, ...). Other
load on the machine skews everything, so the script also reports how the machine's CPU
time was spent during the run: by this benchmark and what it started, by other processes,
and stolen by the hypervisor.

Every loop is bounded by a deadline and a call count, every wait by a timeout. pitd is
stopped at the end (also on errors or Ctrl-C), and the script checks that none of the
processes pitd started outlive it.

Linux only (pitd is). Usage::

    cargo build --release
    python3 bench/calls.py [--runs N] [--duration S] [--quick] [--workers 1,2,cores] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import multiprocessing
import os
import platform
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.pool import Pool
from pathlib import Path

from pitbench import specs, stats
from pitbench.daemon import PitdProcess
from pitbench.paths import BIN_DIR, PYTHON_DIR, REPO
from pitbench.pipes import FrameProcess, PipeChild
from pitbench.procfs import CpuUse, cpu_seconds

from pit import _worker_protocol  # the frame layout pitd and the worker share
from pit.examples.echo import echo  # the function every row calls

PAYLOAD = "abcdefghijklmnopqrstuvwxyz012345"
ARGS_JSON = json.dumps(PAYLOAD).encode("utf-8")
assert len(PAYLOAD.encode("utf-8")) == 32

DEFAULT_WORKERS = "1,2,cores"  # pool sizes of the pit and Python pool rows
REFERENCE_WORKERS = 2  # the pool size of the pinned row and of the rows' names without "(W)"
MAX_WORKERS = 256
WINDOWS = (1, 64)  # calls in flight for the Python pools
MAX_CALLS = 5_000_000  # per measurement, on top of the time bound
WAIT_S = 30.0  # bound on every start-up, reply and shutdown wait
ONE_CPU = " 1 CPU"  # suffix of the pinned rows

# A minimal echo over fds 3 (in) and 4 (out): read one length-prefixed frame, write it back.
RAW_ECHO = """\
import os
read, write = os.read, os.write
while True:
    data = read(3, 65536)
    if not data:
        break
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        more = read(3, 65536)
        if not more:
            raise SystemExit(1)
        data += more
    write(4, data)
"""

Run = dict[str, float]
Rows = dict[str, list[Run]]


# --- statistics -------------------------------------------------------------------------

FIELDS = ("calls_per_s", "p50_us", "p90_us", "p99_us", "max_us")


def summarize(lat_ns: list[int], elapsed_s: float) -> Run:
    """calls/s and the percentiles (µs) of one measurement, as ``pitctl bench`` gives them."""
    if not lat_ns:
        raise RuntimeError("no call completed")
    p50, p90, p99, top = stats.percentiles(lat_ns, [0.50, 0.90, 0.99, 1.0])
    return {
        "calls": len(lat_ns),
        "seconds": elapsed_s,
        "calls_per_s": len(lat_ns) / elapsed_s,
        "p50_us": p50 / 1000.0,
        "p90_us": p90 / 1000.0,
        "p99_us": p99 / 1000.0,
        "max_us": top / 1000.0,
    }


PITD_FIELDS = ("pitd_cpu_percent", "pitd_cpu_us_per_call")  # the pit rows only
RELAY_FIELDS = ("relay_cpu_percent", "relay_cpu_us_per_call")  # the floor-relay rows only


def median_row(runs: list[Run]) -> Run:
    """Each column's median over the runs of one row (the middle process's CPU where every
    run has it)."""
    fields = FIELDS + tuple(f for f in PITD_FIELDS + RELAY_FIELDS if all(f in r for r in runs))
    return {f: stats.median(r[f] for r in runs) for f in fields}


def pit_concurrencies(workers: int) -> list[int]:
    """Calls in flight for a pit pool of ``workers``, one connection each: one, one per
    worker, two and four per worker."""
    return sorted({1, workers, 2 * workers, 4 * workers})


PIPELINED = WINDOWS[-1]  # calls in flight on the one connection of the pipelined pit rows


def pit_row_names(workers: int) -> list[tuple[str, int, int | None]]:
    """The pit rows of a pool of ``workers``: (name, calls in flight, connections), the
    last with as many calls in flight as the Python pools get, on one connection."""
    rows: list[tuple[str, int, int | None]] = [
        (f"pit({workers}) c={c}", c, None) for c in pit_concurrencies(workers)
    ]
    rows.append((f"pit({workers}) c={PIPELINED} conn=1", PIPELINED, 1))
    return rows


def parse_workers(text: str) -> list[int]:
    """``1,2,cores`` -> [1, 2, <cores>], sorted, without duplicates."""
    sizes = set()
    for part in text.split(","):
        part = part.strip()
        n = (os.cpu_count() or 1) if part == "cores" else int(part)
        if not 1 <= n <= MAX_WORKERS:
            raise ValueError(f"worker count {n} is not in 1..{MAX_WORKERS}")
        sizes.add(n)
    if not sizes:
        raise ValueError("no worker count")
    return sorted(sizes)


# --- CPU pinning ------------------------------------------------------------------------


def set_affinity(pids: Iterable[int], cpus: Iterable[int]) -> None:
    """Every thread of every process in ``pids`` may run on ``cpus`` only."""
    cpus = set(cpus)
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), cpus)


@contextlib.contextmanager
def pinned(pids: Iterable[int], cpu: int) -> Iterator[None]:
    """This process (so the children it starts) and ``pids`` on one CPU, then back."""
    pids = list(pids)
    every = os.sched_getaffinity(0)
    set_affinity([os.getpid(), *pids], {cpu})
    try:
        yield
    finally:
        set_affinity([os.getpid(), *pids], every)


# --- floors: one child on two pipes, driven one frame at a time --------------------------


class RelayChild(FrameProcess):
    """``bench/relay.rs`` between us and a ``PipeChild``: our frames go to the relay's fd 3,
    its replies come from its fd 4, and it talks to the child on fds 5 and 6."""

    def __init__(self, relay: Path, child: PipeChild) -> None:
        self.child = child
        up_r, self.wfd = os.pipe()
        self.rfd, up_w = os.pipe()
        ends = [up_r, up_w, child.wfd, child.rfd]
        parked = [fcntl.fcntl(e, fcntl.F_DUPFD_CLOEXEC, 10) for e in ends]
        os.close(up_r)
        os.close(up_w)
        try:
            self.pid = os.posix_spawn(
                str(relay),
                [str(relay)],
                dict(os.environ),
                file_actions=[(os.POSIX_SPAWN_DUP2, fd, 3 + i) for i, fd in enumerate(parked)],
            )
        finally:
            for fd in parked:
                os.close(fd)

    @property
    def pids(self) -> list[int]:
        return [self.pid, self.child.pid]

    def close(self) -> None:
        """End of input ends the relay; then the child is closed as usual."""
        try:
            super().close()
        finally:
            self.child.close()


def ping_pong(
    child: FrameProcess,
    frame: Callable[[int], bytes],
    reply: Callable[[int], bytes],
    duration_s: float,
) -> Run:
    """Sends ``frame(i)``, waits for exactly ``reply(i)``, times it; for ``duration_s``."""
    write, read_frame, wfd = os.write, child.read_frame, child.wfd
    clock = time.perf_counter_ns
    lat: list[int] = []
    start = clock()
    end = start + int(duration_s * 1e9)
    t1 = start
    for i in range(MAX_CALLS):
        request, expected = frame(i), reply(i)
        t0 = clock()
        if t0 >= end:
            break
        write(wfd, request)
        got = read_frame()
        t1 = clock()
        if got != expected:
            raise RuntimeError(f"unexpected reply {got[:64]!r}, wanted {expected[:64]!r}")
        lat.append(t1 - t0)
    return summarize(lat, (t1 - start) / 1e9)


def floor_rows(
    name: str,
    child: FrameProcess,
    frame: Callable[[int], bytes],
    reply: Callable[[int], bytes],
    cfg: Config,
    middle: int | None = None,
) -> Rows:
    """``name`` and ``name 1 CPU``, alternating, ``cfg.runs`` times each; with the CPU time
    of process ``middle`` (the relay) per run when given."""
    rows: Rows = {name: [], name + ONE_CPU: []}

    def measure() -> Run:
        cpu0, t0 = (cpu_seconds(middle), time.monotonic()) if middle else (0.0, 0.0)
        run = ping_pong(child, frame, reply, cfg.duration_s)
        if middle:
            used = cpu_seconds(middle) - cpu0
            run["relay_cpu_percent"] = 100.0 * used / (time.monotonic() - t0)
            run["relay_cpu_us_per_call"] = 1e6 * used / max(run["calls"], 1)
        return run

    ping_pong(child, frame, reply, cfg.warmup_s)
    for run in range(cfg.runs):
        progress(name, run, cfg.runs)
        rows[name].append(measure())
        with pinned(child.pids, cfg.cpu):
            ping_pong(child, frame, reply, cfg.warmup_s)
            rows[name + ONE_CPU].append(measure())
    return rows


def floor_raw(cfg: Config) -> Rows:
    child = PipeChild([sys.executable, "-c", RAW_ECHO], dict(os.environ))
    try:
        message = len(PAYLOAD).to_bytes(4, "big") + PAYLOAD.encode("utf-8")

        def same(i: int) -> bytes:
            return message

        return floor_rows("floor-raw", child, same, same, cfg)
    finally:
        child.close()


def relay_binary(cfg: Config) -> Path | None:
    """The relay, built first when it is missing or older than its source (only for this
    repository's own build directory); None, with the reason printed, when there is none."""
    relay = cfg.bin_dir / "examples" / "relay"
    source = REPO / "bench" / "relay.rs"
    fresh = relay.exists() and relay.stat().st_mtime >= source.stat().st_mtime
    if not fresh and cfg.bin_dir.resolve() == (REPO / "target" / "release").resolve():
        print("building bench/relay.rs (cargo build --release --example relay)", file=sys.stderr, flush=True)
        try:
            subprocess.run(
                ["cargo", "build", "--release", "--example", "relay"],
                cwd=REPO,
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=900,
            )
        except (OSError, subprocess.SubprocessError) as e:
            print(f"cannot build the relay ({e}): the floor-relay rows are left out", file=sys.stderr)
            return None
    if not os.access(relay, os.X_OK):
        print(f"{relay} not found: the floor-relay rows are left out", file=sys.stderr)
        return None
    return relay


def floor_relay(cfg: Config) -> Rows:
    relay = relay_binary(cfg)
    if relay is None:
        return {}
    child = RelayChild(relay, PipeChild([sys.executable, "-c", RAW_ECHO], dict(os.environ)))
    try:
        message = len(PAYLOAD).to_bytes(4, "big") + PAYLOAD.encode("utf-8")

        def same(i: int) -> bytes:
            return message

        return floor_rows("floor-relay", child, same, same, cfg, middle=child.pid)
    finally:
        child.close()


def floor_pit_runtime(cfg: Config) -> Rows:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), env.get("PYTHONPATH")]))
    child = PipeChild([sys.executable, "-m", "pit", "serve", "pit.examples.echo"], env)
    try:
        ftype = child.read_frame(timeout=WAIT_S)[4]
        if ftype != _worker_protocol.READY:
            raise RuntimeError(f"the worker's first frame is 0x{ftype:02x}, not READY")
        # CALL/OK frames whose only varying part is the req_id, built as pitd builds them.
        call = _worker_protocol.encode_call(0, "echo", ARGS_JSON)
        ok = _worker_protocol.encode_ok(0, ARGS_JSON)
        call_head, call_tail = call[:5], call[13:]
        ok_head, ok_tail = ok[:5], ok[13:]
        pack_id = struct.Struct(">Q").pack

        def frame(i: int) -> bytes:
            return call_head + pack_id(i) + call_tail

        def reply(i: int) -> bytes:
            return ok_head + pack_id(i) + ok_tail

        return floor_rows("floor-pit-runtime", child, frame, reply, cfg)
    finally:
        child.close()


# --- pit: the real daemon ---------------------------------------------------------------


class Pitd(PitdProcess):
    """pitd in the foreground with one echo pool per size in ``sizes`` (``echo<size>``), in
    a temporary directory."""

    wait_s = WAIT_S

    def __init__(self, bin_dir: Path, sizes: list[int]) -> None:
        super().__init__(bin_dir, "pit-bench-")
        self.require_binaries()
        self.sizes = {f"echo{n}": n for n in sizes}
        spec = self.spec_head()
        for name, n in self.sizes.items():
            pool: dict[str, specs.Value] = {
                "app": "pit.examples.echo",
                "python": sys.executable,
                "cwd": str(PYTHON_DIR),
                "size": n,
            }
            spec += specs.table(f"pools.{name}", pool)
        self.start(spec)

    def wait_ready(self) -> None:
        """Until every worker of every pool is idle; records every process pitd started."""
        self.wait_workers(self.sizes, every_s=0.1)

    def bench(self, size: int, concurrency: int, duration_s: float, connections: int | None = None) -> Run:
        """``pitctl bench`` on pool ``echo<size>``, with pitd's own CPU time over its run."""
        extra = ["--connections", str(connections)] if connections else []
        cpu0, t0 = cpu_seconds(self.proc.pid), time.monotonic()
        out = self.ctl(
            "bench",
            f"echo{size}",
            "--method",
            "echo",
            "--args",
            ARGS_JSON.decode(),
            "--concurrency",
            str(concurrency),
            "--duration",
            f"{round(duration_s * 1000)}ms",
            "--json",
            *extra,
            timeout=duration_s + WAIT_S,
        )
        cpu1, t1 = cpu_seconds(self.proc.pid), time.monotonic()
        if out.returncode != 0:
            raise RuntimeError(f"pitctl bench failed ({out.returncode}): {out.stderr.strip()}")
        r = json.loads(out.stdout)
        if r["errors"]:
            raise RuntimeError(f"pitctl bench saw {r['errors']} failed calls")
        return {
            "calls": r["calls"],
            "seconds": r["duration_s"],
            **{f: float(r[f]) for f in FIELDS},
            "pitd_cpu_percent": 100.0 * (cpu1 - cpu0) / (t1 - t0),
            "pitd_cpu_us_per_call": 1e6 * (cpu1 - cpu0) / max(r["calls"], 1),
        }

    def stop(self, wait_s: float | None = None) -> list[str]:
        """Stops pitd (shutdown, then SIGTERM, then SIGKILL) and returns what outlived it:
        its children (the workers and its guard process) must go with it."""
        if self.running():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.ctl("shutdown", timeout=10.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=WAIT_S)
        return super().stop(wait_s)


def pit_rows(cfg: Config) -> tuple[Rows, list[str]]:
    """The ``pit`` rows, and what outlived pitd (nothing, normally)."""
    daemon = Pitd(cfg.bin_dir, cfg.workers)
    rows: Rows = {name: [] for n in cfg.workers for name, _, _ in pit_row_names(n)}
    pinned_row = f"pit({cfg.reference}) c=1" + ONE_CPU
    rows[pinned_row] = []
    try:
        daemon.wait_ready()
        for n in cfg.workers:
            daemon.bench(n, pit_concurrencies(n)[-1], cfg.warmup_s)
        for run in range(cfg.runs):
            for n in cfg.workers:
                for name, c, connections in pit_row_names(n):
                    progress(name, run, cfg.runs)
                    rows[name].append(daemon.bench(n, c, cfg.duration_s, connections))
            with pinned([daemon.proc.pid, *daemon.seen], cfg.cpu):
                daemon.bench(cfg.reference, 1, cfg.warmup_s)
                rows[pinned_row].append(daemon.bench(cfg.reference, 1, cfg.duration_s))
    finally:
        survivors = daemon.stop()
        daemon.cleanup()
    return rows, survivors


# --- Python's process pools -------------------------------------------------------------


def windowed(submit: Callable[[Callable[[object], None]], None], window: int, duration_s: float) -> Run:
    """Keeps ``window`` calls in flight for ``duration_s``, then waits for the last ones.

    ``submit(done)`` starts one call of ``echo(PAYLOAD)``; its completion (in the pool's
    result thread) must call ``done(result)``.
    """
    clock = time.perf_counter_ns
    slots = threading.Semaphore(window)
    lat: list[int] = []
    errors = [0]

    def done(t0: int, result: object) -> None:
        lat.append(clock() - t0)
        if result != PAYLOAD:
            errors[0] += 1
        slots.release()

    start = clock()
    end = start + int(duration_s * 1e9)
    for _ in range(MAX_CALLS):
        if not slots.acquire(timeout=WAIT_S):
            raise RuntimeError(f"no call completed within {WAIT_S:.0f} s")
        t0 = clock()
        if t0 >= end:
            slots.release()
            break
        submit(functools.partial(done, t0))
    for _ in range(window):  # the calls still in flight
        if not slots.acquire(timeout=WAIT_S):
            raise RuntimeError(f"calls still running after {WAIT_S:.0f} s")
    elapsed = (clock() - start) / 1e9
    if errors[0]:
        raise RuntimeError(f"{errors[0]} calls returned something else than their argument")
    return summarize(lat, elapsed)


Submit = Callable[[Callable[[object], None]], None]


def python_pool_rows(name: str, submits: dict[int, Submit], cfg: Config) -> Rows:
    """``name(W) c=C`` for every pool size W (its ``submit``), the sizes taking turns."""
    rows: Rows = {f"{name}({n}) c={w}": [] for n in submits for w in WINDOWS}
    for submit in submits.values():
        windowed(submit, WINDOWS[-1], cfg.warmup_s)
    for run in range(cfg.runs):
        for n, submit in submits.items():
            for w in WINDOWS:
                progress(f"{name}({n}) c={w}", run, cfg.runs)
                rows[f"{name}({n}) c={w}"].append(windowed(submit, w, cfg.duration_s))
    return rows


def mp_pool_rows(cfg: Config) -> Rows:
    with contextlib.ExitStack() as stack:
        submits: dict[int, Submit] = {}
        for n in cfg.workers:
            pool = stack.enter_context(multiprocessing.Pool(n))

            def submit(done: Callable[[object], None], pool: Pool = pool) -> None:
                pool.apply_async(echo, (PAYLOAD,), callback=done, error_callback=done)

            submits[n] = submit
        return python_pool_rows("mp.Pool", submits, cfg)


def executor_rows(cfg: Config) -> Rows:
    with contextlib.ExitStack() as stack:
        submits: dict[int, Submit] = {}
        for n in cfg.workers:
            ex = stack.enter_context(ProcessPoolExecutor(n))

            def submit(done: Callable[[object], None], ex: ProcessPoolExecutor = ex) -> None:
                def finished(fut: Future[str]) -> None:
                    error = fut.exception()
                    done(error if error is not None else fut.result())

                ex.submit(echo, PAYLOAD).add_done_callback(finished)

            submits[n] = submit
        return python_pool_rows("ProcessPoolExecutor", submits, cfg)


# --- report -----------------------------------------------------------------------------


class Config:
    def __init__(self, runs: int, duration_s: float, bin_dir: Path, cpu: int, workers: list[int]) -> None:
        self.workers = workers
        # the pool size of the pinned pit row and of the old row names
        self.reference = REFERENCE_WORKERS if REFERENCE_WORKERS in workers else workers[-1]
        self.runs = runs
        self.duration_s = duration_s
        self.warmup_s = min(0.5, duration_s / 4)
        self.bin_dir = bin_dir
        self.cpu = cpu  # where the "1 CPU" rows run


def row_order(cfg: Config) -> list[str]:
    """The table's rows, top to bottom."""
    rows = ["floor-raw", "floor-pit-runtime", "floor-relay"]
    rows += [name for n in cfg.workers for name, _, _ in pit_row_names(n)]
    rows += [
        f"{kind}({n}) c={w}"
        for kind in ("mp.Pool", "ProcessPoolExecutor")
        for n in cfg.workers
        for w in WINDOWS
    ]
    rows += ["floor-raw" + ONE_CPU, "floor-pit-runtime" + ONE_CPU, "floor-relay" + ONE_CPU]
    rows += [f"pit({cfg.reference}) c=1" + ONE_CPU]
    return rows


def old_names(cfg: Config) -> dict[str, str]:
    """The rows' names from before the worker count was a parameter (2 workers) -> now."""
    if REFERENCE_WORKERS not in cfg.workers:
        return {}
    n = REFERENCE_WORKERS
    names = {f"pit c={c}": f"pit({n}) c={c}" for c in pit_concurrencies(n)}
    names["pit c=1" + ONE_CPU] = f"pit({n}) c=1" + ONE_CPU
    for kind in ("mp.Pool", "ProcessPoolExecutor"):
        names.update({f"{kind} c={w}": f"{kind}({n}) c={w}" for w in WINDOWS})
    return names


def progress(row: str, run: int, runs: int) -> None:
    print(f"  {row} (run {run + 1}/{runs})", file=sys.stderr, flush=True)


def fmt_us(us: float) -> str:
    return f"{us:.1f}" if us < 100 else f"{us:.0f}"


def best(medians: dict[str, Run], prefix: str) -> tuple[str, float]:
    name = max(
        (n for n in medians if n.startswith(prefix) and not n.endswith(ONE_CPU)),
        key=lambda n: medians[n]["calls_per_s"],
    )
    return name, medians[name]["calls_per_s"]


def print_table(medians: dict[str, Run], order: list[str]) -> None:
    width = max(len(n) for n in order) + 2
    print(
        f"\n{'':<{width}}{'calls/s':>10}{'p50 µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'max µs':>10}"
        f"{'CPU':>10}{'µs':>9}"
    )
    print(f"{'':<{width}}{'':>50}{'% 1 core':>10}{'/call':>9}  (of pitd; of the relay)")
    for name in order:
        m = medians[name]
        if name == "floor-raw" + ONE_CPU:
            print(f"{'(every process of the row pinned to one CPU)':<{width}}")
        cells = "".join(f"{fmt_us(m[f]):>10}" for f in FIELDS[1:])
        for cpu, per_call in (PITD_FIELDS, RELAY_FIELDS):
            if cpu in m:
                cells += f"{m[cpu]:>10.1f}{m[per_call]:>9.1f}"
        print(f"{name:<{width}}{m['calls_per_s']:>10.0f}{cells}")


def ratios(medians: dict[str, Run], cfg: Config) -> dict[str, object]:
    """The targets' ratios (the old keys for the reference pool size), printed."""
    by_workers: dict[str, dict[str, object]] = {}
    print()
    for n in cfg.workers:
        pit_name, pit_cps = best(medians, f"pit({n}) ")
        mp_name, mp_cps = best(medians, f"mp.Pool({n}) ")
        by_workers[str(n)] = t = {
            "what": f"{pit_name} / {mp_name} calls/s",
            "value": pit_cps / mp_cps,
            "target": ">= 2",
            "met": pit_cps / mp_cps >= 2.0,
            "pit_calls_per_s": pit_cps,
            "mp_pool_calls_per_s": mp_cps,
        }
        print(
            f"{'throughput' if n == cfg.workers[0] else '':<12}{t['what']}: {pit_cps:.0f} / {mp_cps:.0f}"
            f" = {t['value']:.2f}x  (target >= 2x: {'met' if t['met'] else 'NOT met'})"
        )
    out: dict[str, object] = {
        "throughput": by_workers[str(cfg.reference)],
        "throughput_by_workers": by_workers,
    }
    pit_c1 = f"pit({cfg.reference}) c=1"
    for key, suffix, floor in (
        ("latency", "", "floor-pit-runtime"),
        ("latency_one_cpu", ONE_CPU, "floor-pit-runtime"),
        ("latency_over_raw_floor", "", "floor-raw"),
    ):
        pit_p50 = medians[pit_c1 + suffix]["p50_us"]
        floor_p50 = medians[floor + suffix]["p50_us"]
        out[key] = r = {
            "what": f"{pit_c1}{suffix} / {floor}{suffix} p50",
            "value": pit_p50 / floor_p50,
            "target": "<= 2.5",
            "met": pit_p50 / floor_p50 <= 2.5,
        }
        print(
            f"{'latency' if key == 'latency' else '':<12}{r['what']}: {fmt_us(pit_p50)} / "
            f"{fmt_us(floor_p50)} µs"
            f" = {r['value']:.2f}x  (target <= 2.5x: {'met' if r['met'] else 'NOT met'})"
        )
    if "floor-relay" in medians:
        # What the same two hops cost with a middle process that does no work: the part of
        # the latency ratio no relay can remove on this machine.
        relay: dict[str, object] = {}
        for suffix in ("", ONE_CPU):
            relay_p50, raw_p50 = (
                medians["floor-relay" + suffix]["p50_us"],
                medians["floor-raw" + suffix]["p50_us"],
            )
            relay["one_cpu" if suffix else "unpinned"] = relay_p50 / raw_p50
            print(
                f"{'':<12}floor-relay{suffix} / floor-raw{suffix} p50: {fmt_us(relay_p50)} / "
                f"{fmt_us(raw_p50)} µs"
                f" = {relay_p50 / raw_p50:.2f}x  (two hops through a relay that does no work)"
            )
        pit_cpu = medians[pit_c1 + ONE_CPU]["pitd_cpu_us_per_call"]
        relay_cpu = medians["floor-relay" + ONE_CPU]["relay_cpu_us_per_call"]
        relay["pitd_cpu_us_per_call_one_cpu"], relay["relay_cpu_us_per_call_one_cpu"] = pit_cpu, relay_cpu
        out["relay_over_raw_floor"] = relay
        print(
            f"{'':<12}CPU of the middle process per call, 1 CPU: pitd {pit_cpu:.1f} µs, relay "
            f"{relay_cpu:.1f} µs"
        )
    # pitd's own CPU at the highest throughput of each pool size
    cpu: dict[str, dict[str, object]] = {}
    for n in cfg.workers:
        name, _ = best(medians, f"pit({n}) ")
        m = medians[name]
        cpu[str(n)] = c = {
            "row": name,
            "pitd_cpu_percent": m["pitd_cpu_percent"],
            "pitd_cpu_us_per_call": m["pitd_cpu_us_per_call"],
            "calls_per_s": m["calls_per_s"],
            "target": "< 10",
            "met": m["pitd_cpu_percent"] < 10.0,
        }
        print(
            f"{'pitd CPU' if n == cfg.workers[0] else '':<12}{name}, {m['calls_per_s']:.0f} calls/s: "
            f"{c['pitd_cpu_percent']:.1f}% of one core, {c['pitd_cpu_us_per_call']:.1f} µs per call"
            f"  (target < 10%: {'met' if c['met'] else 'NOT met'})"
        )
    out["pitd_cpu"] = cpu
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per row; the table shows medians (default 3)"
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s per row")
    parser.add_argument(
        "--workers",
        default=DEFAULT_WORKERS,
        help="pool sizes for the pit and Python pool rows, comma-separated, 'cores' for the core count "
        f"(default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write every figure (each run, medians, ratios) here"
    )
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=BIN_DIR,
        help="directory holding pitd and pitctl (default: this repository's target/release)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.duration = 1, 1.0
    if not 1 <= args.runs <= 20 or not 0.1 <= args.duration <= 60:
        parser.error("--runs must be 1..20 and --duration 0.1..60 seconds")
    try:
        workers = parse_workers(args.workers)
    except ValueError as e:
        parser.error(f"--workers: {e}")
    usable = sorted(os.sched_getaffinity(0))
    cfg = Config(args.runs, args.duration, args.bin_dir, cpu=usable[-1], workers=workers)

    info: dict[str, object] = {
        "cores": os.cpu_count(),
        "usable_cores": len(usable),
        "one_cpu_rows_on": cfg.cpu,
        "python_version": platform.python_version(),
        "python": sys.executable,
        "mp_start_method": multiprocessing.get_start_method(),
        "pitd": str(cfg.bin_dir / "pitd"),
        "workers": cfg.workers,
        "pool_size": cfg.reference,
        "payload": PAYLOAD,
        "runs": cfg.runs,
        "duration_s": cfg.duration_s,
        "loadavg_before": os.getloadavg(),
    }
    print(f"cores: {os.cpu_count()} ({len(usable)} usable here)")
    print(f"python: {platform.python_version()}, {sys.executable} (driver, floors, pit workers, pools)")
    print(
        f"pitd: {cfg.bin_dir / 'pitd'} with pools of {', '.join(map(str, cfg.workers))} workers; "
        f"multiprocessing start method: {info['mp_start_method']}"
    )
    print(
        f"each row: 32-character string echo, median of {cfg.runs} run(s) of {cfg.duration_s:g} s", flush=True
    )

    started = time.monotonic()
    cpu_use = CpuUse()
    runs: Rows = {}
    runs.update(floor_raw(cfg))
    runs.update(floor_pit_runtime(cfg))
    runs.update(floor_relay(cfg))
    pit, survivors = pit_rows(cfg)
    runs.update(pit)
    runs.update(mp_pool_rows(cfg))
    runs.update(executor_rows(cfg))
    info["cpu_use"] = use = cpu_use.summary()
    order = [name for name in row_order(cfg) if name in runs]
    medians = {name: median_row(runs[name]) for name in order}

    print_table(medians, order)
    info["ratios"] = ratios(medians, cfg)
    info["seconds"] = time.monotonic() - started
    info["loadavg_after"] = os.getloadavg()
    print(
        f"\nCPU time during the run, of {os.cpu_count()} CPUs: this benchmark {use['ours_percent']:.0f}%, "
        f"other processes {use['others_percent']:.0f}%, steal {use['steal_percent']:.1f}%; "
        f"total {info['seconds']:.0f} s"
    )
    if use["others_percent"] > 5:
        print("other processes used the CPUs during the run: the figures are skewed; rerun when idle")
    if survivors:
        print("processes started by pitd outlived it (killed now):\n  " + "\n  ".join(survivors))
    else:
        print("pitd stopped; none of the processes it started outlived it")
    if args.json:
        for old, new in old_names(cfg).items():
            medians[old], runs[old] = medians[new], runs[new]
        with open(args.json, "w") as f:
            json.dump({"info": info, "medians": medians, "runs": runs, "survivors": survivors}, f, indent=2)
            f.write("\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
