//! Calls through the real call socket to real Python workers: every error kind of
//! INTERFACE section 5 reached for real, affinity, spread, queueing and timeouts.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::harness::{TestDaemon, python, wait_event, wait_until, worker};

/// A pool serving `tests/workers/apps/callapp.py` (plus `extra` keys) and its call socket.
fn app_pool(name: &str, app: &str, size: u32, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.{name}]\napp = \"{app}\"\npython = \"{}\"\nsize = {size}\ncwd = \"{}\"\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\nkill_timeout = \"2s\"\n{extra}\n",
        python(),
        worker("apps")
    )
}

fn start(body: &str) -> (TestDaemon, PathBuf) {
    let d = TestDaemon::configure(body);
    let d = d.launch();
    let call = d.call_socket();
    (d, call)
}

/// A raw pipelining client: send any JSON, read replies in completion order.
struct Conn(UnixStream);

impl Conn {
    fn open(path: &PathBuf) -> Conn {
        Conn(UnixStream::connect(path).expect("connect to the call socket"))
    }

    fn send_raw(&mut self, body: &[u8]) {
        self.0.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        self.0.write_all(body).unwrap();
    }

    fn send(&mut self, req: Value) {
        self.send_raw(&serde_json::to_vec(&req).unwrap());
    }

    fn recv(&mut self) -> Value {
        self.0.set_read_timeout(Some(crate::harness::DEADLINE)).unwrap();
        let mut head = [0u8; 4];
        self.0.read_exact(&mut head).expect("a reply before the deadline");
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        self.0.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn call(&mut self, req: Value) -> Value {
        self.send(req);
        self.recv()
    }
}

fn req(id: u64, pool: &str, method: &str, args: Value) -> Value {
    json!({"id": id, "pool": pool, "method": method, "args": args})
}

fn kind(reply: &Value) -> &str {
    reply["error"]["kind"].as_str().unwrap_or("<ok>")
}

fn ready(d: &TestDaemon, pool: &str, n: usize) {
    d.wait_pool(&format!("{n} idle workers"), pool, |p| {
        p.workers.iter().filter(|w| w.state.as_str() == "idle").count() >= n
    });
}

#[test]
fn echo_round_trips_the_payload_and_counts_in_status() {
    let (d, call) = start(&app_pool("app", "callapp", 2, ""));
    ready(&d, "app", 2);
    let mut c = Conn::open(&call);
    let payload = json!({"text": "héllo", "n": [1, 2.5, null, true], "nested": {"a": "\"quoted\""}});
    let r = c.call(req(1, "app", "echo", payload.clone()));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["id"], 1);
    assert_eq!(r["result"], payload);
    assert!(r["worker"].as_str().unwrap().starts_with("worker-"));
    let r = c.call(json!({"id": "string-id", "pool": "app", "method": "echo"}));
    assert_eq!(r["id"], "string-id");
    assert_eq!(r["result"], Value::Null);
    let pool = d.pool("app");
    assert_eq!(pool.requests, 2);
    assert_eq!(pool.workers.iter().map(|w| w.requests).sum::<u64>(), 2);
}

#[test]
fn handler_error_carries_type_message_and_traceback_and_the_worker_keeps_serving() {
    let (d, call) = start(&app_pool("app", "callapp", 1, ""));
    ready(&d, "app", 1);
    let mut c = Conn::open(&call);
    let r = c.call(req(1, "app", "fail", json!("x")));
    assert_eq!(kind(&r), "handler_error");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ValueError: bad input: x"),
        "{r}"
    );
    assert!(r["error"]["traceback"].as_str().unwrap().contains("Traceback"), "{r}");
    let worker = r["worker"].clone();
    let r = c.call(req(2, "app", "echo", json!(5)));
    assert_eq!(r["result"], 5);
    assert_eq!(r["worker"], worker, "the same worker kept serving");
    let pool = d.pool("app");
    assert_eq!((pool.errors, pool.workers[0].errors), (1, 1));
}

#[test]
fn bad_requests_unknown_pools_and_methods_are_refused_by_kind() {
    let sleeper = format!(
        "[pools.plain]\ncommand = [\"{}\", \"{}\"]\nprotocol = \"none\"\n",
        python(),
        worker("sleeper.py")
    );
    let (d, call) = start(&format!("{}{sleeper}", app_pool("app", "callapp", 1, "")));
    ready(&d, "app", 1);
    let mut c = Conn::open(&call);
    assert_eq!(kind(&c.call(req(1, "nope", "echo", json!(1)))), "no_such_pool");
    let r = c.call(req(2, "app", "nope", json!(1)));
    assert_eq!(kind(&r), "no_such_method");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("echo"),
        "lists the methods: {r}"
    );
    c.send_raw(b"{\"id\": 3, this is not json");
    let r = c.recv();
    assert_eq!((kind(&r), r["id"].clone()), ("bad_request", json!(3)));
    assert_eq!(kind(&c.call(json!({"id": 4, "pool": "app"}))), "bad_request");
    assert_eq!(kind(&c.call(req(5, "plain", "echo", json!(1)))), "bad_request");
    // The connection is still fine.
    assert_eq!(c.call(req(6, "app", "echo", json!("ok")))["result"], "ok");
}

