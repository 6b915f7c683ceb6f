//! The call path of workers running several calls at once (`concurrency` > 1): routing
//! by fewest calls in flight, cancels on timeout and hang-up, stuck slots.

use std::time::Instant;

use super::super::PoolMsg;
use super::super::seams::WorkerMsg;
use super::call_kit::{W1, W2, caller, ms, pool, req};
use crate::ids::WorkerId;
use crate::proto::status::PoolState;
use crate::proto::worker::Ready;

#[tokio::test]
async fn with_several_slots_a_call_goes_to_the_worker_with_fewest_in_flight_and_a_session_waits() {
    let t0 = Instant::now();
    let mut h = pool("size = 2\nconcurrency = 2", t0);
    let mut c = caller();
    // (caller id, session, worker it goes to, or none: it waits)
    let rows: [(u64, Option<&str>, Option<WorkerId>); 5] = [
        (1, Some("s"), Some(W1)),
        (2, None, Some(W2)),
        (3, Some("s"), Some(W1)),
        (4, Some("s"), None),
        (5, None, Some(W2)),
    ];
    for (id, session, want) in rows {
        h.call(&c, id, session, t0);
        let to = [W1, W2]
            .into_iter()
            .find(|w| h.written(*w).iter().any(|(_, r)| *r == req(id)));
        assert_eq!(to, want, "call {id}");
    }
    assert_eq!(h.queued(t0), 1, "the session's worker is full: its call waits there");
    h.answer(W2, 2, t0 + ms(1));
    assert_eq!(h.queued(t0 + ms(1)), 1, "a free slot elsewhere does not take it");
    h.answer(W1, 1, t0 + ms(2));
    assert_eq!(h.written(W1).last(), Some(&("call", req(4))));
    let st = h.status(t0 + ms(2));
    assert_eq!((st.concurrency, st.in_flight, st.capacity), (2, 3, 4));
    assert!(c.replies().len() == 2);
}

#[tokio::test]
async fn with_several_slots_a_timed_out_call_is_cancelled_and_its_worker_recycled_only_if_it_keeps_the_slot() {
    let t0 = Instant::now();
    let mut h = pool(
        "size = 1\nconcurrency = 4\nrequest_timeout = \"1s\"\nkill_timeout = \"2s\"",
        t0,
    );
    let mut c = caller();
    h.call(&c, 1, None, t0);
    h.call(&c, 2, None, t0 + ms(500));
    h.tick(t0 + ms(1000));
    assert_eq!(c.replies(), [(1, "timeout".into(), Some("worker-1".into()))]);
    assert!(h.signals().is_empty(), "not killed: its other call goes on");
    assert_eq!(h.written(W1).last(), Some(&("cancel", req(1))));
    h.answer(W1, 2, t0 + ms(1200));
    assert_eq!(c.replies(), [(2, "ok".into(), Some("worker-1".into()))]);
    // The cancelled call still holds its slot past kill_timeout: replaced, gracefully.
    h.tick(t0 + ms(2999));
    assert_eq!(h.spawned(), [W1]);
    h.tick(t0 + ms(3000));
    assert_eq!(h.spawned(), [W1, W2], "a replacement first");
    assert!(h.signals().is_empty());
    // Its late answer frees the slot and is dropped.
    h.answer(W1, 1, t0 + ms(3001));
    assert!(c.replies().is_empty());
}

#[tokio::test]
async fn a_caller_that_hangs_up_has_its_calls_cancelled_and_its_queued_calls_dropped() {
    let t0 = Instant::now();
    let mut h = pool("size = 1\nconcurrency = 2", t0);
    let gone = caller();
    let mut stays = caller();
    h.call(&gone, 1, None, t0);
    h.call(&stays, 2, None, t0);
    h.call(&gone, 3, None, t0);
    assert_eq!(h.queued(t0), 1);
    h.actor.handle(PoolMsg::CallerGone(gone.tx.clone()), t0 + ms(1));
    assert_eq!(h.queued(t0 + ms(1)), 0, "its queued call is dropped");
    assert_eq!(h.written(W1).last(), Some(&("cancel", req(1))));
    h.answer(W1, 2, t0 + ms(2));
    assert_eq!(stays.replies(), [(2, "ok".into(), Some("worker-1".into()))]);
}

