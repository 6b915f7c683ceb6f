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
``pit c=N``
    The real ``pitd`` with a 2-worker ``echo`` pool (sockets and spec in a temporary
    directory), loaded by ``pitctl bench --concurrency N``: N client threads, each with one
    call in flight. A call crosses three processes: client -> pitd -> worker and back.
``mp.Pool c=N`` / ``ProcessPoolExecutor c=N``
    ``multiprocessing.Pool(2).apply_async`` and ``ProcessPoolExecutor(2).submit`` with N
    calls kept in flight: N=1 is latency, N=64 is throughput.
``..., 1 CPU``
    ``floor-raw``, ``floor-pit-runtime`` and ``pit c=1`` again, with every process of the
    row (driver or client, pitd with all its threads, workers) pinned to one CPU. A
    one-at-a-time round trip is a chain of wake-ups, and waking a process on another CPU
    can cost several times a switch on the same CPU (much more in a virtual machine, where
    an idle virtual CPU has to be woken by the host). Without pinning the scheduler decides
    which kind each hop is, so the unpinned c=1 rows can move between runs; the pinned rows
    show the cost without cross-CPU wake-ups.

Each measurement runs for a fixed time (after a short warm-up that is not counted) and
records every call's latency from just before the request leaves the caller to just after
the reply is back; calls/s is completed calls over the measured time. Percentiles are
nearest-rank (the method ``pitctl bench`` uses). Each row is measured ``--runs`` times,
the rows of one kind taking turns in each round so that drift on the machine affects them
alike, and the table shows the median of each column over the runs; ``--json FILE`` keeps
every run. Other load on the machine skews everything, so the script also reports how the
machine's CPU time was spent during the run: by this benchmark and what it started, by
other processes, and stolen by the hypervisor.

Every loop is bounded by a deadline and a call count, every wait by a timeout. pitd is
stopped at the end (also on errors or Ctrl-C), and the script checks that none of the
processes pitd started outlive it.

Linux only (pitd is). Usage::

    cargo build --release
    python3 bench/calls.py [--runs N] [--duration S] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import functools
import json
import multiprocessing
import os
import platform
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from procfs import descendants as _descendants
from procfs import kill_leftovers

REPO = Path(__file__).resolve().parent.parent
PYTHON_DIR = REPO / "python"
sys.path.insert(0, str(PYTHON_DIR))  # this repository's pit package, for the imports below

from pit import _frames  # the frame layout pitd and the worker share
from pit.examples.echo import echo  # the function every row calls

PAYLOAD = "abcdefghijklmnopqrstuvwxyz012345"
ARGS_JSON = json.dumps(PAYLOAD).encode("utf-8")
assert len(PAYLOAD.encode("utf-8")) == 32

POOL_SIZE = 2
PIT_CONCURRENCY = (1, 2, 4)
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
    """calls/s and nearest-rank percentiles (µs) of one measurement."""
    lat = sorted(lat_ns)
    if not lat:
        raise RuntimeError("no call completed")

    def pct(p: float) -> float:
        return lat[round((len(lat) - 1) * p)] / 1000.0

    return {
        "calls": len(lat),
        "seconds": elapsed_s,
        "calls_per_s": len(lat) / elapsed_s,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "max_us": lat[-1] / 1000.0,
    }


def median_row(runs: list[Run]) -> Run:
    """Each column's median over the runs of one row."""
    return {f: statistics.median(r[f] for r in runs) for f in FIELDS}


