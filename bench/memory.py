#!/usr/bin/env python3
"""Predicted and budgeted memory (INTERFACE section 11): ``predict_rss`` against hard
kills, ``max_rss_samples`` against spikes, and a pool's ``memory_budget`` under a leak.

Everything is measured in one run of this script against the release ``pitd`` (each run
below with a fresh pitd in a temporary directory), one run after the other. While a run's
load goes on, a thread of the script takes pitd's status on the control socket every
100 ms (the pool's workers, their pids and states, pitd's own totals) and reads each
worker's memory from ``/proc`` itself: ``VmRSS`` and ``VmHWM`` (its peak) of
``/proc/PID/status``, and in the budget case ``Pss`` of ``/proc/PID/smaps_rollup``.
Recycles are ``worker_recycled`` events (with their ``reason``) from ``pitctl events -f
--json``, followed for the whole run. Calls are made by 64 caller threads sharing one
``pit.Client`` (one connection, pipelined), each calling again as soon as its call
returns; a failed call is one that raised (a worker killed under it fails it: the calls
are not idempotent).

``predict``: hard kills with and without ``predict_rss``
    A pool of 2 workers without ``preload`` serving ``apps/leak_app.py``: its import sleeps
    1 s (``PIT_BENCH_IMPORT_S``, a stand-in for loading a model: a replacement is ready
    about 1.1 s after it starts), and each call keeps 1 MiB (every page written) and then
    sleeps 20 ms, its work: 64 callers keep both workers busy, so each grows by up to
    about 50 MiB/s. ``max_rss`` 300 MiB and ``hard_rss`` 340 MiB: the 40 MiB between them
    take a worker under a second, less than a replacement's start-up alone, so a recycle
    on ``max_rss`` cannot be done before ``hard_rss``. ``monitor_interval`` is the default
    1 s, ``max_surge`` 2 (both workers can be replaced at once: they grow at the same pace
    and cross together). Three runs (``--predict-s`` each, 75 s; ``--quick``: 25 s): without
    ``predict_rss``, with it, and with it and pitd's default ``max_surge = 1`` (the second
    worker's replacement waits for the first's). Figures: hard kills (``worker_recycled``
    reason ``hard_rss``), ``predicted_rss`` and ``max_rss`` recycles, failed calls, the
    pace of the leak (successful calls per second per worker, 1 MiB each), the start-up
    (``worker_started`` -> ``worker_ready``), and every worker's peak RSS (the larger of
    the peaks sampled and its last ``VmHWM``) against ``hard_rss``: how many workers passed
    it, how many of those pitd did not kill, and the least margin left under it by a
    worker recycled gracefully.

``spikes``: ``max_rss_samples``
    One pitd, two pools of 2 workers serving ``apps/spike_app.py``: each worker keeps
    64 MiB (about 80 MiB of RSS with Python), and doubles its RSS for 1 s every 30 s (the
    first 10 s after its start; ``--quick``: every 8 s, the first 3 s after), with
    ``max_rss`` 128 MiB, between the two. One pool has ``max_rss_samples = 3``, the other
    the default 1; ``monitor_interval`` the default 1 s. 4 callers per pool call ``work``
    (20 ms) meanwhile. ``--spikes-s`` (130 s, 4 spikes per first worker; ``--quick``: 20 s):
    recycles per pool, and the spikes the 100 ms sampler saw over ``max_rss``.

``budget``: a pool's PSS against its ``memory_budget``
    A pool of 4 workers serving ``leak_app`` (no import sleep, calls of 1 MiB and 40 ms:
    up to about 25 MiB/s per worker, 100 MiB/s for the pool) with ``memory_metric =
    "pss"``, ``memory_budget`` 512 MiB and ``max_rss`` 160 MiB (4 x 160 MiB is over the
    budget: the budget bites first, and a ``max_rss`` recycle must not cross it with its
    surge). Two runs (``--budget-s`` each, 60 s; ``--quick``: 15 s), with
    ``monitor_interval`` 100 ms and the default 1 s. The pool's PSS is the sum of its
    workers' ``Pss`` as read by the script every 100 ms (every state, draining and
    stopping workers included, until they are gone): its maximum, the share of samples
    over the budget, the largest and the mean overshoot, the longest stretch over it;
    pitd's own view (the pool's ``memory.memory_bytes`` in status, as of its last
    samples); recycles by reason; how long a ``memory_budget`` recycle takes to free its
    worker's memory (``worker_recycled`` -> ``worker_exited``), and the most workers
    draining at once.

Targets: with ``predict_rss``, 0 hard kills and 0 failed calls; with ``max_rss_samples =
3``, 0 recycles; the pool's PSS never over its budget (sampled every 100 ms). The
pictures, one per case (``--svg-dir``, default ``bench/``): ``memory-predict.svg``,
``memory-spikes.svg``, ``memory-budget.svg``.

Each run stops early when the memory of its pools passes half of what was available when
the script started (or 4 GiB). Every process the script starts is stopped; it exits 1 if
one outlives its pitd.

Linux only. Usage::

    cargo build --release --bins
    python3 bench/memory.py [--quick] [--only predict,spikes,budget] [--json FILE] [--svg-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

from pitbench import report, specs, stats, svg
from pitbench.daemon import PitdProcess
from pitbench.events import Event, event_time
from pitbench.paths import APPS, BENCH, BIN_DIR
from pitbench.procfs import mem_available

import pit

MIB = 1024 * 1024
CALLERS = 64
SAMPLE_EVERY_S = 0.1
WAIT_S = 60.0  # bound on every start-up and shutdown wait
CALL_TIMEOUT_S = 60.0
MAX_CALLS = 200_000  # per caller, on top of the time bound
CASES = ("predict", "spikes", "budget")

# predict
PREDICT_SIZE = 2
PREDICT_IMPORT_S = 1.0
PREDICT_WORK_MS = 20
PREDICT_MAX_RSS = 300 * MIB
PREDICT_HARD_RSS = 340 * MIB
# spikes
SPIKE_SIZE = 2
SPIKE_BASE_MIB = 64
SPIKE_MAX_RSS = 128 * MIB
SPIKE_CALLERS = 4
SPIKE_WORK_MS = 20
# budget
BUDGET_SIZE = 4
BUDGET_WORK_MS = 40
BUDGET = 512 * MIB
BUDGET_MAX_RSS = 160 * MIB

REASON_COLORS = {
    "max_rss": svg.RED,
    "hard_rss": "#000000",
    "predicted_rss": "#2ca02c",
    "memory_budget": "#9467bd",
}
WORKER_COLORS = ("#1f77b4", "#ff7f0e", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f")

#: One call: pool, sent and returned (seconds since the load started), its error or None.
Call = tuple[str, float, float, Optional[str]]


class Load(NamedTuple):
    """Callers of one pool: ``callers`` threads calling ``method(args)`` back to back."""

    pool: str
    method: str
    args: Any
    callers: int


class Pitd(PitdProcess):
    """One pitd in the foreground, its spec and sockets in a temporary directory."""

    wait_s = WAIT_S

    def __init__(
        self,
        daemon: dict[str, specs.Value | None],
        pools: dict[str, dict[str, specs.Value | None]],
    ) -> None:
        super().__init__(BIN_DIR, "pit-memory-")
        self.require_binaries()
        spec = self.spec_head(shutdown_timeout="20s", **{k: v for k, v in daemon.items() if v is not None})
        for name, keys in pools.items():
            spec += specs.table(f"pools.{name}", keys)
        self.start(spec)


def app_pool(app: str, size: int, env: dict[str, str], **keys: specs.Value | None) -> dict[str, Any]:
    """A pool of ``bench/apps/APP.py`` run by this interpreter, with ``env`` and ``keys``."""
    return {
        "app": app,
        "python": os.path.realpath(sys.executable),
        "cwd": str(APPS),
        "env": specs.pit_env(**env),
        "size": size,
        "startup_timeout": "30s",
        "request_timeout": "60s",
        **keys,
    }


def proc_memory(pid: int, pss: bool) -> dict[str, int] | None:
    """The process's ``rss`` and ``hwm`` (peak RSS) in bytes, and its ``pss`` with
    ``pss``; None once it is gone."""
    got: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    got[line[2:5].lower()] = int(line.split()[1]) * 1024
        if pss:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        got["pss"] = int(line.split()[1]) * 1024
                        break
    except (OSError, ValueError, IndexError):
        return None
    return got if "rss" in got else None


# --------------------------------------------------------------------------- one run


def run(
    label: str,
    pools: dict[str, dict[str, Any]],
    loads: Sequence[Load],
    duration: float,
    cap: int,
    daemon: dict[str, specs.Value | None] | None = None,
    pss: bool = False,
) -> dict[str, Any]:
    """Starts a pitd with ``pools``, runs ``loads`` for ``duration`` seconds while sampling
    every 100 ms, stops it; what was seen (times in seconds since the load started)."""
    report.progress(f"{label}: {duration:.0f} s ...")
    load_before = os.getloadavg()
    d = Pitd(daemon or {}, pools)
    events: list[Event] = []
    ev_lock = threading.Lock()

    def on_event(ev: Event) -> None:
        with ev_lock:
            events.append(ev)
        if ev.get("event") == "worker_started" and ev.get("pid"):
            d.note(int(ev["pid"]))

    samples: list[dict[str, Any]] = []
    calls: list[Call] = []
    calls_lock = threading.Lock()
    stop = threading.Event()
    stopped_early: list[float] = []
    t0 = 0.0
    try:
        d.wait_for(lambda: d.workers_ready({}), WAIT_S, 0.05, "pitd did not come up")
        d.follow_events(on_event)
        d.wait_workers({name: int(p["size"]) for name, p in pools.items()}, within_s=WAIT_S, every_s=0.1)
        client = pit.Client(d.call_socket)
        t0 = time.time() + 0.1
        end = t0 + duration

        def sample() -> None:
            due = t0
            while not stop.is_set():
                time.sleep(max(0.0, due - time.time()))
                due += SAMPLE_EVERY_S
                try:
                    st = d.status()
                except (OSError, RuntimeError, ValueError):
                    continue
                now = time.time() - t0
                row: dict[str, Any] = {"t": now, "pools": {}, "daemon_budget": st.get("memory_budget")}
                total = 0
                for p in st["pools"]:
                    workers: dict[str, Any] = {}
                    for w in p["workers"]:
                        got = proc_memory(int(w["pid"]), pss) if w.get("pid") else None
                        if got is None:
                            continue
                        workers[w["id"]] = {"state": w["state"], "pitd": w.get("memory_bytes"), **got}
                        total += got["rss"]
                    row["pools"][p["name"]] = {
                        "workers": workers,
                        "pitd_memory": (p.get("memory") or {}).get("memory_bytes"),
                        "budget": p.get("memory_budget_bytes"),
                    }
                samples.append(row)
                if total > cap and not stopped_early:
                    stopped_early.append(now)
                    stop.set()

        def caller(load: Load) -> None:
            local: list[Call] = []
            for _ in range(MAX_CALLS):
                if stop.is_set() or time.time() >= end:
                    break
                sent = time.time()
                error = None
                try:
                    client.call(load.pool, load.method, load.args, timeout=CALL_TIMEOUT_S)
                except Exception as e:  # noqa: BLE001 - every failure counts, whatever its kind
                    error = f"{getattr(e, 'kind', type(e).__name__)}: {e}"
                local.append((load.pool, sent - t0, time.time() - t0, error))
            with calls_lock:
                calls.extend(local)

        sampler = threading.Thread(target=sample, daemon=True)
        threads = [
            threading.Thread(target=caller, args=(load,), daemon=True)
            for load in loads
            for _ in range(load.callers)
        ]
        sampler.start()
        time.sleep(max(0.0, t0 - time.time()))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.0, end - time.time()) + CALL_TIMEOUT_S + 10)
        seconds = min(time.time(), end) - t0
        stop.set()
        sampler.join(timeout=WAIT_S)
        final = d.status()
        client.close()
    finally:
        stop.set()
        survivors = d.stop()
        log_tail = d.log_tail()
        d.cleanup()
    with ev_lock:
        evs = sorted(events, key=event_time)
    for ev in evs:
        ev["t"] = event_time(ev) - t0
    gaps = [b["t"] - a["t"] for a, b in zip(samples, samples[1:])]
    return {
        "label": label,
        "seconds": stopped_early[0] if stopped_early else seconds,
        "stopped_early_at_s": stopped_early[0] if stopped_early else None,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "events": evs,
        "samples": samples,
        "sample_gap_ms": {
            "median": stats.median(gaps) * 1000 if gaps else None,
            "max": max(gaps) * 1000 if gaps else None,
        },
        "calls": calls,
        "final": {p["name"]: {"recycled": p["recycled"], "restarts": p["restarts"]} for p in final["pools"]},
        "survivors": survivors,
        "pitd_log_tail": log_tail if survivors else None,
    }


# --------------------------------------------------------------------------- what a run saw


def recycles(r: dict[str, Any], pool: str) -> list[Event]:
    return [e for e in r["events"] if e.get("event") == "worker_recycled" and e.get("pool") == pool]


def by_reason(evs: list[Event]) -> dict[str, int]:
    return dict(Counter(str(e.get("reason")) for e in evs))


def call_figures(r: dict[str, Any], pool: str) -> dict[str, Any]:
    mine = [c for c in r["calls"] if c[0] == pool]
    failed = [c for c in mine if c[3] is not None]
    lat = [(c[2] - c[1]) * 1000 for c in mine if c[3] is None]
    return {
        "calls": len(mine) - len(failed),
        "calls_per_s": (len(mine) - len(failed)) / r["seconds"] if r["seconds"] else 0.0,
        "failed": len(failed),
        "failures": dict(Counter(str(c[3]).split(":")[0] for c in failed)),
        "failure_examples": sorted({str(c[3]) for c in failed})[:5],
        "latency_ms": {"p50": stats.percentile(lat, 0.5), "p99": stats.percentile(lat, 0.99)}
        if lat
        else None,
    }


def worker_series(r: dict[str, Any], pool: str, key: str) -> dict[str, list[tuple[float, float]]]:
    """Each worker's ``key`` (rss, pss) in MiB over time, by worker id (in order of id)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for s in r["samples"]:
        for wid, w in s["pools"].get(pool, {}).get("workers", {}).items():
            if key in w:
                series.setdefault(wid, []).append((s["t"], w[key] / MIB))
    return dict(sorted(series.items(), key=lambda kv: int(kv[0].split("-")[1])))


