"""Stopping a preloaded pool: how long ``pitctl shutdown`` takes until pitd has exited, and
how many workers had to be killed, for pools of N idle workers, against the release pitd.

For each N (``--workers``, default 8 and 64) a pitd is started with one pool of N workers
serving ``bench/apps/heavy_app.py`` with ``preload = ["heavy_import"]`` (~40 MB of objects
built once in the template and shared by every forked worker, as an ML stack would be).
Once every worker is idle and has answered a ``score`` call (so each has touched the
shared tables), ``pitctl shutdown`` is run and the time until the pitd process has exited
is taken. The ``worker_exited`` events are read from pitd's log (a ``pitctl events -f``
follower is cut off when the control socket closes, before the last exits): a worker that
exited by itself has ``exit code 0``; one pitd had to SIGKILL after ``kill_timeout`` shows
``killed by signal 9``. ``--runs`` runs per N (default 3); the table
gives the median stop time, the max, and the kills summed over the runs.

Every process the script starts is stopped; it exits 1 if one outlives its pitd.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from pitbench import specs, stats, wire
from pitbench.daemon import PitdProcess
from pitbench.paths import BIN_DIR
from pitbench.report import columns

PYTHON = os.path.realpath(sys.executable)
WAIT_S = 120.0


class Daemon(PitdProcess):
    tail_lines = 15
    wait_s = WAIT_S

    def __init__(self, bin_dir: Path, size: int, kill_timeout: str) -> None:
        super().__init__(bin_dir, "pit-stop-")
        self.size = size
        pool = specs.heavy_pool(size, startup_timeout="120s", kill_timeout=kill_timeout)
        self.start(self.spec_head() + specs.table("pools.heavy", pool))

    def touch_every_worker(self) -> None:
        """One ``score`` call per worker, all at once, so each reads the shared tables."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(WAIT_S)
            s.connect(self.call_socket)
            calls = (
                wire.frame({"id": i, "pool": "heavy", "method": "score", "args": f"token-{i}"})
                for i in range(self.size)
            )
            s.sendall(b"".join(calls))
            for _ in range(self.size):
                reply = wire.read_frame(s)
                if reply is None:
                    raise RuntimeError("the call socket closed")
                if not reply.get("ok"):
                    raise RuntimeError(f"score failed: {reply}")

    def exit_statuses(self) -> list[str]:
        """``exit_status`` of every ``worker_exited`` event in pitd's log."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "event: worker_exited" in line and 'exit_status="' in line:
                found.append(line.split('exit_status="', 1)[1].split('"', 1)[0])
        return found

    def shutdown_and_time(self) -> float:
        start = time.monotonic()
        out = self.ctl("shutdown")
        if out.returncode != 0:
            raise RuntimeError(f"pitctl shutdown failed ({out.returncode}): {out.stderr.strip()}")
        self.proc.wait(WAIT_S)
        return time.monotonic() - start

    def stop(self, wait_s: float | None = None) -> list[str]:
        survivors = super().stop(wait_s)
        self.cleanup()
        return survivors


def one_run(bin_dir: Path, size: int, kill_timeout: str) -> dict[str, Any]:
    d = Daemon(bin_dir, size, kill_timeout)
    try:
        d.wait_workers({"heavy": size}, within_s=WAIT_S, every_s=0.1)
        d.touch_every_worker()
        took = d.shutdown_and_time()
        statuses = d.exit_statuses()
        return {
            "stop_s": took,
            "exited": len(statuses),
            "by_themselves": sum(s == "exit code 0" for s in statuses),
            "killed": sum("signal 9" in s for s in statuses),
            "other": sorted({s for s in statuses if s != "exit code 0" and "signal 9" not in s}),
        }
    finally:
        survivors = d.stop()
        if survivors:
            print(f"processes outlived pitd: {survivors}", file=sys.stderr)
            sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 64], help="pool sizes (default 8 64)")
    parser.add_argument("--runs", type=int, default=3, help="runs per size (default 3)")
    parser.add_argument(
        "--kill-timeout", default="5s", help='the pool\'s kill_timeout (default "5s", the spec default)'
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    args = parser.parse_args(argv)

    print(f"# stop: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, python {PYTHON}", flush=True)
    figures: dict[str, Any] = {}
    for n in args.workers:
        runs = [one_run(args.bin_dir, n, args.kill_timeout) for _ in range(args.runs)]
        figures[str(n)] = runs
    header = (
        "preloaded workers",
        "pitctl shutdown -> pitd exited",
        "max",
        "exited by themselves",
        "SIGKILLed",
        "other exits",
    )
    rows = []
    for n, runs in figures.items():
        times = [r["stop_s"] for r in runs]
        rows.append(
            (
                f"{n} (x{len(runs)} runs, kill_timeout {args.kill_timeout})",
                f"median {stats.median(times) * 1000:,.0f} ms",
                f"{max(times) * 1000:,.0f} ms",
                f"{sum(r['by_themselves'] for r in runs)} / {sum(r['exited'] for r in runs)}",
                str(sum(r["killed"] for r in runs)),
                ", ".join(sorted({o for r in runs for o in r["other"]})) or "-",
            )
        )
    columns(header, rows, rule=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
