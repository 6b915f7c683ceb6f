"""Preload fork-server: replacement-ready latency and memory of a pool whose import takes a
second, with and without ``preload``, measured in one run against the release pitd.

``bench/apps/heavy_app.py`` imports ``heavy_import``, which spends ~1 s and builds ~40 MB of
objects. Two pools serve it, identical but for ``preload = ["heavy_import"]``:

- **Replacement ready.** ``restart.initial = "1ms"`` (so the backoff does not count) and
  ``reset_after = "1s"`` with kills 1.2 s apart (so each is a first crash); the oldest idle
  worker gets SIGKILL, and the time until its replacement's ``worker_ready`` event reaches a
  ``pitctl events -f --json`` follower is taken (no polling that would compete with pitd);
  ``--kills`` times per pool, median and max. Also one ``pitctl recycle worker-N`` per pool
  (the replacement ready, the old one retired), and the cold start of the whole pool.
- **Memory of N workers** (``--workers``, default 8), once every worker has answered a
  ``score`` call and the monitor has sampled twice: the sum of RSS, PSS and USS over the
  pool's workers (``memory_metric = "pss"``), plus the template's own PSS for the preloaded
  pool. PSS divides each shared page among the processes mapping it, so the PSS sums are
  the pools' real footprint; RSS counts shared pages once per worker.

Every process the script starts is stopped; it exits 1 if one outlives its pitd.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pitbench import specs, stats
from pitbench.daemon import PitdProcess
from pitbench.events import EventFollower, replacement_ready
from pitbench.paths import BIN_DIR
from pitbench.procfs import pss_bytes

PYTHON = os.path.realpath(sys.executable)
WAIT_S = 60.0


class Daemon(PitdProcess):
    tail_lines = 15
    wait_s = WAIT_S

    def __init__(self, bin_dir: Path, size: int) -> None:
        super().__init__(bin_dir, "pit-preload-")
        spec = self.spec_head(monitor_interval="250ms")
        for name, preloaded in (("preloaded", True), ("plain", False)):
            pool = specs.heavy_pool(size, preloaded, memory_metric="pss", startup_timeout="60s")
            spec += specs.table(f"pools.{name}", pool)
            spec += specs.table(f"pools.{name}.restart", {"initial": "1ms", "reset_after": "1s"})
        self.t0 = time.monotonic()
        self.start(spec)

    def idle_at(self, name: str, size: int) -> float:
        """The monotonic time at which the pool was seen with ``size`` idle workers (polled
        every 0.5 ms: the pool's cold start is timed with it)."""
        return self.wait_for(
            lambda: time.monotonic() if self.workers_ready({name: size}) else None,
            WAIT_S,
            0.0005,
            f"pool {name} not ready",
        )

    def template_pid(self, name: str) -> int | None:
        pid: int | None = (self.pool(name).get("template") or {}).get("pid")
        return pid

    def call(self, pool: str, method: str, args: Any) -> None:
        out = self.ctl("call", pool, method, json.dumps(args))
        if out.returncode != 0:
            raise RuntimeError(f"call failed: {out.stderr}")

    def stop(self, wait_s: float | None = None) -> list[str]:
        left = super().stop(wait_s)
        self.cleanup()
        return left


def kill_and_time(d: Daemon, events: EventFollower, pool: str) -> float:
    ws = sorted(d.pool(pool)["workers"], key=lambda w: -w["age_s"])
    victim = ws[0]
    known = {w["id"] for w in ws}
    t = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)
    ready = events.wait(replacement_ready(pool, known), t, WAIT_S)
    return (ready - t) * 1000


def recycle_and_time(d: Daemon, events: EventFollower, pool: str) -> float:
    ws = d.pool(pool)["workers"]
    known = {w["id"] for w in ws}
    target = sorted(ws, key=lambda w: -w["age_s"])[0]["id"]
    t = time.monotonic()
    d.ctl("recycle", target)
    ready = events.wait(replacement_ready(pool, known), t, WAIT_S)
    return (ready - t) * 1000