def worker_peaks(r: dict[str, Any], pool: str) -> dict[str, int]:
    """Each worker's peak RSS: the largest sampled RSS or VmHWM."""
    peaks: dict[str, int] = {}
    for s in r["samples"]:
        for wid, w in s["pools"].get(pool, {}).get("workers", {}).items():
            peaks[wid] = max(peaks.get(wid, 0), w["rss"], w.get("hwm", 0))
    return peaks


def startups_ms(r: dict[str, Any], pool: str) -> list[float]:
    started = {
        e["worker"]: e["t"]
        for e in r["events"]
        if e.get("event") == "worker_started" and e.get("pool") == pool
    }
    return [
        (e["t"] - started[e["worker"]]) * 1000
        for e in r["events"]
        if e.get("event") == "worker_ready" and e.get("pool") == pool and e.get("worker") in started
    ]


def marks(evs: list[Event]) -> list[svg.Mark]:
    return [
        (e["t"], REASON_COLORS.get(str(e.get("reason")), "#ff7f0e"), f"recycled: {e.get('reason')}")
        for e in evs
    ]


def worker_lines(series: dict[str, list[tuple[float, float]]], label: str) -> list[svg.Series]:
    return [
        (points, WORKER_COLORS[i % len(WORKER_COLORS)], 1.2, label if i == 0 else "")
        for i, points in enumerate(series.values())
    ]


