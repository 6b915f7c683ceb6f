//! The control socket and pitctl as a user meets them: modes, garbage, JSON, exit codes.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

use crate::harness::{TestDaemon, python, wait_until, worker};

fn one_sleeper() -> String {
    format!(
        "[pools.p]\ncommand = [\"{}\", \"{}\"]\nprotocol = \"none\"\n",
        python(),
        worker("sleeper.py")
    )
}

#[test]
fn control_socket_is_0600_by_default_and_honours_control_mode() {
    let d = TestDaemon::start(&one_sleeper());
    let mode = std::fs::metadata(&d.control).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(d);
    let d = TestDaemon::start(&format!("control_mode = \"0660\"\n{}", one_sleeper()));
    let mode = std::fs::metadata(&d.control).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn garbage_on_the_control_socket_gets_an_error_and_pitd_keeps_serving() {
    let d = TestDaemon::start(&one_sleeper());
    let cases: [&[u8]; 3] = [
        b"\x00\x00\x00\x05hello",                // not JSON
        b"\x00\x00\x00\x10{\"cmd\":\"boom\"}  ", // unknown command
        b"\xff\xff\xff\xffxxxx",                 // oversized length
    ];
    for garbage in cases {
        let mut s = UnixStream::connect(&d.control).unwrap();
        s.write_all(garbage).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("bad_request"), "reply to {garbage:?}: {text}");
    }
    // Truncated frame, then hang up.
    let mut s = UnixStream::connect(&d.control).unwrap();
    s.write_all(b"\x00\x00\x01\x00{\"cm").unwrap();
    drop(s);
    assert_eq!(d.status().pools.len(), 1);
}

#[test]
fn status_json_has_the_interface_shape() {
    let d = TestDaemon::start(&one_sleeper());
    d.wait_pool("the worker to be idle", "p", |p| {
        p.workers.iter().any(|w| w.state.as_str() == "idle")
    });
    let out = d.pitctl(&["status", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["version", "pid", "uptime_s", "pools"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let pool = &v["pools"][0];
    for key in [
        "name", "state", "size", "workers", "requests", "errors", "queued", "recycled", "restarts",
    ] {
        assert!(pool.get(key).is_some(), "pool misses {key}");
    }
    let w = &pool["workers"][0];
    for key in [
        "id",
        "pid",
        "state",
        "health",
        "rss_bytes",
        "memory_bytes",
        "rss_growth_bytes_per_s",
        "cpu_percent",
        "requests",
        "errors",
        "age_s",
        "last_recycle_reason",
    ] {
        assert!(w.get(key).is_some(), "worker misses {key}");
    }
    assert_eq!(w["id"], "worker-1");
    assert_eq!(w["state"], "idle");
}

#[test]
fn status_json_gives_each_pools_memory_metric_and_rss_limits_null_when_unset() {
    let limited = format!(
        "[pools.q]\ncommand = [\"{}\", \"{}\"]\nprotocol = \"none\"\n\
         memory_metric = \"uss\"\nmax_rss = \"512MiB\"\nhard_rss = \"1GiB\"\n",
        python(),
        worker("sleeper.py")
    );
    let d = TestDaemon::start(&format!("{}{limited}", one_sleeper()));
    let out = d.pitctl(&["status", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pool = |name: &str| {
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let (p, q) = (pool("p"), pool("q"));
    assert_eq!(p["memory_metric"], "rss", "{p}");
    for key in ["max_rss_bytes", "hard_rss_bytes"] {
        assert!(
            p.get(key).is_some_and(|v| v.is_null()),
            "{key} of a pool without it: {p}"
        );
    }
    assert_eq!(q["memory_metric"], "uss", "{q}");
    assert_eq!(q["max_rss_bytes"], 512 << 20, "{q}");
    assert_eq!(q["hard_rss_bytes"], 1u64 << 30, "{q}");
    let text = String::from_utf8_lossy(&d.pitctl(&["status", "q"]).stdout).into_owned();
    assert!(text.contains("limits on USS: max_rss 512.0M, hard_rss 1.0G"), "{text}");
}

#[test]
fn pitctl_exit_codes_follow_the_contract() {
    let d = TestDaemon::start(&one_sleeper());
    assert_eq!(d.pitctl(&["status"]).status.code(), Some(0));
    let missing = d.pitctl(&["status", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no pool named \"nope\""));
    assert_eq!(d.pitctl(&["logs", "worker-999"]).status.code(), Some(1));
    assert_eq!(d.pitctl(&["frobnicate"]).status.code(), Some(2));
    let nobody = std::process::Command::new(env!("CARGO_BIN_EXE_pitctl"))
        .args(["--socket", d.dir.path().join("absent.sock").to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(3));
}

#[test]
fn logs_show_worker_output_tagged_per_worker_and_pool() {
    let d = TestDaemon::start(&one_sleeper());
    let text = wait_until("the worker's hello in its logs", || {
        let out = d.pitctl(&["logs", "worker-1"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("sleeper up") && text.contains("sleeper stderr hello") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(text.lines().all(|l| l.contains("worker-1")), "{text}");
    let pool = d.pitctl(&["logs", "p", "--json"]);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&pool.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["pool"], "p");
    assert_eq!(first["worker"], "worker-1");
}

#[test]
fn shutdown_request_stops_the_daemon() {
    let d = TestDaemon::start(&one_sleeper());
    let out = d.pitctl(&["shutdown"]);
    assert_eq!(out.status.code(), Some(0));
    d.wait_no_survivors();
}

#[test]
fn shutdown_wait_returns_once_pitd_has_exited() {
    // A worker that ignores SIGTERM holds pitd's stop for kill_timeout.
    let body = format!(
        "[pools.stubborn]\ncommand = [\"{}\", \"-c\", \"import signal, time; \
         signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)\"]\n\
         protocol = \"none\"\nkill_timeout = \"2s\"\n",
        python()
    );
    let mut d = TestDaemon::start(&body);
    wait_until("the worker's first line", || {
        let out = d.pitctl(&["logs", "stubborn"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("up") { Ok(()) } else { Err(text) }
    });
    let pid = d.pid();
    let out = d.pitctl(&["shutdown", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Exited: gone, or a zombie whose last threads the kernel may still be taking down
    // (its parent, this test, can reap it a moment later).
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
    });
    assert!(
        matches!(state, None | Some('Z' | 'X')),
        "pitd still running (state {state:?}) when shutdown --wait returned"
    );
    wait_until("pitd to be reaped", || {
        if d.has_exited() {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    d.wait_no_survivors();
    // Nothing to shut down: no daemon.
    assert_eq!(d.pitctl(&["shutdown", "--wait"]).status.code(), Some(3));
    // --timeout only with --wait.
    assert_eq!(d.pitctl(&["shutdown", "--timeout", "1s"]).status.code(), Some(2));
}

#[test]
fn completions_are_printed_for_each_shell_without_a_daemon() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pitctl"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("recycle") && text.contains("status"), "{shell}: {text}");
    }
}
