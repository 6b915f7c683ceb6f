"""The client and the worker runtime against the real pitd: a daemon is started on a spec
in the test's tmp dir with a pool of ``pit.examples.echo`` workers and stopped afterwards,
with a check that none of its processes survives.

pitd is found at ``$PITD_BIN``, else in the repository's ``target/debug``; build it first
(``cargo build``). Without it these tests are skipped with that reason."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import DEADLINE, PACKAGE_ROOT, wait_until

import pit

REPO = PACKAGE_ROOT.parent
PITD = Path(os.environ.get("PITD_BIN", REPO / "target" / "debug" / "pitd"))
PITCTL = PITD.parent / "pitctl"

pytestmark = pytest.mark.skipif(not PITD.exists(), reason=f"pitd is not built at {PITD} (run cargo build)")


class Daemon:
    """A pitd on a spec in ``tmp``, with a marker in its environment to find its processes."""

    def __init__(self, tmp: Path, size: int = 2, app: str = "pit.examples.echo", pool: str = "echo") -> None:
        self.tmp = tmp
        self.control = tmp / "control.sock"
        self.call = tmp / "call.sock"
        self.marker = f"pytest-{os.getpid()}-{time.monotonic_ns()}"
        spec = tmp / "pitd.toml"
        spec.write_text(
            f"""
