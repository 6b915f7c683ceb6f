"""The life of a daemon a benchmark starts, in one place: its files in a temporary
directory, started in the foreground with its log in that directory, waited for, stopped
(SIGTERM, then SIGKILL after a bound) and checked: every process it was seen to start must
be gone once it is, and the ones that are not are killed by pid and reported.

Every benchmark that runs a release pitd (or a peer daemon) builds on these two classes, so
that a fix to the start, the wait, the stop or the leftover check reaches all of them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from pitbench import specs, wire
from pitbench.events import Event, EventFollower
from pitbench.procfs import descendants, kill_leftovers, start_time

T = TypeVar("T")
Status = dict[str, Any]


def describe(survivors: Mapping[int, list[str]]) -> list[str]:
    """``kill_leftovers``'s answer as one line per process, for a report."""
    return [f"pid {pid}: {' '.join(a).strip() or '?'}" for pid, a in survivors.items()]


class DaemonProcess:
    """A daemon in the foreground, its files in a temporary directory ``dir``, its output in
    ``log_path``, and ``seen``: every process it was seen to start (pid -> start time), the
    ones that must not outlive it.

    ``seen`` is filled by ``remember()``: a benchmark calls it (through ``wait_for`` or
    itself) whenever the daemon's processes are all there, and ``stop()`` does once more
    before the SIGTERM, so a worker started late is checked too.
    """

    #: What the error messages call the daemon.
    name = "daemon"
    #: Lines of the log that ``log_tail()`` gives by default.
    tail_lines = 20
    #: Default bound on each wait for the daemon (its exit, a pitctl command), seconds.
    wait_s = 60.0

    def __init__(self, prefix: str, log_name: str = "daemon.log") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.log_path = self.dir / log_name
        self.log: IO[bytes] = open(self.log_path, "wb")  # the daemon's output; closed in stop()
        self._proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, str] = {}
        # Event readers on other threads add to ``seen`` while the benchmark runs.
        self.seen_lock = threading.Lock()
        #: Seconds from the SIGTERM to the daemon's exit, once ``stop()`` has run.
        self.stop_s: float | None = None

    def launch(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        merged: bool = False,
    ) -> None:
        """Starts the daemon. Its stderr goes to the log; its stdout too with ``merged``,
        else nowhere (pitd writes nothing there)."""
        self._proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self.log if merged else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if merged else self.log,
            env=None if env is None else dict(env),
            cwd=None if cwd is None else str(cwd),
        )

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"{self.name} not launched")
        return self._proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def remember(self) -> None:
        """Adds the daemon's live descendants to ``seen``."""
        found = descendants(self.pid)
        with self.seen_lock:
            self.seen.update(found)

    def note(self, pid: int) -> None:
        """Adds one process the daemon reported starting (from its events): checked even
        if it is gone before the next ``remember()``."""
        started = start_time(pid)
        if started is not None:
            with self.seen_lock:
                self.seen.setdefault(pid, started)

    def wait_for(self, ready: Callable[[], T | None], within_s: float, every_s: float, what: str) -> T:
        """Polls ``ready()`` every ``every_s`` until it returns something other than None or
        False, then remembers the daemon's processes and returns that. Raises RuntimeError
        with the log's tail if the daemon exits first or ``within_s`` runs out: a benchmark
        must neither wait forever on a daemon that cannot start nor measure a half-started
        one. ``what`` says what was waited for, for the message."""
        deadline = time.monotonic() + within_s
        for _ in range(int(within_s / max(every_s, 1e-4)) + 1):
            if not self.running():
                code = None if self._proc is None else self._proc.returncode
                raise RuntimeError(f"{self.name} exited with {code}:\n{self.log_tail()}")
            got = ready()
            if got is not None and got is not False:
                self.remember()
                return got
            if time.monotonic() > deadline:
                break
            time.sleep(every_s)
        raise RuntimeError(f"{what}: not within {within_s:.0f} s:\n{self.log_tail()}")

    def terminate(self, wait_s: float | None = None) -> bool:
        """SIGTERM, and SIGKILL if the daemon is still there ``wait_s`` (default
        ``self.wait_s``) later; returns whether it took the SIGKILL. Every wait is bounded:
        a benchmark never hangs on a daemon that ignores its signal."""
        if not self.running():
            return False
        wait_s = self.wait_s if wait_s is None else wait_s
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=wait_s)
            return False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=wait_s)
            return True

    def leftovers(self) -> dict[int, list[str]]:
        """``kill_leftovers`` over ``seen``: what outlived the daemon, killed, by pid."""
        with self.seen_lock:
            seen = dict(self.seen)
        return kill_leftovers(seen)

    def stop(self, wait_s: float | None = None) -> list[str]:
        """Remembers the daemon's processes a last time, stops it (``terminate``, timed in
        ``stop_s``), closes the log and returns what outlived it (``leftovers``, one line
        each). The directory stays, for the log: ``cleanup()`` removes it."""
        if self.running():
            self.remember()
        t0 = time.monotonic()
        self.terminate(wait_s)
        self.stop_s = time.monotonic() - t0
        self.log.close()
        self.after_exit()
        return describe(self.leftovers())

    def after_exit(self) -> None:
        """What a subclass ends once the daemon is gone, before the leftover check."""

    def log_tail(self, lines: int | None = None) -> str:
        if not self.log.closed:
            self.log.flush()
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-(lines or self.tail_lines) :])

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def pool_pids(pool: Status) -> list[int]:
    """The pids of a pool in a status reply: its workers, its template and the template's
    spare (the processes whose memory is the pool's)."""
    pids = [w["pid"] for w in pool["workers"] if w.get("pid")]
    template = pool.get("template") or {}
    pids += [p["pid"] for p in (template, template.get("spare") or {}) if p.get("pid")]
    return pids


