#!/usr/bin/env python3
"""pit's HTTP front door (INTERFACE section 10) under a real HTTP load generator: against
the call socket it stands beside, plain against TLS, and against gunicorn serving the same
echo from its dirty workers.

Everything is measured in one run of this script against the release ``pitd`` and
``pitctl``. The load on HTTP comes from ``oha`` (a Rust HTTP load generator from
crates.io), the load on the call socket from ``pitctl bench``; both keep C requests in
flight on C connections, each connection waiting for its reply before its next request
(closed loop), and both time every request. Every row echoes the same 32-character JSON
string through a handler that returns it (``pit.examples.echo``'s ``echo``; gunicorn's
dirty app's ``echo``), with the interpreter running this script.

The rows, ``--runs`` times (3; ``--quick``: 1) taking turns, ``--duration`` each (5 s;
``--quick``: 1 s), after a warm-up of every endpoint; each figure is the median over the
runs:

``call socket, c=1`` and ``c=64``
    ``pitctl bench echo -c C``: C connections to pitd's call socket (4-byte length +
    JSON), one call in flight on each.
``door, c=1``
    ``oha -c 1``: one HTTP/1.1 keep-alive connection to ``POST
    /v1/call/echo/echo``, one request at a time.
``door, c=64``
    ``oha -c 64``: 64 HTTP/1.1 keep-alive connections.
``door TLS HTTP/2, c=64`` and ``door TLS HTTP/1.1, c=64``
    the same against a second pitd whose door has ``tls_cert``/``tls_key`` (a P-256
    certificate for 127.0.0.1 signed by a CA, both made by ``openssl`` in a temporary
    directory; oha is given the CA with ``--cacert``): ``oha --http2 -c 64`` (64
    connections, one stream in flight on each, HTTP/2 negotiated by ALPN) and ``oha -c 64``
    (HTTP/1.1 over TLS).
``door HTTP/2 cleartext, c=64``
    ``oha --http2 -c 64`` against the plain door: HTTP/2 with prior knowledge (h2c), which
    the door's HTTP/1.1-or-HTTP/2 server takes on a cleartext connection too. With the two
    TLS rows it splits what TLS costs from what HTTP/2 costs.
``gunicorn, c=1`` and ``c=64``
    gunicorn (>= 27, from PyPI into ``bench/.venv`` by ``pitbench.venv``, as ``peers.py``
    and ``streaming.py`` install it) serving the same URL with ``--worker-class gthread``
    HTTP workers (``--workers`` = the pool's size, ``--threads 32``: one thread per
    connection of the c=64 load) whose WSGI app reads the body, decodes its JSON and calls
    its dirty pool with ``get_dirty_client().execute(app, "echo", args)`` (the thread-local
    sync client gunicorn documents for sync and gthread workers), one dirty worker per pit
    worker (``--dirty-workers``, ``--dirty-threads 1``, the defaults' thread count).

Both pitds have one pool ``echo`` of ``--workers`` workers (2), ``[http] listen`` on a free
loopback port, no tokens (loopback needs none; every row pays the same). Before the loads
each endpoint is checked with this process's own client: 20 echoes on one kept-alive
connection (``http.client``), each reply compared, and for TLS that ALPN chose ``h2``.

CPU per request: the server's (pitd and its workers; gunicorn's master, HTTP workers,
dirty arbiter and dirty workers) from ``/proc`` over each row, the load generator's from
its rusage. At c=64 the server and the load generator share the 2 cores and keep them
busy, so calls/s follow the CPU a request takes of both; other work on the machine usually
moves calls/s more than CPU per request, so beside the c=64 ratios the report gives the
ratio that CPU per request allows. Targets, printed with their verdicts, never asserted:

- door c=1 p50 <= call socket c=1 p50 + 50 µs (HTTP/1.1 keep-alive adds at most 50 µs);
- door c=64 calls/s >= 50% of the call socket's at c=64;
- door TLS HTTP/2 c=64 calls/s within 20% of the plain door's at c=64 (>= 80%);
- the door at >= 3x gunicorn's calls/s and <= 1/2 its p50, at c=1 and at c=64.

oha is installed with ``cargo install oha --version 1.16.0 --root target/tools/oha
--locked`` when it is missing (several minutes on 2 cores; the time is printed), and kept
there for later runs. With ``--quick`` it is not built: a run without it measures the call
socket only, checks the endpoints, and says so. If cargo cannot install it, the rows say
why and the script goes on. Every pitd and gunicorn is stopped; the script exits 1 if a
process outlives its daemon or an endpoint's check fails.

Usage::

    cargo build --release --bins
    python3 bench/http_door.py [--quick] [--runs N] [--duration S] [--workers N] [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from pitbench import specs, stats
from pitbench.daemon import DaemonProcess, PitdProcess
from pitbench.paths import BENCH, BIN_DIR, REPO
from pitbench.procfs import CpuUse, cpu_seconds, descendants, start_time
from pitbench.report import columns, loadavg, progress
from pitbench.venv import install as install_peers

PYTHON = os.path.realpath(sys.executable)
WAIT_S = 60.0  # bound on every start-up, reply and stop
POOL, METHOD = "echo", "echo"
PATH = f"/v1/call/{POOL}/{METHOD}"
ARGS = "0123456789abcdefghijklmnopqrstuv"  # 32 characters, as calls.py echoes
BODY = json.dumps(ARGS)
CHECKS = 20  # echoes per endpoint, checked one by one
MANY = 64
GUNICORN = "gunicorn>=27"  # dirty workers since 25; streaming.py's peer is 27 too
GUNICORN_THREADS = 32
OHA_VERSION = "1.16.0"
OHA_ROOT = REPO / "target" / "tools" / "oha"
OHA_BUILD_S = 2400.0  # bound on building oha (2 cores shared with other work: 18 min seen)
DIRTY_APP_PATH = "dirty_echo:EchoApp"

# gunicorn's side, written into its temporary directory.
DIRTY_APP = '''\
"""The echo handler as a gunicorn dirty app."""
from gunicorn.dirty import DirtyApp


class EchoApp(DirtyApp):
    def echo(self, args):
        return args
'''
WSGI_APP = f'''\
"""A WSGI app that hands each request's JSON to the dirty pool's echo and answers its
result: how gunicorn serves model code over HTTP from its sync and gthread workers."""
import json

from gunicorn.dirty import get_dirty_client

DIRTY_APP = {DIRTY_APP_PATH!r}


def app(environ, start_response):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size) if size else b""
    result = get_dirty_client().execute(DIRTY_APP, "echo", json.loads(body) if body else None)
    out = json.dumps(result).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
'''

# The rows, in the order they are measured in each run: key -> label.
ROWS = {
    "socket_c1": "call socket, c=1 (pitctl bench)",
    "socket_c64": "call socket, c=64 (pitctl bench)",
    "door_c1": "door HTTP/1.1 keep-alive, c=1 (oha)",
    "door_c64": "door HTTP/1.1 keep-alive, c=64 (oha)",
    "door_h2c_c64": "door HTTP/2 cleartext, c=64 (oha --http2)",
    "door_tls_h2_c64": "door TLS HTTP/2, c=64 (oha --http2)",
    "door_tls_h1_c64": "door TLS HTTP/1.1, c=64 (oha)",
    "gunicorn_c1": "gunicorn gthread + dirty, c=1 (oha)",
    "gunicorn_c64": "gunicorn gthread + dirty, c=64 (oha)",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- oha --------------------------------------------------------------------------------------


def oha_version(exe: Path) -> str | None:
    """``oha --version``'s version, None when it does not run."""
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    words = out.stdout.split()
    return words[-1] if out.returncode == 0 and words else None


