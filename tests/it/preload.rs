//! Preloaded pools: workers forked from a template that imported the preload modules once,
//! with every guarantee of an exec'd worker (parent, group, rlimits, fds, reaping, no
//! survivors), a template that dies replaced without losing a worker, a whole-pool recycle
//! re-importing the code, and an import failure reported as a failing pool.

use serde_json::Value;

use crate::harness::{TestDaemon, events, python, wait_until, worker};

fn preload_pool(name: &str, size: u32, preload: &str, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.{name}]\napp = \"preload_app\"\npython = \"{}\"\nsize = {size}\ncwd = \"{}\"\n\
         preload = [{preload}]\nenv = {{ PYTHONPATH = \"{python_dir}\", PRELOAD_DELAY = \"0.3\" }}\n\
         kill_timeout = \"2s\"\nstartup_timeout = \"20s\"\n{extra}\n",
        python(),
        worker("apps")
    )
}

fn whoami(d: &TestDaemon, pool: &str) -> Value {
    let out = d.pitctl(&["call", pool, "whoami"]);
    assert!(
        out.status.success(),
        "call failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON result")
}

/// Calls until every one of the pool's current workers has answered; returns the answers.
fn answers_of_all(d: &TestDaemon, pool: &str) -> Vec<Value> {
    let ids: Vec<String> = d.pool(pool).workers.iter().map(|w| w.id.to_string()).collect();
    let mut seen: Vec<Value> = Vec::new();
    wait_until("an answer from every worker", || {
        let a = whoami(d, pool);
        if !seen.iter().any(|s| s["env_worker"] == a["env_worker"]) {
            seen.push(a);
        }
        let all = ids.iter().all(|id| seen.iter().any(|s| s["env_worker"] == id.as_str()));
        if all {
            Ok(())
        } else {
            Err(format!("{} of {}", seen.len(), ids.len()))
        }
    });
    seen
}

fn template_pids(d: &TestDaemon) -> Vec<u32> {
    let log = d.log();
    log.lines()
        .filter_map(|l| l.split("started the preload template (pid ").nth(1))
        .filter_map(|rest| rest.split(')').next()?.parse().ok())
        .collect()
}