def fmt_load(r: dict[str, Any]) -> str:
    return f"{report.loadavg(r['loadavg_before'])} -> {report.loadavg(r['loadavg_after'])}"


# --------------------------------------------------------------------------- predict


def predict_case(duration: float, cap: int) -> dict[str, Any]:
    runs = {}
    for predict, surge in ((False, PREDICT_SIZE), (True, PREDICT_SIZE), (True, 1)):
        pool = app_pool(
            "leak_app",
            PREDICT_SIZE,
            {"PIT_BENCH_IMPORT_S": str(PREDICT_IMPORT_S)},
            max_rss=PREDICT_MAX_RSS,
            hard_rss=PREDICT_HARD_RSS,
            predict_rss=predict,
            max_surge=surge,
        )
        label = f"predict_rss = {str(predict).lower()}" + (
            f", max_surge = {surge}" if surge != PREDICT_SIZE else ""
        )
        r = run(
            f"predict: {label}",
            {"leaky": pool},
            [Load("leaky", "leak", {"bytes": MIB, "ms": PREDICT_WORK_MS}, CALLERS)],
            duration,
            cap,
        )
        rec = recycles(r, "leaky")
        peaks = worker_peaks(r, "leaky")
        calls = call_figures(r, "leaky")
        at_recycle = []
        for e in rec:
            before = [
                s["pools"]["leaky"]["workers"][e["worker"]]["rss"]
                for s in r["samples"]
                if s["t"] <= e["t"] and e["worker"] in s["pools"].get("leaky", {}).get("workers", {})
            ]
            if before:
                at_recycle.append(
                    {"reason": e.get("reason"), "rss": before[-1], "peak": peaks.get(e["worker"])}
                )
        ups = startups_ms(r, "leaky")
        r["figures"] = {
            "predict_rss": predict,
            "recycles": by_reason(rec),
            "hard_kills": sum(e.get("reason") == "hard_rss" for e in rec),
            **calls,
            "mib_per_s_per_worker": calls["calls"] / r["seconds"] / PREDICT_SIZE if r["seconds"] else 0.0,
            "max_surge": surge,
            "workers": len(peaks),
            "worker_peak_max": max(peaks.values(), default=0),
            "closest_to_hard_rss": min(
                (PREDICT_HARD_RSS - a["peak"] for a in at_recycle if a["peak"] and a["reason"] != "hard_rss"),
                default=None,
            ),
            "workers_over_hard_rss": sum(p > PREDICT_HARD_RSS for p in peaks.values()),
            "workers_over_hard_rss_not_killed": sum(
                p > PREDICT_HARD_RSS
                and not any(e.get("worker") == w and e.get("reason") == "hard_rss" for e in rec)
                for w, p in peaks.items()
            ),
            "at_recycle": at_recycle,
            "startup_ms": {"median": stats.median(ups), "max": max(ups)} if ups else None,
        }
        runs[label] = r
    return runs