def has_spare(pool: Status) -> bool:
    """Whether the pool's preload template has its spare ready (the pool is whole)."""
    return bool(((pool.get("template") or {}).get("spare") or {}).get("pid"))


def status(control: str, pool: str | None = None, timeout: float = wire.TIMEOUT_S) -> Status:
    """pitd's status reply on the control socket ``control``, of every pool or of ``pool``."""
    reply = wire.request(control, {"cmd": "status", "pool": pool}, timeout)
    if reply.get("reply") != "status":
        raise RuntimeError(f"status refused: {reply}")
    return reply


def workers_ready(
    control: str,
    sizes: Mapping[str, int],
    states: Sequence[str] = ("idle",),
    spare: bool = False,
    accept: Callable[[Status], bool] | None = None,
) -> Status | None:
    """One look at pitd's status on the control socket ``control``: the reply when every
    pool of ``sizes`` has at least its count of workers with a pid in one of ``states``
    (and, with ``spare``, its template's spare ready, and ``accept(pool)`` true when given);
    None otherwise, also while pitd's control socket is not up yet."""
    try:
        reply = status(control)
    except (OSError, RuntimeError, ValueError):
        return None
    pools = {p["name"]: p for p in reply["pools"]}
    for name, size in sizes.items():
        pool = pools.get(name)
        if pool is None or sum(w["state"] in states and bool(w.get("pid")) for w in pool["workers"]) < size:
            return None
        if (spare and not has_spare(pool)) or (accept is not None and not accept(pool)):
            return None
    return reply


