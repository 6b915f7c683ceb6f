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

use std::time::Instant;

use super::routing::{
    Candidate, PIPELINE_FAST, PIPELINE_HOLD, has_pipeline_room, may_pipeline, overdue_from_back, pick,
    pipe_has_bytes_for,
};
use super::{Call, PoolActor, bind_session};
use crate::ids::WorkerId;
use crate::lifecycle::{Reason, WorkerState};
use crate::proto::call::ErrorKind;
use crate::proto::worker::{encode_call_by_into, set_call_timeout};

/// A call written behind a worker's running call.
#[derive(Debug)]
pub struct Pipelined {
    pub call: Call,
    /// The worker does not start it at or after this instant of CLOCK_MONOTONIC.
    start_by_ns: u64,
    /// The same instant on pitd's clock.
    start_by: Instant,
    /// When pitd looks at taking it back: from `start_by` on, and again a little later
    /// while an answer is on its way.
    revoke_at: Instant,
}

/// Nanoseconds of CLOCK_MONOTONIC, the clock `time.monotonic_ns()` reads in the workers.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(u64::MAX)
}

impl PoolActor {
    /// After idle workers have taken what they could: pipelines queued calls that would
    /// wait for a worker, oldest first. A call whose session is bound goes only behind its
    /// own worker; any other only when no worker is idle, to the worker with the fewest
    /// calls waiting in its pipe, one due for recycling only when no other has room (as
    /// in `dispatch`). The calls one worker gets here go in one write.
    pub(super) fn pipeline(&mut self, now: Instant) {
        // Once every worker's pipe is full (the usual state under load), no queued call
        // can go anywhere: stop before scanning the queue.
        let any_room = self.workers.values().any(|w| self.has_pipeline_slot(w.id, now));
        if self.shutdown.is_some() || self.draining || !any_room {
            return;
        }
        // (worker, frames for it, how many calls they are)
        let mut writes: Vec<(WorkerId, Vec<u8>, usize)> = Vec::new();
        // The two clocks read together: a start-by on pitd's clock (from `now`, which may
        // be as old as the batch) maps to the workers' clock through this pair.
        let clocks = (Instant::now(), monotonic_ns());
        let mut i = 0;
        while i < self.queue.len() {
            let call = &self.queue[i];
            let target = match self.bound_worker(call, now) {
                Some(b) => Some(b.worker).filter(|id| self.can_pipeline(*id, call, now)),
                None if self.longest_idle().is_none() => pick(
                    self.workers
                        .values()
                        .filter(|w| self.can_pipeline(w.id, call, now))
                        .map(|w| Candidate {
                            worker: w.id,
                            due: self.due_for_recycle(w.id),
                            rank: (w.next.len(), w.running_since),
                        }),
                ),
                None => None,
            };
            match target {
                Some(id) if !call.reply.is_closed() => {
                    let call = self.queue.remove(i).expect("index checked");
                    let at = match writes.iter().position(|(w, _, _)| *w == id) {
                        Some(at) => at,
                        None => {
                            writes.push((id, Vec::new(), 0));
                            writes.len() - 1
                        }
                    };
                    let (_, frames, count) = &mut writes[at];
                    self.pipeline_to(id, call, frames, now, clocks);
                    *count += 1;
                }
                _ => i += 1,
            }
        }
        for (id, frames, count) in writes {
            let sent = self
                .workers
                .get(&id)
                .and_then(|w| w.io.as_ref())
                .map(|io| io.send(frames));
            if matches!(sent, Some(Ok(()))) {
                continue;
            }
            // Its pipe is full or gone: the worker stopped reading. None of these calls
            // reached it: they wait for another worker, in their order.
            tracing::error!(pool = %self.spec.name, worker = %id, "not reading its calls; killing it");
            if let Some(w) = self.workers.get_mut(&id) {
                let unsent = w.next.split_off(w.next.len().saturating_sub(count));
                for p in unsent.into_iter().rev() {
                    self.queue.push_front(p.call);
                }
            }
            self.kill_worker(
                id,
                Reason::ProtocolError,
                "protocol error (not reading its calls)".into(),
            );
        }
    }

    fn can_pipeline(&self, id: WorkerId, call: &Call, now: Instant) -> bool {
        self.has_pipeline_slot(id, now)
            && self.workers.get(&id).is_some_and(|w| {
                let held_bytes = w.next.iter().map(|p| p.call.frame.len()).sum();
                w.handlers.contains(&call.method) && pipe_has_bytes_for(w.next.len(), held_bytes, call.frame.len())
            })
    }

    /// Whether a call (of a method it serves) may be pipelined to this worker now.
    fn has_pipeline_slot(&self, id: WorkerId, now: Instant) -> bool {
        let Some(w) = self.workers.get(&id) else { return false };
        w.state == WorkerState::Busy
            && w.running.is_some()
            && w.taken_back.is_empty()
            && w.stop_reason.is_none()
            && w.exit.is_none()
            && w.io.is_some()
            // The calls ahead and this one all fit in its max_requests.
            && w.limits.max_requests.is_none_or(|max| w.requests + w.next.len() as u64 + 2 <= max)
            && has_pipeline_room(w.next.len(), w.next.back().map(|p| p.start_by), now + PIPELINE_HOLD / 2)
            && may_pipeline(w.fast_streak, now.saturating_duration_since(w.running_since))
    }