def predict_report(runs: dict[str, Any]) -> list[tuple[str, str, str]]:
    print()
    print(
        f"predict: {PREDICT_SIZE} workers, no preload, import sleeps {PREDICT_IMPORT_S:g} s, "
        f"1 MiB kept per call + {PREDICT_WORK_MS} ms of work, {CALLERS} callers; "
        f"max_rss {PREDICT_MAX_RSS // MIB} MiB, hard_rss "
        f"{PREDICT_HARD_RSS // MIB} MiB, monitor_interval 1s, max_surge {PREDICT_SIZE} unless said"
    )
    rows = []
    for label, r in runs.items():
        f = r["figures"]
        rec = f["recycles"]
        up = f["startup_ms"]
        close = f["closest_to_hard_rss"]
        rows.append(
            (
                label,
                f"{r['seconds']:.0f} s",
                f"{f['mib_per_s_per_worker']:.0f}",
                f"{up['median']:.0f}/{up['max']:.0f}" if up else "-",
                str(rec.get("max_rss", 0)),
                str(rec.get("predicted_rss", 0)),
                str(f["hard_kills"]),
                f"{f['failed']}/{f['calls'] + f['failed']}",
                f"{f['worker_peak_max'] / MIB:.1f}",
                f"{f['workers_over_hard_rss']}/{f['workers']} ({f['workers_over_hard_rss_not_killed']})",
                f"{close / MIB:.1f}" if close is not None else "-",
                fmt_load(r),
            )
        )
    report.columns(
        (
            "run",
            "time",
            "MiB/s/worker",
            "start-up ms med/max",
            "max_rss",
            "predicted",
            "hard kills",
            "failed/calls",
            "peak MiB",
            "over hard_rss (not killed)",
            "least margin MiB",
            "load average",
        ),
        rows,
    )
    print(
        "(peak: a worker's largest sampled RSS or VmHWM; over hard_rss: workers whose peak passed it, and of "
        "those the ones pitd did not kill; least margin: hard_rss less the peak of a worker recycled "
        "gracefully, the smallest)"
    )
    for label, r in runs.items():
        f = r["figures"]
        if f["failure_examples"]:
            print(f"  {label}: failures {f['failures']}, e.g. {f['failure_examples'][0]}")
    rows_out = []
    for label, r in runs.items():
        f = r["figures"]
        what = (
            f"{f['hard_kills']} / {f['failed']}; "
            f"{f['workers_over_hard_rss']} of {f['workers']} workers over hard_rss"
        )
        if not f["predict_rss"]:
            verdict = "today's"
        elif f["max_surge"] == PREDICT_SIZE:
            verdict = f"0 / 0: {'met' if f['hard_kills'] == 0 and f['failed'] == 0 else 'NOT met'}"
        else:
            verdict = "pitd's default max_surge"
        rows_out.append((f"predict: hard kills / failed calls, {label}", what, verdict))
    return rows_out