def find_oha(exe: Path, build: bool) -> tuple[Path | None, str, float | None]:
    """(oha's path or None, what to say about it, seconds its build took if it was built).
    Builds the pinned version into ``OHA_ROOT`` when ``build`` and the one at ``exe`` is not
    that version; never raises for it."""
    have = oha_version(exe)
    if have == OHA_VERSION or (have is not None and not build):
        return exe, f"oha {have}", None
    if not build:
        return (
            None,
            (
                f"oha not installed at {exe.relative_to(REPO) if exe.is_relative_to(REPO) else exe}, not "
                "built under --quick (a full run builds it: cargo install oha, several minutes)"
            ),
            None,
        )
    if shutil.which("cargo") is None:
        return None, "oha not installed, and no cargo to build it", None
    progress(f"cargo install oha --version {OHA_VERSION} --root {OHA_ROOT.relative_to(REPO)} --locked")
    log = OHA_ROOT.parent / "oha-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        with open(log, "wb") as f:
            out = subprocess.run(
                ["cargo", "install", "oha", "--version", OHA_VERSION, "--root", str(OHA_ROOT), "--locked"],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=OHA_BUILD_S,
                cwd=REPO,
            )
        rc: int | str = out.returncode
    except subprocess.TimeoutExpired:
        rc = f"not done within {OHA_BUILD_S:.0f} s"
    built_s = time.monotonic() - t0
    built = OHA_ROOT / "bin" / "oha"
    if rc == 0 and oha_version(built) is not None:
        progress(f"oha built in {built_s:.0f} s")
        return built, f"oha {oha_version(built)} (built now, in {built_s:.0f} s)", built_s
    tail = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()][-2:]
    return None, f"oha could not be installed ({rc}): {' / '.join(tail)[-300:]}", built_s


