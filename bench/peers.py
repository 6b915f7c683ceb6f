#!/usr/bin/env python3
"""pit beside its peers, supervisord and gunicorn: the same figures, side by side, in one run.

The peers are installed from PyPI (``pip install supervisor gunicorn``) into a private
virtual environment this script creates with ``python3 -m venv`` (``bench/.venv`` unless
``--venv DIR``; kept between runs, and pip is not asked again once both packages are
there). A peer whose install fails is reported with pip's reason and its rows are left
empty. Every daemon gets a temporary directory of its own for its configuration, sockets,
logs and pid files; everything listens on 127.0.0.1 or on Unix sockets. Supervised
"sleepers" are one tiny script (it prints ``up`` and sleeps) run by the interpreter
running this script (``sys.executable``) under both pitd and supervisord; gunicorn's
workers are sync workers of a trivial WSGI app (a 2-byte ``200 OK``) run by the same
interpreter through the virtual environment.

Restart after ``kill -9``
    Each daemon keeps 2 workers. pitd: a supervise-only pool (``protocol = "none"``) with
    ``restart.initial = "1ms"`` and ``restart.reset_after = "1s"``; supervisord:
    ``[program:x]`` with ``numprocs = 2``, ``autorestart = true``, ``startsecs = 0``;
    gunicorn: ``--workers 2`` sync workers. Once every worker has been up 1.3 s (the
    previous replacement has settled; and for pitd every kill is then a first crash: with
    the default ``reset_after`` of 60 s, kills seconds apart would double the backoff each
    time), the oldest is killed with SIGKILL and ``/proc`` is polled (every 0.2 ms) for its
    replacement: for pitd and supervisord a new child of the daemon running the sleeper
    script (fork *and* exec done), for gunicorn any new child of the master (a fork of it:
    gunicorn does not exec its workers, so its figure has no interpreter start-up to wait
    for, and neither does the exec'd figure of the other two). supervisord has no backoff
    here (``autorestart = true``, ``startsecs = 0``); what it has is its main loop: the
    worker's closed output pipes wake it and it reaps the worker, but each turn decides on
    restarts *before* reaping, so the replacement is started on the next turn, after its
    1 s poll timeout unless another file descriptor (another program's output, a client)
    wakes it sooner; when the pipes close before the worker can be reaped, the reap too
    waits a turn (2 s). Every kill's figure is kept in the JSON, and for pitd also the gap
    between its ``worker_exited`` and ``worker_started`` events (stamped as pitd handles
    each, 1 ms resolution).
Status
    The wall time of the command-line tool's process (``pitctl status --json``,
    ``supervisorctl status``, ``gunicornc -c "show workers" -j``), and one request on its
    control socket, a new connection each time as the tools do: pitd's 4-byte big-endian
    length + ``{"cmd":"status","pool":null}``, supervisord's XML-RPC
    ``supervisor.getAllProcessInfo`` (an HTTP POST over its Unix socket), gunicorn's
    4-byte length + ``{"id":1,"command":"show workers"}`` (recent gunicorn versions open a
    control socket by default, in the home directory unless ``--control-socket`` says
    where: this script puts it in the daemon's temporary directory).
    Median (and p99, nearest rank, for the socket) with 8 and 64 workers.
Daemon RSS
    ``VmRSS`` of the daemon process alone (pitd, supervisord, gunicorn's master; workers
    excluded) with 8 and 64 sleeping workers, 2 s after the last worker started. pitd
    also runs a guard process (it kills the worker groups if pitd is SIGKILLed), shown on a
    row of its own.
Throughput
    gunicorn: 2 sync workers with ``--max-requests 1000`` (each worker is replaced after
    about 1000 requests, counted here) on 127.0.0.1, loaded by ``wrk`` when it is
    installed (one connection per request in flight; gunicorn's sync workers close the
    connection after every response; ``min(c, cores)`` threads, each stopped by its Lua
    script after a bounded number of responses) or else by a small Python generator (one
    thread per connection in flight, a new connection and an HTTP/1.0 GET per request).
    pit: ``pitctl bench`` against a 2-worker ``pit.examples.echo`` pool (method ``echo``,
    argument ``null``), c calls in flight on c connections. c = 1, 2, 4, after a short
    warm-up; requests (calls) per second and latency p50/p99. The two are not the same
    work (an HTTP request over TCP against a call through pitd to a worker over Unix
    sockets), but each is the peer's cheapest round trip through its own routing.

Every figure is measured ``--runs`` times (a fresh set of daemons per run) and the table
shows the median over the runs (``--json FILE`` keeps every run). Only one daemon runs at a
time. Every loop is bounded by a count and a deadline, every wait by a timeout. Each
daemon is stopped with SIGTERM (by pid), and the script checks that neither it nor any
process it was seen to start is left (exit status 1 otherwise). Linux only. Usage::

    cargo build --release
    python3 bench/peers.py [--runs N] [--quick] [--json FILE] [--venv DIR] [--loadgen auto|wrk|python]
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any, Callable

from pitbench import specs, stats, wire
from pitbench.daemon import DaemonProcess, workers_ready
from pitbench.events import event_time
from pitbench.paths import BENCH, BIN_DIR, PYTHON_DIR
from pitbench.procfs import ChildWatch, CpuUse, age_s, argv, children, start_time, vm_rss_mb
from pitbench.report import fmt_ms, loadavg, progress
from pitbench.venv import install as install_peers

PYTHON = sys.executable  # absolute: runs the sleepers and the virtual environment
WAIT_S = 30.0  # bound on start-up, replies, replacements and shutdown
VICTIM_MIN_AGE_S = 1.3  # > pitd's restart.reset_after (1 s): every kill is a first crash
POLL_S = 0.0002  # /proc polling period while waiting for a replacement
RESTART_WORKERS = 2
FOOTPRINT_SIZES = (8, 64)
CONCURRENCY = (1, 2, 4)
PEERS = ("pit", "supervisord", "gunicorn")
PACKAGES = {"supervisord": "supervisor", "gunicorn": "gunicorn"}

SLEEPER = """\
import sys, time
print("up", flush=True)
while True:
    time.sleep(3600)
