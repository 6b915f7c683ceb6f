"""Streaming handlers end to end: a real `python -m pit serve`, the test plays pitd (CALL
with STREAM and a window, CREDIT, CANCEL), one call at a time and several at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from harness import Chunk, Reply, WorkerProcess, nothing_within

from pit import _worker_protocol

#: Bound for "promptly" on a loaded 2-core machine; the measured figure is printed.
CANCEL_DEADLINE = 2.0

ONE_AND_FOUR = pytest.mark.parametrize("concurrency", ["1", "4"])


def stream_worker(spawn_worker, concurrency: str = "1", **env: str) -> WorkerProcess:
    worker: WorkerProcess = spawn_worker("stream_app", env={"PIT_CONCURRENCY": concurrency, **env})
    worker.ready()
    return worker


def produced(worker: WorkerProcess) -> list[int]:
    """The chunk numbers the worker's generators have produced so far (its stdout)."""
    lines = worker.output("stdout").splitlines()
    return [int(line.split()[1]) for line in lines if line.startswith("produced ")]


@ONE_AND_FOUR
@pytest.mark.parametrize("method", ["count", "acount", "wrapped", "awrapped"])
def test_chunks_come_in_order_then_ok_null(spawn_worker, concurrency, method):
    worker = stream_worker(spawn_worker, concurrency)
    args = {"n": 5} if "count" in method else 5
    req_id = worker.start_stream(method, args)
    values, reply = worker.stream(req_id)
    assert values == ([{"i": i} for i in range(5)] if "count" in method else list(range(5)))
    assert reply == Reply(True, req_id, None)


@ONE_AND_FOUR
@pytest.mark.parametrize("method", ["count", "acount"])
def test_credit_stalls_the_generator_at_its_window_and_credit_resumes_it(spawn_worker, concurrency, method):
    worker = stream_worker(spawn_worker, concurrency)
    req_id = worker.start_stream(method, {"n": 8}, window=3)
    assert worker.chunks(req_id, 3) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert nothing_within(worker, 0.3), "a chunk past the window"
    assert produced(worker) == [0, 1, 2], "the generator was advanced past its window"
    worker.credit(req_id, 2)
    assert worker.chunks(req_id, 2) == [{"i": 3}, {"i": 4}]
    assert nothing_within(worker, 0.2)
    worker.credit(req_id, 100)
    values, reply = worker.stream(req_id)
    assert values == [{"i": 5}, {"i": 6}, {"i": 7}] and reply.ok


@ONE_AND_FOUR
def test_a_window_of_zero_waits_for_credit_before_the_first_chunk(spawn_worker, concurrency):
    worker = stream_worker(spawn_worker, concurrency)
    req_id = worker.start_stream("count", {"n": 2}, window=0)
    assert nothing_within(worker, 0.2) and produced(worker) == []
    worker.credit(req_id, 1)
    assert worker.chunks(req_id, 1) == [{"i": 0}]
    worker.credit(req_id, 1)
    assert worker.chunks(req_id, 1) == [{"i": 1}]
    # Finding that the generator has ended means advancing it: that takes credit too.
    assert nothing_within(worker, 0.2)
    worker.credit(req_id, 1)
    assert worker.stream(req_id) == ([], Reply(True, req_id, None))


@ONE_AND_FOUR
def test_cancel_closes_an_async_generator_blocked_in_a_long_await(spawn_worker, tmp_path: Path, concurrency):
    worker = stream_worker(spawn_worker, concurrency)
    marker = tmp_path / f"closed-{concurrency}"
    req_id = worker.start_stream("await_long", {"seconds": 60, "marker": str(marker)})
    assert worker.event() == Chunk(req_id, "started")
    worker.send(_worker_protocol.encode_ping(5))  # answered while the generator awaits
    assert worker.recv() == (_worker_protocol.PONG, (5).to_bytes(8, "big"))
    sent = time.monotonic()
    worker.cancel(req_id)
    reply = worker.event()
    answered = time.monotonic() - sent
    assert reply.req_id == req_id and not reply.ok, reply
    assert (reply.value["kind"], reply.value["message"]) == ("cancelled", "cancelled by pitd")
    closed = float(marker.read_text()) - sent  # time.monotonic() is one clock for every process
    print(f"\ncancel latency (concurrency {concurrency}): finally ran after {closed * 1000:.1f} ms")
    assert closed < CANCEL_DEADLINE and answered < CANCEL_DEADLINE
    worker.wait_for_output("stdout", f"closed {req_id}\n")
    assert worker.call("plain", 1).value == {"plain": 1}, "the worker serves on"


