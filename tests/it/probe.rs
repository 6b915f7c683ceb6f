//! `pitctl probe` and the SIGTERM choreography of a rolling update, with the real pitd:
//! probes answered by pitd itself while every worker is busy; on SIGTERM, not ready at once,
//! calls still taken during `shutdown_delay`, no accepted call failing, exit 0.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pit::call_client::{CallClient, CallOptions, Outcome};
use pit::proto::call::ErrorKind;

use crate::harness::{TestDaemon, python, wait_until, worker};

fn app_pool(extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.app]\napp = \"callapp\"\npython = \"{}\"\nsize = 2\ncwd = \"{}\"\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\nkill_timeout = \"2s\"\n{extra}\n",
        python(),
        worker("apps")
    )
}

/// (exit code, the reason pitctl printed).
fn probe(d: &TestDaemon, kind: &str) -> (Option<i32>, String) {
    let out = d.pitctl(&["probe", kind]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn probes_say_startup_ready_and_live_and_fail_with_a_reason() {
    let d = TestDaemon::start(&app_pool(""));
    wait_until("startup", || match probe(&d, "startup") {
        (Some(0), _) => Ok(()),
        (code, why) => Err(format!("{code:?} {why}")),
    });
    assert_eq!(probe(&d, "ready").0, Some(0));
    assert_eq!(probe(&d, "live").0, Some(0));
    // Every worker busy: pitd still answers, and it is still ready.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut c = CallClient::connect(&d.call_socket()).unwrap();
                c.call("app", "sleep", "1.5", &CallOptions::default()).unwrap()
            });
        }
        d.wait_pool("both workers busy", "app", |p| {
            p.workers.iter().all(|w| w.state.as_str() == "busy")
        });
        assert_eq!(probe(&d, "ready").0, Some(0));
        assert_eq!(probe(&d, "live").0, Some(0));
    });
    assert!(d.pitctl(&["drain", "app", "--wait"]).status.success());
    let (code, why) = probe(&d, "ready");
    assert_eq!(code, Some(1));
    assert!(why.contains("pool app is drained"), "{why}");
    assert_eq!(probe(&d, "startup").0, Some(0), "startup stays done");
    let gone = TestDaemon::configure(&app_pool(""));
    assert_eq!(gone.pitctl(&["probe", "live"]).status.code(), Some(3), "no daemon");
}

#[test]
fn sigterm_turns_not_ready_at_once_keeps_taking_calls_for_the_delay_and_fails_no_accepted_call() {
    let configured = TestDaemon::configure(&app_pool(""));
    // shutdown_delay is a daemon key: the harness's spec has its own [daemon] table.
    let spec = std::fs::read_to_string(&configured.config).unwrap();
    std::fs::write(
        &configured.config,
        spec.replacen("[daemon]\n", "[daemon]\nshutdown_delay = \"3s\"\n", 1),
    )
    .unwrap();
    let mut daemon = configured.launch();
    let d = &daemon;
    wait_until("ready", || match probe(d, "ready") {
        (Some(0), _) => Ok(()),
        (code, why) => Err(format!("{code:?} {why}")),
    });
    let (stop, ok, failed, refused) = (
        AtomicBool::new(false),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let (not_ready_after, ok_during_delay) = std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok(mut c) = CallClient::connect(&d.call_socket()) else {
                        break;
                    };
                    match c.call("app", "sleep", "0.05", &CallOptions::default()) {
                        Ok(Outcome::Ok { .. }) => ok.fetch_add(1, Ordering::Relaxed),
                        // Refused before it was accepted: the caller tries another pitd.
                        Ok(Outcome::Err {
                            kind: ErrorKind::ShuttingDown,
                            ..
                        }) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(other) => {
                            eprintln!("failed: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        // The socket went away with pitd: nothing was accepted on it.
                        Err(_) => break,
                    };
                }
            });
        }
        wait_until("calls flowing", || {
            if ok.load(Ordering::Relaxed) > 10 {
                Ok(())
            } else {
                Err("not yet".into())
            }
        });
        let term = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        wait_until("not ready", || match probe(d, "ready") {
            (Some(1), why) if why.contains("shutting down") => Ok(()),
            (code, why) => Err(format!("{code:?} {why}")),
        });
        let not_ready_after = term.elapsed();
        let at = ok.load(Ordering::Relaxed);
        wait_until("calls still succeeding during the delay", || {
            if ok.load(Ordering::Relaxed) > at + 5 {
                Ok(())
            } else {
                Err("not yet".into())
            }
        });
        let ok_during_delay = term.elapsed() < Duration::from_secs(3);
        let status = d.status();
        assert!(status.shutting_down, "status says shutting_down");
        stop.store(true, Ordering::Relaxed);
        (not_ready_after, ok_during_delay)
    });
    assert!(ok_during_delay, "calls succeeded after SIGTERM, within the delay");
    eprintln!("not ready {not_ready_after:?} after SIGTERM (a pitctl round trip included)");
    let code = daemon.wait_exit().code();
    assert_eq!(code, Some(0));
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no accepted call failed");
    daemon.wait_no_survivors();
}
