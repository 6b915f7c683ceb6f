//! The call half of the pool core: admission, the FIFO queue, session affinity and
//! replies (timeouts are `expiry.rs`).
//!
//! Invariants: a worker's calls are its `CallWindow` (`window.rs`): at most its slots
//! running, and calls pipelined behind them only once every slot is taken (`pipeline.rs`);
//! a call is in exactly one place (the queue, a worker's window, or answered); every call
//! gets exactly one reply.

use std::time::Instant;

use super::Call;
use super::core::PoolCore;
use super::parts::bind_session;
use super::routing::{Bound, Candidate, Choice, choose_worker, pick};
use super::window::Completion;
use crate::ids::WorkerId;
use crate::lifecycle::Reason;
use crate::lifecycle::recycle::at_limit;
use crate::proto::call::ErrorKind;
use crate::spec::Protocol;

impl PoolCore {
    pub(super) fn on_call(&mut self, call: Call, now: Instant) {
        let refuse = if self.spec.protocol == Protocol::None {
            Some(ErrorKind::BadRequest)
        } else if self.phase.shutting_down() {
            Some(ErrorKind::ShuttingDown)
        } else if self.phase.drained() {
            Some(ErrorKind::PoolDrained)
        } else if self.phase.failing() {
            Some(ErrorKind::PoolFailing)
        } else if self.queue_full(now) {
            Some(ErrorKind::QueueFull)
        } else {
            None
        };
        if let Some(kind) = refuse {
            return self.fail_call(call, kind);
        }
        // Handed out with the rest of its batch (`PoolCore::settle`).
        self.calls.queue.push_back(call);
    }

    /// Whether the queue has no room for one more call. The calls of a batch wait in the
    /// queue for the end of the batch to be handed out; it is full only if it still is
    /// once they have been.
    fn queue_full(&mut self, now: Instant) -> bool {
        if self.calls.queue.len() < self.spec.queue.max {
            return false;
        }
        self.dispatch(now);
        self.calls.queue.len() >= self.spec.queue.max
    }

    /// Refuses a call no worker has seen, with a message saying why.
    pub(super) fn fail_call(&mut self, call: Call, kind: ErrorKind) {
        let frame = self.error_reply(&call, kind);
        self.refuse(call, frame, kind);
    }

    /// Sends the one reply of a call no worker saw, booked as a refusal of its kind, not
    /// as one of the pool's calls.
    fn refuse(&mut self, call: Call, frame: Vec<u8>, kind: ErrorKind) {
        if self.counts.reject(kind) {
            self.call_metrics.rejected(kind);
        } else {
            debug_assert!(false, "{kind} is not a refusal");
        }
        let (tx, frame) = call.into_reply(frame);
        self.queue_reply(tx, frame);
    }

    /// Sends the one reply of a call a worker ran (or was running when it ended) and books
    /// it: counters and metrics by outcome.
    pub(super) fn answer(&mut self, call: Call, frame: Vec<u8>, error: Option<ErrorKind>, now: Instant) {
        self.counts.ran(error.is_some());
        self.call_metrics
            .call(error, now.saturating_duration_since(call.received));
        let (tx, frame) = call.into_reply(frame);
        self.queue_reply(tx, frame);
    }

    /// The reply frame for a call pitd itself fails, with a message that says why.
    pub(super) fn error_reply(&self, call: &Call, kind: ErrorKind) -> Vec<u8> {
        let pool = &self.spec.name;
        let message = match kind {
            ErrorKind::BadRequest => format!("pool {pool} is supervise-only (protocol = \"none\"): it takes no calls"),
            ErrorKind::ShuttingDown => "pitd is shutting down".to_string(),
            ErrorKind::PoolFailing => {
                format!("pool {pool} is failing: {}", self.failing_reason().unwrap_or_default())
            }
            ErrorKind::QueueFull => format!("pool {pool}: {} calls already waiting (queue_max)", self.spec.queue.max),
            ErrorKind::QueueTimeout => {
                format!(
                    "pool {pool}: no worker free within queue_timeout ({:?})",
                    self.spec.queue.timeout
                )
            }
            ErrorKind::Timeout => format!("call to {pool}.{} timed out", call.method),
            ErrorKind::PoolDrained => format!("pool {pool} is drained (`pitctl resume {pool}` brings it back)"),
            other => other.as_str().to_string(),
        };
        call.refused(kind, &message)
    }

