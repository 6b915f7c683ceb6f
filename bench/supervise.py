#!/usr/bin/env python3
"""Supervisor figures of pitd: restart latency, status round trip, pitd's own footprint.

Everything is measured in one run of this script against the release ``pitd``, with one
interpreter (the one running this script, ``sys.executable``, printed in the header) for
the workers and the Python start-up reference. Each daemon gets a spec in a temporary
directory (``control_socket`` and ``call_socket`` there, ``monitor_interval = "1s"``) and
supervise-only pools (``protocol = "none"``) of a tiny worker script that records the
monotonic clock at its first line, prints ``up`` to stdout and sleeps. pitd is started
with ``--config SPEC``, the script waits (``pitctl status --json``, bounded) until every
worker is idle, measures, stops pitd with SIGTERM and checks that none of the processes it
started (workers and its guard process) outlive it.

Restart after ``kill -9``
    Two pools of 3 workers in one daemon: ``restart.initial = "1ms"`` (so the backoff does
    not dominate) and the default ``restart.initial`` (100 ms). Both set
    ``restart.reset_after = "1s"`` and only workers up for more than that are killed, so
    every kill is a first crash (with the default ``reset_after`` of 60 s, kills seconds
    apart would double the backoff each time). The oldest idle worker gets SIGKILL, then
    the replacement is watched in one of two ways, alternating from kill to kill so that one
    watcher never slows the other: (a) ``status`` requests on the control socket back to
    back until a new worker id with a pid is ``idle``; (b) polling ``/proc`` until a new
    child of pitd has this pool's worker script in its cmdline (it has been exec'd). After
    either, (c) is read from the replacement's own record: when its Python reached the
    script's first line. pitd's events (``worker_exited``, ``worker_started``; timestamps
    of 1 ms resolution) split the time into "kill -> exit handled" and "exit handled ->
    replacement exec'd" (backoff, fork, exec). For comparison, ``python -c pass`` is
    timed from spawn to exit. The target (replacement running within Python's start-up +
    5 ms) is checked on (c) against that and on (b), pitd's own share, against 5 ms.
Status round trip
    A new connection to the control socket per request (as ``pitctl`` does), one frame
    ``{"cmd":"status","pool":null}`` (4-byte big-endian length + JSON), the whole reply
    frame read: p50 and p99 (``pitbench.stats``) per run, with 8, 64 and 256 workers. Also
    the wall time of a ``pitctl status --json`` process (process start included).
pitd's footprint
    ``VmRSS`` of the pitd process alone (not its workers, not the guard, which is shown on
    its own row) with 8, 64 and 256 sleeping workers, read after start-up has settled and
    the other measurements are done; CPU time (utime + stime from ``/proc/PID/stat``) pitd
    spends over 10 s with nothing asked of it, with 64 and 256 workers (its monitor samples
    every worker's process tree once a second).

Each figure is measured ``--runs`` times (a fresh set of daemons per run); the table shows
the median over the runs and the range of the per-run values. Every loop is bounded by a
count and a deadline. Linux only (pitd is). Usage::

    cargo build --release
    python3 bench/supervise.py [--runs N] [--quick] [--no-256] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pitbench import specs, stats, wire
from pitbench.daemon import PitdProcess
from pitbench.events import event_time
from pitbench.paths import BIN_DIR
from pitbench.procfs import ChildWatch, argv, cpu_seconds, descendants, status_kib
from pitbench.report import fmt_ms, loadavg, progress

PYTHON = sys.executable  # absolute path: the workers and `python -c pass` use this one
WAIT_S = 30.0  # bound on start-up, replies, replacements and shutdown

RESTART_POOL_SIZE = 3
#: Each restart pool's ``[restart]`` table.
RESTART_POOLS: dict[str, dict[str, specs.Value]] = {
    "initial-1ms": {"initial": "1ms", "reset_after": "1s"},
    "initial-default": {"reset_after": "1s"},
}
VICTIM_MIN_AGE_S = 1.3  # > reset_after (1 s): each kill is a first crash, not a failed start

# The supervised worker: argv is [script, pool, stamp_dir]. It records the monotonic clock
# (the system-wide CLOCK_MONOTONIC, the same clock this script reads) at its first line.
WORKER = """\
import time
T0 = time.monotonic_ns()
import os, sys
print("up", flush=True)
if len(sys.argv) > 2 and sys.argv[2]:
    path = os.path.join(sys.argv[2], str(os.getpid()))
    with open(path + ".tmp", "w") as f:
        f.write(f"{T0}\\n")
    os.rename(path + ".tmp", path)
