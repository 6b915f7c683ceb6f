//! Hostile and broken peers: callers that never send or never read, a thousand idle
//! connections, invalid bytes; workers that spam their output, fork-bomb, or blow their
//! address space; other users knocking on the sockets.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use pit::call_client::{CallClient, CallOptions, Outcome};

use crate::harness::{DEADLINE, TestDaemon, python, wait_until, worker};

fn app_pool(size: u32, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.app]\napp = \"callapp\"\npython = \"{}\"\ncwd = \"{}\"\nsize = {size}\nkill_timeout = \"2s\"\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\n{extra}\n",
        python(),
        worker("apps")
    )
}

fn idle(d: &TestDaemon, n: usize) {
    d.wait_pool(&format!("{n} idle workers"), "app", |p| {
        p.workers.iter().filter(|w| w.state.as_str() == "idle").count() == n
    });
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn echo_works(d: &TestDaemon) -> bool {
    let mut c = CallClient::connect(&d.call_socket()).unwrap();
    matches!(
        c.call("app", "echo", "\"hi\"", &CallOptions::default()),
        Ok(Outcome::Ok { .. })
    )
}

#[test]
fn a_thousand_idle_connections_cost_little_and_everyone_else_is_served() {
    let d = TestDaemon::start(&app_pool(1, ""));
    idle(&d, 1);
    let before = vm_rss_kib(d.pid());
    let mut idle_conns = Vec::new();
    for i in 0..1000 {
        let path = if i % 2 == 0 { d.call_socket() } else { d.control.clone() };
        idle_conns.push(UnixStream::connect(path).unwrap());
    }
    assert!(echo_works(&d));
    assert!(d.try_status().is_ok());
    let grown = vm_rss_kib(d.pid()).saturating_sub(before);
    assert!(grown < 48 * 1024, "pitd grew by {grown} KiB for 1000 idle connections");
    drop(idle_conns);
    assert!(echo_works(&d));
}

#[test]
fn a_caller_that_never_reads_its_replies_is_throttled_and_others_are_served() {
    let d = TestDaemon::start(&app_pool(2, ""));
    idle(&d, 2);
    let before = vm_rss_kib(d.pid());
    let mut greedy = UnixStream::connect(d.call_socket()).unwrap();
    greedy.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    // 64 KiB replies, never read: pitd must stop reading this caller instead of buffering.
    let body = format!(
        "{{\"id\": 1, \"pool\": \"app\", \"method\": \"echo\", \"args\": \"{}\"}}",
        "y".repeat(64 * 1024)
    );
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body.as_bytes());
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(10) && sent < 5000 {
        if greedy.write_all(&frame).is_err() {
            break; // pitd stopped reading us: backpressure works
        }
        sent += 1;
    }
    assert!(
        sent < 5000,
        "pitd kept reading a caller that reads nothing ({sent} calls)"
    );
    assert!(echo_works(&d), "another caller is still served");
    let grown = vm_rss_kib(d.pid()).saturating_sub(before);
    assert!(grown < 96 * 1024, "pitd grew by {grown} KiB holding unread replies");
}

#[test]
fn invalid_utf8_and_truncated_frames_get_errors_not_crashes() {
    let d = TestDaemon::start(&app_pool(1, ""));
    idle(&d, 1);
    let mut s = UnixStream::connect(d.call_socket()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let garbage = b"{\"id\": 5, \"pool\": \"\xff\xfe\", \"method\": \"echo\"}";
    s.write_all(&(garbage.len() as u32).to_be_bytes()).unwrap();
    s.write_all(garbage).unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    let mut reply = vec![0u8; u32::from_be_bytes(head) as usize];
    s.read_exact(&mut reply).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["error"]["kind"], "bad_request", "{reply}");
    assert_eq!(reply["id"], 5);
    // A frame cut short, then the caller vanishes.
    s.write_all(&[0, 0, 1, 0, b'{']).unwrap();
    drop(s);
    assert!(echo_works(&d));
}

