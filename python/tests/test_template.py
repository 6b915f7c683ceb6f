"""The preload template on its own: what it refuses, and how a failed preload ends. Forking
workers needs pitd (a subreaper); the Rust integration tests in tests/it/preload.rs drive
that path end to end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import DEADLINE, PACKAGE_ROOT, copy_apps

from pit import template


def run_template(
    tmp_path: Path,
    preload: list,
    channel: bool = True,
    extra_env: dict[str, str] | None = None,
    warmup: str | None = None,
) -> subprocess.Popen:
    copy_apps(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT), PYTHONDONTWRITEBYTECODE="1", **(extra_env or {}))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def on_fd_3() -> None:
        os.dup2(theirs.fileno(), 3)

    argv = [sys.executable, "-m", "pit", "template", "sample_app"]
    for module in preload:
        argv += ["--preload", module]
    if warmup is not None:
        argv += ["--warmup", warmup]
    proc = subprocess.Popen(
        argv,
        cwd=str(tmp_path),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        close_fds=not channel,
        pass_fds=(),
        preexec_fn=on_fd_3 if channel else None,
    )
    theirs.close()
    proc.channel = ours  # type: ignore[attr-defined]
    return proc


def test_refuses_to_run_without_its_channel(tmp_path: Path) -> None:
    proc = run_template(tmp_path, ["json"], channel=False)
    _, err = proc.communicate(timeout=DEADLINE)
    proc.channel.close()  # type: ignore[attr-defined]
    assert proc.returncode == 2
    assert b"must be run by pitd" in err


def test_a_failed_preload_exits_1_with_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken_preload.py").write_text('raise ImportError("weights not found")\n')
    proc = run_template(tmp_path, ["json", "broken_preload"])
    _, err = proc.communicate(timeout=DEADLINE)
    proc.channel.close()  # type: ignore[attr-defined]
    assert proc.returncode == 1
    assert b"cannot preload broken_preload" in err
    assert b"ImportError: weights not found" in err


def test_announces_ready_and_exits_0_when_pitd_closes_the_channel(tmp_path: Path) -> None:
    proc = run_template(tmp_path, ["json"])
    channel: socket.socket = proc.channel  # type: ignore[attr-defined]
    channel.settimeout(DEADLINE)
    ready = json.loads(channel.recv(65536))
    assert ready["type"] == "ready" and ready["pid"] == proc.pid and ready["preloaded"] == ["json"]
    assert ready["threads"] == []
    assert ready["gil_reenabled"] is False
    channel.close()
    proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0


def test_ready_names_the_threads_running_after_the_preload(tmp_path: Path) -> None:
    (tmp_path / "starts_thread.py").write_text(
        "import threading\n"
        "threading.Thread(target=threading.Event().wait, name='poller', daemon=True).start()\n"
    )
    proc = run_template(tmp_path, ["starts_thread"])
    channel: socket.socket = proc.channel  # type: ignore[attr-defined]
    channel.settimeout(DEADLINE)
    ready = json.loads(channel.recv(65536))
    assert ready["threads"] == ["poller"]
    # The spare's pid follows, for pitd to count its memory.
    spare = json.loads(channel.recv(65536))
    assert spare["type"] == "spare" and spare["pid"] not in (0, proc.pid)
    channel.close()
    proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0


def test_an_unknown_message_is_a_protocol_error(tmp_path: Path) -> None:
    proc = run_template(tmp_path, ["json"])
    channel: socket.socket = proc.channel  # type: ignore[attr-defined]
    channel.settimeout(DEADLINE)
    assert json.loads(channel.recv(65536))["type"] == "ready"
    channel.send(b'{"type": "launch"}')
    _, err = proc.communicate(timeout=DEADLINE)
    channel.close()
    assert proc.returncode == 3
    assert b"protocol error from pitd" in err


@pytest.mark.parametrize(
    "free_threaded, gil_on, warned",
    [(1, True, True), (1, False, False), (None, True, False), (0, True, False)],
)
def test_gil_reenabled_only_in_a_free_threaded_build_with_the_gil_on(
    monkeypatch: pytest.MonkeyPatch, free_threaded, gil_on, warned
) -> None:
    real = sysconfig.get_config_var
    monkeypatch.setattr(
        sysconfig, "get_config_var", lambda name: free_threaded if name == "Py_GIL_DISABLED" else real(name)
    )
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: gil_on, raising=False)
    assert template.gil_reenabled() is warned


@pytest.mark.parametrize("concurrency, loaded", [("4", True), ("1", False)])
def test_a_template_for_concurrent_workers_loads_their_runtime_before_forking(
    tmp_path: Path, concurrency: str, loaded: bool
) -> None:
    import _asyncio

    if not getattr(_asyncio, "__file__", None):
        pytest.skip("_asyncio is built into this interpreter: nothing to see in /proc/PID/maps")
    proc = run_template(tmp_path, ["json"], extra_env={"PIT_CONCURRENCY": concurrency})
    channel: socket.socket = proc.channel  # type: ignore[attr-defined]
    channel.settimeout(DEADLINE)
    assert json.loads(channel.recv(65536))["type"] == "ready"
    with open(f"/proc/{proc.pid}/maps") as maps:
        assert ("/_asyncio." in maps.read()) is loaded
    channel.close()
    proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0


@contextlib.contextmanager
def ready_template(tmp_path: Path, preload: list, warmup: str | None = None) -> Iterator[dict[str, Any]]:
    """A template that announced ready (its message is yielded); stopped on exit, with its
    spare (which, not adopted by a pitd here, would wait a while before giving up)."""
    proc = run_template(tmp_path, preload, warmup=warmup)
    channel: socket.socket = proc.channel  # type: ignore[attr-defined]
    channel.settimeout(DEADLINE)
    spare = None
    try:
        ready = json.loads(channel.recv(65536))
        assert ready["type"] == "ready", ready
        spare = json.loads(channel.recv(65536))["pid"]
        yield ready
    finally:
        channel.close()
        # The spare holds the template's stdout and stderr open: reading them to their end
        # would wait for it.
        if spare is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(spare, signal.SIGKILL)
        try:
            proc.communicate(timeout=DEADLINE)
        finally:
            proc.kill()
    assert proc.returncode == 0


def test_the_warm_up_runs_once_in_the_template_after_the_preload(tmp_path: Path) -> None:
    (tmp_path / "warm.py").write_text(
        "import os, sys\n"
        "RUNS = []\n"
        "def run():\n"
        "    RUNS.append(os.getpid())\n"
        "    assert 'preloaded_first' in sys.modules, 'the preload comes first'\n"
        "    with open('warmed', 'a') as f:\n"
        "        f.write(f'{os.getpid()}\\n')\n"
    )
    (tmp_path / "preloaded_first.py").write_text("")
    with ready_template(tmp_path, ["preloaded_first"], warmup="warm:run") as ready:
        assert ready["warmup"] == "warm:run" and ready["warmup_ms"] >= 0
        assert ready["preloaded"] == ["preloaded_first"]
        assert (tmp_path / "warmed").read_text() == f"{ready['pid']}\n"


def test_a_coroutine_the_warm_up_returns_is_run_to_completion(tmp_path: Path) -> None:
    (tmp_path / "warm_async.py").write_text(
        "import asyncio\n"
        "class Model:\n"
        "    @staticmethod\n"
        "    async def warm_up():\n"
        "        await asyncio.sleep(0.01)\n"
        "        open('warmed', 'w').close()\n"
    )
    with ready_template(tmp_path, ["json"], warmup="warm_async:Model.warm_up") as ready:
        assert (tmp_path / "warmed").exists()
        # The event loop it ran on is closed, its self-pipe with it.
        assert ready["sockets"] == [] and ready["threads"] == []


@pytest.mark.parametrize(
    "source, warmup, says",
    [
        (
            "def run():\n    raise RuntimeError('no model server')\n",
            "warm_fails:run",
            b"RuntimeError: no model server",
        ),
        ("raise ImportError('no weights')\n", "warm_fails:run", b"ImportError: no weights"),
        ("", "warm_fails:nothing_here", b"AttributeError"),
    ],
)
def test_a_failed_warm_up_exits_4_with_the_traceback(
    tmp_path: Path, source: str, warmup: str, says: bytes
) -> None:
    (tmp_path / "warm_fails.py").write_text(source)
    proc = run_template(tmp_path, ["json"], warmup=warmup)
    try:
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
        proc.channel.close()  # type: ignore[attr-defined]
    assert proc.returncode == 4, err
    assert f"warm-up {warmup} failed".encode() in err and b"Traceback" in err and says in err


def test_a_malformed_warmup_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_template(tmp_path, ["json"], warmup="warm.run")
    try:
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
        proc.channel.close()  # type: ignore[attr-defined]
    assert proc.returncode == 2
    assert b'expected "module:function"' in err


def test_ready_names_every_socket_left_open_after_the_preload_and_warm_up(tmp_path: Path) -> None:
    with ready_template(tmp_path, ["json"]) as ready:
        assert ready["sockets"] == [], "pitd's own channel is not reported"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    (tmp_path / "warm_connects.py").write_text(
        "import socket\n"
        "KEPT = []\n"
        "def run():\n"
        f"    KEPT.append(socket.create_connection(('127.0.0.1', {port})))\n"
        "    KEPT.extend(socket.socketpair())\n"
    )
    try:
        with ready_template(tmp_path, ["json"], warmup="warm_connects:run") as ready:
            sockets = ready["sockets"]
            tcp = [s for s in sockets if s["kind"] == "tcp"]
            assert len(tcp) == 1 and tcp[0]["peer"] == f"127.0.0.1:{port}", sockets
            assert tcp[0]["local"].startswith("127.0.0.1:") and tcp[0]["listening"] is False
            unix = [s for s in sockets if s["kind"] == "unix"]
            assert len(unix) == 2 and all(s["peer"] is None for s in unix), sockets
            assert all(s["fd"] > 4 for s in sockets), "above the fds every worker takes"
    finally:
        listener.close()


def test_a_listening_socket_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "listens.py").write_text("import socket\nSERVER = socket.create_server(('127.0.0.1', 0))\n")
    with ready_template(tmp_path, ["listens"]) as ready:
        [listening] = ready["sockets"]
        assert listening["kind"] == "tcp" and listening["listening"] is True and listening["peer"] is None
        assert listening["local"].startswith("127.0.0.1:")
