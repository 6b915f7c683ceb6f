//! `pitctl metrics` and the `metrics_listen` HTTP endpoint, validated by promtool when it is
//! available (`PROMTOOL`, PATH, or `target/tools/promtool` as `.ci/run` provides it).

use std::io::{Read, Write};
use std::path::PathBuf;

use pit::call_client::{CallClient, CallOptions};

use crate::harness::{TestDaemon, python, wait_until, worker};

fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/promtool");
    if local.exists() {
        return Some(local);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("promtool"))
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn metrics_count_calls_by_outcome_and_validate_with_promtool() {
    let port = free_port();
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    let body = format!(
        "metrics_listen = \"127.0.0.1:{port}\"\n[pools.app]\napp = \"callapp\"\npython = \"{}\"\ncwd = \"{}\"\nsize = 2\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\n",
        python(),
        worker("apps")
    );
    let d = TestDaemon::start(&body);
    d.wait_pool("2 idle workers", "app", |p| {
        p.workers.iter().filter(|w| w.state.as_str() == "idle").count() == 2
    });
    let mut c = CallClient::connect(&d.call_socket()).unwrap();
    for _ in 0..3 {
        c.call("app", "echo", "1", &CallOptions::default()).unwrap();
    }
    c.call("app", "fail", "1", &CallOptions::default()).unwrap();
    c.call("app", "nope", "1", &CallOptions::default()).unwrap();
    let out = d.pitctl(&["metrics"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "pit_calls_total{pool=\"app\",outcome=\"ok\"} 3",
        "pit_calls_total{pool=\"app\",outcome=\"handler_error\"} 1",
        // A call to a method the workers do not have never reached one: a refusal.
        "pit_calls_rejected_total{pool=\"app\",kind=\"no_such_method\"} 1",
        "pit_call_duration_seconds_count{pool=\"app\"} 4",
        "pit_workers{pool=\"app\",state=\"idle\"} 2",
        "pit_queue_depth{pool=\"app\"} 0",
        "pit_worker_rss_bytes{pool=\"app\",worker=\"worker-1\"}",
        "# TYPE pit_calls_total counter",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let http = wait_until("the metrics endpoint", || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(crate::harness::DEADLINE))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
        Ok::<_, String>(reply)
    });
    assert!(http.starts_with("HTTP/1.1 200 OK"), "{http}");
    assert!(http.contains("text/plain; version=0.0.4"), "{http}");
    let om = String::from_utf8(d.pitctl(&["metrics", "--openmetrics"]).stdout).unwrap();
    assert!(
        om.contains("# TYPE pit_calls counter") && om.ends_with("# EOF\n"),
        "{om}"
    );
    assert!(http.contains("pit_calls_total{pool=\"app\",outcome=\"ok\"} 3"));
    match promtool() {
        Some(tool) => {
            let mut child = std::process::Command::new(&tool)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "promtool check metrics failed:\n{report}\n{text}");
        }
        None => eprintln!("promtool not found: exposition not validated by promtool"),
    }
}

#[test]
fn refused_calls_are_counted_apart_from_the_calls_workers_ran() {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    let body = format!(
        "[pools.app]\napp = \"callapp\"\npython = \"{}\"\ncwd = \"{}\"\nsize = 1\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\n",
        python(),
        worker("apps")
    );
    let d = TestDaemon::start(&body);
    d.wait_pool("an idle worker", "app", |p| {
        p.workers.iter().any(|w| w.state.as_str() == "idle")
    });
    let mut c = CallClient::connect(&d.call_socket()).unwrap();
    for _ in 0..4 {
        c.call("app", "echo", "1", &CallOptions::default()).unwrap();
    }
    c.call("app", "fail", "1", &CallOptions::default()).unwrap();
    c.call("app", "nope", "1", &CallOptions::default()).unwrap();
    assert!(d.pitctl(&["drain", "app", "--wait"]).status.success());
    for _ in 0..7 {
        let reply = c.call("app", "echo", "1", &CallOptions::default()).unwrap();
        assert!(format!("{reply:?}").contains("PoolDrained"), "{reply:?}");
    }
    let p = d.pool("app");
    // The pool's calls and errors are the 5 calls its worker ran, not the refusals.
    assert_eq!((p.requests, p.errors), (5, 1), "{p:?}");
    assert_eq!(p.rejected["pool_drained"], 7, "{:?}", p.rejected);
    assert_eq!(p.rejected["no_such_method"], 1, "{:?}", p.rejected);
    assert_eq!(p.rejected["queue_full"], 0, "{:?}", p.rejected);
    let json: serde_json::Value = serde_json::from_slice(&d.pitctl(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["pools"][0]["rejected"]["pool_drained"], 7, "{json}");
    let text = String::from_utf8(d.pitctl(&["metrics"]).stdout).unwrap();
    for want in [
        "pit_calls_rejected_total{pool=\"app\",kind=\"pool_drained\"} 7",
        "pit_calls_rejected_total{pool=\"app\",kind=\"no_such_method\"} 1",
        "pit_calls_total{pool=\"app\",outcome=\"ok\"} 4",
        "pit_calls_total{pool=\"app\",outcome=\"handler_error\"} 1",
        "pit_calls_total{pool=\"app\",outcome=\"pool_drained\"} 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let status = String::from_utf8(d.pitctl(&["status"]).stdout).unwrap();
    assert!(status.contains("rejected 8"), "{status}");
}