#[test]
fn sessions_stick_to_one_worker_and_other_calls_spread() {
    let (d, call) = start(&app_pool("app", "callapp", 3, ""));
    ready(&d, "app", 3);
    let mut c = Conn::open(&call);
    let mut session_workers = HashSet::new();
    for i in 0..12 {
        let mut r = req(i, "app", "whoami", Value::Null);
        r["session"] = json!("user-1");
        let reply = c.call(r);
        assert_eq!(reply["result"]["session"], "user-1");
        session_workers.insert(reply["worker"].as_str().unwrap().to_string());
    }
    assert_eq!(session_workers.len(), 1, "{session_workers:?}");
    let spread: HashSet<String> = (100..112)
        .map(|i| {
            c.call(req(i, "app", "whoami", Value::Null))["worker"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        spread.len(),
        3,
        "calls without a session use every idle worker: {spread:?}"
    );
}

#[test]
fn a_full_queue_refuses_at_once_and_queue_timeout_expires_waiting_calls() {
    let (d, call) = start(&app_pool(
        "app",
        "callapp",
        1,
        "queue_max = 2\nqueue_timeout = \"700ms\"",
    ));
    ready(&d, "app", 1);
    let mut c = Conn::open(&call);
    c.send(req(1, "app", "sleep", json!(1.5))); // occupies the only worker
    d.wait_pool("the worker to be busy", "app", |p| {
        p.workers.iter().any(|w| w.state.as_str() == "busy")
    });
    c.send(req(2, "app", "echo", json!(2))); // queued
    c.send(req(3, "app", "echo", json!(3))); // queued
    c.send(req(4, "app", "echo", json!(4))); // over queue_max
    let first = c.recv();
    assert_eq!((first["id"].clone(), kind(&first)), (json!(4), "queue_full"), "{first}");
    let mut rest: Vec<(Value, String)> = (0..3)
        .map(|_| c.recv())
        .map(|r| (r["id"].clone(), kind(&r).to_string()))
        .collect();
    rest.sort_by_key(|(id, _)| id.as_u64());
    assert_eq!(
        rest,
        [
            (json!(1), "<ok>".into()),
            (json!(2), "queue_timeout".into()),
            (json!(3), "queue_timeout".into())
        ]
    );
}

#[test]
fn a_call_past_its_timeout_gets_timeout_and_its_worker_is_replaced() {
    let (d, call) = start(&app_pool("app", "callapp", 1, "request_timeout = \"20s\""));
    ready(&d, "app", 1);
    let before = d.pool("app").workers[0].id;
    let mut c = Conn::open(&call);
    let mut r = req(1, "app", "sleep", json!(20));
    r["timeout_ms"] = json!(300);
    let reply = c.call(r);
    assert_eq!(kind(&reply), "timeout", "{reply}");
    assert_eq!(reply["worker"], json!(before.to_string()), "the reply names the worker");
    assert_eq!(
        reply["error"]["message"],
        format!("call to app.sleep timed out after 300ms; {before} killed"),
    );
    wait_event(&d, "the worker's exit with reason timeout", |e| {
        e["event"] == "worker_exited"
            && e["worker"] == json!(before.to_string())
            && e["reason"] == "timeout"
            && e["message"] == "killed by pitd: a call timed out after 300ms"
    });
    let pool = d.wait_pool("a replacement worker", "app", |p| {
        p.workers.len() == 1 && p.workers[0].id != before && p.workers[0].state.as_str() == "idle"
    });
    assert_eq!(pool.recycled, 1);
    assert_eq!(c.call(req(2, "app", "echo", json!(1)))["result"], 1);
}

#[test]
fn pitctl_call_takes_a_bare_number_as_seconds_for_its_timeout() {
    let (d, _call) = start(&app_pool("app", "callapp", 1, "request_timeout = \"20s\""));
    ready(&d, "app", 1);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let out = d.pitctl(&["call", "app", "echo", "7", "--timeout", "0.2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "7");
    let out = d.pitctl(&["call", "app", "sleep", "20", "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("timed out after 200ms"), "{out:?}");
    let out = d.pitctl(&["call", "app", "echo", "--timeout", "-1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("a duration cannot be negative"), "{out:?}");
}

#[test]
fn request_timeout_bounds_calls_without_a_timeout_of_their_own() {
    let (d, call) = start(&app_pool("app", "callapp", 1, "request_timeout = \"300ms\""));
    ready(&d, "app", 1);
    let mut c = Conn::open(&call);
    assert_eq!(kind(&c.call(req(1, "app", "sleep", json!(20)))), "timeout");
}

#[test]
fn a_worker_dying_mid_call_gives_worker_crashed_and_is_replaced() {
    let (d, call) = start(&app_pool(
        "app",
        "callapp",
        1,
        "[pools.app.restart]\ninitial = \"10ms\"",
    ));
    ready(&d, "app", 1);
    let mut c = Conn::open(&call);
    let r = c.call(req(1, "app", "die", json!(7)));
    assert_eq!(kind(&r), "worker_crashed", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("exit code 7"), "{r}");
    ready(&d, "app", 1);
    assert_eq!(c.call(req(2, "app", "echo", json!(1)))["result"], 1);
    assert_eq!(d.pool("app").restarts, 1);
}

#[test]
fn a_reply_written_just_before_the_worker_exits_still_answers_its_call() {
    let (d, call) = start(&app_pool(
        "app",
        "callapp",
        1,
        "[pools.app.restart]\ninitial = \"10ms\"",
    ));
    let mut c = Conn::open(&call);
    for i in 0..5u64 {
        ready(&d, "app", 1);
        let size = 1 << 20;
        let r = c.call(req(i, "app", "answer_then_exit", json!(size)));
        let head: String = r.to_string().chars().take(300).collect();
        assert_eq!(r["ok"], true, "the call was answered before its worker exited: {head}");
        assert_eq!(r["result"].as_str().map(str::len), Some(size), "the whole reply");
        wait_until("the worker to be replaced", || {
            let p = d.pool("app");
            if p.restarts > i {
                Ok(())
            } else {
                Err(format!("restarts {}", p.restarts))
            }
        });
    }
    ready(&d, "app", 1);
    assert_eq!(c.call(req(9, "app", "echo", json!(9)))["result"], 9);
}

#[test]
fn an_idempotent_call_whose_worker_died_is_retried_once_on_another_worker() {
    let (d, call) = start(&app_pool("app", "callapp", 2, ""));
    ready(&d, "app", 2);
    let marker = d.dir.path().join("died-once");
    let mut c = Conn::open(&call);
    let mut r = req(1, "app", "die_once", json!(marker.to_str().unwrap()));
    r["idempotent"] = json!(true);
    let reply = c.call(r);
    assert_eq!(reply["result"], "survived", "{reply}");
}

#[test]
fn garbage_from_a_worker_kills_and_replaces_it() {
    let (d, call) = start(&app_pool("app", "callapp", 1, ""));
    ready(&d, "app", 1);
    let before = d.pool("app").workers[0].id;
    // Through pitctl, which prints what the caller is told.
    let out = d.pitctl(&["call", "app", "garbage"]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    let want = format!("worker_crashed from {before}: {before} (app) was killed by pitd: protocol error (");
    assert!(said.contains(&want), "pitctl call says why: {said}");
    assert!(!said.contains("signal"), "not the signal pitd used: {said}");
    wait_event(&d, "an exit event naming protocol_error", |e| {
        e["event"] == "worker_exited"
            && e["worker"] == json!(before.to_string())
            && e["reason"] == "protocol_error"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("killed by pitd: protocol error ("))
    });
    d.wait_pool("a replacement", "app", |p| {
        p.workers.iter().any(|w| w.id != before && w.state.as_str() == "idle")
    });
    assert!(d.log().contains("protocol error"), "the reason is logged");
    let mut c = Conn::open(&call);
    assert_eq!(c.call(req(1, "app", "echo", json!(1)))["result"], 1);
}

#[test]
fn a_live_worker_that_closes_its_reply_pipe_fails_its_call_at_once_and_is_replaced() {
    // request_timeout is the default 60 s: the reply must come long before it, and
    // before the connection's read deadline.
    let (d, call) = start(&app_pool("app", "callapp", 1, ""));
    ready(&d, "app", 1);
    let before = d.pool("app").workers[0].id;
    let mut c = Conn::open(&call);
    let reply = c.call(req(1, "app", "close_reply_pipe", json!(120)));
    assert_eq!(kind(&reply), "worker_crashed", "{reply}");
    assert_eq!(reply["worker"], json!(before.to_string()), "the reply names the worker");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("was killed by pitd: protocol error (closed its reply pipe"),
        "the caller is told why: {message}"
    );
    wait_event(&d, "an exit event naming protocol_error", |e| {
        e["event"] == "worker_exited"
            && e["worker"] == json!(before.to_string())
            && e["reason"] == "protocol_error"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("closed its reply pipe"))
    });
    assert!(d.log().contains("closed its reply pipe"), "the reason is logged");
    ready(&d, "app", 1);
    let reply = c.call(req(2, "app", "echo", json!("next")));
    assert_eq!(reply["result"], "next", "{reply}");
    assert_ne!(reply["worker"], json!(before.to_string()), "served by the replacement");
}

#[test]
fn printing_in_a_handler_goes_to_the_logs_and_does_not_disturb_calls() {
    let (d, call) = start(&app_pool("app", "callapp", 1, ""));
    ready(&d, "app", 1);
    let mut c = Conn::open(&call);
    for i in 0..20 {
        assert_eq!(
            c.call(req(i, "app", "shout", json!(format!("m{i}"))))["result"],
            format!("M{i}")
        );
    }
    wait_until("the printed lines in the logs", || {
        let text = String::from_utf8_lossy(&d.pitctl(&["logs", "app", "-n", "100"]).stdout).to_string();
        if text.contains("shouting m19") && text.contains("to stderr m19") {
            Ok(())
        } else {
            Err(text)
        }
    });
}

#[test]
fn an_oversized_request_gets_too_large_and_the_connection_stays_usable() {
    let (d, call) = start(&app_pool("app", "callapp", 1, ""));
    ready(&d, "app", 1);
    let mut c = Conn::open(&call);
    let big = format!(
        "{{\"id\": 9, \"pool\": \"app\", \"method\": \"echo\", \"args\": \"{}\"}}",
        "x".repeat(17 << 20)
    );
    c.send_raw(big.as_bytes());
    let r = c.recv();
    assert_eq!((kind(&r), r["id"].clone()), ("too_large", json!(9)), "{r}");
    assert_eq!(c.call(req(10, "app", "echo", json!("after")))["result"], "after");
}

#[test]
fn a_client_hanging_up_with_calls_in_flight_leaves_the_pool_serving() {
    let (d, call) = start(&app_pool("app", "callapp", 1, ""));
    ready(&d, "app", 1);
    let mut c = Conn::open(&call);
    c.send(req(1, "app", "sleep", json!(0.5)));
    for i in 2..10 {
        c.send(req(i, "app", "echo", json!(i)));
    }
    drop(c);
    let mut c = Conn::open(&call);
    assert_eq!(
        c.call(req(1, "app", "echo", json!("still here")))["result"],
        "still here"
    );
    d.wait_pool("an empty queue", "app", |p| p.queued == 0);
}

#[test]
fn a_crash_looping_app_pool_fails_calls_fast_with_pool_failing() {
    let body = app_pool(
        "app",
        "import_fails",
        1,
        "[pools.app.restart]\ninitial = \"10ms\"\nmax = \"5s\"\ncrash_loop_failures = 3",
    );
    let (d, call) = start(&body);
    let pool = d.wait_pool("the pool to be failing", "app", |p| p.state.as_str() == "failing");
    assert!(pool.failing_reason.unwrap().contains("exit code 1"));
    let mut c = Conn::open(&call);
    let r = c.call(req(1, "app", "echo", json!(1)));
    assert_eq!(kind(&r), "pool_failing", "{r}");
    d.wait_pool("the import error in the reason", "app", |p| {
        p.failing_reason
            .as_deref()
            .is_some_and(|r| r.contains("missing_dependency_for_pit_tests"))
    });
}

#[test]
fn a_failed_start_traceback_is_logged_once_then_one_line_per_retry() {
    let body = app_pool(
        "app",
        "import_fails",
        1,
        "[pools.app.restart]\ninitial = \"10ms\"\nmax = \"50ms\"\ncrash_loop_failures = 100",
    );
    let (d, _call) = start(&body);
    // Five failed starts, each with the same traceback on stderr.
    let repeats = wait_until("four failed starts logged as repeats", || {
        let log = d.log();
        let n = log.matches("failed to start with the same").count();
        if n >= 4 {
            Ok(log)
        } else {
            Err(format!("{n} repeats in:\n{log}"))
        }
    });
    let error_line = "No module named 'missing_dependency_for_pit_tests'";
    assert_eq!(repeats.matches(error_line).count(), 1, "the traceback once:\n{repeats}");
    assert!(repeats.contains("failed starts in a row print them"), "{repeats}");
    // Every attempt's lines are still kept for `pitctl logs`.
    let logs = d.pitctl(&["logs", "app", "-n", "1000"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.matches(error_line).count() >= 5, "{text}");
}

#[test]
fn a_worker_not_ready_within_startup_timeout_is_killed() {
    let (d, _call) = start(&app_pool("app", "slow_import", 1, "startup_timeout = \"300ms\""));
    let first = d.wait_pool("a first worker", "app", |p| !p.workers.is_empty()).workers[0].id;
    d.wait_pool("the first worker to be replaced", "app", |p| {
        p.workers.iter().all(|w| w.id != first)
    });
    assert!(d.log().contains("startup_timeout"), "{}", d.log());
}

#[test]
fn sigterm_lets_the_running_and_queued_calls_finish_and_refuses_new_ones() {
    let (mut d, call) = start(&app_pool("app", "callapp", 1, ""));
    ready(&d, "app", 1);
    let mut c = Conn::open(&call);
    c.send(req(1, "app", "sleep", json!(1.0)));
    d.wait_pool("the worker to be busy", "app", |p| {
        p.workers.iter().any(|w| w.state.as_str() == "busy")
    });
    c.send(req(2, "app", "echo", json!(2)));
    d.wait_pool("a queued call", "app", |p| p.queued == 1);
    let pid = d.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut replies: Vec<Value> = (0..2).map(|_| c.recv()).collect();
    replies.sort_by_key(|r| r["id"].as_u64());
    assert_eq!(replies[0]["result"], 1.0, "the running call completed: {}", replies[0]);
    assert_eq!(replies[1]["result"], 2, "the queued call ran too: {}", replies[1]);
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(0));
    d.wait_no_survivors();
}

#[test]
fn the_python_package_lists_the_same_error_kinds_as_pitd() {
    let out = std::process::Command::new(python())
        .args(["-c", "import pit; print(' '.join(pit.ERROR_KINDS))"])
        .env("PYTHONPATH", format!("{}/python", env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
    let python_kinds = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rust_kinds: Vec<&str> = <pit::proto::call::ErrorKind as strum::VariantArray>::VARIANTS
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(python_kinds, rust_kinds.join(" "));
}

#[test]
fn bench_keeps_its_calls_in_flight_over_the_connections_asked_for_and_reports_json() {
    let (d, _call) = start(&app_pool("p", "callapp", 2, ""));
    ready(&d, "p", 2);
    for (concurrency, connections, want_connections) in [("3", None, 3), ("16", Some("2"), 2), ("2", Some("5"), 2)] {
        let mut args = vec![
            "bench",
            "p",
            "--args",
            "\"x\"",
            "--duration",
            "300ms",
            "--json",
            "-c",
            concurrency,
        ];
        if let Some(n) = connections {
            args.extend(["--connections", n]);
        }
        let out = d.pitctl(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(r["connections"], want_connections, "{r}");
        assert_eq!(r["concurrency"], concurrency.parse::<u64>().unwrap(), "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["calls"].as_u64().unwrap() > 0, "{r}");
        for key in ["calls_per_s", "p50_us", "p90_us", "p99_us", "max_us"] {
            assert!(r[key].is_number(), "{key} in {r}");
        }
        assert!(r["p50_us"].as_u64() <= r["p99_us"].as_u64() && r["p99_us"].as_u64() <= r["max_us"].as_u64());
    }
    // Failed calls are counted, not hidden: a handler that raises.
    let out = d.pitctl(&[
        "bench",
        "p",
        "--method",
        "fail",
        "--args",
        "\"boom\"",
        "--duration",
        "200ms",
        "--json",
        "-c",
        "4",
        "--connections",
        "1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["errors"].as_u64().unwrap() > 0 && r["errors"] == r["calls"], "{r}");
    // A call that can never succeed is refused before any load.
    for (args, want) in [
        (&["bench", "nopool", "-d", "5s"][..], "no_such_pool"),
        (&["bench", "p", "--method", "nope", "-d", "5s"][..], "no_such_method"),
    ] {
        let started = std::time::Instant::now();
        let out = d.pitctl(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(want), "{args:?}: {out:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "no load was run");
    }
    let out = d.pitctl(&["bench", "p", "--connections", "0"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    // More calls on one connection than pitd keeps in flight per connection would wait on
    // themselves.
    let out = d.pitctl(&["bench", "p", "-c", "300", "--connections", "1", "-d", "5s"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--connections 2 or more"),
        "{out:?}"
    );
}
