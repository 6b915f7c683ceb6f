"""What the benchmarks read from /proc, in one place: a process's stat fields, its start time
(to tell a reused pid apart), its argv and its live descendants."""

import os
from typing import Dict, List, Optional

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
