#!/usr/bin/env python3
"""A forked pool's memory after load, with and without ``warmup``, against one threaded
process: where a framework's first call lands in every worker.

Everything is measured in one run of this script against the release ``pitd`` and
``pitctl``, one row after the other, each pit row with a fresh pitd in a temporary
directory:

The app
    ``bench/apps/dspy_agent.py``: a DSPy program (one ``dspy.Predict("question ->
    answer")``) whose LM is an OpenAI-compatible server on loopback, run by the interpreter
    of a virtual environment with DSPy installed (``--python``; by default
    ``target/dspy-venv/bin/python`` when it imports ``dspy``; make it with
    ``python3 -m venv target/dspy-venv && target/dspy-venv/bin/pip install dspy``). Without
    one, ``bench/apps/lazy_agent.py`` stands in (its first call imports 17 standard library
    modules and builds a table of prompt templates; every call POSTs with ``urllib``), and
    the output says so. DSPy runs with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (its first call
    would otherwise fetch a model price map from the internet), its cache off and its cache
    directory in the run's temporary directory.
The server
    A separate process of this script (``--serve``): ``http.server`` on 127.0.0.1 with
    HTTP/1.1 keep-alive, one thread per connection, answering every ``POST`` after 500 ms
    (``--delay``) with a chat completion whose content DSPy's chat adapter parses.
The rows
    - ``pit 4x16``: a pool of 4 workers with ``concurrency = 16`` serving the app's
      ``ask`` (a sync handler, on each worker's 16 threads), ``preload = [APP]``,
      ``memory_metric = "pss"``;
    - ``pit 4x16 + warmup``: the same with ``warmup = "APP:warm_up"`` (one real call in the
      template, before any fork);
    - ``one process, 64 threads``: one Python process of this script (``--plain``) that
      imports the app and calls ``ask`` from a pool of 64 threads, no pit at all.

    Each row: the processes ready and idle, then three runs of load, each 64 callers making
    ``--calls`` calls each (4; ``--quick``: 2), one at a time (pit rows: asyncio tasks with
    their own ``pit.AsyncClient``; the plain row: its 64 threads), the next run starting
    when the last call of the one before has returned.

Figures per row
    PSS (``Pss`` of ``/proc/PID/smaps_rollup``) summed over the pool's workers, its template
    and its spare (pids from the control socket's status; pitd itself not counted), or of
    the plain process: once idle before any call, and after each run; the calls per second
    of each run (calls / the run's wall time) and the failed calls of all three; the pool's
    warnings from status (a warm-up that left a socket or a thread in the template shows
    there).

Target: the pool's PSS after the third run at most 1.5x the one process's.

Every process the script starts is stopped; it exits 1 if one outlives its pitd.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pitbench import specs
from pitbench.daemon import PitdProcess
from pitbench.loopback import ServerProcess
from pitbench.paths import APPS, BIN_DIR, REPO
from pitbench.procfs import pss_bytes
from pitbench.report import columns, loadavg

PYTHON = os.path.realpath(sys.executable)
DSPY_VENV_PYTHON = REPO / "target" / "dspy-venv" / "bin" / "python"
WAIT_S = 120.0
CALLERS = 64
RUNS = 3
CALL_TIMEOUT_S = 60.0
POOL = "agent"
SIZE, CONCURRENCY = 4, 16
TARGET_RATIO = 1.5
MIB = 1024 * 1024
#: Bound on the server's life, should its parent vanish without closing its stdin.
SERVER_LIFE_S = 3600.0
#: What the chat adapter of DSPy reads as the output field ``answer``.
COMPLETION = "[[ ## answer ## ]]\nforty-two\n\n[[ ## completed ## ]]"


# --- the LLM server and the plain process (separate processes of this script) -------------


def serve(delay: float) -> int:
    """Prints the port, answers every POST after ``delay`` s until stdin closes; prints the
    number of requests answered."""
    answered = 0
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real model server

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            nonlocal answered
            length = int(self.headers.get("Content-Length") or 0)
            try:
                model = json.loads(self.rfile.read(length) or b"{}").get("model", "bench-model")
            except ValueError:
                model = "bench-model"
            time.sleep(delay)
            body = json.dumps(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": COMPLETION},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            with lock:
                answered += 1

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        # 64 callers connecting at once (a client without keep-alive) overflow the default 5.
        request_queue_size = 1024

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    done = threading.Thread(target=sys.stdin.read, daemon=True)
    done.start()
    done.join(SERVER_LIFE_S)
    server.shutdown()
    print(answered, flush=True)
    return 0


def plain(app: str, calls: int) -> int:
    """Imports ``app``, prints ``ready``; for every ``run`` line on stdin, ``CALLERS``
    threads of one pool make ``calls`` calls each of its ``ask``; prints the run as JSON."""
    import importlib

    sys.path.insert(0, str(APPS))
    module = importlib.import_module(app)
    print("ready", flush=True)
    with concurrent.futures.ThreadPoolExecutor(CALLERS) as threads:
        for run, line in enumerate(sys.stdin):
            if line.strip() != "run":
                break

            def caller(i: int, run: int = run) -> int:
                failed = 0
                for k in range(calls):
                    try:
                        module.ask({"question": f"question {run}-{i}-{k}"}, None)
                    except Exception:  # noqa: BLE001 - every failure is counted
                        failed += 1
                return failed

            started = time.monotonic()
            failed = sum(threads.map(caller, range(CALLERS)))
            print(json.dumps({"seconds": time.monotonic() - started, "failed": failed}), flush=True)
    return 0


# --- measuring ---------------------------------------------------------------------------


def app_env(url: str, cache_dir: Path) -> dict[str, str]:
    return specs.pit_env(
        BENCH_LLM_URL=url,
        # DSPy's first call fetches a model price map from the internet unless told not to.
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        DSPY_CACHEDIR=str(cache_dir),
        HF_HUB_OFFLINE="1",
    )


class Pitd(PitdProcess):
    """A pitd in the foreground with one preloaded pool of the app."""

    tail_lines = 20
    wait_s = WAIT_S

    def __init__(self, bin_dir: Path, python: str, app: str, url: str, warmup: bool) -> None:
        super().__init__(bin_dir, "pit-warmup-")
        pool: dict[str, specs.Value | None] = {
            "app": app,
            "preload": [app],
            "warmup": f"{app}:warm_up" if warmup else None,
            "python": python,
            "size": SIZE,
            "concurrency": CONCURRENCY,
            "cwd": str(APPS),
            "env": app_env(url, self.dir / "dspy-cache"),
            "memory_metric": "pss",
            "startup_timeout": "120s",
            "request_timeout": "60s",
        }
        self.start(self.spec_head() + specs.table(f"pools.{POOL}", pool))

    def pss(self) -> dict[str, float]:
        """PSS of the pool's processes, MiB: workers, template and spare, and all of them."""
        p = self.pool(POOL)
        self.remember()
        template = p.get("template") or {}
        workers = sum(pss_bytes(w["pid"]) for w in p["workers"] if w.get("pid"))
        extra = [q["pid"] for q in (template, template.get("spare") or {}) if q.get("pid")]
        rest = sum(pss_bytes(pid) for pid in extra)
        return {"workers": workers / MIB, "template_spare": rest / MIB, "total": (workers + rest) / MIB}

    def wait_ready(self) -> None:
        """Until every worker is idle and the template has its spare."""
        self.wait_workers({POOL: SIZE}, spare=True, within_s=WAIT_S, every_s=0.1)

    def stop(self, wait_s: float | None = None) -> list[str]:
        left = super().stop(wait_s)
        self.cleanup()
        return left