while True:
    time.sleep(3600)
"""


# --- pitd -------------------------------------------------------------------------------


class Pitd(PitdProcess):
    """A pitd in the foreground with the given pools, spec and sockets in a temporary dir."""

    wait_s = WAIT_S

    def __init__(
        self, bin_dir: Path, pools: dict[str, tuple[int, dict[str, specs.Value]]], stamps: bool = False
    ) -> None:
        """``pools``: name -> (size, the pool's ``[restart]`` table, empty for the default)."""
        super().__init__(bin_dir, "pit-supervise-")
        self.script = str(self.dir / "worker.py")
        Path(self.script).write_text(WORKER)
        self.stamp_dir = self.dir / "stamps"
        self.stamp_dir.mkdir()
        self.sizes = {name: size for name, (size, _) in pools.items()}
        spec = self.spec_head(monitor_interval="1s")
        for name, (size, restart) in pools.items():
            command = [PYTHON, self.script, name, str(self.stamp_dir) if stamps else ""]
            spec += specs.table(f"pools.{name}", {"command": command, "protocol": "none", "size": size})
            if restart:
                spec += specs.table(f"pools.{name}.restart", restart)
        self.start(spec)

    def stop(self, wait_s: float | None = None) -> list[str]:
        """SIGTERM (SIGKILL after WAIT_S), then what outlived pitd (killed, by pid)."""
        survivors = super().stop(wait_s)
        if self.proc.returncode != 0:
            survivors.append(f"(pitd exited with {self.proc.returncode}, not 0)")
        return survivors


def with_pitd(
    bin_dir: Path,
    pools: dict[str, tuple[int, dict[str, specs.Value]]],
    survivors: list[str],
    body: Callable[[Pitd], Any],
    stamps: bool = False,
) -> Any:
    daemon = Pitd(bin_dir, pools, stamps)
    try:
        daemon.wait_workers(daemon.sizes)
        return body(daemon)
    finally:
        survivors.extend(daemon.stop())
        daemon.cleanup()


# --- measurements -----------------------------------------------------------------------


def python_startup_ms(n: int) -> float:
    """Median wall time of ``python -c pass`` (spawn to exit)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([PYTHON, "-c", "pass"], check=True, timeout=WAIT_S)
        times.append(time.perf_counter() - t0)
    return stats.median(times) * 1e3


def status_round_trips(d: Pitd, n: int) -> dict[str, float]:
    """p50 and p99 (ms) of ``n`` status requests, each on a new connection."""
    d.status()
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        wire.request_bytes(d.control, {"cmd": "status", "pool": None}, WAIT_S)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    p50, p99 = stats.percentiles(times, [0.5, 0.99])
    return {"p50": p50, "p99": p99}


def pitctl_wall_ms(d: Pitd, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        out = d.ctl("status", "--json")
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise RuntimeError(f"pitctl status failed: {out.stderr.strip()}")
    return stats.median(times) * 1e3


def kill_one(d: Pitd, pool: str, mode: str) -> dict[str, float]:
    """SIGKILL the oldest idle worker of ``pool``; ms from the kill to each milestone."""
    size = d.sizes[pool]
    deadline = time.monotonic() + WAIT_S
    victim = None
    for _ in range(10_000):
        workers = [w for w in d.status(pool)["pools"][0]["workers"] if w["state"] == "idle" and w["pid"]]
        if len(workers) == size:
            oldest = max(workers, key=lambda w: w["age_s"])
            if oldest["age_s"] >= VICTIM_MIN_AGE_S:
                victim = oldest
                break
            time.sleep(min(0.5, VICTIM_MIN_AGE_S - oldest["age_s"] + 0.01))
        else:
            time.sleep(0.01)
        if time.monotonic() > deadline:
            break
    if victim is None:
        raise RuntimeError(f"no worker of {pool} old enough to kill:\n{d.log_tail()}")
    known = {w["id"] for w in workers}
    watch = (
        ChildWatch(d.pid, lambda a: len(a) > 2 and a[1] == d.script and a[2] == pool)
        if mode == "proc"
        else None
    )

    wall0 = time.time_ns()
    t0 = time.monotonic_ns()
    os.kill(victim["pid"], signal.SIGKILL)
    new_pid, seen_ns = None, 0
    polls = 0
    while polls < 1_000_000 and time.monotonic_ns() - t0 < WAIT_S * 1e9:
        polls += 1
        if watch is not None:
            new_pid = watch.poll()
        else:
            for w in d.status(pool)["pools"][0]["workers"]:
                if w["id"] not in known and w["pid"] and w["state"] == "idle":
                    new_pid = w["pid"]
                    break
        if new_pid is not None:
            seen_ns = time.monotonic_ns()
            break
        os.sched_yield()
    if new_pid is None:
        raise RuntimeError(f"no replacement in {pool} within {WAIT_S:.0f} s:\n{d.log_tail()}")

    stamp = d.stamp_dir / str(new_pid)
    up_ns = None
    for _ in range(int(WAIT_S / 0.002)):
        if stamp.exists():
            up_ns = int(stamp.read_text())
            break
        time.sleep(0.002)
    if up_ns is None:
        raise RuntimeError(f"the replacement (pid {new_pid}) never reached its first line")

    out = {"seen_ms": (seen_ns - t0) / 1e6, "up_ms": (up_ns - t0) / 1e6}
    if mode == "proc":
        out["exec_to_up_ms"] = (up_ns - seen_ns) / 1e6
    events = d.events()
    exited = [e for e in events if e["event"] == "worker_exited" and e.get("worker") == victim["id"]]
    started = [e for e in events if e["event"] == "worker_started" and e.get("pid") == new_pid]
    if exited and started:
        out["to_exit_ms"] = (event_time(exited[-1]) - wall0 / 1e9) * 1e3
        out["exit_to_start_ms"] = (event_time(started[-1]) - event_time(exited[-1])) * 1e3
    return out


def restart_run(d: Pitd, kills: int) -> dict[str, float]:
    """Per pool, ``kills`` kills alternating watchers; per-run medians of each figure."""
    samples: dict[str, dict[str, list[float]]] = {p: {} for p in RESTART_POOLS}
    for i in range(kills):
        mode = "status" if i % 2 == 0 else "proc"
        for pool in RESTART_POOLS:
            r = kill_one(d, pool, mode)
            s = samples[pool]
            s.setdefault("a_status" if mode == "status" else "b_proc", []).append(r["seen_ms"])
            s.setdefault("c_up", []).append(r["up_ms"])
            for key in ("to_exit_ms", "exit_to_start_ms", "exec_to_up_ms"):
                if key in r:
                    s.setdefault(key, []).append(r[key])
    d.remember()
    return {f"{pool}.{k}": stats.median(v) for pool, s in samples.items() for k, v in s.items()}


def footprint_run(d: Pitd, n_workers: int, status_n: int, pitctl_n: int, idle_s: float) -> dict[str, float]:
    time.sleep(2.0)  # let start-up settle: two monitor rounds
    out: dict[str, float] = {}
    rtt = status_round_trips(d, status_n)
    out[f"status_p50_{n_workers}"], out[f"status_p99_{n_workers}"] = rtt["p50"], rtt["p99"]
    out[f"pitctl_{n_workers}"] = pitctl_wall_ms(d, pitctl_n)
    if idle_s > 0:
        time.sleep(1.0)
        cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
        time.sleep(idle_s)
        cpu1, t1 = cpu_seconds(d.pid), time.monotonic()
        out[f"cpu_ms_{n_workers}"] = (cpu1 - cpu0) * 1e3
        out[f"cpu_pct_{n_workers}"] = (cpu1 - cpu0) / (t1 - t0) * 100
    out[f"rss_{n_workers}"] = status_kib(d.pid, "VmRSS") * 1024 / 1e6
    out[f"hwm_{n_workers}"] = status_kib(d.pid, "VmHWM") * 1024 / 1e6
    guards = [p for p in descendants(d.pid) if argv(p)[:1] != [PYTHON]]
    if guards:
        out["guard_rss"] = status_kib(guards[0], "VmRSS") * 1024 / 1e6
    d.remember()
    return out


# --- report -----------------------------------------------------------------------------


def report(runs: list[dict[str, float]], sizes: list[int], idle_s: float) -> dict[str, Any]:
    keys = sorted({k for r in runs for k in r})
    med = {k: stats.median([r[k] for r in runs if k in r]) for k in keys}
    lo = {k: min(r[k] for r in runs if k in r) for k in keys}
    hi = {k: max(r[k] for r in runs if k in r) for k in keys}
    verdicts: dict[str, Any] = {}
    rows: list[tuple[str, str, str, str, str]] = []

    def row(
        label: str,
        key: str | None,
        unit: str = "ms",
        p99: str | None = None,
        target: str = "",
        ok: bool | None = None,
        fmt: Callable[[float], str] = fmt_ms,
    ) -> None:
        if key is None:
            rows.append((label, "", "", "", ""))
            return
        if key not in med:
            rows.append((label, "-", "", "", target))
            return
        value = f"{fmt(med[key])} {unit}"
        spread = f"{fmt(lo[key])}-{fmt(hi[key])}" if len(runs) > 1 else ""
        p = f"{fmt(med[p99])} {unit}" if p99 else ""
        if ok is not None:
            target = f"{target}: {'met' if ok else 'NOT met'}"
            verdicts[key] = {"value": med[key], "target": target, "met": ok}
        rows.append((label, value, p, spread, target))

    py = med["python_startup"]
    row("python -c pass (spawn to exit)", "python_startup")
    for pool, title in (
        ("initial-1ms", 'restart.initial = "1ms"'),
        ("initial-default", "restart.initial default (100ms)"),
    ):
        rows.append(("", "", "", "", ""))
        row(f"kill -9 -> replacement, {title}", None)
        up = f"{pool}.c_up"
        row("  (a) new worker idle in status", f"{pool}.a_status")
        note = "" if pool == "initial-1ms" else " (the backoff alone is 80-120 ms)"
        row(
            "  (b) new process exec'd (/proc)",
            f"{pool}.b_proc",
            target=f"pitd's share <= 5 ms{note}",
            ok=med.get(f"{pool}.b_proc", 1e9) <= 5,
        )
        row(
            "  (c) its Python at its first line",
            up,
            target=f"<= py start-up + 5 = {fmt_ms(py + 5)} ms{note}",
            ok=med.get(up, 1e9) <= py + 5,
        )
        row("      kill -> exit handled (events)", f"{pool}.to_exit_ms", target="1 ms resolution")
        row(
            "      exit -> replacement exec'd (events)",
            f"{pool}.exit_to_start_ms",
            target="backoff + fork/exec",
        )
        row("      exec'd -> first line, (c)-(b)", f"{pool}.exec_to_up_ms", target="Python start-up")
    rows.append(("", "", "", "", ""))
    row("status round trip, control socket", None)
    for n in sizes:
        row(
            f"  {n} workers",
            f"status_p50_{n}",
            p99=f"status_p99_{n}",
            target="p99 < 5 ms",
            ok=med[f"status_p99_{n}"] < 5,
        )
    row("pitctl status --json (process wall)", None)
    for n in sizes:
        row(f"  {n} workers", f"pitctl_{n}", target="< 5 ms", ok=med[f"pitctl_{n}"] < 5)
    rows.append(("", "", "", "", ""))
    row("pitd RSS (VmRSS, workers excluded)", None)

    def mb(v: float) -> str:
        return f"{v:.1f}"

    for n in sizes:
        target, ok = ("< 10 MB", med[f"rss_{n}"] < 10) if n == 64 else ("", None)
        row(f"  {n} workers", f"rss_{n}", unit="MB", target=target, ok=ok, fmt=mb)
    row("  guard process", "guard_rss", unit="MB", fmt=mb)
    row(f"pitd CPU over {idle_s:g} s idle", None)
    for n in sizes:
        if f"cpu_ms_{n}" in med:
            row(f"  {n} workers", f"cpu_ms_{n}", unit="ms", target=f"= {med[f'cpu_pct_{n}']:.2f} % of a core")

    header = ("figure", "median", "p99", "runs min-max" if len(runs) > 1 else "", "target")
    w0 = max(len(r[0]) for r in [*rows, header]) + 2
    w = [max(len(r[i]) for r in [*rows, header]) + 2 for i in range(1, 4)]
    print()
    for r in [header, *rows]:
        print(f"{r[0]:<{w0}}{r[1]:>{w[0]}}{r[2]:>{w[1]}}{r[3]:>{w[2]}}  {r[4]}".rstrip())
    print()
    print("peers on a 2-core machine: replace a killed worker: supervisord ~1 s, gunicorn ~8 ms;")
    print("answer status: supervisord ~110 ms, gunicorn ~100 ms, uWSGI stats socket ~3 ms")
    return {"medians": med, "min": lo, "max": hi, "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs; the table shows medians (default 5)")
    parser.add_argument("--quick", action="store_true", help="1 run, fewer samples")
    parser.add_argument("--no-256", action="store_true", help="skip the 256-worker daemon")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds of idle CPU measurement (default 10)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write every run's figures here")
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=BIN_DIR,
        help="directory holding pitd and pitctl (default: this repository's target/release)",
    )
    args = parser.parse_args(argv)
    kills, status_n, pitctl_n, py_n = 10, 200, 20, 20
    if args.quick:
        args.runs, kills, status_n, pitctl_n, py_n = 1, 4, 100, 10, 10
    if not 1 <= args.runs <= 20 or not 0 <= args.idle <= 120:
        parser.error("--runs must be 1..20 and --idle 0..120 seconds")
    for exe in ("pitd", "pitctl"):
        if not os.access(args.bin_dir / exe, os.X_OK):
            parser.error(f"{args.bin_dir / exe} not found: run `cargo build --release` first")
    sizes = [8, 64] if args.no_256 else [8, 64, 256]

    version = subprocess.run(
        [str(args.bin_dir / "pitd"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    print(f"cores: {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), load average {loadavg()}")
    print(f"python: {platform.python_version()} at {PYTHON} (this interpreter; workers and `python -c pass`)")
    print(f"pitd: {version or '?'} at {args.bin_dir / 'pitd'}")
    print(
        f"{args.runs} run(s); per run: {kills} kills per restart pool (each watcher on half), "
        f"{status_n} status requests and {pitctl_n} pitctl runs per daemon, "
        f"{py_n} x python -c pass",
        flush=True,
    )

    started = time.monotonic()
    survivors: list[str] = []
    runs: list[dict[str, float]] = []
    daemons = 0
    for run in range(args.runs):
        r: dict[str, float] = {"load1": os.getloadavg()[0]}
        progress(f"run {run + 1}/{args.runs}: python -c pass")
        r["python_startup"] = python_startup_ms(py_n)
        progress(f"run {run + 1}/{args.runs}: restarts")
        pools = {name: (RESTART_POOL_SIZE, extra) for name, extra in RESTART_POOLS.items()}
        r.update(with_pitd(args.bin_dir, pools, survivors, lambda d: restart_run(d, kills), stamps=True))
        daemons += 1
        for n in sizes:
            progress(f"run {run + 1}/{args.runs}: {n} workers")
            idle = args.idle if n >= 64 else 0.0
            fp = with_pitd(
                args.bin_dir,
                {"sleepers": (n, {})},
                survivors,
                functools.partial(
                    footprint_run, n_workers=n, status_n=status_n, pitctl_n=pitctl_n, idle_s=idle
                ),
            )
            daemons += 1
            if n != 8:
                fp.pop("guard_rss", None)
            r.update(fp)
        runs.append(r)

    result = report(runs, sizes, args.idle)
    print()
    if survivors:
        print("processes started by pitd outlived it (killed now):\n  " + "\n  ".join(survivors))
    else:
        print(f"pitd stopped {daemons} times with SIGTERM; none of the processes it started outlived it")
    print(f"total time {time.monotonic() - started:.0f} s, load average now {loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"python": PYTHON, "cores": os.cpu_count(), "runs": runs, **result, "survivors": survivors},
                f,
                indent=2,
            )
            f.write("\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