#[test]
fn forked_workers_are_pitd_children_in_their_own_group_with_the_pools_limits() {
    let spec = format!(
        "monitor_interval = \"100ms\"\n{}",
        preload_pool("pre", 2, "\"preload_heavy\"", "[pools.pre.rlimits]\nnofile = 200")
    );
    let d = TestDaemon::start(&spec);
    d.wait_pool("2 ready workers", "pre", |p| {
        p.workers.iter().filter(|w| w.state.to_string() == "idle").count() == 2
    });
    let templates = template_pids(&d);
    assert_eq!(templates.len(), 1, "one template for the pool: {templates:?}");
    for a in answers_of_all(&d, "pre") {
        let pid = a["pid"].as_u64().unwrap();
        assert_eq!(a["ppid"].as_u64().unwrap(), d.pid() as u64, "re-parented to pitd: {a}");
        assert_eq!(a["pgid"].as_u64().unwrap(), pid, "leads its own process group: {a}");
        assert_eq!(a["sid"].as_u64().unwrap(), pid, "leads its own session: {a}");
        assert_eq!(
            a["loaded_by"].as_u64().unwrap(),
            templates[0] as u64,
            "imported once, in the template: {a}"
        );
        assert_eq!(a["table"], 50_000);
        assert_eq!(a["env_worker"], a["ctx_worker"], "{a}");
        assert_eq!(a["nofile"], 200, "the pool's rlimits: {a}");
        let fds: Vec<u64> = a["fds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let extra: Vec<&u64> = fds.iter().filter(|fd| **fd > 4).collect();
        // fds 0-4, plus the one listing /proc/self/fd.
        assert!(extra.len() <= 1, "only the protocol fds and stdio are open: {fds:?}");
    }
    // Shared pages are reported as such: PSS beside RSS, and below it.
    let pool = d.wait_pool("PSS and USS measured", "pre", |p| {
        p.workers.iter().all(|w| w.pss_bytes.is_some() && w.uss_bytes.is_some())
    });
    for w in &pool.workers {
        let (pss, uss) = (w.pss_bytes.unwrap(), w.uss_bytes.unwrap());
        assert!(
            uss <= pss && pss < w.rss_bytes,
            "{}: uss {uss} pss {pss} rss {}",
            w.id,
            w.rss_bytes
        );
    }
    // Output of a forked worker is captured under its own id.
    let out = d.pitctl(&["call", "pre", "shout", "\"hey\""]);
    assert!(out.status.success());
    wait_until("the worker's print in pitctl logs", || {
        let logs = d.pitctl(&["logs", "pre"]);
        let text = String::from_utf8_lossy(&logs.stdout).to_string();
        if text.contains("shouting hey") {
            Ok(())
        } else {
            Err(text)
        }
    });
}

#[test]
fn a_killed_worker_is_forked_again_and_a_killed_template_costs_no_worker() {
    let d = TestDaemon::start(&preload_pool(
        "pre",
        2,
        "\"preload_heavy\"",
        "[pools.pre.restart]\ninitial = \"10ms\"",
    ));
    let pool = d.wait_pool("2 ready workers", "pre", |p| {
        p.workers.iter().all(|w| w.state.to_string() == "idle") && p.workers.len() == 2
    });
    let template = template_pids(&d)[0];

    let victim = &pool.workers[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = d.wait_pool("a replacement under a new id", "pre", |p| {
        p.workers.len() == 2
            && p.workers
                .iter()
                .all(|w| w.id != victim.id && w.state.to_string() == "idle" || w.id == pool.workers[1].id)
            && !p.workers.iter().any(|w| w.id == victim.id)
    });
    assert!(after.restarts >= 1);
    for a in answers_of_all(&d, "pre") {
        assert_eq!(
            a["loaded_by"].as_u64().unwrap(),
            template as u64,
            "forked from the same template: {a}"
        );
    }
    assert_eq!(
        template_pids(&d).len(),
        1,
        "the template was not restarted for a worker's crash"
    );

    // The template dies: both workers keep serving, and the next worker comes from a new one.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(template as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the template's exit logged", || {
        let log = d.log();
        if log.contains(&format!("the preload template (pid {template}) exited")) {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let ids_before: Vec<String> = d.pool("pre").workers.iter().map(|w| w.id.to_string()).collect();
    for _ in 0..4 {
        whoami(&d, "pre");
    }
    let ids_now: Vec<String> = d.pool("pre").workers.iter().map(|w| w.id.to_string()).collect();
    assert_eq!(ids_before, ids_now, "no worker was lost with the template");
    let out = d.pitctl(&["recycle", "pre"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recycled = d.wait_pool("both workers replaced", "pre", |p| {
        p.workers.len() == 2
            && p.workers
                .iter()
                .all(|w| !ids_before.contains(&w.id.to_string()) && w.state.to_string() == "idle")
    });
    assert_eq!(recycled.workers.len(), 2);
    let newest = *template_pids(&d).last().unwrap();
    assert_ne!(newest, template);
    for a in answers_of_all(&d, "pre") {
        assert_eq!(
            a["loaded_by"].as_u64().unwrap(),
            newest as u64,
            "a recycled pool re-imports: {a}"
        );
    }
}

#[test]
fn a_preload_that_cannot_import_marks_the_pool_failing_with_the_traceback() {
    let extra = "[pools.bad.restart]\ninitial = \"10ms\"\nmax = \"200ms\"\ncrash_loop_failures = 2\ncrash_loop_window = \"60s\"";
    let d = TestDaemon::start(&preload_pool("bad", 1, "\"json\", \"preload_fails\"", extra));
    let pool = d.wait_pool("the pool failing", "bad", |p| p.state.as_str() == "failing");
    let reason = pool.failing_reason.unwrap_or_default();
    assert!(
        reason.contains("model weights m-42 not found"),
        "the import error in status: {reason}"
    );
    let out = d.pitctl(&["call", "bad", "whoami"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pool_failing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nothing_of_a_preloaded_pool_survives_sigkill_of_pitd() {
    let mut d = TestDaemon::start(&preload_pool("pre", 3, "\"preload_heavy\"", ""));
    d.wait_pool("3 ready workers", "pre", |p| {
        p.workers.len() == 3 && p.workers.iter().all(|w| w.state.to_string() == "idle")
    });
    assert!(d.survivors().len() >= 5, "pitd, guard, template and workers are marked");
    d.signal_and_wait(9);
    d.wait_no_survivors();
}

#[test]
fn a_graceful_stop_leaves_no_template_behind() {
    let mut d = TestDaemon::start(&preload_pool("pre", 1, "\"preload_heavy\"", ""));
    d.wait_pool("a ready worker", "pre", |p| {
        p.workers.iter().any(|w| w.state.to_string() == "idle")
    });
    let status = d.signal_and_wait(15);
    assert!(status.success(), "{status:?}");
    d.wait_no_survivors();
}

#[test]
fn a_template_stuck_in_its_imports_is_killed_at_startup_timeout_and_the_pool_fails() {
    let extra = "[pools.stuck.restart]\ninitial = \"10ms\"\nmax = \"200ms\"\ncrash_loop_failures = 2";
    let spec = preload_pool("stuck", 1, "\"preload_heavy\"", extra)
        .replace("PRELOAD_DELAY = \"0.3\"", "PRELOAD_DELAY = \"60\"")
        .replace("startup_timeout = \"20s\"", "startup_timeout = \"500ms\"");
    let d = TestDaemon::start(&spec);
    let pool = d.wait_pool("the pool failing", "stuck", |p| p.state.as_str() == "failing");
    let reason = pool.failing_reason.unwrap_or_default();
    assert!(reason.contains("not ready within startup_timeout"), "{reason}");
    // Each stuck template was killed: at most the current probe's is alive.
    wait_until("at most one template alive", || {
        let alive = template_pids(&d)
            .into_iter()
            .filter(|pid| crate::harness::process_state(*pid).is_some_and(|s| s != 'Z'))
            .count();
        if alive <= 1 {
            Ok(())
        } else {
            Err(format!("{alive} alive"))
        }
    });
}

#[test]
fn a_template_printing_at_full_speed_is_logged_at_a_bounded_rate() {
    let d = TestDaemon::start(&preload_pool("pre", 1, "\"preload_chatty\"", ""));
    d.wait_pool("a ready worker", "pre", |p| {
        p.workers.iter().any(|w| w.state.to_string() == "idle")
    });
    let log = wait_until("the template's last line in pitd's log", || {
        let log = d.log();
        if log.contains("template: chatty done") {
            Ok(log)
        } else {
            Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
        }
    });
    let logged = log.lines().filter(|l| l.contains("template: chatty line")).count();
    assert!(
        (100..=400).contains(&logged),
        "a burst, then the rate limit: {logged} of 3000 lines logged"
    );
    assert!(
        log.lines().any(|l| l.contains("lines not logged (over 100/s)")),
        "the suppressed lines are counted: {}",
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 9 * 1024, "a 20000-character line is cut: {longest}");
    assert!(whoami(&d, "pre")["table"] == 50_000);
}

/// A preload that opens files at import (a logging FileHandler, a file kept open) gets the
/// template's lowest free fds; the workers' protocol pipes must not land on them.
#[test]
fn files_a_preload_opened_at_import_stay_its_own_in_every_worker() {
    let dir = tempfile::Builder::new().prefix("pit-it-files-").tempdir().unwrap();
    let log_path = dir.path().join("app.log");
    let spec = preload_pool("files", 2, "\"preload_opens_files\"", "")
        .replace("app = \"preload_app\"", "app = \"preload_files_app\"")
        .replace(
            "PRELOAD_DELAY = \"0.3\"",
            &format!("PRELOAD_LOG = \"{}\"", log_path.display()),
        );
    let d = TestDaemon::start(&spec);
    d.wait_pool("2 ready workers", "files", |p| {
        p.workers.len() == 2 && p.workers.iter().all(|w| w.state.to_string() == "idle")
    });
    let mut workers = std::collections::BTreeSet::new();
    for i in 0..20 {
        let out = d.pitctl(&["call", "files", "note", &i.to_string()]);
        assert!(
            out.status.success(),
            "call {i} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["log_fd"].as_u64().unwrap() > 4,
            "the log file is above the protocol fds: {v}"
        );
        workers.insert(v["worker"].as_str().unwrap().to_string());
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    let notes = std::fs::read_to_string(format!("{}.notes", log_path.display())).unwrap();
    for i in 0..20 {
        assert!(log.contains(&format!(": {i}\n")), "line {i} in the log file:\n{log}");
        assert!(
            notes.contains(&format!(": {i}\n")),
            "line {i} in the notes file:\n{notes}"
        );
    }
    let pool = d.pool("files");
    assert_eq!(pool.restarts, 0, "no worker was replaced");
    let events = String::from_utf8_lossy(&d.pitctl(&["events", "--json"]).stdout).to_string();
    assert!(
        !events.contains("protocol_error"),
        "no worker killed for a protocol error:\n{events}"
    );
    assert!(
        !d.log().contains("frame of"),
        "no garbage frame from a worker:\n{}",
        d.log()
    );
    assert!(!workers.is_empty());
}

fn status_json(d: &TestDaemon, pool: &str) -> Value {
    let out = d.pitctl(&["status", pool, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["pools"][0].clone()
}

/// A thread running in the template after its preload is missing from every worker: pitd
/// says so in its log, as an event and in status, and the template's output is in
/// `pitctl logs POOL`.
#[test]
fn threads_running_after_the_preload_are_warned_about_in_the_log_events_and_status() {
    let d = TestDaemon::start(&preload_pool("pre", 1, "\"preload_heavy\", \"preload_threads\"", ""));
    d.wait_pool("a ready worker", "pre", |p| {
        p.workers.iter().any(|w| w.state.to_string() == "idle")
    });
    let warned = |l: &&str| l.contains("WARN") && l.contains("thread(s) running in the preload template");
    let line = wait_until("the WARN in pitd's log", || {
        let log = d.log();
        log.lines().find(warned).map(str::to_string).ok_or(log)
    });
    assert!(
        line.contains("poller") && line.contains("pre"),
        "names the thread and the pool: {line}"
    );

    let event = wait_until("a template_warning event", || {
        let out = d.pitctl(&["events", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event"] == "template_warning")
            .ok_or(text)
    });
    assert_eq!(event["pool"], "pre", "{event}");
    assert!(event["message"].as_str().unwrap().contains("poller"), "{event}");

    let pool = status_json(&d, "pre");
    let warnings = pool["warnings"].as_array().expect("a warnings list");
    assert!(
        warnings.len() == 1 && warnings[0].as_str().unwrap().contains("poller"),
        "{pool}"
    );
    let text = String::from_utf8_lossy(&d.pitctl(&["status", "pre"]).stdout).to_string();
    assert!(text.contains("warning: 1 thread(s) running"), "{text}");

    wait_until("the template's print in pitctl logs", || {
        let logs = d.pitctl(&["logs", "pre"]);
        let text = String::from_utf8_lossy(&logs.stdout).to_string();
        let line = text.lines().find(|l| l.contains("preload_threads: poller started"));
        match line {
            Some(l) if l.contains(" template out | ") => Ok(()),
            _ => Err(text),
        }
    });
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The template and its spare hold memory no worker row shows: status (JSON, text) and
/// metrics count them, and the template is named `pit template`.
#[test]
fn the_template_and_its_spare_are_in_status_and_metrics() {
    let spec = format!(
        "monitor_interval = \"100ms\"\n{}",
        preload_pool("pre", 2, "\"preload_heavy\"", "")
    );
    let d = TestDaemon::start(&spec);
    let pool = wait_until("the template and spare measured", || {
        let pool = status_json(&d, "pre");
        let t = &pool["template"];
        let measured = |p: &Value| p["pid"].as_u64() > Some(0) && p["pss_bytes"].as_u64() > Some(0);
        let ready = pool["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["state"] == "idle")
            .count();
        if ready == 2 && measured(t) && measured(&t["spare"]) {
            Ok(pool)
        } else {
            Err(pool.to_string())
        }
    });
    let t = &pool["template"];
    let (template, spare) = (t["pid"].as_u64().unwrap(), t["spare"]["pid"].as_u64().unwrap());
    for p in [t, &t["spare"]] {
        let (rss, pss, uss) = (
            p["rss_bytes"].as_u64().unwrap(),
            p["pss_bytes"].as_u64().unwrap(),
            p["uss_bytes"].as_u64().unwrap(),
        );
        // A template whose every page is shared with the processes it forked has no
        // private memory at all: its USS may be 0, its PSS not.
        assert!(uss <= pss && pss <= rss && pss > 0, "{p}");
        assert!(p["memory_bytes"].as_u64().unwrap() > 0, "{p}");
    }
    let comm = |pid: u64| std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim().to_string());
    assert_eq!(comm(template).unwrap(), "pit template");
    assert_eq!(comm(spare).unwrap(), "pit spare");
    assert_eq!(template_pids(&d), [template as u32], "the pid pitd started");
    let workers: Vec<u64> = pool["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect();
    assert!(!workers.contains(&spare), "the spare is no worker: {pool}");

    let text = String::from_utf8_lossy(&d.pitctl(&["status", "pre"]).stdout).to_string();
    let row = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} row:\n{text}"))
            .to_string()
    };
    assert!(row("template").contains(&template.to_string()), "{text}");
    assert!(row("spare").contains(&spare.to_string()), "{text}");
    assert!(text.contains("memory: RSS"), "pool totals: {text}");

    let out = d.pitctl(&["metrics"]);
    let m = String::from_utf8_lossy(&out.stdout).to_string();
    let tpl = metric(&m, "pit_template_rss_bytes{pool=\"pre\",process=\"template\"}").expect(&m);
    let spr = metric(&m, "pit_template_rss_bytes{pool=\"pre\",process=\"spare\"}").expect(&m);
    assert!(tpl > 0.0 && spr > 0.0, "{m}");
    assert!(
        metric(&m, "pit_template_memory_bytes{pool=\"pre\",process=\"template\"}").is_some(),
        "{m}"
    );
    let total = metric(&m, "pit_pool_rss_bytes{pool=\"pre\"}").expect(&m);
    assert!(
        total > tpl + spr,
        "the pool's total has its workers, template and spare: {total}"
    );
    assert!(metric(&m, "pit_pool_memory_bytes{pool=\"pre\"}").is_some(), "{m}");
    assert!(
        m.contains("pit_worker_memory_bytes{pool=\"pre\",worker=\"worker-"),
        "{m}"
    );

    // A replacement takes the spare: the next spare is reported, and the old one is a worker.
    let out = d.pitctl(&["recycle", pool["workers"][0]["id"].as_str().unwrap(), "--now"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the spare became a worker and a new spare is measured", || {
        let pool = status_json(&d, "pre");
        let pids: Vec<u64> = pool["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pid"].as_u64().unwrap())
            .collect();
        let next = pool["template"]["spare"]["pid"].as_u64();
        if pids.contains(&spare) && next.is_some_and(|p| p != spare && !pids.contains(&p)) {
            Ok(())
        } else {
            Err(pool.to_string())
        }
    });
}

#[test]
fn idle_preloaded_workers_told_to_stop_exit_by_themselves_without_interpreter_teardown() {
    // Tearing the interpreter down would take each worker 30 s: far past kill_timeout.
    let d = TestDaemon::start(&preload_pool(
        "app",
        4,
        "\"preload_heavy\", \"preload_slow_teardown\"",
        "",
    ));
    let ids: Vec<String> = d
        .wait_pool("4 idle workers", "app", |p| {
            p.workers.len() == 4 && p.workers.iter().all(|w| w.state.as_str() == "idle")
        })
        .workers
        .iter()
        .map(|w| w.id.to_string())
        .collect();
    answers_of_all(&d, "app");
    let out = d.pitctl(&["drain", "app", "--wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exits: Vec<Value> = events(&d)
        .into_iter()
        .filter(|e| e["event"] == "worker_exited")
        .collect();
    for id in &ids {
        let exit = exits
            .iter()
            .find(|e| e["worker"] == id.as_str())
            .unwrap_or_else(|| panic!("no exit event for {id}: {exits:?}"));
        assert_eq!(exit["exit_status"], "exit code 0", "{id} exited by itself: {exit}");
    }
    assert!(!d.log().contains("sending SIGKILL"), "no worker needed SIGKILL");
}