def oha_load(
    exe: Path, url: str, connections: int, duration_s: float, http2: bool = False, ca: Path | None = None
) -> dict[str, Any]:
    """One oha run: ``connections`` connections, one request in flight on each, for
    ``duration_s`` (the requests in flight at the end are waited for); its figures."""
    argv = [str(exe), "--no-tui", "--output-format", "json", "-z", f"{duration_s:g}s", "-w"]
    argv += ["-c", str(connections), "-m", "POST", "-T", "application/json", "-d", BODY]
    if http2:
        argv.append("--http2")
    if ca is not None:
        argv += ["--cacert", str(ca)]
    argv.append(url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + WAIT_S)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"oha failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    r = json.loads(out.stdout)
    codes = {str(k): int(v) for k, v in (r.get("statusCodeDistribution") or {}).items()}
    ok = codes.get("200", 0)
    failures = {
        **{f"HTTP {k}": v for k, v in codes.items() if k != "200"},
        **(r.get("errorDistribution") or {}),
    }
    if not ok:
        raise RuntimeError(f"oha got no 200 from {url}: {str(failures)[:400]}")
    elapsed = float(r["summary"]["total"])
    lat = r["latencyPercentiles"]
    return {
        "calls": ok,
        "errors": sum(int(v) for v in failures.values()),
        "failures": failures,
        "calls_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "p50_us": float(lat["p50"]) * 1e6,
        "p99_us": float(lat["p99"]) * 1e6,
        "client_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "seconds": elapsed,
    }


# --- the servers ---------------------------------------------------------------------------