[daemon]
control_socket = "{self.control}"
call_socket = "{self.call}"
[pools.{pool}]
app = "{app}"
python = "{sys.executable}"
cwd = "{PACKAGE_ROOT}"
size = {size}
kill_timeout = "2s"
"""
        )
        env = dict(os.environ, PIT_TEST_RUN=self.marker)
        self.log = open(tmp / "pitd.log", "wb")
        self.proc = subprocess.Popen(
            [str(PITD), "--config", str(spec)], env=env, stdout=self.log, stderr=self.log
        )
        wait_until("the echo pool to be ready", lambda: self.ready(size), lambda: self.log_text())

    def log_text(self) -> str:
        return (self.tmp / "pitd.log").read_text(errors="replace")[-2000:]

    def status(self) -> dict:
        out = subprocess.run(
            [str(PITCTL), "--socket", str(self.control), "status", "--json"],
            capture_output=True,
            timeout=DEADLINE,
        )
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def ready(self, size: int) -> bool:
        pools = self.status().get("pools", [])
        return bool(pools) and sum(w["state"] == "idle" for w in pools[0]["workers"]) >= size

    def survivors(self) -> list[int]:
        found = []
        needle = f"PIT_TEST_RUN={self.marker}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                env = Path(f"/proc/{entry}/environ").read_bytes()
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if needle in env.split(b"\0") and state != "Z":
                found.append(int(entry))
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        wait_until("no process of the daemon run left", lambda: not self.survivors(), self.survivors)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Daemon]:
    """A pitd serving ``pit.examples.agent`` (its streaming ``tokens`` and ``relay``)."""
    d = Daemon(tmp_path, size=1, app="pit.examples.agent", pool="agent")
    try:
        yield d
    finally:
        d.stop()


def streams_open(d: Daemon) -> int:
    pools = d.status().get("pools", [])
    return int(pools[0].get("streams_open", -1)) if pools else -1


def test_a_stream_yields_the_tokens_of_the_agent_example_as_they_come(agent: Daemon) -> None:
    with pit.Client(str(agent.call)) as c:
        args = {"prompt": "one two three", "count": 5, "interval": 0.01}
        tokens = [chunk["token"] for chunk in c.stream("agent", "tokens", args)]
        assert tokens == ["one", "two", "three", "one", "two"]
        # A plain call on the same connection afterwards.
        assert isinstance(c.call("agent", "ask", {"seconds": 0}), dict)


def test_leaving_a_stream_early_cancels_it_in_pitd(agent: Daemon) -> None:
    with pit.Client(str(agent.call)) as c:
        got = []
        for chunk in c.stream("agent", "tokens", {"count": 1000, "interval": 0.05}):
            got.append(chunk)
            if len(got) == 2:
                break
        wait_until("the stream closed in pitd", lambda: streams_open(agent) == 0, lambda: agent.status())
        assert len(list(c.stream("agent", "tokens", {"count": 3, "interval": 0}))) == 3


def test_async_client_streams_and_cancels_when_its_loop_is_left(agent: Daemon) -> None:
    async def run() -> tuple[list[str], list[str]]:
        async with pit.AsyncClient(str(agent.call)) as c:
            whole = [
                ch["token"]
                async for ch in c.stream("agent", "tokens", {"prompt": "a b", "count": 4, "interval": 0})
            ]
            first = []
            async for ch in c.stream("agent", "tokens", {"count": 1000, "interval": 0.05}):
                first.append(ch["token"])
                break
            return whole, first

    whole, first = asyncio.run(run())
    assert whole == ["a", "b", "a", "b"] and len(first) == 1
    wait_until("the stream closed in pitd", lambda: streams_open(agent) == 0, lambda: agent.status())


def test_relay_streams_the_events_of_a_loopback_sse_server(agent: Daemon) -> None:
    from pit.examples.agent import TokenServer

    with TokenServer() as server, pit.Client(str(agent.call)) as c:
        url = server.url_for("x y", count=4, interval=0.01)
        tokens = [chunk["token"] for chunk in c.stream("agent", "relay", {"url": url})]
    assert tokens == ["x", "y", "x", "y"]


def test_a_failed_stream_raises_call_error_from_the_iterator(agent: Daemon) -> None:
    with pit.Client(str(agent.call)) as c:
        with pytest.raises(pit.CallError) as e:
            list(c.stream("agent", "tokens", {"count": -1}))
        assert e.value.kind == "handler_error"
        with pytest.raises(pit.CallError) as e:
            c.call("agent", "tokens", {"count": 1})
        assert e.value.kind == "bad_request"


def test_calls_return_results_and_errors_carry_their_kind(daemon: Daemon) -> None:
    with pit.Client(str(daemon.call)) as c:
        assert c.call("echo", "echo", {"text": "hi", "n": [1, 2]}) == {"text": "hi", "n": [1, 2]}
        with pytest.raises(pit.CallError) as err:
            c.call("echo", "fail", "boom")
        assert err.value.kind == "handler_error"
        assert "ValueError" in err.value.message
        assert "Traceback" in (err.value.traceback or "")
        with pytest.raises(pit.CallError) as err:
            c.call("echo", "no_such_thing")
        assert err.value.kind == "no_such_method"
        with pytest.raises(pit.CallError) as err:
            c.call("nope", "echo")
        assert err.value.kind == "no_such_pool"


def test_a_session_sticks_to_one_worker(daemon: Daemon) -> None:
    with pit.Client(str(daemon.call)) as c:
        pids = {c.call("echo", "pid", session="user-42") for _ in range(10)}
        assert len(pids) == 1


def test_many_threads_pipeline_over_one_client(daemon: Daemon) -> None:
    results: dict = {}
    errors: list[BaseException] = []
    with pit.Client(str(daemon.call)) as c:

        def work(t: int) -> None:
            try:
                for i in range(50):
                    results[(t, i)] = c.call("echo", "echo", [t, i])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
    assert not errors, errors
    assert all(results[(t, i)] == [t, i] for t in range(8) for i in range(50))
    assert daemon.status()["pools"][0]["requests"] == 400


def test_timeout_gives_a_timeout_error_and_the_pool_recovers(daemon: Daemon) -> None:
    with pit.Client(str(daemon.call)) as c:
        with pytest.raises(pit.CallError) as err:
            c.call("echo", "sleep", 10, timeout=0.3)
        assert err.value.kind == "timeout"
        wait_until("two idle workers again", lambda: daemon.ready(2), daemon.status)
        assert c.call("echo", "echo", "after") == "after"


def test_async_client_against_pitd(daemon: Daemon) -> None:
    async def main() -> list:
        async with pit.AsyncClient(str(daemon.call)) as c:
            return await asyncio.gather(*(c.call("echo", "echo", i) for i in range(20)))

    assert asyncio.run(main()) == list(range(20))


def test_a_client_that_disconnects_mid_call_does_not_disturb_others(daemon: Daemon) -> None:
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(daemon.call))
    body = json.dumps({"id": 1, "pool": "echo", "method": "sleep", "args": 0.5}).encode()
    raw.sendall(struct.pack(">I", len(body)) + body)
    raw.close()
    with pit.Client(str(daemon.call)) as c:
        assert c.call("echo", "echo", "ok") == "ok"


def test_a_timed_out_call_names_its_worker_and_why(daemon: Daemon) -> None:
    with pit.Client(str(daemon.call)) as c:
        with pytest.raises(pit.CallError) as err:
            c.call("echo", "sleep", 10, timeout=0.3)
    assert err.value.kind == "timeout"
    assert (err.value.worker or "").startswith("worker-"), err.value
    assert err.value.message == f"call to echo.sleep timed out after 300ms; {err.value.worker} killed"
    assert str(err.value).startswith(f"timeout from {err.value.worker}: ")
