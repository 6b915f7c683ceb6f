#!/usr/bin/env python3
"""Concurrent workers against one worker per call in flight and against plain threads: 64
callers, each calling in a loop, of a handler that waits 500 ms on a loopback HTTP server.

Everything is measured in one run of this script against the release ``pitd`` and
``pitctl``, one row after the other (nothing else of the script runs meanwhile), each pit
row with a fresh pitd in a temporary directory:

The server
    A separate process of this script (``--serve``): an asyncio server on 127.0.0.1 that
    reads a request's head, waits 500 ms (``--delay``), answers ``200`` with a 3-byte body
    and closes. It holds any number of requests at once, so the ideal throughput of 64
    callers is 64 / 0.5 s = 128 calls/s.

The rows (``--seconds`` each, 20 s; ``--quick``: 5 s)
    - ``pit 4x16 async``: a pool of 4 workers with ``concurrency = 16`` serving
      ``pit.examples.agent``'s ``ask`` (``async def``, an HTTP GET over asyncio streams);
    - ``pit 4x16 async + recycle``: the same, with ``pitctl recycle agent`` (the whole
      pool: a new template, every worker replaced, the calls in flight let finish) at the
      middle of the run; how long until no worker of before is left;
    - ``pit 4x16 sync``: the same pool serving ``ask_blocking`` (a plain function doing the
      GET with ``urllib.request``, on the worker's 16 threads);
    - ``pit 64x1 sync``: 64 workers with ``concurrency = 1`` serving ``ask_blocking``, the
      way an I/O-bound pool is run without concurrent workers;
    - ``plain threads``: one Python process of this script (``--plain``) with 64 threads,
      each doing the same ``urllib.request`` GET in a loop, no pit at all.

    Every pit pool has ``preload = ["pit.examples.agent"]`` (workers forked from a template)
    and ``memory_metric = "pss"``. The 64 callers are asyncio tasks of this script, each
    with its own ``pit.AsyncClient`` (its own connection) and a 30 s call timeout; each
    calls again as soon as its call returns, until the row's time is up.

Figures per row
    - calls/s: over the successful calls that returned within the measured window (from
      1 s after the start, so the first wave is in, to the end), the sum over callers of
      (calls - 1) / (last return - first return): each caller makes one call at a time,
      and callers that start together stay in step, so a count of returns in a fixed
      window would count whole waves (the JSON has that count too); p50, p99 and max of
      the latency of those calls (from the caller's send to its reply);
    - failed: every call of the whole row (warm-up and the last calls included) that
      raised, or returned anything but HTTP status 200;
    - PSS: ``Pss`` of ``/proc/PID/smaps_rollup`` summed over the pool's workers, its
      template and its spare (pids from ``pitctl status --json``; pitd itself is not
      counted, its own PSS is in the JSON), or of the plain process; median of 3 samples
      taken at 30, 50 and 70 % of the row, while the load runs;
    - in flight: the pool's ``in_flight`` / ``capacity`` at the middle sample;
    - health RTT: the round trip of pitd's own health pings, as pitd times it: from the
      loop pass that sends a worker ``PING`` to the loop pass that handles its ``PONG``
      (pitd logs it at debug level, ``PITD_LOG=...pool::health=debug``, read back from its
      log for the measured window). Every pit row runs with ``health_interval = "25ms"``,
      so a worker is pinged whenever it has shown no sign of life for 25 ms (a finished
      call counts as one): under this load the pings go out between completions, while
      the worker holds its 16 calls, and they are answered by the same event loop that
      runs the calls. A ``1x``-concurrency worker is pinged only while idle.

Targets: 4x16 async at >= 95 % of 128 calls/s with p99 <= 600 ms; the 4x16 async pool's
PSS (template and spare included) <= 1/5 of the 64x1 pool's; health RTT p99 < 50 ms in
the 4x16 async row; 0 failed calls across the whole-pool recycle.

Every process the script starts is stopped; it exits 1 if one outlives its pitd.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, NamedTuple

from pitbench import specs, stats
from pitbench.daemon import PitdProcess, pool_pids
from pitbench.loopback import ServerProcess
from pitbench.paths import BIN_DIR
from pitbench.procfs import pss_bytes
from pitbench.report import columns, loadavg

PYTHON = os.path.realpath(sys.executable)
WAIT_S = 60.0
CALLERS = 64
WARMUP_S = 1.0
CALL_TIMEOUT_S = 30.0
HEALTH_INTERVAL = "25ms"
#: Bound on the server's life, should its parent vanish without closing its stdin.
SERVER_LIFE_S = 3600.0
POOL = "agent"
MIB = 1024 * 1024


# --- the HTTP server and the plain-threads process (separate processes of this script) ---


def serve(delay: float) -> int:
    """Prints the port, answers every GET after ``delay`` s until stdin closes; prints the
    number of requests answered."""
    answered = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        try:
            for _ in range(100):  # the request head, bounded
                line = await reader.readline()
                if not line or not line.strip():
                    break
            await asyncio.sleep(delay)
            writer.write(
                b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                b"Connection: close\r\n\r\nok\n"
            )
            await writer.drain()
            answered += 1
        except OSError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        stdin_closed = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        try:
            await asyncio.wait_for(stdin_closed, SERVER_LIFE_S)
        except asyncio.TimeoutError:
            pass
        server.close()

    asyncio.run(main())
    print(answered, flush=True)
    return 0


def plain(url: str, seconds: float, threads: int) -> int:
    """``threads`` threads GETting ``url`` in a loop for ``seconds``; prints each call as
    ``[thread, start, done, ok]`` (monotonic clock, shared with the parent) in one JSON list."""
    end = time.monotonic() + seconds
    out: list[list[Any]] = []
    lock = threading.Lock()

    def loop(caller: int) -> None:
        mine = []
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=CALL_TIMEOUT_S) as r:
                    r.read()
                    ok = r.status == 200
            except OSError:
                ok = False
            mine.append([caller, started, time.monotonic(), ok])
        with lock:
            out.extend(mine)

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    json.dump(out, sys.stdout)
    return 0


# --- measuring ---------------------------------------------------------------------------


class Call(NamedTuple):
    caller: int
    start: float
    done: float
    ok: bool
    error: str | None


def closed_loop_rate(calls: list[Call]) -> float:
    """Calls/s of callers that each make one call at a time: the sum over callers of
    (successful calls - 1) / (last completion - first completion). Counting completions in
    a fixed window instead would count whole waves: callers that start together stay in
    step, and a 530 ms cycle would still put 8 waves of 64 in a 4 s window."""
    done: dict[int, list[float]] = {}
    for c in calls:
        if c.ok:
            done.setdefault(c.caller, []).append(c.done)
    rate = 0.0
    for times in done.values():
        if len(times) > 1:
            rate += (len(times) - 1) / (max(times) - min(times))
    return rate


def summarize(calls: list[Call], t0: float, seconds: float) -> dict[str, Any]:
    w0, w1 = t0 + WARMUP_S, t0 + seconds
    window = [c for c in calls if c.ok and w0 <= c.done < w1]
    p50, p99, top = stats.percentiles((c.done - c.start for c in window), [0.50, 0.99, 1.0])
    errors = [c.error or "failed" for c in calls if not c.ok]
    return {
        "calls": len(calls),
        "calls_per_s": closed_loop_rate(window),
        "completed_in_window_per_s": len(window) / (w1 - w0),
        "p50_ms": p50 * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": top * 1000,
        "failed": len(errors),
        "errors": sorted(set(errors))[:5],
    }


class Pitd(PitdProcess):
    """A pitd in the foreground with one preloaded ``pit.examples.agent`` pool."""

    tail_lines = 15
    wait_s = WAIT_S

    def __init__(self, bin_dir: Path, size: int, concurrency: int) -> None:
        super().__init__(bin_dir, "pit-concurrency-")
        self.size = size
        pool: dict[str, specs.Value] = {
            "app": "pit.examples.agent",
            "preload": ["pit.examples.agent"],
            "python": PYTHON,
            "size": size,
            "concurrency": concurrency,
            "env": specs.pit_env(),
            "memory_metric": "pss",
            "startup_timeout": "60s",
            "health_interval": HEALTH_INTERVAL,
            "health_timeout": "5s",
        }
        spec = self.spec_head(log_format="json") + specs.table(f"pools.{POOL}", pool)
        self.start(spec, env=dict(os.environ, PITD_LOG="info,pit::daemon::pool::health=debug"))

    def wait_ready(self) -> None:
        """Until every worker is idle and the template has its spare."""
        self.wait_workers({POOL: self.size}, spare=True)

    def log_size(self) -> int:
        self.log.flush()
        return self.log_path.stat().st_size

    def health(self, start: int, end: int) -> dict[str, Any]:
        """pitd's health-ping round trips logged between two offsets of its log."""
        with open(self.log_path, "rb") as f:
            f.seek(start)
            text = f.read(end - start).decode(errors="replace")
        rtts, missed = [], 0
        for line in text.splitlines():
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            if fields.get("message") == "health ping answered":
                rtts.append(fields["rtt_us"] / 1000)
            elif "no answer to a health ping" in str(fields.get("message")):
                missed += 1
        p50, p99, top = stats.percentiles(rtts, [0.5, 0.99, 1.0])
        return {"pings": len(rtts), "missed": missed, "p50_ms": p50, "p99_ms": p99, "max_ms": top}

    def stop(self, wait_s: float | None = None) -> list[str]:
        left = super().stop(wait_s)
        self.cleanup()
        return left


