//! Status of a pool, built from the core's state.

use std::time::Instant;

use super::core::PoolCore;
use crate::daemon::monitor::TreeSample;
use crate::daemon::probe::PoolSnapshot;
use crate::proto::status::{PoolMemory, PoolState, PoolStatus, WorkerStatus};

/// stderr lines quoted in a failing pool's reason.
const CRASH_REPORT_LINES: usize = 5;

impl PoolCore {
    /// Why the pool is failing: the exit that tipped it and the worker's last stderr lines
    /// (read at report time, so lines captured after the exit are included).
    pub(super) fn failing_reason(&self) -> Option<String> {
        let (id, status) = self.restarts.failing_cause.as_ref().filter(|_| self.phase.failing())?;
        let lines = self.deps.output.last_stderr(*id, CRASH_REPORT_LINES);
        Some(if lines.is_empty() {
            format!("crash loop: {id} {status}")
        } else {
            format!("crash loop: {id} {status}; last stderr: {}", lines.join(" | "))
        })
    }

    fn pool_state(&self) -> PoolState {
        self.phase.state()
    }

    /// The pool as the probes see it.
    pub(super) fn snapshot(&self) -> PoolSnapshot {
        PoolSnapshot {
            name: self.spec.name.clone(),
            reached_size: self.reached_size,
            ready_workers: self.ready_count() as u32,
            size: self.desired() as u32,
            state: self.pool_state(),
            serves_calls: self.spec.protocol == crate::spec::Protocol::Pit,
        }
    }

    /// Calls the workers hold now.
    pub(super) fn in_flight(&self) -> u64 {
        self.workers.values().map(|w| w.calls.in_flight() as u64).sum()
    }

    /// Calls the pool can run at once: its ready workers' slots (none for a supervise-only
    /// pool).
    pub(super) fn capacity(&self) -> u64 {
        if self.spec.protocol == crate::spec::Protocol::None {
            return 0;
        }
        self.workers
            .values()
            .filter(|w| w.is_ready())
            .map(|w| w.calls.slots() as u64)
            .sum()
    }

    /// Every process of the pool, workers first, with its last sample.
    pub(super) fn memory(&self) -> PoolMemory {
        let workers = self
            .workers
            .values()
            .filter(|w| w.pid.is_some())
            .map(|w| (w.id.to_string(), w.sample.as_ref().map(TreeSample::memory)));
        PoolMemory::sum(workers.chain(self.template_memory()))
    }

    pub(super) fn status(&self, now: Instant) -> PoolStatus {
        let workers = self
            .workers
            .values()
            .map(|w| WorkerStatus {
                id: w.id,
                pid: w.pid.unwrap_or(0),
                state: w.state(),
                health: w.health,
                rss_bytes: w.sample.as_ref().map_or(0, |s| s.rss_bytes),
                memory_bytes: w.sample.as_ref().map_or(0, |s| s.memory_bytes),
                pss_bytes: w.sample.as_ref().and_then(|s| s.pss_bytes),
                uss_bytes: w.sample.as_ref().and_then(|s| s.uss_bytes),
                rss_growth_bytes_per_s: w.rss_growth(),
                cpu_percent: w.sample.as_ref().map_or(0.0, |s| s.cpu_percent),
                requests: w.requests,
                errors: w.errors,
                age_s: now.saturating_duration_since(w.started_at).as_secs_f64(),
                // What happened to this worker itself: being retired, or stopped for a reason.
                last_recycle_reason: w.retire.or(w.stop_reason),
                in_flight: w.calls.in_flight() as u32,
                gil_enabled: w.gil_enabled,
            })
            .collect();
        PoolStatus {
            name: self.spec.name.clone(),
            state: self.pool_state(),
            size: self.desired() as u32,
            workers,
            requests: self.counts.requests,
            errors: self.counts.errors,
            rejected: self.counts.rejected(),
            queued: self.calls.queue.len() as u64,
            recycled: self.counts.recycled,
            restarts: self.counts.restarts,
            concurrency: self.spec.concurrency,
            in_flight: self.in_flight(),
            streams_open: self.streams_open(),
            capacity: self.capacity(),
            failing_reason: self.failing_reason(),
            memory_metric: self.spec.recycle.memory_metric,
            max_rss_bytes: self.spec.recycle.max_rss,
            hard_rss_bytes: self.spec.recycle.hard_rss,
            memory_budget_bytes: self.budget(),
            template: self.template_status(),
            warnings: self.warnings(),
            memory: Some(self.memory()),
        }
    }
}
