//! Recycling on every trigger, with the replacement ready first; drain, resume, scale and
//! the events that tell about them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pit::call_client::{CallClient, CallOptions, Outcome};
use pit::ids::WorkerId;
use pit::proto::status::PoolStatus;
use serde_json::Value;

use crate::harness::{TestDaemon, events, python, wait_event, wait_until, worker};

fn pool(extra: &str) -> String {
    pool_sampled_every("50ms", extra)
}

fn pool_sampled_every(monitor_interval: &str, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "monitor_interval = \"{monitor_interval}\"\n[pools.app]\napp = \"callapp\"\npython = \"{}\"\ncwd = \"{}\"\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\nkill_timeout = \"2s\"\n{extra}\n",
        python(),
        worker("apps")
    )
}

fn call(d: &TestDaemon, method: &str, args: &str) -> Outcome {
    let mut c = CallClient::connect(&d.call_socket()).expect("call socket");
    c.call("app", method, args, &CallOptions::default()).expect("a reply")
}

fn ready_workers(p: &PoolStatus) -> usize {
    p.workers
        .iter()
        .filter(|w| matches!(w.state.as_str(), "idle" | "busy"))
        .count()
}

fn idle(d: &TestDaemon, n: usize) -> PoolStatus {
    d.wait_pool(&format!("{n} idle workers"), "app", |p| {
        p.workers.iter().filter(|w| w.state.as_str() == "idle").count() == n && p.workers.len() == n
    })
}

/// Asserts that `worker`'s `worker_started` event says it replaces `old`, recycled for
/// `reason`; returns the event.
fn assert_replaces(d: &TestDaemon, worker: WorkerId, old: WorkerId, reason: &str) -> Value {
    let started = wait_event(d, &format!("the start of {worker}"), |e| {
        e["event"] == "worker_started" && e["worker"] == worker.to_string()
    });
    assert_eq!(started["replaces"], old.to_string(), "{started}");
    assert_eq!(started["reason"], reason, "{started}");
    started
}

#[test]
fn max_requests_recycles_under_load_with_zero_failed_calls_and_never_fewer_than_size_ready() {
    let d = TestDaemon::start(&pool("size = 2\nmax_requests = 20\nmax_requests_jitter = 5"));
    idle(&d, 2);
    let stop = AtomicBool::new(false);
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let min_ready = std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let mut c = CallClient::connect(&d.call_socket()).unwrap();
                let end = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    match c.call("app", "echo", "\"x\"", &CallOptions::default()) {
                        Ok(Outcome::Ok { .. }) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        let mut min_ready = usize::MAX;
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let p = d.pool("app");
            min_ready = min_ready.min(ready_workers(&p));
            if p.recycled >= 6 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        min_ready
    });
    let p = d.pool("app");
    assert!(
        p.recycled >= 6,
        "only {} recycles after {} calls",
        p.recycled,
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "calls failed during recycling");
    assert!(min_ready >= 2, "the pool dropped to {min_ready} ready workers");
    let ev = events(&d);
    assert!(
        ev.iter()
            .any(|e| e["event"] == "worker_recycled" && e["reason"] == "max_requests")
    );
}

/// Sequential calls to the `app` pool, counting the calls each worker served.
struct Tally {
    client: CallClient,
    served: BTreeMap<String, u32>,
    n: u32,
}

impl Tally {
    fn call(&mut self, session: Option<&str>) -> String {
        self.n += 1;
        let opts = CallOptions {
            session: session.map(str::to_string),
            ..CallOptions::default()
        };
        match self.client.call("app", "echo", &self.n.to_string(), &opts) {
            Ok(Outcome::Ok { worker, .. }) => {
                *self.served.entry(worker.clone()).or_default() += 1;
                worker
            }
            other => panic!("call {} failed: {other:?}", self.n),
        }
    }

    fn of(&self, worker: &str) -> u32 {
        self.served.get(worker).copied().unwrap_or(0)
    }
}