#[tokio::test]
async fn a_session_call_does_not_go_to_its_worker_once_that_worker_has_exited() {
    let t0 = Instant::now();
    let mut h = pool("size = 2\nconcurrency = 2", t0);
    let mut c = caller();
    h.call(&c, 1, Some("s"), t0);
    assert_eq!(h.written(W1), [("call", req(1))]);
    // Reaped with call 1 unanswered: its last replies may still be in its pipe.
    h.exited(W1, 1, t0 + ms(1));
    h.call(&c, 2, Some("s"), t0 + ms(2));
    assert_eq!(
        h.written(W1),
        [("call", req(1))],
        "nothing new for a worker that has exited"
    );
    assert_eq!(h.written(W2), [("call", req(2))], "the session moves on");
    h.worker_says(W1, WorkerMsg::Closed, t0 + ms(3));
    assert_eq!(c.replies(), [(1, "worker_crashed".into(), Some("worker-1".into()))]);
    h.answer(W2, 2, t0 + ms(4));
    assert_eq!(c.replies(), [(2, "ok".into(), Some("worker-2".into()))]);
}

#[tokio::test]
async fn a_worker_started_before_a_reload_changed_concurrency_is_recycled_not_killed_as_broken() {
    let t0 = Instant::now();
    let keys = "size = 2\nconcurrency = 1\nmax_surge = 1";
    let mut h = pool(keys, t0);
    // Worker 2 crashes and its replacement (3) is still starting when the reload comes.
    h.exited(W2, 1, t0 + ms(10));
    h.tick(t0 + ms(5000));
    let w3 = WorkerId(3);
    assert_eq!(h.spawned(), [W1, W2, w3]);
    h.started(w3, t0 + ms(5001));
    let text = format!(
        "[pools.p]\napp = \"app\"\n{}",
        keys.replace("concurrency = 1", "concurrency = 4")
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
    let spec = crate::spec::parse(&text, &path).unwrap().pools.remove(0);
    h.actor.handle(PoolMsg::Reconfigure(Box::new(spec)), t0 + ms(5002));
    // Worker 3 runs what it was started with: one call at a time.
    let ready = Ready {
        protocol: 1,
        pid: 1003,
        handlers: vec!["echo".into()],
        concurrency: 1,
        gil_enabled: Some(true),
        gil_reenabled: None,
    };
    h.worker_says(w3, WorkerMsg::Ready(ready), t0 + ms(5003));
    assert!(h.signals().is_empty(), "not killed: {:?}", h.signals());
    let st = h.status(t0 + ms(5003));
    assert_eq!(st.state, PoolState::Running, "no failed start booked");
    let w = st.workers.iter().find(|w| w.id == w3).unwrap();
    assert_eq!(w.state.as_str(), "idle");
}

#[tokio::test]
async fn a_worker_that_runs_other_than_it_was_asked_is_killed() {
    let t0 = Instant::now();
    let mut h = pool("size = 1\nconcurrency = 4", t0);
    h.exited(W1, 1, t0 + ms(1));
    h.tick(t0 + ms(5000));
    h.started(W2, t0 + ms(5000));
    let ready = Ready {
        protocol: 1,
        pid: 1002,
        handlers: vec!["echo".into()],
        concurrency: 1,
        gil_enabled: Some(true),
        gil_reenabled: None,
    };
    h.worker_says(W2, WorkerMsg::Ready(ready), t0 + ms(5001));
    assert_eq!(h.signals(), [(1002, nix::sys::signal::Signal::SIGKILL)]);
}
