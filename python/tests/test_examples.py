"""pit.examples.echo served by a real worker: each example does what its docstring says."""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
import time
import urllib.request

import pytest
from harness import DEADLINE

from pit import _worker_protocol
from pit.examples import agent, echo


def test_echo_sleep_fail_and_pid(spawn_worker):
    worker = spawn_worker("pit.examples.echo")
    ready = worker.ready()
    assert ready["handlers"] == ["allocate", "echo", "env", "fail", "pid", "ping", "shout", "sleep"]
    assert worker.call("echo", {"a": [1, "b", None]}).value == {"a": [1, "b", None]}
    assert worker.call("sleep", 0.01).value == 0.01
    assert worker.call("sleep", "soon").value["kind"] == "handler_error"
    err = worker.call("fail", "on purpose").value
    assert (err["kind"], err["type"], err["message"]) == (
        "handler_error",
        "ValueError",
        "ValueError: on purpose",
    )
    assert worker.call("pid").value == worker.proc.pid


def test_shout_prints_to_both_streams_and_returns_upper_case(spawn_worker):
    worker = spawn_worker("pit.examples.echo")
    worker.ready()
    assert worker.call("shout", "hello").value == "HELLO"
    worker.wait_for_output("stdout", "hello\n")
    worker.wait_for_output("stderr", "hello\n")


def test_env_reports_context_and_pit_variables(spawn_worker):
    worker = spawn_worker("pit.examples.echo", env={"PIT_EXTRA": "1"})
    worker.ready()
    reply = worker.call("env", session="s-9", timeout_ms=1000)
    info = reply.value
    assert (info["session"], info["worker_id"], info["pool"]) == ("s-9", "worker-7", "tests")
    assert info["request_id"] == reply.req_id and 0 < info["time_left"] <= 1.0
    assert info["env"]["PIT_EXTRA"] == "1" and info["env"]["PIT_WORKER_ID"] == "worker-7"


def test_allocate_keeps_memory_and_grows_rss(spawn_worker):
    worker = spawn_worker("pit.examples.echo")
    worker.ready()

    def rss_kib() -> int:
        with open(f"/proc/{worker.proc.pid}/status") as status:
            return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])

    before = rss_kib()
    assert worker.call("allocate", 32).value == 32
    assert worker.call("allocate", 16).value == 48
    assert rss_kib() - before >= 40 * 1024
    assert worker.call("allocate", -1).value["kind"] == "handler_error"


def test_handlers_stay_plain_functions():
    assert echo.echo([1]) == [1]
    assert echo.pid(None) == os.getpid()


@pytest.fixture
def http_server():
    """A local HTTP server in a thread: ``GET /big`` returns 100000 bytes."""
    body = b"a" * 100_000

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/big" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=DEADLINE)


@pytest.mark.parametrize("method", ["ask", "ask_blocking"])
def test_agent_gets_urls_concurrently(spawn_worker, http_server, method):
    worker = spawn_worker("pit.examples.agent", env={"PIT_CONCURRENCY": "4"})
    assert worker.ready()["handlers"] == ["ask", "ask_blocking", "ping", "relay", "tokens"]
    ids = [worker.start_call(method, {"url": f"{http_server}/big"}) for _ in range(3)]
    ids.append(worker.start_call(method, {"url": f"{http_server}/missing"}))
    got = {reply.req_id: reply for reply in (worker.reply() for _ in ids)}
    assert sorted(got) == sorted(ids)
    statuses = [(got[i].value["status"], got[i].value["bytes"]) for i in ids]
    assert statuses == [(200, 100_000)] * 3 + [(404, 100_000)]
    assert worker.call(method, {"seconds": 0}).value["slept"] >= 0
    assert worker.call(method, {"url": "ftp://x"}).value["kind"] == "handler_error"
    assert worker.call(method, [1]).value["type"] == "TypeError"


