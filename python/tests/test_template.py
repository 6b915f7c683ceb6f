"""The preload template on its own: what it refuses, and how a failed preload ends. Forking
workers needs pitd (a subreaper); the Rust integration tests in tests/it/preload.rs drive
that path end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from harness import DEADLINE, PACKAGE_ROOT, copy_apps

from pit import template


def run_template(
    tmp_path: Path, preload: list, channel: bool = True, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    copy_apps(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT), PYTHONDONTWRITEBYTECODE="1", **(extra_env or {}))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def on_fd_3() -> None:
        os.dup2(theirs.fileno(), 3)

    argv = [sys.executable, "-m", "pit", "template", "sample_app"]
    for module in preload:
        argv += ["--preload", module]
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
