//! Spawning, reaping, restarting and stopping real workers.

use std::time::Duration;

use pit::lifecycle::WorkerState;

use crate::harness::{TestDaemon, marked_processes, process_state, python, wait_until, worker};

fn sleeper_pool(name: &str, size: u32, extra: &str) -> String {
    format!(
        "[pools.{name}]\ncommand = [\"{}\", \"{}\"]\nprotocol = \"none\"\nsize = {size}\nkill_timeout = \"2s\"\n{extra}\n",
        python(),
        worker("sleeper.py")
    )
}

fn live_pids(d: &TestDaemon, pool: &str) -> Vec<u32> {
    d.pool(pool)
        .workers
        .iter()
        .filter(|w| w.pid != 0)
        .map(|w| w.pid)
        .collect()
}

#[test]
fn pool_starts_size_workers_in_their_own_process_groups() {
    let d = TestDaemon::start(&sleeper_pool("sleepy", 3, ""));
    let pool = d.wait_pool("3 idle workers", "sleepy", |p| {
        p.workers.len() == 3 && p.workers.iter().all(|w| w.state == WorkerState::Idle)
    });
    assert_eq!(pool.state.as_str(), "running");
    let ids: Vec<String> = pool.workers.iter().map(|w| w.id.to_string()).collect();
    assert_eq!(ids, ["worker-1", "worker-2", "worker-3"]);
    for w in &pool.workers {
        let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(w.pid as i32))).unwrap();
        assert_eq!(
            pgid.as_raw() as u32,
            w.pid,
            "worker {} leads its own process group",
            w.id
        );
    }
}

#[test]
fn kill9_worker_is_replaced_under_a_new_id_and_reaped() {
    let d = TestDaemon::start(&sleeper_pool("p", 2, "[pools.p.restart]\ninitial = \"10ms\"\n"));
    let before = d.wait_pool("2 workers", "p", |p| {
        p.workers.iter().filter(|w| w.pid != 0).count() == 2
    });
    let victim = &before.workers[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = d.wait_pool("a replacement with a new id", "p", |p| {
        p.workers.len() == 2
            && p.workers
                .iter()
                .all(|w| w.id != victim.id && w.state == WorkerState::Idle)
    });
    assert_eq!(after.workers.iter().map(|w| w.id.0).max(), Some(3));
    assert_eq!(after.restarts, 1);
    // Reaped: no zombie left with the victim's pid among pitd's children.
    wait_until("the killed worker to be reaped", || match process_state(victim.pid) {
        Some('Z') => Err("zombie".into()),
        _ => Ok(()),
    });
}

#[test]
fn crash_looping_pool_is_marked_failing_with_the_reason_and_bounded_restarts() {
    let body = format!(
        "[pools.broken]\ncommand = [\"/bin/sh\", \"{}\"]\nprotocol = \"none\"\nsize = 2\n\
         [pools.broken.restart]\ninitial = \"10ms\"\nmax = \"2s\"\ncrash_loop_failures = 4\ncrash_loop_window = \"30s\"\n",
        worker("crash_on_start.sh")
    );
    let d = TestDaemon::start(&body);
    let pool = d.wait_pool("the pool to be failing", "broken", |p| p.state.as_str() == "failing");
    let why = pool.failing_reason.clone().unwrap_or_default();
    assert!(why.contains("exit code 3"), "{why}");
    let pool = d.wait_pool("the stderr lines in the reason", "broken", |p| {
        p.failing_reason
            .as_deref()
            .is_some_and(|r| r.contains("missing_dependency"))
    });
    // While failing, pitd probes once per `max` (2s): restarts stay bounded.
    let restarts_then = pool.restarts;
    std::thread::sleep(Duration::from_millis(1500));
    let later = d.pool("broken");
    assert!(
        later.restarts <= restarts_then + 1,
        "restarts went from {restarts_then} to {}",
        later.restarts
    );
    let text = d.pitctl(&["status"]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("failing: crash loop"), "{out}");
}

#[test]
fn rlimits_env_fds_and_stdin_are_observed_from_inside_the_worker() {
    let body = format!(
        "[pools.lim]\ncommand = [\"{}\", \"{}\"]\nprotocol = \"none\"\nenv = {{ SPEC_VAR = \"from spec\" }}\n\
         [pools.lim.rlimits]\nnofile = 256\ncpu = \"1h\"\ncore = 0\n",
        python(),
        worker("report_limits.py")
    );
    let mut d = TestDaemon::configure(&body);
    d.spawn_pitd_with_env(&[
        ("NOTIFY_SOCKET", "/nonexistent"),
        ("WATCHDOG_USEC", "1000"),
        ("LISTEN_FDS", "2"),
    ]);
    d.wait_for_socket();
    let line = wait_until("the worker's report", || {
        let out = d.pitctl(&["logs", "lim", "-n", "10"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find_map(|l| l.split_once("REPORT ").map(|(_, j)| j.to_string()))
            .ok_or(text)
    });
    let report: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(report["limits"]["nofile"], serde_json::json!([256, 256]));
    assert_eq!(report["limits"]["cpu"], serde_json::json!([3600, 3600]));
    assert_eq!(report["limits"]["core"], serde_json::json!([0, 0]));
    assert_eq!(report["pgid"], report["pid"]);
    assert_eq!(report["sid"], report["pid"]);
    assert_eq!(report["stdin"], "/dev/null");
    let env = report["env"].as_object().unwrap();
    assert_eq!(env["SPEC_VAR"], "from spec");
    assert_eq!(env["PIT_POOL"], "lim");
    assert_eq!(env["PIT_WORKER_ID"], "worker-1");
    for scrubbed in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"] {
        assert!(
            !env.contains_key(scrubbed),
            "{scrubbed} leaked into the worker: {env:?}"
        );
    }
    // 0-2 plus the fd Python's listdir itself opened: nothing of pitd's leaked in.
    let fds: Vec<u64> = report["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(&fds[..3], &[0, 1, 2]);
    assert!(fds.len() <= 4, "unexpected inherited fds: {fds:?}");
}

#[test]
fn sigterm_stops_every_worker_and_exits_zero() {
    let mut d = TestDaemon::start(&sleeper_pool("p", 2, "env = { FORK_CHILD = \"1\" }"));
    d.wait_pool("2 workers", "p", |p| {
        p.workers.iter().filter(|w| w.pid != 0).count() == 2
    });
    let status = d.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    d.wait_no_survivors();
    assert!(!d.control.exists(), "the control socket file is removed on exit");
}

#[test]
fn sigkill_of_pitd_leaves_no_worker_nor_a_workers_child_and_a_new_pitd_starts_cleanly() {
    let mut d = TestDaemon::start(&sleeper_pool("p", 2, "env = { FORK_CHILD = \"1\" }"));
    d.wait_pool("2 workers", "p", |p| {
        p.workers.iter().filter(|w| w.pid != 0).count() == 2
    });
    // Each worker and its child: 4 marked processes besides pitd and the guard.
    wait_until("workers' children to exist", || {
        let n = marked_processes(&d.marker).len();
        if n >= 6 { Ok(()) } else { Err(format!("{n} processes")) }
    });
    let pids = live_pids(&d, "p");
    assert_eq!(pids.len(), 2);
    d.signal_and_wait(libc::SIGKILL);
    d.wait_no_survivors();
    // The stale socket file is still there; a second pitd replaces it.
    assert!(d.control.exists());
    let d = d.launch();
    d.wait_pool("the new pitd's workers", "p", |p| {
        p.workers.iter().filter(|w| w.pid != 0).count() == 2
    });
}