def predict_svg(path: Path, runs: dict[str, Any]) -> None:
    width, height = 960, 300
    out = svg.document(
        width,
        len(runs) * height + 40,
        f"RSS of {PREDICT_SIZE} leaking workers (1 MiB kept per call, {CALLERS} callers, "
        f"start-up ~{PREDICT_IMPORT_S:g} s), sampled every 100 ms",
    )
    x_max = max(r["seconds"] for r in runs.values())
    limits = [(PREDICT_MAX_RSS / MIB, "max_rss"), (PREDICT_HARD_RSS / MIB, "hard_rss")]
    for i, (label, r) in enumerate(runs.items()):
        svg.panel(
            out,
            30 + i * height,
            label,
            worker_lines(worker_series(r, "leaky", "rss"), "each worker"),
            marks(recycles(r, "leaky")),
            limits,
            x_max,
        )
    svg.write(out, path)


# --------------------------------------------------------------------------- spikes


def spikes_case(duration: float, every: float, first: float, cap: int) -> dict[str, Any]:
    env = {
        "PIT_BENCH_BASE_MIB": str(SPIKE_BASE_MIB),
        "PIT_BENCH_SPIKE_EVERY_S": str(every),
        "PIT_BENCH_SPIKE_FIRST_S": str(first),
        "PIT_BENCH_SPIKE_HOLD_S": "1",
    }
    pools = {
        f"samples{n}": app_pool("spike_app", SPIKE_SIZE, env, max_rss=SPIKE_MAX_RSS, max_rss_samples=n)
        for n in (3, 1)
    }
    r = run(
        "spikes: max_rss_samples = 3 and = 1",
        pools,
        [Load(name, "work", SPIKE_WORK_MS, SPIKE_CALLERS) for name in pools],
        duration,
        cap,
    )
    figures = {}
    for name in pools:
        seen = 0
        for points in worker_series(r, name, "rss").values():
            over = [v > SPIKE_MAX_RSS / MIB for _, v in points]
            seen += sum(1 for a, b in zip([False, *over], over) if b and not a)
        rec = recycles(r, name)
        figures[name] = {
            "max_rss_samples": int(name.removeprefix("samples")),
            "recycles": len(rec),
            "by_reason": by_reason(rec),
            "spikes_seen": seen,
            "workers": len(worker_series(r, name, "rss")),
            **call_figures(r, name),
        }
    r["figures"] = figures
    r["every_s"], r["first_s"] = every, first
    return r


