//! What the call-path tests share: a ready pit pool, callers whose replies are recorded by
//! a fake reply port, and the workers' side spoken through the mailbox.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::routing::PIPELINE_STREAK;
use super::super::seams::WorkerMsg;
use super::super::{Call, PoolMsg, ReplyFrame, ReplyPort, ReplyTx};
use super::{Harness, spec_harness};
use crate::ids::WorkerId;
use crate::proto::call::{ErrorKind, error_json};
use crate::proto::frame::FrameBuf;
use crate::proto::worker::{Ready, ToWorker, decode_to_worker, encode_call};

pub(super) const W1: WorkerId = WorkerId(1);
pub(super) const W2: WorkerId = WorkerId(2);

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A pit pool of the given extra keys, its workers started and ready at `t0` (the first
/// one ready longest).
pub(super) fn pool(keys: &str, t0: Instant) -> Harness {
    let mut h = spec_harness(&format!("[pools.p]\napp = \"app\"\n{keys}\n"));
    h.actor.begin(t0);
    for id in h.spawned() {
        h.started(id, t0);
    }
    for (i, id) in h.spawned().into_iter().enumerate() {
        h.ready(id, t0 + ms(i as u64));
    }
    h
}

/// A caller's connection as the pool sees it: the bytes of the replies sent to it.
#[derive(Debug, Default)]
pub(super) struct Recorded(Mutex<Vec<u8>>);

impl ReplyPort for Arc<Recorded> {
    fn send(&self, frame: ReplyFrame) -> Result<(), ReplyFrame> {
        self.0.lock().unwrap().extend_from_slice(&frame.bytes);
        Ok(())
    }
    fn is_closed(&self) -> bool {
        false
    }
}

/// One caller's connection: the replies it got are read back from the recording.
pub(super) struct Caller {
    pub(super) tx: ReplyTx,
    sent: Arc<Recorded>,
    frames: FrameBuf,
    /// The ids of the stream chunks that arrived, in order, since the last look.
    pub(super) chunks: Vec<u64>,
    /// Calls with a final reply, and the ids of chunks that came after their call's.
    finished: std::collections::HashSet<u64>,
    pub(super) late_chunks: Vec<u64>,
}

pub(super) fn caller() -> Caller {
    let sent = Arc::new(Recorded::default());
    Caller {
        tx: ReplyTx::to(sent.clone()),
        sent,
        frames: FrameBuf::new(1 << 20),
        chunks: Vec::new(),
        finished: Default::default(),
        late_chunks: Vec::new(),
    }
}

impl Caller {
    /// The final replies that have arrived since the last look, as (id, ok or error kind,
    /// worker); chunks of streams go to `chunks`.
    pub(super) fn replies(&mut self) -> Vec<(u64, String, Option<String>)> {
        let bytes = std::mem::take(&mut *self.sent.0.lock().unwrap());
        let mut unread = &bytes[..];
        while self.frames.read_from(&mut unread).unwrap() > 0 {}
        let mut out = Vec::new();
        while let Some(body) = self.frames.next_frame().unwrap() {
            let v: Value = serde_json::from_slice(body).unwrap();
            let id = v["id"].as_u64().unwrap();
            if v.get("chunk").is_some() {
                match self.finished.contains(&id) {
                    true => self.late_chunks.push(id),
                    false => self.chunks.push(id),
                }
                continue;
            }
            self.finished.insert(id);
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
pub(super) fn decode_all(bytes: &[u8]) -> Vec<(&'static str, u64)> {
    let mut frames = FrameBuf::new(1 << 20);
    frames.read_from(&mut &bytes[..]).unwrap();
    let mut out = Vec::new();
    while let Some(body) = frames.next_frame().unwrap() {
        out.push(match decode_to_worker(body).unwrap() {
            ToWorker::Call { req_id, .. } => ("call", req_id),
            ToWorker::Ping { req_id } => ("ping", req_id),
            ToWorker::Cancel { req_id } => ("cancel", req_id),
            ToWorker::Credit { req_id, .. } => ("credit", req_id),
            ToWorker::CallBy { call, .. } => match *call {
                ToWorker::Call { req_id, .. } => ("call_by", req_id),
                other => panic!("a CALL_BY of {other:?}"),
            },
        });
    }
    out
}

/// Calls of this test: pitd's req id is 1000 + the caller's id.
pub(super) fn req(id: u64) -> u64 {
    1000 + id
}

impl Harness {
    pub(super) fn ready(&mut self, id: WorkerId, now: Instant) {
        let ready = Ready {
            protocol: 1,
            pid: 1000 + id.0 as u32,
            handlers: vec!["echo".into(), "slow".into()],
            concurrency: self.actor.core.spec.concurrency,
            gil_enabled: Some(true),
            gil_reenabled: None,
        };
        self.worker_says(id, WorkerMsg::Ready(ready), now);
    }

    pub(super) fn worker_says(&mut self, id: WorkerId, msg: WorkerMsg, now: Instant) {
        self.actor.handle(PoolMsg::FromWorker { id, msg }, now);
    }

    pub(super) fn answer(&mut self, id: WorkerId, call: u64, now: Instant) {
        let msg = WorkerMsg::Reply {
            req_id: req(call),
            error: None,
            body: b"1".to_vec(),
        };
        self.worker_says(id, msg, now);
    }

    pub(super) fn refuse(&mut self, id: WorkerId, call: u64, now: Instant) {
        let msg = WorkerMsg::Reply {
            req_id: req(call),
            error: Some(ErrorKind::QueueTimeout),
            body: error_json(ErrorKind::QueueTimeout, "not started in time"),
        };
        self.worker_says(id, msg, now);
    }

    pub(super) fn call(&mut self, c: &Caller, id: u64, session: Option<&str>, now: Instant) {
        self.call_with(c, id, session, None, false, now);
    }

    pub(super) fn call_with(
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
            stream: false,
            chunks: 0,
            ends_by: None,
        };
        self.actor.handle(PoolMsg::Call(call), now);
    }

    pub(super) fn tick(&mut self, now: Instant) {
        self.actor.timer(now);
    }

    /// Everything written to worker `id` so far.
    pub(super) fn written(&self, id: WorkerId) -> Vec<(&'static str, u64)> {
        let written = self.pipes.written.lock().unwrap();
        let bytes: Vec<u8> = written
            .iter()
            .filter(|(w, _)| *w == id)
            .flat_map(|(_, b)| b.clone())
            .collect();
        decode_all(&bytes)
    }

    pub(super) fn queued(&mut self, now: Instant) -> u64 {
        self.status(now).queued
    }

    /// Makes worker `id` one that answers short calls (pipelining's condition): a streak
    /// of calls answered at once. Caller ids 900.. are used.
    pub(super) async fn warm(&mut self, id: WorkerId, c: &mut Caller, now: Instant) {
        for i in 0..PIPELINE_STREAK as u64 {
            self.call(c, 900 + i, None, now);
            self.answer(id, 900 + i, now);
        }
        assert_eq!(c.replies().len(), PIPELINE_STREAK as usize);
    }
}
