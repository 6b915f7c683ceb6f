//! The pool's call path without processes: fake pipes record what pitd writes to each
//! worker, the test speaks for the workers through the mailbox, and callers are real socket
//! pairs whose replies are read back. `now` is passed in everywhere.

use std::os::unix::net::UnixStream as StdStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use super::super::pipe::WorkerMsg;
use super::super::routing::{PIPELINE_HOLD, PIPELINE_STREAK};
use super::super::{Call, PoolMsg, ReplyTx};
use super::{Harness, spec_harness};
use crate::ids::WorkerId;
use crate::proto::call::{ErrorKind, error_json};
use crate::proto::frame::FrameBuf;
use crate::proto::worker::{Ready, ToWorker, decode_to_worker, encode_call};

const W1: WorkerId = WorkerId(1);
const W2: WorkerId = WorkerId(2);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A pit pool of the given extra keys, its workers started and ready at `t0` (the first
/// one ready longest).
fn pool(keys: &str, t0: Instant) -> Harness {
    let mut h = spec_harness(&format!("[pools.p]\napp = \"app\"\n{keys}\n"));
    h.actor.fill(t0);
    for id in h.spawned() {
        h.started(id, t0);
    }
    for (i, id) in h.spawned().into_iter().enumerate() {
        h.ready(id, t0 + ms(i as u64));
    }
    h
}

/// One caller's connection: replies are read back from its other end.
struct Caller {
    tx: ReplyTx,
    peer: StdStream,
    frames: FrameBuf,
    _read: tokio::net::unix::OwnedReadHalf,
}

fn caller() -> Caller {
    let (ours, peer) = StdStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_nonblocking(true).unwrap();
    let (read, write) = tokio::net::UnixStream::from_std(ours).unwrap().into_split();
    Caller {
        tx: ReplyTx::new(write, None),
        peer,
        frames: FrameBuf::new(1 << 20),
        _read: read,
    }
}

impl Caller {
    /// The replies that have arrived, as (id, ok or error kind, worker). The runtime runs
    /// a few turns first: a reply the socket did not take at once is written by its
    /// connection's writer task.
    async fn replies(&mut self) -> Vec<(u64, String, Option<String>)> {
        for _ in 0..20 {
            tokio::task::yield_now().await;
            while self.frames.read_from(&mut self.peer).is_ok_and(|n| n > 0) {}
        }
        let mut out = Vec::new();
        while let Some(body) = self.frames.next_frame().unwrap() {
            let v: Value = serde_json::from_slice(body).unwrap();
            let outcome = match v["ok"].as_bool() {
                Some(true) => "ok".to_string(),
                _ => v["error"]["kind"].as_str().unwrap().to_string(),
            };
            out.push((
                v["id"].as_u64().unwrap(),
                outcome,
                v["worker"].as_str().map(str::to_string),
            ));
        }
        out
    }
}

/// What pitd wrote to a worker, in order: ("call" | "call_by" | "ping", pitd's req id).
fn decode_all(bytes: &[u8]) -> Vec<(&'static str, u64)> {
    let mut frames = FrameBuf::new(1 << 20);
    frames.read_from(&mut &bytes[..]).unwrap();
    let mut out = Vec::new();
    while let Some(body) = frames.next_frame().unwrap() {
        out.push(match decode_to_worker(body).unwrap() {
            ToWorker::Call { req_id, .. } => ("call", req_id),
            ToWorker::Ping { req_id } => ("ping", req_id),
            ToWorker::Cancel { req_id } => ("cancel", req_id),
            ToWorker::CallBy { call, .. } => match *call {
                ToWorker::Call { req_id, .. } => ("call_by", req_id),
                other => panic!("a CALL_BY of {other:?}"),
            },
        });
    }
    out
}

/// Calls of this test: pitd's req id is 1000 + the caller's id.
fn req(id: u64) -> u64 {
    1000 + id
}

impl Harness {
    fn ready(&mut self, id: WorkerId, now: Instant) {
        let ready = Ready {
            protocol: 1,
            pid: 1000 + id.0 as u32,
            handlers: vec!["echo".into(), "slow".into()],
            concurrency: self.actor.spec.concurrency,
            gil_enabled: Some(true),
        };
        self.worker_says(id, WorkerMsg::Ready(ready), now);
    }

    fn worker_says(&mut self, id: WorkerId, msg: WorkerMsg, now: Instant) {
        self.actor.handle(PoolMsg::FromWorker { id, msg }, now);
        self.actor.send_replies();
    }

    fn answer(&mut self, id: WorkerId, call: u64, now: Instant) {
        let msg = WorkerMsg::Reply {
            req_id: req(call),
            error: None,
            body: b"1".to_vec(),
        };
        self.worker_says(id, msg, now);
    }

    fn refuse(&mut self, id: WorkerId, call: u64, now: Instant) {
        let msg = WorkerMsg::Reply {
            req_id: req(call),
            error: Some(ErrorKind::QueueTimeout),
            body: error_json(ErrorKind::QueueTimeout, "not started in time"),
        };
        self.worker_says(id, msg, now);
    }

    fn call(&mut self, c: &Caller, id: u64, session: Option<&str>, now: Instant) {
        self.call_with(c, id, session, None, false, now);
    }

    fn call_with(
        &mut self,
        c: &Caller,
        id: u64,
        session: Option<&str>,
        timeout: Option<Duration>,
        idempotent: bool,
        now: Instant,
    ) {
        let call = Call {
            req_id: req(id),
            client_id: id.to_string().into_bytes().into(),
            frame: encode_call(req(id), 0, "echo", session, b"null"),
            method: "echo".into(),
            session: session.map(str::to_string),
            timeout,
            idempotent,
            retried: false,
            reply: c.tx.clone(),
            slot: None,
            received: now,
        };
        self.actor.handle(PoolMsg::Call(call), now);
        self.actor.send_replies();
    }

    fn tick(&mut self, now: Instant) {
        self.actor.tick(now);
        self.actor.take_back_overdue(now);
        self.actor.send_replies();
    }

    /// Everything written to worker `id` so far.
    fn written(&self, id: WorkerId) -> Vec<(&'static str, u64)> {
        let written = self.pipes.written.lock().unwrap();
        let bytes: Vec<u8> = written
            .iter()
            .filter(|(w, _)| *w == id)
            .flat_map(|(_, b)| b.clone())
            .collect();
        decode_all(&bytes)
    }

    fn queued(&mut self, now: Instant) -> u64 {
        self.status(now).queued
    }

    /// Makes worker `id` one that answers short calls (pipelining's condition): a streak
    /// of calls answered at once. Caller ids 900.. are used.
    async fn warm(&mut self, id: WorkerId, c: &mut Caller, now: Instant) {
        for i in 0..PIPELINE_STREAK as u64 {
            self.call(c, 900 + i, None, now);
            self.answer(id, 900 + i, now);
        }
        assert_eq!(c.replies().await.len(), PIPELINE_STREAK as usize);
    }
}

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
        c.replies().await,
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
        let got: Vec<(u64, String)> = c.replies().await.into_iter().map(|(id, k, _)| (id, k)).collect();
        let want: Vec<(u64, String)> = want.iter().map(|(id, k)| (*id, k.to_string())).collect();
        assert_eq!(got, want, "at +{at} ms");
    }
    h.answer(W1, 1, t0 + ms(1001));
    assert_eq!(c.replies().await, [(1, "ok".into(), Some("worker-1".into()))]);
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
    let ids: Vec<(u64, String)> = c.replies().await.into_iter().map(|(id, k, _)| (id, k)).collect();
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
    let ids: Vec<u64> = c.replies().await.into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids, [1, 2]);
}

