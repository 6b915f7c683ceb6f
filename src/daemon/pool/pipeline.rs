//! Pipelining: when every worker is busy with short calls, queued calls are written behind
//! a worker's running call, so the worker reads the next one the moment it has answered,
//! instead of waiting for pitd to see the answer and send the next call (two wake-ups per
//! call). Up to `PIPELINE_DEPTH` calls (and `PIPELINE_BYTES`) wait in a worker's pipe;
//! those pitd hands over together go in one write, and the worker reads them with one read.
//!
//! A pipelined call is not started yet and can be taken back: it travels as a CALL_BY
//! frame that the worker starts only before its `start_by` (CLOCK_MONOTONIC, shared with
//! the workers). A worker answers a call before it starts the next, so when the worker's
//! running call is unanswered (nothing in the mailbox, nothing in the reply pipe), none of
//! its pipelined calls has started, and those past their `start_by` never will: pitd puts
//! them back at the front of the queue, and drops the worker's refusals when they come. A
//! pipelined call therefore runs at most once, and waits behind another call at most
//! `PIPELINE_HOLD` before any worker may take it. The start-by instants in one pipe never
//! increase towards its back, so the calls taken back are always its last ones and the
//! rest keep their order.

use std::time::{Duration, Instant};

use super::Call;
use super::core::PoolCore;
use super::parts::bind_session;
use super::routing::{Candidate, PIPELINE_HOLD, pick};
use crate::ids::WorkerId;
use crate::lifecycle::WorkerState;
use crate::proto::call::ErrorKind;
use crate::proto::worker::encode_call_by_into;

/// How soon pitd looks again at a pipe whose calls it could not take back yet.
const REVOKE_RETRY: Duration = Duration::from_millis(1);

impl PoolCore {
    /// After free workers have taken what they could: pipelines queued calls that would
    /// wait for a worker, oldest first. A call whose session is bound goes only behind its
    /// own worker; any other only when no worker has a free slot, to the worker with the
    /// fewest calls waiting in its pipe, one due for recycling only when no other has room
    /// (as in `dispatch`). The calls one worker gets here go in one write.
    pub(super) fn pipeline(&mut self, now: Instant) {
        let half_hold = now + PIPELINE_HOLD / 2;
        // Once every worker's pipe is full (the usual state under load), no queued call
        // can go anywhere: stop before scanning the queue.
        let any_room = self
            .workers
            .values()
            .any(|w| self.pipeline_open(w.id) && w.calls.may_pipeline(0, now, half_hold));
        if self.phase.shutting_down() || self.phase.drained() || !any_room {
            return;
        }
        // Each worker's calls leave in one write: (worker, frames, the calls in them).
        let mut writes: Vec<(WorkerId, Vec<u8>, Vec<u64>)> = Vec::new();
        let mut i = 0;
        while i < self.calls.queue.len() {
            let call = &self.calls.queue[i];
            let target = match self.bound_worker(call, now) {
                Some(b) => Some(b.worker).filter(|id| self.can_pipeline(*id, call, now)),
                None if self.free_worker().is_none() => pick(
                    self.workers
                        .values()
                        .filter(|w| self.can_pipeline(w.id, call, now))
                        .map(|w| Candidate {
                            worker: w.id,
                            due: self.due_for_recycle(w.id),
                            rank: (w.calls.pipelined().0, w.calls.running_since()),
                        }),
                ),
                None => None,
            };
            match target {
                Some(id) if !call.reply.is_closed() => {
                    let call = self.calls.queue.remove(i).expect("index checked");
                    let at = match writes.iter().position(|(w, _, _)| *w == id) {
                        Some(at) => at,
                        None => {
                            writes.push((id, Vec::new(), Vec::new()));
                            writes.len() - 1
                        }
                    };
                    writes[at].2.push(call.req_id);
                    self.pipeline_to(id, call, &mut writes[at].1, now);
                }
                _ => i += 1,
            }
        }
        for (id, frames, calls) in writes {
            self.write_calls(id, frames, calls);
        }
    }

