//! Memory, predicted and budgeted (INTERFACE section 11). `predict_rss`: whether a worker's
//! growth would cross its limit before a replacement could take over. Budgets: the pool's
//! own `memory_budget`, and what the daemon's leaves it (`daemon_allowance`, told by the
//! supervisor), on the pool's `memory_metric` over its workers, template and spare. pit
//! never crosses one by its own doing: a replacement that would (a surge: the new worker
//! beside the old) recycles in place instead, the old worker drained before the new one
//! starts; a pool over its budget recycles its largest worker that way, one at a time,
//! reason `memory_budget`.

use std::time::{Duration, Instant};

use super::core::PoolCore;
use crate::ids::WorkerId;
use crate::lifecycle::recycle::predicts_crossing;
use crate::lifecycle::{Reason, WorkerState};
use crate::proto::event::EventKind;

impl PoolCore {
    /// `predict_rss`: whether the worker, growing as it does, would cross `hard_rss` (else
    /// `max_rss`) before a replacement could be ready (the pool's measured start-up) and its
    /// calls drained (the pool's recent call times), with one sample's interval to spare.
    pub(super) fn predicts_crossing(&self, id: WorkerId) -> bool {
        let policy = &self.spec.recycle;
        let (Some(w), Some(limit)) = (self.workers.get(&id), policy.hard_rss.or(policy.max_rss)) else {
            return false;
        };
        if !policy.predict_rss {
            return false;
        }
        let history: Vec<(Instant, u64)> = w.memory_history.iter().copied().collect();
        let interval = match history.as_slice() {
            [.., (a, _), (b, _)] => b.saturating_duration_since(*a),
            _ => Duration::ZERO,
        };
        // Before the first start is measured, the start-up timeout is the safe guess. The
        // estimate is a mean: half as much again covers a slower start than the usual.
        let startup = self
            .counts
            .startups
            .estimate()
            .map_or(self.spec.startup_timeout, |s| s.mul_f64(1.5));
        let drain = self.counts.call_times.estimate().unwrap_or_default();
        predicts_crossing(&history, limit, startup + drain + interval)
    }

    /// The budget the pool must stay under now, if any.
    pub(super) fn budget(&self) -> Option<u64> {
        match (self.spec.recycle.memory_budget, self.daemon_allowance) {
            (Some(own), Some(allowed)) => Some(own.min(allowed)),
            (own, allowed) => own.or(allowed),
        }
    }

    /// The pool's memory on its metric, as its status sums it.
    pub(super) fn memory_used(&self) -> u64 {
        self.memory().memory_bytes
    }

    /// Whether starting one more worker beside the ones running would cross the budget. A
    /// new worker is counted at the size of the pool's smallest (a fresh one is about that).
    pub(super) fn surge_crosses_budget(&self) -> bool {
        let Some(budget) = self.budget() else { return false };
        let smallest = self
            .workers
            .values()
            .filter_map(|w| w.sample.as_ref().map(|s| s.memory_bytes))
            .min()
            .unwrap_or(0);
        self.memory_used().saturating_add(smallest) > budget
    }

    /// A pool over its budget recycles its largest worker in place, one at a time.
    pub(super) fn check_budget(&mut self, now: Instant) {
        let Some(budget) = self.budget() else { return };
        // One at a time: a worker already going in place (for the budget or not) still
        // counts until it has exited.
        let leaving = self.workers.values().any(|w| w.in_place);
        if leaving || self.phase.shutting_down() || self.memory_used() <= budget {
            return;
        }
        let largest = self
            .workers
            .values()
            .filter(|w| w.retire.is_none() && matches!(w.state(), WorkerState::Idle | WorkerState::Busy))
            .filter_map(|w| w.sample.as_ref().map(|s| (s.memory_bytes, w.id)))
            .max();
        if let Some((bytes, id)) = largest {
            tracing::warn!(
                pool = %self.spec.name,
                worker = %id,
                "the pool's memory ({} MiB) is over its budget ({} MiB): recycling its largest worker ({} MiB) in place",
                self.memory_used() >> 20,
                budget >> 20,
                bytes >> 20
            );
            self.recycle_in_place(id, Reason::MemoryBudget, now);
        }
    }

    /// Recycles a worker without a surge: it drains (finishing its calls within
    /// `drain_timeout`) and its replacement starts once it has exited.
    pub(super) fn recycle_in_place(&mut self, id: WorkerId, reason: Reason, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        w.retire = Some(reason);
        w.in_place = true;
        let pid = w.pid;
        self.counts.recycled += 1;
        self.deps.metrics.recycle(&self.spec.name, reason);
        self.recycling.replacing.push_back((id, reason));
        self.emit(EventKind::WorkerRecycled, Some(id), pid, |ev| ev.reason = Some(reason));
        self.drain_worker(id, now);
    }
}
