"""A worker with ``PIT_CONCURRENCY`` above 1, end to end: a real `python -m pit serve`, the
test plays pitd (several calls in flight, CANCEL, PING while busy, stopping)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from harness import Reply, WorkerProcess, nothing_within

from pit import _worker_protocol

FOUR = {"PIT_CONCURRENCY": "4"}


def concurrent_worker(spawn_worker, env: dict[str, str] = FOUR) -> WorkerProcess:
    worker: WorkerProcess = spawn_worker("concurrent_app", env=env)
    ready = worker.ready()
    assert ready["concurrency"] == int(env["PIT_CONCURRENCY"])
    return worker


def replies(worker: WorkerProcess, n: int) -> dict[int, Reply]:
    """The next ``n`` replies, by req_id (they may come in any order)."""
    got: dict[int, Reply] = {}
    for _ in range(n):
        reply = worker.reply()
        assert reply.req_id not in got, f"req {reply.req_id} answered twice"
        got[reply.req_id] = reply
    return got


def send_together(worker: WorkerProcess, calls: list[tuple]) -> list[int]:
    """Sends the CALL frames in one write, so the worker sees them at once."""
    framed = [worker.call_frame(method, args) for method, args in calls]
    worker.send(b"".join(frame for _, frame in framed))
    return [req_id for req_id, _ in framed]


def expected_gil() -> object:
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else probe()


def test_ready_carries_concurrency_and_gil_enabled(spawn_worker):
    worker = concurrent_worker(spawn_worker)
    one = spawn_worker("concurrent_app").ready()
    assert one["concurrency"] == 1
    worker.close_input()
    assert worker.wait_exit() == 0
    ready_again = spawn_worker("concurrent_app", env={"PIT_CONCURRENCY": "2"}).ready()
    assert ready_again["gil_enabled"] == one["gil_enabled"] == expected_gil()


@pytest.mark.parametrize("value", ["0", "many", "65536"])
def test_an_invalid_concurrency_exits_two(spawn_worker, value):
    worker = spawn_worker("concurrent_app", env={"PIT_CONCURRENCY": value})
    assert worker.wait_exit() == 2
    assert f"PIT_CONCURRENCY={value!r}" in worker.output("stderr")


@pytest.mark.parametrize("method", ["nap", "doze"])
def test_four_calls_run_at_once_and_all_start_before_any_finishes(spawn_worker, method):
    worker = concurrent_worker(spawn_worker)
    ids = send_together(worker, [(method, 0.3)] * 4)
    got = replies(worker, 4)
    assert sorted(got) == sorted(ids)
    for reply in got.values():
        assert reply.ok, reply
        assert reply.value["finished_before_start"] == 0, got
        assert reply.value["started_before_end"] == 4, got
    if method == "doze":
        assert len({r.value["thread"] for r in got.values()}) == 4, "one thread per sync call"


def test_cancel_of_an_async_call_cancels_its_task_and_the_others_complete(spawn_worker, tmp_path: Path):
    worker = concurrent_worker(spawn_worker)
    gate = tmp_path / "go"
    victim = worker.start_call("wait_forever")
    others = [worker.start_call("hold", str(gate)) for _ in range(2)]
    for req_id in [victim, *others]:
        worker.wait_for_output("stdout", f"started {req_id}\n")
    worker.send(_worker_protocol.encode_cancel(victim))
    cancelled = worker.reply()
    assert cancelled.req_id == victim and not cancelled.ok
    assert cancelled.value["kind"] == "cancelled"
    assert cancelled.value["message"] == "cancelled by pitd"
    gate.touch()
    got = replies(worker, 2)
    assert {r.req_id: (r.ok, r.value) for r in got.values()} == dict.fromkeys(others, (True, "released"))
    assert worker.call("seen_cancelled").value == [victim], "the handler saw CancelledError"
    # A CANCEL for a call already answered is ignored: the next frame is the PONG.
    worker.send(_worker_protocol.encode_cancel(victim) + _worker_protocol.encode_ping(5))
    assert worker.recv() == (_worker_protocol.PONG, (5).to_bytes(8, "big"))


def test_a_call_cancelled_before_its_task_started_is_answered_once(spawn_worker):
    worker = concurrent_worker(spawn_worker)
    req_id, frame = worker.call_frame("wait_forever")
    worker.send(frame + _worker_protocol.encode_cancel(req_id) + _worker_protocol.encode_ping(6))
    frames = [worker.recv(), worker.recv()]
    kinds = sorted(ftype for ftype, _ in frames)
    assert kinds == [_worker_protocol.ERR, _worker_protocol.PONG], frames
    err = next(body for ftype, body in frames if ftype == _worker_protocol.ERR)
    got_id, payload = _worker_protocol.split_reply(err)
    assert got_id == req_id and json.loads(payload)["kind"] == "cancelled"
    assert worker.call("cancelled_flag").value is False, "the worker keeps serving"


def test_cancel_of_a_sync_call_flips_ctx_cancelled_and_its_result_is_answered(spawn_worker):
    worker = concurrent_worker(spawn_worker)
    req_id = worker.start_call("spin")
    worker.wait_for_output("stdout", f"started {req_id}\n")
    worker.send(_worker_protocol.encode_cancel(req_id))
    reply = worker.reply()
    assert reply.req_id == req_id and reply.ok
    assert reply.value["cancelled"] is True and reply.value["loops"] > 0
    assert worker.call("cancelled_flag").value is False, "a new call starts uncancelled"


def test_a_ping_is_answered_while_every_slot_awaits(spawn_worker, tmp_path: Path):
    worker = concurrent_worker(spawn_worker)
    gate = tmp_path / "go"
    ids = [worker.start_call("hold", str(gate)) for _ in range(4)]
    for req_id in ids:
        worker.wait_for_output("stdout", f"started {req_id}\n")
    worker.send(_worker_protocol.encode_ping(77))
    assert worker.recv() == (_worker_protocol.PONG, (77).to_bytes(8, "big"))
    gate.touch()
    assert sorted(replies(worker, 4)) == sorted(ids)


def test_a_ping_is_answered_while_every_slot_runs_a_sync_handler(spawn_worker, tmp_path: Path):
    worker = concurrent_worker(spawn_worker)
    gate = tmp_path / "go"
    ids = [worker.start_call("spin_until", str(gate)) for _ in range(4)]
    for req_id in ids:
        worker.wait_for_output("stdout", f"started {req_id}\n")
    worker.send(_worker_protocol.encode_ping(79))
    assert worker.recv() == (_worker_protocol.PONG, (79).to_bytes(8, "big"))
    gate.touch()
    assert sorted(replies(worker, 4)) == sorted(ids)


def test_a_ping_is_not_answered_while_a_handler_blocks_the_loop(spawn_worker, tmp_path: Path):
    worker = concurrent_worker(spawn_worker)
    gate = tmp_path / "go"
    blocker = worker.start_call("block_loop", str(gate))
    worker.wait_for_output("stdout", f"started {blocker}\n")
    worker.send(_worker_protocol.encode_ping(78))
    assert nothing_within(worker, 1.0), "a PONG came from a blocked loop"
    gate.touch()
    first = worker.reply()
    assert (first.req_id, first.value) == (blocker, "unblocked")
    assert worker.recv() == (_worker_protocol.PONG, (78).to_bytes(8, "big"))


def test_errors_are_answered_with_the_handlers_own_traceback(spawn_worker):
    worker = concurrent_worker(spawn_worker)
    err = worker.call("sync_boom", "k").value
    assert (err["kind"], err["type"], err["message"]) == ("handler_error", "KeyError", "KeyError: 'k'")
    first_frame = err["traceback"].splitlines()[1]
    assert "concurrent_app.py" in first_frame and "in sync_boom" in first_frame, err["traceback"]
    assert worker.call("nope").value["kind"] == "no_such_method"
    assert worker.call("ping").value == "pong"
    assert worker.call("nap", raw_args=b"{bad").value["kind"] == "bad_request"


def test_call_by_runs_before_its_start_by_and_is_taken_back_after_it(spawn_worker):
    worker = concurrent_worker(spawn_worker)
    _, late = worker.call_frame("cancelled_flag")
    worker.send(_worker_protocol.encode_call_by(late, time.monotonic_ns() - 1))
    assert worker.reply().value["kind"] == "queue_timeout"
    req_id, early = worker.call_frame("cancelled_flag")
    worker.send(_worker_protocol.encode_call_by(early, time.monotonic_ns() + 60 * 10**9))
    assert worker.reply() == Reply(True, req_id, False)


def test_an_unknown_frame_exits_three(spawn_worker):
    worker = concurrent_worker(spawn_worker)
    worker.send(b"\0\0\0\x01\x7f")
    assert worker.wait_exit() == 3
    assert "unknown frame type 0x7f" in worker.output("stderr")


@pytest.mark.parametrize("how", ["sigterm", "end of input"])
def test_told_to_stop_with_calls_in_flight_it_lets_them_finish(spawn_worker, tmp_path: Path, how):
    worker = concurrent_worker(spawn_worker)
    gate = tmp_path / "go"
    ids = [worker.start_call("hold", str(gate)), worker.start_call("spin_until", str(gate))]
    for req_id in ids:
        worker.wait_for_output("stdout", f"started {req_id}\n")
    if how == "sigterm":
        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.send_signal(signal.SIGTERM)  # a second one changes nothing
    else:
        worker.close_input()
    assert nothing_within(worker, 0.5) and worker.proc.poll() is None, "it stopped with calls in flight"
    gate.touch()
    got = replies(worker, 2)
    assert [got[i].value for i in ids] == ["released", "released"]
    assert worker.wait_exit() == 0
    assert "atexit ran" in worker.wait_for_output("stdout", "atexit ran")


@pytest.mark.parametrize("method", ["escape", "sync_escape"])
@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_a_handler_raising_what_is_not_an_exception_ends_the_worker(spawn_worker, method, concurrency):
    # Neither answered nor left running: the worker exits as the one-call loop does, and
    # pitd answers the call worker_crashed.
    worker = spawn_worker("concurrent_app", env={"PIT_CONCURRENCY": concurrency})
    worker.ready()
    worker.start_call(method, "out")
    assert worker.wait_exit() == 1
    assert "concurrent_app.Escape: out" in worker.output("stderr")


def test_the_one_call_loop_ignores_a_cancel_for_an_answered_call(spawn_worker):
    worker = spawn_worker("concurrent_app")
    worker.ready()
    req_id = worker.start_call("cancelled_flag")
    assert worker.reply() == Reply(True, req_id, False)
    worker.send(_worker_protocol.encode_cancel(req_id) + _worker_protocol.encode_ping(9))
    assert worker.recv() == (_worker_protocol.PONG, (9).to_bytes(8, "big"))


def _raises() -> bool:
    raise RuntimeError("cannot tell")


@pytest.mark.parametrize(
    "probe, expected", [(None, True), (lambda: False, False), (lambda: 1, True), (_raises, None)]
)
def test_gil_enabled_asks_the_interpreter_when_it_can(monkeypatch: pytest.MonkeyPatch, probe, expected):
    from pit.worker import gil_enabled

    if probe is None:
        monkeypatch.delattr(sys, "_is_gil_enabled", raising=False)
    else:
        monkeypatch.setattr(sys, "_is_gil_enabled", probe, raising=False)
    assert gil_enabled() is expected
