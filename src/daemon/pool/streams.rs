//! The stream half of the pool core (INTERFACE section 9): a stream's chunks go to its
//! caller as the worker yields them, each joined to the other replies of its connection;
//! the credit for a chunk goes back to the worker once its caller's connection has taken
//! it, so at most `stream_window` chunks of one stream are ever held in between. Cancels
//! by the caller (`{"cancel": id}`) land here too, streaming or not.

use std::time::Instant;

use super::call::StreamCredit;
use super::core::PoolCore;
use super::{Call, ReplyTx};
use crate::ids::WorkerId;
use crate::lifecycle::Reason;
use crate::proto::call::ErrorKind;
use crate::proto::worker::encode_credit_into;

impl PoolCore {
    /// A chunk the worker yielded for call `req_id`.
    pub(super) fn on_chunk(&mut self, id: WorkerId, req_id: u64, body: Vec<u8>, now: Instant) {
        let idle = self.spec.stream_idle_timeout;
        let Some(w) = self.workers.get_mut(&id) else { return };
        if !w.calls.holds(req_id) {
            tracing::error!(pool = %self.spec.name, worker = %id, req_id, "sent a chunk of a call it was not given; killing it");
            let why = format!("protocol error (sent a chunk of call {req_id}, which it was not given)");
            return self.kill_worker(id, Reason::ProtocolError, why);
        }
        w.last_seen = now;
        // A call already answered (cancelled, timed out) has no one to send to: the worker
        // has been told to stop.
        let Some((call, deadline)) = w.calls.running_mut(req_id) else {
            return;
        };
        if !call.stream {
            tracing::warn!(pool = %self.spec.name, worker = %id, req_id, "sent a chunk of a call that is not a stream; dropped");
            return;
        }
        if let (Some(idle), Some(ends_by)) = (idle, call.ends_by) {
            *deadline = ends_by.min(now + idle);
        }
        let frame = call.chunk(id, &body);
        let to = call.reply.clone();
        self.call_metrics.stream_chunks.inc();
        self.queue_reply(to, frame);
    }

    /// Callers' connections took these chunks: their streams may send as many more. Credit
    /// goes back half a window at a time: one CREDIT (and one read by the worker) per few
    /// chunks rather than per chunk, while the worker still has the other half to send.
    pub(super) fn on_credit(&mut self, credits: Vec<StreamCredit>) {
        let threshold = (self.spec.stream_window / 2).max(1);
        let mut writes: Vec<(WorkerId, Vec<u8>)> = Vec::new();
        for c in credits {
            // A stream that ended or was cancelled needs no more credit.
            let Some((call, _)) = self
                .workers
                .get_mut(&c.worker)
                .and_then(|w| w.calls.running_mut(c.req_id))
            else {
                continue;
            };
            call.credit_held += c.n;
            if call.credit_held < threshold {
                continue;
            }
            let n = std::mem::take(&mut call.credit_held);
            let at = match writes.iter().position(|(w, _)| *w == c.worker) {
                Some(at) => at,
                None => {
                    writes.push((c.worker, Vec::new()));
                    writes.len() - 1
                }
            };
            encode_credit_into(&mut writes[at].1, c.req_id, n);
        }
        for (id, frames) in writes {
            self.write(id, frames);
        }
    }

    /// The caller cancelled its call `client_id`: answered `cancelled` at once; a worker
    /// running it is told to stop (a stream's generator is closed) and keeps the slot
    /// until it answers. A call already answered is left alone.
    pub(super) fn cancel(&mut self, caller: &ReplyTx, client_id: &[u8], now: Instant) {
        let mine = |c: &Call| c.reply.same_peer(caller) && *c.client_id == *client_id;
        if let Some(at) = self.calls.queue.iter().position(mine) {
            let call = self.calls.queue.remove(at).expect("position found");
            return self.fail_call(call, ErrorKind::Cancelled);
        }
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            let Some(w) = self.workers.get_mut(&id) else { continue };
            let cancelled = w.calls.cancel_where(now, mine);
            for (req_id, call) in cancelled {
                tracing::debug!(pool = %self.spec.name, worker = %id, "cancelled by its caller: {}", call.method);
                let frame = call.failed_on(&id.to_string(), ErrorKind::Cancelled, "cancelled by its caller");
                self.answer(call, frame, Some(ErrorKind::Cancelled), now);
                self.send_cancel(id, req_id);
            }
        }
    }

    /// Streams the workers are sending now.
    pub(super) fn streams_open(&self) -> u64 {
        self.workers
            .values()
            .map(|w| w.calls.running_where(|c| c.stream) as u64)
            .sum()
    }
}