@ONE_AND_FOUR
def test_cancel_closes_a_sync_generator_at_its_next_yield(spawn_worker, tmp_path: Path, concurrency):
    worker = stream_worker(spawn_worker, concurrency)
    marker = tmp_path / "closed"
    req_id = worker.start_stream("sleep_between", {"seconds": 0.3, "marker": str(marker)})
    assert worker.event() == Chunk(req_id, 0)
    worker.cancel(req_id)  # the generator sleeps in time.sleep: closed once that step yields
    values, reply = worker.stream(req_id)
    assert values == list(range(1, len(values) + 1)), "chunks in order, then the answer"
    assert (reply.ok, reply.value["kind"]) == (False, "cancelled")
    assert marker.exists(), "its finally ran before the answer"
    seen = produced(worker)
    assert len(seen) <= len(values) + 2, f"more than the step in progress ran: {seen}"
    assert nothing_within(worker, 0.7) and produced(worker) == seen, "a step after the answer"


@ONE_AND_FOUR
def test_cancel_of_a_stream_waiting_for_credit_closes_it_at_once(spawn_worker, concurrency):
    worker = stream_worker(spawn_worker, concurrency)
    for method in ("count", "acount"):
        req_id = worker.start_stream(method, {"n": 5}, window=1)
        assert worker.chunks(req_id, 1) == [{"i": 0}]
        worker.cancel(req_id)
        reply = worker.event()
        assert (reply.req_id, reply.value["kind"]) == (req_id, "cancelled")
        worker.wait_for_output("stdout", f"closed {req_id}\n")
    assert produced(worker) == [0, 0], "neither generator was advanced again"


@ONE_AND_FOUR
def test_a_streaming_handler_called_without_stream_is_a_bad_request_and_does_not_run(
    spawn_worker, concurrency
):
    worker = stream_worker(spawn_worker, concurrency)
    for method, args in (("count", {"n": 3}), ("acount", {"n": 3}), ("wrapped", 3), ("awrapped", 3)):
        err = worker.call(method, args).value
        assert err["kind"] == "bad_request"
        assert f"{method!r} streams its reply" in err["message"] and "--stream" in err["message"]
    assert produced(worker) == []
    assert "closed" not in worker.output("stdout"), "a generator that never started has nothing to close"


@ONE_AND_FOUR
def test_a_plain_handler_called_with_stream_answers_with_its_reply_and_no_chunks(spawn_worker, concurrency):
    worker = stream_worker(spawn_worker, concurrency)
    req_id = worker.start_stream("plain", [1, 2])
    assert worker.stream(req_id) == ([], Reply(True, req_id, {"plain": [1, 2]}))
    req_id = worker.start_stream("nope")
    assert worker.event().value["kind"] == "no_such_method"


@ONE_AND_FOUR
def test_a_chunk_over_the_frame_limit_is_too_large_and_the_worker_serves_on(spawn_worker, concurrency):
    worker = stream_worker(spawn_worker, concurrency, PIT_MAX_FRAME="4096")
    req_id = worker.start_stream("sized", {"sizes": [10, 5000, 10]})
    values, reply = worker.stream(req_id)
    assert values == ["x" * 10]
    assert (reply.ok, reply.value["kind"]) == (False, "too_large")
    assert "4096" in reply.value["message"] and "'sized'" in reply.value["message"]
    worker.wait_for_output("stdout", f"closed {req_id}\n")
    assert worker.call("plain", 2).value == {"plain": 2}
    req_id = worker.start_stream("sized", {"sizes": [4000]})
    assert worker.stream(req_id) == (["x" * 4000], Reply(True, req_id, None)), "a chunk that fits"


@ONE_AND_FOUR
@pytest.mark.parametrize("method", ["boom_after", "aboom_after"])
def test_an_exception_mid_stream_comes_after_its_chunks_as_a_handler_error(spawn_worker, concurrency, method):
    worker = stream_worker(spawn_worker, concurrency)
    req_id = worker.start_stream(method, 2)
    values, reply = worker.stream(req_id)
    assert values == [0, 1]
    err = reply.value
    assert (err["kind"], err["type"], err["message"]) == (
        "handler_error",
        "ValueError",
        "ValueError: broke after 2",
    )
    first_frame = err["traceback"].splitlines()[1]
    assert "stream_app.py" in first_frame and f"in {method}" in first_frame, err["traceback"]


@ONE_AND_FOUR
def test_a_chunk_json_cannot_carry_is_a_handler_error(spawn_worker, concurrency):
    worker = stream_worker(spawn_worker, concurrency)
    req_id = worker.start_stream("unsendable")
    values, reply = worker.stream(req_id)
    assert values == [1]
    assert reply.value["kind"] == "handler_error" and "not JSON-serialisable" in reply.value["message"]


