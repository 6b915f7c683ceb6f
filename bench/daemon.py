"""The life of a daemon a benchmark starts, in one place: its files in a temporary
directory, started in the foreground with its log in that directory, waited for, stopped
(SIGTERM, then SIGKILL after a bound) and checked: every process it was seen to start must
be gone once it is, and the ones that are not are killed by pid and reported.

Every benchmark that runs a release pitd (or a peer daemon) builds on these two classes, so
that a fix to the stop or the leftover check reaches all of them."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TypeVar

from procfs import descendants, kill_leftovers

T = TypeVar("T")


def describe(survivors: Dict[int, List[str]]) -> List[str]:
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
        self.log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self._proc: Optional["subprocess.Popen[bytes]"] = None
        self.seen: Dict[int, str] = {}
        # Event readers on other threads add to ``seen`` while the benchmark runs.
        self.seen_lock = threading.Lock()

    def launch(
        self,
        argv: Sequence[str],
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[Path] = None,
        merged: bool = False,
    ) -> None:
        """Starts the daemon. Its stderr goes to the log; its stdout too with ``merged``,
        else nowhere (pitd writes nothing there)."""
        self._proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self.log if merged else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if merged else self.log,
            env=env,
            cwd=None if cwd is None else str(cwd),
        )

    @property
    def proc(self) -> "subprocess.Popen[bytes]":
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

    def wait_for(self, ready: Callable[[], Optional[T]], within_s: float, every_s: float, what: str) -> T:
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

    def terminate(self, wait_s: Optional[float] = None) -> bool:
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

    def leftovers(self) -> Dict[int, List[str]]:
        """``kill_leftovers`` over ``seen``: what outlived the daemon, killed, by pid."""
        with self.seen_lock:
            seen = dict(self.seen)
        return kill_leftovers(seen)

    def stop(self, wait_s: Optional[float] = None) -> Dict[int, List[str]]:
        """Remembers the daemon's processes a last time, stops it (``terminate``), closes
        the log and returns what outlived it (``leftovers``). The directory stays, for the
        log: ``cleanup()`` removes it."""
        if self.running():
            self.remember()
        self.terminate(wait_s)
        self.log.close()
        return self.leftovers()

    def log_tail(self, lines: Optional[int] = None) -> str:
        if not self.log.closed:
            self.log.flush()
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-(lines or self.tail_lines) :])

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PitdProcess(DaemonProcess):
    """A release pitd in the foreground: both sockets and ``pitd.toml`` in its directory.

    A subclass builds its pools' spec and calls ``start()`` with it; ``spec_head()`` gives
    the ``[daemon]`` table's socket lines, which every spec needs.
    """

    name = "pitd"

    def __init__(self, bin_dir: Path, prefix: str) -> None:
        super().__init__(prefix, "pitd.log")
        self.pitd, self.pitctl = str(bin_dir / "pitd"), str(bin_dir / "pitctl")
        self.control = str(self.dir / "control.sock")
        self.call_socket = str(self.dir / "call.sock")
        self.spec = self.dir / "pitd.toml"

    def require_binaries(self) -> None:
        """Exits with a hint when the release binaries are not built."""
        for exe in (self.pitd, self.pitctl):
            if not os.access(exe, os.X_OK):
                self.cleanup()
                raise SystemExit(f"{exe} not found: run `cargo build --release` first")

    def spec_head(self) -> List[str]:
        return [
            "[daemon]",
            f"control_socket = {json.dumps(self.control)}",
            f"call_socket = {json.dumps(self.call_socket)}",
        ]

    def start(self, spec: Sequence[str], env: Optional[Dict[str, str]] = None) -> None:
        """Writes ``spec`` (lines) to ``pitd.toml`` and starts pitd on it."""
        self.spec.write_text("\n".join(spec) + "\n")
        self.launch([self.pitd, "--config", str(self.spec)], env=env)

    def ctl(self, *args: str, timeout: Optional[float] = None) -> "subprocess.CompletedProcess[str]":
        """``pitctl --socket CONTROL ARGS...``, its output captured as text, bounded by
        ``timeout`` (default ``self.wait_s``)."""
        return subprocess.run(
            [self.pitctl, "--socket", self.control, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=self.wait_s if timeout is None else timeout,
        )
