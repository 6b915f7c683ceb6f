"""pit.AsyncClient against the same fake call socket."""

from __future__ import annotations

import asyncio
import threading

import pytest
from harness import DEADLINE, FakeConnection, stream_request

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


def cancels(server) -> list[int]:
    return [r["cancel"] for r in server.requests if "cancel" in r]


async def until(what: str, predicate) -> None:
    """Awaits until ``predicate()`` holds, polling; ``run`` bounds the whole test."""
    while not predicate():
        await asyncio.sleep(0.01)


def test_stream_yields_the_chunks_and_raises_call_error_after_them(call_server):
    server = call_server(stream_request)

    async def main():
        async with pit.AsyncClient(server.path) as client:
            got = [chunk async for chunk in client.stream("p", "count", 3, session="s", timeout=2.0)]
            failed = []
            with pytest.raises(pit.CallError) as caught:
                async for chunk in client.stream("p", "fail"):
                    failed.append(chunk)
            return got, failed, caught.value

    got, failed, error = run(main())
    assert got == [{"i": 0}, {"i": 1}, {"i": 2}] and failed == [0, 1]
    assert (error.kind, error.worker) == ("handler_error", "worker-2")
    first = server.requests[0]
    assert (first["stream"], first["session"], first["timeout_ms"]) == (True, "s", 2000)
    assert cancels(server) == []


def test_break_aclose_and_a_cancelled_consumer_cancel_the_stream(call_server):
    server = call_server(stream_request)

    async def main():
        async with pit.AsyncClient(server.path) as client:
            async for _chunk in client.stream("p", "hold", 3):
                break
            await until("the cancel after break", lambda: len(cancels(server)) == 1)

            chunks = client.stream("p", "hold", 1)
            assert await chunks.__anext__() == {"i": 0}
            await chunks.aclose()
            await until("the cancel after aclose", lambda: len(cancels(server)) == 2)

            started = asyncio.Event()

            async def consume():
                async for _chunk in client.stream("p", "hold", 1):
                    started.set()

            task = asyncio.ensure_future(consume())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until("the cancel of the cancelled consumer", lambda: len(cancels(server)) == 3)
            # The final replies of the cancelled streams go nowhere; the connection serves on.
            return await client.call("p", "echo", "after")

    assert run(main()) == "after"
    held = [r["id"] for r in server.requests if r.get("method") == "hold"]
    assert cancels(server) == held
    assert len(server.connections) == 1


def test_a_connection_lost_mid_stream_and_a_local_timeout(call_server):
    server = call_server(stream_request)

    async def main():
        async with pit.AsyncClient(server.path) as client:
            got = []
            with pytest.raises(pit.ConnectionLost):
                async for chunk in client.stream("p", "drop"):
                    got.append(chunk)
            with pytest.raises(pit.CallError) as caught:
                async for _chunk in client.stream("p", "silent", timeout=0.05):
                    pass
            await until("the cancel of the timed-out stream", lambda: len(cancels(server)) == 1)
            return got, caught.value.kind

    assert run(main()) == (["last words"], "timeout")
