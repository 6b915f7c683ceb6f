#!/usr/bin/env python3
"""Every benchmark in one command, one combined table.

Runs the benchmark scripts of this directory one after the other, each in its own
subprocess with ``--json`` to a temporary file (``--quick`` runs each briefly, to validate:
``.ci/run`` does, so that a change that breaks a benchmark fails CI), and prints one table
of the figures they measured, all in this run on this machine, with the core count, the
load average before and after, and the interpreter:

``calls.py``
    the floor (a raw Python loop echoing length-prefixed frames over pipes, and the pit
    worker runtime driven the same way), pit's ``echo`` through pitd with 1, 2 and
    <cores> workers, ``multiprocessing.Pool(N)`` and ``ProcessPoolExecutor(N)`` on the same
    function, pitd's own CPU while it serves; the ratios: pit's calls/s over mp.Pool's
    with the same N, pit's c=1 p50 over the floors' p50.
``supervise.py``
    restart latency after kill -9, ``pitctl status`` latency, pitd's RSS and idle CPU with
    8, 64 and 256 workers.
``leak.py``
    memory-recycle reaction time (RSS crosses ``max_rss`` -> replacement ready).
``memory.py``
    hard kills and failed calls of a fast leak with and without ``predict_rss``, recycles
    of a spiking worker with ``max_rss_samples = 3`` and 1, a pool's PSS against its
    ``memory_budget`` sampled every 100 ms.
``preload.py``
    replacement-ready latency and memory with and without the preload fork-server.
``concurrency.py``
    64 callers of a handler that waits 500 ms on a loopback HTTP server: pit with 4
    workers x ``concurrency = 16`` (async and sync handler, and across a whole-pool
    recycle), with 64 workers x 1, and 64 plain threads; calls/s, p50/p99, failed calls,
    the pool's PSS, pitd's health-ping round trip.
``warmup.py``
    a DSPy program (or, without DSPy, a stand-in whose first call loads more than its
    import) served by 4 workers x ``concurrency = 16`` with and without ``warmup``, and by
    one process with 64 threads: the PSS idle and after three runs of load from 64
    callers against a loopback fake of an OpenAI-compatible server.
``free_threading.py``
    CPython 3.13 built free-threaded and with the GIL (``bench/pythons.py``): pools of 1
    worker x 1, 1 worker x 2 threads and 2 workers x 1 with a CPU-bound handler and with one
    reading a large model loaded at import, calls/s and PSS; the GIL turned back on by an
    extension, and pit's ``GIL_REENABLED`` warning.
``restart.py``
    replacement-ready time and the backoff pitd chose after kills of workers up past
    ``restart.min_uptime``.
``stop.py``
    ``pitctl shutdown`` to pitd's exit with a preloaded pool, and the workers that exited
    by themselves.
``max_requests.py``
    the calls each retired worker served against ``max_requests = 25``, with and without
    preload, from 1 and more callers.
``probe.py``
    ``pitctl probe`` and direct probe requests idle, under load and with the queue full; a
    SIGTERM under load: not ready, first refusal, exit, and no accepted call unanswered.
``streaming.py``
    one stream of small chunks through pitd against its floor (two Python processes and a
    pipe) and against gunicorn's dirty workers; a stream's first chunk against one call; 64
    paced streams' gaps; the hang-up to the generator's ``finally:``; pitd's memory under a
    slow reader.
``http_door.py``
    the HTTP front door under ``oha`` (built from crates.io into ``target/tools/oha`` by a
    full run; a quick run without it measures the call socket only): one request at a time
    on a kept-alive connection and 64 connections against ``pitctl bench`` on the call
    socket, TLS (HTTP/2 and HTTP/1.1) against plain HTTP, and gunicorn's gthread workers
    calling its dirty pool's echo; calls/s, p50/p99, the ratios against the targets.
``peers.py``
    supervisord (restart after kill -9, status latency, daemon RSS) and gunicorn sync
    workers with ``max_requests`` under a loopback load generator, installed from PyPI into
    ``bench/.venv``; a peer that cannot be installed gets a row saying so.

A script that fails gives a row saying so (with the end of its error output) instead of
its figures. The exit status is 1 when a script failed or reported processes that outlived
it, 0 otherwise. Each script's own table, with more detail, is kept with ``--logs DIR``.

Usage::

    cargo build --release
    python3 bench/suite.py [--quick] [--skip peers,leak | --only concurrency] [--json FILE] [--logs DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from pitbench import report, stats
from pitbench.paths import BENCH, BIN_DIR, REPO

PYTHON = sys.executable


class Script(NamedTuple):
    """How the suite runs one script: its arguments and a bound on its wall time (seconds)
    in a full run and in a quick one. A quick run's bound is a few times what it takes on
    2 cores, so that a script that hangs ends a CI run long before CI's own time limit."""

    full: list[str]
    quick: list[str]
    full_bound_s: float
    quick_bound_s: float


SCRIPTS: dict[str, Script] = {
    "calls": Script([], ["--quick"], 1200, 300),
    "supervise": Script([], ["--quick"], 1200, 300),
    "leak": Script([], ["--quick"], 1200, 300),
    "memory": Script([], ["--quick"], 1200, 300),
    "preload": Script([], ["--kills", "3", "--workers", "4"], 900, 300),
    "concurrency": Script([], ["--quick"], 900, 300),
    "warmup": Script([], ["--quick"], 900, 300),
    # A full run builds the two interpreters it compares when they are missing (3 to 12
    # minutes each); a quick one builds nothing.
    "free_threading": Script([], ["--quick"], 2400, 300),
    "restart": Script([], ["--kills", "2", "--gap", "1"], 300, 120),
    "stop": Script([], ["--workers", "8", "--runs", "1"], 600, 120),
    "max_requests": Script([], ["--calls", "100", "--callers", "1,8", "--work-ms", "0"], 600, 120),
    "probe": Script([], ["--probes", "50", "--stops", "1"], 900, 180),
    # With gunicorn still to install from PyPI into bench/.venv.
    "streaming": Script([], ["--quick"], 1800, 300),
    # A full run builds oha once (cargo install: 500 s of CPU, 18 minutes seen on 2 busy cores);
    # a quick one never does.
    "http_door": Script([], ["--quick"], 3600, 300),
    # Installing the peers from PyPI into a fresh environment takes most of its quick run.
    "peers": Script([], ["--quick"], 2400, 600),
}
ORDER = list(SCRIPTS)

