"""pit.Client and pit.AsyncClient given a URL: the HTTP front door's wire (INTERFACE section
10) against a fake door in the test (http_harness.FakeDoor), plain and over TLS."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from harness import DEADLINE, wait_until
from http_harness import Cert, Exchange, FakeDoor, OnPost, make_cert, server_context

import pit
from pit import _http_wire

TOKEN = "s3cret-token"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, DEADLINE))


@pytest.fixture
def door() -> Iterator[Callable[..., FakeDoor]]:
    """``door(on_post, context=None)``: a fake front door, closed after the test."""
    doors: list[FakeDoor] = []

    def start(on_post: OnPost, context: ssl.SSLContext | None = None) -> FakeDoor:
        d = FakeDoor(on_post, context)
        doors.append(d)
        return d

    yield start
    for d in doors:
        d.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    made = make_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("no openssl command to make a test certificate")
    return made


def echo(ex: Exchange) -> None:
    """Answers as pitd does for a handler returning its args, from worker-3."""
    ex.reply(200, ex.args, {"Pit-Worker": "worker-3"})


def tokens(count: int, then: str = "end") -> OnPost:
    """A stream of ``count`` chunks ``{"i": n}``, then ``then`` (end or error)."""

    def answer(ex: Exchange) -> None:
        ex.start_events()
        for i in range(count):
            ex.event("chunk", {"i": i})
        if then == "end":
            ex.event("end", None)
        else:
            ex.event("error", {"kind": "handler_error", "message": "ValueError: boom", "worker": "worker-2"})
        ex.end_events()

    return answer


def route(stream: OnPost) -> OnPost:
    """Answers method ``tokens`` with ``stream`` and any other with :func:`echo`."""
    return lambda ex: stream(ex) if ex.request.path.endswith("/tokens") else echo(ex)


# --- calls ----------------------------------------------------------------------------------


def test_a_call_posts_its_args_with_the_headers_and_returns_the_result(door):
    d = door(echo)
    with pit.Client(d.url, token=TOKEN) as c:
        assert isinstance(c, pit.Client)
        args = {"text": "héllo", "n": [1, 2.5, None]}
        assert c.call("echo", "echo", args, session="u-1", timeout=1.5, idempotent=True) == args
        assert c.call("echo", "echo") is None
    first, second = d.requests
    assert first.method == "POST" and first.path == "/v1/call/echo/echo"
    assert json.loads(first.body) == args
    h = first.headers
    assert h["authorization"] == f"Bearer {TOKEN}"
    assert h["content-type"] == "application/json"
    assert (h["pit-session"], h["pit-timeout"], h["pit-idempotent"]) == ("u-1", "1500ms", "true")
    assert second.body == b"null"
    assert not {"pit-session", "pit-timeout", "pit-idempotent"} & set(second.headers)


def test_calls_one_after_another_keep_one_connection_alive(door):
    d = door(echo)
    with pit.Client(d.url) as c:
        assert [c.call("p", "m", i) for i in range(5)] == list(range(5))
    assert d.connections == 1
    assert "authorization" not in d.requests[0].headers


def test_a_prefix_in_the_url_goes_before_v1_and_names_are_quoted(door):
    d = door(echo)
    with pit.Client(d.url + "/pit/") as c:
        c.call("my pool", "a/b", 1)
    assert d.requests[0].path == "/pit/v1/call/my%20pool/a%2Fb"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "bad_request"),
        (401, "unauthenticated"),
        (403, "forbidden"),
        (404, "no_such_method"),
        (413, "too_large"),
        (429, "quota"),
        (500, "handler_error"),
        (502, "worker_crashed"),
        (503, "pool_drained"),
        (504, "queue_timeout"),
    ],
)
def test_an_error_answer_raises_call_error_with_its_kind(door, status: int, kind: str):
    def fail(ex: Exchange) -> None:
        more = {"traceback": "Traceback ...\nValueError: x\n"} if kind == "handler_error" else {}
        ex.reply(
            status,
            {"error": {"kind": kind, "message": f"it is {kind}", "worker": "worker-9", **more}},
            {"Retry-After": "1"} if status in (429, 503) else {},
        )

    d = door(fail)
    with pit.Client(d.url, token=TOKEN) as c:
        with pytest.raises(pit.CallError) as caught:
            c.call("p", "m")
        # The connection stays usable after an error answer.
        with pytest.raises(pit.CallError):
            c.call("p", "m")
    e = caught.value
    assert type(e) is pit.CallError
    assert (e.kind, e.message, e.worker) == (kind, f"it is {kind}", "worker-9")
    assert e.traceback == ("Traceback ...\nValueError: x\n" if kind == "handler_error" else None)
    assert d.connections == 1


def test_an_error_without_a_worker_in_its_body_takes_the_pit_worker_header(door):
    error = {"error": {"kind": "handler_error", "message": "m"}}
    d = door(lambda ex: ex.reply(500, error, {"Pit-Worker": "worker-4"}))
    with pit.Client(d.url) as c, pytest.raises(pit.CallError) as caught:
        c.call("p", "m")
    assert caught.value.worker == "worker-4"


def test_an_answer_that_is_no_pit_error_is_connection_lost(door):
    d = door(lambda ex: ex.reply(502, b"<html>Bad Gateway</html>"))
    with pit.Client(d.url) as c, pytest.raises(pit.ConnectionLost) as caught:
        c.call("p", "m")
    assert "HTTP 502" in caught.value.message and "Bad Gateway" in caught.value.message
    assert caught.value.path == d.url


def test_a_malformed_result_is_connection_lost(door):
    d = door(lambda ex: ex.reply(200, b"{not json"))
    with pit.Client(d.url) as c, pytest.raises(pit.ConnectionLost, match="malformed"):
        c.call("p", "m")


@pytest.mark.parametrize("seen", [True, False], ids=["seen-closed", "found-closed-on-use"])
def test_a_connection_the_door_closed_while_idle_is_replaced(door, monkeypatch, seen: bool):
    def echo_then_hang_up(ex: Exchange) -> None:
        echo(ex)
        ex.hang_up_after()  # keep-alive said, then the connection closed (an idle timeout)

    if not seen:
        # The close goes unnoticed until the request is sent: the call is sent again on a
        # new connection, once.
        from pit import _http

        monkeypatch.setattr(_http._Conn, "stale", lambda self: False)
    d = door(echo_then_hang_up)
    with pit.Client(d.url) as c:
        for i in range(3):
            assert c.call("p", "m", i) == i
            wait_until("the door to hang up", lambda n=i + 1: d.finished == n, lambda: d.finished)
    assert d.connections == 3
    assert len(d.requests) == 3


def test_a_call_past_its_timeout_gives_up_on_the_client_side_and_hangs_up(door):
    hung_up = threading.Event()

    def never(ex: Exchange) -> None:
        if ex.wait_for_hang_up():
            hung_up.set()

    d = door(never)
    with pit.Client(d.url) as c:
        started = time.monotonic()
        with pytest.raises(pit.CallError) as caught:
            c.call("p", "m", timeout=0.1)
        assert caught.value.kind == "timeout" and "client side" in caught.value.message
        assert time.monotonic() - started < 0.6 + 1.0
        assert hung_up.wait(DEADLINE), "the door never saw the client hang up"
        d_requests = d.requests
        assert d_requests[0].headers["pit-timeout"] == "100ms"


def test_connecting_to_nothing_fails_at_once_with_connection_lost():
    with pytest.raises(pit.ConnectionLost, match=r"cannot connect to pitd at http://127\.0\.0\.1:1"):
        pit.Client("http://127.0.0.1:1")


def test_many_threads_call_at_once_each_on_a_connection_of_its_own(door):
    inside = 0
    most = 0
    lock = threading.Lock()

    def slow_echo(ex: Exchange) -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.002)
        with lock:
            inside -= 1
        echo(ex)

    d = door(slow_echo)
    results: dict[int, list[Any]] = {}
    errors: list[BaseException] = []
    with pit.Client(d.url) as c:

        def caller(n: int) -> None:
            try:
                results[n] = [c.call("p", "m", [n, i]) for i in range(20)]
            except BaseException as e:  # noqa: BLE001 - reported by the test below
                errors.append(e)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
    assert not errors
    assert results == {n: [[n, i] for i in range(20)] for n in range(12)}
    assert most > 1, "the calls did not overlap"
    assert d.connections <= 12


def test_close_fails_a_call_in_flight_with_connection_lost(door):
    release = threading.Event()

    def hold(ex: Exchange) -> None:
        release.wait(DEADLINE)

    d = door(hold)
    c = pit.Client(d.url)
    failure: list[BaseException] = []

    def caller() -> None:
        try:
            c.call("p", "m")
        except BaseException as e:  # noqa: BLE001 - looked at below
            failure.append(e)

    t = threading.Thread(target=caller)
    t.start()
    wait_until("the call to reach the door", lambda: d.requests)
    c.close()
    t.join(DEADLINE)
    release.set()
    assert len(failure) == 1 and isinstance(failure[0], pit.ConnectionLost), failure
    with pytest.raises(pit.ConnectionLost, match="closed"):
        c.call("p", "m")


def test_what_a_url_client_refuses():
    with pytest.raises(ValueError, match="http:// or https://"):
        pit.Client("ftp://127.0.0.1:1")
    with pytest.raises(ValueError, match="https"):
        pit.Client("http://127.0.0.1:1", cafile="ca.pem")
    with pytest.raises(ValueError, match="token"):
        pit.Client("http://127.0.0.1:1", token="two\r\nlines")
    with pytest.raises(ValueError, match="for a URL"):
        pit.Client("/run/pitd/call.sock", token="t")
    with pytest.raises(ValueError, match="for a URL"):
        pit.AsyncClient("/run/pitd/call.sock", cafile="ca.pem")


def test_a_session_http_cannot_carry_is_refused_before_sending(door):
    d = door(echo)
    with pit.Client(d.url) as c:
        with pytest.raises(ValueError, match="session"):
            c.call("p", "m", session="naïve")
        assert c.call("p", "m", 1, session="user 1") == 1
    assert d.requests[0].headers["pit-session"] == "user 1"


# --- streams --------------------------------------------------------------------------------


def test_a_stream_yields_its_chunks_then_ends_and_its_connection_serves_on(door):
    d = door(route(tokens(3)))
    with pit.Client(d.url, token=TOKEN) as c:
        assert list(c.stream("agent", "tokens", {"count": 3}, session="s", timeout=5)) == [
            {"i": 0},
            {"i": 1},
            {"i": 2},
        ]
        assert c.call("echo", "echo", 7) == 7
    h = d.requests[0].headers
    assert h["accept"] == "text/event-stream" and h["pit-timeout"] == "5000ms" and h["pit-session"] == "s"
    assert d.connections == 1


def test_chunks_come_as_they_are_sent_not_at_the_end(door):
    go_on = threading.Event()

    def two_parts(ex: Exchange) -> None:
        ex.start_events()
        ex.event("chunk", "first")
        go_on.wait(DEADLINE)
        ex.event("chunk", "second")
        ex.event("end", None)
        ex.end_events()

    d = door(two_parts)
    with pit.Client(d.url) as c:
        stream = c.stream("p", "m")
        assert next(stream) == "first"  # while the door waits for this very chunk to arrive
        go_on.set()
        assert list(stream) == ["second"]


#: One stream's events, with the CRLF and CR line ends, a comment, an unknown event and a
#: chunk whose UTF-8 is split: cut at every offset, they must read the same.
EVENT_BYTES = (
    b": a comment\r\n"
    b'event: chunk\r\ndata: {"t": "\xc3\xa9t\xc3\xa9"}\r\n\r\n'
    b"event: ping\ndata: {}\n\n"
    b"event: chunk\rdata: [1, 2]\r\r"
    b'event: chunk\ndata: "x"\n\n'
    b"event: end\ndata: null\n\n"
)


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 13, 29])
def test_events_split_across_reads_are_put_back_together(door, cut: int):
    def dribble(ex: Exchange) -> None:
        ex.start_events()
        for at in range(0, len(EVENT_BYTES), cut):
            ex.send(EVENT_BYTES[at : at + cut])
            time.sleep(0.001)
        ex.end_events()

    d = door(dribble)
    with pit.Client(d.url) as c:
        assert list(c.stream("p", "m")) == [{"t": "été"}, [1, 2], "x"]


def test_the_event_parser_reads_the_same_events_however_the_bytes_are_cut():
    whole = _http_wire.EventParser().feed(EVENT_BYTES)
    assert [e for e, _ in whole] == ["chunk", "ping", "chunk", "chunk", "end"]
    for at in range(len(EVENT_BYTES) + 1):
        for second in range(at, len(EVENT_BYTES) + 1, 5):
            parser = _http_wire.EventParser()
            got = []
            for piece in (EVENT_BYTES[:at], EVENT_BYTES[at:second], EVENT_BYTES[second:]):
                got += parser.feed(piece)
            assert got == whole, (at, second)


def test_the_event_parser_joins_data_lines_and_skips_events_without_data():
    parser = _http_wire.EventParser()
    assert parser.feed(b"event: chunk\ndata: [1,\ndata: 2]\n\nevent: lonely\n\ndata: 3\n\n") == [
        ("chunk", "[1,\n2]"),
        ("message", "3"),
    ]


def test_a_stream_error_event_raises_call_error_after_the_chunks(door):
    d = door(tokens(2, then="error"))
    got = []
    with pit.Client(d.url) as c:
        with pytest.raises(pit.CallError) as caught:
            for chunk in c.stream("p", "m"):
                got.append(chunk)
        assert c.call is not None
    assert got == [{"i": 0}, {"i": 1}]
    assert (caught.value.kind, caught.value.message, caught.value.worker) == (
        "handler_error",
        "ValueError: boom",
        "worker-2",
    )


def test_a_stream_that_fails_before_its_first_chunk_is_an_error_status(door):
    d = door(lambda ex: ex.error(400, "bad_request", "agent.ask is not a streaming handler"))
    with pit.Client(d.url) as c:
        stream = c.stream("agent", "ask")
        with pytest.raises(pit.CallError, match="not a streaming handler") as caught:
            next(stream)
        assert caught.value.kind == "bad_request"
        assert list(stream) == []


def test_a_plain_json_answer_to_a_stream_ends_it_without_chunks(door):
    d = door(echo)
    with pit.Client(d.url) as c:
        assert list(c.stream("p", "m", 5)) == []


def test_a_stream_cut_off_before_its_end_event_is_connection_lost(door):
    def cut(ex: Exchange) -> None:
        ex.start_events()
        ex.event("chunk", 1)
        ex.end_events()

    d = door(cut)
    with pit.Client(d.url) as c:
        stream = c.stream("p", "m")
        assert next(stream) == 1
        with pytest.raises(pit.ConnectionLost, match="before its end event"):
            next(stream)


def endless(hung_up: threading.Event) -> OnPost:
    """A stream of chunks, one every 10 ms, until the client hangs up (then ``hung_up``)."""

    def answer(ex: Exchange) -> None:
        ex.start_events()
        for i in range(int(DEADLINE / 0.01)):
            try:
                ex.event("chunk", i)
            except OSError:
                hung_up.set()
                return
            if ex.wait_for_hang_up(0.01):
                hung_up.set()
                return

    return answer


@pytest.mark.parametrize("how", ["break", "close", "with"])
def test_leaving_a_stream_early_closes_its_connection(door, how: str):
    hung_up = threading.Event()
    d = door(route(endless(hung_up)))
    with pit.Client(d.url) as c:
        if how == "break":
            for chunk in c.stream("p", "tokens"):
                if chunk == 2:
                    break
        elif how == "close":
            stream = c.stream("p", "tokens")
            next(stream)
            stream.close()
            stream.close()
            assert list(stream) == []
        else:
            with c.stream("p", "tokens") as stream:
                next(stream)
        assert hung_up.wait(DEADLINE), "the door never saw the stream's connection close"
        assert c.call("p", "m", "after") == "after"


def test_a_stream_past_its_timeout_gives_up_and_hangs_up(door):
    hung_up = threading.Event()

    def stall(ex: Exchange) -> None:
        ex.start_events()
        ex.event("chunk", 0)
        if ex.wait_for_hang_up():
            hung_up.set()

    d = door(stall)
    with pit.Client(d.url) as c:
        stream = c.stream("p", "m", timeout=0.1)
        assert next(stream) == 0
        with pytest.raises(pit.CallError) as caught:
            next(stream)
        assert caught.value.kind == "timeout"
        assert hung_up.wait(DEADLINE)


def test_many_threads_stream_at_once(door):
    d = door(tokens(5))
    results: dict[int, list[Any]] = {}
    with pit.Client(d.url) as c:

        def reader(n: int) -> None:
            results[n] = [list(c.stream("p", "m")) for _ in range(5)]

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
    assert results == {n: [[{"i": i} for i in range(5)]] * 5 for n in range(8)}


# --- TLS ------------------------------------------------------------------------------------


def test_https_with_the_ca_file_of_a_self_signed_door(door, cert: Cert):
    d = door(route(tokens(2)), server_context(cert))
    with pit.Client(d.url, token=TOKEN, cafile=cert.ca) as c:
        assert c.call("p", "m", {"a": 1}) == {"a": 1}
        assert list(c.stream("p", "tokens")) == [{"i": 0}, {"i": 1}]
        assert c.call("p", "m", 2) == 2
    assert d.connections == 1

    async def main() -> list[Any]:
        async with pit.AsyncClient(d.url, cafile=str(cert.ca)) as c:
            return [await c.call("p", "m", 3), [x async for x in c.stream("p", "tokens")]]

    assert run(main()) == [3, [{"i": 0}, {"i": 1}]]


def test_https_refuses_a_door_whose_certificate_it_does_not_trust(door, cert: Cert):
    d = door(echo, server_context(cert))
    with pytest.raises(pit.ConnectionLost, match=r"(?i)certificate"):
        pit.Client(d.url)

    async def main() -> None:
        await pit.AsyncClient(d.url).call("p", "m")

    with pytest.raises(pit.ConnectionLost, match=r"(?i)certificate"):
        run(main())


def test_mtls_with_a_client_certificate_loaded_into_an_ssl_context(door, cert: Cert, tmp_path: Path):
    client = make_cert(tmp_path, "client")  # signed by a CA of its own
    assert client is not None
    d = door(echo, server_context(cert, client_ca=client.ca))
    context = ssl.create_default_context(cafile=str(cert.ca))
    context.load_cert_chain(client.cert, client.key)
    with pit.Client(d.url, ssl_context=context) as c:
        assert c.call("p", "m", "mutual") == "mutual"
    # Without the client certificate the door refuses the handshake.
    with pytest.raises(pit.ConnectionLost):
        with pit.Client(d.url, cafile=cert.ca) as c:
            c.call("p", "m", "anyone")


# --- asyncio --------------------------------------------------------------------------------


def test_async_calls_at_once_and_error_answers(door):
    def route(ex: Exchange) -> None:
        if ex.request.path.endswith("/fail"):
            ex.error(503, "pool_failing", "pool p is failing", worker="worker-5")
        else:
            time.sleep(0.01)
            echo(ex)

    d = door(route)

    async def main() -> Any:
        async with pit.AsyncClient(d.url, token=TOKEN) as c:
            assert isinstance(c, pit.AsyncClient)
            results = await asyncio.gather(*(c.call("p", "m", i, session="s", timeout=3) for i in range(10)))
            with pytest.raises(pit.CallError) as caught:
                await c.call("p", "fail")
            assert await c.call("p", "m") is None
            return results, caught.value

    results, error = run(main())
    assert results == list(range(10))
    assert (error.kind, error.message, error.worker) == ("pool_failing", "pool p is failing", "worker-5")
    h = d.requests[0].headers
    assert (h["authorization"], h["pit-session"], h["pit-timeout"]) == (f"Bearer {TOKEN}", "s", "3000ms")
    assert 1 < d.connections <= 10


def test_async_calls_one_after_another_keep_one_connection_alive(door):
    d = door(echo)

    async def main() -> list[Any]:
        async with pit.AsyncClient(d.url) as c:
            return [await c.call("p", "m", i) for i in range(5)]

    assert run(main()) == list(range(5))
    assert d.connections == 1


@pytest.mark.parametrize("cut", [1, 5, 64])
def test_async_stream_puts_split_events_back_together(door, cut: int):
    def dribble(ex: Exchange) -> None:
        ex.start_events()
        for at in range(0, len(EVENT_BYTES), cut):
            ex.send(EVENT_BYTES[at : at + cut])
        ex.end_events()

    d = door(route(dribble))

    async def main() -> Any:
        async with pit.AsyncClient(d.url) as c:
            chunks = [x async for x in c.stream("p", "tokens")]
            return chunks, await c.call("p", "m", "again")

    assert run(main()) == ([{"t": "été"}, [1, 2], "x"], "again")
    assert d.connections == 1


def test_async_stream_delimited_by_the_connection_end(door):
    def until_close(ex: Exchange) -> None:
        ex.start_events(chunked=False)
        ex.event("chunk", "a")
        ex.event("end", None)

    d = door(until_close)

    async def main() -> Any:
        async with pit.AsyncClient(d.url) as c:
            return [x async for x in c.stream("p", "m")], [x async for x in c.stream("p", "m")]

    assert run(main()) == (["a"], ["a"])
    assert d.connections == 2


def test_async_stream_chunks_come_as_they_are_sent(door):
    go_on = threading.Event()

    def two_parts(ex: Exchange) -> None:
        ex.start_events()
        ex.event("chunk", "first")
        go_on.wait(DEADLINE)
        ex.event("chunk", "second")
        ex.event("end", None)
        ex.end_events()

    d = door(two_parts)

    async def main() -> list[Any]:
        got = []
        async with pit.AsyncClient(d.url) as c:
            async for chunk in c.stream("p", "m"):
                got.append(chunk)
                go_on.set()
        return got

    assert run(main()) == ["first", "second"]


def test_async_stream_errors(door):
    def route(ex: Exchange) -> None:
        if ex.request.path.endswith("/early"):
            ex.error(404, "no_such_method", "pool p has no method early")
        else:
            tokens(1, then="error")(ex)

    d = door(route)

    async def main() -> Any:
        got = []
        async with pit.AsyncClient(d.url) as c:
            with pytest.raises(pit.CallError) as early:
                async for _ in c.stream("p", "early"):
                    pass
            with pytest.raises(pit.CallError) as late:
                async for chunk in c.stream("p", "late"):
                    got.append(chunk)
        return early.value, late.value, got

    early, late, got = run(main())
    assert (early.kind, late.kind, late.worker, got) == (
        "no_such_method",
        "handler_error",
        "worker-2",
        [{"i": 0}],
    )


@pytest.mark.parametrize("how", ["break", "aclose", "cancel", "timeout"])
def test_async_leaving_a_stream_early_closes_its_connection(door, how: str):
    hung_up = threading.Event()
    d = door(route(endless(hung_up)))

    async def main() -> Any:
        async with pit.AsyncClient(d.url) as c:
            if how == "break":
                async for chunk in c.stream("p", "tokens"):
                    if chunk == 2:
                        break
            elif how == "aclose":
                chunks = c.stream("p", "tokens")
                await chunks.__anext__()
                await chunks.aclose()
            elif how == "cancel":
                started = asyncio.Event()

                async def consume() -> None:
                    async for _ in c.stream("p", "tokens"):
                        started.set()

                task = asyncio.ensure_future(consume())
                await started.wait()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                with pytest.raises(pit.CallError) as caught:
                    async for _ in c.stream("p", "tokens", timeout=0.2):
                        pass
                assert caught.value.kind == "timeout"
            for _ in range(int(DEADLINE / 0.01)):
                if hung_up.is_set():
                    break
                await asyncio.sleep(0.01)
            return await c.call("p", "m", "after")

    assert run(main()) == "after"
    assert hung_up.is_set(), "the door never saw the stream's connection close"


def test_async_call_past_its_timeout_and_close_with_a_call_in_flight(door):
    hung_up = threading.Event()

    def never(ex: Exchange) -> None:
        if ex.wait_for_hang_up():
            hung_up.set()

    d = door(never)

    async def main() -> Any:
        c = pit.AsyncClient(d.url)
        with pytest.raises(pit.CallError) as timed_out:
            await c.call("p", "m", timeout=0.1)
        pending = asyncio.ensure_future(c.call("p", "m"))
        for _ in range(int(DEADLINE / 0.01)):
            if len(d.requests) == 2:
                break
            await asyncio.sleep(0.01)
        await c.close()
        with pytest.raises(pit.ConnectionLost):
            await pending
        with pytest.raises(pit.ConnectionLost, match="closed"):
            await c.call("p", "m")
        return timed_out.value

    assert run(main()).kind == "timeout"
    assert hung_up.wait(DEADLINE)


@pytest.mark.parametrize("seen", [True, False], ids=["seen-closed", "found-closed-on-use"])
def test_async_a_connection_the_door_closed_while_idle_is_replaced(door, monkeypatch, seen: bool):
    def echo_then_hang_up(ex: Exchange) -> None:
        echo(ex)
        ex.hang_up_after()

    if not seen:
        from pit import _aio_http

        monkeypatch.setattr(_aio_http._Conn, "stale", lambda self: False)
    d = door(echo_then_hang_up)

    async def main() -> list[Any]:
        got = []
        async with pit.AsyncClient(d.url) as c:
            for i in range(3):
                got.append(await c.call("p", "m", i))
                for _ in range(int(DEADLINE / 0.01)):
                    if d.finished == i + 1:
                        break
                    await asyncio.sleep(0.01)
        return got

    assert run(main()) == [0, 1, 2]
    assert d.connections == 3 and len(d.requests) == 3


def test_async_connecting_to_nothing_is_connection_lost():
    async def main() -> None:
        async with pit.AsyncClient("http://127.0.0.1:1"):
            pass

    with pytest.raises(pit.ConnectionLost, match="cannot connect"):
        run(main())
