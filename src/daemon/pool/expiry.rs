//! Calls past their time: running calls past their timeout (the worker killed, or with
//! several calls at once the call cancelled in it), cancelled calls that keep their slot
//! past `kill_timeout` (the worker recycled), queued calls past `queue_timeout`, and the
//! calls of callers that hung up.

use std::time::{Duration, Instant};

use super::core::PoolCore;
use super::worker::Worker;
use super::{Call, ReplyTx};
use crate::ids::WorkerId;
use crate::lifecycle::Reason;
use crate::proto::call::ErrorKind;
use crate::proto::worker::encode_cancel;

impl PoolCore {
    /// Times out running calls and queued calls. A worker running one call at a time is
    /// killed (it may be stuck); one running several is told to cancel the call, and its
    /// other calls go on, unless it keeps the slot past `kill_timeout` (then it is recycled,
    /// replacement first).
    pub(super) fn expire_calls(&mut self, now: Instant) {
        let overdue: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.calls.deadline().is_some_and(|t| t <= now))
            .map(|w| w.id)
            .collect();
        for id in overdue {
            let Some(w) = self.workers.get_mut(&id) else { continue };
            let timed_out = w.calls.time_out(now);
            w.errors += timed_out.len() as u64;
            // A stream is told to stop (its generator closed at its next yield) rather than
            // killed, as is every call of a worker running several at once.
            let several = w.calls.slots() > 1;
            let (cancel, kill): (Vec<_>, Vec<_>) = timed_out.into_iter().partition(|(_, c, _)| several || c.stream);
            for (req_id, call, deadline) in cancel {
                self.cancel_timed_out(id, req_id, call, deadline, now);
            }
            for (_, call, deadline) in kill {
                let after =
                    self.answer_timed_out(id, call, deadline, "killing the worker", &format!("{id} killed"), now);
                self.kill_worker(id, Reason::Timeout, format!("a call timed out after {after}"));
            }
        }
        self.recycle_stuck_slots(now);
        let queue_timeout = self.spec.queue.timeout;
        let mut i = 0;
        while i < self.calls.queue.len() {
            let call = &self.calls.queue[i];
            let kind = if call.timeout.is_some_and(|t| call.received + t <= now) {
                Some(ErrorKind::Timeout)
            } else if call.received + queue_timeout <= now {
                Some(ErrorKind::QueueTimeout)
            } else {
                None
            };
            match kind {
                Some(kind) => {
                    let call = self.calls.queue.remove(i).expect("index checked");
                    self.fail_call(call, kind);
                }
                None => i += 1,
            }
        }
    }

    /// Answers a call past its timeout on a worker running several at once, and tells the
    /// worker to cancel it; its slot stays taken until the worker answers.
    fn cancel_timed_out(&mut self, id: WorkerId, req_id: u64, call: Call, deadline: Instant, now: Instant) {
        self.answer_timed_out(id, call, deadline, "cancelling it", &format!("cancelled in {id}"), now);
        self.send_cancel(id, req_id);
    }

    /// Logs a call of worker `id` past its timeout and answers `timeout`, saying what
    /// becomes of it (`doing` in the log, `done` in the reply). Returns the limit that
    /// ended it, as printed.
    fn answer_timed_out(
        &mut self,
        id: WorkerId,
        call: Call,
        deadline: Instant,
        doing: &str,
        done: &str,
        now: Instant,
    ) -> String {
        let idle = self
            .spec
            .stream_idle_timeout
            .filter(|_| call.stream && call.ends_by.is_some_and(|end| deadline < end));
        let limit = idle.unwrap_or_else(|| self.limit_of(&call, deadline));
        let mut after = humantime::format_duration(Duration::from_millis(limit.as_millis() as u64)).to_string();
        if idle.is_some() {
            after = format!("{after} without a chunk (stream_idle_timeout)");
        }
        tracing::warn!(pool = %self.spec.name, worker = %id, "call {} timed out after {after}; {doing}", call.method);
        let message = format!(
            "call to {}.{} timed out after {after}; {done}",
            self.spec.name, call.method
        );
        let frame = call.failed_on(&id.to_string(), ErrorKind::Timeout, &message);
        self.answer(call, frame, Some(ErrorKind::Timeout), now);
        after
    }

    /// Tells a worker to cancel a call (a worker that does not take the frame is not
    /// reading: `pipe_refused` replaces it).
    pub(super) fn send_cancel(&mut self, id: WorkerId, req_id: u64) {
        self.write(id, encode_cancel(req_id));
    }

    /// Workers that have not freed the slot of a cancelled call within `kill_timeout`:
    /// recycled gracefully (reason `timeout`), their other calls finishing meanwhile.
    fn recycle_stuck_slots(&mut self, now: Instant) {
        let stuck: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| self.stuck_at(w).is_some_and(|t| t <= now))
            .map(|w| w.id)
            .collect();
        for id in stuck {
            tracing::warn!(pool = %self.spec.name, worker = %id, "a cancelled call kept its slot past kill_timeout; recycling the worker");
            self.request_recycle(id, Reason::Timeout, now);
        }
    }

    /// When a worker not yet on its way out is due for recycling because a cancelled call
    /// still holds its slot.
    fn stuck_at(&self, w: &Worker) -> Option<Instant> {
        let leaving = w.retire.is_some() || !w.live() || self.recycling.queue.iter().any(|(q, _)| *q == w.id);
        let since = w.calls.oldest_cancelled().filter(|_| !leaving)?;
        Some(since + self.spec.kill_timeout)
    }

    /// A caller hung up: its queued calls are dropped, and its streams and its calls
    /// running on workers that run several at once are cancelled there (a worker running
    /// one plain call at a time finishes it; the answer goes nowhere).
    pub(super) fn caller_gone(&mut self, caller: &ReplyTx, now: Instant) {
        self.calls.queue.retain(|c| !c.reply.same_peer(caller));
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            let Some(w) = self.workers.get_mut(&id) else { continue };
            let several = w.calls.slots() > 1;
            let cancelled = w
                .calls
                .cancel_where(now, |c| c.reply.same_peer(caller) && (several || c.stream));
            for (req_id, call) in cancelled {
                tracing::debug!(pool = %self.spec.name, worker = %id, "caller gone: cancelling call {}", call.method);
                self.send_cancel(id, req_id);
            }
        }
    }

    /// The limit that ended a call due at `deadline`: the caller's `timeout_ms` when that
    /// came first, else the pool's `request_timeout`.
    fn limit_of(&self, call: &Call, deadline: Instant) -> Duration {
        call.timeout
            .filter(|t| call.received + *t <= deadline)
            .unwrap_or(self.spec.request_timeout)
    }

    pub(super) fn calls_deadline(&self) -> Option<Instant> {
        let running = self.workers.values().filter_map(|w| w.calls.deadline());
        let stuck = self.workers.values().filter_map(|w| self.stuck_at(w));
        let running = running.chain(stuck);
        let queue_timeout = self.spec.queue.timeout;
        let queued = self.calls.queue.iter().map(|c| {
            let q = c.received + queue_timeout;
            c.timeout.map_or(q, |t| q.min(c.received + t))
        });
        running.chain(queued).chain(self.pipeline_deadline()).min()
    }
}
