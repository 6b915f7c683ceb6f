"""Fixtures that start workers and fake call sockets in the test's own tmp dir and always
stop them, whatever the test's outcome."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from harness import FakeCallServer, OnRequest, WorkerProcess, copy_apps, echo_request


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``spawn_worker("sample_app", env={...}, fds=True)``: a worker with cwd = tmp_path."""
    copy_apps(tmp_path)
    started: list[WorkerProcess] = []

    def spawn(
        module: str = "sample_app", env: dict[str, str] | None = None, fds: bool = True
    ) -> WorkerProcess:
        worker = WorkerProcess(module, tmp_path, env, fds)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.kill()


@pytest.fixture
def call_server(tmp_path: Path) -> Iterator[Callable[[OnRequest], FakeCallServer]]:
    """``call_server(on_request)``: a fake call socket at tmp_path/call.sock."""
    servers: list[FakeCallServer] = []

    def start(on_request: OnRequest = echo_request) -> FakeCallServer:
        server = FakeCallServer(tmp_path / "call.sock", on_request)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