async def pit_load(d: Pitd, method: str, url: str, seconds: float, t0: float) -> list[Call]:
    # Imported here, not with the script: the plain-threads process is this script too,
    # and its PSS is a row of the table; pit has no business in it.
    import pit

    end = t0 + seconds
    calls: list[Call] = []

    async def caller(i: int) -> None:
        async with pit.AsyncClient(d.call_socket) as client:
            while time.monotonic() < end:
                started = time.monotonic()
                try:
                    r = await client.call(POOL, method, {"url": url}, timeout=CALL_TIMEOUT_S)
                    ok = isinstance(r, dict) and r.get("status") == 200
                    error = None if ok else f"reply {str(r)[:80]}"
                except Exception as e:  # noqa: BLE001 - every failure is counted, by kind
                    ok, error = False, f"{type(e).__name__}: {str(e)[:80]}"
                calls.append(Call(i, started, time.monotonic(), ok, error))

    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    return calls


async def at(t: float, fn: Callable[[], Any]) -> Any:
    """``fn()`` in a thread at monotonic time ``t``."""
    await asyncio.sleep(max(0.0, t - time.monotonic()))
    return await asyncio.to_thread(fn)


def run_pit(
    bin_dir: Path, url: str, seconds: float, size: int, concurrency: int, method: str, recycle: bool = False
) -> tuple[dict[str, Any], list[str]]:
    d = Pitd(bin_dir, size, concurrency)
    try:
        d.wait_ready()
        t0 = time.monotonic()
        marks: dict[str, Any] = {}

        def sample() -> dict[str, Any]:
            p = d.pool(POOL)
            d.remember()
            pids = pool_pids(p)
            return {
                "pss": sum(pss_bytes(pid) for pid in pids),
                "processes": len(pids),
                "pitd_pss": pss_bytes(d.proc.pid),
                "in_flight": p.get("in_flight"),
                "capacity": p.get("capacity"),
            }

        def window_start() -> None:
            marks["log0"] = d.log_size()

        def window_end() -> None:
            marks["log1"] = d.log_size()

        def do_recycle() -> None:
            before = {w["pid"] for w in d.pool(POOL)["workers"]}
            issued = time.monotonic()
            out = subprocess.run(
                [d.pitctl, "--socket", d.control, "recycle", POOL],
                capture_output=True,
                text=True,
                timeout=WAIT_S,
            )
            marks["recycle_rc"] = out.returncode
            marks["recycle_out"] = (out.stdout + out.stderr).strip()[-200:]
            # Bounded: until no worker of before is left and the pool is whole again.
            for _ in range(int(WAIT_S / 0.05)):
                d.remember()
                ws = d.pool(POOL)["workers"]
                live = [w for w in ws if w["state"] in ("idle", "busy")]
                if not before & {w["pid"] for w in ws} and len(live) == size:
                    marks["recycle_s"] = time.monotonic() - issued
                    return
                time.sleep(0.05)

        async def everything() -> list[Any]:
            side = [at(t0 + WARMUP_S, window_start), at(t0 + seconds, window_end)]
            side += [at(t0 + f * seconds, sample) for f in ((0.3, 0.5, 0.7) if not recycle else ())]
            if recycle:
                side.append(at(t0 + seconds / 2, do_recycle))
            return await asyncio.gather(pit_load(d, method, url, seconds, t0), *side)

        results = asyncio.run(everything())
        row = summarize(results[0], t0, seconds)
        samples = [r for r in results[1:] if isinstance(r, dict)]
        if samples:
            row["pss_mib"] = stats.median(s["pss"] for s in samples) / MIB
            row["pitd_pss_mib"] = stats.median(s["pitd_pss"] for s in samples) / MIB
            mid = samples[len(samples) // 2]
            row["in_flight"], row["capacity"] = mid["in_flight"], mid["capacity"]
            row["pss_processes"] = mid["processes"]
        row["health"] = d.health(marks["log0"], marks["log1"])
        for k in ("recycle_rc", "recycle_out", "recycle_s"):
            if k in marks:
                row[k] = marks[k]
        if recycle and "recycle_s" not in marks:
            row["recycle_s"] = None
    finally:
        survivors = d.stop()
    return row, survivors


def run_plain(url: str, seconds: float) -> dict[str, Any]:
    proc = subprocess.Popen(
        [PYTHON, __file__, "--plain", url, str(seconds), str(CALLERS)], stdout=subprocess.PIPE, text=True
    )
    t0 = time.monotonic()
    samples = []
    try:
        for f in (0.3, 0.5, 0.7):
            time.sleep(max(0.0, t0 + f * seconds - time.monotonic()))
            samples.append(pss_bytes(proc.pid))
        out, _ = proc.communicate(timeout=seconds + CALL_TIMEOUT_S + WAIT_S)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    calls = [Call(i, s, e, ok, None if ok else "urllib error") for i, s, e, ok in json.loads(out)]
    row = summarize(calls, t0, seconds)
    row["pss_mib"] = stats.median(samples) / MIB
    return row


# --- the table ---------------------------------------------------------------------------

ROWS = [
    ("4x16_async", "pit 4 workers x 16, async ask", 4, 16, "ask", False),
    ("4x16_async_recycle", "  4x16 async, whole-pool recycle at mid-run", 4, 16, "ask", True),
    ("4x16_sync", "pit 4 workers x 16, sync ask_blocking", 4, 16, "ask_blocking", False),
    ("64x1_sync", "pit 64 workers x 1, sync ask_blocking", 64, 1, "ask_blocking", False),
]


def targets(rows: dict[str, dict[str, Any]], ideal: float) -> dict[str, dict[str, Any]]:
    a, r, big = rows["4x16_async"], rows["4x16_async_recycle"], rows["64x1_sync"]
    return {
        "throughput": {
            "value": a["calls_per_s"] / ideal,
            "p99_ms": a["p99_ms"],
            "met": a["calls_per_s"] >= 0.95 * ideal and a["p99_ms"] <= 600,
        },
        "pss_ratio": {"value": a["pss_mib"] / big["pss_mib"], "met": a["pss_mib"] * 5 <= big["pss_mib"]},
        "health_rtt": {
            "value": a["health"]["p99_ms"],
            "pings": a["health"]["pings"],
            "met": a["health"]["pings"] > 0 and a["health"]["missed"] == 0 and a["health"]["p99_ms"] < 50,
        },
        "recycle_failed": {"value": r["failed"], "met": r["failed"] == 0 and r.get("recycle_s") is not None},
    }


def print_table(rows: dict[str, dict[str, Any]], labels: dict[str, str]) -> None:
    head = (
        "",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "failed",
        "PSS MiB",
        "in flight",
        "health RTT p50/p99 ms",
    )
    lines = []
    for key, row in rows.items():
        h = row.get("health")
        rtt = f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f} ({h['pings']})" if h and h["pings"] else "-"
        flight = f"{row['in_flight']}/{row['capacity']}" if row.get("capacity") else "-"
        pss = f"{row['pss_mib']:.0f}" if "pss_mib" in row else "-"
        lines.append(
            (
                labels[key],
                f"{row['calls_per_s']:.1f}",
                f"{row['p50_ms']:.0f}",
                f"{row['p99_ms']:.0f}",
                f"{row['max_ms']:.0f}",
                str(row["failed"]),
                pss,
                flight,
                rtt,
            )
        )
    columns(head, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s rows instead of 20 s, to validate")
    parser.add_argument("--seconds", type=float, help="length of each row (default 20, 5 with --quick)")
    parser.add_argument("--delay", type=float, default=0.5, help="the HTTP server's answer delay in s")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--plain", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        return serve(args.serve)
    if args.plain:
        return plain(args.plain[0], float(args.plain[1]), int(args.plain[2]))
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    seconds = max(seconds, WARMUP_S + 1)
    ideal = CALLERS / args.delay

    load_before = os.getloadavg()
    print(
        f"# concurrency: {os.cpu_count()} cores, load {loadavg(load_before)}, "
        f"python {PYTHON}, {CALLERS} callers, server delay {args.delay * 1000:.0f} ms, "
        f"{seconds:.0f} s per row",
        flush=True,
    )
    server = ServerProcess(
        [PYTHON, __file__, "--serve", str(args.delay)], "http://127.0.0.1:{port}/", "the HTTP server"
    )
    rows: dict[str, dict[str, Any]] = {}
    labels: dict[str, str] = {}
    survivors: list[str] = []
    try:
        for key, label, size, conc, method, recycle in ROWS:
            print(f"# {label.strip()} ...", file=sys.stderr, flush=True)
            rows[key], left = run_pit(args.bin_dir, server.url, seconds, size, conc, method, recycle)
            labels[key] = label
            survivors += left
        print("# plain threads ...", file=sys.stderr, flush=True)
        rows["plain"] = run_plain(server.url, seconds)
        labels["plain"] = f"plain Python, {CALLERS} threads, urllib"
    finally:
        answered = server.stop()
    load_after = os.getloadavg()

    print_table(rows, labels)
    print(f"load average after: {loadavg(load_after)}; the server answered {answered} requests")
    r = rows["4x16_async_recycle"]
    print(
        f"recycle: `pitctl recycle {POOL}` at {seconds / 2:.0f} s (exit {r.get('recycle_rc')}); no worker of "
        f"before left after {r['recycle_s']:.2f} s"
        if r.get("recycle_s") is not None
        else "recycle: the pool was not whole again within 60 s"
    )
    for key, row in rows.items():
        if row["errors"]:
            print(f"{labels[key].strip()}: failures: {'; '.join(row['errors'])}")
    t = targets(rows, ideal)
    print(
        "calls/s: per caller (successful calls - 1) / (last return - first return), summed, over the calls "
        "returned from 1 s to the end;\nlatency: those calls, send to reply; PSS: workers + template + spare "
        "(pitd excluded), median of 3 samples under load;\nhealth RTT: pitd's PING -> PONG as pitd times it "
        f"(debug log), a ping after {HEALTH_INTERVAL} without a sign of life, "
        "(n) pings answered in the window"
    )

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(
        f"target: 4x16 async >= 95% of {ideal:.0f} calls/s with p99 <= 600 ms: "
        f"{verdict(t['throughput']['met'])} "
        f"({t['throughput']['value'] * 100:.1f}%, p99 {t['throughput']['p99_ms']:.0f} ms)"
    )
    print(
        f"target: 4x16 async PSS <= 1/5 of 64x1's: {verdict(t['pss_ratio']['met'])} "
        f"({rows['4x16_async']['pss_mib']:.0f} / {rows['64x1_sync']['pss_mib']:.0f} MiB = "
        f"1/{1 / t['pss_ratio']['value']:.1f})"
    )
    h = rows["4x16_async"]["health"]
    print(
        f"target: health RTT p99 < 50 ms at full load (4x16 async): {verdict(t['health_rtt']['met'])} "
        f"(p99 {h['p99_ms']:.1f} ms, max {h['max_ms']:.1f} ms, {h['pings']} pings, {h['missed']} unanswered)"
    )
    print(
        f"target: 0 failed calls across the whole-pool recycle: {verdict(t['recycle_failed']['met'])} "
        f"({r['failed']} failed of {r['calls']})"
    )
    if survivors:
        print("processes outlived pitd (killed now):", *survivors, sep="\n  ")
    if args.json:
        figures = {
            "info": {
                "cores": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "python": PYTHON,
                "callers": CALLERS,
                "delay_s": args.delay,
                "seconds": seconds,
                "ideal_calls_per_s": ideal,
                "health_interval": HEALTH_INTERVAL,
                "answered": answered,
            },
            "labels": labels,
            "rows": rows,
            "targets": t,
            "survivors": survivors,
        }
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
