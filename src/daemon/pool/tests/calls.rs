//! The pool's call path without processes, one call at a time per worker (pipelining
//! included): fake pipes record what pitd writes to each worker, the test speaks for the
//! workers through the mailbox, and callers are real socket pairs whose replies are read
//! back. `now` is passed in everywhere.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::super::routing::{PIPELINE_HOLD, PIPELINE_STREAK};
use super::super::seams::WorkerMsg;
use super::call_kit::{W1, W2, caller, ms, pool, req};
use crate::daemon::pool::core::Command;

#[tokio::test]
async fn calls_go_to_the_longest_idle_worker_and_a_session_waits_for_its_own() {
    let t0 = Instant::now();
    let mut h = pool("size = 2", t0);
    let mut c = caller();
    h.call(&c, 1, Some("s"), t0);
    h.call(&c, 2, None, t0);
    assert_eq!(
        h.written(W1),
        [("call", req(1))],
        "the longest idle takes the first call"
    );
    assert_eq!(h.written(W2), [("call", req(2))]);
    // The session's worker is busy: its next call waits, even once another worker is free.
    h.call(&c, 3, Some("s"), t0);
    h.answer(W2, 2, t0 + ms(1));
    assert_eq!(h.queued(t0 + ms(1)), 1);
    assert_eq!(h.written(W2), [("call", req(2))], "not moved off its session's worker");
    h.call(&c, 4, None, t0 + ms(1));
    assert_eq!(
        h.written(W2),
        [("call", req(2)), ("call", req(4))],
        "a later call goes ahead"
    );
    h.answer(W1, 1, t0 + ms(2));
    assert_eq!(h.written(W1), [("call", req(1)), ("call", req(3))]);
    h.answer(W1, 3, t0 + ms(3));
    h.answer(W2, 4, t0 + ms(3));
    let w = |s: &str| Some(s.to_string());
    assert_eq!(
        c.replies(),
        [
            (2, "ok".into(), w("worker-2")),
            (1, "ok".into(), w("worker-1")),
            (3, "ok".into(), w("worker-1")),
            (4, "ok".into(), w("worker-2")),
        ]
    );
}

#[tokio::test]
async fn the_queue_refuses_past_queue_max_and_expires_its_calls() {
    let t0 = Instant::now();
    let mut h = pool("size = 1\nqueue_max = 2\nqueue_timeout = \"1s\"", t0);
    let mut c = caller();
    h.call(&c, 1, None, t0);
    h.call(&c, 2, None, t0);
    h.call_with(&c, 3, None, Some(ms(100)), false, t0);
    h.call(&c, 4, None, t0);
    assert_eq!(h.queued(t0), 2);
    // (tick at, replies then) — each call gets exactly one reply, when it is due.
    let rows: [(u64, &[(u64, &str)]); 3] = [
        (0, &[(4, "queue_full")]),
        (100, &[(3, "timeout")]),
        (1000, &[(2, "queue_timeout")]),
    ];
    for (at, want) in rows {
        h.tick(t0 + ms(at));
        let got: Vec<(u64, String)> = c.replies().into_iter().map(|(id, k, _)| (id, k)).collect();
        let want: Vec<(u64, String)> = want.iter().map(|(id, k)| (*id, k.to_string())).collect();
        assert_eq!(got, want, "at +{at} ms");
    }
    h.answer(W1, 1, t0 + ms(1001));
    assert_eq!(c.replies(), [(1, "ok".into(), Some("worker-1".into()))]);
}

#[tokio::test]
async fn calls_are_pipelined_behind_a_short_call_and_taken_back_behind_a_long_one() {
    // Start-by instants are on the workers' clock: with `now` in the past, they are due at
    // once on it.
    let t0 = Instant::now() - Duration::from_secs(10);
    let mut h = pool("size = 1", t0);
    let mut c = caller();
    h.warm(W1, &mut c, t0).await;
    h.call(&c, 1, None, t0);
    h.call(&c, 2, None, t0);
    h.call(&c, 3, None, t0);
    let warm = PIPELINE_STREAK as usize;
    assert_eq!(
        h.written(W1)[warm..],
        [("call", req(1)), ("call_by", req(2)), ("call_by", req(3))],
        "two calls wait in its pipe"
    );
    assert_eq!(h.queued(t0), 0);
    // An answer is still unread in its pipe: nothing is taken back yet.
    h.pipes.waiting.store(true, std::sync::atomic::Ordering::Relaxed);
    h.tick(t0 + PIPELINE_HOLD);
    assert_eq!(h.queued(t0 + PIPELINE_HOLD), 0);
    h.pipes.waiting.store(false, std::sync::atomic::Ordering::Relaxed);
    h.tick(t0 + PIPELINE_HOLD + ms(1));
    assert_eq!(h.queued(t0 + PIPELINE_HOLD), 2, "both taken back, in their order");
    // The long call ends; the worker refuses the calls it finds past their start-by; they
    // run afresh, one at a time now (the last call was long: no pipelining).
    let t1 = t0 + ms(50);
    h.answer(W1, 1, t1);
    h.refuse(W1, 2, t1);
    h.refuse(W1, 3, t1);
    assert_eq!(h.written(W1)[warm + 3..], [("call", req(2))]);
    h.answer(W1, 2, t1 + ms(5));
    h.answer(W1, 3, t1 + ms(6));
    let ids: Vec<(u64, String)> = c.replies().into_iter().map(|(id, k, _)| (id, k)).collect();
    assert_eq!(ids, [(1, "ok".into()), (2, "ok".into()), (3, "ok".into())], "each once");
}