#[test]
fn a_worker_due_for_max_requests_takes_calls_only_when_no_other_worker_can() {
    // New workers wait at import while the gate exists: the test decides when a
    // replacement is ready.
    let gate = missing_path();
    let spec = pool("size = 2\nmax_requests = 25\nmax_requests_jitter = 0")
        .replace("app = \"callapp\"", "app = \"gated\"")
        .replace(
            "\" }\nkill_timeout",
            &format!("\", PIT_TEST_GATE = \"{}\" }}\nkill_timeout", gate.display()),
        );
    let d = TestDaemon::start(&spec);
    idle(&d, 2);
    std::fs::write(&gate, b"").unwrap();
    let mut t = Tally {
        client: CallClient::connect(&d.call_socket()).expect("call socket"),
        served: BTreeMap::new(),
        n: 0,
    };
    // One worker gets 20 calls ahead of the other (a session sticks to it)...
    let first = t.call(Some("s"));
    for _ in 1..20 {
        t.call(Some("s"));
    }
    // ... so it reaches max_requests first, while the other has room left.
    let mut other = None;
    while t.of(&first) < 25 {
        let w = t.call(None);
        if w != first {
            other = Some(w);
        }
    }
    let other = other.expect("the other worker took calls");
    while t.of(&other) < 25 {
        let w = t.call(None);
        assert_eq!(
            w, other,
            "a worker due for recycling took a call another could take: {:?}",
            t.served
        );
    }
    // Both are due and their replacements cannot be ready: they keep serving.
    for _ in 0..10 {
        t.call(None);
    }
    std::fs::remove_file(&gate).unwrap();
    let old: Vec<String> = t.served.keys().cloned().collect();
    let p = d.wait_pool("two replacements, the old workers gone", "app", |p| {
        p.workers.len() == 2
            && p.workers
                .iter()
                .all(|w| w.state.as_str() == "idle" && !old.contains(&w.id.to_string()))
    });
    for _ in 0..50 {
        t.call(None);
    }
    for w in &p.workers {
        assert_eq!(
            t.of(&w.id.to_string()),
            25,
            "each replacement serves its 25: {:?}",
            t.served
        );
    }
    wait_until("four recycles for max_requests", || {
        let recycles = events(&d)
            .iter()
            .filter(|e| e["event"] == "worker_recycled" && e["reason"] == "max_requests")
            .count();
        if recycles == 4 {
            Ok(())
        } else {
            Err(format!("{recycles} recycles; served {:?}", t.served))
        }
    });
}

#[test]
fn a_max_requests_replacement_starts_before_the_limit_at_the_pace_of_the_calls() {
    // One worker, calls of 20 ms one after another: 50 calls/s. A replacement takes the
    // pool's start-up time (a Python start, far above 20 ms) to get ready, so pitd starts
    // it calls ahead of the limit, not at it.
    let d = TestDaemon::start(&pool("size = 1\nmax_requests = 40\nmax_requests_jitter = 0"));
    let first = idle(&d, 1).workers[0].id;
    let mut c = CallClient::connect(&d.call_socket()).expect("call socket");
    let mut served_when_selected = None;
    let mut served = 0u32;
    for n in 0..40 {
        match c.call("app", "sleep", "0.02", &CallOptions::default()) {
            Ok(Outcome::Ok { worker, .. }) if worker == first.to_string() => served += 1,
            other => panic!("call {n}: {other:?}"),
        }
        let p = d.pool("app");
        let selected = p
            .workers
            .iter()
            .any(|w| w.id == first && w.last_recycle_reason.is_some());
        if selected && served_when_selected.is_none() {
            served_when_selected = Some(served);
        }
        if selected {
            break;
        }
    }
    let at = served_when_selected.expect("worker-1 selected for recycling within its 40 calls");
    assert!(at < 40, "the replacement started only at the limit ({at} calls)");
    let started = assert_replaces(&d, WorkerId(2), first, "max_requests");
    assert_eq!(started["pool"], "app");
    // The worker goes once its replacement is ready, and the replacement takes the calls.
    let p = d.wait_pool("the replacement serving alone", "app", |p| {
        p.workers.len() == 1 && p.workers[0].id != first && p.workers[0].state.as_str() == "idle"
    });
    for _ in 0..3 {
        match c.call("app", "sleep", "0.02", &CallOptions::default()) {
            Ok(Outcome::Ok { worker, .. }) => assert_eq!(worker, p.workers[0].id.to_string()),
            other => panic!("{other:?}"),
        }
    }
}

/// A path for a gate file that does not exist yet, removed with the test.
fn missing_path() -> tempfile::TempPath {
    let gate = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&gate).unwrap();
    gate
}

