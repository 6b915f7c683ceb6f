//! Streams in the core (INTERFACE section 9): chunks to the caller with their credit,
//! credit back to the worker, cancels, idle timeouts, a worker dying mid-stream. Inputs in,
//! effects out, as in `effects`.

use std::time::Instant;

use super::super::core::{Input, PoolCore};
use super::super::effect::Effect;
use super::super::seams::WorkerMsg;
use super::super::{Call, StreamCredit};
use super::call_kit::{Caller, caller, ms, req};
use super::effects::{W1, W2, exited, keyed_core, said};
use crate::proto::call::{ErrorKind, error_json};
use crate::proto::frame::FrameBuf;
use crate::proto::worker::{ToWorker, decode_to_worker, encode_call};

fn stream_call(c: &Caller, id: u64, idempotent: bool, now: Instant) -> Input {
    Input::Call(Call {
        req_id: req(id),
        client_id: id.to_string().into_bytes().into(),
        frame: encode_call(req(id), 0, "tokens", None, b"null"),
        method: "tokens".into(),
        session: None,
        timeout: None,
        idempotent,
        retried: false,
        reply: c.tx.clone(),
        slot: None,
        received: now,
        stream: true,
        chunks: 0,
        credit_held: 0,
        ends_by: None,
    })
}

fn chunk(id: crate::ids::WorkerId, call: u64, json: &str) -> Input {
    Input::Worker {
        id,
        msg: WorkerMsg::Chunk {
            req_id: req(call),
            body: json.as_bytes().to_vec(),
        },
    }
}

fn cancelled_by_worker(id: crate::ids::WorkerId, call: u64) -> Input {
    Input::Worker {
        id,
        msg: WorkerMsg::Reply {
            req_id: req(call),
            error: Some(ErrorKind::Cancelled),
            body: error_json(ErrorKind::Cancelled, "cancelled by pitd"),
        },
    }
}

/// The reply frames' bodies and the credit they carry, in order.
fn replies(core: &mut PoolCore) -> (Vec<String>, Vec<StreamCredit>) {
    let mut bodies = Vec::new();
    let mut credits = Vec::new();
    for e in core.take_effects() {
        if let Effect::Reply { mut frame, .. } = e {
            let mut buf = FrameBuf::new(1 << 20);
            let mut bytes = &frame.bytes[..];
            while buf.read_from(&mut bytes).unwrap() > 0 {}
            while let Some(body) = buf.next_frame().unwrap() {
                bodies.push(String::from_utf8(body.to_vec()).unwrap());
            }
            credits.append(&mut frame.credits.tags);
        }
    }
    (bodies, credits)
}

