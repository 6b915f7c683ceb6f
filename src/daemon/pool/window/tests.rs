//! The call window's rules, with plain values for calls.

use super::super::routing::{PIPELINE_FAST, PIPELINE_STREAK};
use super::*;

const ONE: WindowPolicy = WindowPolicy {
    slots: 1,
    pipeline_depth: 16,
};
const FOUR: WindowPolicy = WindowPolicy {
    slots: 4,
    pipeline_depth: 0,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A window whose worker has answered enough short calls to be pipelined to.
fn warmed(policy: WindowPolicy, t0: Instant) -> CallWindow<&'static str> {
    let mut w = CallWindow::new(policy);
    for i in 0..PIPELINE_STREAK as u64 {
        w.admit(1000 + i, "warm", t0 + ms(100), t0);
        assert!(matches!(w.complete(1000 + i, false, t0), Completion::Answered { .. }));
    }
    w
}

#[test]
fn a_slot_takes_one_call_and_frees_on_its_answer() {
    let t0 = Instant::now();
    let mut w = CallWindow::new(ONE);
    assert!(w.has_free_slot());
    w.admit(1, "a", t0 + ms(50), t0);
    assert!(!w.has_free_slot());
    assert_eq!(w.in_flight(), 1);
    assert_eq!(
        w.complete(1, false, t0 + ms(3)),
        Completion::Answered { call: "a", took: ms(3) }
    );
    assert!(w.is_empty() && w.has_free_slot());
}

#[test]
fn n_slots_run_n_calls_and_answers_come_in_any_order() {
    let t0 = Instant::now();
    let mut w = CallWindow::new(FOUR);
    for (id, name) in [(1, "a"), (2, "b"), (3, "c")] {
        w.admit(id, name, t0 + ms(50), t0);
    }
    assert!(w.has_free_slot());
    w.admit(4, "d", t0 + ms(50), t0);
    assert!(!w.has_free_slot());
    assert!(matches!(
        w.complete(3, false, t0),
        Completion::Answered { call: "c", .. }
    ));
    assert!(w.has_free_slot());
    assert_eq!(w.running_calls().copied().collect::<Vec<_>>(), ["a", "b", "d"]);
}

#[test]
fn answers_to_calls_it_does_not_hold_are_unknown() {
    let t0 = Instant::now();
    let mut w: CallWindow<&str> = CallWindow::new(ONE);
    assert_eq!(w.complete(9, false, t0), Completion::Unknown);
    w.admit(1, "a", t0 + ms(50), t0);
    assert_eq!(w.complete(2, false, t0), Completion::Unknown);
    assert_eq!(w.in_flight(), 1);
}

#[test]
fn a_timed_out_call_keeps_its_slot_until_the_worker_answers() {
    let t0 = Instant::now();
    let mut w = CallWindow::new(FOUR);
    w.admit(1, "slow", t0 + ms(10), t0);
    w.admit(2, "quick", t0 + ms(100), t0);
    assert_eq!(w.deadline(), Some(t0 + ms(10)));
    assert!(w.time_out(t0 + ms(9)).is_empty());
    assert_eq!(w.time_out(t0 + ms(10)), [(1, "slow", t0 + ms(10))]);
    assert_eq!(w.oldest_cancelled(), Some(t0 + ms(10)));
    assert_eq!(w.cancelled(), 1);
    assert_eq!(w.in_flight(), 2, "the slot is still the worker's");
    assert_eq!(w.deadline(), Some(t0 + ms(100)), "a timed-out call is not due again");
    assert!(matches!(
        w.complete(2, false, t0),
        Completion::Answered { call: "quick", .. }
    ));
    assert_eq!(w.complete(1, false, t0 + ms(20)), Completion::Late);
    assert!(w.is_empty());
}

#[test]
fn pipelining_needs_full_slots_a_fast_streak_and_room() {
    let t0 = Instant::now();
    let half_hold = t0 + ms(5);
    let mut cold = CallWindow::new(ONE);
    cold.admit(1, "a", t0 + ms(50), t0);
    assert!(!cold.may_pipeline(10, t0, half_hold), "no streak of fast calls yet");

    let mut w = warmed(ONE, t0);
    assert!(!w.may_pipeline(10, t0, half_hold), "a free slot: no need to pipeline");
    w.admit(1, "a", t0 + ms(50), t0);
    assert!(w.may_pipeline(10, t0, half_hold));
    assert!(
        !w.may_pipeline(10, t0 + PIPELINE_FAST + ms(1), half_hold),
        "the running call is already slow"
    );
    for i in 0..ONE.pipeline_depth as u64 {
        w.pipeline(10 + i, "p", 10, t0 + ms(50), t0 + ms(10), 10_000);
    }
    assert!(!w.may_pipeline(10, t0, half_hold), "the pipe is full");

    let mut near = warmed(ONE, t0);
    near.admit(1, "a", t0 + ms(50), t0);
    near.pipeline(2, "p", 10, t0 + ms(50), t0 + ms(4), 4_000);
    assert!(
        !near.may_pipeline(10, t0, half_hold),
        "its start-by is near: let it run dry"
    );

    let mut concurrent = warmed(FOUR, t0);
    for id in 1..=4 {
        concurrent.admit(id, "a", t0 + ms(50), t0);
    }
    assert!(
        !concurrent.may_pipeline(10, t0, half_hold),
        "no pipelining with depth 0"
    );
}

