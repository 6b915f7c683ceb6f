//! Memory that is predicted and budgeted (INTERFACE section 11), real pitd and real workers
//! (`tests/workers/apps/memory_app.py`, sampled every 100 ms): a spike shorter than
//! `max_rss_samples` passes and a lasting one recycles; `predict_rss` recycles a leaking
//! worker gracefully before `hard_rss` kills it; a pool over its `memory_budget`, and a
//! daemon over its own, recycle the largest worker in place.

use std::time::{Duration, Instant};

use pit::call_client::{CallClient, CallOptions, Outcome};
use serde_json::{Value, json};

use crate::harness::{TestDaemon, events, python, wait_event, worker};

const MIB: u64 = 1024 * 1024;

fn pool(name: &str, size: u32, extra: &str) -> String {
    pool_importing(name, size, 0.0, extra)
}

/// A pool whose app takes `import_s` seconds to import.
fn pool_importing(name: &str, size: u32, import_s: f64, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.{name}]\napp = \"memory_app\"\npython = \"{}\"\nsize = {size}\ncwd = \"{}\"\n\
         env = {{ PYTHONPATH = \"{python_dir}\", MEMORY_APP_IMPORT_S = \"{import_s}\" }}\n\
         kill_timeout = \"2s\"\ndrain_timeout = \"5s\"\n{extra}\n",
        python(),
        worker("apps")
    )
}

fn started(daemon_keys: &str, pools: &[String]) -> TestDaemon {
    let d = TestDaemon::start(&format!(
        "monitor_interval = \"100ms\"\n{daemon_keys}\n{}",
        pools.concat()
    ));
    for p in d.status().pools {
        let size = p.size as usize;
        d.wait_pool("workers ready and sampled", &p.name, |p| {
            p.workers.len() == size && p.workers.iter().all(|w| w.state.as_str() == "idle" && w.rss_bytes > 0)
        });
    }
    d
}

fn call(d: &TestDaemon, pool: &str, method: &str, args: Value, session: Option<&str>) -> Outcome {
    let mut c = CallClient::connect(&d.call_socket()).expect("the call socket");
    let opts = CallOptions {
        session: session.map(str::to_string),
        ..CallOptions::default()
    };
    c.call(pool, method, &args.to_string(), &opts).expect("a reply")
}

fn ok(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Ok { result, .. } => result,
        other => panic!("expected a result, got {other:?}"),
    }
}

fn recycles(d: &TestDaemon) -> Vec<Value> {
    events(d)
        .into_iter()
        .filter(|e| e["event"] == "worker_recycled")
        .collect()
}

#[test]
fn a_spike_shorter_than_max_rss_samples_passes_and_a_lasting_one_recycles() {
    let d = started("", &[pool("app", 1, "max_rss = \"60MiB\"\nmax_rss_samples = 8")]);
    let pid = ok(call(&d, "app", "pid", json!(null), None));
    // 150 ms over max_rss: two or three samples, fewer than eight.
    for _ in 0..3 {
        ok(call(&d, "app", "spike", json!({"mib": 80, "s": 0.15}), None));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(recycles(&d).is_empty(), "spikes passed: {:?}", recycles(&d));
    assert_eq!(ok(call(&d, "app", "pid", json!(null), None)), pid);
    ok(call(&d, "app", "hold", json!({"mib": 80}), None));
    let e = wait_event(&d, "a recycle for max_rss", |e| e["event"] == "worker_recycled");
    assert_eq!(e["reason"], "max_rss", "{e}");
}

#[test]
fn predict_rss_recycles_a_leaking_worker_before_hard_rss_and_no_call_fails() {
    let d = started(
        "",
        &[pool_importing(
            "app",
            1,
            1.0,
            "max_rss = \"400MiB\"\nhard_rss = \"420MiB\"\npredict_rss = true",
        )],
    );
    // 8 MiB a call, a call every 40 ms: up to 200 MiB/s, and a replacement takes a second
    // to import its app. Without prediction the worker reaches max_rss and hard_rss within
    // a tenth of a second of each other: the replacement cannot be ready in between, and
    // hard_rss kills the worker with its calls.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failed = Vec::new();
    while Instant::now() < deadline && recycles(&d).is_empty() {
        for _ in 0..10 {
            match call(&d, "app", "hold", json!({"mib": 8}), None) {
                Outcome::Ok { .. } => {}
                other => failed.push(other),
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    let first = recycles(&d).into_iter().next().expect("a recycle within 30 s");
    assert_eq!(first["reason"], "predicted_rss", "{first}");
    assert!(failed.is_empty(), "{failed:?}");
    // The old worker drains without its calls: no hard kill follows.
    let ready = wait_event(&d, "the replacement ready", |e| {
        e["event"] == "worker_ready" && e["worker"] != first["worker"]
    });
    let _ = ready;
    ok(call(&d, "app", "pid", json!(null), None));
    let killed: Vec<Value> = recycles(&d).into_iter().filter(|e| e["reason"] == "hard_rss").collect();
    assert!(killed.is_empty(), "{killed:?}");
}

#[test]
fn a_pool_over_its_memory_budget_recycles_its_largest_worker_in_place() {
    let d = started("", &[pool("app", 2, "memory_budget = \"110MiB\"")]);
    let status = d.pool("app");
    assert_eq!(status.memory_budget_bytes, Some(110 * MIB));
    // One worker (the session's) takes 80 MiB: the pool goes over 110.
    let held = ok(call(&d, "app", "hold", json!({"mib": 80}), Some("big")));
    let big_pid = held["pid"].as_u64().unwrap() as u32;
    let big = status
        .workers
        .iter()
        .find(|w| w.pid == big_pid)
        .expect("a worker of the pool")
        .id;
    let e = wait_event(&d, "a recycle for the budget", |e| e["event"] == "worker_recycled");
    assert_eq!(
        (e["reason"].clone(), e["worker"].clone()),
        (json!("memory_budget"), json!(big.to_string()))
    );
    // In place: its replacement starts only once it has exited.
    wait_event(&d, "its replacement", |e| {
        e["event"] == "worker_started" && e["replaces"] == json!(big.to_string())
    });
    let all = events(&d);
    let at = |pred: &dyn Fn(&Value) -> bool| all.iter().position(pred).unwrap();
    let exited = at(&|e| e["event"] == "worker_exited" && e["worker"] == json!(big.to_string()));
    let started = at(&|e| e["event"] == "worker_started" && e["replaces"] == json!(big.to_string()));
    assert!(exited < started, "{all:#?}");
    d.wait_pool("back under budget with two workers", "app", |p| {
        p.workers.len() == 2 && p.memory.as_ref().is_some_and(|m| m.memory_bytes <= 110 * MIB)
    });
}

#[test]
fn a_daemon_over_its_memory_budget_recycles_the_largest_worker_of_all() {
    let d = started(
        "memory_budget = \"120MiB\"",
        &[pool("small", 1, ""), pool("big", 1, "")],
    );
    ok(call(&d, "big", "hold", json!({"mib": 90}), None));
    let e = wait_event(&d, "a recycle for the daemon's budget", |e| {
        e["event"] == "worker_recycled"
    });
    assert_eq!(
        (e["reason"].clone(), e["pool"].clone()),
        (json!("memory_budget"), json!("big"))
    );
    let status = d.status();
    let budget = status.memory_budget.expect("the daemon's budget in status");
    assert_eq!(budget.budget_bytes, 120 * MIB);
    assert!(recycles(&d).iter().all(|e| e["pool"] == "big"), "{:?}", recycles(&d));
}
