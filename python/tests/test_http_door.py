"""pitd's HTTP front door (INTERFACE section 10) end to end: a real pitd with an ``[http]``
section on loopback, without TLS and with a certificate made by ``openssl`` in the test,
called by pit.Client / pit.AsyncClient given its URL, by raw ``http.client`` requests that
pin the wire, and by the example clients of examples/clients.

pitd is found as in test_daemon.py (``$PITD_BIN``, else ``target/debug``). A pitd that
refuses the ``[http]`` section as an unknown key has no front door yet: the tests are then
skipped, saying so. Anything else that goes wrong fails them. The TLS tests are skipped
without ``openssl``, each example client without its program.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import DEADLINE, PACKAGE_ROOT, wait_until
from http_harness import EXAMPLES, Cert, make_cert, run_example

import pit

REPO = PACKAGE_ROOT.parent
PITD = Path(os.environ.get("PITD_BIN", REPO / "target" / "debug" / "pitd"))
PITCTL = PITD.parent / "pitctl"

pytestmark = pytest.mark.skipif(not PITD.exists(), reason=f"pitd is not built at {PITD} (run cargo build)")

#: Bearer tokens of three principals: one may call every pool and sees tracebacks, one
#: only the agent pool with one call at a time, one only the echo pool.
FRONTEND = "frontend-token-0123456789"
AGENT_ONLY = "agent-only-token-0123456789"
ECHO_ONLY = "echo-only-token-0123456789"

#: How pitd refuses a spec section it does not know (INTERFACE section 1).
NO_HTTP_YET = re.compile(r"unknown key `http`")

STREAM_ARGS = {"prompt": "one two three", "count": 5, "interval": 0.01}


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Door:
    """A pitd with an echo pool, an agent pool and a front door, started in ``tmp``."""

    def __init__(self, tmp: Path, cert: Cert | None = None) -> None:
        self.tmp = tmp
        self.cert = cert
        self.control = tmp / "control.sock"
        self.port = free_port()
        scheme = "https" if cert else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.marker = f"pytest-{os.getpid()}-{time.monotonic_ns()}"
        tokens = tmp / "tokens.toml"
        tokens.write_text(
            f"""
[principals.frontend]
token_sha256  = "{sha256(FRONTEND)}"
pools         = ["*"]
max_in_flight = 64
tracebacks    = true

[principals.agent_only]
token_sha256  = "{sha256(AGENT_ONLY)}"
pools         = ["agent"]
max_in_flight = 1

[principals.echo_only]
token_sha256  = "{sha256(ECHO_ONLY)}"
pools         = ["echo"]
max_in_flight = 8
"""
        )
        tls = f'tls_cert = "{cert.cert}"\ntls_key = "{cert.key}"\n' if cert else ""
        spec = tmp / "pitd.toml"
        spec.write_text(
            f"""
[daemon]
control_socket = "{self.control}"
call_socket = "{tmp / "call.sock"}"

[http]
listen = "127.0.0.1:{self.port}"
tokens = "{tokens}"
{tls}
[pools.echo]
app = "pit.examples.echo"
python = "{sys.executable}"
cwd = "{PACKAGE_ROOT}"
size = 1
kill_timeout = "2s"

