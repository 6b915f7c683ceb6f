//! What a pool counts for status, apart from its workers' own figures: the calls its
//! workers ran and the calls it refused before any worker saw them, its recycles and
//! restarts, and how long its workers take to start.
//!
//! A refused call is not one of the pool's calls: after a 5 s drain under 64 callers the
//! refusals would outnumber every call ever run and read as an error rate near 90%. So
//! `requests`/`errors` count calls a worker ran (answered, failed, timed out or lost with
//! it), and refusals go to `rejected`, by kind.

use std::collections::BTreeMap;

use crate::lifecycle::recycle::RecentDuration;
use crate::proto::call::ErrorKind;

#[derive(Debug, Default)]
pub(super) struct PoolCounts {
    /// Calls a worker ran, whatever their outcome.
    pub requests: u64,
    /// Of those, the ones that failed.
    pub errors: u64,
    /// Calls refused before any worker saw them, indexed as `ErrorKind::REJECTIONS`.
    rejected: [u64; ErrorKind::REJECTIONS.len()],
    pub recycled: u64,
    pub restarts: u64,
    /// Spawn-to-ready times of recent workers: when a `max_requests` replacement starts,
    /// and how far ahead `predict_rss` looks.
    pub startups: RecentDuration,
    /// How long recent calls ran on their workers: a worker's drain, as `predict_rss` sees it.
    pub call_times: RecentDuration,
}

impl PoolCounts {
    /// Books a call a worker ran.
    pub fn ran(&mut self, failed: bool) {
        self.requests += 1;
        if failed {
            self.errors += 1;
        }
    }

    /// Books a refusal. Returns false for a kind that is not a refusal (a bug in the
    /// caller, counted nowhere rather than as a call).
    pub fn reject(&mut self, kind: ErrorKind) -> bool {
        match ErrorKind::REJECTIONS.iter().position(|&k| k == kind) {
            Some(i) => {
                self.rejected[i] += 1;
                true
            }
            None => false,
        }
    }

    /// The refusals by kind, every kind present (zero included), as status shows them.
    pub fn rejected(&self) -> BTreeMap<String, u64> {
        ErrorKind::REJECTIONS
            .iter()
            .zip(self.rejected)
            .map(|(k, n)| (k.as_str().to_string(), n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_apart_from_calls_by_kind() {
        let mut c = PoolCounts::default();
        c.ran(false);
        c.ran(true);
        for _ in 0..3 {
            assert!(c.reject(ErrorKind::PoolDrained));
        }
        assert!(c.reject(ErrorKind::QueueFull));
        assert!(
            !c.reject(ErrorKind::HandlerError),
            "a handler error is a call a worker ran"
        );
        assert_eq!((c.requests, c.errors), (2, 1));
        let rejected = c.rejected();
        assert_eq!(rejected.len(), ErrorKind::REJECTIONS.len());
        assert_eq!(rejected["pool_drained"], 3);
        assert_eq!(rejected["queue_full"], 1);
        assert_eq!(rejected["shutting_down"], 0);
    }
}
