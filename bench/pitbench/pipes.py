"""A child process on two pipes, as pitd runs a worker: the frames we write reach its fd 3,
and what it writes on its fd 4 comes back to us. The floors of ``calls.py`` and
``streaming.py`` run a raw Python loop, or pit's worker runtime, this way, without pitd."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import time
from collections.abc import Mapping


class FrameProcess:
    """A process we write frames to on ``wfd`` and read its answers from on ``rfd``."""

    pid: int
    wfd: int
    rfd: int
    #: The child's CPU time (user + system, seconds) once ``close()`` has reaped it.
    cpu_s: float | None = None

    @property
    def pids(self) -> list[int]:
        """Every process of this floor (pinned together in the 1 CPU rows)."""
        return [self.pid]

    def read_frame(self, timeout: float | None = None) -> bytes:
        """One whole length-prefixed frame (the prefix included), when no other frame can
        be in the pipe behind it (one request in flight)."""
        data = b""
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
            if timeout is not None and not select.select([self.rfd], [], [], timeout)[0]:
                raise RuntimeError(f"no reply from pid {self.pid} within {timeout:.0f} s")
            more = os.read(self.rfd, 65536)
            if not more:
                raise RuntimeError(f"pid {self.pid} closed its reply pipe")
            data += more
        return data

    def close(self) -> None:
        """End of input makes the child exit; one that does not within 5 s is killed. Its
        CPU time is then in ``cpu_s``."""
        os.close(self.wfd)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            pid, _, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.01)
        else:
            os.kill(self.pid, signal.SIGKILL)
            _, _, usage = os.wait4(self.pid, 0)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        os.close(self.rfd)


class PipeChild(FrameProcess):
    """A child process reading our frames on its fd 3 and answering on its fd 4, its stdout
    on /dev/null (its stderr is ours)."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        to_child_r, self.wfd = os.pipe()
        self.rfd, from_child_w = os.pipe()
        # Park the child's ends above fd 4, so that dup2 onto 3 and 4 always makes fresh,
        # inheritable copies; every other pipe fd is close-on-exec.
        child_in = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)
        try:
            self.pid = os.posix_spawn(
                argv[0],
                argv,
                dict(env),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, child_in, 3),
                    (os.POSIX_SPAWN_DUP2, child_out, 4),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                ],
            )
        finally:
            os.close(child_in)
            os.close(child_out)