def test_agent_calls_stop_when_pitd_cancels_them(spawn_worker):
    worker = spawn_worker("pit.examples.agent", env={"PIT_CONCURRENCY": "4"})
    worker.ready()
    waiting = worker.start_call("ask", {"seconds": 60})
    blocking = worker.start_call("ask_blocking", {"seconds": 60})
    assert worker.call("ping").value == "pong", "both calls are running"
    worker.send(_worker_protocol.encode_cancel(waiting) + _worker_protocol.encode_cancel(blocking))
    got = {reply.req_id: reply for reply in (worker.reply(), worker.reply())}
    assert got[waiting].value["kind"] == "cancelled"
    assert got[blocking].ok and got[blocking].value["cancelled"] is True


def test_the_model_builds_its_index_at_its_first_call_or_in_its_warm_up(spawn_worker, monkeypatch):
    worker = spawn_worker("pit.examples.model", env={"PIT_EXAMPLE_LOAD_S": "0"})
    worker.ready()
    first = worker.call("predict", "word3 word7").value
    assert first["score"] == 10 and first["like_first"] == ["word3", "word100", "word197"]
    assert first["index_built_by_pid"] == first["worker_pid"] == worker.proc.pid

    # In a preloaded pool the template calls warm_up before forking: the index is built
    # by then, by the process that did the loading.
    monkeypatch.setenv("PIT_EXAMPLE_LOAD_S", "0")
    from pit.examples import model

    model.warm_up()
    assert model._index_built_by == model.LOADED_BY == os.getpid()


@pytest.fixture
def token_server():
    with agent.TokenServer() as server:
        yield server


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_agent_tokens_streams_the_fake_model_at_its_pace(spawn_worker, concurrency):
    worker = spawn_worker("pit.examples.agent", env={"PIT_CONCURRENCY": concurrency})
    worker.ready()
    started = time.monotonic()
    req_id = worker.start_stream("tokens", {"prompt": "a b c", "count": 5, "interval": 0.02})
    values, reply = worker.stream(req_id)
    assert values == [{"token": t} for t in "a b c a b".split()] and reply.ok
    assert time.monotonic() - started >= 5 * 0.02
    assert worker.call("tokens", {}).value["kind"] == "bad_request"
    req_id = worker.start_stream("tokens", {"count": -1})
    assert worker.stream(req_id)[1].value["type"] == "ValueError"


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_agent_relay_passes_on_server_sent_events_as_they_come(spawn_worker, token_server, concurrency):
    worker = spawn_worker("pit.examples.agent", env={"PIT_CONCURRENCY": concurrency})
    worker.ready()
    url = token_server.url_for("hello from the token server", count=7, interval=0)
    req_id = worker.start_stream("relay", {"url": url})
    values, reply = worker.stream(req_id)
    assert [v["token"] for v in values] == list(agent.fake_tokens("hello from the token server", 7))
    assert reply.ok and reply.value is None
    req_id = worker.start_stream("relay", {"url": token_server.url.replace("/tokens", "/nothing")})
    err = worker.stream(req_id)[1].value
    assert (err["kind"], err["type"]) == ("handler_error", "ConnectionError") and "404" in err["message"]


def test_agent_relay_is_cancelled_while_it_waits_for_the_next_event(spawn_worker, token_server):
    worker = spawn_worker("pit.examples.agent")
    worker.ready()
    req_id = worker.start_stream("relay", {"url": token_server.url_for("slow", count=3, interval=30)})
    assert worker.event().value == {"token": "slow"}
    worker.cancel(req_id)
    reply = worker.event()
    assert (reply.req_id, reply.value["kind"]) == (req_id, "cancelled")
    assert worker.call("ping").value == "pong"


def test_the_token_server_sends_chunked_server_sent_events(token_server):
    with urllib.request.urlopen(
        token_server.url_for("x y", count=3, interval=0), timeout=DEADLINE
    ) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.read() == b"data: x\n\ndata: y\n\ndata: x\n\ndata: [DONE]\n\n"


def test_server_sent_events_are_parsed_across_pieces_and_line_endings():
    async def pieces():
        for piece in [
            b"data: one\r\n",
            b"\r\n: a comment\n",
            b"event: x\ndata: two\ndata:",
            b"three\n\nda",
            b"ta: four\n\n",
        ]:
            yield piece

    async def parse():
        return [data async for data in agent._sse_data(pieces())]

    assert asyncio.run(parse()) == ["one", "two\nthree", "four"]