Row = tuple[str, str, str]  # figure, value, target (with its verdict)


# --- running the scripts ----------------------------------------------------------------


def progress(message: str) -> None:
    report.progress(message, "[suite] ")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Asks a script that overran its time bound to stop: SIGINT (its own cleanup runs),
    then SIGTERM, then SIGKILL, to its process group (it was started in its own session)."""
    for sig, wait in ((signal.SIGINT, 60), (signal.SIGTERM, 20), (signal.SIGKILL, 20)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_script(name: str, args: list[str], bound_s: float, work: Path) -> dict[str, Any]:
    """Runs ``bench/<name>.py`` with ``args`` and ``--json``; its outcome and figures."""
    out_json = work / f"{name}.json"
    # Keep the pictures committed in bench/ as they are.
    extra = {"leak": ["--svg", str(work / "leak.svg")], "memory": ["--svg-dir", str(work)]}.get(name, [])
    argv = [PYTHON, str(BENCH / f"{name}.py"), *args, *extra, "--json", str(out_json)]
    shown = " ".join(["python3", f"bench/{name}.py", *args])
    progress(f"{shown} (output in {name}.out / {name}.err) ...")
    started = time.monotonic()
    with open(work / f"{name}.out", "wb") as out, open(work / f"{name}.err", "wb") as err:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=bound_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            stop_group(proc)
            rc, timed_out = proc.returncode, True
        except KeyboardInterrupt:
            stop_group(proc)
            raise
    seconds = time.monotonic() - started
    result: dict[str, Any] = {"command": shown, "rc": rc, "seconds": seconds, "timed_out": timed_out}
    try:
        result["figures"] = json.loads(out_json.read_text())
    except (OSError, ValueError):
        result["figures"] = None
    stdout = (work / f"{name}.out").read_text(errors="replace")
    stderr = (work / f"{name}.err").read_text(errors="replace")
    result["survivors"] = survivors(name, result["figures"], stdout)
    if timed_out:
        result["error"] = f"did not finish within {bound_s:.0f} s (stopped)"
    elif rc != 0 and not result["survivors"]:
        tail = [line.strip() for line in (stderr or stdout).strip().splitlines() if line.strip()][-2:]
        result["error"] = f"exit status {rc}: " + (" / ".join(tail) or "no output")
    elif result["figures"] is None:
        result["error"] = "wrote no figures"
    progress(f"{name}.py: {'exit status ' + str(rc) if rc else 'done'} in {seconds:.0f} s")
    return result


def survivors(name: str, figures: Any, stdout: str) -> list[str]:
    """What the script reported as having outlived its daemons."""
    if isinstance(figures, dict):
        if name == "leak":
            return list(figures.get("summary", {}).get("leftovers", []))
        if "survivors" in figures:
            return list(figures["survivors"])
    lines = stdout.splitlines()
    for i, line in enumerate(lines):  # preload.py prints them, its JSON does not hold them
        if "outlived pitd" in line or "outlived it (killed now)" in line:
            return [s.strip() for s in lines[i + 1 :] if s.startswith("  ")] or [line.strip()]
    return []


# --- formatting -------------------------------------------------------------------------


def ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def us(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def per_s(v: float) -> str:
    return f"{v:,.0f}"


def verdict(target: str, ok: bool) -> str:
    return f"{target}: {'met' if ok else 'NOT met'}"


def joined(values: list[str]) -> str:
    return " / ".join(values)


# --- each script's rows -----------------------------------------------------------------


def calls_rows(f: dict[str, Any]) -> list[Row]:
    info, med = f["info"], f["medians"]
    workers: list[int] = info["workers"]
    ref = info["pool_size"]
    rows: list[Row] = []

    def call_row(label: str, name: str, target: str = "") -> None:
        m = med[name]
        value = f"{per_s(m['calls_per_s'])} calls/s, p50 {us(m['p50_us'])} µs, p99 {us(m['p99_us'])} µs"
        if "pitd_cpu_percent" in m:
            value += f"; pitd {m['pitd_cpu_percent']:.0f}% CPU"
        rows.append((label, value, target))

    call_row("(a) floor: raw Python loop echoing frames over pipes", "floor-raw")
    call_row("    floor with pit's worker runtime, same pipes", "floor-pit-runtime")
    if "floor-relay" in med:
        call_row("    raw floor through a relay that does no work (2 hops)", "floor-relay")
    for n in workers:
        # "pit(N) c=C" (one connection per call in flight), then "pit(N) c=C conn=1"
        names = [k for k in med if k.startswith(f"pit({n}) c=") and not k.endswith("CPU")]
        for name in sorted(names, key=lambda k: ("conn=" in k, int(k.split("c=")[1].split()[0]))):
            load = name.split(" ", 1)[1].replace(" conn=1", " on 1 connection")
            call_row(f"(b) pit echo via pitd, {n} worker{'s' if n > 1 else ''}, {load}", name)
    for kind, label in (("mp.Pool", "multiprocessing.Pool"), ("ProcessPoolExecutor", "ProcessPoolExecutor")):
        for n in workers:
            a, b = med[f"{kind}({n}) c=1"], med[f"{kind}({n}) c=64"]
            rows.append(
                (
                    f"(c) {label}({n}), c=1 / c=64",
                    f"{per_s(a['calls_per_s'])} / {per_s(b['calls_per_s'])} calls/s, "
                    f"p50 {us(a['p50_us'])} / {us(b['p50_us'])} µs",
                    "",
                )
            )
    one = [med["floor-raw 1 CPU"], med["floor-pit-runtime 1 CPU"], med[f"pit({ref}) c=1 1 CPU"]]
    rows.append(
        (
            f"    all pinned to 1 CPU: raw / runtime floor / pit({ref}) c=1",
            f"{joined([per_s(m['calls_per_s']) for m in one])} calls/s, p50 "
            f"{joined([us(m['p50_us']) for m in one])} µs",
            "",
        )
    )
    if "floor-relay 1 CPU" in med:
        m = med["floor-relay 1 CPU"]
        rows.append(
            (
                "    the relay floor pinned to 1 CPU",
                f"{per_s(m['calls_per_s'])} calls/s, p50 {us(m['p50_us'])} µs; relay "
                f"{m['relay_cpu_us_per_call']:.1f} µs "
                f"CPU/call (pitd {med[f'pit({ref}) c=1 1 CPU']['pitd_cpu_us_per_call']:.1f})",
                "",
            )
        )
    r = info["ratios"]
    for n in workers:
        t = r["throughput_by_workers"][str(n)]
        rows.append(
            (
                f"pit / mp.Pool calls/s, {n} worker{'s' if n > 1 else ''} (best c each)",
                f"{t['value']:.2f}x ({per_s(t['pit_calls_per_s'])} / {per_s(t['mp_pool_calls_per_s'])})",
                verdict(">= 2x", t["met"]),
            )
        )
    for key, label in (
        ("latency_over_raw_floor", f"pit({ref}) c=1 p50 / raw floor p50"),
        ("latency", f"pit({ref}) c=1 p50 / runtime floor p50"),
        ("latency_one_cpu", "the same, all pinned to 1 CPU"),
    ):
        if key in r:
            rows.append((label, f"{r[key]['value']:.2f}x", verdict("<= 2.5x", r[key]["met"])))
    if "relay_over_raw_floor" in r:
        rel = r["relay_over_raw_floor"]
        rows.append(
            (
                "    relay floor p50 / raw floor p50 (unpinned / 1 CPU)",
                f"{rel['unpinned']:.2f}x / {rel['one_cpu']:.2f}x",
                "what 2 hops cost here",
            )
        )
    for n in workers:
        c = r["pitd_cpu"][str(n)]
        rows.append(
            (
                f"pitd's own CPU at peak throughput, {n} worker{'s' if n > 1 else ''}",
                f"{c['pitd_cpu_percent']:.0f}% of one core ({c['pitd_cpu_us_per_call']:.1f} µs/call, "
                f"{c['row'].split(' ', 1)[1]}, {per_s(c['calls_per_s'])} calls/s)",
                verdict("< 10%", c["met"]),
            )
        )
    use = info.get("cpu_use", {})
    if use:
        rows.append(
            (
                "    other processes' CPU during calls.py",
                f"{use['others_percent']:.0f}% of the machine",
                "figures skewed above 5%",
            )
        )
    return rows


def supervise_rows(f: dict[str, Any]) -> list[Row]:
    med: dict[str, float] = f["medians"]
    sizes = sorted(int(k.split("_")[1]) for k in med if k.startswith("rss_"))
    py = med["python_startup"]
    rows: list[Row] = []

    def pick(fmt: Callable[[float], str], keys: list[str], unit: str) -> str:
        return joined([fmt(med[k]) if k in med else "-" for k in keys]) + f" {unit}"

    b = med.get("initial-1ms.b_proc")
    rows.append(
        (
            "restart after kill -9: replacement exec'd (1ms backoff)",
            f"{ms(b)} ms",
            verdict("pitd's share <= 5 ms", b is not None and b <= 5),
        )
    )
    c = med.get("initial-1ms.c_up")
    rows.append(
        (
            "    replacement's Python at its first line",
            f"{ms(c)} ms (python -c pass: {ms(py)} ms)",
            verdict(f"<= start-up + 5 = {ms(py + 5)} ms", c is not None and c <= py + 5),
        )
    )
    rows.append(("    replacement idle in status", f"{ms(med.get('initial-1ms.a_status'))} ms", ""))
    rows.append(
        (
            "    with the default backoff (restart.initial 100ms)",
            f"{ms(med.get('initial-default.b_proc'))} ms",
            "the backoff is 80-120 ms",
        )
    )
    label = "/".join(map(str, sizes))
    worst = max((med[f"pitctl_{n}"] for n in sizes), default=float("inf"))
    rows.append(
        (
            f"pitctl status --json process, {label} workers",
            pick(ms, [f"pitctl_{n}" for n in sizes], "ms"),
            verdict("< 5 ms", worst < 5),
        )
    )
    worst = max((med[f"status_p99_{n}"] for n in sizes), default=float("inf"))
    rows.append(
        (
            f"    status round trip p50 on the socket, {label} w",
            pick(ms, [f"status_p50_{n}" for n in sizes], "ms")
            + " (p99 "
            + pick(ms, [f"status_p99_{n}" for n in sizes], "ms)"),
            verdict("p99 < 5 ms", worst < 5),
        )
    )
    rss64 = med.get("rss_64")
    rows.append(
        (
            f"pitd RSS, {label} workers",
            pick(lambda v: f"{v:.1f}", [f"rss_{n}" for n in sizes], "MB")
            + (f" (guard {med['guard_rss']:.1f} MB)" if "guard_rss" in med else ""),
            verdict("< 10 MB at 64", rss64 is not None and rss64 < 10),
        )
    )
    idle = [n for n in sizes if f"cpu_pct_{n}" in med]
    if idle:
        rows.append(
            (
                f"pitd CPU while idle, {'/'.join(map(str, idle))} workers",
                pick(lambda v: f"{v:.2f}", [f"cpu_pct_{n}" for n in idle], "% of one core"),
                "",
            )
        )
    return rows


def leak_rows(f: dict[str, Any]) -> list[Row]:
    s, runs = f["summary"], f["runs"]
    rows: list[Row] = []
    if "reaction_median_ms" in s:
        rows.append(
            (
                "memory recycle: RSS crosses max_rss -> replacement ready",
                f"median {ms(s['reaction_median_ms'])} ms, max {ms(s['reaction_max_ms'])} ms "
                f"({s['within_target']}/{s['recycles_measured']} within target)",
                verdict(
                    f"median <= 100 + 50 + start-up {ms(s['startup_median_ms'])} = {ms(s['target_ms'])} ms",
                    s["reaction_median_ms"] <= s["target_ms"],
                ),
            )
        )
    else:
        rows.append(("memory recycle: RSS crosses max_rss -> replacement ready", "no recycle measured", ""))
    with_rss, without = runs[0], runs[1]
    rows.append(
        (
            "    pool RSS peak with / without max_rss",
            f"{with_rss['pool_rss_peak'] / 2**20:,.0f} / {without['pool_rss_peak'] / 2**20:,.0f} MiB, "
            f"{with_rss['recycles']} recycles, {with_rss['failed']} failed calls",
            verdict("no failed call", with_rss["failed"] == 0),
        )
    )
    mon = s.get("monitor") or []
    if mon:
        rows.append(
            (
                f"    monitor cost per sample, {'/'.join(str(m['processes']) for m in mon)} processes",
                joined([ms(m["per_sample_ms"]) for m in mon]) + " ms",
                "",
            )
        )
    return rows


def memory_rows(f: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [(f"{figure}", value, target) for figure, value, target in f["targets"]]
    for label, r in (f.get("budget") or {}).items():
        fig = r["figures"]
        rows.append(
            (
                f"    budget ({label}): recycles, failed calls",
                ", ".join(f"{k} {v}" for k, v in sorted(fig["recycles"].items()))
                + f"; {fig['failed']} failed",
                "",
            )
        )
    return rows


def preload_rows(f: dict[str, Any]) -> list[Row]:
    pre, plain = f["preloaded_kill_ready_ms"], f["plain_kill_ready_ms"]
    p_med = stats.median(pre)
    pm, nm = f["preloaded_memory"], f["plain_memory"]
    n = f.get("workers", "")
    return [
        (
            "preload: kill -9 -> replacement ready, preload / plain",
            f"{ms(p_med)} / {ms(stats.median(plain))} ms (median of {len(pre)}; max {ms(max(pre))} ms)",
            verdict("<= 20 ms with preload", p_med <= 20),
        ),
        (
            "    pitctl recycle -> replacement ready, preload / plain",
            f"{ms(f['preloaded_recycle_ready_ms'])} / {ms(f['plain_recycle_ready_ms'])} ms",
            "",
        ),
        (
            f"    workers' PSS{f', {n} workers' if n else ''}, preload (+ template) / plain",
            f"{pm['total_mib']:.0f} ({pm['pss_mib']:.0f} + {pm['template_pss_mib']:.0f}) / "
            f"{nm['total_mib']:.0f} MiB",
            "",
        ),
    ]


def concurrency_rows(f: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for key, r in f["rows"].items():
        value = (
            f"{r['calls_per_s']:.1f} calls/s, p50 {ms(r['p50_ms'])} / p99 {ms(r['p99_ms'])} ms, "
            f"{r['failed']} failed"
        )
        if "pss_mib" in r:
            value += f", PSS {r['pss_mib']:.0f} MiB"
        rows.append((f"    {f['labels'][key].strip()}", value, ""))
    t, a = f["targets"], f["rows"]["4x16_async"]
    ideal = f["info"]["ideal_calls_per_s"]
    rows.append(
        (
            "    4x16 async calls/s of the ideal, p99",
            f"{t['throughput']['value'] * 100:.1f}%, {ms(a['p99_ms'])} ms",
            verdict(f">= 95% of {ideal:.0f}, p99 <= 600 ms", t["throughput"]["met"]),
        )
    )
    rows.append(
        (
            "    PSS 4x16 async / 64x1 (template, spare included)",
            f"1/{1 / t['pss_ratio']['value']:.1f} ({a['pss_mib']:.0f} / "
            f"{f['rows']['64x1_sync']['pss_mib']:.0f} MiB)",
            verdict("<= 1/5", t["pss_ratio"]["met"]),
        )
    )
    h = a["health"]
    rows.append(
        (
            "    health ping round trip at full load, 4x16 async",
            f"p99 {ms(h['p99_ms'])} ms, max {ms(h['max_ms'])} ms "
            f"({h['pings']} pings, {h['missed']} unanswered)",
            verdict("p99 < 50 ms", t["health_rtt"]["met"]),
        )
    )
    r = f["rows"]["4x16_async_recycle"]
    took = (
        f", pool replaced in {r['recycle_s']:.1f} s"
        if r.get("recycle_s") is not None
        else ", pool not replaced"
    )
    rows.append(
        (
            "    failed calls across `pitctl recycle agent`",
            f"{r['failed']} of {r['calls']}{took}",
            verdict("0", t["recycle_failed"]["met"]),
        )
    )
    return rows


def warmup_rows(f: dict[str, Any]) -> list[Row]:
    info = f["info"]
    rows: list[Row] = []
    if info["stand_in"]:
        rows.append(("    the stand-in app (no DSPy here)", info["versions"], ""))
    else:
        rows.append(("    app", info["versions"], ""))
    for key, r in f["rows"].items():
        pss = " / ".join(f"{p['total']:.0f}" for p in r["pss_mib"])
        rows.append(
            (f"    {f['labels'][key]}: PSS idle / after runs 1-3", f"{pss} MiB, {r['failed']} failed", "")
        )
    plain = f["rows"]["plain"]["pss_mib"][-1]["total"]
    for key, t in f["targets"].items():
        mib = f["rows"][key]["pss_mib"][-1]["total"]
        rows.append(
            (
                f"    {f['labels'][key]} / one process, after run 3",
                f"{t['ratio']:.2f}x ({mib:.0f} / {plain:.0f} MiB)",
                verdict("<= 1.5x", t["met"]),
            )
        )
    return rows


def free_threading_rows(f: dict[str, Any]) -> list[Row]:
    if "skipped" in f:
        return [("    skipped", f["skipped"][:120], "")]
    interps = f["info"]["interpreters"]
    rows: list[Row] = [
        (
            "    compared",
            joined([f"{i['label']} (CPython {i['version']})" for i in interps.values()]),
            "",
        )
    ]
    for work in ("spin", "model"):
        for config, label in (
            ("1x1", "1 worker x 1"),
            ("1x2", "1 worker x 2 threads"),
            ("2x1", "2 workers x 1"),
        ):
            cells = []
            for key in interps:
                r = f["rows"][f"{work} {config} {key}"]
                cells.append(
                    f"{r['calls_per_s']:,.1f} calls/s, {r['cores_busy']:.2f} cores, {r['pss_mib']:,.0f} MiB"
                )
            rows.append((f"    {work}, {label}: {' / '.join(interps)}", joined(cells), ""))
    g = f["gil_reenabled"]
    warned = any(w.startswith("GIL_REENABLED:") for w in g["warnings"])
    rows.append(
        (
            "    spin 1 x 2 threads, free-threaded, GIL turned back on by an extension",
            f"{g['calls_per_s']:,.1f} calls/s, GIL {'on' if all(g['gil_enabled']) else 'off'}",
            verdict("GIL_REENABLED in status", warned),
        )
    )
    return rows


def restart_rows(f: list[dict[str, Any]]) -> list[Row]:
    ready = [r["ready_ms"] for r in f]
    backoffs = joined([str(r["backoff_ms"]) for r in f])
    return [
        (
            f"    kill -9 of a stable worker -> replacement ready ({len(f)} kills)",
            f"median {ms(stats.median(ready))} ms, max {ms(max(ready))} ms; backoff chosen {backoffs} ms",
            verdict("backoff 0", all(r["backoff_ms"] == 0 for r in f)),
        )
    ]


def stop_rows(f: dict[str, list[dict[str, Any]]]) -> list[Row]:
    rows: list[Row] = []
    for n, runs in f.items():
        took = [r["stop_s"] * 1000 for r in runs]
        killed = sum(r["killed"] for r in runs)
        rows.append(
            (
                f"    pitctl shutdown -> pitd exited, {n} preloaded workers ({len(runs)} runs)",
                f"median {ms(stats.median(took))} ms, max {ms(max(took))} ms; "
                f"{sum(r['by_themselves'] for r in runs)} of {sum(r['exited'] for r in runs)} workers exited "
                f"by themselves, {killed} SIGKILLed",
                "",
            )
        )
    return rows


def max_requests_rows(f: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for r in f:
        each = r["retired"]
        spread = f"{each[0]}/{stats.median(each):g}/{each[-1]}" if each else "-"
        rows.append(
            (
                f"    {r['work_ms']:g} ms calls, {'preload' if r['preload'] else 'no preload'}, "
                f"{r['callers']} caller{'s' if r['callers'] > 1 else ''}",
                f"calls per retired worker min/median/max {spread}, {r['over_limit']} of {len(each)} over "
                f"the limit, {r['failed']} failed",
                verdict("0 failed", r["failed"] == 0),
            )
        )
    return rows


def probe_rows(f: dict[str, Any]) -> list[Row]:
    p, stops = f["probes"], f["stops"]
    rows: list[Row] = []
    for condition in ("idle", "saturated", "queue full"):
        cells, no = [], 0
        for how in ("pitctl process", "control request"):
            for kind in ("ready", "live"):
                m = p[f"{condition} {how} {kind}"]
                p50, p99 = stats.percentiles(m["ms"], [0.5, 0.99])
                cells.append(f"{ms(p50)}/{ms(p99)}")
                no += m["no"]
        rows.append(
            (
                f"    probe p50/p99 ms, {condition}: process ready, live; request ready, live",
                f"{joined(cells)} ms, {no} answered no",
                verdict("none answered no", no == 0),
            )
        )
    not_ready = [s["not_ready_ms"] for s in stops if s["not_ready_ms"] is not None]
    refusal = [s["first_refusal_s"] for s in stops if s["first_refusal_s"] is not None]
    rows.append(
        (
            f"    SIGTERM under load -> not ready / 1st refusal / exit (median of {len(stops)})",
            f"{ms(stats.median(not_ready)) if not_ready else '-'} ms / "
            f"{f'{stats.median(refusal):.2f}' if refusal else '-'} s / "
            f"{stats.median(s['exit_s'] for s in stops):.2f} s",
            "shutdown_delay 2 s",
        )
    )
    others = sum(s["other"] for s in stops)
    rows.append(
        (
            "    calls pitd accepted but did not answer across the stops",
            f"{others} of {sum(s['ok'] + s['other'] for s in stops)}",
            verdict("0", others == 0),
        )
    )
    return rows


def streaming_rows(f: dict[str, Any]) -> list[Row]:
    info, t, targets = f["info"], f["throughput"], f["targets"]
    rows: list[Row] = []
    rates = [
        t[k]["chunks_per_s"] for k in ("floor", "floor_runtime", "pit_pitctl", "pit_python", "pit_client")
    ]
    rows.append(
        (
            f"    {info['chunks']:,} small chunks: floor / runtime floor / pit (pitctl, Python, pit.Client)",
            joined([per_s(r) for r in rates]) + " chunks/s",
            "",
        )
    )
    floor = targets["over_floor"]
    rows.append(
        (
            "    pit (pitctl bench) / floor, chunks/s",
            f"{100 * floor['ratio']:.0f}%",
            verdict(">= 50%", floor["met"]),
        )
    )
    if info.get("gunicorn_skipped"):
        rows.append(("    gunicorn dirty workers", info["gunicorn_skipped"][:120], "skipped"))
    elif "over_gunicorn" in targets:
        g = targets["over_gunicorn"]
        rows.append(
            (
                f"    pit.Client.stream / gunicorn {info['gunicorn']} DirtyClient.stream, chunks/s",
                f"{g['ratio']:.1f}x ({per_s(t['pit_client']['chunks_per_s'])} / "
                f"{per_s(t['gunicorn']['chunks_per_s'])})",
                verdict(">= 2x", g["met"]),
            )
        )
    fc = f["first_chunk"]
    rows.append(
        (
            "    first chunk p50 / one call p50 (1 worker, c=1)",
            f"{fc['ratio']:.2f}x ({us(fc['first_chunk_p50_us'])} / {us(fc['call_p50_us'])} µs)",
            verdict("<= 1.2x", targets["first_chunk"]["met"]),
        )
    )
    p = f["paced"]
    rows.append(
        (
            f"    {p['concurrency']} streams x 200 tokens every 20 ms (4 x 16): gap p50 / p99 / max",
            f"{ms(p['gap_p50_us'] / 1e3)} / {ms(p['gap_p99_us'] / 1e3)} / {ms(p['gap_max_us'] / 1e3)} ms; "
            f"{p['chunks']:,} of {p['expected_chunks']:,} tokens, {p['errors']} errors",
            verdict("p99 <= 25 ms, every token", targets["paced"]["met"]),
        )
    )
    h = f["hangups"]
    rows.append(
        (
            "    hang-up -> generator's finally: p99, async 1x1 / sync 1x1 / async 4x16 / sync 4x16",
            joined([ms(x["p99_ms"]) for x in h.values()]) + " ms",
            verdict("<= 50 ms", targets["hangup"]["met"]),
        )
    )
    for label, x in f.get("dirty_hangups", {}).items():
        ran = x["completed_after_ms"]
        value = f"{x['closed']} of {x['trials']} closed"
        if x["closed"]:
            value += f", p50 {ms(x['p50_ms'])} ms"
        if ran:
            whole = f"{info['dirty_hang_s']:.0f} s"
            value += f"; {len(ran)} ran their whole {whole} (finally: {ms(max(ran))} ms after)"
        rows.append((f"    {label}: hang-up -> finally:", value, ""))
    sr = f["slow_reader"]
    rows.append(
        (
            f"    slow reader (1 MB/s, window {sr['window']} x 1 MiB): pitd RSS growth",
            f"{sr['growth_mib']:.1f} MiB ({sr['before_mib']:.1f} -> {sr['max_during_mib']:.1f})",
            verdict("< 16 MiB", targets["slow_reader"]["met"]),
        )
    )
    return rows


def http_door_rows(f: dict[str, Any]) -> list[Row]:
    info, r, t = f["info"], f["rows"], f["targets"]
    rows: list[Row] = []

    def figures(key: str) -> str:
        x = r[key]
        return f"{per_s(x['calls_per_s'])} calls/s, p50 {us(x['p50_us'])} µs, p99 {us(x['p99_us'])} µs"

    rows.append(
        (
            "    call socket (pitctl bench), c=1 / c=64",
            f"{figures('socket_c1')} / {figures('socket_c64')}",
            "",
        )
    )
    if info.get("oha_skipped"):
        rows.append(("    door and gunicorn under oha", info["oha_skipped"][:150], "skipped"))
    for key, label in (
        ("door_c1", "door HTTP/1.1 keep-alive, c=1"),
        ("door_c64", "door HTTP/1.1 keep-alive, c=64"),
        ("door_h2c_c64", "door HTTP/2 cleartext, c=64"),
        ("door_tls_h2_c64", "door TLS HTTP/2, c=64"),
        ("door_tls_h1_c64", "door TLS HTTP/1.1, c=64"),
        ("gunicorn_c1", f"gunicorn {info.get('gunicorn') or ''} gthread + dirty workers, c=1"),
        ("gunicorn_c64", f"gunicorn {info.get('gunicorn') or ''} gthread + dirty workers, c=64"),
    ):
        if key in r:
            rows.append((f"    {label}", figures(key), ""))
    if info.get("gunicorn_skipped"):
        rows.append(("    gunicorn", info["gunicorn_skipped"][:150], "skipped"))
    if "latency" in t:
        x = t["latency"]
        rows.append(
            (
                "    door c=1 p50 - call socket c=1 p50",
                f"{x['added_us']:+.0f} µs ({us(x['door_p50_us'])} / {us(x['socket_p50_us'])} µs)",
                verdict("<= +50 µs", x["met"]),
            )
        )
    if "throughput" in t:
        x = t["throughput"]
        rows.append(
            (
                "    door c=64 / call socket c=64, calls/s",
                f"{100 * x['ratio']:.0f}% (by CPU per request: {100 * x['cpu_ratio']:.0f}%)",
                verdict(">= 50%", x["met"]),
            )
        )
    if "tls" in t:
        x = t["tls"]
        rows.append(
            (
                "    door TLS HTTP/2 / plain, c=64, calls/s",
                f"{100 * x['ratio']:.0f}% (p50 {x['p50_ratio']:.2f}x; by CPU per request: "
                f"{100 * x['cpu_ratio']:.0f}%)",
                verdict(">= 80%", x["met"]),
            )
        )
        parts = [
            f"{label} {100 * x[k]['ratio']:.0f}%"
            for k, label in (("tls_alone", "TLS (HTTP/1.1)"), ("http2_alone", "HTTP/2 (cleartext)"))
            if k in x
        ]
        if parts:
            rows.append(("    of which, calls/s against plain HTTP/1.1", ", ".join(parts), ""))
    for c in (1, 64):
        if f"gunicorn_c{c}" in t:
            x = t[f"gunicorn_c{c}"]
            rows.append(
                (
                    f"    door / gunicorn, c={c}: calls/s, p50",
                    f"{x['rate_ratio']:.1f}x, {x['p50_ratio']:.2f}x",
                    verdict(">= 3x, <= 0.5x", x["met"]),
                )
            )
    failed = [name for name, c in f.get("checks", {}).items() if c["ok"] != c["of"]]
    rows.append(
        (
            "    endpoints checked (20 echoes each)",
            ", ".join(f"{n} {c['ok']}/{c['of']}" for n, c in f.get("checks", {}).items()),
            "FAILED" if failed else "",
        )
    )
    return rows


PEERS = ("pit", "supervisord", "gunicorn")


def peers_rows(f: dict[str, Any]) -> list[Row]:
    med: dict[str, dict[str, float]] = f["medians"]
    skipped: dict[str, str] = f.get("skipped", {})
    versions = f.get("versions", {})
    rows: list[Row] = []
    for peer in PEERS[1:]:
        if peer in skipped:
            rows.append(
                (f"{peer}: not installable from PyPI, its figures are skipped", skipped[peer][:120], "")
            )

    def cells(fmt: Callable[[dict[str, float]], str], peers: tuple[str, ...] = PEERS) -> str:
        out = []
        for peer in peers:
            try:
                out.append(fmt(med.get(peer, {})) if peer not in skipped else "skipped")
            except KeyError:
                out.append("-")
        return joined(out)

    def at(key: str, fmt: Callable[[float], str]) -> Callable[[dict[str, float]], str]:
        """``fmt`` of one figure of a peer's medians."""
        return lambda m: fmt(m[key])

    names = " / ".join(f"{p} {versions[p]}" if p in versions else p for p in PEERS)
    rows.append(("    compared", names, ""))
    rows.append(
        (
            "    restart after kill -9, pit / supervisord / gunicorn",
            cells(lambda m: ms(m["restart_ms"])) + " ms",
            "gunicorn forks without exec",
        )
    )
    for n in (8, 64):
        rows.append((f"    status, CLI process wall, {n} workers", cells(at(f"cli_{n}", ms)) + " ms", ""))
        rows.append(
            (
                f"    status, socket round trip p50, {n} workers",
                cells(at(f"sock_p50_{n}", ms)) + " ms",
                "",
            )
        )
    rows.append(
        ("    daemon RSS, 8 / 64 workers", cells(lambda m: f"{m['rss_8']:.1f}/{m['rss_64']:.1f}") + " MB", "")
    )
    conc = sorted(
        int(k[1:].split("_")[0]) for k in med.get("pit", {}) if k.startswith("c") and k.endswith("_per_s")
    )
    both = ("pit", "gunicorn")
    for c in conc:
        rows.append(
            (
                f"    c={c}: pit calls/s / gunicorn (sync, max_requests) req/s",
                cells(at(f"c{c}_per_s", per_s), both)
                + ", p99 "
                + cells(at(f"c{c}_p99_ms", ms), both)
                + " ms",
                "",
            )
        )
    g = med.get("gunicorn", {})
    if conc and "gunicorn" not in skipped and f"c{conc[0]}_recycled_per_s" in g:
        failed = sum(med[p].get(f"c{c}_errors", 0) for p in both for c in conc)
        rows.append(
            (
                "    gunicorn workers replaced /s (max_requests), failed",
                joined([f"{g[f'c{c}_recycled_per_s']:.1f}" for c in conc]) + f" /s, {failed:.0f} failed",
                f"load generator: {f.get('loadgen', '?')}",
            )
        )
    return rows