#[test]
fn the_first_pipelined_call_runs_when_the_call_ahead_is_answered() {
    let t0 = Instant::now();
    let mut w = warmed(ONE, t0);
    w.admit(1, "a", t0 + ms(50), t0);
    w.pipeline(2, "b", 10, t0 + ms(60), t0 + ms(10), 10);
    w.pipeline(3, "c", 10, t0 + ms(70), t0 + ms(10), 10);
    assert_eq!(w.in_flight(), 3);
    assert!(matches!(
        w.complete(1, false, t0 + ms(1)),
        Completion::Answered { call: "a", .. }
    ));
    assert_eq!(w.running_calls().copied().collect::<Vec<_>>(), ["b"]);
    assert_eq!(w.pipelined(), (1, 10));
    // Its deadline is its own, not the start-by.
    assert_eq!(w.deadline(), Some(t0 + ms(60)));
    assert_eq!(w.revoke_at(), Some(t0 + ms(10)), "when to look at taking `c` back");
    assert!(matches!(
        w.complete(2, false, t0 + ms(2)),
        Completion::Answered { call: "b", .. }
    ));
    assert!(matches!(
        w.complete(3, false, t0 + ms(3)),
        Completion::Answered { call: "c", .. }
    ));
    assert!(w.is_empty());
}

#[test]
fn a_pipelined_call_refused_past_its_start_by_never_ran() {
    let t0 = Instant::now();
    let mut w = warmed(ONE, t0);
    w.admit(1, "a", t0 + ms(50), t0);
    w.pipeline(2, "b", 10, t0 + ms(60), t0 + ms(10), 10);
    assert!(matches!(w.complete(1, false, t0 + ms(20)), Completion::Answered { .. }));
    assert_eq!(w.complete(2, true, t0 + ms(20)), Completion::NotStarted("b"));
    // A refusal of a call it was handed directly is an answer like any other.
    w.admit(3, "c", t0 + ms(50), t0);
    assert!(matches!(
        w.complete(3, true, t0),
        Completion::Answered { call: "c", .. }
    ));
}

#[test]
fn overdue_pipelined_calls_are_taken_back_from_the_back_and_their_refusals_dropped() {
    let t0 = Instant::now();
    let mut w = warmed(ONE, t0);
    w.admit(1, "a", t0 + ms(500), t0);
    w.pipeline(2, "b", 10, t0 + ms(500), t0 + ms(10), 10_000);
    w.pipeline(3, "c", 10, t0 + ms(500), t0 + ms(9), 9_000);
    w.pipeline(4, "d", 10, t0 + ms(500), t0 + ms(8), 8_000);
    assert!(!w.revoke_due(t0 + ms(7)));
    assert!(w.revoke_due(t0 + ms(8)));
    assert_eq!(w.overdue(7_000), 0);
    assert_eq!(w.overdue(9_000), 2);
    assert_eq!(w.take_back(2), ["c", "d"]);
    assert!(!w.may_pipeline(10, t0, t0), "nothing more until the refusals are in");
    assert_eq!(w.in_flight(), 2);
    assert_eq!(w.complete(3, true, t0 + ms(20)), Completion::TakenBack { ran: false });
    assert_eq!(w.complete(4, false, t0 + ms(20)), Completion::TakenBack { ran: true });
    // Nothing more overdue: look again later.
    assert_eq!(w.overdue(9_500), 0);
    w.postpone_revoke(t0 + ms(11));
    assert_eq!(w.revoke_at(), Some(t0 + ms(11)));
}

#[test]
fn a_dead_workers_calls_are_lost_or_unstarted_by_what_was_read() {
    let t0 = Instant::now();
    let fill = |w: &mut CallWindow<&'static str>| {
        w.admit(1, "a", t0 + ms(50), t0);
        w.pipeline(2, "b", 10, t0 + ms(60), t0 + ms(10), 10);
        w.pipeline(3, "c", 10, t0 + ms(60), t0 + ms(10), 10);
    };
    let mut w = warmed(ONE, t0);
    fill(&mut w);
    assert_eq!(
        w.settle_exit(true),
        Settled {
            lost: vec!["a"],
            unstarted: vec!["b", "c"]
        }
    );
    assert!(w.is_empty());
    let mut w = warmed(ONE, t0);
    fill(&mut w);
    assert_eq!(
        w.settle_exit(false),
        Settled {
            lost: vec!["a", "b", "c"],
            unstarted: vec![]
        },
        "a broken pipe: the pipelined calls may have started"
    );
    let mut w = CallWindow::new(FOUR);
    w.admit(1, "a", t0 + ms(5), t0);
    w.admit(2, "b", t0 + ms(50), t0);
    assert_eq!(w.time_out(t0 + ms(5)), [(1, "a", t0 + ms(5))]);
    assert_eq!(
        w.settle_exit(true),
        Settled {
            lost: vec!["b"],
            unstarted: vec![]
        },
        "a call already answered with timeout is not answered again"
    );
}

#[test]
fn calls_of_a_caller_that_is_gone_are_taken_and_keep_their_slots() {
    let t0 = Instant::now();
    let mut w = CallWindow::new(FOUR);
    w.admit(1, "gone", t0 + ms(50), t0);
    w.admit(2, "stays", t0 + ms(50), t0);
    assert_eq!(w.cancel_where(t0 + ms(1), |c| *c == "gone"), [(1, "gone")]);
    assert_eq!((w.in_flight(), w.oldest_cancelled()), (2, Some(t0 + ms(1))));
    assert_eq!(w.complete(1, false, t0 + ms(2)), Completion::Late);
}
