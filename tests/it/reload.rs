//! Reload (SIGHUP and `pitctl reload`): changed pools recycle with reason `reload`, sizes
//! scale, removed pools drain, new pools start, and an invalid spec changes nothing.

use crate::harness::{TestDaemon, python, worker};

fn pool(name: &str, size: u32, tag: &str) -> String {
    format!(
        "[pools.{name}]\ncommand = [\"{}\", \"{}\"]\nprotocol = \"none\"\nsize = {size}\nkill_timeout = \"2s\"\n\
         env = {{ TAG = \"{tag}\" }}\n",
        python(),
        worker("sleeper.py")
    )
}

fn write_spec(d: &TestDaemon, body: &str) {
    let head = format!(
        "[daemon]\ncontrol_socket = \"{}\"\ncall_socket = \"{}\"\n",
        d.control.display(),
        d.call_socket().display()
    );
    std::fs::write(&d.config, head + body).unwrap();
}

fn idle(d: &TestDaemon, name: &str, n: usize) {
    d.wait_pool(&format!("{n} idle workers in {name}"), name, |p| {
        p.workers.len() == n && p.workers.iter().all(|w| w.state.as_str() == "idle")
    });
}

#[test]
fn sighup_recycles_changed_pools_scales_adds_and_removes() {
    let d = TestDaemon::start(&format!(
        "{}{}{}",
        pool("a", 2, "one"),
        pool("b", 1, "one"),
        pool("gone", 1, "one")
    ));
    idle(&d, "a", 2);
    idle(&d, "b", 1);
    let before: Vec<u64> = d.pool("a").workers.iter().map(|w| w.id.0).collect();
    write_spec(
        &d,
        &format!(
            "{}{}{}",
            pool("a", 2, "two"),
            pool("b", 3, "one"),
            pool("new", 1, "one")
        ),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let a = d.wait_pool("pool a's workers replaced", "a", |p| {
        p.workers.len() == 2
            && p.workers
                .iter()
                .all(|w| !before.contains(&w.id.0) && w.state.as_str() == "idle")
    });
    // The replacements were started for the reload; nothing happened to them since.
    assert!(a.workers.iter().all(|w| w.last_recycle_reason.is_none()), "{a:?}");
    let out = d.pitctl(&["events", "--json"]);
    let started: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "worker_started" && e["pool"] == "a" && e["reason"] == "reload")
        .collect();
    for w in &a.workers {
        let ev = started.iter().find(|e| e["worker"] == w.id.to_string());
        let replaces = ev.and_then(|e| e["replaces"].as_str()).unwrap_or_default().to_string();
        assert!(
            before.iter().any(|&old| replaces == format!("worker-{old}")),
            "{w:?}: {ev:?}"
        );
    }
    idle(&d, "b", 3);
    idle(&d, "new", 1);
    crate::harness::wait_until("pool gone to be removed", || {
        let s = d.try_status()?;
        if s.pools.iter().any(|p| p.name == "gone") {
            Err("still listed".into())
        } else {
            Ok(())
        }
    });
}

#[test]
fn an_invalid_spec_is_refused_and_the_running_one_kept() {
    let d = TestDaemon::start(&pool("a", 1, "one"));
    idle(&d, "a", 1);
    let before = d.pool("a").workers[0].id;
    write_spec(
        &d,
        &format!("{}size = 0\n", pool("a", 1, "x").replace("size = 1\n", "")),
    );
    let out = d.pitctl(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reload refused") && err.contains("pools.a.size"), "{err}");
    let p = d.pool("a");
    assert_eq!(p.workers[0].id, before, "the running pool is untouched");
    write_spec(&d, &pool("a", 1, "one"));
    let out = d.pitctl(&["reload"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no changes"));
}