ROWS: dict[str, tuple[str, Callable[[Any], list[Row]]]] = {
    "calls": ("Calls: 32-character echo (calls.py)", calls_rows),
    "supervise": ("Supervision (supervise.py)", supervise_rows),
    "leak": ("Memory recycling (leak.py)", leak_rows),
    "memory": ("Predicted and budgeted memory (memory.py)", memory_rows),
    "preload": ("Preload fork-server (preload.py)", preload_rows),
    "concurrency": ("Concurrent workers: 64 callers, 500 ms HTTP waits (concurrency.py)", concurrency_rows),
    "warmup": ("Warm-up: a forked pool's memory after load (warmup.py)", warmup_rows),
    "free_threading": (
        "Free-threaded CPython against the GIL build, CPU-bound pools (free_threading.py)",
        free_threading_rows,
    ),
    "restart": ("Restart backoff: kills of workers up past min_uptime (restart.py)", restart_rows),
    "stop": ("Stopping a preloaded pool (stop.py)", stop_rows),
    "max_requests": ("max_requests = 25 under load, 2 workers (max_requests.py)", max_requests_rows),
    "probe": ("Probes under load, and SIGTERM with calls in flight (probe.py)", probe_rows),
    "streaming": ("Streaming replies (streaming.py)", streaming_rows),
    "http_door": ("HTTP front door under oha (http_door.py)", http_door_rows),
    "peers": ("Peers from PyPI (peers.py)", peers_rows),
}


