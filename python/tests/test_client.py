"""pit.Client against a fake call socket: requests, replies, pipelining and failures."""

from __future__ import annotations

import pickle
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import DEADLINE, FakeConnection, stream_request, wait_until

import pit


def test_error_kinds_are_the_sixteen_of_the_interface_in_order():
    assert pit.ERROR_KINDS == (
        "bad_request",
        "no_such_pool",
        "no_such_method",
        "handler_error",
        "timeout",
        "worker_crashed",
        "queue_full",
        "queue_timeout",
        "pool_drained",
        "pool_failing",
        "too_large",
        "shutting_down",
        "cancelled",
        "unauthenticated",
        "forbidden",
        "quota",
    )
    assert "connection_lost" not in pit.ERROR_KINDS


def test_call_returns_the_result_and_sends_only_given_fields(call_server):
    server = call_server()
    with pit.Client(server.path) as client:
        assert client.call("echo", "echo", {"text": "hi"}) == {"text": "hi"}
        assert client.call("echo", "echo") is None
        assert client.call("echo", "echo", [1], session="u-1", timeout=2.5, idempotent=True) == [1]
    first, second, third = server.requests
    assert first == {"id": first["id"], "pool": "echo", "method": "echo", "args": {"text": "hi"}}
    assert second["args"] is None and set(second) == {"id", "pool", "method", "args"}
    assert (third["session"], third["timeout_ms"], third["idempotent"]) == ("u-1", 2500, True)
    assert len({first["id"], second["id"], third["id"]}) == 3


def test_error_reply_raises_call_error_with_kind_message_traceback_and_worker(call_server):
    def fail(conn: FakeConnection, request: dict) -> None:
        conn.send(
            {
                "id": request["id"],
                "ok": False,
                "worker": "worker-3",
                "error": {
                    "kind": "handler_error",
                    "message": "ValueError: boom",
                    "traceback": "Traceback (most recent call last):\n  ...\nValueError: boom\n",
                },
            }
        )

    server = call_server(fail)
    with pit.Client(server.path) as client, pytest.raises(pit.CallError) as caught:
        client.call("echo", "fail", "boom")
    err = caught.value
    assert (err.kind, err.message, err.worker) == ("handler_error", "ValueError: boom", "worker-3")
    assert err.traceback.startswith("Traceback")
    text = str(err)
    assert text.startswith("handler_error from worker-3: ValueError: boom")
    assert "Remote traceback:" in text


def test_error_without_traceback_reads_as_one_line(call_server):
    def no_pool(conn: FakeConnection, request: dict) -> None:
        conn.send(
            {"id": request["id"], "ok": False, "error": {"kind": "no_such_pool", "message": "no pool 'x'"}}
        )

    server = call_server(no_pool)
    with pit.Client(server.path) as client, pytest.raises(pit.CallError) as caught:
        client.call("x", "m")
    assert str(caught.value) == "no_such_pool: no pool 'x'"
    assert caught.value.traceback is None


def test_many_threads_pipeline_over_one_connection_and_get_their_own_out_of_order_replies(call_server):
    calls = 16
    held = []
    lock = threading.Lock()

    def answer_when_all_arrived_in_reverse(conn: FakeConnection, request: dict) -> None:
        # Replies only once every call is in flight at once: a client that waited for each
        # reply before sending the next call would never get one.
        with lock:
            held.append(request)
            batch = list(held) if len(held) == calls else []
        for r in reversed(batch):
            conn.send({"id": r["id"], "ok": True, "result": r["args"], "worker": "worker-1"})

    server = call_server(answer_when_all_arrived_in_reverse)
    with pit.Client(server.path) as client, ThreadPoolExecutor(calls) as pool:
        futures = [pool.submit(client.call, "echo", "echo", i, timeout=DEADLINE) for i in range(calls)]
        assert [f.result(timeout=DEADLINE + 5) for f in futures] == list(range(calls))
    assert len(server.connections) == 1


def test_concurrent_callers_each_get_the_reply_to_their_own_call(call_server):
    server = call_server()
    with pit.Client(server.path) as client, ThreadPoolExecutor(8) as pool:

        def run(thread: int) -> list:
            return [client.call("echo", "echo", [thread, i]) for i in range(200)]

        results = [f.result(timeout=DEADLINE) for f in [pool.submit(run, t) for t in range(8)]]
    assert results == [[[t, i] for i in range(200)] for t in range(8)]
    assert len(server.connections) == 1


