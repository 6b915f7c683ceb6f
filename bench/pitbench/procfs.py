"""What the benchmarks read from /proc, in one place: a process's stat fields, its start time
(to tell a reused pid apart), its argv, its CPU time and memory, its children and live
descendants, a watch for a new child, the machine's CPU accounting, and the check that
nothing a benchmark started outlives it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

#: Bound on the processes one descendants() walk collects (a bad /proc read cannot loop).
MAX_PROCESSES = 100_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None when gone or a zombie."""
    fields = stat_fields(pid)
    return None if fields is None or fields[0] in ("Z", "X") else fields[19]


def age_s(started: str) -> float:
    """Seconds since a process started, from its ``start_time``."""
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - int(started) / CLK_TCK


def argv(pid: int) -> list[str]:
    """The process's argv, [] when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def cmdline(pid: int) -> str:
    """The process's argv as one line, ``?`` when it is gone."""
    return " ".join(argv(pid)).strip() or "?"


def cpu_ticks(stat_path: str) -> int:
    """utime + stime (clock ticks) from a /proc stat file, a process's or a thread's."""
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads, not its children), in seconds."""
    fields = stat_fields(pid)
    if fields is None:
        raise RuntimeError(f"pid {pid} is gone")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_cpu_ns(pid: int) -> int | None:
    """CPU time of another process (every thread) in ns, from its process CPU clock: finer
    than the clock ticks of /proc/PID/stat. None when it cannot be read."""
    clock = ((~pid) << 3) | 2  # CPUCLOCK_SCHED of a whole process, as clock_getcpuclockid builds it
    try:
        return time.clock_gettime_ns(clock)
    except (OSError, OverflowError):
        return None


def thread_named(pid: int, name: str) -> int | None:
    """The id of the thread of ``pid`` whose ``comm`` is ``name``, or None."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    return int(tid)
        except OSError:
            continue
    return None


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} for pid {pid}")


def vm_rss_mb(pid: int) -> float:
    """``VmRSS`` of the process alone, in MB (10^6 bytes)."""
    return status_kib(pid, "VmRSS") * 1024 / 1e6


def pss_bytes(pid: int) -> int:
    """``Pss`` of /proc/PID/smaps_rollup in bytes: the process's share of every page it maps
    (a page shared by k processes counts 1/k); 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def mem_available() -> int:
    """``MemAvailable`` of /proc/meminfo in bytes (4 GiB when it cannot be read)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 4 << 30


def children(parent: int) -> dict[int, str]:
    """Live children of ``parent``: pid -> start time."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and int(fields[1]) == parent and fields[0] not in ("Z", "X"):
                found[int(entry)] = fields[19]
    return found


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: pid -> start time."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and len(fields) > 1 and fields[1].isdigit():
                kids.setdefault(int(fields[1]), []).append(int(entry))
    found: dict[int, str] = {}
    todo = list(kids.get(root, []))
    while todo and len(found) < MAX_PROCESSES:
        pid = todo.pop()
        started = start_time(pid)
        if started is not None:
            found[pid] = started
            todo.extend(kids.get(pid, []))
    return found


def kill_leftovers(seen: dict[int, str], grace_s: float = 5.0) -> dict[int, list[str]]:
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

    def __init__(self, parent: int, match: Callable[[list[str]], bool]) -> None:
        self.parent, self.match = parent, match
        self.skip: set[str] = set(os.listdir("/proc"))

    def poll(self) -> int | None:
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


class CpuUse:
    """Where the machine's CPU time went between construction and ``summary()``: this
    script with everything it started (counted once waited for), every other process, and
    steal (time the hypervisor gave to other guests). Other load skews every figure on a
    small machine, so the scripts report it beside their tables."""

    def __init__(self) -> None:
        self.t0, self.machine0, self.ours0 = time.monotonic(), self._machine(), self._ours()

    @staticmethod
    def _machine() -> tuple[float, float]:
        """(busy, steal) seconds of all CPUs from /proc/stat."""
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (
                int(x) for x in f.readline().split()[1:9]
            )
        return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK

    @staticmethod
    def _ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def summary(self) -> dict[str, float]:
        """Percentages of the machine's capacity (all CPUs) since construction."""
        capacity = (time.monotonic() - self.t0) * (os.cpu_count() or 1)
        busy, steal = (a - b for a, b in zip(self._machine(), self.machine0))
        ours = self._ours() - self.ours0
        return {
            "ours_percent": 100.0 * ours / capacity,
            "others_percent": 100.0 * max(busy - ours, 0.0) / capacity,
            "steal_percent": 100.0 * steal / capacity,
        }
