//! Chaos: continuous calls from several clients while workers are SIGKILLed, stopped,
//! leak and hang. Every call must get a reply (ok or a documented error kind), idempotent
//! calls must not see worker deaths, and afterwards the pool is back to size with no zombie
//! and nothing of the run left behind. `PIT_CHAOS_SECS` makes each phase longer.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pit::call_client::{CallClient, CallOptions, Outcome};
use pit::proto::call::ErrorKind;

use crate::harness::{TestDaemon, python, worker};

fn phase_len() -> Duration {
    let secs = std::env::var("PIT_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    Duration::from_secs_f64(secs)
}

fn spec() -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.app]\napp = \"callapp\"\npython = \"{}\"\ncwd = \"{}\"\nsize = 3\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\nkill_timeout = \"500ms\"\nrequest_timeout = \"1s\"\n\
         max_rss = \"120MiB\"\nhealth_interval = \"300ms\"\nhealth_timeout = \"300ms\"\nhealth_failures = 2\n\
         [pools.app.restart]\ninitial = \"10ms\"\nmax = \"200ms\"\ncrash_loop_failures = 1000\n",
        python(),
        worker("apps")
    )
}

#[derive(Default)]
struct Tally {
    outcomes: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn add(&self, what: &str) {
        *self.outcomes.lock().unwrap().entry(what.to_string()).or_default() += 1;
    }
    fn get(&self) -> BTreeMap<String, u64> {
        self.outcomes.lock().unwrap().clone()
    }
}

/// Runs `clients` callers for the phase; each call's outcome is tallied by kind.
fn load(d: &TestDaemon, stop: &AtomicBool, tally: &Tally, method: &str, args: &str, idempotent: bool) {
    let mut c = CallClient::connect(&d.call_socket()).unwrap();
    let opts = CallOptions {
        idempotent,
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let end = Instant::now() + phase_len() * 3;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        match c.call("app", method, args, &opts) {
            Ok(Outcome::Ok { .. }) => tally.add("ok"),
            Ok(Outcome::Err { kind, .. }) => tally.add(kind.as_str()),
            Err(e) => panic!("a call got no reply: {e}"),
        }
    }
}

fn live_worker_pids(d: &TestDaemon) -> Vec<u32> {
    d.pool("app")
        .workers
        .iter()
        .filter(|w| w.pid != 0 && w.state.as_str() != "stopping")
        .map(|w| w.pid)
        .collect()
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

fn idle(d: &TestDaemon) {
    d.wait_pool("the pool back to 3 idle workers", "app", |p| {
        p.workers.len() == 3 && p.workers.iter().all(|w| w.state.as_str() == "idle")
    });
}

fn zombies_of(pid: u32) -> Vec<u32> {
    let mut z = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1).and_then(|pp| pp.parse::<u32>().ok()) == Some(pid) {
            z.push(p);
        }
    }
    z
}

#[test]
fn under_kills_idempotent_calls_never_fail_and_every_call_gets_a_documented_reply() {
    let d = TestDaemon::start(&spec());
    idle(&d);
    let documented: Vec<&str> = <ErrorKind as strum::VariantArray>::VARIANTS
        .iter()
        .map(|k| k.as_str())
        .collect();

    // Phase 1: SIGKILL a random worker every 200 ms under idempotent load.
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    let mut kills = 0;
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| load(&d, &stop, &tally, "echo", "\"payload\"", true));
        }
        let end = Instant::now() + phase_len();
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
            let pids = live_worker_pids(&d);
            if let Some(&pid) = pids.get(fastrand::usize(..pids.len().max(1))) {
                signal(pid, nix::sys::signal::Signal::SIGKILL);
                kills += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let phase1 = tally.get();
    assert!(kills >= 5, "only {kills} kills");
    assert!(phase1.get("ok").copied().unwrap_or(0) > 100, "{phase1:?}");
    assert_eq!(
        phase1.keys().collect::<Vec<_>>(),
        ["ok"],
        "idempotent calls failed under kills: {phase1:?}"
    );
    idle(&d);

    // Phase 2: kills, a stopped worker, leaks and hangs, all at once.
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    std::thread::scope(|s| {
        s.spawn(|| load(&d, &stop, &tally, "echo", "1", false));
        s.spawn(|| load(&d, &stop, &tally, "echo", "2", true));
        s.spawn(|| load(&d, &stop, &tally, "allocate", "4", false));
        s.spawn(|| load(&d, &stop, &tally, "sleep", "3", false));
        let end = Instant::now() + phase_len();
        let mut stopped_one = false;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(300));
            let pids = live_worker_pids(&d);
            if pids.is_empty() {
                continue;
            }
            let pid = pids[fastrand::usize(..pids.len())];
            if !stopped_one {
                signal(pid, nix::sys::signal::Signal::SIGSTOP);
                stopped_one = true;
            } else {
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let phase2 = tally.get();
    for kind in phase2.keys().filter(|k| *k != "ok") {
        assert!(
            documented.contains(&kind.as_str()),
            "undocumented error kind {kind}: {phase2:?}"
        );
    }
    assert!(
        phase2.get("timeout").copied().unwrap_or(0) > 0,
        "the hanging calls timed out: {phase2:?}"
    );
    eprintln!("chaos: kills {kills}; phase 1 {phase1:?}; phase 2 {phase2:?}");
    idle(&d);
    assert!(
        zombies_of(d.pid()).is_empty(),
        "zombies left: {:?}",
        zombies_of(d.pid())
    );
}
