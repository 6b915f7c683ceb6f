"""What the benchmarks read from /proc, in one place: a process's stat fields, its start time
(to tell a reused pid apart), its argv, its live descendants, a watch for a new child, and
the check that nothing a benchmark started outlives it."""

import os
import signal
import time
from typing import Callable, Dict, List, Optional, Set

#: Bound on the processes one descendants() walk collects (a bad /proc read cannot loop).
MAX_PROCESSES = 100_000


def stat_fields(pid: int) -> Optional[List[str]]:
    """Fields of /proc/PID/stat after the command name (field 3 first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None when gone or a zombie."""
    fields = stat_fields(pid)
    return None if fields is None or fields[0] in ("Z", "X") else fields[19]


def argv(pid: int) -> List[str]:
    """The process's argv, [] when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def descendants(root: int) -> Dict[int, str]:
    """Every live descendant of ``root``: pid -> start time."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and len(fields) > 1 and fields[1].isdigit():
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: Dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo and len(found) < MAX_PROCESSES:
        pid = todo.pop()
        started = start_time(pid)
        if started is not None:
            found[pid] = started
            todo.extend(children.get(pid, []))
    return found


def kill_leftovers(seen: Dict[int, str], grace_s: float = 5.0) -> Dict[int, List[str]]:
    """Waits up to ``grace_s`` for the processes in ``seen`` (pid -> start time) to be gone,
    then SIGKILLs those still there. Only a pid with the same start time is killed: it is
    still the process that was seen, not a stranger that reused the pid. Returns the
    survivors' argv by pid, read before the kill."""
    deadline = time.monotonic() + grace_s
    left = dict(seen)
    while left and time.monotonic() < deadline:
        left = {p: s for p, s in left.items() if start_time(p) == s}
        if left:
            time.sleep(0.05)
    survivors = {}
    for pid in left:
        survivors[pid] = argv(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return survivors


class ChildWatch:
    """Finds a new child of ``parent`` whose argv ``match`` accepts.

    Every /proc entry present at construction is ignored; a new entry that is not a child
    of ``parent`` is remembered and skipped; a child that does not match yet (forked, not
    exec'd) is looked at again on the next poll.
    """

    def __init__(self, parent: int, match: Callable[[List[str]], bool]) -> None:
        self.parent, self.match = parent, match
        self.skip: Set[str] = set(os.listdir("/proc"))

    def poll(self) -> Optional[int]:
        for entry in os.listdir("/proc"):
            if entry in self.skip or not entry.isdigit():
                continue
            fields = stat_fields(int(entry))
            if fields is None:
                continue
            if int(fields[1]) != self.parent:
                self.skip.add(entry)
                continue
            if self.match(argv(int(entry))):
                return int(entry)
        return None