#[test]
fn a_streams_chunks_reach_its_caller_in_order_with_their_credit_and_the_credit_reaches_the_worker() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 1\nstream_window = 8", t0);
    let c = caller();
    core.handle(stream_call(&c, 1, false, t0), t0);
    let written: Vec<(bool, u32)> = core
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Write { frames, .. } => match decode_to_worker(&frames[4..]).unwrap() {
                ToWorker::Call { stream, window, .. } => Some((stream, window)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        written,
        [(true, 8)],
        "a stream, with the pool's window as its first credit"
    );
    // Two chunks in one batch leave in one frame, with both credits.
    let tick = core.feed(chunk(W1, 1, r#"{"token":"a"}"#), t0 + ms(1));
    let tick = core.feed(chunk(W1, 1, r#"{"token":"b"}"#), t0 + ms(1)) || tick;
    core.settle(tick, t0 + ms(1));
    let (bodies, credits) = replies(&mut core);
    assert_eq!(
        bodies,
        [r#"{"id":1,"chunk":{"token":"a"}}"#, r#"{"id":1,"chunk":{"token":"b"}}"#]
    );
    let credit = StreamCredit {
        worker: W1,
        req_id: req(1),
        n: 2,
    };
    assert_eq!(credits, [credit]);
    // Credit goes back half a window (4) at a time.
    core.handle(Input::Credit(credits), t0 + ms(2));
    assert_eq!(said(&mut core), Vec::<String>::new(), "2 of 4 held");
    core.handle(Input::Credit(vec![credit]), t0 + ms(2));
    assert_eq!(said(&mut core), ["worker-1: credit 1001"]);
    assert_eq!(core.status(t0 + ms(2)).streams_open, 1);
    // The end: one final reply, the stream closed.
    let done = Input::Worker {
        id: W1,
        msg: WorkerMsg::Reply {
            req_id: req(1),
            error: None,
            body: b"null".to_vec(),
        },
    };
    core.handle(done, t0 + ms(3));
    let (bodies, _) = replies(&mut core);
    assert_eq!(bodies, [r#"{"id":1,"ok":true,"result":null,"worker":"worker-1"}"#]);
    assert_eq!(core.status(t0 + ms(3)).streams_open, 0);
    // Credit for an ended stream goes nowhere.
    core.handle(Input::Credit(vec![credit]), t0 + ms(4));
    assert_eq!(said(&mut core), Vec::<String>::new());
}

#[test]
fn a_cancelled_stream_is_answered_at_once_its_worker_told_and_its_late_chunks_dropped() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 1", t0);
    let c = caller();
    core.handle(stream_call(&c, 1, false, t0), t0);
    core.take_effects();
    core.handle(chunk(W1, 1, "1"), t0 + ms(1));
    core.take_effects();
    let cancel = Input::Cancel {
        caller: c.tx.clone(),
        client_id: b"1".to_vec().into(),
    };
    core.handle(cancel, t0 + ms(2));
    let effects = core.take_effects();
    let mut out = Vec::new();
    for e in effects {
        match e {
            Effect::Write { frames, .. } => out.push(format!("{:?}", decode_to_worker(&frames[4..]).unwrap())),
            Effect::Reply { frame, .. } => out.push(String::from_utf8_lossy(&frame.bytes[4..]).into_owned()),
            _ => {}
        }
    }
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0], "Cancel { req_id: 1001 }");
    assert!(out[1].contains(r#""kind":"cancelled""#), "{out:?}");
    // A chunk already on its way, then the worker's own answer: nothing more for the caller.
    core.handle(chunk(W1, 1, "2"), t0 + ms(3));
    core.handle(cancelled_by_worker(W1, 1), t0 + ms(4));
    assert_eq!(replies(&mut core).0, Vec::<String>::new());
    // Its slot is free again: the next call goes to the worker.
    core.handle(stream_call(&c, 2, false, t0 + ms(5)), t0 + ms(5));
    assert_eq!(said(&mut core), ["worker-1: call 1002"]);
}

#[test]
fn a_stream_silent_past_stream_idle_timeout_fails_with_timeout_and_its_worker_is_told_not_killed() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 1\nstream_idle_timeout = \"100ms\"", t0);
    let c = caller();
    core.handle(stream_call(&c, 1, false, t0), t0);
    core.take_effects();
    // Chunks keep it alive past the first 100 ms.
    for i in 1..=3 {
        core.handle(chunk(W1, 1, "0"), t0 + ms(80 * i));
    }
    core.take_effects();
    core.tick(t0 + ms(300));
    assert_eq!(replies(&mut core).0, Vec::<String>::new(), "80 ms since its last chunk");
    core.tick(t0 + ms(341));
    let effects = core.take_effects();
    let signals = effects.iter().filter(|e| matches!(e, Effect::Signal { .. })).count();
    assert_eq!(signals, 0, "a stream is told to stop, not killed");
    let reply = effects
        .iter()
        .find_map(|e| match e {
            Effect::Reply { frame, .. } => Some(String::from_utf8_lossy(&frame.bytes[4..]).into_owned()),
            _ => None,
        })
        .expect("the caller is answered");
    assert!(reply.contains(r#""kind":"timeout""#), "{reply}");
    assert!(reply.contains("without a chunk (stream_idle_timeout)"), "{reply}");
}

#[test]
fn a_stream_that_sent_a_chunk_is_not_retried_when_its_worker_dies_even_if_idempotent() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 2", t0);
    let c = caller();
    core.handle(stream_call(&c, 1, true, t0), t0);
    core.handle(stream_call(&c, 2, true, t0), t0);
    core.take_effects();
    core.handle(chunk(W1, 1, "1"), t0 + ms(1));
    core.take_effects();
    for w in [W1, W2] {
        core.handle(exited(w, true, t0 + ms(2)), t0 + ms(2));
        let closed = Input::Worker {
            id: w,
            msg: WorkerMsg::Closed,
        };
        core.handle(closed, t0 + ms(2));
    }
    let effects = core.take_effects();
    let rerun: Vec<String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Write { frames, .. } => Some(format!("{:?}", decode_to_worker(&frames[4..]).unwrap())),
            _ => None,
        })
        .collect();
    assert!(rerun.is_empty(), "no worker is ready to run one again yet: {rerun:?}");
    let crashed: Vec<String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply { frame, .. } => Some(String::from_utf8_lossy(&frame.bytes[4..]).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        crashed.len(),
        1,
        "the stream that sent a chunk fails; the other waits: {crashed:?}"
    );
    assert!(crashed[0].starts_with(r#"{"id":1,"#) && crashed[0].contains("worker_crashed"));
    assert_eq!(
        core.status(t0 + ms(2)).queued,
        1,
        "the stream that sent nothing is retried"
    );
}

#[test]
fn a_caller_hanging_up_cancels_its_stream_on_a_one_call_worker() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 1", t0);
    let c = caller();
    core.handle(stream_call(&c, 1, false, t0), t0);
    core.take_effects();
    core.handle(Input::CallerGone(c.tx.clone()), t0 + ms(1));
    assert_eq!(said(&mut core), ["worker-1: cancel 1001"]);
    assert_eq!(core.status(t0 + ms(1)).streams_open, 0);
}

#[test]
fn a_chunk_of_a_call_the_worker_was_not_given_gets_it_killed() {
    let t0 = Instant::now();
    let mut core = keyed_core("size = 1", t0);
    core.handle(chunk(W1, 9, "1"), t0);
    assert_eq!(said(&mut core)[..2], ["SIGKILL to 1001", "event worker_recycled"]);
}
