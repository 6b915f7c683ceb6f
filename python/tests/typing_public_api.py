"""The public API's types as a user's type checker sees them: checked by mypy (strict) in
``.ci/run``, never run. An ``assert_type`` that no longer holds, or a ``type: ignore``
that is no longer needed, fails the check. The expected types are runtime expressions,
hence ``Optional`` (``X | None`` does not evaluate on Python 3.9)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Optional

import pit

if TYPE_CHECKING:
    from typing_extensions import assert_type


@pit.handler
def plain(args: Any, ctx: pit.Context) -> dict[str, Any]:
    assert_type(ctx.session, Optional[str])
    assert_type(ctx.worker_id, Optional[str])
    assert_type(ctx.pool, Optional[str])
    assert_type(ctx.request_id, int)
    assert_type(ctx.deadline, Optional[float])
    assert_type(ctx.time_left(), Optional[float])
    return {"args": args}


@pit.handler("renamed")
async def renamed(args: Any) -> int:
    return 1


@pit.handler
def rows(args: Any, ctx: pit.Context) -> Iterator[dict[str, Any]]:
    yield {"row": 1}


@pit.handler("tokens")
async def tokens(args: Any) -> AsyncIterator[str]:
    yield "a"


def decorated_functions_keep_their_types(ctx: pit.Context) -> None:
    assert_type(plain(None, ctx), dict[str, Any])
    assert_type(rows(None, ctx), Iterator[dict[str, Any]])
    assert_type(tokens(None), AsyncIterator[str])


def clients() -> None:
    assert_type(pit.ERROR_KINDS, tuple[str, ...])
    assert_type(pit.default_call_socket(), str)
    with pit.Client("/run/pitd/call.sock", connect_timeout=1.0) as client:
        assert_type(client, pit.Client)
        assert_type(client.call("pool", "method", [1], session="s", timeout=1.5, idempotent=True), Any)
        stream = client.stream("pool", "method", [1], session="s", timeout=1.5)
        assert_type(stream, pit.Stream)
        for chunk in stream:
            assert_type(chunk, Any)
        with client.stream("pool", "method") as chunks:
            assert_type(next(chunks), Any)
        stream.close()
        client.stream("pool", "method", idempotent=True)  # type: ignore[call-arg]  # a stream is never retried
    try:
        pit.Client().call("pool", "method")
    except pit.ConnectionLost as e:
        assert_type(e.path, Optional[str])
    except pit.CallError as e:
        assert_type(e.kind, str)
        assert_type(e.message, str)
        assert_type(e.traceback, Optional[str])
        assert_type(e.worker, Optional[str])
    _ = pit.Clinet  # type: ignore[attr-defined]  # a misspelt name is an error, not Any


def http_clients(context: ssl.SSLContext) -> None:
    with pit.Client("https://pitd.example:8443", token="t", cafile="ca.pem", connect_timeout=2.0) as client:
        assert_type(client, pit.Client)
        assert_type(client.call("pool", "method", {"a": 1}, timeout=1.0), Any)
        assert_type(client.stream("pool", "method"), pit.Stream)
    assert_type(pit.Client("https://pitd.example:8443", ssl_context=context), pit.Client)
    assert_type(pit.AsyncClient("http://127.0.0.1:8080", token="t"), pit.AsyncClient)
    pit.Client("https://pitd.example:8443", token=b"t")  # type: ignore[arg-type]  # a token is text


async def async_client() -> None:
    assert_type(await renamed(None), int)
    async with pit.AsyncClient() as client:
        assert_type(client, pit.AsyncClient)
        assert_type(await client.call("pool", "method", session=None, timeout=None), Any)
        chunks = client.stream("pool", "method", {"prompt": "hi"}, session="s", timeout=5.0)
        async for chunk in chunks:
            assert_type(chunk, Any)
        await chunks.aclose()