def test_connection_dropped_mid_call_fails_every_call_in_flight_then_reconnects(call_server):
    def hold_then_drop(conn: FakeConnection, request: dict) -> None:
        if request["method"] == "drop":
            conn.close()
        elif request["method"] == "echo":
            conn.send({"id": request["id"], "ok": True, "result": request["args"]})
        # "hold": never answered

    server = call_server(hold_then_drop)
    with pit.Client(server.path) as client, ThreadPoolExecutor(3) as pool:
        held = [pool.submit(client.call, "p", "hold", i) for i in range(3)]
        wait_until("3 held calls at the server", lambda: len(server.requests) == 3, lambda: server.requests)
        with pytest.raises(pit.ConnectionLost) as caught:
            client.call("p", "drop")
        for future in held:
            with pytest.raises(pit.ConnectionLost):
                future.result(timeout=DEADLINE)
        err = caught.value
        assert isinstance(err, pit.CallError) and err.kind == "connection_lost"
        assert server.path in err.message and "may or may not have run" in err.message
        assert client.call("p", "echo", "again") == "again"
    assert len(server.connections) == 2


def test_missing_socket_raises_connection_lost_naming_the_path(tmp_path):
    path = tmp_path / "absent.sock"
    with pytest.raises(pit.ConnectionLost) as caught:
        pit.Client(path)
    assert str(path) in caught.value.message
    assert caught.value.kind == "connection_lost" and caught.value.path == str(path)


def test_socket_without_a_listener_raises_connection_lost(tmp_path):
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with pytest.raises(pit.ConnectionLost, match="refused"):
        pit.Client(path)


def test_no_reply_within_the_timeout_gives_up_locally_and_ignores_the_late_reply(call_server):
    late = []

    def slow(conn: FakeConnection, request: dict) -> None:
        if request["method"] == "slow":
            late.append((conn, request))
        else:
            conn.send({"id": request["id"], "ok": True, "result": request["args"]})

    server = call_server(slow)
    with pit.Client(server.path) as client:
        started = time.monotonic()
        with pytest.raises(pit.CallError) as caught:
            client.call("p", "slow", timeout=0.1)
        assert caught.value.kind == "timeout"
        assert 0.1 <= time.monotonic() - started < DEADLINE
        assert server.requests[0]["timeout_ms"] == 100
        conn, request = late[0]
        conn.send({"id": request["id"], "ok": True, "result": "too late"})
        assert client.call("p", "echo", "next") == "next"


def test_calls_after_close_raise_connection_lost(call_server):
    server = call_server()
    client = pit.Client(server.path)
    client.close()
    with pytest.raises(pit.ConnectionLost, match="closed"):
        client.call("p", "echo")


def test_invalid_timeouts_and_unserialisable_args_fail_before_sending(call_server):
    server = call_server()
    with pit.Client(server.path) as client:
        with pytest.raises(ValueError):
            client.call("p", "echo", timeout=0)
        with pytest.raises(TypeError):
            client.call("p", "echo", {1, 2})
        assert client.call("p", "echo", 1) == 1
    assert len(server.requests) == 1