async def pit_run(call_socket: str, calls: int, run: int) -> tuple[float, int, list[str]]:
    """One run of load: (seconds, failed calls, a few of their errors)."""
    import pit

    failed, errors = 0, []

    async def caller(i: int) -> None:
        nonlocal failed
        async with pit.AsyncClient(call_socket) as client:
            for k in range(calls):
                try:
                    r = await client.call(
                        POOL, "ask", {"question": f"question {run}-{i}-{k}"}, timeout=CALL_TIMEOUT_S
                    )
                    if not (isinstance(r, dict) and r.get("answer")):
                        raise ValueError(f"reply {str(r)[:80]}")
                except Exception as e:  # noqa: BLE001 - every failure is counted
                    failed += 1
                    errors.append(f"{type(e).__name__}: {str(e)[:100]}")

    started = time.monotonic()
    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    return time.monotonic() - started, failed, sorted(set(errors))[:3]


def run_pit(
    bin_dir: Path, python: str, app: str, url: str, calls: int, warmup: bool
) -> tuple[dict[str, Any], list[str]]:
    d = Pitd(bin_dir, python, app, url, warmup)
    try:
        d.wait_ready()
        row: dict[str, Any] = {"pss_mib": [d.pss()], "calls_per_s": [], "failed": 0, "errors": []}
        for run in range(RUNS):
            seconds, failed, errors = asyncio.run(pit_run(d.call_socket, calls, run))
            row["calls_per_s"].append(CALLERS * calls / seconds)
            row["failed"] += failed
            row["errors"] += errors
            row["pss_mib"].append(d.pss())
        row["warnings"] = d.pool(POOL).get("warnings", [])
    finally:
        survivors = d.stop()
    return row, survivors