class PitdProcess(DaemonProcess):
    """A release pitd in the foreground: both sockets and ``pitd.toml`` in its directory.

    A benchmark builds its pools' spec after ``spec_head()`` (the ``[daemon]`` table with
    the sockets), calls ``start()`` with it, then ``wait_workers()``.
    """

    name = "pitd"

    def __init__(self, bin_dir: Path, prefix: str) -> None:
        super().__init__(prefix, "pitd.log")
        self.pitd, self.pitctl = str(bin_dir / "pitd"), str(bin_dir / "pitctl")
        self.control = str(self.dir / "control.sock")
        self.call_socket = str(self.dir / "call.sock")
        self.spec = self.dir / "pitd.toml"
        self.followers: list[EventFollower] = []

    def require_binaries(self) -> None:
        """Exits with a hint when the release binaries are not built."""
        for exe in (self.pitd, self.pitctl):
            if not os.access(exe, os.X_OK):
                self.cleanup()
                raise SystemExit(f"{exe} not found: run `cargo build --release` first")

    def spec_head(self, **daemon: specs.Value) -> list[str]:
        """The ``[daemon]`` table: both sockets in the directory, and ``daemon``'s keys."""
        return [
            "[daemon]",
            *specs.keys({"control_socket": self.control, "call_socket": self.call_socket, **daemon}),
        ]

    def start(self, spec: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """Writes ``spec`` (lines) to ``pitd.toml`` and starts pitd on it."""
        self.spec.write_text("\n".join(spec) + "\n")
        self.launch([self.pitd, "--config", str(self.spec)], env=env)

    def ctl(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """``pitctl --socket CONTROL ARGS...``, its output captured as text, bounded by
        ``timeout`` (default ``self.wait_s``)."""
        return subprocess.run(
            [self.pitctl, "--socket", self.control, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=self.wait_s if timeout is None else timeout,
        )

    # --- the control socket, without a pitctl process -----------------------------------

    def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """One request on the control socket (a new connection, as pitctl makes it)."""
        return wire.request(self.control, message, self.wait_s if timeout is None else timeout)

    def status(self, pool: str | None = None) -> Status:
        """The status reply, of every pool or of ``pool``."""
        return status(self.control, pool, self.wait_s)

    def pool(self, name: str) -> Status:
        """One pool's status."""
        pool: Status = self.status(name)["pools"][0]
        return pool

    def events(self) -> list[Event]:
        """The events pitd keeps (not followed)."""
        events: list[Event] = self.request({"cmd": "events", "follow": False}).get("events", [])
        return events

    # --- waiting for the workers --------------------------------------------------------

    def workers_ready(
        self,
        sizes: Mapping[str, int],
        states: Sequence[str] = ("idle",),
        spare: bool = False,
        accept: Callable[[Status], bool] | None = None,
    ) -> Status | None:
        """``workers_ready`` on this pitd's control socket."""
        return workers_ready(self.control, sizes, states, spare, accept)

    def wait_workers(
        self,
        sizes: Mapping[str, int],
        states: Sequence[str] = ("idle",),
        spare: bool = False,
        accept: Callable[[Status], bool] | None = None,
        within_s: float | None = None,
        every_s: float = 0.05,
    ) -> Status:
        """Until ``workers_ready(...)`` (bounded: ``wait_s`` plus half a second per worker by
        default); its status reply. pitd's processes are then in ``seen``."""
        bound = self.wait_s + 0.5 * sum(sizes.values()) if within_s is None else within_s
        what = ", ".join(f"{n} {'/'.join(states)} workers in {p}" for p, n in sizes.items())
        return self.wait_for(lambda: self.workers_ready(sizes, states, spare, accept), bound, every_s, what)

    # --- events and the stop ------------------------------------------------------------

    def follow_events(self, on_event: Callable[[Event], None] | None = None) -> EventFollower:
        """A ``pitctl events -f --json`` follower; ``stop()`` ends it after pitd if it is
        still running then."""
        follower = EventFollower(self.pitctl, self.control, on_event)
        self.followers.append(follower)
        return follower

    def after_exit(self) -> None:
        """Ends the event followers still running: each ends by itself once pitd has
        closed the control socket, and has read (and noted) every event by then."""
        for follower in self.followers:
            follower.stop(grace_s=5.0)
