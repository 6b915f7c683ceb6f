//! Stopping workers: graceful (SIGTERM, SIGKILL after kill_timeout) and at once, the
//! daemon's shutdown of a pool, and the timers that go with them (startup timeouts, kill
//! deadlines, a failing pool's stable worker).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::core::PoolCore;
use super::effect::{Effect, Waiter};
use super::starting::SUPERVISED_STABLE_AFTER;
use crate::ids::WorkerId;
use crate::lifecycle::phase::PhaseEvent;
use crate::lifecycle::{Failure, Reason, WorkerEvent, WorkerState};
use crate::proto::call::ErrorKind;
use crate::proto::event::EventKind;
use crate::spec::Protocol;

impl PoolCore {
    /// SIGTERM to the worker's group now, SIGKILL after kill_timeout.
    pub(super) fn stop_worker(&mut self, id: WorkerId, reason: Option<Reason>, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if w.state() == WorkerState::Stopping {
            return;
        }
        w.apply(WorkerEvent::Stop);
        w.stop_reason = reason.or(w.stop_reason);
        if let Some(pid) = w.pid {
            w.kill_at = Some(now + self.spec.kill_timeout);
            self.effect(Effect::Signal {
                pid,
                signal: Signal::SIGTERM,
            });
        }
    }

    /// SIGKILL to the worker's group at once (a stuck, timed-out or garbling worker),
    /// and counts it as a recycle, with its event. `detail` says why in words: its calls
    /// and its `worker_exited` event carry it.
    pub(super) fn kill_worker(&mut self, id: WorkerId, reason: Reason, detail: String) {
        let Some(pid) = self.kill_group(id, reason, detail) else {
            return;
        };
        self.counts.recycled += 1;
        self.deps.metrics.recycle(&self.spec.name, reason);
        self.emit(EventKind::WorkerRecycled, Some(id), pid, |ev| ev.reason = Some(reason));
    }

