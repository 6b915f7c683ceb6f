//! Pools with `concurrency` > 1, real pitd and real workers (`tests/workers/apps/
//! concurrent_app.py`): calls overlap on one worker, routing by calls in flight, sessions
//! waiting for their worker, timeouts that cancel one call and spare the others, recycles and
//! drains under full load, deaths with calls in flight, health at full load and with a
//! blocked event loop, and callers that hang up.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pit::call_client::{CallClient, CallOptions, Outcome};
use pit::proto::call::ErrorKind;
use serde_json::{Value, json};

use crate::harness::{TestDaemon, events, python, python_is_free_threaded, wait_event, wait_until, worker};

fn pool(size: u32, concurrency: u32, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.app]\napp = \"concurrent_app\"\npython = \"{}\"\nsize = {size}\nconcurrency = {concurrency}\n\
         cwd = \"{}\"\nenv = {{ PYTHONPATH = \"{python_dir}\" }}\nkill_timeout = \"2s\"\n{extra}\n",
        python(),
        worker("apps")
    )
}

fn started(size: u32, concurrency: u32, extra: &str) -> TestDaemon {
    let d = TestDaemon::start(&pool(size, concurrency, extra));
    d.wait_pool("ready workers", "app", |p| {
        p.workers.len() == size as usize && p.workers.iter().all(|w| w.state.as_str() == "idle")
    });
    d
}

fn call(d: &TestDaemon, method: &str, args: Value, opts: &CallOptions) -> Outcome {
    let mut c = CallClient::connect(&d.call_socket()).expect("the call socket");
    c.call("app", method, &args.to_string(), opts).expect("a reply")
}

fn ok(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Ok { result, .. } => result,
        other => panic!("expected a result, got {other:?}"),
    }
}

