"""A server a benchmark runs as a child process of its own on 127.0.0.1 (a loopback HTTP
backend its pools call): the script started again with a hidden option, which prints its
port on the first line of its stdout, serves until its stdin closes, and prints the number
of requests it answered as its last line."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class ServerProcess:
    """Starts ``argv`` and reads its port; ``url`` is ``url_format`` with the port. Raises
    RuntimeError (the process stopped) if the first line is not a port."""

    #: Bound on the server's exit once its stdin is closed, seconds.
    wait_s = 60.0

    def __init__(self, argv: Sequence[str], url_format: str, what: str) -> None:
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"{what} did not start: {line!r}")
        self.url = url_format.format(port=int(line))

    def stop(self) -> int | None:
        """Stops the server (its stdin closed, killed if it does not exit); the number of
        requests it answered, None when it did not say."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.close()
            rest = self.proc.stdout.read()
            self.proc.wait(timeout=self.wait_s)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
            return None
        words = rest.split()
        return int(words[-1]) if words and words[-1].isdigit() else None