    /// Hands queued calls to idle workers, oldest call first. A call whose session is bound
    /// to a busy worker keeps its place while later calls go ahead. What still waits may
    /// then be pipelined behind a busy worker's short call.
    pub(super) fn dispatch(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.calls.queue.len() {
            let Some(free) = self.free_worker() else {
                break;
            };
            let call = &self.calls.queue[i];
            if call.reply.is_closed() {
                // The caller hung up while waiting: nobody would read the result.
                self.calls.queue.remove(i);
                continue;
            }
            let bound = self.bound_worker(call, now);
            match choose_worker(bound, Some(free)) {
                Choice::Worker(id) => {
                    let call = self.calls.queue.remove(i).expect("index checked");
                    self.start_call(id, call, now);
                }
                Choice::Wait => i += 1,
            }
        }
        if !self.calls.queue.is_empty() {
            self.pipeline(now);
        }
    }

    /// The worker that takes the next call: among ready workers with a free slot, the one
    /// with the fewest calls in flight, longest idle first; one due for recycling only
    /// when no other can take it (`routing::pick`).
    pub(super) fn free_worker(&self) -> Option<WorkerId> {
        pick(
            self.workers
                .values()
                .filter(|w| w.is_ready() && w.exit.is_none() && w.calls.has_free_slot())
                .map(|w| Candidate {
                    worker: w.id,
                    due: self.due_for_recycle(w.id),
                    rank: (w.calls.in_flight(), w.idle_since),
                }),
        )
    }

    /// Selected for a graceful recycle, or waiting for a surge slot to be. A worker whose
    /// `max_requests` replacement started ahead of its limit is due only once it reaches
    /// the limit: until then it serves its full share.
    pub(super) fn due_for_recycle(&self, id: WorkerId) -> bool {
        let Some(w) = self.workers.get(&id) else { return false };
        let queued = || self.recycling.queue.iter().find(|(q, _)| *q == id).map(|&(_, r)| r);
        match w.retire.or_else(queued) {
            None => false,
            Some(Reason::MaxRequests) => at_limit(w.requests, w.calls.in_flight() as u64, w.limits.max_requests),
            Some(_) => true,
        }
    }

    /// The live worker a call's session sticks to, if any. One already reaped (its last
    /// replies still on their way) is given nothing new: the session moves on.
    pub(super) fn bound_worker(&self, call: &Call, now: Instant) -> Option<Bound> {
        let a = self.calls.affinity.get(call.session.as_deref()?)?;
        if now.saturating_duration_since(a.last_used) > self.spec.queue.affinity_ttl {
            return None;
        }
        let w = self
            .workers
            .get(&a.worker)
            .filter(|w| w.is_ready() && w.exit.is_none())?;
        Some(Bound {
            worker: w.id,
            free: w.calls.has_free_slot(),
        })
    }

    fn start_call(&mut self, id: WorkerId, mut call: Call, now: Instant) {
        let deadline = self.call_deadline(&call, now);
        let Some(w) = self.workers.get_mut(&id) else {
            return self.calls.queue.push_front(call);
        };
        if !w.handlers.contains(&call.method) {
            let message = format!(
                "pool {} has no method {:?} (methods: {})",
                self.spec.name,
                call.method,
                w.handlers.join(", ")
            );
            let frame = call.refused(ErrorKind::NoSuchMethod, &message);
            return self.refuse(call, frame, ErrorKind::NoSuchMethod);
        }
        call.set_deadline(deadline, now);
        // A stream's window deadline is its idle one, moved on by each chunk.
        let mut window_deadline = deadline;
        if call.stream {
            call.set_window(self.spec.stream_window);
            call.ends_by = Some(deadline);
            if let Some(idle) = self.spec.stream_idle_timeout {
                window_deadline = deadline.min(now + idle);
            }
        }
        let frame = if call.idempotent {
            call.frame.clone()
        } else {
            std::mem::take(&mut call.frame)
        };
        w.call_started();
        // A pipe that does not take it comes back as `pipe_refused`: the worker is killed
        // and the call settled with its other calls.
        self.write(id, frame);
        let Some(w) = self.workers.get_mut(&id) else { return };
        bind_session(&mut self.calls.affinity, &call, id, now);
        w.calls.admit(call.req_id, call, window_deadline, now);
    }