/// Runs `calls` at once, each on its own connection; their outcomes in order.
fn at_once(d: &TestDaemon, calls: Vec<(&str, Value, CallOptions)>) -> Vec<Outcome> {
    std::thread::scope(|s| {
        let handles: Vec<_> = calls
            .into_iter()
            .map(|(method, args, opts)| s.spawn(move || call(d, method, args, &opts)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn calls_overlap_on_one_worker_async_and_sync() {
    let d = started(1, 4, "");
    for method in ["nap", "snooze"] {
        let results: Vec<Value> = at_once(
            &d,
            (0..4)
                .map(|_| (method, json!({"s": 0.3}), CallOptions::default()))
                .collect(),
        )
        .into_iter()
        .map(ok)
        .collect();
        let first_end = results
            .iter()
            .map(|r| r["end"].as_f64().unwrap())
            .fold(f64::MAX, f64::min);
        assert!(
            results.iter().all(|r| r["start"].as_f64().unwrap() < first_end),
            "{method}: all four started before the first ended: {results:?}"
        );
        let pids: std::collections::HashSet<u64> = results.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
        assert_eq!(pids.len(), 1, "one worker ran them");
    }
    let p = d.pool("app");
    assert_eq!((p.concurrency, p.capacity), (4, 4));
    assert_eq!(p.workers[0].gil_enabled, Some(!python_is_free_threaded()));
}

#[test]
fn calls_go_to_the_worker_with_fewest_in_flight_and_a_session_waits_for_its_full_worker() {
    let d = started(2, 2, "");
    let session = |s: &str| CallOptions {
        session: Some(s.into()),
        ..CallOptions::default()
    };
    // Two long calls of session "s" fill one worker; a third waits for it; a plain call
    // goes to the other worker meanwhile.
    let outcomes = std::thread::scope(|s| {
        let long: Vec<_> = (0..2)
            .map(|_| s.spawn(|| call(&d, "nap", json!({"s": 1.0}), &session("s"))))
            .collect();
        d.wait_pool("the session's worker full", "app", |p| p.in_flight == 2);
        let waiting = s.spawn(|| call(&d, "nap", json!({"s": 0.01}), &session("s")));
        d.wait_pool("the session's call queued", "app", |p| p.queued == 1);
        let other = call(&d, "whoami", json!(null), &CallOptions::default());
        let long: Vec<Value> = long.into_iter().map(|h| ok(h.join().unwrap())).collect();
        (long, ok(waiting.join().unwrap()), ok(other))
    });
    let (long, waited, other) = outcomes;
    let bound = long[0]["worker"].clone();
    assert_eq!(long[1]["worker"], bound, "a session sticks to its worker");
    assert_eq!(waited["worker"], bound, "and waits for a slot there");
    assert_ne!(
        other["worker"], bound,
        "a plain call takes the worker with fewer in flight"
    );
}

fn marker(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn a_timed_out_call_is_cancelled_and_the_workers_other_calls_succeed() {
    let d = started(1, 4, "");
    let dir = tempfile::tempdir().unwrap();
    let pid = d.pool("app").workers[0].pid;
    let timeout = CallOptions {
        timeout: Some(Duration::from_millis(300)),
        ..CallOptions::default()
    };
    for (method, name) in [("wait_cancel", "async"), ("wait_flag", "sync")] {
        let outcomes = at_once(
            &d,
            vec![
                (method, json!({"marker": marker(dir.path(), name)}), timeout.clone()),
                ("nap", json!({"s": 0.8}), CallOptions::default()),
            ],
        );
        match &outcomes[0] {
            Outcome::Err {
                kind, worker, message, ..
            } => {
                assert_eq!(*kind, ErrorKind::Timeout, "{outcomes:?}");
                let worker = worker.as_deref().unwrap_or_default();
                assert!(worker.starts_with("worker-"), "{outcomes:?}");
                assert_eq!(
                    *message,
                    format!("call to app.{method} timed out after 300ms; cancelled in {worker}")
                );
            }
            other => panic!("{name}: expected a timeout, got {other:?}"),
        }
        assert!(
            matches!(outcomes[1], Outcome::Ok { .. }),
            "{name}: the other call: {outcomes:?}"
        );
        wait_until(&format!("the {name} handler to see its cancel"), || {
            std::fs::read_to_string(dir.path().join(name)).map_err(|e| e.to_string())
        });
    }
    assert_eq!(d.pool("app").workers[0].pid, pid, "the worker was not killed");
}

/// Calls from `threads` callers until `stop`, counting outcomes.
fn load(d: &TestDaemon, stop: &AtomicBool, okays: &AtomicU64, failures: &AtomicU64) {
    let mut c = CallClient::connect(&d.call_socket()).expect("the call socket");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match c.call("app", "nap", &json!({"s": 0.05}).to_string(), &CallOptions::default()) {
            Ok(Outcome::Ok { .. }) => okays.fetch_add(1, Ordering::Relaxed),
            other => {
                eprintln!("failed call: {other:?}");
                failures.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

#[test]
fn recycle_reload_and_drain_under_full_load_fail_no_call() {
    let d = started(2, 4, "");
    let (stop, okays, failures) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| load(&d, &stop, &okays, &failures));
        }
        d.wait_pool("both workers full", "app", |p| p.in_flight >= 6);
        let before = d.pool("app").recycled;
        assert!(d.pitctl(&["recycle", "app"]).status.success());
        d.wait_pool("every worker replaced under load", "app", |p| {
            p.recycled >= before + 2 && p.workers.iter().filter(|w| w.state.as_str() != "stopping").count() == 2
        });
        // A changed spec: its workers are recycled with reason `reload`, under the same load.
        let head = format!(
            "[daemon]\ncontrol_socket = \"{}\"\ncall_socket = \"{}\"\n",
            d.control.display(),
            d.call_socket().display()
        );
        std::fs::write(&d.config, head + &pool(2, 4, "max_errors = 100")).unwrap();
        let before = d.pool("app").recycled;
        assert!(d.pitctl(&["reload"]).status.success());
        d.wait_pool("every worker replaced after the reload", "app", |p| {
            p.recycled >= before + 2 && p.workers.iter().filter(|w| w.state.as_str() != "stopping").count() == 2
        });
        let seen = okays.load(Ordering::Relaxed);
        wait_until("calls still succeeding", || {
            if okays.load(Ordering::Relaxed) > seen + 20 {
                Ok(())
            } else {
                Err("not yet".into())
            }
        });
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no call failed");
    assert!(okays.load(Ordering::Relaxed) > 40);
    // Drain with calls in flight: they finish; then the pool is drained.
    let outcomes = std::thread::scope(|s| {
        let calls: Vec<_> = (0..4)
            .map(|_| s.spawn(|| call(&d, "nap", json!({"s": 0.5}), &CallOptions::default())))
            .collect();
        d.wait_pool("calls in flight", "app", |p| p.in_flight == 4);
        assert!(d.pitctl(&["drain", "app", "--wait"]).status.success());
        calls.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Ok { .. })), "{outcomes:?}");
}

#[test]
fn a_worker_killed_with_calls_in_flight_fails_exactly_those() {
    let d = started(1, 4, "");
    let pid = d.pool("app").workers[0].pid;
    let outcomes = std::thread::scope(|s| {
        let calls: Vec<_> = (0..3)
            .map(|_| s.spawn(|| call(&d, "nap", json!({"s": 30}), &CallOptions::default())))
            .collect();
        d.wait_pool("three calls in flight", "app", |p| p.in_flight == 3);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        calls.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    for o in &outcomes {
        assert!(
            matches!(
                o,
                Outcome::Err {
                    kind: ErrorKind::WorkerCrashed,
                    ..
                }
            ),
            "{outcomes:?}"
        );
    }
    d.wait_pool("a replacement", "app", |p| {
        p.workers.iter().any(|w| w.pid != pid && w.state.as_str() == "idle")
    });
    assert!(matches!(
        call(&d, "whoami", json!(null), &CallOptions::default()),
        Outcome::Ok { .. }
    ));
}

#[test]
fn pings_are_answered_at_full_load_and_a_blocked_event_loop_fails_its_health_check() {
    let health = "health_interval = \"200ms\"\nhealth_timeout = \"500ms\"\nhealth_failures = 2";
    let d = started(1, 2, health);
    let pid = d.pool("app").workers[0].pid;
    // Every slot busy with calls that await: pings are answered through the same loop.
    at_once(
        &d,
        (0..2)
            .map(|_| ("nap", json!({"s": 2.0}), CallOptions::default()))
            .collect(),
    )
    .into_iter()
    .for_each(|o| assert!(matches!(o, Outcome::Ok { .. }), "{o:?}"));
    let p = d.pool("app");
    assert_eq!(p.workers[0].pid, pid, "not recycled for health at full load");
    assert!(!events(&d).iter().any(|e| e["reason"] == "health"));
    // Each answered ping is logged at debug level with its round trip, which is what a
    // benchmark reads to time pings at load.
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("health ping answered") && l.contains("worker-") && l.contains("rtt_us=")),
        "no ping round trip in the log:\n{log}"
    );
    // A call that blocks the loop: no pong, the worker fails its checks and is recycled.
    std::thread::scope(|s| {
        s.spawn(|| call(&d, "block_loop", json!({"s": 4.0}), &CallOptions::default()));
        wait_event(&d, "a recycle for health", |e| {
            e["event"] == "worker_recycled" && e["reason"] == "health"
        });
    });
}

#[test]
fn a_caller_that_hangs_up_has_its_calls_cancelled() {
    let d = started(1, 4, "");
    let dir = tempfile::tempdir().unwrap();
    let mark = marker(dir.path(), "gone");
    let started = marker(dir.path(), "started");
    {
        let mut s = UnixStream::connect(d.call_socket()).unwrap();
        let args = json!({"marker": mark, "started": started});
        let body = json!({"id": 1, "pool": "app", "method": "wait_cancel", "args": args}).to_string();
        s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        // Hung up only once the handler runs: a task cancelled before it starts never
        // reaches its `except` (on a loaded machine the worker may read the cancel first).
        wait_until("the handler to start", || {
            std::fs::read_to_string(&started).map_err(|e| e.to_string())
        });
    }
    wait_until("the handler to see its cancel", || {
        std::fs::read_to_string(&mark).map_err(|e| e.to_string())
    });
    d.wait_pool("the slot freed", "app", |p| p.in_flight == 0);
}

#[test]
fn require_free_threading_on_an_interpreter_with_the_gil_is_a_failed_start_naming_why() {
    if python_is_free_threaded() {
        // On a free-threaded build the pool starts: tests/it/free_threading.rs has the
        // failed start of an app that turns the GIL back on.
        eprintln!(
            "skipped: {} is a free-threaded build, it has no GIL to refuse",
            python()
        );
        return;
    }
    let d = TestDaemon::start(&pool(
        1,
        4,
        "require_free_threading = true\n[pools.app.restart]\ncrash_loop_failures = 2\ncrash_loop_window = \"30s\"\n",
    ));
    let p = d.wait_pool("the pool failing", "app", |p| p.state.as_str() == "failing");
    let why = p.failing_reason.unwrap_or_default();
    assert!(why.contains("require_free_threading") && why.contains("GIL"), "{why}");
}