#[tokio::test]
async fn a_call_past_its_timeout_is_answered_at_once_and_its_worker_killed() {
    let t0 = Instant::now();
    let mut h = pool("size = 1\nrequest_timeout = \"1s\"", t0);
    let mut c = caller();
    h.call(&c, 1, None, t0);
    h.tick(t0 + ms(999));
    assert!(c.replies().await.is_empty());
    h.tick(t0 + ms(1000));
    assert_eq!(c.replies().await, [(1, "timeout".into(), Some("worker-1".into()))]);
    assert_eq!(h.signals(), [(1001, Signal::SIGKILL)]);
    // Its late answer is dropped: one reply per call.
    h.answer(W1, 1, t0 + ms(1001));
    assert!(c.replies().await.is_empty());
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
        let replies = c.replies().await;
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
    h.actor.recycle_command(None, false, t0).unwrap();
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
    h.actor.drain_command(None, None, t0 + ms(4)).unwrap();
    h.call(&c, 4, None, t0 + ms(5));
    h.answer(W2, 3, t0 + ms(6));
    assert_eq!(h.signals().last(), Some(&(1002, Signal::SIGTERM)));
    let got: Vec<(u64, String)> = c.replies().await.into_iter().map(|(id, k, _)| (id, k)).collect();
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
    assert!(c.replies().await.len() == 2);
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
    assert_eq!(c.replies().await, [(1, "timeout".into(), Some("worker-1".into()))]);
    assert!(h.signals().is_empty(), "not killed: its other call goes on");
    assert_eq!(h.written(W1).last(), Some(&("cancel", req(1))));
    h.answer(W1, 2, t0 + ms(1200));
    assert_eq!(c.replies().await, [(2, "ok".into(), Some("worker-1".into()))]);
    // The cancelled call still holds its slot past kill_timeout: replaced, gracefully.
    h.tick(t0 + ms(2999));
    assert_eq!(h.spawned(), [W1]);
    h.tick(t0 + ms(3000));
    assert_eq!(h.spawned(), [W1, W2], "a replacement first");
    assert!(h.signals().is_empty());
    // Its late answer frees the slot and is dropped.
    h.answer(W1, 1, t0 + ms(3001));
    assert!(c.replies().await.is_empty());
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
    assert_eq!(stays.replies().await, [(2, "ok".into(), Some("worker-1".into()))]);
}
