"""Restart backoff after kills of healthy workers: the time from each SIGKILL to the
replacement's ``worker_ready``, in a preloaded pool with the default restart settings,
measured against the release pitd.

A pool of ``bench/apps/heavy_app.py`` (whose import takes ~1 s) with
``preload = ["heavy_import"]`` and ``--workers`` workers (default 5) runs with the default
``[restart]`` settings but for ``reset_after``, set to ``--reset-after`` (default 2s) so the
run takes seconds rather than minutes: a worker counts as stable once it has been up that
long, as it would after the default 60s. ``--kills`` times (default 5), ``--gap`` apart
(default 3 s), the oldest worker (always one that has been up past ``reset_after``, unless
``--kill-after`` says otherwise) gets SIGKILL; a ``pitctl events -f --json`` follower times its replacement's ``worker_ready``
and reads the backoff pitd chose from the ``worker_exited`` event (``backoff_ms``).

Every process the script starts is stopped; it exits 1 if one outlives its pitd.
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preload import EventTimes, request  # noqa: E402
from daemon import PitdProcess, describe  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PYTHON = os.path.realpath(sys.executable)
WAIT_S = 60.0
POOL = "model"


class Daemon(PitdProcess):
    tail_lines = 15
    wait_s = WAIT_S

    def __init__(self, bin_dir: Path, size: int, reset_after: str) -> None:
        super().__init__(bin_dir, "pit-restart-")
        spec = [
            *self.spec_head(),
            "",
            f"[pools.{POOL}]",
            'app = "heavy_app"',
            'preload = ["heavy_import"]',
            f"python = {json.dumps(PYTHON)}",
            f"size = {size}",
            f"cwd = {json.dumps(str(REPO / 'bench' / 'apps'))}",
            f"env = {{ PYTHONPATH = {json.dumps(str(REPO / 'python'))} }}",
            'startup_timeout = "60s"',
            f"[pools.{POOL}.restart]",
            f"reset_after = {json.dumps(reset_after)}",
        ]
        self.start(spec)

    def workers(self) -> List[Dict[str, Any]]:
        return request(self.control, {"cmd": "status", "pool": POOL})["pools"][0]["workers"]

    def wait_workers(self, size: int, min_age_s: float) -> List[Dict[str, Any]]:
        """The workers once `size` are idle and the oldest has been up `min_age_s`."""

        def stable() -> Optional[List[Dict[str, Any]]]:
            try:
                ws = self.workers() if os.path.exists(self.control) else []
            except (OSError, RuntimeError, KeyError, IndexError):
                return None
            if sum(w["state"] == "idle" for w in ws) >= size and max(w["age_s"] for w in ws) >= min_age_s:
                return ws
            return None

        return self.wait_for(stable, WAIT_S, 0.05, "pool not ready")

    def stop(self) -> List[str]:  # type: ignore[override]
        left = describe(super().stop())
        self.cleanup()
        return left


def seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    raise ValueError(f"not a duration: {text}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="kills (default 5)")
    parser.add_argument("--workers", type=int, default=5, help="workers in the pool (default 5)")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds between kills (default 3)")
    parser.add_argument("--reset-after", default="2s", help="the pool's restart.reset_after (default 2s)")
    parser.add_argument(
        "--kill-after",
        type=float,
        help="seconds the oldest worker has been up before each kill (default: reset_after + 0.5; "
        "below reset_after, the kills are of short-lived workers, which back off)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release")
    args = parser.parse_args(argv)

    print(f"# restart: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, python {PYTHON}", flush=True)
    d = Daemon(args.bin_dir, args.workers, args.reset_after)
    stable_after = args.kill_after if args.kill_after is not None else seconds(args.reset_after) + 0.5
    rows: List[Dict[str, Any]] = []
    try:
        d.wait_workers(args.workers, stable_after)
        events = EventTimes(d)  # type: ignore[arg-type]
        for i in range(args.kills):
            if i:
                time.sleep(args.gap)
            ws = sorted(d.wait_workers(args.workers, stable_after), key=lambda w: -w["age_s"])
            victim, known = ws[0], {w["id"] for w in ws}
            t = time.monotonic()
            os.kill(victim["pid"], signal.SIGKILL)
            ready = events.wait(
                lambda ev: ev.get("event") == "worker_ready" and ev.get("pool") == POOL and ev.get("worker") not in known, t
            )
            with events.lock:
                exited = [ev for _, ev in events.seen if ev.get("event") == "worker_exited" and ev.get("worker") == victim["id"]]
            rows.append(
                {
                    "worker": victim["id"],
                    "age_s": victim["age_s"],
                    "backoff_ms": exited[0].get("backoff_ms") if exited else None,
                    "ready_ms": (ready - t) * 1000,
                }
            )
        events.stop()
    finally:
        survivors = d.stop()

    print(f"{'kill':>4}  {'worker':>10}  {'up for':>8}  {'backoff chosen':>14}  {'kill -> replacement ready':>25}")
    for i, r in enumerate(rows, 1):
        backoff = "-" if r["backoff_ms"] is None else f"{r['backoff_ms']} ms"
        print(f"{i:>4}  {r['worker']:>10}  {r['age_s']:>7.1f}s  {backoff:>14}  {r['ready_ms']:>22.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if survivors:
        print("processes outlived pitd:", *survivors, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