def server_cpu_s(pid: int) -> float:
    """CPU time of a daemon and of every process under it, seconds."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            total += cpu_seconds(p)
        except RuntimeError:
            pass
    return total


def openssl(*args: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=WAIT_S)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {out.stderr.strip()[-300:]}")


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A P-256 certificate for 127.0.0.1 (and localhost) signed by a CA made for it, by
    openssl: (CA, certificate, key). The clients are given the CA; rustls (pitd's and oha's)
    refuses a CA's own certificate as a server's, hence the two."""
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr, ext = (directory / f"door.{x}" for x in ("crt", "key", "csr", "ext"))
    p256 = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req", "-x509", *p256, "-sha256", "-days", "2", "-subj", "/CN=pit bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        "-keyout", str(ca_key), "-out", str(ca),
    )  # fmt: skip
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    openssl("req", *p256, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return ca, cert, key


class Pitd(PitdProcess):
    """A release pitd with the pool ``echo`` and the HTTP door on a free loopback port,
    behind TLS with ``tls``: (CA, certificate, key)."""

    wait_s = WAIT_S

    def __init__(self, bin_dir: Path, workers: int, tls: tuple[Path, Path, Path] | None = None) -> None:
        super().__init__(bin_dir, "pit-http-door-")
        self.require_binaries()
        self.port = free_port()
        self.ca = None if tls is None else tls[0]
        spec = self.spec_head()
        spec += specs.table(
            f"pools.{POOL}",
            {"app": "pit.examples.echo", "python": PYTHON, "size": workers, "env": specs.pit_env()},
        )
        door: dict[str, specs.Value] = {"listen": f"127.0.0.1:{self.port}"}
        if tls is not None:
            door.update(tls_cert=str(tls[1]), tls_key=str(tls[2]))
        spec += specs.table("http", door)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}{PATH}"
        self.workers = workers
        self.start(spec)

    def ready(self) -> None:
        """Until every worker of the pool is idle and the door answers an echo."""
        self.wait_workers({POOL: self.workers})
        self.wait_for(lambda: http_answers(self.url, self.ca), WAIT_S, 0.1, "pitd's door answering")

    def bench(self, concurrency: int, duration_s: float) -> dict[str, Any]:
        """``pitctl bench echo -c C`` on the call socket; its figures."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = self.ctl(
            *("bench", POOL, "--method", METHOD, "--args", BODY, "-c", str(concurrency)),
            *("-d", f"{round(duration_s * 1000)}ms", "--json"),
            timeout=duration_s + WAIT_S,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            raise RuntimeError(f"pitctl bench failed: {out.stderr.strip()[-400:]}")
        r = json.loads(out.stdout)
        return {
            "calls": int(r["calls"]),
            "errors": int(r["errors"]),
            "calls_per_s": float(r["calls_per_s"]),
            "p50_us": float(r["p50_us"]),
            "p99_us": float(r["p99_us"]),
            "client_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "seconds": float(r["duration_s"]),
        }


class Gunicorn(DaemonProcess):
    """gunicorn with gthread HTTP workers on a free loopback port whose WSGI app calls its
    dirty pool's echo; every file in its temporary directory, ``TMPDIR`` too (where its
    dirty arbiter puts its sockets)."""

    name = "gunicorn"
    wait_s = WAIT_S

    def __init__(self, venv: Path, workers: int) -> None:
        super().__init__("pit-http-door-gunicorn-", "gunicorn.log")
        (self.dir / "dirty_echo.py").write_text(DIRTY_APP)
        (self.dir / "wsgi.py").write_text(WSGI_APP)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        d = str(self.dir)
        argv = [
            str(venv / "bin" / "gunicorn"),
            *("--workers", str(workers), "--worker-class", "gthread", "--threads", str(GUNICORN_THREADS)),
            *("--bind", f"127.0.0.1:{self.port}"),
            *("--control-socket", f"{d}/gunicorn.ctl", "--pid", f"{d}/gunicorn.pid"),
            *("--worker-tmp-dir", d, "--chdir", d, "--log-level", "warning", "--graceful-timeout", "5"),
            *("--dirty-app", DIRTY_APP_PATH, "--dirty-workers", str(workers), "--dirty-threads", "1"),
            *("--dirty-graceful-timeout", "5"),
            "wsgi:app",
        ]
        self.launch(argv, env=dict(os.environ, TMPDIR=d), cwd=self.dir, merged=True)
        started = start_time(self.pid)
        if started is not None:
            with self.seen_lock:
                self.seen[self.pid] = started

    def ready(self) -> None:
        """Until its dirty workers are up and HTTP answers an echo."""
        self.wait_for(self.dirty_workers_up, WAIT_S, 0.05, "gunicorn's dirty workers")
        self.wait_for(lambda: http_answers(self.url), WAIT_S, 0.1, "gunicorn answering on HTTP")

    def dirty_workers_up(self) -> bool:
        return any(any(sub.glob("worker-*.sock")) for sub in self.dir.glob("gunicorn-dirty-*"))


def http_answers(url: str, ca: Path | None = None) -> bool:
    """Whether one echo at ``url`` comes back (for the waits)."""
    try:
        return bool(check_endpoint(url, ca, 1)["ok"] == 1)
    except (OSError, http.client.HTTPException, ValueError):
        return False


def check_endpoint(url: str, ca: Path | None, n: int = CHECKS) -> dict[str, Any]:
    """``n`` echoes at ``url`` on one kept-alive connection (``http.client``), each reply
    checked; over TLS, the protocol ALPN chose when h2 is offered first (on a connection of
    its own; ``http.client`` then speaks HTTP/1.1)."""
    host_port, path = url.split("://", 1)[1].split("/", 1)
    host, port = host_port.rsplit(":", 1)
    alpn = None
    conn: http.client.HTTPConnection
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                alpn = tls.selected_alpn_protocol()
        conn = http.client.HTTPSConnection(
            host, int(port), timeout=10, context=ssl.create_default_context(cafile=str(ca))
        )
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    ok, bad = 0, []
    try:
        for _ in range(n):
            conn.request("POST", "/" + path, body=BODY, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 200 and json.loads(data) == ARGS:
                ok += 1
            else:
                bad.append(f"{resp.status} {data[:200]!r}")
    finally:
        conn.close()
    return {"ok": ok, "of": n, "alpn": alpn, "bad": bad[:3]}


# --- the runs --------------------------------------------------------------------------------


Measure = Callable[[float], dict[str, Any]]


def measured(measure: Measure, duration_s: float, server_pid: int) -> dict[str, Any]:
    """One row's run, with the server's CPU over it."""
    cpu0 = server_cpu_s(server_pid)
    r = measure(duration_s)
    r["server_cpu_s"] = server_cpu_s(server_pid) - cpu0
    return r


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A row's medians over its runs, every run's calls/s, and CPU per request."""
    calls = sum(r["calls"] for r in runs)
    return {
        "calls_per_s": stats.median(r["calls_per_s"] for r in runs),
        "p50_us": stats.median(r["p50_us"] for r in runs),
        "p99_us": stats.median(r["p99_us"] for r in runs),
        "rates": [round(r["calls_per_s"], 1) for r in runs],
        "calls": calls,
        "errors": sum(r["errors"] for r in runs),
        "server_cpu_us": 1e6 * sum(r["server_cpu_s"] for r in runs) / max(calls, 1),
        "client_cpu_us": 1e6 * sum(r["client_cpu_s"] for r in runs) / max(calls, 1),
    }


