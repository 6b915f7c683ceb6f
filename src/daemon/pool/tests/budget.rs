//! Memory budgets in the core: a surge that would cross the budget becomes a recycle in
//! place, and a pool over its budget gives back its largest worker, one at a time.

use std::time::Instant;

use super::super::core::{Command, Input, PoolCore};
use super::call_kit::ms;
use super::effects::{W1, W2, exited, keyed_core, pid, said};
use crate::daemon::monitor::TreeSample;
use crate::ids::WorkerId;

const MIB: u64 = 1024 * 1024;

fn sample(core: &mut PoolCore, id: WorkerId, mib: u64, now: Instant) {
    let bytes = mib * MIB;
    let sample = TreeSample {
        pid: pid(id),
        rss_bytes: bytes,
        memory_bytes: bytes,
        pss_bytes: None,
        uss_bytes: None,
        cpu_percent: 0.0,
        processes: 1,
        at: now,
    };
    core.handle(Input::Sample { id, sample }, now);
}

#[test]
fn a_recycle_whose_surge_would_cross_the_budget_drains_first_and_replaces_after_the_exit() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 2\nmemory_budget = \"100MiB\"", t0);
    sample(&mut core, W1, 40, t0);
    sample(&mut core, W2, 40, t0);
    said(&mut core);
    // 80 MiB used: a third worker of about 40 would make 120.
    let answer = core.command(
        Command::Recycle {
            worker: Some(W1),
            now: false,
        },
        t0 + ms(1),
    );
    assert!(answer.is_ok(), "{answer:?}");
    let out = said(&mut core);
    assert!(!out.iter().any(|e| e.starts_with("spawn")), "no surge: {out:?}");
    assert!(
        out.contains(&"SIGTERM to 1001".to_string()),
        "it drains (idle: stops) first: {out:?}"
    );
    core.handle(exited(W1, false, t0 + ms(5)), t0 + ms(5));
    let out = said(&mut core);
    assert!(
        out.iter().any(|e| e.starts_with("spawn")),
        "replaced after its exit: {out:?}"
    );
}

#[test]
fn with_room_under_the_budget_a_recycle_starts_its_replacement_first() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 2\nmemory_budget = \"200MiB\"", t0);
    sample(&mut core, W1, 40, t0);
    sample(&mut core, W2, 40, t0);
    said(&mut core);
    core.command(
        Command::Recycle {
            worker: Some(W1),
            now: false,
        },
        t0 + ms(1),
    )
    .unwrap();
    let out = said(&mut core);
    assert!(out.iter().any(|e| e.starts_with("spawn")), "{out:?}");
    assert!(!out.iter().any(|e| e.contains("SIGTERM")), "{out:?}");
}

#[test]
fn a_pool_over_its_budget_recycles_its_largest_worker_and_only_one_at_a_time() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 2\nmemory_budget = \"100MiB\"", t0);
    sample(&mut core, W1, 30, t0);
    sample(&mut core, W2, 90, t0 + ms(1));
    let out = said(&mut core);
    assert!(out.contains(&"event worker_recycled".to_string()), "{out:?}");
    assert!(out.contains(&"SIGTERM to 1002".to_string()), "the largest: {out:?}");
    // Still over while the largest exits: nothing more goes.
    sample(&mut core, W1, 35, t0 + ms(2));
    let out = said(&mut core);
    assert!(
        !out.iter().any(|e| e.contains("SIGTERM") || e.contains("recycled")),
        "{out:?}"
    );
    assert_eq!(core.status(t0 + ms(2)).memory_budget_bytes, Some(100 * MIB));
}

#[test]
fn the_daemons_allowance_is_a_budget_too() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 2", t0);
    sample(&mut core, W1, 30, t0);
    sample(&mut core, W2, 60, t0);
    said(&mut core);
    core.handle(Input::DaemonBudget(Some(80 * MIB)), t0 + ms(1));
    let out = said(&mut core);
    assert!(out.contains(&"SIGTERM to 1002".to_string()), "{out:?}");
}

#[test]
fn hard_rss_kills_a_worker_already_being_recycled() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 2\nmax_rss = \"100MiB\"\nhard_rss = \"200MiB\"", t0);
    sample(&mut core, W1, 150, t0);
    let out = said(&mut core);
    assert!(
        out.iter().any(|e| e.starts_with("spawn")),
        "recycled for max_rss, replacement first: {out:?}"
    );
    // Still serving while its replacement starts, it keeps growing past hard_rss.
    sample(&mut core, W1, 250, t0 + ms(1));
    let out = said(&mut core);
    assert!(out.contains(&"SIGKILL to 1001".to_string()), "{out:?}");
    assert!(
        !out.iter().any(|e| e.starts_with("spawn")),
        "its replacement is already on its way: {out:?}"
    );
}