[pools.agent]
app = "pit.examples.agent"
python = "{sys.executable}"
cwd = "{PACKAGE_ROOT}"
size = 1
concurrency = 8
kill_timeout = "2s"
"""
        )
        self.log_path = tmp / "pitd.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(PITD), "--config", str(spec)],
            env=dict(os.environ, PIT_TEST_RUN=self.marker),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )

    def wait_ready(self) -> None:
        """Until ``/v1/ready`` says 200; skips the tests when pitd refused ``[http]``."""
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                log = self.log_text()
                refused = NO_HTTP_YET.search(log)
                if refused:
                    line = next(li for li in log.splitlines() if NO_HTTP_YET.search(li))
                    pytest.skip(f"this pitd has no HTTP front door yet: {line.strip()}")
                raise AssertionError(f"pitd exited with {self.proc.returncode}: {log}")
            try:
                if self.get("/v1/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the front door was not ready within {DEADLINE}s: {self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def connection(self) -> http.client.HTTPConnection:
        if self.cert is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        context = ssl.create_default_context(cafile=str(self.cert.ca))
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=DEADLINE, context=context)

    def get(self, path: str) -> tuple[int, bytes]:
        conn = self.connection()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def post(
        self, path: str, body: bytes | None, headers: dict[str, str] | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request on a connection of its own: the answer and its whole body."""
        conn = self.connection()
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            return resp, resp.read()
        finally:
            conn.close()

    def client(self, token: str | None = FRONTEND) -> pit.Client:
        return pit.Client(self.url, token=token, cafile=self.cert.ca if self.cert else None)

    def async_client(self, token: str | None = FRONTEND) -> pit.AsyncClient:
        return pit.AsyncClient(self.url, token=token, cafile=self.cert.ca if self.cert else None)

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            [str(PITCTL), "--socket", str(self.control), "status", "--json"],
            capture_output=True,
            timeout=DEADLINE,
        )
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def streams_open(self) -> int:
        pools = {p["name"]: p for p in self.status().get("pools", [])}
        return int(pools.get("agent", {}).get("streams_open", -1))

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


def start_door(tmp: Path, cert: Cert | None = None) -> Iterator[Door]:
    door = Door(tmp, cert)
    try:
        door.wait_ready()
        yield door
    finally:
        door.stop()


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    """A pitd with a plain HTTP front door on loopback, for the whole module."""
    yield from start_door(tmp_path_factory.mktemp("door"))


