"""The worker runtime end to end: a real `python -m pit serve` process, the test plays pitd."""

from __future__ import annotations

import json
import os
import signal
import struct
import time

import pytest
from harness import wait_until

from pit import _worker_protocol


def test_ready_lists_every_handler_with_ping_and_the_pid(spawn_worker):
    worker = spawn_worker()
    ready = worker.ready()
    assert ready["protocol"] == 1
    assert ready["pid"] == worker.proc.pid
    assert ready["handlers"] == sorted(
        [
            "add",
            "renamed",
            "context",
            "boom",
            "chatty",
            "double_later",
            "loop_id",
            "async_boom",
            "a_set",
            "not_a_number",
            "unprintable",
            "big",
            "huge_error",
            "no_args",
            "ping",
        ]
    )


def test_call_returns_the_handler_result(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    reply = worker.call("add", {"a": 2, "b": 40})
    assert reply.ok and reply.value == 42
    assert worker.call("no_args").value == "nothing needed"


def test_renamed_handler_is_served_under_its_new_name_only(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    assert worker.call("renamed").value == "served under another name"
    assert worker.call("original_name").value["kind"] == "no_such_method"


def test_context_carries_session_ids_and_deadline(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    reply = worker.call("context", session="u-1", timeout_ms=5000)
    assert reply.ok
    ctx = reply.value
    assert ctx["session"] == "u-1"
    assert ctx["worker_id"] == "worker-7"
    assert ctx["pool"] == "tests"
    assert ctx["request_id"] == reply.req_id
    assert 0 < ctx["time_left"] <= 5.0
    plain = worker.call("context").value
    assert plain["session"] is None and plain["time_left"] is None


def test_raising_handler_gives_handler_error_with_traceback_and_worker_keeps_serving(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    reply = worker.call("boom", "not a number")
    assert not reply.ok
    err = reply.value
    assert err["kind"] == "handler_error"
    assert err["type"] == "ValueError"
    assert err["message"] == "ValueError: invalid literal for int() with base 10: 'not a number'"
    tb = err["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "in boom" in tb and "in _parse" in tb
    assert "_dispatch.py" not in tb, "the runtime's own frames are noise in a user traceback"
    assert worker.call("add", {"a": 1, "b": 1}).value == 2
    odd = worker.call("unprintable").value
    assert (odd["kind"], odd["type"]) == ("handler_error", "_Unprintable")
    assert worker.call("add", {"a": 2, "b": 2}).value == 4


def test_unknown_method_lists_available_handlers(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    err = worker.call("nope").value
    assert err["kind"] == "no_such_method"
    assert "'nope'" in err["message"]
    assert "available: a_set, add, async_boom, big, boom" in err["message"] and "ping" in err["message"]
    assert err["type"] is None and err["traceback"] is None


def test_printing_handler_does_not_disturb_the_protocol_and_output_is_captured(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    assert worker.call("chatty").value == "done"
    # Line-buffered: the line arrives while the worker is still running.
    worker.wait_for_output("stdout", "hello from the handler\n")
    worker.wait_for_output("stderr", "and a warning\n")
    assert worker.call("add", {"a": 1, "b": 2}).value == 3


def test_ping_frame_gets_pong_and_ping_method_returns_pong(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    worker.send(_worker_protocol.encode_ping(77))
    ftype, body = worker.recv()
    assert (ftype, _worker_protocol.decode_id(body)) == (_worker_protocol.PONG, 77)
    assert worker.call("ping").value == "pong"


def test_async_handlers_run_on_one_loop_kept_for_the_worker_life(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    assert worker.call("double_later", 21).value == 42
    first = worker.call("loop_id").value
    assert worker.call("loop_id").value == first
    err = worker.call("async_boom").value
    assert (err["kind"], err["message"]) == ("handler_error", "LookupError: nothing here")
    first_frame = err["traceback"].splitlines()[1]
    assert "sample_app.py" in first_frame and "in async_boom" in first_frame, err["traceback"]


def test_non_serialisable_result_is_a_handler_error(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    err = worker.call("a_set").value
    assert err["kind"] == "handler_error"
    assert "not JSON-serialisable" in err["message"] and "set" in err["message"]
    assert worker.call("not_a_number").value["kind"] == "handler_error"


def test_result_over_the_frame_limit_is_too_large(spawn_worker):
    worker = spawn_worker(env={"PIT_MAX_FRAME": "4096"})
    worker.ready()
    assert worker.call("big", 4000).value == "x" * 4000
    err = worker.call("big", 5000).value
    assert err["kind"] == "too_large"
    assert "4096" in err["message"]


def test_error_reply_is_cut_to_fit_the_frame_limit(spawn_worker):
    worker = spawn_worker(env={"PIT_MAX_FRAME": "4096"})
    worker.ready()
    err = worker.call("huge_error", 100_000).value
    assert err["kind"] == "handler_error"
    assert err["message"].startswith("RuntimeError: yyy") and "cut to fit" in err["message"]
    assert worker.call("add", {"a": 1, "b": 1}).value == 2


def test_empty_args_are_null_and_invalid_json_args_are_a_bad_request(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    assert worker.call("renamed", raw_args=b"").value == "served under another name"
    err = worker.call("add", raw_args=b"{not json").value
    assert err["kind"] == "bad_request"
    assert worker.call("add", raw_args=b'{"a":1,"b":2}').value == 3


def test_end_of_input_exits_zero(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    worker.close_input()
    assert worker.wait_exit() == 0


def test_call_by_runs_before_its_start_by_and_is_answered_queue_timeout_after_it(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    call = _worker_protocol.encode_call(7, "add", b'{"a": 1, "b": 2}')
    worker.send(_worker_protocol.encode_call_by(call, time.monotonic_ns() + 60 * 10**9))
    ftype, body = worker.recv()
    assert ftype == _worker_protocol.OK and _worker_protocol.split_reply(body) == (7, b"3")

    # Past its start_by, pitd has taken it back: the handler must not run.
    chatty = _worker_protocol.encode_call(8, "chatty", b'"must not be printed"')
    worker.send(_worker_protocol.encode_call_by(chatty, time.monotonic_ns() - 1))
    ftype, body = worker.recv()
    req_id, payload = _worker_protocol.split_reply(body)
    assert ftype == _worker_protocol.ERR and req_id == 8
    assert json.loads(payload)["kind"] == "queue_timeout"
    assert worker.call("add", {"a": 2, "b": 2}).value == 4, "the worker keeps serving"
    worker.close_input()
    assert worker.wait_exit() == 0
    assert "hello from the handler" not in worker.output("stdout")


def test_unknown_frame_type_exits_three_with_a_message(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    worker.send(struct.pack(">IB", 3, 0x7F) + b"xy")
    assert worker.wait_exit() == 3
    assert "unknown frame type 0x7f" in worker.output("stderr")


def test_truncated_call_body_exits_three(spawn_worker):
    worker = spawn_worker()
    worker.ready()
    worker.send(struct.pack(">IB", 5, _worker_protocol.CALL) + b"\0\0\0\0")
    assert worker.wait_exit() == 3
    assert "protocol error" in worker.output("stderr")


def test_oversized_frame_length_exits_three(spawn_worker):
    worker = spawn_worker(env={"PIT_MAX_FRAME": "1024"})
    worker.ready()
    worker.send(struct.pack(">IB", 1_000_000, _worker_protocol.CALL))
    assert worker.wait_exit() == 3


def test_handler_claiming_ping_is_refused_at_import(spawn_worker):
    worker = spawn_worker("ping_override_app")
    assert worker.wait_exit() == 1
    stderr = worker.output("stderr")
    assert "would override the built-in 'ping'" in stderr


def test_two_handlers_with_one_name_are_refused(spawn_worker):
    worker = spawn_worker("duplicate_app")
    assert worker.wait_exit() == 1
    assert "'same' is claimed by both duplicate_app.first and duplicate_app.second" in worker.output("stderr")


def test_module_failing_to_import_exits_one_with_its_traceback(spawn_worker):
    worker = spawn_worker("broken_app")
    assert worker.wait_exit() == 1
    stderr = worker.output("stderr")
    assert "cannot serve broken_app" in stderr and "this module cannot be imported" in stderr


def test_without_fds_3_and_4_exits_two_saying_pitd_must_run_it(spawn_worker):
    worker = spawn_worker(fds=False)
    assert worker.wait_exit() == 2
    stderr = worker.output("stderr")
    assert "fd 3 is not open" in stderr and "must be run by pitd" in stderr


@pytest.mark.parametrize("how", ["sigterm", "end of input"])
def test_a_worker_told_to_stop_runs_atexit_and_skips_the_interpreter_teardown(spawn_worker, how):
    worker = spawn_worker("signals_app")
    worker.ready()
    assert worker.call("hello").value == "hi"
    if how == "sigterm":
        worker.proc.send_signal(signal.SIGTERM)
    else:
        worker.close_input()
    assert worker.wait_exit() == 0
    out = worker.wait_for_output("stdout", "atexit ran")
    assert "teardown ran" not in out, out


def test_protocol_fds_are_close_on_exec_so_user_subprocesses_do_not_hold_them(spawn_worker):
    worker = spawn_worker("pit.examples.echo")
    ready = worker.ready()
    fd_dir = f"/proc/{ready['pid']}/fd"
    wait_until("fds 3 and 4 open in the worker", lambda: {"3", "4"} <= set(os.listdir(fd_dir)))
    with open(f"/proc/{ready['pid']}/fdinfo/4") as info:
        flags = int(next(line for line in info if line.startswith("flags:")).split()[1], 8)
    assert flags & os.O_CLOEXEC
