//! A preloaded pool's `warmup`: run once in the template, after the preload and before any
//! fork, so that what it loads is every worker's; a warm-up that fails fails the start like
//! a preload that cannot import; sockets it leaves open are named in a warning.

use std::net::TcpListener;

use serde_json::Value;

use crate::harness::{TestDaemon, events, python, wait_until, worker};

fn warm_pool(name: &str, size: u32, warmup: &str, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.{name}]\napp = \"warmup_app\"\npython = \"{}\"\nsize = {size}\ncwd = \"{}\"\n\
         preload = [\"json\"]\nwarmup = \"{warmup}\"\nenv = {{ PYTHONPATH = \"{python_dir}\" }}\n\
         kill_timeout = \"2s\"\nstartup_timeout = \"20s\"\n{extra}\n",
        python(),
        worker("apps")
    )
}

fn template_pids(d: &TestDaemon) -> Vec<u32> {
    d.log()
        .lines()
        .filter_map(|l| l.split("started the preload template (pid ").nth(1))
        .filter_map(|rest| rest.split(')').next()?.parse().ok())
        .collect()
}

fn warmed(d: &TestDaemon, pool: &str) -> Value {
    let out = d.pitctl(&["call", pool, "warmed"]);
    assert!(
        out.status.success(),
        "call failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON result")
}

fn status_json(d: &TestDaemon, pool: &str) -> Value {
    let out = d.pitctl(&["status", pool, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["pools"][0].clone()
}

#[test]
fn a_warm_up_runs_once_in_the_template_and_every_worker_has_what_it_loaded() {
    let d = TestDaemon::start(&warm_pool("warm", 2, "warm_state:warm_up", ""));
    let pool = d.wait_pool("2 ready workers", "warm", |p| {
        p.workers.len() == 2 && p.workers.iter().all(|w| w.state.as_str() == "idle")
    });
    let template = template_pids(&d);
    assert_eq!(template.len(), 1, "{template:?}");
    let ids: Vec<String> = pool.workers.iter().map(|w| w.id.to_string()).collect();
    let mut seen: Vec<Value> = Vec::new();
    wait_until("an answer from every worker", || {
        let a = warmed(&d, "warm");
        if !seen.iter().any(|s| s["worker"] == a["worker"]) {
            seen.push(a);
        }
        let all = ids.iter().all(|id| seen.iter().any(|s| s["worker"] == id.as_str()));
        if all { Ok(()) } else { Err(format!("{seen:?}")) }
    });
    for a in &seen {
        assert_eq!(
            a["warmed_by"].as_u64(),
            Some(template[0] as u64),
            "warmed in the template: {a}"
        );
        assert_ne!(a["warmed_by"], a["pid"], "not in the worker: {a}");
        assert_eq!(a["runs"], 1, "once, before the fork: {a}");
        assert_eq!(a["cache"], 10_000, "{a}");
        assert_eq!(a["lazy_module_loaded"], true, "{a}");
    }
    let log = d.log();
    let runs = log.lines().filter(|l| l.contains("template: warm-up ran in")).count();
    assert_eq!(runs, 1, "the warm-up ran once:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("preload template ready: imports took") && l.contains("warm-up warm_state:warm_up")),
        "its time is logged:\n{log}"
    );
    let pool = status_json(&d, "warm");
    assert!(
        pool.get("warnings").is_none(),
        "a clean warm-up warns about nothing: {pool}"
    );
}

#[test]
fn a_warm_up_that_raises_fails_the_start_with_its_traceback() {
    let extra = "[pools.bad.restart]\ninitial = \"10ms\"\nmax = \"200ms\"\ncrash_loop_failures = 2\ncrash_loop_window = \"60s\"";
    let d = TestDaemon::start(&warm_pool("bad", 1, "warm_state:fails", extra));
    let pool = d.wait_pool("the pool failing", "bad", |p| p.state.as_str() == "failing");
    let reason = pool.failing_reason.unwrap_or_default();
    assert!(
        reason.contains("exit code 4") && reason.contains("the model server refused the warm-up call"),
        "the warm-up's error in status: {reason}"
    );
    let log = d.log();
    for line in [
        "warm-up warm_state:fails failed",
        "Traceback (most recent call last)",
        "RuntimeError: the model server refused the warm-up call",
    ] {
        assert!(log.contains(line), "{line:?} in pitd's log:\n{log}");
    }
    assert!(
        pool.workers.iter().all(|w| w.pid == 0),
        "no worker was forked: {:?}",
        pool.workers
    );
    let out = d.pitctl(&["call", "bad", "warmed"]);
    assert_eq!(out.status.code(), Some(1));
}

/// A warm-up that made a real call left its client's keep-alive connection in the template:
/// every forked worker would share it. pitd names it, with its peer, in the log, an event
/// and status.
#[test]
fn a_connection_the_warm_up_left_open_is_named_in_a_template_warning() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = listener.local_addr().unwrap().to_string();
    let spec = warm_pool("warm", 1, "warm_state:leaves_a_connection", "")
        .replace("env = { ", &format!("env = {{ WARMUP_CONNECT = \"{peer}\", "));
    let d = TestDaemon::start(&spec);
    d.wait_pool("a ready worker", "warm", |p| {
        p.workers.iter().any(|w| w.state.as_str() == "idle")
    });
    let named = |text: &str| text.contains(&format!("tcp to {peer} from 127.0.0.1:"));
    let event = wait_until("a template_warning event naming the connection", || {
        let all = events(&d);
        all.iter()
            .find(|e| e["event"] == "template_warning" && e["message"].as_str().is_some_and(named))
            .cloned()
            .ok_or(format!("{all:?}"))
    });
    assert_eq!(event["pool"], "warm", "{event}");
    let message = event["message"].as_str().unwrap();
    assert!(
        message.starts_with("1 socket(s) open in the preload template after its imports and warm-up"),
        "{message}"
    );
    let pool = status_json(&d, "warm");
    let warnings = pool["warnings"].as_array().expect("a warnings list");
    assert!(warnings.iter().any(|w| w.as_str().is_some_and(named)), "{pool}");
    let text = String::from_utf8_lossy(&d.pitctl(&["status", "warm"]).stdout).to_string();
    assert!(text.contains("warning: 1 socket(s) open"), "{text}");
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("WARN") && named(l)),
        "a WARN in pitd's log names it:\n{log}"
    );
    drop(listener);
}