def cpu_per_request(row: dict[str, Any]) -> float:
    """The CPU a request took of the server and of the load generator together, µs."""
    return float(row["server_cpu_us"] + row["client_cpu_us"])


def targets(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The targets' figures and verdicts. Beside a calls/s ratio at c=64, ``cpu_ratio``: the
    ratio the CPU per request (server + load generator) allows when the two rows are bound
    by the machine's CPU, as 64 callers on 2 cores are; other work on the machine usually
    moves calls/s between runs more than it moves CPU per request."""
    out: dict[str, dict[str, Any]] = {}
    if "door_c1" in rows:
        door, sock = rows["door_c1"]["p50_us"], rows["socket_c1"]["p50_us"]
        out["latency"] = {
            "what": "door c=1 p50 <= call socket c=1 p50 + 50 µs",
            "door_p50_us": door,
            "socket_p50_us": sock,
            "added_us": door - sock,
            "met": door <= sock + 50,
        }
    if "door_c64" in rows:
        door, sock = rows["door_c64"]["calls_per_s"], rows["socket_c64"]["calls_per_s"]
        out["throughput"] = {
            "what": "door c=64 calls/s >= 50% of the call socket's c=64",
            "ratio": door / sock,
            "cpu_ratio": cpu_per_request(rows["socket_c64"]) / cpu_per_request(rows["door_c64"]),
            "met": door >= 0.5 * sock,
        }
    if "door_tls_h2_c64" in rows:
        tls, plain = rows["door_tls_h2_c64"]["calls_per_s"], rows["door_c64"]["calls_per_s"]
        out["tls"] = {
            "what": "door TLS HTTP/2 c=64 calls/s within 20% of the plain door's",
            "ratio": tls / plain,
            "p50_ratio": rows["door_tls_h2_c64"]["p50_us"] / rows["door_c64"]["p50_us"],
            "cpu_ratio": cpu_per_request(rows["door_c64"]) / cpu_per_request(rows["door_tls_h2_c64"]),
            "met": tls >= 0.8 * plain,
        }
        # Not targets: TLS alone (HTTP/1.1 both) and HTTP/2 alone (cleartext both), calls/s
        # and the server's CPU per request.
        for name, a, b in (
            ("tls_alone", "door_tls_h1_c64", "door_c64"),
            ("http2_alone", "door_h2c_c64", "door_c64"),
            ("tls_under_http2", "door_tls_h2_c64", "door_h2c_c64"),
        ):
            if a in rows and b in rows:
                out["tls"][name] = {
                    "ratio": rows[a]["calls_per_s"] / rows[b]["calls_per_s"],
                    "server_cpu_us": [rows[a]["server_cpu_us"], rows[b]["server_cpu_us"]],
                    "client_cpu_us": [rows[a]["client_cpu_us"], rows[b]["client_cpu_us"]],
                }
    for c in (1, MANY):
        g, d = rows.get(f"gunicorn_c{c}"), rows.get(f"door_c{c}")
        if g is None or d is None:
            continue
        rate, p50 = d["calls_per_s"] / g["calls_per_s"], d["p50_us"] / g["p50_us"]
        out[f"gunicorn_c{c}"] = {
            "what": f"door >= 3x gunicorn's calls/s and <= 1/2 its p50, c={c}",
            "rate_ratio": rate,
            "p50_ratio": p50,
            "met": rate >= 3 and p50 <= 0.5,
        }
    return out


# --- the report --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def us(v: float) -> str:
    return f"{v / 1000:.2f} ms" if v >= 10_000 else f"{v:.0f} µs"


def print_report(f: dict[str, Any]) -> None:
    info, rows = f["info"], f["rows"]
    print(
        f"\n{info['workers']} echo workers per pool; {info['runs']} run(s) of {info['duration_s']:g} s per "
        "row, taking turns; medians over the runs;\nCPU µs per request (server: pitd and its workers, or "
        "gunicorn's processes; client: the load generator)"
    )
    lines = []
    for key, label in ROWS.items():
        r = rows.get(key)
        if r is None:
            continue
        spread = "/".join(f"{x:,.0f}" for x in r["rates"]) if len(r["rates"]) > 1 else ""
        lines.append(
            (
                label,
                f"{r['calls_per_s']:,.0f}",
                f"{r['p50_us']:,.0f}",
                f"{r['p99_us']:,.0f}",
                f"{r['errors']}",
                f"{r['server_cpu_us']:.1f}",
                f"{r['client_cpu_us']:.1f}",
                spread,
            )
        )
    columns(("", "calls/s", "p50 µs", "p99 µs", "errors", "server", "client", "calls/s of each run"), lines)
    for why in (info.get("oha_skipped"), info.get("gunicorn_skipped")):
        if why:
            print(why)
    print("\nendpoints checked (20 echoes each on one connection):")
    for name, c in f["checks"].items():
        alpn = f", ALPN {c['alpn']}" if c.get("alpn") else ""
        print(f"  {name}: {c['ok']}/{c['of']} echoed{alpn}{'; ' + ' / '.join(c['bad']) if c['bad'] else ''}")
    t = f["targets"]
    if not t:
        return
    print("\ntargets")
    if "latency" in t:
        x = t["latency"]
        print(
            f"   {x['what']}: {verdict(x['met'])} ({us(x['door_p50_us'])} against {us(x['socket_p50_us'])}: "
            f"{x['added_us']:+.0f} µs)"
        )
    if "throughput" in t:
        x = t["throughput"]
        print(
            f"   {x['what']}: {verdict(x['met'])} ({100 * x['ratio']:.0f}%; "
            f"by CPU per request {100 * x['cpu_ratio']:.0f}%)"
        )
    if "tls" in t:
        x = t["tls"]
        print(
            f"   {x['what']}: {verdict(x['met'])} ({100 * x['ratio']:.0f}%; p50 {x['p50_ratio']:.2f}x; "
            f"by CPU per request {100 * x['cpu_ratio']:.0f}%)"
        )
        for name, label in (
            ("tls_alone", "TLS alone: TLS HTTP/1.1 / plain HTTP/1.1"),
            ("http2_alone", "HTTP/2 alone: cleartext HTTP/2 / HTTP/1.1"),
            ("tls_under_http2", "TLS under HTTP/2: TLS HTTP/2 / cleartext HTTP/2"),
        ):
            if name in x:
                y = x[name]
                print(
                    f"      {label}: {100 * y['ratio']:.0f}% of the calls/s; CPU µs per request, server "
                    f"{y['server_cpu_us'][0]:.1f} / {y['server_cpu_us'][1]:.1f}, "
                    f"oha {y['client_cpu_us'][0]:.1f} / {y['client_cpu_us'][1]:.1f}"
                )
    for c in (1, MANY):
        x = t.get(f"gunicorn_c{c}")
        if x:
            print(
                f"   {x['what']}: {verdict(x['met'])} ({x['rate_ratio']:.1f}x calls/s, "
                f"p50 {x['p50_ratio']:.2f}x)"
            )


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s per row; oha is not built")
    parser.add_argument("--runs", type=int, help="runs of every row, taking turns (3; quick 1)")
    parser.add_argument("--duration", type=float, help="seconds of load per row and run (5; quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="workers of each pool, and gunicorn's (2)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    parser.add_argument(
        "--oha", type=Path, default=OHA_ROOT / "bin" / "oha", help="oha's binary (built there when missing)"
    )
    parser.add_argument(
        "--venv", type=Path, default=BENCH / ".venv", help="gunicorn's virtual environment (bench/.venv)"
    )
    parser.add_argument("--no-gunicorn", action="store_true", help="leave gunicorn out")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    duration_s = args.duration or (1.0 if args.quick else 5.0)
    warmup_s = 0.5 if args.quick else 2.0
    if not (1 <= runs <= 20 and 0.1 <= duration_s <= 120 and 1 <= args.workers <= 64):
        parser.error("--runs 1..20, --duration 0.1..120, --workers 1..64")

    load_before = os.getloadavg()
    cpu_use = CpuUse()
    oha, oha_said, oha_build_s = find_oha(args.oha, build=not args.quick)
    versions: dict[str, str] = {}
    gunicorn_skipped = ""
    if args.no_gunicorn:
        gunicorn_skipped = "gunicorn: left out (--no-gunicorn)"
    else:
        versions, missing = install_peers(args.venv.resolve(), {"gunicorn": GUNICORN})
        if "gunicorn" in missing:
            gunicorn_skipped = f"gunicorn: not available, its rows are left out: {missing['gunicorn'][:300]}"
    pitd_version = subprocess.run(
        [str(args.bin_dir / "pitd"), "--version"], capture_output=True, text=True, timeout=WAIT_S
    ).stdout.strip()
    print(
        f"# http_door: {os.cpu_count()} cores, load {loadavg(load_before)}, {pitd_version or 'pitd'}, "
        f"python {platform.python_version()} ({PYTHON}), {oha_said}, gunicorn "
        f"{versions.get('gunicorn', '-') if not gunicorn_skipped else '-'}",
        flush=True,
    )
    figures: dict[str, Any] = {
        "info": {
            "cores": os.cpu_count(),
            "loadavg_before": load_before,
            "python": PYTHON,
            "pitd": pitd_version,
            "oha": oha_said if oha else None,
            "oha_skipped": "" if oha else oha_said,
            "oha_build_s": oha_build_s,
            "gunicorn": versions.get("gunicorn") if not gunicorn_skipped else None,
            "gunicorn_skipped": gunicorn_skipped,
            "gunicorn_threads": GUNICORN_THREADS,
            "workers": args.workers,
            "runs": runs,
            "duration_s": duration_s,
            "quick": args.quick,
            "body": BODY,
        },
        "checks": {},
    }
    survivors: list[str] = []
    failed_checks: list[str] = []
    certs = Path(tempfile.mkdtemp(prefix="pit-http-door-tls-"))
    daemons: list[DaemonProcess] = []
    try:
        ca, cert, cert_key = make_certificate(certs)
        plain = Pitd(args.bin_dir, args.workers)
        daemons.append(plain)
        tls = Pitd(args.bin_dir, args.workers, (ca, cert, cert_key))
        daemons.append(tls)
        gunicorn: Gunicorn | None = None
        if not gunicorn_skipped:
            gunicorn = Gunicorn(args.venv.resolve(), args.workers)
            daemons.append(gunicorn)
        for server in (plain, tls, gunicorn):
            if server is not None:
                server.ready()
        endpoints = {"door": plain.url, "door TLS": tls.url}
        if gunicorn is not None:
            endpoints["gunicorn"] = gunicorn.url
        for name, url in endpoints.items():
            c = check_endpoint(url, ca)
            figures["checks"][name] = c
            if c["ok"] != c["of"] or (name == "door TLS" and c["alpn"] != "h2"):
                failed_checks.append(name)

        measures: dict[str, tuple[Measure, int]] = {
            "socket_c1": (lambda d: plain.bench(1, d), plain.pid),
            "socket_c64": (lambda d: plain.bench(MANY, d), plain.pid),
        }
        if oha is not None:
            exe = oha
            measures.update(
                {
                    "door_c1": (lambda d: oha_load(exe, plain.url, 1, d), plain.pid),
                    "door_c64": (lambda d: oha_load(exe, plain.url, MANY, d), plain.pid),
                    "door_h2c_c64": (lambda d: oha_load(exe, plain.url, MANY, d, True), plain.pid),
                    "door_tls_h2_c64": (lambda d: oha_load(exe, tls.url, MANY, d, True, ca), tls.pid),
                    "door_tls_h1_c64": (lambda d: oha_load(exe, tls.url, MANY, d, False, ca), tls.pid),
                }
            )
            if gunicorn is not None:
                g = gunicorn
                measures["gunicorn_c1"] = (lambda d: oha_load(exe, g.url, 1, d), g.pid)
                measures["gunicorn_c64"] = (lambda d: oha_load(exe, g.url, MANY, d), g.pid)
        progress(f"warm-up, {warmup_s:g} s of each row at its load")
        for measure, _ in measures.values():
            measure(warmup_s)
        collected: dict[str, list[dict[str, Any]]] = {k: [] for k in measures}
        for i in range(runs):
            for key, (measure, pid) in measures.items():
                progress(f"{ROWS[key]}, run {i + 1}/{runs}")
                collected[key].append(measured(measure, duration_s, pid))
            for d in daemons:
                d.remember()
        figures["rows"] = {k: summarize(v) for k, v in collected.items()}
    finally:
        for d in daemons:
            survivors += d.stop()
            d.cleanup()
        shutil.rmtree(certs, ignore_errors=True)

    figures["targets"] = targets(figures["rows"])
    figures["info"]["loadavg_after"] = load_after = os.getloadavg()
    figures["info"]["cpu_use"] = use = cpu_use.summary()
    figures["survivors"] = survivors
    print_report(figures)
    print(
        f"\nload average after: {loadavg(load_after)}; CPU time of the {os.cpu_count()} cores: "
        f"{use['ours_percent']:.0f}% this benchmark and what it started, {use['others_percent']:.0f}% "
        f"other processes, {use['steal_percent']:.0f}% stolen"
    )
    if failed_checks:
        print(f"endpoint checks FAILED: {', '.join(failed_checks)}")
    if survivors:
        print("processes outlived their daemon (killed now):", *survivors, sep="\n  ")
    else:
        print("every pitd and gunicorn stopped; none of the processes they started is left")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if survivors or failed_checks else 0


if __name__ == "__main__":
    sys.exit(main())
