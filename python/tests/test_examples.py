"""pit.examples.echo served by a real worker: each example does what its docstring says."""

from __future__ import annotations

import os

from pit.examples import echo


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
