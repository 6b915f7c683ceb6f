//! sd_notify as systemd sees it: a datagram socket standing in for NOTIFY_SOCKET.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::harness::{DEADLINE, TestDaemon, python, worker};

fn messages_until(sock: &UnixDatagram, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while start.elapsed() < DEADLINE {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {want} within {DEADLINE:?}; got {seen:?}");
}

#[test]
fn ready_watchdog_status_and_stopping_reach_the_notify_socket() {
    let body = format!(
        "[pools.p]\ncommand = [\"{}\", \"{}\"]\nprotocol = \"none\"\nsize = 2\nkill_timeout = \"2s\"\n",
        python(),
        worker("sleeper.py")
    );
    let mut d = TestDaemon::configure(&body);
    let path = d.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    d.spawn_pitd_with_env(&[("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")]);
    let seen = messages_until(&sock, "READY=1");
    let ready = seen.last().unwrap();
    assert!(ready.contains("STATUS=1 pools, 2/2 workers ready"), "{ready}");
    // READY only once the pool reached its size.
    let p = d.pool("p");
    assert_eq!(p.workers.iter().filter(|w| w.state.as_str() == "idle").count(), 2);
    messages_until(&sock, "WATCHDOG=1");
    d.signal_and_wait(libc::SIGTERM);
    messages_until(&sock, "STOPPING=1");
    d.wait_no_survivors();
}
