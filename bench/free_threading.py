#!/usr/bin/env python3
"""Free-threaded CPython against the same version with the GIL, for CPU-bound pools: one
worker with one call at a time, one worker running two calls on two threads
(``concurrency = 2``, a sync handler), and two workers; calls/s and the pool's PSS.

The interpreters are CPython 3.13 built twice from the same source (``bench/pythons.py``,
``pitbench/cpython.py``): ``target/python-ft`` (``--disable-gil``) and ``target/python-gil``
(the default build). A full run builds the ones missing (3 to 12 minutes each on 2 cores);
``--quick`` builds nothing: without the GIL build it runs the free-threaded one with
``PYTHON_GIL=1`` in that column (the row says so), and without either it skips, saying why.
``--ft`` and ``--gil`` take other interpreters.

The rows, each on both builds, each with a fresh pitd in a temporary directory and one
pool (no preload, ``memory_metric = "pss"``):

``spin``
    ``bench/apps/spin_app.py``: a pure-Python loop of ``--spin`` (100,000) iterations a
    call, no I/O, nothing that releases the GIL.
``model``
    ``bench/apps/model_app.py``: the module builds a dict of 1,500,000 ints at import (a PSS
    of about 190 MiB, 235 on the free-threaded build) and a call reads ``--reads``
    (20,000) entries of it at pseudo-random keys.

Each with the pool as 1 worker x ``concurrency = 1``, 1 worker x ``concurrency = 2`` (the
handler on the worker's 2 threads) and 2 workers x 1. The load is ``pitctl bench -c 2``
(two calls in flight all the time, each on its own connection) for ``--seconds`` (5; quick:
2) after a warm-up of 1 s; a full run repeats every row ``--runs`` times (3; quick: 1),
the rows of a run interleaved across the builds, and gives the medians.

Figures per row: calls/s and p50 latency (``pitctl bench``); the workers' CPU time (utime +
stime of every thread) over the load, per call and per second of load (cores kept busy: a
worker's threads running at once take more than one); the pool's PSS, pitd's own sum over
its workers (status JSON ``memory``, sampled every 500 ms, the last sample of the run,
under load); the workers' ``gil_enabled`` as status shows it. Then one more row: ``spin`` 1 x 2
on the free-threaded build with an app that imports an extension turning its GIL back on
(``bench/apps/gil_extension.py``, CPython's test module ``_testsinglephase_check_cache_first``):
its calls/s, and the ``GIL_REENABLED`` warning pitd shows in the pool's status.

Every process the script starts is stopped; it exits 1 if one outlives its pitd.

Usage::

    cargo build --release --bins
    python3 bench/pythons.py              # once: both interpreters into target/
    python3 bench/free_threading.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from pitbench import cpython, specs, stats
from pitbench.daemon import PitdProcess
from pitbench.paths import APPS, BIN_DIR
from pitbench.procfs import cpu_seconds
from pitbench.report import columns, loadavg, progress

POOL = "ft"
WAIT_S = 120.0
MIB = 1024 * 1024
WARMUP_S = 1.0
CALLERS = 2


class Config(NamedTuple):
    key: str
    label: str
    size: int
    concurrency: int


CONFIGS = [
    Config("1x1", "1 worker x 1", 1, 1),
    Config("1x2", "1 worker x 2 threads", 1, 2),
    Config("2x1", "2 workers x 1", 2, 1),
]


class Workload(NamedTuple):
    key: str
    app: str
    method: str
    label: str


class Interpreter(NamedTuple):
    key: str
    label: str
    python: str
    env: dict[str, str]


class Pitd(PitdProcess):
    """A release pitd in the foreground with one pool ``ft``."""

    tail_lines = 15
    wait_s = WAIT_S

    def __init__(
        self, bin_dir: Path, interp: Interpreter, app: str, config: Config, env: dict[str, str]
    ) -> None:
        super().__init__(bin_dir, "pit-free-threading-")
        self.require_binaries()
        self.size = config.size
        pool: dict[str, specs.Value] = {
            "app": app,
            "python": interp.python,
            "size": config.size,
            "concurrency": config.concurrency,
            "cwd": str(APPS),
            "env": specs.pit_env(**interp.env, **env),
            "memory_metric": "pss",
            "startup_timeout": "60s",
        }
        spec = self.spec_head(monitor_interval="500ms") + specs.table(f"pools.{POOL}", pool)
        self.start(spec)

    def bench(self, method: str, args: str, seconds: float) -> dict[str, Any]:
        out = self.ctl(
            "bench",
            POOL,
            "--method",
            method,
            "--args",
            args,
            "--concurrency",
            str(CALLERS),
            "--duration",
            f"{round(seconds * 1000)}ms",
            "--json",
            timeout=seconds + WAIT_S,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pitctl bench failed ({out.returncode}): {out.stderr.strip()}")
        r: dict[str, Any] = json.loads(out.stdout)
        if r["errors"]:
            raise RuntimeError(f"pitctl bench saw {r['errors']} failed calls")
        return r

    def stop(self, wait_s: float | None = None) -> list[str]:
        left = super().stop(wait_s)
        self.cleanup()
        return left


def measure(
    bin_dir: Path,
    interp: Interpreter,
    work: Workload,
    config: Config,
    args: str,
    seconds: float,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """One row: the pool started, warmed up, loaded for ``seconds``; its figures."""
    d = Pitd(bin_dir, interp, work.app, config, env or {})
    try:
        d.wait_workers({POOL: config.size})
        d.bench(work.method, args, WARMUP_S)
        pids = [w["pid"] for w in d.pool(POOL)["workers"]]
        cpu0 = sum(cpu_seconds(pid) for pid in pids)
        r = d.bench(work.method, args, seconds)
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
        pool = d.pool(POOL)
        d.remember()
        memory = pool.get("memory") or {}
        row = {
            "calls_per_s": float(r["calls_per_s"]),
            "p50_ms": float(r["p50_us"]) / 1000,
            "p99_ms": float(r["p99_us"]) / 1000,
            "calls": r["calls"],
            # The workers' CPU (utime + stime, every thread) over the load: per call, and
            # as cores kept busy. Unlike calls/s, the first hardly moves with other load on
            # the machine; the second shows whether a worker's threads ran at once.
            "cpu_ms_per_call": 1000 * cpu / max(int(r["calls"]), 1),
            "cores_busy": cpu / float(r["duration_s"]),
            "pss_mib": float(memory.get("memory_bytes", 0)) / MIB,
            "memory_complete": bool(memory.get("complete")),
            "gil_enabled": [w.get("gil_enabled") for w in pool["workers"]],
            "warnings": list(pool.get("warnings") or []),
        }
    finally:
        survivors = d.stop()
    return row, survivors


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row = dict(runs[-1])
    for k in ("calls_per_s", "p50_ms", "p99_ms", "pss_mib", "cpu_ms_per_call", "cores_busy"):
        row[k] = stats.median(r[k] for r in runs)
    row["calls_per_s_runs"] = [r["calls_per_s"] for r in runs]
    return row


def interpreters(args: argparse.Namespace) -> tuple[list[Interpreter], str | None]:
    """The two interpreters compared, or none and why (a quick run without the builds)."""
    ft = args.ft or cpython.built(cpython.FREE_THREADED)
    gil = args.gil or cpython.built(cpython.WITH_GIL)
    if not args.quick:
        try:
            ft = ft or cpython.ensure(cpython.FREE_THREADED)
            gil = gil or cpython.ensure(cpython.WITH_GIL)
        except cpython.Unavailable as e:
            raise SystemExit(f"cannot build CPython here: {e}") from None
    if ft is None:
        return [], (
            f"no free-threaded build at {cpython.FREE_THREADED.python} "
            "(python3 bench/pythons.py builds it; a quick run builds nothing)"
        )
    found = [Interpreter("ft", "free-threaded", str(ft), {})]
    if gil is not None:
        found.append(Interpreter("gil", "with the GIL", str(gil), {}))
    else:
        found.append(Interpreter("gil", "free-threaded, PYTHON_GIL=1", str(ft), {"PYTHON_GIL": "1"}))
    return found, None


def version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() or "?"


def gil_word(row: dict[str, Any]) -> str:
    seen = set(row["gil_enabled"])
    if seen == {False}:
        return "off"
    if seen == {True}:
        return "on"
    return "/".join(str(x) for x in row["gil_enabled"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s rows, building nothing")
    parser.add_argument("--seconds", type=float, help="the load of each row (default 5, 2 with --quick)")
    parser.add_argument("--runs", type=int, help="runs of every row, medians shown (default 3; quick: 1)")
    parser.add_argument("--spin", type=int, default=100_000, help="iterations of spin's loop per call")
    parser.add_argument("--reads", type=int, default=20_000, help="model entries read per call")
    parser.add_argument("--entries", type=int, default=1_500_000, help="entries of the model")
    parser.add_argument("--ft", help="the free-threaded interpreter (default: target/python-ft)")
    parser.add_argument("--gil", help="the interpreter with the GIL (default: target/python-gil)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    args = parser.parse_args(argv)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    runs = args.runs or (1 if args.quick else 3)

    load_before = os.getloadavg()
    interps, skipped = interpreters(args)
    if skipped:
        print(f"# free_threading: skipped: {skipped}")
        if args.json:
            Path(args.json).write_text(json.dumps({"skipped": skipped}, indent=1) + "\n")
        return 0
    workloads = [
        Workload("spin", "spin_app", "spin", f"spin (pure-Python loop, {args.spin:,} iterations)"),
        Workload("model", "model_app", "lookup", f"model ({args.entries:,} entries, {args.reads:,} reads)"),
    ]
    call_args = {"spin": json.dumps({"n": args.spin}), "model": json.dumps({"reads": args.reads})}
    model_env = {"PIT_BENCH_MODEL_ENTRIES": str(args.entries)}
    versions = {i.key: version(i.python) for i in interps}
    print(
        f"# free_threading: {os.cpu_count()} cores, load {loadavg(load_before)}, "
        + "; ".join(f"{i.label}: CPython {versions[i.key]} at {i.python}" for i in interps)
        + f"; pitctl bench -c {CALLERS}, {seconds:g} s per row, {runs} run(s)",
        flush=True,
    )

    results: dict[str, list[dict[str, Any]]] = {}
    survivors: list[str] = []
    started = time.monotonic()
    for run in range(runs):
        for work in workloads:
            for config in CONFIGS:
                for interp in interps:
                    key = f"{work.key} {config.key} {interp.key}"
                    progress(f"run {run + 1}/{runs}: {work.key}, {config.label}, {interp.label} ...")
                    env = model_env if work.key == "model" else {}
                    row, left = measure(args.bin_dir, interp, work, config, call_args[work.key], seconds, env)
                    results.setdefault(key, []).append(row)
                    survivors += left
    progress("spin, 1 worker x 2 threads, free-threaded, an extension turning the GIL back on ...")
    reenabled, left = measure(
        args.bin_dir,
        interps[0],
        workloads[0],
        CONFIGS[1],
        call_args["spin"],
        seconds,
        {"PIT_BENCH_GIL_MODULE": "1"},
    )
    survivors += left
    load_after = os.getloadavg()
    rows = {key: median_row(r) for key, r in results.items()}

    head = ["workload", "pool"]
    for interp in interps:
        head += [f"{interp.label}: calls/s", "p50 ms", "CPU ms/call", "cores", "PSS MiB", "GIL"]
    lines = []
    for work in workloads:
        for config in CONFIGS:
            cells: list[str] = [work.key, config.label]
            for interp in interps:
                r = rows[f"{work.key} {config.key} {interp.key}"]
                cells += [
                    f"{r['calls_per_s']:.1f}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['cpu_ms_per_call']:.1f}",
                    f"{r['cores_busy']:.2f}",
                    f"{r['pss_mib']:.0f}",
                    gil_word(r),
                ]
            lines.append(tuple(cells))
    columns(head, lines)
    print(
        f"{'spin':<8}  1 worker x 2 threads, free-threaded + {cpython.GIL_MODULE}: "
        f"{reenabled['calls_per_s']:.1f} calls/s, {reenabled['cores_busy']:.2f} cores, "
        f"GIL {gil_word(reenabled)}"
    )
    for w in reenabled["warnings"]:
        print(f"  status warning: {w}")
    print()
    for work in workloads:
        print(f"{work.key}: {work.label}")
    for interp in interps:
        one = rows[f"spin 1x1 {interp.key}"]["calls_per_s"]
        two = rows[f"spin 1x2 {interp.key}"]["calls_per_s"]
        procs = rows[f"spin 2x1 {interp.key}"]["calls_per_s"]
        print(
            f"spin, {interp.label}: 1 x 2 threads / 1 x 1 = {two / one:.2f}x, "
            f"2 workers / 1 x 1 = {procs / one:.2f}x"
        )
    for interp in interps:
        threads = rows[f"model 1x2 {interp.key}"]
        procs = rows[f"model 2x1 {interp.key}"]
        print(
            f"model, {interp.label}: 1 x 2 threads {threads['calls_per_s']:.1f} calls/s in "
            f"{threads['pss_mib']:.0f} MiB, 2 workers {procs['calls_per_s']:.1f} calls/s in "
            f"{procs['pss_mib']:.0f} MiB"
        )
    print(
        f"calls/s and p50: pitctl bench -c {CALLERS} over {seconds:g} s (after {WARMUP_S:g} s of warm-up); "
        "PSS: status JSON memory (memory_metric pss), workers summed, sampled under load;\n"
        "CPU ms/call: the workers' utime + stime over the load per call; cores: the same per second "
        f"of load; medians of {runs} run(s)"
    )
    took = time.monotonic() - started
    print(f"load average before {loadavg(load_before)}, after {loadavg(load_after)}; {took:.0f} s")
    if survivors:
        print("processes outlived pitd (killed now):", *survivors, sep="\n  ")
    if args.json:
        figures = {
            "info": {
                "cores": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "interpreters": {
                    i.key: {"label": i.label, "python": i.python, "version": versions[i.key], "env": i.env}
                    for i in interps
                },
                "seconds": seconds,
                "runs": runs,
                "callers": CALLERS,
                "spin": args.spin,
                "reads": args.reads,
                "entries": args.entries,
            },
            "rows": rows,
            "runs": results,
            "gil_reenabled": reenabled,
            "survivors": survivors,
        }
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