def spikes_report(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    print()
    print(
        f"spikes: {SPIKE_SIZE} workers per pool keeping {SPIKE_BASE_MIB} MiB, RSS doubled for 1 s every "
        f"{r['every_s']:g} s (first {r['first_s']:g} s after start), max_rss {SPIKE_MAX_RSS // MIB} MiB, "
        f"monitor_interval 1s, {SPIKE_CALLERS} callers per pool; {r['seconds']:.0f} s, load {fmt_load(r)}"
    )
    rows = []
    for name, f in r["figures"].items():
        rows.append(
            (
                f"max_rss_samples = {name[7:]}",
                str(f["spikes_seen"]),
                str(f["recycles"]),
                str(f["workers"]),
                f"{f['failed']}/{f['calls'] + f['failed']}",
            )
        )
    report.columns(("pool", "spikes over max_rss seen", "recycles", "workers", "failed/calls"), rows)
    three, one = r["figures"]["samples3"], r["figures"]["samples1"]
    return [
        (
            "spikes: recycles with max_rss_samples = 3",
            f"{three['recycles']} ({three['spikes_seen']} spikes seen)",
            f"0: {'met' if three['recycles'] == 0 else 'NOT met'}",
        ),
        (
            "spikes: recycles with max_rss_samples = 1",
            f"{one['recycles']} ({one['spikes_seen']} spikes seen)",
            "today's",
        ),
    ]


def spikes_svg(path: Path, r: dict[str, Any]) -> None:
    width, height = 960, 300
    out = svg.document(
        width,
        2 * height + 40,
        f"RSS of workers that double it for 1 s every {r['every_s']:g} s, sampled every 100 ms "
        "(monitor_interval 1 s)",
    )
    for i, name in enumerate(("samples3", "samples1")):
        svg.panel(
            out,
            30 + i * height,
            f"max_rss_samples = {name[7:]}",
            worker_lines(worker_series(r, name, "rss"), "each worker"),
            marks(recycles(r, name)),
            [(SPIKE_MAX_RSS / MIB, "max_rss")],
            r["seconds"],
        )
    svg.write(out, path)


# --------------------------------------------------------------------------- budget


def budget_case(duration: float, intervals: Sequence[str], cap: int) -> dict[str, Any]:
    runs = {}
    for interval in intervals:
        pool = app_pool(
            "leak_app", BUDGET_SIZE, {}, memory_metric="pss", memory_budget=BUDGET, max_rss=BUDGET_MAX_RSS
        )
        label = f"monitor_interval = {interval}"
        r = run(
            f"budget: {label}",
            {"leaky": pool},
            [Load("leaky", "leak", {"bytes": MIB, "ms": BUDGET_WORK_MS}, CALLERS)],
            duration,
            cap,
            daemon={"monitor_interval": interval},
            pss=True,
        )
        total: list[tuple[float, int]] = []
        pitd_view: list[int] = []
        for s in r["samples"]:
            p = s["pools"].get("leaky")
            if not p:
                continue
            total.append((s["t"], sum(w.get("pss", 0) for w in p["workers"].values())))
            if p["pitd_memory"] is not None:
                pitd_view.append(p["pitd_memory"])
        over = [(t, v - BUDGET) for t, v in total if v > BUDGET]
        stretches: list[float] = []
        start = None
        for (t, v), nxt in zip(total, [*total[1:], None]):
            if v > BUDGET and start is None:
                start = t
            if start is not None and (nxt is None or nxt[1] <= BUDGET):
                stretches.append((nxt[0] if nxt else t) - start)
                start = None
        rec = recycles(r, "leaky")
        calls = call_figures(r, "leaky")
        # How long a memory_budget recycle takes to free its worker's memory (recycled ->
        # exited), and how many workers drained at once at most.
        exited = {e["worker"]: e["t"] for e in r["events"] if e.get("event") == "worker_exited"}
        frees = [
            (exited[e["worker"]] - e["t"]) * 1000
            for e in rec
            if e.get("reason") == "memory_budget" and e["worker"] in exited
        ]
        draining: set[str] = set()
        most_draining = 0
        for e in r["events"]:
            if e.get("event") == "worker_draining":
                draining.add(e["worker"])
                most_draining = max(most_draining, len(draining))
            elif e.get("event") == "worker_exited":
                draining.discard(e["worker"])
        r["pool_pss"] = total
        r["figures"] = {
            "interval": interval,
            "samples": len(total),
            "pss_max": max((v for _, v in total), default=0),
            "samples_over": len(over),
            "share_over": len(over) / len(total) if total else 0.0,
            "over_max": max((o for _, o in over), default=0),
            "over_mean": stats.mean(o for _, o in over) if over else 0,
            "stretches_over": len(stretches),
            "longest_over_s": max(stretches, default=0.0),
            "pitd_view_max": max(pitd_view, default=0),
            "recycles": by_reason(rec),
            "budget_free_ms": {"median": stats.median(frees), "max": max(frees)} if frees else None,
            "budget_unfinished": sum(
                e.get("reason") == "memory_budget" and e["worker"] not in exited for e in rec
            ),
            "most_draining": most_draining,
            "mib_per_s": calls["calls"] / r["seconds"] if r["seconds"] else 0.0,
            **calls,
        }
        runs[label] = r
    return runs


def budget_report(runs: dict[str, Any]) -> list[tuple[str, str, str]]:
    print()
    print(
        f"budget: {BUDGET_SIZE} workers, 1 MiB kept per call + {BUDGET_WORK_MS} ms of work, "
        f"{CALLERS} callers; "
        f"memory_metric pss, memory_budget {BUDGET // MIB} MiB, max_rss {BUDGET_MAX_RSS // MIB} MiB; "
        "the pool's PSS read from /proc every 100 ms"
    )
    rows = []
    for label, r in runs.items():
        f = r["figures"]
        rec = ", ".join(f"{k} {v}" for k, v in sorted(f["recycles"].items())) or "none"
        rows.append(
            (
                label,
                f"{r['seconds']:.0f} s",
                f"{f['mib_per_s']:.0f}",
                f"{f['pss_max'] / MIB:.0f}",
                f"{f['samples_over']}/{f['samples']} ({100 * f['share_over']:.1f}%)",
                f"{f['over_max'] / MIB:.1f} / {f['over_mean'] / MIB:.1f}",
                f"{f['stretches_over']}, {f['longest_over_s'] * 1000:.0f} ms",
                f"{f['pitd_view_max'] / MIB:.0f}",
                rec,
                (
                    f"{f['budget_free_ms']['median']:.0f}/{f['budget_free_ms']['max']:.0f}"
                    if f["budget_free_ms"]
                    else "-"
                )
                + (f" ({f['budget_unfinished']} unfinished)" if f["budget_unfinished"] else ""),
                str(f["most_draining"]),
                f"{f['failed']}/{f['calls'] + f['failed']}",
                fmt_load(r),
            )
        )
    report.columns(
        (
            "run",
            "time",
            "MiB/s",
            "PSS max",
            "samples over",
            "over max/mean MiB",
            "stretches, longest",
            "pitd's max",
            "recycles",
            "budget recycle->exit ms",
            "draining at once",
            "failed/calls",
            "load average",
        ),
        rows,
    )
    out = []
    for label, r in runs.items():
        f = r["figures"]
        out.append(
            (
                f"budget ({label}): pool PSS max vs {BUDGET // MIB} MiB",
                f"{f['pss_max'] / MIB:.0f} MiB; over in {100 * f['share_over']:.1f}% of samples, "
                f"by up to {f['over_max'] / MIB:.0f} MiB",
                f"never over: {'met' if f['samples_over'] == 0 else 'NOT met'}",
            )
        )
    return out


def budget_svg(path: Path, runs: dict[str, Any]) -> None:
    width, height = 960, 300
    out = svg.document(
        width,
        len(runs) * height + 40,
        f"PSS of a pool of {BUDGET_SIZE} leaking workers with memory_budget {BUDGET // MIB} MiB, "
        "sampled every 100 ms",
    )
    x_max = max(r["seconds"] for r in runs.values())
    for i, (label, r) in enumerate(runs.items()):
        pool = [(t, v / MIB) for t, v in r["pool_pss"]]
        svg.panel(
            out,
            30 + i * height,
            label,
            [*worker_lines(worker_series(r, "leaky", "pss"), "each worker"), (pool, "#000000", 2.0, "pool")],
            marks(recycles(r, "leaky")),
            [(BUDGET / MIB, "memory_budget"), (BUDGET_MAX_RSS / MIB, "max_rss")],
            x_max,
            y_label="PSS (MiB)",
        )
    svg.write(out, path)


# --------------------------------------------------------------------------- main


def strip(r: dict[str, Any]) -> dict[str, Any]:
    """A run for the JSON: its calls as counts (they are in the figures), the rest kept."""
    return {k: v for k, v in r.items() if k != "calls"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to validate")
    parser.add_argument("--only", default=",".join(CASES), help=f"cases to run (default {','.join(CASES)})")
    parser.add_argument("--predict-s", type=float, default=75.0, help="seconds per predict run (default 75)")
    parser.add_argument(
        "--spikes-s", type=float, default=130.0, help="seconds of the spikes run (default 130)"
    )
    parser.add_argument("--budget-s", type=float, default=60.0, help="seconds per budget run (default 60)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure and sample here")
    parser.add_argument(
        "--svg-dir", metavar="DIR", default=str(BENCH), help="where the pictures go (default bench/)"
    )
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        raise SystemExit("Linux only")
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(only) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
    every, first = 30.0, 10.0
    if args.quick:
        args.predict_s, args.spikes_s, args.budget_s = 25.0, 20.0, 15.0
        every, first = 8.0, 3.0
    svg_dir = Path(args.svg_dir)
    cap = min(4 << 30, mem_available() // 2)
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "mem_available": mem_available(),
        "cap": cap,
    }
    print(
        f"# memory: {info['cpus']} cores, load {report.loadavg(info['loadavg_before'])}, "
        f"{info['mem_available'] / MIB:.0f} MiB available (runs capped at {cap / MIB:.0f} MiB), "
        f"Python {info['python']} ({sys.executable})"
    )
    targets: list[tuple[str, str, str]] = []
    out: dict[str, Any] = {"info": info}
    survivors: list[str] = []
    if "predict" in only:
        runs = predict_case(args.predict_s, cap)
        targets += predict_report(runs)
        predict_svg(svg_dir / "memory-predict.svg", runs)
        out["predict"] = {k: strip(r) for k, r in runs.items()}
        survivors += [s for r in runs.values() for s in r["survivors"]]
    if "spikes" in only:
        r = spikes_case(args.spikes_s, every, first, cap)
        targets += spikes_report(r)
        spikes_svg(svg_dir / "memory-spikes.svg", r)
        out["spikes"] = strip(r)
        survivors += r["survivors"]
    if "budget" in only:
        runs = budget_case(args.budget_s, ("100ms", "1s"), cap)
        targets += budget_report(runs)
        budget_svg(svg_dir / "memory-budget.svg", runs)
        out["budget"] = {k: strip(r) for k, r in runs.items()}
        survivors += [s for r in runs.values() for s in r["survivors"]]
    print()
    report.columns(("target", "measured", "verdict"), targets, rule=True)
    info["loadavg_after"] = os.getloadavg()
    print(f"\nload average after: {report.loadavg(info['loadavg_after'])}; pictures in {svg_dir}")
    print("left behind: " + ("nothing" if not survivors else "; ".join(survivors)))
    out["targets"] = targets
    out["survivors"] = survivors
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