    /// Books a call as pipelined to worker `id` and appends its CALL_BY frame to `frames`.
    fn pipeline_to(
        &mut self,
        id: WorkerId,
        mut call: Call,
        frames: &mut Vec<u8>,
        now: Instant,
        (clock_at, clock_ns): (Instant, u64),
    ) {
        let mut start_by = now + PIPELINE_HOLD;
        start_by = start_by.min(call.received + self.spec.queue.timeout);
        if let Some(t) = call.timeout {
            start_by = start_by.min(call.received + t);
        }
        let last = self.workers.get(&id).and_then(|w| w.next.back());
        if let Some(last) = last {
            start_by = start_by.min(last.start_by);
        }
        // Never later than the call ahead's, on the workers' clock too: what is overdue
        // is always at the back.
        let start_by_ns = clock_ns
            .saturating_add(start_by.saturating_duration_since(clock_at).as_nanos() as u64)
            .min(last.map_or(u64::MAX, |l| l.start_by_ns));
        let deadline = self.call_deadline(&call, now);
        let remaining = deadline
            .saturating_duration_since(now)
            .as_millis()
            .clamp(1, u32::MAX as u128) as u32;
        set_call_timeout(&mut call.frame, remaining);
        // The call keeps its own frame: if it is taken back, it is sent again.
        encode_call_by_into(frames, &call.frame, start_by_ns);
        bind_session(&mut self.affinity, &call, id, now);
        if let Some(w) = self.workers.get_mut(&id) {
            w.next.push_back(Pipelined {
                call,
                start_by_ns,
                start_by,
                revoke_at: start_by,
            });
        }
        self.call_metrics.pipelined.inc();
    }

    /// Books how long the call that just finished took, for `may_pipeline`.
    pub(super) fn count_call_time(&mut self, id: WorkerId, now: Instant) {
        if let Some(w) = self.workers.get_mut(&id) {
            let took = now.saturating_duration_since(w.running_since);
            w.fast_streak = if took <= PIPELINE_FAST {
                w.fast_streak.saturating_add(1)
            } else {
                0
            };
        }
    }

    /// The worker answered its running call: the first of the calls pipelined behind it,
    /// if any, is the running one now. Returns whether there was one.
    pub(super) fn promote_next(&mut self, id: WorkerId, now: Instant) -> bool {
        let deadline = match self.workers.get(&id).and_then(|w| w.next.front()) {
            Some(p) => self.call_deadline(&p.call, now),
            None => return false,
        };
        let Some(w) = self.workers.get_mut(&id) else {
            return false;
        };
        let Some(p) = w.next.pop_front() else { return false };
        w.running = Some((p.call, deadline));
        w.running_since = now;
        w.running_pipelined = true;
        true
    }

    /// A call that never started goes back to the front of the queue (or is answered, if
    /// the pool no longer takes calls).
    pub(super) fn requeue_unstarted(&mut self, call: Call) {
        if self.shutdown.is_some() {
            self.fail_call(call, ErrorKind::ShuttingDown);
        } else if self.draining {
            self.fail_call(call, ErrorKind::PoolDrained);
        } else {
            self.queue.push_front(call);
        }
    }

    /// Takes back pipelined calls past their `start_by`. Runs after every message already
    /// in the mailbox has been handled, so an answer the reader has delivered is seen
    /// first; an answer still in the pipe postpones it.
    pub(super) fn take_back_overdue(&mut self, now: Instant) {
        let due: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.next.back().is_some_and(|p| p.revoke_at <= now))
            .map(|w| w.id)
            .collect();
        for id in due {
            let Some(w) = self.workers.get_mut(&id) else { continue };
            let Some(io) = w.io.as_ref() else {
                // Being killed: its exit settles the calls.
                continue;
            };
            let overdue = overdue_from_back(w.next.iter().map(|p| p.start_by_ns), monotonic_ns());
            if overdue == 0 || io.reply_waiting() {
                if let Some(p) = w.next.back_mut() {
                    p.revoke_at = now + std::time::Duration::from_millis(1);
                }
                continue;
            }
            let back = w.next.split_off(w.next.len() - overdue);
            w.taken_back.extend(back.iter().map(|p| p.call.req_id));
            tracing::debug!(pool = %self.spec.name, worker = %id, "took back {overdue} calls from behind a long call");
            for p in back.into_iter().rev() {
                self.call_metrics.taken_back.inc();
                self.requeue_unstarted(p.call);
            }
        }
    }

    pub(super) fn pipeline_deadline(&self) -> Option<Instant> {
        self.workers
            .values()
            // A worker being killed keeps its calls until its exit settles them.
            .filter(|w| w.io.is_some())
            .filter_map(|w| w.next.back().map(|p| p.revoke_at))
            .min()
    }
}