"""

WSGI_APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""

# wrk stops each of its threads after this many responses (the duration bounds it too).
WRK_LUA = """\
local done = 0
local cap = {cap}
function response(status, headers, body)
  done = done + 1
  if done >= cap then wrk.thread:stop() end
end
"""
LOAD_CAP_PER_S = 100_000  # responses per second of load allowed before a generator stops


# --- peers' sockets ----------------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=WAIT_S)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(WAIT_S)
        s.connect(self.unix_path)
        self.sock = s


def xmlrpc_unix(path: str, method: str, *params: Any) -> Any:
    """One XML-RPC call over HTTP on a new Unix-socket connection (as supervisorctl does)."""
    conn = _UnixHTTPConnection(path)
    try:
        conn.request(
            "POST", "/RPC2", xmlrpc.client.dumps(params, method).encode(), {"Content-Type": "text/xml"}
        )
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"XML-RPC {method}: HTTP {resp.status}")
        return xmlrpc.client.loads(body)[0][0]
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- daemons ----------------------------------------------------------------------------


class Daemon(DaemonProcess):
    """One daemon in the foreground, with its files in a temporary directory, and what each
    peer measured must offer."""

    peer = ""
    wait_s = WAIT_S

    def __init__(self, tag: str) -> None:
        super().__init__(f"peers-{tag}-", "daemon.log")
        self.name = self.peer
        self.size = 0

    def start(self, argv: list[str], cwd: Path | None = None) -> None:
        """Starts the daemon in its directory, its output and errors in the log. The daemon
        itself joins ``seen``: a peer's master must not outlive the stop either."""
        self.launch(argv, cwd=cwd or self.dir, merged=True)
        started = start_time(self.pid)
        if started is not None:
            with self.seen_lock:
                self.seen[self.pid] = started

    def workers(self) -> dict[int, str]:
        """The daemon's live workers (exec'd where the daemon execs): pid -> start time."""
        raise NotImplementedError

    def is_worker(self, argv: list[str]) -> bool:
        raise NotImplementedError

    def wait_workers(self, n: int) -> None:
        self.wait_for(lambda: len(self.workers()) == n, WAIT_S + 0.3 * n, 0.05, f"{self.peer}: {n} workers")

    def stop(self, wait_s: float | None = None) -> list[str]:
        """SIGTERM (SIGKILL after WAIT_S), then whatever it started that is left (killed, by pid)."""
        survivors: list[str] = []
        if self.running():
            self.remember()
            if self.terminate(wait_s):
                survivors.append(f"{self.peer} (pid {self.pid}) ignored SIGTERM for {WAIT_S:.0f} s")
        self.log.close()
        for pid, a in self.leftovers().items():
            survivors.append(f"{self.peer}: pid {pid} left: {' '.join(a).strip()}")
        return survivors

    # status, implemented by the peers that have one
    def cli_status(self) -> None:
        raise NotImplementedError

    def socket_status(self) -> None:
        raise NotImplementedError