def memory(d: Daemon, pool: str, size: int) -> dict[str, float]:
    for i in range(size * 3):
        d.call(pool, "score", f"token-{i}")
    time.sleep(0.6)  # two monitor passes after the calls
    ws = d.pool(pool)["workers"]
    mib = 1024 * 1024
    out = {
        "rss_mib": sum(w["rss_bytes"] for w in ws) / mib,
        "pss_mib": sum(w.get("pss_bytes") or w["memory_bytes"] for w in ws) / mib,
        "uss_mib": sum(w.get("uss_bytes") or 0 for w in ws) / mib,
        "template_pss_mib": 0.0,
    }
    if pool == "preloaded":
        tpid = d.template_pid(pool)
        if tpid:
            out["template_pss_mib"] = pss_bytes(tpid) / mib
    out["total_mib"] = out["pss_mib"] + out["template_pss_mib"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=7, help="kills per pool (default 7)")
    parser.add_argument("--workers", type=int, default=8, help="workers per pool (default 8)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    args = parser.parse_args(argv)

    print(f"# preload: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, python {PYTHON}", flush=True)
    d = Daemon(args.bin_dir, args.workers)
    figures: dict[str, Any] = {}
    try:
        for pool in ("preloaded", "plain"):
            figures[f"{pool}_cold_start_ms"] = (d.idle_at(pool, args.workers) - d.t0) * 1000
        for pool in ("preloaded", "plain"):
            figures[f"{pool}_memory"] = memory(d, pool, args.workers)
        events = d.follow_events()
        for pool in ("preloaded", "plain"):
            kills = []
            for _ in range(args.kills):
                # Each kill a first crash: the backoff resets once a worker has been up 1 s.
                time.sleep(1.2)
                kills.append(kill_and_time(d, events, pool))
            figures[f"{pool}_kill_ready_ms"] = kills
            figures[f"{pool}_recycle_ready_ms"] = recycle_and_time(d, events, pool)
        events.stop()
    finally:
        survivors = d.stop()

    def ms(v: float) -> str:
        return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"

    rows = [
        (
            "pool ready from pitd start (cold)",
            ms(figures["preloaded_cold_start_ms"]),
            ms(figures["plain_cold_start_ms"]),
        ),
        (
            f"kill -9 -> replacement idle, median of {args.kills}",
            ms(stats.median(figures["preloaded_kill_ready_ms"])),
            ms(stats.median(figures["plain_kill_ready_ms"])),
        ),
        (
            "kill -9 -> replacement idle, max",
            ms(max(figures["preloaded_kill_ready_ms"])),
            ms(max(figures["plain_kill_ready_ms"])),
        ),
        (
            "pitctl recycle -> replacement idle",
            ms(figures["preloaded_recycle_ready_ms"]),
            ms(figures["plain_recycle_ready_ms"]),
        ),
    ]
    pm, nm = figures["preloaded_memory"], figures["plain_memory"]
    n = args.workers
    rows += [
        (f"{n} workers: sum of RSS", f"{pm['rss_mib']:.0f} MiB", f"{nm['rss_mib']:.0f} MiB"),
        (f"{n} workers: sum of USS (private)", f"{pm['uss_mib']:.0f} MiB", f"{nm['uss_mib']:.0f} MiB"),
        (
            f"{n} workers: sum of PSS (+ template)",
            f"{pm['total_mib']:.0f} MiB ({pm['pss_mib']:.0f} + {pm['template_pss_mib']:.0f})",
            f"{nm['total_mib']:.0f} MiB",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'preload':>24}  {'no preload':>12}")
    for label, a, b in rows:
        print(f"{label:{width}}  {a:>24}  {b:>12}")
    target = stats.median(figures["preloaded_kill_ready_ms"])
    print(
        f"target: replacement ready <= 20 ms with preload: {'met' if target <= 20 else 'NOT met'} "
        f"({ms(target)})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if survivors:
        print("processes outlived pitd:", *survivors, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
