"""The decorator, handler discovery and error shaping, in-process."""

from __future__ import annotations

import json
import types

import pytest

import pit
from pit import _worker_protocol
from pit._dispatch import Dispatcher
from pit.handlers import collect


def module_with(**attrs) -> types.ModuleType:
    module = types.ModuleType("fake_app")
    vars(module).update(attrs)
    return module


def reply_to(dispatcher: Dispatcher, method: str, args: bytes = b"") -> tuple:
    frame = dispatcher.reply(_worker_protocol.Call(1, 0, method, None, args))
    chunks = [frame]
    ftype, body = _worker_protocol.FrameReader(lambda n: chunks.pop() if chunks else b"").next_frame()
    _, payload = _worker_protocol.split_reply(body)
    return ftype, json.loads(payload)


def test_decorator_leaves_the_function_callable_as_before():
    @pit.handler
    def plain(args, ctx):
        return args + 1

    assert plain(1, None) == 2


@pytest.mark.parametrize("decorate", [pit.handler, pit.handler("ping"), pit.handler()])
def test_claiming_ping_raises_at_decoration(decorate):
    def ping(args):
        return "mine"

    with pytest.raises(ValueError, match="built-in 'ping'"):
        decorate(ping)


def test_names_must_be_non_empty_strings():
    with pytest.raises(ValueError, match="empty"):
        pit.handler("")(lambda args: None)
    with pytest.raises(TypeError):
        pit.handler(42)


def test_collect_finds_marked_functions_by_exposed_name_and_their_arity():
    def two(args, ctx): ...
    def one(args): ...
    def none(): ...
    def star(*a): ...
    def unmarked(args): ...

    found = collect(
        module_with(
            two=pit.handler(two),
            one=pit.handler("uno")(one),
            none=pit.handler(none),
            star=pit.handler(star),
            unmarked=unmarked,
            again=two,
        )
    )
    assert {name: h.nargs for name, h in found.items()} == {"two": 2, "uno": 1, "none": 0, "star": 2}


def test_collect_refuses_signatures_that_cannot_take_args_and_ctx():
    @pit.handler
    def three(a, b, c): ...

    with pytest.raises(TypeError, match="must take"):
        collect(module_with(three=three))


def test_dispatcher_errors_carry_kind_type_and_traceback():
    @pit.handler
    def oops(args):
        raise KeyError("k")

    dispatcher = Dispatcher("fake_app", collect(module_with(oops=oops)))
    ftype, err = reply_to(dispatcher, "oops")
    assert ftype == _worker_protocol.ERR
    assert (err["kind"], err["type"], err["message"]) == ("handler_error", "KeyError", "KeyError: 'k'")
    assert 'raise KeyError("k")' in err["traceback"]


def test_exception_without_message_is_reported_by_its_type_alone():
    @pit.handler
    def bare(args):
        raise RuntimeError()

    _, err = reply_to(Dispatcher("fake_app", collect(module_with(bare=bare))), "bare")
    assert err["message"] == "RuntimeError"


def test_lone_surrogates_in_results_are_errors_and_in_messages_are_spelled_out():
    @pit.handler
    def bad_text(args):
        return "\udcff"

    @pit.handler
    def bad_error(args):
        raise OSError("no file \udcff")

    dispatcher = Dispatcher("fake_app", collect(module_with(bad_text=bad_text, bad_error=bad_error)))
    assert reply_to(dispatcher, "bad_text")[1]["kind"] == "handler_error"
    assert reply_to(dispatcher, "bad_error")[1]["message"] == "OSError: no file \\udcff"


def test_context_cancelled_is_false_until_marked_and_read_only():
    from pit.handlers import Context, mark_cancelled

    ctx = Context("s", "worker-1", "p", 5, None)
    assert ctx.cancelled is False
    assert "cancelled=False" in repr(ctx)
    with pytest.raises(AttributeError):
        ctx.cancelled = True  # type: ignore[misc]
    mark_cancelled(ctx)
    assert ctx.cancelled is True