    /// Whether the worker may be given pipelined calls at all: busy, serving, not on its
    /// way out, and with room in its `max_requests` for the calls it holds and one more.
    fn pipeline_open(&self, id: WorkerId) -> bool {
        let Some(w) = self.workers.get(&id) else { return false };
        w.state() == WorkerState::Busy
            && w.stop_reason.is_none()
            && w.exit.is_none()
            && w.writable
            && w.limits
                .max_requests
                .is_none_or(|max| w.requests + (w.calls.in_flight() as u64) < max)
    }

    /// Whether this call may be pipelined to this worker now.
    fn can_pipeline(&self, id: WorkerId, call: &Call, now: Instant) -> bool {
        // A stream holds its slot for long: it waits for a free one.
        !call.stream
            && self.pipeline_open(id)
            && self.workers.get(&id).is_some_and(|w| {
                w.handlers.contains(&call.method)
                    && w.calls.may_pipeline(call.frame.len(), now, now + PIPELINE_HOLD / 2)
            })
    }

    /// Books a call as pipelined to worker `id` and appends its CALL_BY frame to `frames`.
    fn pipeline_to(&mut self, id: WorkerId, mut call: Call, frames: &mut Vec<u8>, now: Instant) {
        let mut start_by = now + PIPELINE_HOLD;
        start_by = start_by.min(call.received + self.spec.queue.timeout);
        if let Some(t) = call.timeout {
            start_by = start_by.min(call.received + t);
        }
        let last = self.workers.get(&id).and_then(|w| w.calls.last_start_by());
        if let Some((last, _)) = last {
            start_by = start_by.min(last);
        }
        // Never later than the call ahead's, on the workers' clock too: what is overdue
        // is always at the back.
        let start_by_ns = self.deps.clock.ns(start_by).min(last.map_or(u64::MAX, |(_, ns)| ns));
        let deadline = self.call_deadline(&call, now);
        call.set_deadline(deadline, now);
        // The call keeps its own frame: if it is taken back, it is sent again.
        encode_call_by_into(frames, &call.frame, start_by_ns);
        bind_session(&mut self.calls.affinity, &call, id, now);
        if let Some(w) = self.workers.get_mut(&id) {
            w.call_started();
            let frame_len = call.frame.len();
            w.calls
                .pipeline(call.req_id, call, frame_len, deadline, start_by, start_by_ns);
        }
        self.call_metrics.pipelined.inc();
    }

    /// A call that never started goes back to the front of the queue (or is answered, if
    /// the pool no longer serves calls; while pitd shuts down, queued calls still run).
    pub(super) fn requeue_unstarted(&mut self, call: Call) {
        if self.phase.drained() {
            self.fail_call(call, ErrorKind::PoolDrained);
        } else {
            self.calls.queue.push_front(call);
        }
    }

    /// Takes back pipelined calls past their `start_by`. Runs after every message already
    /// in the mailbox has been handled, so an answer the reader has delivered is seen
    /// first; an answer still in the pipe postpones it.
    pub(super) fn take_back_overdue(&mut self, now: Instant, reply_waiting: &dyn Fn(WorkerId) -> bool) {
        let due: Vec<WorkerId> = self
            .workers
            .values()
            // A worker being killed keeps its calls until its exit settles them.
            .filter(|w| w.writable && w.calls.revoke_due(now))
            .map(|w| w.id)
            .collect();
        for id in due {
            let Some(w) = self.workers.get_mut(&id) else { continue };
            let overdue = w.calls.overdue(self.deps.clock.ns(now));
            if overdue == 0 || reply_waiting(id) {
                w.calls.postpone_revoke(now + REVOKE_RETRY);
                continue;
            }
            let back = w.calls.take_back(overdue);
            tracing::debug!(pool = %self.spec.name, worker = %id, "took back {overdue} calls from behind a long call");
            for call in back.into_iter().rev() {
                self.call_metrics.taken_back.inc();
                self.requeue_unstarted(call);
            }
        }
    }

    pub(super) fn pipeline_deadline(&self) -> Option<Instant> {
        self.workers
            .values()
            // A worker being killed keeps its calls until its exit settles them.
            .filter(|w| w.writable)
            .filter_map(|w| w.calls.revoke_at())
            .min()
    }
}
