//! When to recycle a live worker.
//!
//! At spawn the pool actor draws each worker's own [`WorkerLimits`]; after every event that
//! changes a worker's figures (a call finished, a memory sample, a health check) and on its
//! age deadline, it asks [`recycle_decision`]. The answer is the first trigger that fired,
//! in a fixed priority, so a worker that trips several at once is reported under the most
//! urgent one. Acting on it (kill at once for `hard_rss`, graceful replacement otherwise)
//! is the actor's job.
//!
//! A limit of zero never fires. Spec validation should refuse it; if one slips through,
//! "recycle every worker the moment it starts" would be a replacement storm, never the
//! operator's intent.

use std::time::{Duration, Instant};

pub mod ahead;
pub mod predict;
pub use ahead::{CallPace, RecentDuration, at_limit, replacement_due};
pub use predict::{growth_rate, predicts_crossing, samples_over};

use super::reason::Reason;
use crate::spec::{HealthPolicy, RecyclePolicy};

/// The figures of one worker that recycling looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// When the worker was spawned; its age is measured from here.
    pub started_at: Instant,
    /// Calls completed (successfully or not).
    pub requests: u64,
    /// Failed calls since its last successful one.
    pub consecutive_errors: u32,
    /// The latest sample of the pool's `memory_metric` over the worker's process tree;
    /// `None` until the first sample.
    pub memory_bytes: Option<u64>,
    /// Its latest consecutive samples over `max_rss` (`predict::samples_over`).
    pub samples_over_max_rss: u32,
    /// Failed health checks since its last successful one.
    pub health_failures: u32,
}

impl WorkerStats {
    /// A fresh worker spawned at `started_at`.
    pub fn new(started_at: Instant) -> Self {
        Self {
            started_at,
            requests: 0,
            consecutive_errors: 0,
            memory_bytes: None,
            samples_over_max_rss: 0,
            health_failures: 0,
        }
    }
}

/// The request and age limits of one worker, drawn once at spawn from the pool's policy.
/// Each worker draws its own so that workers started together do not all recycle together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerLimits {
    pub max_requests: Option<u64>,
    pub max_age: Option<Duration>,
}

impl WorkerLimits {
    /// Draws `max_requests` uniformly in `[max, max + jitter]` and `max_age` in
    /// `[age, age + jitter]` (both ends included, saturating). Unset limits stay unset.
    pub fn draw(policy: &RecyclePolicy, rng: &mut fastrand::Rng) -> Self {
        let max_requests = policy
            .max_requests
            .map(|max| max.saturating_add(rng.u64(0..=policy.max_requests_jitter)));
        let max_age = policy.max_age.map(|age| {
            let jitter_ns = u64::try_from(policy.max_age_jitter.as_nanos()).unwrap_or(u64::MAX);
            age.saturating_add(Duration::from_nanos(rng.u64(0..=jitter_ns)))
        });
        Self { max_requests, max_age }
    }
}

/// The reason to recycle the worker now, or `None` to keep it.
///
/// Priority, most urgent first: `hard_rss` > `max_rss` > `max_errors` > `health` >
/// `max_requests` > `max_age`. Memory limits fire when the sample *exceeds* them (`max_rss`
/// only after `max_rss_samples` samples in a row do: a shorter spike passes); counts
/// and age fire when they *reach* them. `limits` supplies the request and age limits (the
/// per-worker draw); `recycle` the memory and error limits.
pub fn recycle_decision(
    stats: &WorkerStats,
    limits: &WorkerLimits,
    recycle: &RecyclePolicy,
    health: &HealthPolicy,
    now: Instant,
) -> Option<Reason> {
    let memory_over = |limit: Option<u64>| match (stats.memory_bytes, limit) {
        (Some(memory), Some(limit)) => limit > 0 && memory > limit,
        _ => false,
    };
    let age = now.saturating_duration_since(stats.started_at);
    let checks = [
        (Reason::HardRss, memory_over(recycle.hard_rss)),
        (
            Reason::MaxRss,
            memory_over(recycle.max_rss) && stats.samples_over_max_rss >= recycle.max_rss_samples.max(1),
        ),
        (
            Reason::MaxErrors,
            reached(u64::from(stats.consecutive_errors), recycle.max_errors.map(u64::from)),
        ),
        (
            Reason::Health,
            reached(u64::from(stats.health_failures), Some(u64::from(health.failures))),
        ),
        (Reason::MaxRequests, reached(stats.requests, limits.max_requests)),
        (
            Reason::MaxAge,
            limits.max_age.is_some_and(|max| !max.is_zero() && age >= max),
        ),
    ];
    checks.into_iter().find_map(|(reason, fired)| fired.then_some(reason))
}

/// A count reached a set, non-zero limit.
fn reached(count: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|limit| limit > 0 && count >= limit)
}

#[cfg(test)]
mod tests;
