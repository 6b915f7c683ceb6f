#!/usr/bin/env python3
"""Probes under load and the SIGTERM choreography, against the release pitd: what a
Kubernetes exec probe costs and how fast it turns, and what happens to calls around a stop.

**Probe answer times.** One pitd, one pool ``echo`` of ``--workers`` workers (default 2)
serving ``pit.examples.echo`` with ``queue_max = --queue-max`` (default 16). Three
conditions:

``idle``
    nothing else asked of pitd;
``saturated``
    ``pitctl bench echo -c 64 -d 15s``: 64 callers of the no-op ``echo`` against 2
    workers, pitd and the workers taking both cores;
``queue full``
    the same with ``--method sleep --args 0.01``: each worker runs a 10 ms call, the
    calls pitd pipelines behind it wait in its pipe, the queue holds ``queue_max`` calls
    and the rest are answered ``queue_full`` at once (the callers call again at once);

the bench is started again whenever it ends before the measurements do, and cut short
when they are done. In each, ``--probes`` (default 1,000) ``pitctl probe ready``
processes, then as many ``pitctl probe live``, each timed as a whole process (spawn to
exit: what the kubelet's exec probe pays, without the container runtime's ``exec``); then
as many ``ready`` and ``live`` control requests sent straight to the control socket by
this script (a new connection each, as pitctl does: connect, one length-prefixed JSON
frame ``{"cmd": "probe", "kind": ..., "timeout_ms": 1000}``, the reply read): pitd's
answer time plus one socket round trip. Every answer must be yes (exit 0 / ``ok: true``):
neither load nor a full queue makes pitd unready. Table: p50, p99 (``pitbench.stats``), max;
above it, the pool's queued / in-flight / capacity at the start and end of each load,
and the calls pitd answered meanwhile by outcome (its ``pit_calls_total`` and
``pit_calls_rejected_total`` counters).

**The stop.** ``--stops`` times (default 5) a fresh pitd with the same pool,
``shutdown_delay = "2s"``, ``shutdown_timeout = "10s"`` and the default ``queue_max``,
loaded by ``--callers`` callers (default 8) each on its own connection making one call at
a time to ``echo.sleep`` with 20 ms (so calls are running and queued at every moment);
after a second of load it gets SIGTERM. From just after ``kill(SIGTERM)`` returns, this
script sends ``probe ready`` straight to the control socket back to back; the figure is
the time from just before the ``kill`` to the first ``ok: false`` reply, with the number
of ``ok: true`` replies before it. The callers go on until pitd has exited (a refused
call is made again after 5 ms, so refusals are counted without spinning), and every call
is counted: ``ok``; refused with ``shutting_down``; unread at exit (pitd closed the
connection with the call still in its receive queue: the caller's write fails with EPIPE
or its read with ECONNRESET, so pitd never took the call); any other failure (another
error kind, or the connection closing after pitd read the call, unanswered). Accepted
calls are ok + other failures, and other failures must be 0: every call pitd took was
answered. Also timed: SIGTERM to the first ``shutting_down`` refusal (``shutdown_delay``
on) and to pitd's exit.

Every loop is bounded by a count and a deadline, every wait by a timeout; the sockets are
Unix sockets (nothing listens on the network). Every process started is stopped, and the
script exits 1 if one outlives its pitd.

Linux only (pitd is). Usage::

    cargo build --release --bins
    python3 bench/probe.py [--probes 1000] [--stops 5] [--callers 8] [--json FILE]

A run with the defaults takes about 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pitbench import report, specs, wire
from pitbench.daemon import PitdProcess
from pitbench.paths import BIN_DIR
from pitbench.report import columns
from pitbench.stats import percentile

PYTHON = os.path.realpath(sys.executable)
WAIT_S = 60.0
SHUTDOWN_DELAY_S = 2.0
#: Bound on the requests of one tight polling loop (SIGTERM -> not ready).
MAX_POLLS = 2_000_000
#: Bound on the calls one caller makes in a stop run.
MAX_CALLS_PER_CALLER = 1_000_000


class Daemon(PitdProcess):
    """A release pitd with one ``echo`` pool, spec and sockets in a temporary directory."""

    tail_lines = 15
    wait_s = WAIT_S

    def __init__(
        self,
        bin_dir: Path,
        workers: int,
        daemon_keys: dict[str, specs.Value],
        pool_keys: dict[str, specs.Value],
    ) -> None:
        super().__init__(bin_dir, "pit-probe-")
        pool: dict[str, specs.Value] = {
            "app": "pit.examples.echo",
            "python": PYTHON,
            "size": workers,
            "env": specs.pit_env(),
            **pool_keys,
        }
        self.start(self.spec_head(**daemon_keys) + specs.table("pools.echo", pool))

    def probe(self, kind: str) -> tuple[bool, str]:
        reply = self.request({"cmd": "probe", "kind": kind, "timeout_ms": 1000}, 5.0)
        if reply.get("reply") != "probe":
            raise RuntimeError(f"probe {kind}: unexpected reply {reply}")
        return bool(reply["ok"]), reply.get("reason") or ""

    def wait_ready(self) -> None:
        def ready() -> bool:
            try:
                return self.probe("startup")[0] and self.probe("ready")[0]
            except (OSError, RuntimeError, ValueError):
                return False

        self.wait_for(ready, WAIT_S, 0.05, "pitd not ready")

    def stop(self, wait_s: float | None = None) -> list[str]:
        # After a stop run's SIGTERM, this second one skips what is left of a shutdown_delay.
        survivors = super().stop(wait_s)
        self.cleanup()
        return survivors


# --- probe answer times -----------------------------------------------------------------


#: The load of each condition: extra arguments of ``pitctl bench echo -c 64 -d 15s``.
CONDITIONS = {
    "idle": None,
    "saturated": [],
    "queue full": ["--method", "sleep", "--args", "0.01"],
}


class Load:
    """``pitctl bench echo -c 64 -d 15s ...``, started again each time it ends, until stopped."""

    def __init__(self, d: Daemon, extra: list[str]) -> None:
        self.d, self.extra = d, extra
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        argv = [
            self.d.pitctl,
            "--socket",
            self.d.control,
            "bench",
            "echo",
            "-c",
            "64",
            "-d",
            "15s",
            *self.extra,
        ]
        for _ in range(1000):
            with self.lock:
                if self.done.is_set():
                    return
                self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.proc.wait(WAIT_S)

    def stop(self) -> None:
        # The run in progress is cut short: the measurements it was load for are done.
        with self.lock:
            self.done.set()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
        self.thread.join(WAIT_S)


def time_processes(d: Daemon, kind: str, n: int) -> tuple[list[float], int]:
    """``n`` whole ``pitctl probe KIND`` processes: their wall times (ms), and how many did
    not exit 0."""
    argv = [d.pitctl, "--socket", d.control, "probe", kind]
    times, failed = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        rc = subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=WAIT_S
        ).returncode
        times.append((time.perf_counter() - t0) * 1e3)
        failed += rc != 0
    return times, failed


def time_requests(d: Daemon, kind: str, n: int) -> tuple[list[float], int]:
    """``n`` probe requests straight to the control socket: round trips (ms), and how many
    were answered no."""
    times, failed = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        ok, _ = d.probe(kind)
        times.append((time.perf_counter() - t0) * 1e3)
        failed += not ok
    return times, failed


def pool_load(d: Daemon) -> dict[str, int]:
    pool = d.pool("echo")
    return {k: pool[k] for k in ("queued", "in_flight", "capacity")}


def outcomes(d: Daemon) -> dict[str, int]:
    """pitd's own count of the pool's answered calls: those its workers ran by outcome
    (``pit_calls_total``) and those it refused by kind (``pit_calls_rejected_total``:
    ``queue_full`` when the queue is full)."""
    text = d.request({"cmd": "metrics"})["text"]
    found = {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name not in ("pit_calls_total", "pit_calls_rejected_total") or "}" not in rest:
            continue
        labels_text, _, value = rest.partition("}")
        labels = dict(pair.split("=", 1) for pair in labels_text.split(",") if "=" in pair)
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("pool") == "echo":
            found[labels.get("outcome") or labels.get("kind") or "?"] = int(float(value))
    return found


def probe_times(bin_dir: Path, workers: int, queue_max: int, n: int) -> dict[str, Any]:
    d = Daemon(bin_dir, workers, {"monitor_interval": "1s"}, {"queue_max": queue_max})
    figures: dict[str, Any] = {}
    try:
        d.wait_ready()
        for condition, extra in CONDITIONS.items():
            before = outcomes(d)
            load = None if extra is None else Load(d, extra)
            if load:
                time.sleep(1.0)  # let the bench settle
                figures[f"{condition} status"] = [pool_load(d)]
            try:
                for how, measure in (("pitctl process", time_processes), ("control request", time_requests)):
                    for kind in ("ready", "live"):
                        times, failed = measure(d, kind, n)
                        figures[f"{condition} {how} {kind}"] = {"ms": times, "no": failed}
                        progress(f"{condition} {how} {kind}: p50 {percentile(times, 0.5):.3f} ms")
            finally:
                if load:
                    figures[f"{condition} status"].append(pool_load(d))
                    load.stop()
                    after = outcomes(d)
                    figures[f"{condition} calls"] = {
                        k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)
                    }
        return figures
    finally:
        survivors = d.stop()
        if survivors:
            print(f"processes outlived pitd: {survivors}", file=sys.stderr)
            sys.exit(1)


# --- the stop -------------------------------------------------------------------------


class Caller(threading.Thread):
    """One connection, one ``echo.sleep`` call at a time, until pitd is gone or ``until``."""

    def __init__(self, path: str, until: float) -> None:
        super().__init__(daemon=True)
        self.path, self.until = path, until
        self.counts = {"ok": 0, "shutting_down": 0, "unread": 0, "other": 0}
        self.others: list[str] = []
        self.ok_after: list[float] = []  # perf_counter of ok replies (read against SIGTERM)
        self.first_refusal: float | None = None

    def run(self) -> None:
        s: socket.socket | None = None
        for i in range(MAX_CALLS_PER_CALLER):
            if time.perf_counter() > self.until:
                break
            if s is None:
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.settimeout(WAIT_S)
                    s.connect(self.path)
                except OSError:
                    # No listener any more (pitd exited or is closing): nothing was sent.
                    s.close()
                    return
            try:
                s.sendall(wire.frame({"id": i, "pool": "echo", "method": "sleep", "args": 0.02}))
                reply = wire.read_frame(s)
            except (BrokenPipeError, ConnectionResetError):
                # pitd closed the connection with the call unread: on a Unix socket the
                # writer gets EPIPE, or the reader ECONNRESET when its bytes were still in
                # pitd's receive queue. Never taken, so never accepted.
                self.counts["unread"] += 1
                s.close()
                s = None
                continue
            now = time.perf_counter()
            if reply is None:
                # pitd read the call (its receive queue was empty), then closed: accepted
                # and unanswered.
                self.counts["other"] += 1
                self.others.append("the connection closed with the call unanswered")
                s.close()
                s = None
                continue
            if reply.get("ok"):
                self.counts["ok"] += 1
                self.ok_after.append(now)
            elif reply["error"]["kind"] == "shutting_down":
                self.counts["shutting_down"] += 1
                if self.first_refusal is None:
                    self.first_refusal = now
                time.sleep(0.005)
            else:
                self.counts["other"] += 1
                self.others.append(f"{reply['error']['kind']}: {reply['error']['message']}")
        if s is not None:
            s.close()


def one_stop(bin_dir: Path, workers: int, callers: int) -> dict[str, Any]:
    d = Daemon(
        bin_dir,
        workers,
        {"monitor_interval": "1s", "shutdown_delay": f"{SHUTDOWN_DELAY_S:g}s", "shutdown_timeout": "10s"},
        {},
    )
    try:
        d.wait_ready()
        until = time.perf_counter() + WAIT_S
        threads = [Caller(d.call_socket, until) for _ in range(callers)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        d.remember()
        # The poller: probe ready back to back from the signal on, until the first no.
        if not d.probe("ready")[0]:
            raise RuntimeError("not ready before SIGTERM")
        yes_after = 0
        sent = time.perf_counter()
        os.kill(d.proc.pid, signal.SIGTERM)
        not_ready = None
        for _ in range(MAX_POLLS):
            if time.perf_counter() - sent > 10.0:
                break
            try:
                ok, _ = d.probe("ready")
            except (OSError, RuntimeError):
                break  # pitd gone without ever answering no: reported as "-"
            if ok:
                yes_after += 1
            else:
                not_ready = time.perf_counter()
                break
        d.proc.wait(WAIT_S)
        exited = time.perf_counter()
        for t in threads:
            t.join(WAIT_S)
        counts = {k: sum(t.counts[k] for t in threads) for k in ("ok", "shutting_down", "unread", "other")}
        refusals = [t.first_refusal for t in threads if t.first_refusal is not None]
        return {
            **counts,
            "ok_after_sigterm": sum(1 for t in threads for x in t.ok_after if x > sent),
            "others": sorted({o for t in threads for o in t.others}),
            "not_ready_ms": None if not_ready is None else (not_ready - sent) * 1e3,
            "yes_after_sigterm": yes_after,
            "first_refusal_s": min(refusals) - sent if refusals else None,
            "exit_s": exited - sent,
            "exit_code": d.proc.returncode,
        }
    finally:
        survivors = d.stop()
        if survivors:
            print(f"processes outlived pitd: {survivors}", file=sys.stderr)
            sys.exit(1)


# --- report -----------------------------------------------------------------------------


def progress(what: str) -> None:
    report.progress(what, "  .. ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--probes", type=int, default=1000, help="probes of each kind and way per condition (default 1000)"
    )
    parser.add_argument("--stops", type=int, default=5, help="SIGTERM runs (default 5)")
    parser.add_argument("--callers", type=int, default=8, help="callers during a stop (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the echo pool (default 2)")
    parser.add_argument("--queue-max", type=int, default=16, help="queue_max while saturated (default 16)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    args = parser.parse_args(argv)

    print(f"# probe: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, python {PYTHON}", flush=True)
    figures: dict[str, Any] = {"probes": probe_times(args.bin_dir, args.workers, args.queue_max, args.probes)}
    stops = []
    for i in range(args.stops):
        stops.append(one_stop(args.bin_dir, args.workers, args.callers))
        progress(f"stop {i + 1}: {stops[-1]}")
    figures["stops"] = stops

    p = figures["probes"]
    print(
        f"\nprobe answer times, pool echo of {args.workers} workers, queue_max {args.queue_max}, "
        f"{args.probes} of each:"
    )
    for condition, extra in CONDITIONS.items():
        if extra is not None:
            seen = ", ".join(
                f"{x['queued']} queued + {x['in_flight']} in flight / capacity {x['capacity']}"
                for x in p[f"{condition} status"]
            )
            print(
                f"  {condition}: pitctl bench echo -c 64 -d 15s {' '.join(extra)}".rstrip()
                + f"; pool at start and end: {seen}"
            )
            calls = ", ".join(f"{k} {v:,}" for k, v in sorted(p[f"{condition} calls"].items()))
            print(f"    calls answered meanwhile (pit_calls_total, pit_calls_rejected_total): {calls}")
    rows = []
    for condition in CONDITIONS:
        for how in ("pitctl process", "control request"):
            for kind in ("ready", "live"):
                f = p[f"{condition} {how} {kind}"]
                ms = f["ms"]
                rows.append(
                    (
                        condition,
                        f"{how} {kind}",
                        f"{percentile(ms, 0.5):.3f}",
                        f"{percentile(ms, 0.99):.3f}",
                        f"{max(ms):.3f}",
                        f"{f['no']} / {len(ms)}",
                    )
                )
    columns(("load", "probe", "p50 ms", "p99 ms", "max ms", "answered no"), rows, rule=True)

    print(
        f"\nSIGTERM under load: shutdown_delay {SHUTDOWN_DELAY_S:g}s, "
        f"{args.callers} callers of echo.sleep(0.02), {args.workers} workers, {len(stops)} runs:"
    )
    stop_rows = []
    for i, s in enumerate(stops, 1):
        stop_rows.append(
            (
                str(i),
                "-" if s["not_ready_ms"] is None else f"{s['not_ready_ms']:.3f}",
                str(s["yes_after_sigterm"]),
                "-" if s["first_refusal_s"] is None else f"{s['first_refusal_s']:.3f}",
                f"{s['exit_s']:.3f}",
                str(s["ok"]),
                str(s["ok_after_sigterm"]),
                str(s["shutting_down"]),
                str(s["unread"]),
                str(s["other"]),
                str(s["ok"] + s["other"]),
            )
        )
    columns(
        (
            "run",
            "SIGTERM->not ready ms",
            "yes after",
            "->1st refusal s",
            "->exit s",
            "ok",
            "ok after SIGTERM",
            "shutting_down",
            "unread at exit",
            "other failures",
            "accepted",
        ),
        stop_rows,
        rule=True,
    )
    others = sorted({o for s in stops for o in s["others"]})
    for o in others:
        print(f"  other failure: {o}")
    bad_exit = [s["exit_code"] for s in stops if s["exit_code"] != 0]
    if bad_exit:
        print(f"  pitd exit codes not 0: {bad_exit}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if others or bad_exit else 0


if __name__ == "__main__":
    sys.exit(main())
