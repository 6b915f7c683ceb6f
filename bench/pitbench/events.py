"""pitd's events as the benchmarks read them: a ``pitctl events -f --json`` process followed
on a thread (an event is timed as it reaches the script, without polling pitd, which would
compete with it for the CPU), and an event's own timestamp."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

Event = dict[str, Any]


def event_time(ev: Event) -> float:
    """An event's ``ts`` (RFC 3339, UTC, stamped by pitd as it handles the event, 1 ms
    resolution) as seconds since the epoch."""
    return datetime.fromisoformat(str(ev["ts"]).replace("Z", "+00:00")).timestamp()


def replacement_ready(pool: str, known: set[str]) -> Callable[[Event], bool]:
    """Matches the ``worker_ready`` event of a worker of ``pool`` not in ``known`` (the ids
    of its workers before a kill or a recycle): the replacement is ready."""

    def match(ev: Event) -> bool:
        return ev.get("event") == "worker_ready" and ev.get("pool") == pool and ev.get("worker") not in known

    return match


class EventFollower:
    """``pitctl events -f --json`` against a control socket, read on a thread: ``seen`` has
    every event with the monotonic time it arrived here, and ``on_event`` (when given) is
    called with each, on the reading thread, as it arrives.

    The follower ends by itself when pitd closes the control socket; ``stop()`` ends it
    otherwise. Its stderr is discarded: it reports the socket closing at pitd's exit."""

    def __init__(self, pitctl: str, control: str, on_event: Callable[[Event], None] | None = None) -> None:
        self.on_event = on_event
        self.seen: list[tuple[float, Event]] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [pitctl, "--socket", control, "events", "-f", "--json"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.seen.append((time.monotonic(), ev))
            if self.on_event is not None:
                self.on_event(ev)

    def events(self) -> list[Event]:
        """Every event so far, in arrival order."""
        with self.lock:
            return [ev for _, ev in self.seen]

    def wait(self, match: Callable[[Event], bool], after: float, within_s: float = 60.0) -> float:
        """The arrival time of the first event ``match`` accepts that arrived at or after
        the monotonic time ``after``; RuntimeError when none has within ``within_s``."""
        end = time.monotonic() + within_s
        while time.monotonic() < end:
            with self.lock:
                for at, ev in self.seen:
                    if at >= after and match(ev):
                        return at
            time.sleep(0.001)
        raise RuntimeError(f"event not seen within {within_s:.0f} s")

    def stop(self, grace_s: float = 0.0, wait_s: float = 10.0) -> None:
        """Waits up to ``grace_s`` for the follower to end by itself (pitd gone), then
        SIGTERM, then SIGKILL; the reader thread has read everything once this returns."""
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=wait_s)
        self.reader.join(timeout=wait_s)
