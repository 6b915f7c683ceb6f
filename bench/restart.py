"""Restart backoff after kills of healthy workers: the time from each SIGKILL to the
replacement's ``worker_ready``, in a preloaded pool with the default restart settings,
measured against the release pitd.

A pool of ``bench/apps/heavy_app.py`` (whose import takes ~1 s) with
``preload = ["heavy_import"]`` and ``--workers`` workers (default 5) runs with the default
``[restart]`` settings (``min_uptime`` 1s, ``reset_after`` 60s). ``--kills`` times (default
5), ``--gap`` apart (default 3 s), the oldest worker, once it has been up ``--kill-after``
seconds (default 5: past ``min_uptime``, far younger than ``reset_after``), gets SIGKILL; a
``pitctl events -f --json`` follower times its replacement's ``worker_ready``, reads the
backoff pitd chose from the ``worker_exited`` event (``backoff_ms``) and the replacement's
own start-up time (its ``worker_started`` to ``worker_ready``, from pitd's timestamps).
``--min-uptime`` and ``--reset-after`` set the pool's keys, to see what a short-lived
worker costs.

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

from pitbench import specs
from pitbench.daemon import PitdProcess
from pitbench.events import event_time, replacement_ready
from pitbench.paths import BIN_DIR

PYTHON = os.path.realpath(sys.executable)
WAIT_S = 60.0
POOL = "model"


class Daemon(PitdProcess):
    tail_lines = 15
    wait_s = WAIT_S

    def __init__(self, bin_dir: Path, size: int, restart: dict[str, specs.Value | None]) -> None:
        super().__init__(bin_dir, "pit-restart-")
        spec = self.spec_head()
        spec += specs.table(f"pools.{POOL}", specs.heavy_pool(size, startup_timeout="60s"))
        spec += specs.table(f"pools.{POOL}.restart", restart)
        self.start(spec)

    def stable_workers(self, size: int, min_age_s: float) -> list[dict[str, Any]]:
        """The workers once `size` are idle and the oldest has been up `min_age_s`."""
        status = self.wait_workers(
            {POOL: size},
            accept=lambda pool: max(w["age_s"] for w in pool["workers"]) >= min_age_s,
            within_s=WAIT_S,
        )
        workers: list[dict[str, Any]] = status["pools"][0]["workers"]
        return workers

    def stop(self, wait_s: float | None = None) -> list[str]:
        left = super().stop(wait_s)
        self.cleanup()
        return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="kills (default 5)")
    parser.add_argument("--workers", type=int, default=5, help="workers in the pool (default 5)")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds between kills (default 3)")
    parser.add_argument("--min-uptime", help="the pool's restart.min_uptime (default: pitd's, 1s)")
    parser.add_argument("--reset-after", help="the pool's restart.reset_after (default: pitd's, 60s)")
    parser.add_argument(
        "--kill-after",
        type=float,
        default=5.0,
        help="seconds the oldest worker has been up before each kill (default 5; below min_uptime + "
        "the start-up time, the kills are of failed starts, which back off)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    args = parser.parse_args(argv)

    print(f"# restart: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, python {PYTHON}", flush=True)
    restart: dict[str, specs.Value | None] = {
        "min_uptime": args.min_uptime,
        "reset_after": args.reset_after,
    }
    d = Daemon(args.bin_dir, args.workers, restart)
    stable_after = args.kill_after
    rows: list[dict[str, Any]] = []
    try:
        d.stable_workers(args.workers, stable_after)
        events = d.follow_events()
        for i in range(args.kills):
            if i:
                time.sleep(args.gap)
            ws = sorted(d.stable_workers(args.workers, stable_after), key=lambda w: -w["age_s"])
            victim, known = ws[0], {w["id"] for w in ws}
            t = time.monotonic()
            os.kill(victim["pid"], signal.SIGKILL)
            is_replacement = replacement_ready(POOL, known)
            ready = events.wait(is_replacement, t, WAIT_S)
            seen = events.events()
            exited = [
                ev for ev in seen if ev.get("event") == "worker_exited" and ev.get("worker") == victim["id"]
            ]
            replacement = next(ev for ev in seen if is_replacement(ev))
            started = [
                ev
                for ev in seen
                if ev.get("event") == "worker_started" and ev.get("worker") == replacement["worker"]
            ]
            rows.append(
                {
                    "worker": victim["id"],
                    "age_s": victim["age_s"],
                    "backoff_ms": exited[0].get("backoff_ms") if exited else None,
                    "ready_ms": (ready - t) * 1000,
                    "startup_ms": (event_time(replacement) - event_time(started[0])) * 1000
                    if started
                    else None,
                }
            )
        events.stop()
    finally:
        survivors = d.stop()

    print(
        f"{'kill':>4}  {'worker':>10}  {'up for':>8}  {'backoff chosen':>14}  "
        f"{'kill -> replacement ready':>25}  {'its start-up':>12}  {'beyond start-up':>15}"
    )
    for i, r in enumerate(rows, 1):
        backoff = "-" if r["backoff_ms"] is None else f"{r['backoff_ms']} ms"
        startup = "-" if r["startup_ms"] is None else f"{r['startup_ms']:.1f} ms"
        beyond = "-" if r["startup_ms"] is None else f"{r['ready_ms'] - r['startup_ms']:.1f} ms"
        print(
            f"{i:>4}  {r['worker']:>10}  {r['age_s']:>7.1f}s  {backoff:>14}  {r['ready_ms']:>22.1f} ms  "
            f"{startup:>12}  {beyond:>15}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if survivors:
        print("processes outlived pitd:", *survivors, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