@pytest.mark.parametrize("method", ["count", "acount"])
def test_frames_during_a_stream_wait_for_its_end_in_order_and_a_ping_is_answered_at_once(
    spawn_worker, method
):
    worker = stream_worker(spawn_worker)
    req_id = worker.start_stream(method, {"n": 4}, window=2)
    assert worker.chunks(req_id, 2) == [{"i": 0}, {"i": 1}]
    plain_id, plain = worker.call_frame("plain", "later")
    queued = _worker_protocol.encode_call_by(plain, time.monotonic_ns() + 60 * 10**9)
    worker.send(
        queued
        + _worker_protocol.encode_cancel(999)  # some other call: not this stream's
        + _worker_protocol.encode_credit(998, 5)  # no such stream
        + _worker_protocol.encode_ping(7)
    )
    assert worker.recv() == (_worker_protocol.PONG, (7).to_bytes(8, "big"))
    assert nothing_within(worker, 0.2), "the CALL_BY ran, or the other frames moved the stream"
    worker.credit(req_id, 10)
    assert worker.stream(req_id) == ([{"i": 2}, {"i": 3}], Reply(True, req_id, None))
    assert worker.reply() == Reply(True, plain_id, {"plain": "later"})
    worker.send(_worker_protocol.encode_credit(req_id, 1) + _worker_protocol.encode_ping(8))
    assert worker.recv() == (_worker_protocol.PONG, (8).to_bytes(8, "big")), "a late CREDIT is ignored"


def test_a_call_by_set_aside_past_its_start_by_is_taken_back(spawn_worker):
    worker = stream_worker(spawn_worker)
    req_id = worker.start_stream("count", {"n": 1}, window=0)
    plain_id, plain = worker.call_frame("plain", "late")
    worker.send(_worker_protocol.encode_call_by(plain, time.monotonic_ns() + 200_000_000))
    assert nothing_within(worker, 0.4)
    worker.credit(req_id, 2)
    assert worker.stream(req_id) == ([{"i": 0}], Reply(True, req_id, None))
    reply = worker.reply()
    assert (reply.req_id, reply.value["kind"]) == (plain_id, "queue_timeout")


def test_a_stalled_stream_does_not_hold_up_other_calls_when_concurrent(spawn_worker):
    worker = stream_worker(spawn_worker, "4")
    stalled = worker.start_stream("count", {"n": 3}, window=1)
    stalled_async = worker.start_stream("acount", {"n": 3}, window=1)
    firsts = sorted((worker.event() for _ in range(2)), key=lambda event: event.req_id)
    assert firsts == [Chunk(stalled, {"i": 0}), Chunk(stalled_async, {"i": 0})]
    assert worker.call("plain", 3).value == {"plain": 3}
    flowing = worker.start_stream("count", {"n": 3})
    assert worker.stream(flowing) == ([{"i": i} for i in range(3)], Reply(True, flowing, None))
    for req_id in (stalled, stalled_async):
        worker.credit(req_id, 5)
        assert worker.stream(req_id) == ([{"i": 1}, {"i": 2}], Reply(True, req_id, None))


def test_sync_generators_step_on_the_handler_threads_when_concurrent(spawn_worker):
    worker = stream_worker(spawn_worker, "4")
    req_id = worker.start_stream("thread_name", 3)
    values, reply = worker.stream(req_id)
    assert reply.ok and all(name.startswith("pit-handler") for name in values), values


def test_a_stream_cancelled_before_its_first_step_is_answered_once(spawn_worker):
    worker = stream_worker(spawn_worker, "4")
    for method in ("count", "acount"):
        req_id, frame = worker.call_frame(method, {"n": 3}, stream=True, window=8)
        worker.send(frame + _worker_protocol.encode_cancel(req_id) + _worker_protocol.encode_ping(6))
        got = [worker.recv(), worker.recv()]
        types = sorted(ftype for ftype, _ in got)
        assert _worker_protocol.PONG in types and _worker_protocol.ERR in types, got
        err = next(body for ftype, body in got if ftype == _worker_protocol.ERR)
        assert _worker_protocol.split_reply(err)[0] == req_id
    assert worker.call("plain", 4).value == {"plain": 4}
    assert nothing_within(worker, 0.1), "a stream answered twice"


def test_told_to_stop_a_concurrent_worker_still_takes_credit_for_its_open_streams(spawn_worker):
    worker = stream_worker(spawn_worker, "4")
    req_id = worker.start_stream("count", {"n": 2}, window=1)
    assert worker.chunks(req_id, 1) == [{"i": 0}]
    worker.proc.send_signal(signal.SIGTERM)
    assert nothing_within(worker, 0.3) and worker.proc.poll() is None
    worker.credit(req_id, 2)
    assert worker.stream(req_id) == ([{"i": 1}], Reply(True, req_id, None))
    assert worker.wait_exit() == 0


@ONE_AND_FOUR
def test_the_end_of_input_cancels_a_stalled_stream_and_the_worker_exits(spawn_worker, concurrency):
    worker = stream_worker(spawn_worker, concurrency)
    req_id = worker.start_stream("acount", {"n": 5}, window=1)
    assert worker.chunks(req_id, 1) == [{"i": 0}]
    worker.close_input()
    reply = worker.event()
    assert (reply.req_id, reply.value["kind"]) == (req_id, "cancelled")
    assert worker.wait_exit() == 0
    worker.wait_for_output("stdout", f"closed {req_id}\n")