#[test]
fn a_worker_spamming_stdout_does_not_grow_pitd_or_stall_other_workers() {
    let d = TestDaemon::start(&app_pool(2, ""));
    idle(&d, 2);
    let before = vm_rss_kib(d.pid());
    std::thread::scope(|s| {
        let spam = s.spawn(|| {
            let mut c = CallClient::connect(&d.call_socket()).unwrap();
            c.call("app", "spam", "300000", &CallOptions::default()).unwrap()
        });
        // While one worker prints 30 MB, the other answers promptly.
        wait_until("the spamming worker to be busy", || {
            let p = d.try_status()?.pools.remove(0);
            if p.workers.iter().any(|w| w.state.as_str() == "busy") {
                Ok(())
            } else {
                Err("idle".into())
            }
        });
        let t = Instant::now();
        for _ in 0..20 {
            assert!(echo_works(&d));
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "calls stalled behind the spammer: {:?}",
            t.elapsed()
        );
        assert!(matches!(spam.join().unwrap(), Outcome::Ok { .. }));
    });
    let grown = vm_rss_kib(d.pid()).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "pitd grew by {grown} KiB while a worker printed 30 MB"
    );
    assert!(d.log().contains("lines not logged"), "the log says it throttled");
}

#[test]
fn rlimits_as_turns_a_huge_allocation_into_a_memory_error() {
    let d = TestDaemon::start(&app_pool(1, "[pools.app.rlimits]\nas = \"1GiB\""));
    idle(&d, 1);
    let mut c = CallClient::connect(&d.call_socket()).unwrap();
    match c.call("app", "allocate", "2048", &CallOptions::default()).unwrap() {
        Outcome::Err { kind, message, .. } => {
            assert_eq!(kind, pit::proto::call::ErrorKind::HandlerError);
            assert!(message.contains("MemoryError"), "{message}");
        }
        other => panic!("expected a MemoryError, got {other:?}"),
    }
    assert!(echo_works(&d), "the worker survives its MemoryError");
}

fn root_with_system_python() -> Option<&'static str> {
    let py = "/usr/bin/python3";
    (nix::unistd::geteuid().is_root() && std::path::Path::new(py).exists()).then_some(py)
}

#[test]
fn a_fork_bomb_is_stopped_by_rlimits_nproc() {
    // RLIMIT_NPROC does not bind root: the pool runs as nobody.
    let Some(py) = root_with_system_python() else {
        eprintln!("skipped: needs root (to run the worker as nobody) and /usr/bin/python3");
        return;
    };
    let body = app_pool(1, "user = \"nobody\"\n[pools.app.rlimits]\nnproc = 40")
        .replace(&format!("python = \"{}\"", python()), &format!("python = \"{py}\""));
    let d = TestDaemon::start(&body);
    idle(&d, 1);
    let mut c = CallClient::connect(&d.call_socket()).unwrap();
    match c.call("app", "fork_bomb", "500", &CallOptions::default()).unwrap() {
        Outcome::Ok { result, .. } => {
            assert!(result["forked"].as_u64().unwrap() < 40, "{result}");
            assert!(
                result["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Resource temporarily unavailable"),
                "{result}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(echo_works(&d));
}

#[test]
fn another_user_is_refused_by_socket_mode_and_by_peer_credentials() {
    let Some(_) = root_with_system_python() else {
        eprintln!("skipped: needs root to connect as another user");
        return;
    };
    let pitctl = env!("CARGO_BIN_EXE_pitctl");
    let as_nobody = |d: &TestDaemon| {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(pitctl)
            .arg("--socket")
            .arg(&d.control)
            .arg("status")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    // 0600: the kernel refuses the connection (a private temp dir also bars the path).
    let d = TestDaemon::start(&app_pool(1, ""));
    std::fs::set_permissions(d.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = as_nobody(&d);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    drop(d);
    // 0666 lets anyone connect; pitd checks the peer's uid and refuses.
    let d = TestDaemon::start(&format!("control_mode = \"0666\"\n{}", app_pool(1, "")));
    std::fs::set_permissions(d.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = as_nobody(&d);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not allowed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
