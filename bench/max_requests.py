"""How closely ``max_requests`` holds under load: the calls each worker served before it
left, against the limit, measured against the release pitd.

A pool of ``bench/apps/whoami_app.py`` (one quick handler that answers with its worker's
id) with ``size = 2``, ``max_requests = 25`` (no jitter), without
and with ``preload`` (a Python start of ~100 ms against a fork from the template's spare),
gets ``--calls`` calls (default 400) from 1, 8 and 64 callers, quick ones (no work) and ones
of 5 ms (``--work-ms``), (threads, each
with its own ``pit.Client``). Every reply names its worker; a worker counts once it has
left (it is no longer in status once the pool has settled after the run), so the figures are the calls each
retired worker served: min, median and max, and how many served more than the limit.

Every process the script starts is stopped; it exits 1 if one outlives its pitd.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pitbench import specs, stats
from pitbench.daemon import PitdProcess
from pitbench.paths import APPS, BIN_DIR

import pit

PYTHON = os.path.realpath(sys.executable)
POOL = "echo"
LIMIT = 25
WAIT_S = 60.0


class Daemon(PitdProcess):
    def __init__(self, bin_dir: Path, preload: bool) -> None:
        super().__init__(bin_dir, "pit-maxreq-")
        self.require_binaries()
        pool: dict[str, specs.Value | None] = {
            "app": "whoami_app",
            "python": PYTHON,
            "cwd": str(APPS),
            "env": specs.pit_env(),
            "size": 2,
            "max_requests": LIMIT,
            "max_requests_jitter": 0,
            "preload": ["whoami_app"] if preload else None,
        }
        self.start(self.spec_head(monitor_interval="1s") + specs.table(f"pools.{POOL}", pool))

    def wait_settled(self) -> dict[str, Any]:
        """Until the pool is its 2 workers, idle, none of them marked to retire (the last
        run's recycles have all happened); that pool's status."""

        def settled(pool: dict[str, Any]) -> bool:
            return len(pool["workers"]) == 2 and not any(w["last_recycle_reason"] for w in pool["workers"])

        pool: dict[str, Any] = self.wait_workers({POOL: 2}, accept=settled, within_s=WAIT_S)["pools"][0]
        return pool


def run(bin_dir: Path, preload: bool, callers: int, calls: int, work_ms: float) -> dict[str, Any]:
    d = Daemon(bin_dir, preload)
    served: dict[str, int] = {}
    failed = [0]
    lock = threading.Lock()
    left = [calls]
    try:
        d.wait_settled()

        def caller() -> None:
            with pit.Client(d.call_socket) as c:
                while True:
                    with lock:
                        if left[0] == 0:
                            return
                        left[0] -= 1
                    try:
                        worker = str(c.call(POOL, "whoami", work_ms / 1000 or None, timeout=WAIT_S))
                    except pit.CallError:
                        with lock:
                            failed[0] += 1
                        continue
                    with lock:
                        served[worker] = served.get(worker, 0) + 1

        started = time.monotonic()
        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        took = time.monotonic() - started
        # Once the replacements the run asked for are in, the workers still in the pool
        # have not finished their lives: only the ones gone count.
        alive = {w["id"] for w in d.wait_settled()["workers"]}
    finally:
        survivors = d.stop()
        d.cleanup()
    retired = sorted(n for w, n in served.items() if w not in alive)
    return {
        "preload": preload,
        "work_ms": work_ms,
        "callers": callers,
        "calls": calls,
        "seconds": took,
        "failed": failed[0],
        "retired": retired,
        "over_limit": sum(n > LIMIT for n in retired),
        "survivors": survivors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per run (default 400)")
    parser.add_argument("--callers", default="1,8,64", help="caller counts (default 1,8,64)")
    parser.add_argument(
        "--work-ms", default="0,5", help="milliseconds each call sleeps, per run (default 0,5)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    args = parser.parse_args(argv)

    print(
        f"# max_requests: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, python {PYTHON}", flush=True
    )
    rows = []
    for work_ms in (float(w) for w in args.work_ms.split(",")):
        for preload in (False, True):
            for callers in (int(c) for c in args.callers.split(",")):
                rows.append(run(args.bin_dir, preload, callers, args.calls, work_ms))
    print(f"max_requests = {LIMIT}, 2 workers, {args.calls} calls per run")
    print(
        f"{'work':>5}  {'preload':>7}  {'callers':>7}  {'calls/s':>8}  {'failed':>6}  {'workers gone':>12}  "
        f"{'calls each min/median/max':>26}  {'over the limit':>14}"
    )
    for r in rows:
        each = r["retired"]
        spread = f"{each[0]}/{stats.median(each):g}/{each[-1]}" if each else "-"
        rate = r["calls"] / r["seconds"] if r["seconds"] else 0.0
        print(
            f"{r['work_ms']:>3g}ms  {'yes' if r['preload'] else 'no':>7}  {r['callers']:>7}  {rate:>8.0f}  "
            f"{r['failed']:>6}  {len(each):>12}  {spread:>26}  {r['over_limit']:>14}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    survivors = [s for r in rows for s in r["survivors"]]
    if survivors:
        print("processes outlived pitd:", *survivors, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