    /// A call may run until its caller's `timeout_ms` (counted from arrival) or the pool's
    /// `request_timeout` (counted from dispatch), whichever comes first.
    pub(super) fn call_deadline(&self, call: &Call, now: Instant) -> Instant {
        let pool_limit = now + self.spec.request_timeout;
        match call.timeout {
            Some(t) => pool_limit.min(call.received + t),
            None => pool_limit,
        }
    }

    /// The worker answered call `req_id` (OK, or ERR of `error`'s kind).
    pub(super) fn on_reply(
        &mut self,
        id: WorkerId,
        req_id: u64,
        error: Option<ErrorKind>,
        body: Vec<u8>,
        now: Instant,
    ) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        // A pipelined call the worker got to past its start-by is refused, not run.
        let refused = error == Some(ErrorKind::QueueTimeout);
        let completion = w.calls.complete(req_id, refused, now);
        w.calls_changed(now);
        let call = match completion {
            Completion::Answered { call, took } => {
                self.counts.call_times.record(took);
                call
            }
            Completion::TakenBack { ran } => {
                if ran {
                    tracing::error!(pool = %self.spec.name, worker = %id, req_id, "ran a call after pitd had taken it back");
                }
                return;
            }
            // Its caller has had `timeout` and the worker is being killed.
            Completion::Late => return,
            Completion::NotStarted(call) => {
                self.call_metrics.taken_back.inc();
                return self.requeue_unstarted(call);
            }
            Completion::Unknown => {
                tracing::error!(pool = %self.spec.name, worker = %id, req_id, "replied to a call it was not given; killing it");
                return self.kill_worker(
                    id,
                    Reason::ProtocolError,
                    format!("protocol error (replied to call {req_id}, which it was not given)"),
                );
            }
        };
        let Some(w) = self.workers.get_mut(&id) else { return };
        w.requests += 1;
        // The pace only says when a `max_requests` replacement starts.
        if w.limits.max_requests.is_some() {
            w.pace.record(now);
        }
        w.last_seen = now;
        if error.is_none() {
            w.consecutive_errors = 0;
        } else {
            w.errors += 1;
            w.consecutive_errors += 1;
        }
        if let Some(s) = &call.session
            && let Some(a) = self.calls.affinity.get_mut(s)
        {
            a.last_used = now;
        }
        let worker = id.to_string();
        let frame = call.worker_reply(error, &body, &worker);
        self.answer(call, frame, error, now);
        self.check_triggers(id, now);
    }

    /// A call whose worker died before replying: retried once elsewhere when idempotent,
    /// else answered `worker_crashed` (or `shutting_down` when pitd stopped the worker),
    /// naming the worker. `ended` is how it ended, after its id ("died during the call:
    /// exit code 1", "was killed by pitd: protocol error (...)").
    pub(super) fn call_lost(&mut self, mut call: Call, worker: &WorkerId, ended: &str, now: Instant) {
        // A stream that sent a chunk is never run again: its caller has part of an answer.
        if call.idempotent && !call.retried && call.chunks == 0 && !self.phase.shutting_down() && !call.frame.is_empty()
        {
            call.retried = true;
            tracing::info!(pool = %self.spec.name, worker = %worker, "retrying idempotent call {} on another worker", call.req_id);
            return self.calls.queue.push_front(call);
        }
        let (kind, message) = if self.phase.shutting_down() {
            (
                ErrorKind::ShuttingDown,
                "pitd is shutting down; the call was stopped".to_string(),
            )
        } else {
            (
                ErrorKind::WorkerCrashed,
                format!("{worker} ({}) {ended}", self.spec.name),
            )
        };
        let frame = call.failed_on(&worker.to_string(), kind, &message);
        self.answer(call, frame, Some(kind), now);
    }
}
