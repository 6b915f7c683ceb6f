"""The example clients of examples/clients (curl, Node, Elixir) against a fake of the demo's
front door: its echo pool's echo and fail, its agent pool's streaming tokens. Each runs
where its program is installed (skipped otherwise); test_http_door.py runs them against
the real pitd."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from http_harness import EXAMPLES, Cert, Exchange, FakeDoor, make_cert, run_example, server_context

TOKEN = "example-token"


def demo(ex: Exchange) -> None:
    """The demo's pools as pitd's front door answers for them, behind a bearer token."""
    request = ex.request
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        ex.error(401, "unauthenticated", "a bearer token is needed")
    elif request.path == "/v1/call/echo/echo":
        ex.reply(200, json.loads(request.body or b"null"), {"Pit-Worker": "worker-1"})
    elif request.path == "/v1/call/echo/fail":
        ex.error(500, "handler_error", f"ValueError: {ex.args}", worker="worker-2")
    elif request.path == "/v1/call/agent/tokens" and request.headers.get("accept") == "text/event-stream":
        args = ex.args
        words = args["prompt"].split()
        ex.start_events()
        for i in range(args["count"]):
            time.sleep(min(args["interval"], 0.05))
            ex.event("chunk", {"token": words[i % len(words)]})
        ex.event("end", None)
        ex.end_events()
    else:
        ex.error(404, "no_such_method", f"nothing at {request.path}")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert | None:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=["http", "https"])
def door(request: pytest.FixtureRequest, cert: Cert | None) -> Iterator[tuple[FakeDoor, Cert | None]]:
    if request.param == "https" and cert is None:
        pytest.skip("no openssl command to make a test certificate")
    d = FakeDoor(demo, server_context(cert) if request.param == "https" and cert else None)
    try:
        yield d, cert if request.param == "https" else None
    finally:
        d.close()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_client_calls_streams_and_says_so(door, name: str):
    d, cert = door
    done = run_example(name, d.url, TOKEN, cert.ca if cert else None)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "call:" in out and '"world"' in out and "worker-1" in out, out
    chunks = [line for line in out.splitlines() if "chunk:" in line]
    assert len(chunks) == 3 and all(w in c for w, c in zip(("one", "two", "three"), chunks)), out
    assert "end after 3 chunks" in out, out


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_client_fails_with_a_wrong_token(door, name: str):
    d, cert = door
    done = run_example(name, d.url, "not-the-token", cert.ca if cert else None)
    assert done.returncode != 0, done.stdout
    assert "unauthenticated" in done.stdout + done.stderr or "401" in done.stdout + done.stderr
