"""pit.AsyncClient against the same fake call socket."""

from __future__ import annotations

import asyncio
import threading

import pytest
from harness import DEADLINE, FakeConnection

import pit


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, DEADLINE))


def test_concurrent_calls_share_one_connection_and_get_out_of_order_replies(call_server):
    calls = 12
    held = []
    lock = threading.Lock()

    def reverse_when_all_arrived(conn: FakeConnection, request: dict) -> None:
        with lock:
            held.append(request)
            batch = list(held) if len(held) == calls else []
        for r in reversed(batch):
            conn.send({"id": r["id"], "ok": True, "result": r["args"] * 2})

    server = call_server(reverse_when_all_arrived)

    async def main():
        async with pit.AsyncClient(server.path) as client:
            return await asyncio.gather(*(client.call("p", "double", i) for i in range(calls)))

    assert run(main()) == [i * 2 for i in range(calls)]
    assert len(server.connections) == 1


def test_error_reply_raises_call_error(call_server):
    def fail(conn: FakeConnection, request: dict) -> None:
        conn.send(
            {
                "id": request["id"],
                "ok": False,
                "error": {"kind": "queue_full", "message": "pool p has 1024 calls waiting"},
            }
        )

    server = call_server(fail)

    async def main():
        async with pit.AsyncClient(server.path) as client:
            await client.call("p", "m", session="s", timeout=1.0)

    with pytest.raises(pit.CallError) as caught:
        run(main())
    assert caught.value.kind == "queue_full"
    assert server.requests[0]["session"] == "s" and server.requests[0]["timeout_ms"] == 1000


def test_dropped_connection_raises_connection_lost_then_reconnects(call_server):
    def drop_first(conn: FakeConnection, request: dict) -> None:
        if request["method"] == "drop":
            conn.close()
        else:
            conn.send({"id": request["id"], "ok": True, "result": "back"})

    server = call_server(drop_first)

    async def main():
        async with pit.AsyncClient(server.path) as client:
            with pytest.raises(pit.ConnectionLost):
                await client.call("p", "drop")
            return await client.call("p", "echo")

    assert run(main()) == "back"
    assert len(server.connections) == 2


def test_missing_socket_and_local_timeout(call_server, tmp_path):
    async def connect_absent():
        await pit.AsyncClient(tmp_path / "absent.sock").connect()

    with pytest.raises(pit.ConnectionLost, match=r"absent\.sock"):
        run(connect_absent())

    server = call_server(lambda conn, request: None)

    async def never_answered():
        async with pit.AsyncClient(server.path) as client:
            await client.call("p", "m", timeout=0.05)

    with pytest.raises(pit.CallError) as caught:
        run(never_answered())
    assert caught.value.kind == "timeout"