#[tokio::test]
async fn a_pipelined_call_the_worker_refused_runs_again_and_is_answered_once() {
    let t0 = Instant::now();
    let mut h = pool("size = 1", t0);
    let mut c = caller();
    h.warm(W1, &mut c, t0).await;
    h.call(&c, 1, None, t0);
    h.call(&c, 2, None, t0);
    h.answer(W1, 1, t0 + ms(20));
    // It got to call 2 past its start-by and did not run it.
    h.refuse(W1, 2, t0 + ms(20));
    let warm = PIPELINE_STREAK as usize;
    assert_eq!(
        h.written(W1)[warm..],
        [("call", req(1)), ("call_by", req(2)), ("call", req(2))]
    );
    h.answer(W1, 2, t0 + ms(21));
    let ids: Vec<u64> = c.replies().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids, [1, 2]);
}

#[tokio::test]
async fn a_call_past_its_timeout_is_answered_at_once_and_its_worker_killed() {
    let t0 = Instant::now();
    let mut h = pool("size = 1\nrequest_timeout = \"1s\"", t0);
    let mut c = caller();
    h.call(&c, 1, None, t0);
    h.tick(t0 + ms(999));
    assert!(c.replies().is_empty());
    h.tick(t0 + ms(1000));
    assert_eq!(c.replies(), [(1, "timeout".into(), Some("worker-1".into()))]);
    assert_eq!(h.signals(), [(1001, Signal::SIGKILL)]);
    // Its late answer is dropped: one reply per call.
    h.answer(W1, 1, t0 + ms(1001));
    assert!(c.replies().is_empty());
    assert_eq!(h.spawned(), [W1, W2], "its replacement starts at once");
}

#[tokio::test]
async fn a_dead_workers_calls_fail_retry_or_go_to_another_worker_by_what_it_read() {
    // (how its reply pipe ended, what calls 1 (running, idempotent when asked), 2 and 3
    // (pipelined) become)
    let rows: [(&str, bool, [&str; 3]); 3] = [
        ("read to the end", false, ["worker_crashed", "queued", "queued"]),
        ("read to the end", true, ["queued", "queued", "queued"]),
        ("broken", false, ["worker_crashed", "worker_crashed", "worker_crashed"]),
    ];
    for (ended, idempotent, want) in rows {
        let t0 = Instant::now();
        let mut h = pool("size = 1", t0);
        let mut c = caller();
        h.warm(W1, &mut c, t0).await;
        h.call_with(&c, 1, None, None, idempotent, t0);
        h.call(&c, 2, None, t0);
        h.call(&c, 3, None, t0);
        let msg = match ended {
            "broken" => WorkerMsg::ProtocolError("garbage".into()),
            _ => WorkerMsg::Closed,
        };
        h.exited(W1, 1, t0 + ms(1));
        h.worker_says(W1, msg, t0 + ms(1));
        let replies = c.replies();
        let got: Vec<String> = (1..=3)
            .map(|id| match replies.iter().find(|r| r.0 == id) {
                Some((_, kind, worker)) => {
                    assert_eq!(worker.as_deref(), Some("worker-1"), "{ended}: names the worker");
                    kind.clone()
                }
                None => "queued".into(),
            })
            .collect();
        assert_eq!(got, want, "{ended}, idempotent: {idempotent}");
        let queued = want.iter().filter(|k| **k == "queued").count() as u64;
        assert_eq!(h.queued(t0 + ms(1)), queued, "{ended}");
        // The replacement takes them, oldest first.
        let t1 = t0 + Duration::from_secs(1);
        h.tick(t1);
        h.started(W2, t1);
        h.ready(W2, t1);
        let first = (1..=3).find(|id| want[*id as usize - 1] == "queued");
        assert_eq!(h.written(W2).first().map(|(_, r)| *r), first.map(req), "{ended}");
    }
}

#[tokio::test]
async fn recycling_and_draining_let_calls_in_flight_finish() {
    let t0 = Instant::now();
    let mut h = pool("size = 1", t0);
    let mut c = caller();
    h.call(&c, 1, None, t0);
    h.actor
        .command(
            Command::Recycle {
                worker: None,
                now: false,
            },
            t0,
        )
        .unwrap();
    assert_eq!(h.spawned(), [W1, W2], "the replacement first");
    h.started(W2, t0 + ms(1));
    h.ready(W2, t0 + ms(1));
    assert!(h.signals().is_empty(), "the old worker finishes its call first");
    h.call(&c, 2, None, t0 + ms(2));
    assert_eq!(h.written(W2), [("call", req(2))], "new calls go to the replacement");
    h.answer(W1, 1, t0 + ms(3));
    assert_eq!(h.signals(), [(1001, Signal::SIGTERM)], "stopped once its call is done");
    h.answer(W2, 2, t0 + ms(3));

    // Drain the pool with a call in flight: it finishes; new calls are refused.
    h.call(&c, 3, None, t0 + ms(4));
    h.actor
        .command(
            Command::Drain {
                worker: None,
                done: None,
            },
            t0 + ms(4),
        )
        .unwrap();
    h.call(&c, 4, None, t0 + ms(5));
    h.answer(W2, 3, t0 + ms(6));
    assert_eq!(h.signals().last(), Some(&(1002, Signal::SIGTERM)));
    let got: Vec<(u64, String)> = c.replies().into_iter().map(|(id, k, _)| (id, k)).collect();
    assert_eq!(
        got,
        [
            (1, "ok".into()),
            (2, "ok".into()),
            (4, "pool_drained".into()),
            (3, "ok".into())
        ]
    );
}