@pytest.fixture(scope="module")
def tls_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    """The same behind TLS, with a certificate (and its CA) made by openssl."""
    tmp = tmp_path_factory.mktemp("tls-door")
    cert = make_cert(tmp)
    if cert is None:
        pytest.skip("no openssl command to make a certificate")
    yield from start_door(tmp, cert)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def events(body: bytes) -> list[tuple[str, Any]]:
    """The ``(event, data)`` pairs of a whole server-sent events body, data decoded."""
    found = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def error_of(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    assert set(document) == {"error"}, document
    error: dict[str, Any] = document["error"]
    return error


# --- the wire -------------------------------------------------------------------------------


def test_a_call_answers_200_with_the_result_and_the_worker(door: Door) -> None:
    args = {"text": "héllo", "n": [1, 2.5, None]}
    resp, body = door.post("/v1/call/echo/echo", json.dumps(args).encode(), bearer(FRONTEND))
    assert resp.status == 200, body
    assert json.loads(body) == args
    assert re.fullmatch(r"worker-\d+", resp.getheader("Pit-Worker") or ""), resp.getheaders()


def test_an_empty_body_is_null_args(door: Door) -> None:
    resp, body = door.post("/v1/call/echo/echo", b"", bearer(FRONTEND))
    assert (resp.status, json.loads(body)) == (200, None)


def test_session_and_timeout_headers_reach_the_handler(door: Door) -> None:
    headers = {**bearer(FRONTEND), "Pit-Session": "user-7", "Pit-Timeout": "5s"}
    resp, body = door.post("/v1/call/echo/env", b"null", headers)
    assert resp.status == 200, body
    ctx = json.loads(body)
    assert ctx["session"] == "user-7"
    assert ctx["deadline"] is not None and 0 < ctx["time_left"] <= 5


def test_one_connection_carries_calls_one_after_another(door: Door) -> None:
    conn = door.connection()
    try:
        for i in range(3):
            conn.request("POST", "/v1/call/echo/echo", json.dumps(i).encode(), bearer(FRONTEND))
            resp = conn.getresponse()
            assert (resp.status, json.loads(resp.read())) == (200, i)
    finally:
        conn.close()


def test_a_stream_is_server_sent_chunk_events_then_end(door: Door) -> None:
    headers = {**bearer(FRONTEND), "Accept": "text/event-stream"}
    resp, body = door.post("/v1/call/agent/tokens", json.dumps(STREAM_ARGS).encode(), headers)
    assert resp.status == 200, body
    assert (resp.getheader("Content-Type") or "").startswith("text/event-stream")
    got = events(body)
    assert got == [("chunk", {"token": t}) for t in ["one", "two", "three", "one", "two"]] + [("end", None)]


def test_a_plain_handler_called_as_a_stream_ends_with_its_result(door: Door) -> None:
    headers = {**bearer(FRONTEND), "Accept": "text/event-stream"}
    resp, body = door.post("/v1/call/echo/echo", b'{"a": 1}', headers)
    assert resp.status == 200, body
    assert events(body) == [("end", {"a": 1})]


def test_a_streaming_handler_called_plainly_is_a_bad_request(door: Door) -> None:
    resp, body = door.post("/v1/call/agent/tokens", b"{}", bearer(FRONTEND))
    assert resp.status == 400 and error_of(body)["kind"] == "bad_request", body


def test_probes_answer_without_a_token(door: Door) -> None:
    assert door.get("/v1/ready")[0] == 200
    assert door.get("/v1/live")[0] == 200


# --- who may call what ----------------------------------------------------------------------


def test_no_token_or_a_wrong_one_is_401_unauthenticated(door: Door) -> None:
    for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic dXNlcjpwYXNz"}):
        resp, body = door.post("/v1/call/echo/echo", b"1", headers)
        assert resp.status == 401, (headers, body)
        assert error_of(body)["kind"] == "unauthenticated"
    with door.client(token=None) as c, pytest.raises(pit.CallError) as caught:
        c.call("echo", "echo", 1)
    assert caught.value.kind == "unauthenticated"


def test_a_pool_the_principal_may_not_call_is_403_forbidden(door: Door) -> None:
    resp, body = door.post("/v1/call/agent/ask", b'{"seconds": 0}', bearer(ECHO_ONLY))
    assert resp.status == 403 and error_of(body)["kind"] == "forbidden", body
    with door.client(ECHO_ONLY) as c:
        assert c.call("echo", "echo", "mine") == "mine"
        with pytest.raises(pit.CallError) as caught:
            list(c.stream("agent", "tokens", STREAM_ARGS))
        assert caught.value.kind == "forbidden"


def test_past_its_max_in_flight_a_principal_gets_429_quota(door: Door) -> None:
    with door.client(AGENT_ONLY) as c:
        held = c.stream("agent", "tokens", {"count": 1000, "interval": 0.05})
        assert "token" in next(held)  # one call in flight: the principal's all
        try:
            resp, body = door.post("/v1/call/agent/ask", b'{"seconds": 0}', bearer(AGENT_ONLY))
            assert resp.status == 429, body
            assert error_of(body)["kind"] == "quota"
            assert resp.getheader("Retry-After"), resp.getheaders()
        finally:
            held.close()
        wait_until("the held stream to end in pitd", lambda: door.streams_open() == 0, door.status)
        assert c.call("agent", "ask", {"seconds": 0})["slept"] == 0


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [("/v1/call/nope/echo", 404, "no_such_pool"), ("/v1/call/echo/nope", 404, "no_such_method")],
)
def test_unknown_pools_and_methods_are_404(door: Door, path: str, status: int, kind: str) -> None:
    resp, body = door.post(path, b"null", bearer(FRONTEND))
    assert (resp.status, error_of(body)["kind"]) == (status, kind), body


def test_a_handler_error_is_500_with_the_traceback_only_for_a_principal_allowed_it(door: Door) -> None:
    resp, body = door.post("/v1/call/echo/fail", b'"boom"', bearer(FRONTEND))
    error = error_of(body)
    assert resp.status == 500 and error["kind"] == "handler_error", body
    assert "ValueError" in error["message"] and "boom" in error["message"]
    assert re.fullmatch(r"worker-\d+", error["worker"])
    assert "Traceback" in error["traceback"]
    resp, body = door.post("/v1/call/echo/fail", b'"boom"', bearer(ECHO_ONLY))
    assert resp.status == 500 and "traceback" not in error_of(body), body


# --- the Python clients ---------------------------------------------------------------------


