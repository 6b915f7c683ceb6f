//! Health checks: idle workers of a pit-protocol pool get a PING after `health_interval`
//! without a sign of life; no PONG within `health_timeout` is a failure, and
//! `health_failures` consecutive failures recycle the worker (reason `health`). A worker's
//! health shows `failing` meanwhile and `ok` again after a PONG.

use std::time::Instant;

use super::core::PoolCore;
use super::worker::Worker;
use crate::ids::WorkerId;
use crate::lifecycle::{Health, WorkerState};
use crate::proto::worker::encode_ping;
use crate::spec::Protocol;

impl PoolCore {
    /// Sends due pings and books overdue ones as failures.
    pub(super) fn check_health(&mut self, now: Instant) {
        if self.spec.protocol != Protocol::Pit {
            return;
        }
        let policy = self.spec.health.clone();
        let mut failed = Vec::new();
        let mut pings = Vec::new();
        for w in self.workers.values_mut() {
            if let Some((_, sent)) = w.ping
                && sent + policy.timeout <= now
            {
                w.ping = None;
                w.health_failures += 1;
                w.health = Health::Failing;
                w.last_seen = now;
                tracing::warn!(worker = %w.id, failures = w.health_failures, "no answer to a health ping within health_timeout");
                failed.push(w.id);
                continue;
            }
            let due = pingable(w) && w.exit.is_none() && w.ping.is_none() && w.last_seen + policy.interval <= now;
            if due && w.writable {
                let req_id = self.next_ping;
                self.next_ping += 1;
                w.ping = Some((req_id, now));
                pings.push((w.id, req_id));
            }
        }
        for (id, req_id) in pings {
            self.write(id, encode_ping(req_id));
        }
        for id in failed {
            self.check_triggers(id, now);
        }
    }

    pub(super) fn on_pong(&mut self, id: WorkerId, req_id: u64, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if let Some((expected, sent)) = w.ping
            && expected == req_id
        {
            // At debug level only: what a benchmark reads to get the round trip at load.
            let rtt_us = u64::try_from(now.saturating_duration_since(sent).as_micros()).unwrap_or(u64::MAX);
            tracing::debug!(pool = %self.spec.name, worker = %w.id, rtt_us, "health ping answered");
            w.ping = None;
            w.health = Health::Ok;
            w.health_failures = 0;
            w.last_seen = now;
        }
    }

    pub(super) fn health_deadline(&self) -> Option<Instant> {
        if self.spec.protocol != Protocol::Pit {
            return None;
        }
        let h = &self.spec.health;
        self.workers
            .values()
            .filter_map(|w| match w.ping {
                Some((_, sent)) => Some(sent + h.timeout),
                None if pingable(w) => Some(w.last_seen + h.interval),
                None => None,
            })
            .min()
    }
}

/// Workers that can answer a ping now: idle ones, and busy ones that run several calls at
/// once (their event loop answers pings beside the calls; one blocked by a call does not,
/// which is what the ping is for).
fn pingable(w: &Worker) -> bool {
    w.state() == WorkerState::Idle || (w.state() == WorkerState::Busy && w.calls.slots() > 1)
}