#[test]
fn max_rss_recycles_gracefully_and_the_replacement_is_started_for_the_reason() {
    let d = TestDaemon::start(&pool("size = 1\nmax_rss = \"80MiB\""));
    let first = idle(&d, 1).workers[0].id;
    assert!(matches!(call(&d, "allocate", "100"), Outcome::Ok { .. }));
    let p = d.wait_pool("a replacement", "app", |p| {
        p.workers.len() == 1 && p.workers[0].id != first && p.workers[0].state.as_str() == "idle"
    });
    // Nothing happened to the replacement itself; its start says whom it replaced, and why.
    assert_eq!(p.workers[0].last_recycle_reason, None);
    assert_replaces(&d, p.workers[0].id, first, "max_rss");
    assert_eq!(p.recycled, 1);
    wait_event(&d, "the recycle event", |e| {
        e["event"] == "worker_recycled" && e["reason"] == "max_rss"
    });
    let exited = wait_event(&d, "the old worker's exit", |e| {
        e["event"] == "worker_exited" && e["worker"] == first.to_string()
    });
    assert_eq!(exited["reason"], "max_rss");
}

#[test]
fn hard_rss_kills_at_once_then_replaces() {
    let d = TestDaemon::start(&pool("size = 1\nhard_rss = \"80MiB\""));
    let first = idle(&d, 1).workers[0].id;
    // The worker is killed while it is still holding the memory: the call may see it die.
    let _ = call(&d, "allocate", "100");
    let exited = wait_event(&d, "the hard_rss kill", |e| {
        e["event"] == "worker_exited" && e["worker"] == first.to_string()
    });
    assert_eq!(exited["reason"], "hard_rss");
    assert!(exited["exit_status"].as_str().unwrap().contains("SIGKILL"), "{exited}");
    let said = exited["message"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("killed by pitd: memory over hard_rss (") && said.ends_with(" > 80 MiB)"),
        "{exited}"
    );
    let p = idle(&d, 1);
    assert_eq!(p.workers[0].last_recycle_reason, None);
    assert_replaces(&d, p.workers[0].id, first, "hard_rss");
}

#[test]
fn max_age_and_max_errors_recycle_with_their_reasons() {
    let d = TestDaemon::start(&pool("size = 1\nmax_age = \"1s\""));
    let first = idle(&d, 1).workers[0].id;
    d.wait_pool("an age recycle", "app", |p| {
        p.workers.iter().any(|w| w.id != first && w.state.as_str() == "idle")
    });
    wait_event(&d, "max_age", |e| {
        e["event"] == "worker_recycled" && e["reason"] == "max_age"
    });
    drop(d);

    let d = TestDaemon::start(&pool("size = 1\nmax_errors = 3"));
    let first = idle(&d, 1).workers[0].id;
    for _ in 0..3 {
        assert!(matches!(call(&d, "fail", "1"), Outcome::Err { .. }));
    }
    d.wait_pool("an errors recycle", "app", |p| {
        p.workers.iter().any(|w| w.id != first && w.state.as_str() == "idle")
    });
    wait_event(&d, "max_errors", |e| {
        e["event"] == "worker_recycled" && e["reason"] == "max_errors"
    });
}

