//! Recycling on every trigger, with the replacement ready first; drain, resume, scale and
//! the events that tell about them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pit::call_client::{CallClient, CallOptions, Outcome};
use pit::proto::status::PoolStatus;

use crate::harness::{TestDaemon, events, python, wait_event, wait_until, worker};

fn pool(extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "monitor_interval = \"50ms\"\n[pools.app]\napp = \"callapp\"\npython = \"{}\"\ncwd = \"{}\"\n\
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

/// A path for a gate file that does not exist yet, removed with the test.
fn missing_path() -> tempfile::TempPath {
    let gate = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&gate).unwrap();
    gate
}

#[test]
fn max_rss_recycles_gracefully_and_the_replacement_carries_the_reason() {
    let d = TestDaemon::start(&pool("size = 1\nmax_rss = \"80MiB\""));
    let first = idle(&d, 1).workers[0].id;
    assert!(matches!(call(&d, "allocate", "100"), Outcome::Ok { .. }));
    let p = d.wait_pool("a replacement", "app", |p| {
        p.workers.len() == 1 && p.workers[0].id != first && p.workers[0].state.as_str() == "idle"
    });
    assert_eq!(p.workers[0].last_recycle_reason.map(|r| r.as_str()), Some("max_rss"));
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
    assert_eq!(p.workers[0].last_recycle_reason.map(|r| r.as_str()), Some("hard_rss"));
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
            Outcome::Err { kind, .. } => assert_eq!(kind, "pool_drained"),
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
    let out = d.pitctl(&["recycle", &ids[0]]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = d.wait_pool("worker replaced", "app", |p| {
        p.workers.len() == 2
            && p.workers
                .iter()
                .all(|w| w.id.to_string() != ids[0] && w.state.as_str() == "idle")
    });
    assert!(
        p.workers
            .iter()
            .any(|w| w.last_recycle_reason.map(|r| r.as_str()) == Some("manual"))
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