class Pitd(Daemon):
    peer = "pit"

    def __init__(self, bin_dir: Path, size: int, echo: bool = False) -> None:
        super().__init__("pitd")
        self.pitctl = str(bin_dir / "pitctl")
        self.control = str(self.dir / "control.sock")
        self.script = str(self.dir / "sleeper.py")
        Path(self.script).write_text(SLEEPER)
        self.size, self.echo = size, echo
        self.pool = "echo" if echo else "sleepers"
        spec = specs.table(
            "daemon", {"control_socket": self.control, "call_socket": str(self.dir / "call.sock")}
        )
        if echo:
            pool: dict[str, specs.Value] = {
                "app": "pit.examples.echo",
                "python": PYTHON,
                "cwd": str(PYTHON_DIR),
            }
            spec += specs.table("pools.echo", {**pool, "size": size})
        else:
            spec += specs.table(
                "pools.sleepers", {"command": [PYTHON, self.script], "protocol": "none", "size": size}
            )
            spec += specs.table("pools.sleepers.restart", {"initial": "1ms", "reset_after": "1s"})
        (self.dir / "pitd.toml").write_text("\n".join(spec) + "\n")
        self.start([str(bin_dir / "pitd"), "--config", str(self.dir / "pitd.toml")])

    def is_worker(self, argv: list[str]) -> bool:
        if self.echo:
            return "pit" in argv and "serve" in argv
        return len(argv) > 1 and argv[1] == self.script

    def workers(self) -> dict[int, str]:
        return {p: s for p, s in children(self.pid).items() if self.is_worker(argv(p))}

    def ctl(self, *args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.pitctl, "--socket", self.control, *args], capture_output=True, text=True, timeout=timeout
        )

    def wait_ready(self) -> None:
        """Until the pool has ``size`` idle workers."""
        self.wait_for(
            lambda: workers_ready(self.control, {self.pool: self.size}), WAIT_S, 0.05, "pitd's pool not ready"
        )

    def cli_status(self) -> None:
        out = self.ctl("status", "--json")
        if out.returncode != 0 or len(json.loads(out.stdout)["pools"][0]["workers"]) != self.size:
            raise RuntimeError(f"pitctl status failed: {out.stderr.strip()}")

    def socket_status(self) -> None:
        reply = wire.request(self.control, {"cmd": "status", "pool": None}, WAIT_S)
        if reply.get("reply") != "status" or len(reply["pools"][0]["workers"]) != self.size:
            raise RuntimeError(f"pitd status: {str(reply)[:200]}")

    def guard_rss_mb(self) -> float | None:
        others = [p for p in children(self.pid) if not self.is_worker(argv(p))]
        return vm_rss_mb(others[0]) if others else None

    def bench(self, concurrency: int, duration_s: float) -> dict[str, float]:
        out = self.ctl(
            "bench",
            "echo",
            "--method",
            "echo",
            "--args",
            "null",
            "--concurrency",
            str(concurrency),
            "--duration",
            f"{round(duration_s * 1000)}ms",
            "--json",
            timeout=duration_s + WAIT_S,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pitctl bench failed ({out.returncode}): {out.stderr.strip()}")
        r = json.loads(out.stdout)
        return {
            "per_s": float(r["calls_per_s"]),
            "p50_ms": r["p50_us"] / 1e3,
            "p99_ms": r["p99_us"] / 1e3,
            "errors": float(r["errors"]),
            "count": float(r["calls"]),
        }


class Supervisord(Daemon):
    peer = "supervisord"

    def __init__(self, venv: Path, size: int) -> None:
        super().__init__("supervisord")
        self.venv, self.size = venv, size
        self.sock = str(self.dir / "supervisor.sock")
        self.script = str(self.dir / "sleeper.py")
        Path(self.script).write_text(SLEEPER)
        (self.dir / "logs").mkdir()
        self.conf = str(self.dir / "supervisord.conf")
        Path(self.conf).write_text(
            f"[unix_http_server]\nfile = {self.sock}\nchmod = 0700\n\n"
            f"[supervisord]\nnodaemon = true\nlogfile = {self.dir / 'supervisord.log'}\n"
            f"pidfile = {self.dir / 'supervisord.pid'}\nchildlogdir = {self.dir / 'logs'}\n"
            "loglevel = warn\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl = unix://{self.sock}\n\n"
            f"[program:sleeper]\ncommand = {PYTHON} {self.script}\n"
            "process_name = %(program_name)s_%(process_num)02d\n"
            f"numprocs = {size}\nautorestart = true\nstartsecs = 0\n"
        )
        self.start([str(venv / "bin" / "supervisord"), "-n", "-c", self.conf])

    def is_worker(self, argv: list[str]) -> bool:
        return len(argv) > 1 and argv[1] == self.script

    def workers(self) -> dict[int, str]:
        return {p: s for p, s in children(self.pid).items() if self.is_worker(argv(p))}

    def cli_status(self) -> None:
        out = subprocess.run(
            [str(self.venv / "bin" / "supervisorctl"), "-c", self.conf, "status"],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        if out.returncode != 0 or out.stdout.count("RUNNING") != self.size:
            raise RuntimeError(
                f"supervisorctl status failed ({out.returncode}): {out.stdout[-300:]}{out.stderr[-300:]}"
            )

    def socket_status(self) -> None:
        infos = xmlrpc_unix(self.sock, "supervisor.getAllProcessInfo")
        if len(infos) != self.size:
            raise RuntimeError(f"getAllProcessInfo: {len(infos)} processes, expected {self.size}")


class Gunicorn(Daemon):
    peer = "gunicorn"

    def __init__(self, venv: Path, size: int, max_requests: int = 0) -> None:
        super().__init__("gunicorn")
        self.venv, self.size = venv, size
        self.port = free_port()
        self.ctl_sock = str(self.dir / "gunicorn.ctl")
        (self.dir / "app.py").write_text(WSGI_APP)
        argv = [
            str(venv / "bin" / "gunicorn"),
            "--workers",
            str(size),
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--control-socket",
            self.ctl_sock,
            "--pid",
            str(self.dir / "gunicorn.pid"),
            "--worker-tmp-dir",
            str(self.dir),
            "--log-level",
            "warning",
            "--chdir",
            str(self.dir),
        ]
        if max_requests:
            argv += ["--max-requests", str(max_requests)]
        self.start([*argv, "app:app"])

    def is_worker(self, argv: list[str]) -> bool:
        return True  # every child of the master is a worker (forked, not exec'd)

    def workers(self) -> dict[int, str]:
        return children(self.pid)

    def wait_http(self) -> None:
        """Until 127.0.0.1:port answers 200."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
                conn.request("GET", "/")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn not answering on port {self.port}:\n{self.log_tail()}")

    def spawned(self) -> int:
        """Workers the master has started so far (its control socket's ``show stats``)."""
        # The master opens its control socket from a thread once its first workers are up,
        # so right after start-up HTTP can answer before the socket exists; while it is
        # busy replacing workers under load it has been seen to drop a connection.
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                reply = wire.request(self.ctl_sock, {"id": 1, "command": "show stats"}, WAIT_S)
                break
            except (FileNotFoundError, ConnectionError):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
        return int(reply["data"]["workers_spawned"])

    def cli_status(self) -> None:
        out = subprocess.run(
            [str(self.venv / "bin" / "gunicornc"), "-s", self.ctl_sock, "-c", "show workers", "-j"],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        if out.returncode != 0 or json.loads(out.stdout).get("count") != self.size:
            raise RuntimeError(f"gunicornc failed ({out.returncode}): {out.stdout[-300:]}{out.stderr[-300:]}")

    def socket_status(self) -> None:
        reply = wire.request(self.ctl_sock, {"id": 1, "command": "show workers"}, WAIT_S)
        if reply.get("status") != "ok" or reply["data"]["count"] != self.size:
            raise RuntimeError(f"gunicorn show workers: {str(reply)[:200]}")


# --- measurements -----------------------------------------------------------------------


def kill_one(d: Daemon) -> tuple[float, int, int]:
    """SIGKILL the oldest worker once every worker is VICTIM_MIN_AGE_S old (the daemon and
    the machine are quiet again after the previous replacement); returns the ms until /proc
    shows its replacement, the victim's pid and the replacement's."""
    deadline = time.monotonic() + WAIT_S
    victim = None
    while time.monotonic() < deadline:
        ws = d.workers()
        if len(ws) == d.size:
            left = VICTIM_MIN_AGE_S - min(age_s(started) for started in ws.values())
            if left <= 0:
                victim = min(ws.items(), key=lambda kv: int(kv[1]))[0]
                break
            time.sleep(min(0.5, left + 0.01))
        else:
            time.sleep(0.01)
    if victim is None:
        raise RuntimeError(f"{d.peer}: no worker old enough to kill:\n{d.log_tail()}")
    watch = ChildWatch(d.pid, d.is_worker)
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    for _ in range(int(WAIT_S / POLL_S)):
        new = watch.poll()
        if new is not None:
            ms = (time.perf_counter() - t0) * 1e3
            d.remember()
            return ms, victim, new
        if time.perf_counter() - t0 > WAIT_S:
            break
        time.sleep(POLL_S)
    raise RuntimeError(f"{d.peer}: no replacement within {WAIT_S:.0f} s:\n{d.log_tail()}")


def timed(fn: Callable[[], None], n: int) -> list[float]:
    fn()  # warm: the first request may pay for lazy set-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def wrk_load(port: int, concurrency: int, duration_s: float) -> dict[str, float]:
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    cap = int(LOAD_CAP_PER_S * duration_s / threads) + 1
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="peers-wrk-", delete=False) as f:
        f.write(WRK_LUA.format(cap=cap))
        lua = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(concurrency),
                "-d",
                f"{duration_s:g}s",
                "--timeout",
                "5s",
                "--latency",
                "-s",
                lua,
                f"http://127.0.0.1:{port}/",
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + WAIT_S,
        )
    finally:
        os.unlink(lua)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    r: dict[str, float] = {"errors": 0.0}
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
    in_dist = False
    for line in out.stdout.splitlines():
        words = line.split()
        if line.strip().startswith("Latency Distribution"):
            in_dist = True
        elif in_dist and len(words) == 2 and words[0] in ("50%", "99%"):
            value = words[1]
            num = value.rstrip("usm")
            r["p50_ms" if words[0] == "50%" else "p99_ms"] = float(num) * unit[value[len(num) :]]
        elif line.startswith("Requests/sec:"):
            r["per_s"] = float(words[1])
        elif "requests in" in line:  # "5165 requests in 2.01s, 706.23KB read"
            r["count"] = float(words[0])
            r["elapsed_s"] = float(words[3].rstrip("s,"))
        elif line.strip().startswith("Socket errors:"):
            r["errors"] += sum(int(w.rstrip(",")) for w in words[2:] if w.rstrip(",").isdigit())
        elif line.strip().startswith("Non-2xx"):
            r["errors"] += int(words[-1])
    if not {"per_s", "p50_ms", "p99_ms"} <= r.keys():
        raise RuntimeError(f"could not read wrk's output:\n{out.stdout}")
    return r


def python_load(port: int, concurrency: int, duration_s: float) -> dict[str, float]:
    """``concurrency`` threads, each a loop of new connection + HTTP/1.0 GET + read to EOF."""
    request = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    cap = int(LOAD_CAP_PER_S * duration_s / concurrency) + 1
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    t_end = [0.0]

    def client(i: int) -> None:
        start.wait()
        mine, perf = lat[i], time.perf_counter
        for _ in range(cap):
            t0 = perf()
            if t0 >= t_end[0]:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
                    s.sendall(request)
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                if not data.startswith(b"HTTP/1.") or data[9:12] != b"200":
                    errors[i] += 1
                    continue
            except OSError:
                errors[i] += 1
                continue
            mine.append((perf() - t0) * 1e3)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    t_end[0] = t0 + duration_s
    start.wait()
    for t in threads:
        t.join(duration_s + WAIT_S)
    elapsed = time.perf_counter() - t0
    every = [x for xs in lat for x in xs]
    if not every:
        raise RuntimeError("the load generator got no response")
    p50, p99 = stats.percentiles(every, [0.5, 0.99])
    return {
        "per_s": len(every) / elapsed,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": float(sum(errors)),
        "count": float(len(every)),
        "elapsed_s": elapsed,
    }


# --- one run ----------------------------------------------------------------------------


class Runner:
    def __init__(self, args: argparse.Namespace, peers: list[str], loadgen: str) -> None:
        self.args, self.peers, self.loadgen = args, peers, loadgen
        self.survivors: list[str] = []
        self.samples: dict[str, list[list[float]]] = {}  # every restart, per peer and run
        self.daemons = 0
        self.processes = 0

    def make(self, peer: str, size: int, **kw: Any) -> Daemon:
        if peer == "pit":
            return Pitd(self.args.bin_dir, size, **kw)
        if peer == "supervisord":
            return Supervisord(self.args.venv, size)
        return Gunicorn(self.args.venv, size, **kw)

    def with_daemon(
        self, peer: str, size: int, body: Callable[[Any], dict[str, float]], **kw: Any
    ) -> dict[str, float]:
        d = self.make(peer, size, **kw)
        self.daemons += 1
        try:
            if isinstance(d, Pitd):
                d.wait_ready()
            d.wait_workers(size)
            return body(d)
        finally:
            d.remember()
            self.processes += len(d.seen)
            self.survivors.extend(d.stop())
            d.cleanup()

    def restarts(self, d: Daemon) -> dict[str, float]:
        kills = [kill_one(d) for _ in range(self.args.kills)]
        times = [ms for ms, _, _ in kills]
        self.samples.setdefault(d.peer, []).append([round(ms, 3) for ms in times])
        out = {"restart_ms": stats.median(times), "restart_max_ms": max(times), "restart_min_ms": min(times)}
        if isinstance(d, Pitd):
            # pitd's own split of each restart: exit handled -> replacement started (1 ms resolution)
            events = wire.request(d.control, {"cmd": "events", "follow": False}, WAIT_S).get("events", [])
            exited = {e.get("pid"): event_time(e) * 1e3 for e in events if e["event"] == "worker_exited"}
            started = {e.get("pid"): event_time(e) * 1e3 for e in events if e["event"] == "worker_started"}
            split = [started[new] - exited[old] for _, old, new in kills if old in exited and new in started]
            if split:
                self.samples.setdefault("pit exit->started", []).append(split)
                out["exit_to_start_ms"] = stats.median(split)
        return out

    def footprint(self, d: Daemon, n: int) -> dict[str, float]:
        time.sleep(2.0)  # start-up settles
        out: dict[str, float] = {}
        sock = timed(d.socket_status, self.args.status_n)
        out[f"sock_p50_{n}"], out[f"sock_p99_{n}"] = stats.percentiles(sock, [0.5, 0.99])
        out[f"cli_{n}"] = stats.median(timed(d.cli_status, self.args.cli_n))
        out[f"rss_{n}"] = vm_rss_mb(d.pid)
        if isinstance(d, Pitd):
            guard = d.guard_rss_mb()
            if guard is not None:
                out[f"guard_rss_{n}"] = guard
        return out

    def throughput(self, d: Daemon) -> dict[str, float]:
        out: dict[str, float] = {}
        dur = self.args.duration
        if isinstance(d, Pitd):
            d.bench(max(CONCURRENCY), self.args.warmup)
            for c in CONCURRENCY:
                r = d.bench(c, dur)
                out.update({f"c{c}_{k}": v for k, v in r.items()})
        else:
            assert isinstance(d, Gunicorn)
            d.wait_http()
            load = wrk_load if self.loadgen == "wrk" else python_load
            load(d.port, max(CONCURRENCY), self.args.warmup)
            for c in CONCURRENCY:
                spawned = d.spawned()
                r = load(d.port, c, dur)
                r["recycled_per_s"] = (d.spawned() - spawned) / r.get("elapsed_s", dur)
                d.remember()
                out.update({f"c{c}_{k}": v for k, v in r.items()})
        return out

    def run(self, i: int) -> dict[str, dict[str, float]]:
        tag = f"run {i + 1}/{self.args.runs}"
        res: dict[str, dict[str, float]] = {p: {} for p in self.peers}
        for peer in self.peers:
            progress(f"{tag}: {peer}: {self.args.kills} kills")
            res[peer].update(self.with_daemon(peer, RESTART_WORKERS, self.restarts))
        for n in FOOTPRINT_SIZES:
            for peer in self.peers:
                progress(f"{tag}: {peer}: {n} workers")
                res[peer].update(self.with_daemon(peer, n, functools.partial(self.footprint, n=n)))
        for peer in self.peers:
            if peer == "pit":
                progress(f"{tag}: pit: pitctl bench, c = {', '.join(map(str, CONCURRENCY))}")
                res[peer].update(self.with_daemon("pit", 2, self.throughput, echo=True))
            elif peer == "gunicorn":
                progress(f"{tag}: gunicorn: {self.loadgen}, c = {', '.join(map(str, CONCURRENCY))}")
                res[peer].update(self.with_daemon("gunicorn", 2, self.throughput, max_requests=1000))
        return res


# --- report -----------------------------------------------------------------------------


def report(runs: list[dict[str, dict[str, float]]], peers: list[str]) -> dict[str, dict[str, float]]:
    med: dict[str, dict[str, float]] = {}
    for peer in PEERS:
        keys = sorted({k for r in runs for k in r.get(peer, {})})
        med[peer] = {k: stats.median([r[peer][k] for r in runs if k in r.get(peer, {})]) for k in keys}

    rows: list[tuple[str, ...]] = []

    def row(label: str, cell: Callable[[dict[str, float]], str | None], ref: str = "") -> None:
        cells = []
        for peer in PEERS:
            m = med[peer]
            try:
                value = cell(m) if peer in peers else None
            except KeyError:
                value = None
            cells.append(value if value is not None else ("-" if peer in peers else "skipped"))
        rows.append((label, *cells, ref))

    def ms(key: str) -> Callable[[dict[str, float]], str]:
        return lambda m: f"{fmt_ms(m[key])} ms"

    def ms_pair(a: str, b: str) -> Callable[[dict[str, float]], str]:
        return lambda m: f"{fmt_ms(m[a])} / {fmt_ms(m[b])} ms"

    def mb(key: str) -> Callable[[dict[str, float]], str]:
        return lambda m: f"{m[key]:.1f} MB"

    def per_s(key: str) -> Callable[[dict[str, float]], str]:
        return lambda m: f"{m[key]:,.0f}"

    row("restart after kill -9: median", ms("restart_ms"), "supervisord ~1 s, gunicorn ~8 ms")
    row("  fastest / slowest kill", ms_pair("restart_min_ms", "restart_max_ms"))
    for n in FOOTPRINT_SIZES:
        row(
            f"status, CLI process wall, {n} workers",
            ms(f"cli_{n}"),
            "supervisord ~110 ms, gunicorn ~100 ms" if n == FOOTPRINT_SIZES[0] else "",
        )
        row(f"status, socket round trip p50 / p99, {n} w", ms_pair(f"sock_p50_{n}", f"sock_p99_{n}"))
    for n in FOOTPRINT_SIZES:
        row(f"daemon RSS (VmRSS), {n} workers", mb(f"rss_{n}"))
    row("  pitd's guard process", mb(f"guard_rss_{FOOTPRINT_SIZES[0]}"))
    for c in CONCURRENCY:
        row(
            f"throughput c={c}: requests or calls /s",
            per_s(f"c{c}_per_s"),
            "gunicorn 2 sync ~7k req/s" if c == CONCURRENCY[0] else "",
        )
        row(f"  c={c}: latency p50 / p99", ms_pair(f"c{c}_p50_ms", f"c{c}_p99_ms"))
    row(
        "  gunicorn workers replaced (max-requests) /s",
        lambda m: " / ".join(f"{m[f'c{c}_recycled_per_s']:.1f}" for c in CONCURRENCY) + " (c=1/2/4)",
    )
    row(
        "  failed requests or calls (all c)",
        lambda m: (
            f"{sum(m[f'c{c}_errors'] for c in CONCURRENCY):.0f}" if f"c{CONCURRENCY[0]}_errors" in m else None
        ),
    )

    header = ("figure (median over runs)", *PEERS, "reference (2 cores)")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]
    print()
    for r in [header, *rows]:
        line = f"{r[0]:<{widths[0]}}"
        for i in range(1, len(PEERS) + 1):
            line += f"  {r[i]:>{widths[i]}}"
        print(f"{line}  {r[-1]}".rstrip())
    return med


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs; the table shows medians (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 run, fewer samples, shorter loads")
    parser.add_argument("--json", metavar="FILE", help="also write every run's figures here")
    parser.add_argument(
        "--venv",
        type=Path,
        default=BENCH / ".venv",
        help="virtual environment for the peers, created if missing (default bench/.venv)",
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="HTTP load generator for gunicorn: wrk if installed (auto), or the built-in one",
    )
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=BIN_DIR,
        help="directory holding pitd and pitctl (default: this repository's target/release)",
    )
    args = parser.parse_args(argv)
    args.kills, args.status_n, args.cli_n, args.duration, args.warmup = 8, 200, 20, 5.0, 1.0
    if args.quick:
        args.runs, args.kills, args.status_n, args.cli_n, args.duration = 1, 3, 50, 5, 2.0
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be 1..20")
    for exe in ("pitd", "pitctl"):
        if not os.access(args.bin_dir / exe, os.X_OK):
            parser.error(f"{args.bin_dir / exe} not found: run `cargo build --release` first")
    args.venv = args.venv.resolve()
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    elif loadgen == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")

    versions, missing = install_peers(args.venv, PACKAGES)
    peers = ["pit"] + [p for p in PACKAGES if p in versions]
    pit_version = subprocess.run(
        [str(args.bin_dir / "pitd"), "--version"], capture_output=True, text=True, timeout=WAIT_S
    ).stdout.strip()
    wrk_version = ""
    if loadgen == "wrk":
        wrk_out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=WAIT_S)
        wrk_version = (wrk_out.stdout or wrk_out.stderr).split("[")[0].strip()
    print(f"cores: {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), load average {loadavg()}")
    print(
        f"python: {platform.python_implementation()} {platform.python_version()} "
        "(runs the supervised workers and the peers)"
    )
    print(f"pit: {pit_version or '?'} (release build)")
    for peer, package in PACKAGES.items():
        if peer in versions:
            print(f"{package}: {versions[peer]}")
        else:
            print(f"{package}: not available, its rows are skipped: {missing[peer]}")
    print(
        f"HTTP load generator: {wrk_version if loadgen == 'wrk' else 'built-in (Python threads, HTTP/1.0)'}"
    )
    print(
        f"{args.runs} run(s); per run and peer: {args.kills} kills, {args.status_n} socket status "
        f"requests and {args.cli_n} CLI runs per size, {args.duration:g} s of load per concurrency",
        flush=True,
    )

    started = time.monotonic()
    cpu_use = CpuUse()
    runner = Runner(args, peers, loadgen)
    runs: list[dict[str, dict[str, float]]] = []
    loads: list[tuple[float, float]] = []
    try:
        for i in range(args.runs):
            before = os.getloadavg()[0]
            runs.append(runner.run(i))
            loads.append((before, os.getloadavg()[0]))
            progress(
                f"run {i + 1}/{args.runs} done, load average {before:.2f} before, {loads[-1][1]:.2f} after"
            )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    if not runs:
        return 1
    med = report(runs, peers)
    print()
    print(
        "pit's throughput is pitctl bench against a 2-worker echo pool; "
        "gunicorn's is HTTP against 2 sync workers"
    )
    print(
        "with --max-requests 1000. gunicorn forks its workers without exec: "
        "its restart has no interpreter start-up."
    )
    if runner.survivors:
        print("processes left behind (killed now):\n  " + "\n  ".join(runner.survivors))
    else:
        print(
            f"{runner.daemons} daemons stopped with SIGTERM; none of the {runner.processes} processes "
            "they were seen to run is left"
        )
    use, wall = cpu_use.summary(), time.monotonic() - started
    print(
        f"total time {wall:.0f} s, load average now {loadavg()}; CPU time of the {os.cpu_count()} cores: "
        f"{use['ours_percent']:.0f}% this benchmark and what it started, "
        f"{use['others_percent']:.0f}% other processes, {use['steal_percent']:.0f}% stolen"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "pit": pit_version,
                    "versions": versions,
                    "skipped": missing,
                    "loadgen": wrk_version or loadgen,
                    "runs": runs,
                    "restart_samples_ms": runner.samples,
                    "load_before_after": loads,
                    "medians": med,
                    "survivors": runner.survivors,
                },
                f,
                indent=2,
            )
            f.write("\n")
    return 1 if runner.survivors else 0


if __name__ == "__main__":
    sys.exit(main())