def run_plain(python: str, app: str, url: str, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pit-warmup-plain-") as tmp:
        env = dict(os.environ, **app_env(url, Path(tmp) / "dspy-cache"))
        proc = subprocess.Popen(
            [python, __file__, "--plain", app, str(calls)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(APPS),
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the plain process did not start ({app})")
            mib = pss_bytes(proc.pid) / MIB
            row: dict[str, Any] = {"pss_mib": [{"total": mib}], "calls_per_s": [], "failed": 0, "errors": []}
            for _ in range(RUNS):
                proc.stdin.write("run\n")
                proc.stdin.flush()
                done = json.loads(proc.stdout.readline())
                row["calls_per_s"].append(CALLERS * calls / done["seconds"])
                row["failed"] += done["failed"]
                row["pss_mib"].append({"total": pss_bytes(proc.pid) / MIB})
            proc.stdin.close()
            proc.wait(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return row


def dspy_python(given: str | None) -> str | None:
    """The interpreter to run DSPy with: ``given``, else the project's venv when it has DSPy."""
    candidate = given or (str(DSPY_VENV_PYTHON) if DSPY_VENV_PYTHON.exists() else None)
    if candidate is None:
        return None
    ok = subprocess.run(
        [candidate, "-c", "import dspy"],
        capture_output=True,
        timeout=WAIT_S,
        env=dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True"),
    )
    return candidate if ok.returncode == 0 else None


def version_of(python: str, app: str) -> str:
    """``DSPy 3.4.1, Python 3.11.7`` (the DSPy part only for the DSPy app)."""
    code = "import platform; print(platform.python_version())"
    if app == "dspy_agent":
        code = "import dspy, platform; print(platform.python_version(), dspy.__version__)"
    out = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env=dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True"),
    ).stdout.split()
    if len(out) == 2:
        return f"DSPy {out[1]}, Python {out[0]}"
    return f"Python {out[0]}" if out else "Python ?"


# --- the table ---------------------------------------------------------------------------

ROWS = [("pit", "pit 4x16", False), ("pit_warmup", "pit 4x16 + warmup", True)]


def print_table(rows: dict[str, dict[str, Any]], labels: dict[str, str]) -> None:
    head = ("", "idle", "run 1", "run 2", "run 3", "calls/s (runs)", "failed")
    lines = []
    for key, row in rows.items():
        pss = [f"{p['total']:.0f}" for p in row["pss_mib"]]
        rates = " / ".join(f"{r:.0f}" for r in row["calls_per_s"])
        lines.append((labels[key], *pss, rates, str(row["failed"])))
    print("PSS MiB: pool = workers + template + spare (pitd excluded)")
    columns(head, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 calls per caller and run instead of 4")
    parser.add_argument("--calls", type=int, help="calls per caller in each run (default 4, 2 with --quick)")
    parser.add_argument("--delay", type=float, default=0.5, help="the LLM server's answer delay in s")
    parser.add_argument("--python", help="an interpreter with DSPy (default: target/dspy-venv/bin/python)")
    parser.add_argument(
        "--app", choices=("dspy_agent", "lazy_agent"), help="default: dspy_agent if DSPy runs"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--plain", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        return serve(args.serve)
    if args.plain:
        return plain(args.plain[0], int(args.plain[1]))
    calls = args.calls or (2 if args.quick else 4)

    python = dspy_python(args.python) if args.app != "lazy_agent" else None
    app = args.app or ("dspy_agent" if python else "lazy_agent")
    if app == "dspy_agent" and python is None:
        parser.error("--app dspy_agent: no interpreter with DSPy (give --python)")
    python = python or PYTHON
    stand_in = app == "lazy_agent"
    load_before = os.getloadavg()
    print(
        f"# warmup: {os.cpu_count()} cores, load {loadavg(load_before)}, app {app} "
        f"({version_of(python, app)}, {python}), {CALLERS} callers x {calls} calls x {RUNS} runs, "
        f"server delay {args.delay * 1000:.0f} ms",
        flush=True,
    )
    if stand_in:
        why = "as asked" if args.app == "lazy_agent" else "DSPy is not installed here"
        print(
            "# the stand-in app (lazy imports and a cache built at its first call) is measured "
            f"instead of DSPy ({why})",
            flush=True,
        )
    server = ServerProcess(
        [PYTHON, __file__, "--serve", str(args.delay)], "http://127.0.0.1:{port}/v1", "the LLM server"
    )
    rows: dict[str, dict[str, Any]] = {}
    labels: dict[str, str] = {}
    survivors: list[str] = []
    try:
        for key, label, warmup in ROWS:
            print(f"# {label} ...", file=sys.stderr, flush=True)
            rows[key], left = run_pit(args.bin_dir, python, app, server.url, calls, warmup)
            labels[key] = label
            survivors += left
        print("# one process ...", file=sys.stderr, flush=True)
        rows["plain"] = run_plain(python, app, server.url, calls)
        labels["plain"] = f"one process, {CALLERS} threads"
    finally:
        answered = server.stop()
    load_after = os.getloadavg()

    print_table(rows, labels)
    print(f"load average after: {loadavg(load_after)}; the server answered {answered} requests")
    plain_mib = rows["plain"]["pss_mib"][-1]["total"]
    targets = {}
    for key, _, _ in ROWS:
        mib = rows[key]["pss_mib"][-1]["total"]
        ratio = mib / plain_mib
        targets[key] = {"ratio": ratio, "met": ratio <= TARGET_RATIO}
        first = rows[key]["pss_mib"][1]["total"] - rows[key]["pss_mib"][0]["total"]
        print(
            f"target: {labels[key]} PSS after run 3 <= {TARGET_RATIO}x one process's: "
            f"{'met' if ratio <= TARGET_RATIO else 'NOT met'} ({mib:.0f} / {plain_mib:.0f} MiB = "
            f"{ratio:.2f}x); "
            f"run 1 added {first:.0f} MiB"
        )
    for key, row in rows.items():
        if row.get("warnings"):
            print(f"{labels[key]}: warnings: {' | '.join(row['warnings'])}")
        if row["errors"]:
            print(f"{labels[key]}: failures: {'; '.join(row['errors'])}")
    if survivors:
        print("processes outlived pitd (killed now):", *survivors, sep="\n  ")
    if args.json:
        figures = {
            "info": {
                "cores": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "python": python,
                "app": app,
                "stand_in": stand_in,
                "versions": version_of(python, app),
                "callers": CALLERS,
                "calls": calls,
                "runs": RUNS,
                "delay_s": args.delay,
                "answered": answered,
            },
            "labels": labels,
            "rows": rows,
            "targets": targets,
            "survivors": survivors,
        }
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