def test_default_socket_path_follows_env_then_uid(monkeypatch):
    monkeypatch.setenv("PITD_CALL_SOCKET", "/somewhere/call.sock")
    assert pit.default_call_socket() == "/somewhere/call.sock"
    monkeypatch.delenv("PITD_CALL_SOCKET")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert pit.default_call_socket() == "/run/pitd/call.sock"
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("os.getuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert pit.default_call_socket() == "/run/user/1000/pitd/call.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert pit.default_call_socket() == "/tmp/pitd-1000/call.sock"


def test_call_errors_survive_pickling():
    for err in (pit.CallError("timeout", "slow", None, "worker-2"), pit.ConnectionLost("gone", "/x.sock")):
        copy = pickle.loads(pickle.dumps(err))
        assert (type(copy), str(copy), copy.kind) == (type(err), str(err), err.kind)


def cancels(server) -> list[int]:
    return [r["cancel"] for r in server.requests if "cancel" in r]


def test_stream_yields_the_chunks_in_order_and_asks_for_a_stream(call_server):
    server = call_server(stream_request)
    with pit.Client(server.path) as client:
        stream = client.stream("p", "count", 4, session="u-1", timeout=2.0)
        assert isinstance(stream, pit.Stream)
        assert list(stream) == [{"i": i} for i in range(4)]
        assert list(stream) == [], "an ended stream stays ended"
        stream.close()
    (request,) = server.requests
    assert request == {
        "id": request["id"],
        "pool": "p",
        "method": "count",
        "args": 4,
        "session": "u-1",
        "timeout_ms": 2000,
        "stream": True,
    }
    assert cancels(server) == [], "a stream that ended is not cancelled"


def test_a_failed_stream_raises_call_error_after_its_chunks(call_server):
    server = call_server(stream_request)
    got = []
    with pit.Client(server.path) as client, pytest.raises(pit.CallError) as caught:
        for chunk in client.stream("p", "fail"):
            got.append(chunk)
    assert got == [0, 1]
    assert (caught.value.kind, caught.value.message, caught.value.worker) == (
        "handler_error",
        "ValueError: broke",
        "worker-2",
    )


def test_leaving_the_loop_early_cancels_the_call_and_its_final_reply_is_dropped(call_server):
    server = call_server(stream_request)
    with pit.Client(server.path) as client:
        for chunk in client.stream("p", "hold", 3):
            assert chunk == {"i": 0}
            break
        held = server.requests[0]["id"]
        wait_until(
            "the cancel of the stream left early", lambda: cancels(server) == [held], server.requests.copy
        )
        # The final reply pitd sends for it (cancelled) goes nowhere; the connection serves on.
        assert client.call("p", "echo", "after") == "after"
        with client.stream("p", "hold", 1) as stream:
            assert next(stream) == {"i": 0}
        stream.close()  # closed already: nothing more is sent
        second = [r["id"] for r in server.requests if r.get("method") == "hold"][1]
        wait_until("the cancel of the closed stream", lambda: cancels(server) == [held, second])
    assert len(server.connections) == 1


def test_a_stream_dropped_unread_is_cancelled_when_collected(call_server):
    server = call_server(stream_request)
    with pit.Client(server.path) as client:
        client.stream("p", "hold", 2)  # never read, never kept
        wait_until(
            "the cancel of the dropped stream", lambda: len(cancels(server)) == 1, server.requests.copy
        )
        assert cancels(server) == [server.requests[0]["id"]]


def test_streams_and_calls_share_the_connection_from_many_threads(call_server):
    server = call_server(stream_request)
    with pit.Client(server.path) as client, ThreadPoolExecutor(6) as pool:

        def streams(n: int) -> list:
            return [list(client.stream("p", "count", n)) for _ in range(20)]

        def calls(n: int) -> list:
            return [client.call("p", "echo", [n, i]) for i in range(50)]

        futures = [pool.submit(streams, n) for n in (1, 5, 30)] + [pool.submit(calls, n) for n in range(3)]
        results = [f.result(timeout=DEADLINE) for f in futures]
    assert results[:3] == [[[{"i": i} for i in range(n)]] * 20 for n in (1, 5, 30)]
    assert results[3:] == [[[n, i] for i in range(50)] for n in range(3)]
    assert len(server.connections) == 1


def test_a_connection_lost_mid_stream_raises_connection_lost_after_the_chunks(call_server):
    server = call_server(stream_request)
    got = []
    with pit.Client(server.path) as client:
        with pytest.raises(pit.ConnectionLost):
            for chunk in client.stream("p", "drop"):
                got.append(chunk)
        assert got == ["last words"]
        assert list(client.stream("p", "count", 1)) == [{"i": 0}], "the next stream reconnects"


def test_a_stream_past_its_timeout_gives_up_locally_and_cancels(call_server):
    server = call_server(stream_request)
    with pit.Client(server.path) as client:
        started = time.monotonic()
        stream = client.stream("p", "silent", timeout=0.05)
        with pytest.raises(pit.CallError) as caught:
            next(stream)
        assert caught.value.kind == "timeout" and time.monotonic() - started < DEADLINE
        assert server.requests[0]["timeout_ms"] == 50
        wait_until("the cancel of the timed-out stream", lambda: len(cancels(server)) == 1)
        with pytest.raises(StopIteration):
            next(stream)
