//! Exits of the pool's workers: settling the calls of one that died (after its last
//! replies are read), restarts owed with backoff, and the crash-loop breaker.

use std::time::{Duration, Instant};

use super::core::PoolCore;
use super::effect::{Effect, Waiter};
use super::worker::Replies;
use crate::daemon::process::children::ExitInfo;
use crate::ids::WorkerId;
use crate::lifecycle::phase::PhaseEvent;
use crate::lifecycle::{Failure, PoolVerdict, Reason, WorkerState, exit_reason, exit_reason_with_cpu};
use crate::proto::call::ErrorKind;
use crate::proto::event::EventKind;

/// How long an exited worker's remaining replies are waited for (its pipe normally ends
/// at once; a descendant that escaped its group may hold it open).
const EXIT_REPLIES_WAIT: Duration = Duration::from_millis(200);

impl PoolCore {
    /// Settles an exit that was waiting for the worker's last replies, once they are in
    /// (or no longer expected).
    pub(super) fn settle_exit(&mut self, id: WorkerId, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if w.replies != Replies::Open
            && let Some((info, _)) = w.exit.take()
        {
            self.finish_exit(id, info, now);
        }
    }

    /// Exits whose wait for the last replies is over.
    pub(super) fn expire_exits(&mut self, now: Instant) {
        let overdue: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.exit.as_ref().is_some_and(|(_, until)| *until <= now))
            .map(|w| w.id)
            .collect();
        for id in overdue {
            if let Some((info, _)) = self.workers.get_mut(&id).and_then(|w| w.exit.take()) {
                tracing::warn!(pool = %self.spec.name, worker = %id, "its reply pipe stayed open after it exited");
                self.finish_exit(id, info, now);
            }
        }
    }

    pub(super) fn exits_deadline(&self) -> Option<Instant> {
        self.workers
            .values()
            .filter_map(|w| w.exit.as_ref().map(|(_, t)| *t))
            .min()
    }

    /// A reaped worker. Its calls are settled once everything it wrote before it died has
    /// been read: a reply already in its pipe answers its call, and a pipelined call is
    /// known not to have started unless the call ahead of it was answered.
    pub(super) fn on_exited(&mut self, id: WorkerId, info: ExitInfo, now: Instant) {
        if let Some(w) = self.workers.get_mut(&id)
            && w.replies == Replies::Open
            && !w.calls.is_empty()
        {
            w.exit = Some((info, now + EXIT_REPLIES_WAIT));
            return;
        }
        self.finish_exit(id, info, now);
    }

    fn finish_exit(&mut self, id: WorkerId, info: ExitInfo, now: Instant) {
        self.effect(Effect::Forget(id));
        let Some(mut w) = self.workers.remove(&id) else { return };
        if let Some(pid) = w.pid {
            self.effect(Effect::Unwatch(pid));
        }
        let planned = w.stop_reason.is_some() || w.state() == WorkerState::Stopping;
        let cpu_limit = self.spec.rlimits.cpu.map(Duration::from_secs);
        // A planned stop carries the reason pitd stopped it for (none for a plain stop,
        // such as shutdown); an unplanned exit is a crash or a CPU-limit kill.
        let reason = if planned {
            w.stop_reason
        } else {
            Some(match info.cpu_time {
                Some(used) => exit_reason_with_cpu(&info.status, used, cpu_limit),
                None => exit_reason(&info.status),
            })
        };
        let status = info.status.to_string();
        // What the worker's lost calls are told, after its id.
        let ended = match &w.kill_detail {
            Some(detail) => format!("was killed by pitd: {detail}"),
            None => format!("died during the call: {status}"),
        };
        // Its reply pipe read to the end without an answer to the call ahead: the calls
        // pipelined behind never started. Back to front, each to the front of the queue:
        // the calls that go back keep their order, the oldest first.
        let settled = w.calls.settle_exit(w.replies == Replies::Done);
        for call in settled.unstarted.into_iter().rev() {
            self.requeue_unstarted(call);
        }
        for call in settled.lost.into_iter().rev() {
            self.call_lost(call, &id, &ended, now);
        }
        let woken: Vec<Waiter> = self
            .recycling
            .worker_waiters
            .extract_if(.., |(waited, _)| *waited == id)
            .map(|(_, done)| done)
            .collect();
        for done in woken {
            self.effect(Effect::Wake(done));
        }
        self.note_emptied();
        let booked = if planned {
            None
        } else {
            tracing::warn!(pool = %self.spec.name, worker = %id, "exited unexpectedly: {status}");
            let uptime = info.at.saturating_duration_since(w.started_at);
            // Ready as the crash-loop breaker's probe counts it (`stable_after`: a supervised
            // worker has no ready frame, it must stay up a while); dying before is a failed
            // start, which is what the breaker counts.
            let ready_at = w.ready_at.map(|t| t + self.stable_after()).filter(|t| *t <= info.at);
            let failure = match ready_at {
                Some(ready_at) => Failure::Crash {
                    uptime,
                    ready_for: info.at.saturating_duration_since(ready_at),
                },
                None => Failure::Start,
            };
            self.count_failure(id, reason.unwrap_or(Reason::Crash), failure, now)
        };
        self.emit(EventKind::WorkerExited, Some(id), w.pid, |ev| {
            ev.reason = reason;
            ev.exit_status = Some(status.clone());
            ev.backoff_ms = booked.map(|b| b.backoff_ms());
            ev.message = w.kill_detail.as_ref().map(|d| format!("killed by pitd: {d}"));
        });
        self.announce_failing(id, status, booked);
    }

    /// Books an unplanned exit or failed start and decides when the replacement may start.
    /// `None` while shutting down: nothing is replaced then.
    pub(super) fn count_failure(
        &mut self,
        id: WorkerId,
        reason: Reason,
        failure: Failure,
        now: Instant,
    ) -> Option<Booked> {
        if self.phase.shutting_down() {
            return None;
        }
        self.restarts.owed.push_back((id, reason));
        let policy = &self.spec.restart;
        let verdict = self.restarts.history.record_failure(policy, now, failure);
        let backoff = match verdict {
            PoolVerdict::Failing => policy.max,
            PoolVerdict::Healthy => self.restarts.history.next_backoff(policy, self.rng.f64()),
        };
        // A later start may not be held back by an earlier, longer backoff: a stable
        // worker's death starts its replacement (and any other owed one) now.
        self.restarts.at = Some(now + backoff);
        Some(Booked { backoff, verdict })
    }

    /// Marks the pool failing when the failure just booked tripped the breaker.
    pub(super) fn announce_failing(&mut self, id: WorkerId, status: String, booked: Option<Booked>) {
        if !booked.is_some_and(|b| b.verdict == PoolVerdict::Failing) {
            return;
        }
        let was = self.phase.failing();
        self.move_phase(PhaseEvent::Tripped);
        // A draining pool stays draining: it starts no workers anyway.
        if !self.phase.failing() {
            return;
        }
        self.restarts.failing_cause = Some((id, status));
        if !was {
            // Calls would wait for a pool that cannot start workers: fail them fast.
            for call in std::mem::take(&mut self.calls.queue) {
                self.fail_call(call, ErrorKind::PoolFailing);
            }
            let msg = self.failing_reason();
            self.emit(EventKind::PoolFailing, Some(id), None, |ev| ev.message = msg);
        }
    }
}

/// What pitd decided about an unplanned exit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Booked {
    /// How long the replacement waits (the probe interval while failing).
    backoff: Duration,
    verdict: PoolVerdict,
}

impl Booked {
    pub(super) fn backoff_ms(&self) -> u64 {
        u64::try_from(self.backoff.as_millis()).unwrap_or(u64::MAX)
    }
}