    /// A worker whose pipe did not take what pitd wrote is not reading its calls, or is
    /// gone: the calls in what it refused never reached it and wait for another worker, in
    /// their order; the worker is killed and replaced (its other calls settle with its
    /// exit).
    pub(super) fn pipe_refused(&mut self, id: WorkerId, calls: Vec<u64>) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        let unsent: Vec<_> = calls.iter().filter_map(|req_id| w.calls.unsend(*req_id)).collect();
        for call in unsent.into_iter().rev() {
            self.calls.queue.push_front(call);
        }
        if !self.workers.get(&id).is_some_and(|w| w.writable) {
            return;
        }
        tracing::error!(pool = %self.spec.name, worker = %id, "not reading its calls; killing it");
        self.kill_worker(
            id,
            Reason::ProtocolError,
            "protocol error (not reading its calls)".into(),
        );
    }

    /// SIGKILL to a worker's group without counting a recycle (a start that failed).
    /// Returns `Some(pid if known)` when the worker exists.
    fn kill_group(&mut self, id: WorkerId, reason: Reason, detail: String) -> Option<Option<u32>> {
        let w = self.workers.get_mut(&id)?;
        w.apply(WorkerEvent::Stop);
        w.stop_reason = Some(reason);
        w.kill_detail = Some(detail);
        w.kill_at = None;
        w.writable = false;
        let pid = w.pid;
        if let Some(pid) = pid {
            self.effect(Effect::Signal {
                pid,
                signal: Signal::SIGKILL,
            });
        }
        Some(pid)
    }

    pub(super) fn begin_shutdown(&mut self, deadline: Instant, done: Waiter, now: Instant) {
        if let Some((_, replies)) = self.shutdown.as_mut() {
            replies.push(done);
            return;
        }
        self.shutdown = Some((deadline, vec![done]));
        self.move_phase(PhaseEvent::Shutdown);
        // Queued calls still run (until the deadline); workers with nothing left to do stop.
        self.dispatch(now);
        self.stop_finished_workers(now);
    }

    /// Kills overdue workers (startup timeout, kill_timeout, shutdown budget) and ends a
    /// crash loop once a worker has proven stable.
    pub(super) fn expire_workers(&mut self, now: Instant) {
        let startup = self.spec.startup_timeout;
        let overdue_start: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.startup_deadline(startup).is_some_and(|t| t <= now) && w.pid.is_some())
            .map(|w| w.id)
            .collect();
        for id in overdue_start {
            tracing::warn!(pool = %self.spec.name, worker = %id, "not ready within startup_timeout ({startup:?}); killing it");
            self.kill_group(
                id,
                Reason::Timeout,
                format!("not ready within startup_timeout ({startup:?})"),
            );
            // It never started: the breaker counts it (the exit itself is planned).
            let booked = self.count_failure(id, Reason::Timeout, Failure::Start, now);
            self.announce_failing(id, format!("not ready within startup_timeout ({startup:?})"), booked);
        }
        if let Some((deadline, _)) = self.shutdown {
            if deadline <= now {
                for call in std::mem::take(&mut self.calls.queue) {
                    self.fail_call(call, ErrorKind::ShuttingDown);
                }
                let live: Vec<WorkerId> = self.workers.values().filter(|w| w.live()).map(|w| w.id).collect();
                for id in live {
                    self.stop_worker(id, None, now);
                }
            } else {
                self.stop_finished_workers(now);
            }
        }
        let kill_timeout = self.spec.kill_timeout;
        let mut kills = Vec::new();
        for w in self.workers.values_mut() {
            if let (Some(at), Some(pid)) = (w.kill_at, w.pid)
                && at <= now
            {
                tracing::warn!(pool = %self.spec.name, worker = %w.id, "did not stop within kill_timeout; sending SIGKILL");
                kills.push(pid);
                w.kill_at = None;
                w.kill_detail = Some(format!("did not stop within kill_timeout ({kill_timeout:?})"));
            }
        }
        for pid in kills {
            self.effect(Effect::Signal {
                pid,
                signal: Signal::SIGKILL,
            });
        }
        if self.phase.failing() && self.has_stable_worker(now) {
            self.restarts.history.record_ready();
            self.move_phase(PhaseEvent::Recovered);
            self.restarts.failing_cause = None;
            self.restarts.at = None;
            self.emit(EventKind::PoolRecovered, None, None, |_| {});
        }
    }

    /// While shutting down: workers with no call in flight stop once no queued call is
    /// left for them.
    fn stop_finished_workers(&mut self, now: Instant) {
        if !self.calls.queue.is_empty() {
            return;
        }
        let idle: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.live() && w.calls.is_empty())
            .map(|w| w.id)
            .collect();
        for id in idle {
            self.stop_worker(id, None, now);
        }
    }

    pub(super) fn workers_deadline(&self) -> Option<Instant> {
        let kills = self.workers.values().filter_map(|w| w.kill_at);
        // A worker without a pid is still being forked by its pool's template, which has a
        // deadline of its own; only started workers can be overdue here.
        let startups = self
            .workers
            .values()
            .filter(|w| w.pid.is_some())
            .filter_map(|w| w.startup_deadline(self.spec.startup_timeout));
        let stable = Some(())
            .filter(|_| self.phase.failing())
            .and_then(|_| self.workers.values().filter_map(|w| w.ready_at).min())
            .map(|t| t + self.stable_after());
        let restart = self.restarts.at.filter(|_| self.live_count() < self.desired());
        let shutdown = self.shutdown.as_ref().map(|(t, _)| *t);
        let drains = self
            .workers
            .values()
            .filter_map(|w| w.drain_deadline.filter(|_| w.state() == WorkerState::Draining));
        let ages = self
            .workers
            .values()
            .filter(|w| w.retire.is_none() && matches!(w.state(), WorkerState::Idle | WorkerState::Busy))
            .filter_map(|w| w.limits.max_age.map(|a| w.started_at + a));
        kills
            .chain(startups)
            .chain(stable)
            .chain(restart)
            .chain(shutdown)
            .chain(drains)
            .chain(ages)
            .min()
    }

    /// How long after its ready a worker counts as started: at once for a pit worker; a
    /// supervised one, which has no ready frame, once it has stayed up a while.
    pub(super) fn stable_after(&self) -> Duration {
        match self.spec.protocol {
            Protocol::None => SUPERVISED_STABLE_AFTER,
            Protocol::Pit => Duration::ZERO,
        }
    }

    fn has_stable_worker(&self, now: Instant) -> bool {
        let after = self.stable_after();
        self.workers.values().any(|w| {
            matches!(w.state(), WorkerState::Idle | WorkerState::Busy) && w.ready_at.is_some_and(|t| t + after <= now)
        })
    }
}