# --- the table --------------------------------------------------------------------------


def section(name: str, result: dict[str, Any] | None) -> list[Row]:
    title, make = ROWS[name]
    rows: list[Row] = [(title, "", "")]
    if result is None:
        return [*rows, ("    skipped (--skip)", "", "")]
    if result.get("figures") is not None and not result.get("timed_out"):
        try:
            rows += make(result["figures"])
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:
            rows.append(("    figures unreadable", f"{type(e).__name__}: {e}", "FAILED"))
    if result.get("error"):
        rows.append((f"    {name}.py failed", result["error"][:300], "FAILED"))
    if result.get("survivors"):
        rows.append(
            (
                f"    {name}.py: processes outlived their daemon",
                f"{len(result['survivors'])} (killed)",
                "FAILED",
            )
        )
    return rows


def print_table(rows: list[Row]) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = min(max(len(r[1]) for r in rows), 90)
    print(f"{'figure':<{w0}}  {'value':<{w1}}  target")
    print(f"{'-' * w0}  {'-' * w1}  ------")
    for i, (figure, value, target) in enumerate(rows):
        if not value and not target and not figure.startswith(" ") and i:
            print()
        print(f"{figure:<{w0}}  {value:<{w1}}  {target}".rstrip())


def build_is_stale() -> bool:
    pitd = BIN_DIR / "pitd"
    built = pitd.stat().st_mtime
    sources = [REPO / "Cargo.toml", REPO / "Cargo.lock", *(REPO / "src").rglob("*.rs")]
    return any(p.exists() and p.stat().st_mtime > built for p in sources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs of every script, to validate")
    parser.add_argument(
        "--skip", default="", help=f"comma-separated scripts to leave out ({','.join(ORDER)})"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated scripts to run, the others left out of the table"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the table and every script's figures here")
    parser.add_argument("--logs", metavar="DIR", type=Path, help="keep each script's output and JSON in DIR")
    args = parser.parse_args(argv)
    skip, only = (
        {s.strip().removesuffix(".py") for s in a.split(",") if s.strip()} for a in (args.skip, args.only)
    )
    for option, names in (("--skip", skip), ("--only", only)):
        if names - set(ORDER):
            parser.error(
                f"{option}: unknown {', '.join(sorted(names - set(ORDER)))} (known: {', '.join(ORDER)})"
            )
    if skip and only:
        parser.error("--skip and --only: give one of them")
    # With --only, the scripts left out have no section at all; with --skip, a row each.
    shown = [name for name in ORDER if not only or name in only]
    skip |= set(ORDER) - set(shown)
    for exe in ("pitd", "pitctl"):
        if not os.access(BIN_DIR / exe, os.X_OK):
            parser.error(f"{BIN_DIR / exe} not found: run `cargo build --release` first")

    version = subprocess.run(
        [str(BIN_DIR / "pitd"), "--version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    stale = build_is_stale()
    load_before = os.getloadavg()
    machine: dict[str, Any] = {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": PYTHON,
        "python_version": platform.python_version(),
        "pitd": version,
        "build_older_than_sources": stale,
        "mode": "quick" if args.quick else "full",
        "loadavg_before": load_before,
    }
    if stale:
        progress("warning: target/release/pitd is older than the sources (cargo build --release)")
    work = Path(tempfile.mkdtemp(prefix="pit-suite-"))
    started = time.monotonic()
    results: dict[str, dict[str, Any] | None] = {}
    try:
        for name in ORDER:
            if name in skip:
                results[name] = None
                continue
            script = SCRIPTS[name]
            if args.quick:
                results[name] = run_script(name, script.quick, script.quick_bound_s, work)
            else:
                results[name] = run_script(name, script.full, script.full_bound_s, work)
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    finally:
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for p in work.iterdir():
                shutil.copy2(p, args.logs / p.name)
        shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_after"] = load_after = os.getloadavg()
    machine["seconds"] = total = time.monotonic() - started

    rows: list[Row] = []
    for name in shown:
        rows += section(name, results[name])
    ran = [r for r in results.values() if r is not None]
    failed = [n for n, r in results.items() if r is not None and (r.get("error") or r.get("survivors"))]

    print()
    print(
        f"pit benchmark suite ({'quick validation run' if args.quick else 'full run'}): "
        f"{version or 'pitd'}, release build{' OLDER THAN THE SOURCES' if stale else ''}"
    )
    print(f"machine: {machine['cores']} cores ({machine['usable_cores']} usable), {platform.platform()}")
    print(f"python: {platform.python_implementation()} {platform.python_version()} at {PYTHON}")
    print(
        f"load average (1/5/15 min): before {report.loadavg(load_before)}, after {report.loadavg(load_after)}"
    )
    print(f"scripts: {', '.join(r['command'] for r in ran) or 'none'}; {total / 60:.1f} min in all")
    print("every figure below was measured in this run; medians over each script's runs\n")
    print_table(rows)
    print()
    if failed:
        print(f"FAILED: {', '.join(f + '.py' for f in failed)} (see the rows above)")
    elif ran:
        print("every script finished; none reported a process left behind")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": rows, "scripts": results}, f, indent=1)
            f.write("\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