class CpuUse:
    """Where the machine's CPU time went between two samples: this script with everything
    it started (counted once waited for), everyone else, and steal (time the hypervisor
    gave to other guests)."""

    def __init__(self) -> None:
        self.t0, self.machine0, self.ours0 = time.monotonic(), self._machine(), self._ours()

    @staticmethod
    def _machine() -> tuple[float, float]:
        """(busy, steal) seconds of all CPUs from /proc/stat."""
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (
                int(x) for x in f.readline().split()[1:9]
            )
        tick = os.sysconf("SC_CLK_TCK")
        return (user + nice + system + irq + softirq) / tick, steal / tick

    @staticmethod
    def _ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def summary(self) -> dict[str, float]:
        """Percentages of the machine's capacity (all CPUs) since construction."""
        capacity = (time.monotonic() - self.t0) * (os.cpu_count() or 1)
        busy, steal = (a - b for a, b in zip(self._machine(), self.machine0))
        ours = self._ours() - self.ours0
        return {
            "ours_percent": 100.0 * ours / capacity,
            "others_percent": 100.0 * max(busy - ours, 0.0) / capacity,
            "steal_percent": 100.0 * steal / capacity,
        }


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


class PipeChild:
    """A child process reading our frames on its fd 3 and answering on its fd 4."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        to_child_r, self.wfd = os.pipe()
        self.rfd, from_child_w = os.pipe()
        # Park the child's ends above fd 4, so that dup2 onto 3 and 4 always makes fresh,
        # inheritable copies; every other pipe fd is close-on-exec.
        child_in = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)
        try:
            self.pid = os.posix_spawn(
                argv[0],
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, child_in, 3),
                    (os.POSIX_SPAWN_DUP2, child_out, 4),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                ],
            )
        finally:
            os.close(child_in)
            os.close(child_out)

    def read_frame(self, timeout: float | None = None) -> bytes:
        """One whole frame (length prefix included); only one is ever in flight."""
        data = b""
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
            if timeout is not None and not select.select([self.rfd], [], [], timeout)[0]:
                raise RuntimeError(f"no reply from pid {self.pid} within {timeout:.0f} s")
            more = os.read(self.rfd, 65536)
            if not more:
                raise RuntimeError(f"pid {self.pid} closed its reply pipe")
            data += more
        return data

    def close(self) -> None:
        """End of input makes both echo loops exit; a child that does not is killed."""
        os.close(self.wfd)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.01)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.rfd)


def ping_pong(
    child: PipeChild,
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
    name: str, child: PipeChild, frame: Callable[[int], bytes], reply: Callable[[int], bytes], cfg: Config
) -> Rows:
    """``name`` and ``name 1 CPU``, alternating, ``cfg.runs`` times each."""
    rows: Rows = {name: [], name + ONE_CPU: []}
    ping_pong(child, frame, reply, cfg.warmup_s)
    for run in range(cfg.runs):
        progress(name, run, cfg.runs)
        rows[name].append(ping_pong(child, frame, reply, cfg.duration_s))
        with pinned([child.pid], cfg.cpu):
            ping_pong(child, frame, reply, cfg.warmup_s)
            rows[name + ONE_CPU].append(ping_pong(child, frame, reply, cfg.duration_s))
    return rows


def floor_raw(cfg: Config) -> Rows:
    child = PipeChild([sys.executable, "-c", RAW_ECHO], dict(os.environ))
    try:
        message = len(PAYLOAD).to_bytes(4, "big") + PAYLOAD.encode("utf-8")
        same = lambda i: message
        return floor_rows("floor-raw", child, same, same, cfg)
    finally:
        child.close()


def floor_pit_runtime(cfg: Config) -> Rows:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), env.get("PYTHONPATH")]))
    child = PipeChild([sys.executable, "-m", "pit", "serve", "pit.examples.echo"], env)
    try:
        ftype = child.read_frame(timeout=WAIT_S)[4]
        if ftype != _frames.READY:
            raise RuntimeError(f"the worker's first frame is 0x{ftype:02x}, not READY")
        # CALL/OK frames whose only varying part is the req_id, built as pitd builds them.
        call = _frames.encode_call(0, "echo", ARGS_JSON)
        ok = _frames.encode_ok(0, ARGS_JSON)
        call_head, call_tail = call[:5], call[13:]
        ok_head, ok_tail = ok[:5], ok[13:]
        pack_id = struct.Struct(">Q").pack
        frame = lambda i: call_head + pack_id(i) + call_tail
        reply = lambda i: ok_head + pack_id(i) + ok_tail
        return floor_rows("floor-pit-runtime", child, frame, reply, cfg)
    finally:
        child.close()


# --- pit: the real daemon ---------------------------------------------------------------


class Pitd:
    """pitd in the foreground with one 2-worker echo pool, in a temporary directory."""

    def __init__(self, bin_dir: Path) -> None:
        self.pitd = bin_dir / "pitd"
        self.pitctl = bin_dir / "pitctl"
        for exe in (self.pitd, self.pitctl):
            if not os.access(exe, os.X_OK):
                raise SystemExit(f"{exe} not found: run `cargo build --release` first")
        self.dir = Path(tempfile.mkdtemp(prefix="pit-bench-"))
        self.control = self.dir / "control.sock"
        spec = self.dir / "pitd.toml"
        spec.write_text(
            "[daemon]\n"
            f"control_socket = {json.dumps(str(self.control))}\n"
            f"call_socket = {json.dumps(str(self.dir / 'call.sock'))}\n"
            "[pools.echo]\n"
            'app = "pit.examples.echo"\n'
            f"python = {json.dumps(sys.executable)}\n"
            f"cwd = {json.dumps(str(PYTHON_DIR))}\n"
            f"size = {POOL_SIZE}\n"
        )
        self.log = open(self.dir / "pitd.log", "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [str(self.pitd), "--config", str(spec)], stdout=subprocess.DEVNULL, stderr=self.log
        )
        self.started: dict[int, str] = {}  # pitd's descendants once the pool is ready

    def ctl(self, *args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.pitctl), "--socket", str(self.control), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_ready(self) -> None:
        """Until both workers are idle; records every process pitd started."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pitd exited with {self.proc.returncode}:\n{self.log_tail()}")
            out = self.ctl("status", "echo", "--json")
            if out.returncode == 0:
                pool = json.loads(out.stdout)["pools"][0]
                idle = [w for w in pool["workers"] if w["state"] == "idle"]
                if pool["state"] == "running" and len(idle) == POOL_SIZE:
                    self.started = _descendants(self.proc.pid)
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the echo pool was not ready within {WAIT_S:.0f} s:\n{self.log_tail()}")

    def bench(self, concurrency: int, duration_s: float) -> Run:
        out = self.ctl(
            "bench", "echo", "--method", "echo", "--args", ARGS_JSON.decode(),
            "--concurrency", str(concurrency), "--duration", f"{round(duration_s * 1000)}ms", "--json",
            timeout=duration_s + WAIT_S,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"pitctl bench failed ({out.returncode}): {out.stderr.strip()}")
        r = json.loads(out.stdout)
        if r["errors"]:
            raise RuntimeError(f"pitctl bench saw {r['errors']} failed calls")
        return {"calls": r["calls"], "seconds": r["duration_s"], **{f: float(r[f]) for f in FIELDS}}

    def stop(self) -> list[str]:
        """Stops pitd (shutdown, then SIGTERM, then SIGKILL) and returns what outlived it."""
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.ctl("shutdown", timeout=10.0)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    self.proc.wait(timeout=WAIT_S)
                    break
                except subprocess.TimeoutExpired:
                    self.proc.send_signal(sig)
            self.proc.wait(timeout=WAIT_S)
        # Its children (the workers and its guard process) must go with it.
        survivors = [f"pid {pid}: {' '.join(a).strip()}" for pid, a in kill_leftovers(self.started).items()]
        self.log.close()
        return survivors

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        text = (self.dir / "pitd.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def pit_rows(cfg: Config) -> tuple[Rows, list[str]]:
    """The ``pit`` rows, and what outlived pitd (nothing, normally)."""
    daemon = Pitd(cfg.bin_dir)
    rows: Rows = {f"pit c={c}": [] for c in PIT_CONCURRENCY}
    rows["pit c=1" + ONE_CPU] = []
    try:
        daemon.wait_ready()
        daemon.bench(PIT_CONCURRENCY[-1], cfg.warmup_s)
        for run in range(cfg.runs):
            for c in PIT_CONCURRENCY:
                progress(f"pit c={c}", run, cfg.runs)
                rows[f"pit c={c}"].append(daemon.bench(c, cfg.duration_s))
            with pinned([daemon.proc.pid, *daemon.started], cfg.cpu):
                daemon.bench(1, cfg.warmup_s)
                rows["pit c=1" + ONE_CPU].append(daemon.bench(1, cfg.duration_s))
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


def python_pool_rows(name: str, submit: Callable[[Callable[[object], None]], None], cfg: Config) -> Rows:
    rows: Rows = {f"{name} c={w}": [] for w in WINDOWS}
    windowed(submit, WINDOWS[-1], cfg.warmup_s)
    for run in range(cfg.runs):
        for w in WINDOWS:
            progress(f"{name} c={w}", run, cfg.runs)
            rows[f"{name} c={w}"].append(windowed(submit, w, cfg.duration_s))
    return rows


def mp_pool_rows(cfg: Config) -> Rows:
    with multiprocessing.Pool(POOL_SIZE) as pool:

        def submit(done: Callable[[object], None]) -> None:
            pool.apply_async(echo, (PAYLOAD,), callback=done, error_callback=done)

        return python_pool_rows("mp.Pool", submit, cfg)


def executor_rows(cfg: Config) -> Rows:
    with concurrent.futures.ProcessPoolExecutor(POOL_SIZE) as ex:

        def submit(done: Callable[[object], None]) -> None:
            def finished(fut: concurrent.futures.Future) -> None:
                error = fut.exception()
                done(error if error is not None else fut.result())

            ex.submit(echo, PAYLOAD).add_done_callback(finished)

        return python_pool_rows("ProcessPoolExecutor", submit, cfg)


# --- report -----------------------------------------------------------------------------


class Config:
    def __init__(self, runs: int, duration_s: float, bin_dir: Path, cpu: int) -> None:
        self.runs = runs
        self.duration_s = duration_s
        self.warmup_s = min(0.5, duration_s / 4)
        self.bin_dir = bin_dir
        self.cpu = cpu  # where the "1 CPU" rows run


ROW_ORDER = (
    "floor-raw",
    "floor-pit-runtime",
    "pit c=1",
    "pit c=2",
    "pit c=4",
    "mp.Pool c=1",
    "mp.Pool c=64",
    "ProcessPoolExecutor c=1",
    "ProcessPoolExecutor c=64",
    "floor-raw" + ONE_CPU,
    "floor-pit-runtime" + ONE_CPU,
    "pit c=1" + ONE_CPU,
)


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


def print_table(medians: dict[str, Run]) -> None:
    width = max(len(n) for n in medians) + 2
    print(f"\n{'':<{width}}{'calls/s':>10}{'p50 µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'max µs':>10}")
    for name in ROW_ORDER:
        m = medians[name]
        if name == ROW_ORDER[9]:
            print(f"{'(every process of the row pinned to one CPU)':<{width}}")
        cells = "".join(f"{fmt_us(m[f]):>10}" for f in FIELDS[1:])
        print(f"{name:<{width}}{m['calls_per_s']:>10.0f}{cells}")


def ratios(medians: dict[str, Run]) -> dict[str, dict[str, object]]:
    pit_name, pit_cps = best(medians, "pit ")
    mp_name, mp_cps = best(medians, "mp.Pool")
    out: dict[str, dict[str, object]] = {
        "throughput": {
            "what": f"{pit_name} / {mp_name} calls/s",
            "value": pit_cps / mp_cps,
            "target": ">= 2",
            "met": pit_cps / mp_cps >= 2.0,
        },
    }
    for key, suffix in (("latency", ""), ("latency_one_cpu", ONE_CPU)):
        pit_p50 = medians["pit c=1" + suffix]["p50_us"]
        floor_p50 = medians["floor-pit-runtime" + suffix]["p50_us"]
        out[key] = {
            "what": f"pit c=1{suffix} / floor-pit-runtime{suffix} p50",
            "value": pit_p50 / floor_p50,
            "target": "<= 2.5",
            "met": pit_p50 / floor_p50 <= 2.5,
        }

    print()
    t = out["throughput"]
    print(
        f"throughput  {t['what']}: {pit_cps:.0f} / {mp_cps:.0f} = {t['value']:.2f}x"
        f"  (target >= 2x: {'met' if t['met'] else 'NOT met'})"
    )
    for label, key, suffix in (("latency", "latency", ""), ("", "latency_one_cpu", ONE_CPU)):
        r = out[key]
        pit_p50 = medians["pit c=1" + suffix]["p50_us"]
        floor_p50 = medians["floor-pit-runtime" + suffix]["p50_us"]
        print(
            f"{label:<12}{r['what']}: {fmt_us(pit_p50)} / {fmt_us(floor_p50)} µs = {r['value']:.2f}x"
            f"  (target <= 2.5x: {'met' if r['met'] else 'NOT met'})"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per row; the table shows medians (default 3)"
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s per row")
    parser.add_argument(
        "--json", metavar="FILE", help="also write every figure (each run, medians, ratios) here"
    )
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=REPO / "target" / "release",
        help="directory holding pitd and pitctl (default: this repository's target/release)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.duration = 1, 1.0
    if not 1 <= args.runs <= 20 or not 0.1 <= args.duration <= 60:
        parser.error("--runs must be 1..20 and --duration 0.1..60 seconds")
    usable = sorted(os.sched_getaffinity(0))
    cfg = Config(args.runs, args.duration, args.bin_dir, cpu=usable[-1])

    info: dict[str, object] = {
        "cores": os.cpu_count(),
        "usable_cores": len(usable),
        "one_cpu_rows_on": cfg.cpu,
        "python_version": platform.python_version(),
        "python": sys.executable,
        "mp_start_method": multiprocessing.get_start_method(),
        "pitd": str(cfg.bin_dir / "pitd"),
        "pool_size": POOL_SIZE,
        "payload": PAYLOAD,
        "runs": cfg.runs,
        "duration_s": cfg.duration_s,
    }
    print(f"cores: {os.cpu_count()} ({len(usable)} usable here)")
    print(f"python: {platform.python_version()}, {sys.executable} (driver, floors, pit workers, pools)")
    print(
        f"pitd: {cfg.bin_dir / 'pitd'} with {POOL_SIZE} workers; multiprocessing start method: {info['mp_start_method']}"
    )
    print(
        f"each row: 32-character string echo, median of {cfg.runs} run(s) of {cfg.duration_s:g} s", flush=True
    )

    started = time.monotonic()
    cpu_use = CpuUse()
    runs: Rows = {}
    runs.update(floor_raw(cfg))
    runs.update(floor_pit_runtime(cfg))
    pit, survivors = pit_rows(cfg)
    runs.update(pit)
    runs.update(mp_pool_rows(cfg))
    runs.update(executor_rows(cfg))
    info["cpu_use"] = use = cpu_use.summary()
    medians = {name: median_row(runs[name]) for name in ROW_ORDER}

    print_table(medians)
    info["ratios"] = ratios(medians)
    info["seconds"] = time.monotonic() - started
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
        with open(args.json, "w") as f:
            json.dump({"info": info, "medians": medians, "runs": runs, "survivors": survivors}, f, indent=2)
            f.write("\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