def test_the_client_calls_and_streams_over_http(door: Door) -> None:
    with door.client() as c:
        assert c.call("echo", "echo", {"x": [1, 2]}, session="s-1", timeout=5.0) == {"x": [1, 2]}
        tokens = [chunk["token"] for chunk in c.stream("agent", "tokens", STREAM_ARGS, timeout=10.0)]
        assert tokens == ["one", "two", "three", "one", "two"]
        with pytest.raises(pit.CallError) as caught:
            c.call("echo", "fail", "boom")
        assert caught.value.kind == "handler_error" and "Traceback" in (caught.value.traceback or "")
        with pytest.raises(pit.CallError) as caught:
            list(c.stream("agent", "tokens", {"count": -1}))
        assert caught.value.kind == "handler_error"


def test_a_call_past_its_timeout_is_a_timeout(door: Door) -> None:
    with door.client() as c:
        with pytest.raises(pit.CallError) as caught:
            c.call("agent", "ask", {"seconds": 5}, timeout=0.3)
        assert caught.value.kind == "timeout"
        assert c.call("echo", "echo", "after") == "after"


def test_leaving_a_stream_early_cancels_it_in_pitd(door: Door) -> None:
    with door.client() as c:
        got = []
        for chunk in c.stream("agent", "tokens", {"count": 1000, "interval": 0.05}):
            got.append(chunk)
            if len(got) == 2:
                break
        wait_until("the stream closed in pitd", lambda: door.streams_open() == 0, door.status)
        assert len(list(c.stream("agent", "tokens", {"count": 3, "interval": 0}))) == 3


def test_many_threads_call_over_one_client(door: Door) -> None:
    results: dict[tuple[int, int], Any] = {}
    errors: list[BaseException] = []
    with door.client() as c:

        def work(t: int) -> None:
            try:
                for i in range(20):
                    results[(t, i)] = c.call("echo", "echo", [t, i])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
    assert not errors, errors
    assert all(results[(t, i)] == [t, i] for t in range(6) for i in range(20))


def test_the_async_client_calls_streams_and_cancels_over_http(door: Door) -> None:
    async def main() -> tuple[list[Any], list[str], list[str]]:
        async with door.async_client() as c:
            results = await asyncio.gather(*(c.call("agent", "ask", {"seconds": 0.05}) for _ in range(8)))
            whole = [ch["token"] async for ch in c.stream("agent", "tokens", STREAM_ARGS)]
            first = []
            async for ch in c.stream("agent", "tokens", {"count": 1000, "interval": 0.05}):
                first.append(ch["token"])
                break
            return results, whole, first

    results, whole, first = asyncio.run(asyncio.wait_for(main(), DEADLINE))
    assert all(r["slept"] == 0.05 for r in results)
    assert whole == ["one", "two", "three", "one", "two"] and len(first) == 1
    wait_until("the stream closed in pitd", lambda: door.streams_open() == 0, door.status)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_client(door: Door, name: str) -> None:
    done = run_example(name, door.url, FRONTEND)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("chunk:") == 3, done.stdout


# --- TLS ------------------------------------------------------------------------------------


def test_https_calls_and_streams_with_the_ca_file(tls_door: Door) -> None:
    with tls_door.client() as c:
        assert c.call("echo", "echo", "secure") == "secure"
        tokens = [chunk["token"] for chunk in c.stream("agent", "tokens", STREAM_ARGS)]
        assert tokens == ["one", "two", "three", "one", "two"]

    async def main() -> Any:
        async with tls_door.async_client() as c:
            return await c.call("echo", "echo", "async"), [
                x async for x in c.stream("agent", "tokens", STREAM_ARGS)
            ]

    result, chunks = asyncio.run(asyncio.wait_for(main(), DEADLINE))
    assert result == "async" and len(chunks) == 5


def test_https_without_trusting_the_ca_fails_to_connect(tls_door: Door) -> None:
    with pytest.raises(pit.ConnectionLost, match=r"(?i)certificate"):
        pit.Client(tls_door.url, token=FRONTEND)


def test_https_without_a_token_is_still_401(tls_door: Door) -> None:
    with tls_door.client(token=None) as c, pytest.raises(pit.CallError) as caught:
        c.call("echo", "echo", 1)
    assert caught.value.kind == "unauthenticated"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_client_over_https(tls_door: Door, name: str) -> None:
    assert tls_door.cert is not None
    done = run_example(name, tls_door.url, FRONTEND, tls_door.cert.ca)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("chunk:") == 3, done.stdout