#[test]
fn a_worker_that_stops_answering_pings_turns_failing_and_is_recycled_for_health() {
    let d = TestDaemon::start(&pool(
        "size = 1\nhealth_interval = \"100ms\"\nhealth_timeout = \"200ms\"\nhealth_failures = 2",
    ));
    let p = idle(&d, 1);
    assert_eq!(p.workers[0].health.as_str(), "ok");
    let (first, pid) = (p.workers[0].id, p.workers[0].pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    d.wait_pool("health failing", "app", |p| {
        p.workers
            .iter()
            .any(|w| w.id == first && w.health.as_str() == "failing")
    });
    wait_event(&d, "a health recycle", |e| {
        e["event"] == "worker_recycled" && e["reason"] == "health"
    });
    d.wait_pool("a healthy replacement", "app", |p| {
        p.workers.len() == 1 && p.workers[0].id != first && p.workers[0].health.as_str() == "ok"
    });
}

#[test]
fn drain_finishes_the_call_in_flight_refuses_new_ones_and_resume_restores() {
    let d = TestDaemon::start(&pool("size = 2"));
    idle(&d, 2);
    let in_flight = std::thread::scope(|s| {
        let h = s.spawn(|| call(&d, "sleep", "1.0"));
        d.wait_pool("a busy worker", "app", |p| {
            p.workers.iter().any(|w| w.state.as_str() == "busy")
        });
        let out = d.pitctl(&["drain", "app"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        match call(&d, "echo", "1") {
            Outcome::Err { kind, .. } => assert_eq!(kind, pit::proto::call::ErrorKind::PoolDrained),
            other => panic!("expected pool_drained, got {other:?}"),
        }
        h.join().unwrap()
    });
    assert!(
        matches!(in_flight, Outcome::Ok { .. }),
        "the call in flight completed: {in_flight:?}"
    );
    let p = d.wait_pool("the pool to be drained", "app", |p| p.state.as_str() == "drained");
    assert!(p.workers.is_empty());
    wait_event(&d, "the drained pool's workers exiting", |e| {
        e["event"] == "worker_exited"
    });
    let out = d.pitctl(&["resume", "app"]);
    assert!(out.status.success());
    idle(&d, 2);
    assert!(matches!(call(&d, "echo", "1"), Outcome::Ok { .. }));
}

#[test]
fn drain_wait_of_one_worker_returns_when_it_is_gone_and_it_is_not_replaced() {
    let d = TestDaemon::start(&pool("size = 2"));
    let p = idle(&d, 2);
    let victim = p.workers[0].id.to_string();
    let out = d.pitctl(&["drain", &victim, "--wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = d.pool("app");
    assert!(p.workers.iter().all(|w| w.id.to_string() != victim), "{p:?}");
    assert_eq!(p.size, 1);
    assert_eq!(p.workers.len(), 1);
    // An operator's drain says so, as an operator's recycle does.
    let draining = wait_event(&d, "the drain event", |e| {
        e["event"] == "worker_draining" && e["worker"] == victim.as_str()
    });
    assert_eq!(draining["reason"], "manual", "{draining}");
}

#[test]
fn scale_up_and_down_changes_the_number_of_workers() {
    let d = TestDaemon::start(&pool("size = 1"));
    idle(&d, 1);
    assert!(d.pitctl(&["scale", "app", "3"]).status.success());
    idle(&d, 3);
    assert!(d.pitctl(&["scale", "app", "1"]).status.success());
    let p = idle(&d, 1);
    assert_eq!(p.size, 1);
    assert_eq!(d.pitctl(&["scale", "app", "0"]).status.code(), Some(1));
    assert_eq!(d.pitctl(&["scale", "nope", "2"]).status.code(), Some(1));
}

#[test]
fn recycle_command_replaces_first_and_now_kills_at_once() {
    let d = TestDaemon::start(&pool("size = 2"));
    let p = idle(&d, 2);
    let ids: Vec<String> = p.workers.iter().map(|w| w.id.to_string()).collect();
    let recycled = p.workers[0].id;
    let out = d.pitctl(&["recycle", &ids[0]]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = d.wait_pool("worker replaced", "app", |p| {
        p.workers.len() == 2
            && p.workers
                .iter()
                .all(|w| w.id.to_string() != ids[0] && w.state.as_str() == "idle")
    });
    let new = p.workers.iter().map(|w| w.id).max().unwrap();
    assert!(p.workers.iter().all(|w| w.last_recycle_reason.is_none()), "{p:?}");
    assert_replaces(&d, new, recycled, "manual");
    // Status tells of the replacement itself (nothing happened to it), the event of its start.
    let text = String::from_utf8_lossy(&d.pitctl(&["status", "app"]).stdout).to_string();
    let row = text
        .lines()
        .find(|l| l.contains(&format!("{new} ")))
        .expect("the replacement's row");
    assert!(row.trim_end().ends_with(" -"), "LAST RECYCLE of {row:?}");
    let text = String::from_utf8_lossy(&d.pitctl(&["events"]).stdout).to_string();
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("{new} (pid")) && l.contains("worker_started: reason manual, replaces ")),
        "{text}"
    );
    assert!(d.pitctl(&["recycle", "app"]).status.success());
    d.wait_pool("every worker replaced", "app", |p| {
        p.workers.len() == 2 && p.workers.iter().all(|w| w.id.0 > 3 && w.state.as_str() == "idle") && p.recycled >= 3
    });
    assert!(d.pitctl(&["recycle", "app", "--now"]).status.success());
    wait_event(&d, "a kill for --now", |e| {
        e["event"] == "worker_exited" && e["exit_status"].as_str().is_some_and(|s| s.contains("SIGKILL"))
    });
    assert_eq!(d.pitctl(&["recycle", "worker-999"]).status.code(), Some(1));
}

#[test]
fn events_have_the_interface_fields() {
    let d = TestDaemon::start(&pool("size = 1"));
    idle(&d, 1);
    let ev = events(&d);
    let started = ev
        .iter()
        .find(|e| e["event"] == "worker_started")
        .expect("a started event");
    for key in ["ts", "event", "pool", "worker", "pid"] {
        assert!(started.get(key).is_some(), "missing {key} in {started}");
    }
    assert!(ev.iter().any(|e| e["event"] == "worker_ready"));
    let text = String::from_utf8_lossy(&d.pitctl(&["events"]).stdout).to_string();
    assert!(text.contains("worker_ready"), "{text}");
}

/// Two pools of the same app, both with `reset_after` an hour away: in `stable` a start is
/// good once its worker has been ready for `min_uptime` (default 1 s), in `young` only after
/// an hour.
fn restart_spec() -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    let pool = |name: &str, min_uptime: &str| {
        format!(
            "[pools.{name}]\napp = \"callapp\"\npython = \"{}\"\ncwd = \"{}\"\n\
             env = {{ PYTHONPATH = \"{python_dir}\" }}\nsize = 2\n\
             [pools.{name}.restart]\ninitial = \"50ms\"\nmax = \"10s\"\nreset_after = \"1h\"\n{min_uptime}",
            python(),
            worker("apps")
        )
    };
    format!("{}{}", pool("stable", ""), pool("young", "min_uptime = \"1h\"\n"))
}

/// SIGKILLs a ready worker of `pool` once every worker there is ready and `min_age_s` old,
/// and returns pitd's `worker_exited` event for it.
fn kill_ready_worker(d: &TestDaemon, pool: &str, min_age_s: f64) -> Value {
    let p = d.wait_pool(&format!("2 ready workers aged {min_age_s}s in {pool}"), pool, |p| {
        p.workers.len() == 2 && ready_workers(p) == 2 && p.workers.iter().all(|w| w.age_s >= min_age_s)
    });
    let victim = &p.workers[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let id = victim.id.to_string();
    wait_event(d, &format!("the exit of {id}"), |e| {
        e["event"] == "worker_exited" && e["worker"] == id.as_str()
    })
}

#[test]
fn a_killed_worker_that_ran_past_min_uptime_is_replaced_without_backoff_whatever_its_age() {
    let d = TestDaemon::start(&restart_spec());
    // Kills of healthy workers in a row, on either worker, far younger than reset_after:
    // none delays the next replacement.
    for round in 1..=3 {
        let exited = kill_ready_worker(&d, "stable", 1.5);
        assert_eq!(exited["reason"], "crash", "round {round}: {exited}");
        assert_eq!(exited["backoff_ms"], 0, "round {round}: {exited}");
    }
    let p = d.wait_pool("3 restarts, 2 ready workers", "stable", |p| {
        p.restarts == 3 && ready_workers(p) == 2
    });
    assert_eq!(p.state.as_str(), "running");

    // Workers dying within min_uptime of ready are failed starts, a loop worth slowing
    // down: each backoff doubles (50, 100,
    // 200 ms, less or more 20% jitter).
    let mut backoffs = Vec::new();
    for _ in 0..3 {
        let exited = kill_ready_worker(&d, "young", 0.0);
        backoffs.push(exited["backoff_ms"].as_u64().expect("a backoff on an unplanned exit"));
    }
    assert!(
        (40..=60).contains(&backoffs[0]) && backoffs[0] < backoffs[1] && backoffs[1] < backoffs[2],
        "{backoffs:?}"
    );
}

#[test]
fn a_worker_is_sampled_as_soon_as_it_is_ready() {
    // No monitor pass for an hour: any memory figure comes from the sample taken at ready.
    let d = TestDaemon::start(&pool_sampled_every("1h", "size = 2"));
    let p = d.wait_pool("2 ready workers with their RSS", "app", |p| {
        ready_workers(p) == 2 && p.workers.iter().all(|w| w.rss_bytes > 0)
    });
    for w in &p.workers {
        assert!(w.rss_bytes > 1 << 20 && w.memory_bytes == w.rss_bytes, "{w:?}");
    }
    let out = d.pitctl(&["status", "app"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for w in &p.workers {
        let row = text
            .lines()
            .find(|l| l.contains(&w.id.to_string()))
            .expect("a row per worker");
        let rss = row.split_whitespace().nth(4).unwrap();
        assert!(rss.ends_with('M'), "RSS column of {row:?}");
    }
}

#[test]
fn fresh_workers_report_no_growth_until_enough_samples() {
    // Sampled every 50 ms: dozens of samples in the first seconds, all of them start-up.
    let d = TestDaemon::start(&pool("size = 2"));
    d.wait_pool("2 ready workers", "app", |p| ready_workers(p) == 2);
    let until = Instant::now() + Duration::from_secs(3);
    let mut polls = 0;
    while Instant::now() < until {
        let p = d.pool("app");
        for w in &p.workers {
            assert_eq!(w.rss_growth_bytes_per_s, 0, "{} {}s old: {w:?}", w.id, w.age_s);
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(polls >= 3);
}
