//! Restart backoff with jitter, and the crash-loop breaker of a pool.
//!
//! The pool actor keeps one [`RestartHistory`] per pool. It records every unplanned worker
//! exit and every failed start ([`RestartHistory::record_failure`]) and every worker that
//! became ready ([`RestartHistory::record_ready`]); it asks how long to wait before the
//! next start ([`RestartHistory::next_backoff`]) and whether the pool is
//! [`PoolVerdict::Failing`] ([`RestartHistory::verdict`]).
//!
//! Backoff exists for starts that fail, not for workers that ran. A start is good once the
//! worker got ready and then stayed up `min_uptime` (supervisord's `startsecs`): whatever
//! kills it after that (an OOM kill, an operator's kill -9, a segfault an hour in) has
//! nothing to do with how the pool starts, so its replacement starts at once, whatever the
//! worker's age. Otherwise a burst of kills on different healthy workers would delay each
//! replacement more than the last, towards `max`.
//!
//! Two counters, two purposes:
//! - the *consecutive* count drives the exponential backoff. It counts failed starts:
//!   workers that died before ready, or within `min_uptime` of it (a worker that gets ready
//!   and dies at once is still a loop worth slowing down). A good start's death does not
//!   add to it; a worker that stayed up `reset_after` clears it, as before.
//! - the *failed starts* within `crash_loop_window` drive the breaker, as the interface
//!   defines it ("this many failed starts within crash_loop_window"). Crashes of workers
//!   that did get ready do not count: one flaky worker among many healthy ones must not
//!   make the whole pool fail its calls fast.
//!
//! Once tripped, the breaker stays tripped until a worker gets ready (the probe), even if
//! the failures age out of the window meanwhile: "calls fail fast until a probe succeeds".
//! Recycles (planned exits) are not failures and are never recorded here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::spec::RestartPolicy;

/// Lowest jitter factor applied to a backoff.
const JITTER_MIN: f64 = 0.8;
/// Width of the jitter range: factors are drawn in `[0.8, 1.2)`.
const JITTER_SPAN: f64 = 0.4;

/// An unplanned end of a worker, as the restart logic needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The worker exited, or missed `startup_timeout`, before it was ready.
    Start,
    /// The worker exited unplanned after it was ready: `uptime` after it was spawned,
    /// `ready_for` after it got ready.
    Crash { uptime: Duration, ready_for: Duration },
}

/// Whether a pool may serve calls or must fail them fast while it probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolVerdict {
    Healthy,
    /// In a crash loop: start one probe worker per backoff (`max`), fail calls fast.
    Failing,
}

/// The restart record of one pool. Memory stays bounded: at most `crash_loop_failures`
/// timestamps are kept, and only those still inside the window.
#[derive(Debug, Clone, Default)]
pub struct RestartHistory {
    /// Failed starts (dead before ready or within `min_uptime` of it), since the last
    /// worker that stayed up `reset_after` (or since the last recovery from a crash loop).
    consecutive: u32,
    /// The last failure booked was the death of a good start: its replacement owes no wait.
    good_start_died: bool,
    /// Times of the most recent failed starts, oldest first.
    failed_starts: VecDeque<Instant>,
    /// The breaker tripped and no worker has got ready since.
    failing: bool,
}

impl RestartHistory {
    /// A history with no failures: backoff zero, verdict healthy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an unplanned exit or a failed start at `now`, and returns the verdict that
    /// follows (the caller announces the pool as failing when it changes).
    pub fn record_failure(&mut self, policy: &RestartPolicy, now: Instant, failure: Failure) -> PoolVerdict {
        self.good_start_died = false;
        match failure {
            Failure::Crash { uptime, ready_for } if ready_for >= policy.min_uptime => {
                // A good start: no loop to slow down. Up `reset_after`, it also proves the
                // failed starts before it are over.
                self.good_start_died = true;
                if uptime >= policy.reset_after {
                    self.consecutive = 0;
                }
            }
            Failure::Crash { .. } => self.consecutive = self.consecutive.saturating_add(1),
            Failure::Start => {
                self.consecutive = self.consecutive.saturating_add(1);
                self.failed_starts.push_back(now);
            }
        }
        self.forget_old(policy, now);
        if Self::threshold_reached(policy, self.failed_starts.len()) {
            self.failing = true;
        }
        self.verdict(policy, now)
    }

    /// Records that a worker became ready. Returns true when this ended a crash loop: the
    /// probe succeeded, so the breaker is cleared and the backoff starts over, letting the
    /// pool refill at once (a relapse trips the breaker again after as many failed starts).
    /// A ready worker outside a crash loop changes nothing: it may still die within
    /// `min_uptime`, and only `reset_after` of uptime clears the failed starts.
    pub fn record_ready(&mut self) -> bool {
        if !self.failing {
            return false;
        }
        self.failing = false;
        self.failed_starts.clear();
        self.consecutive = 0;
        self.good_start_died = false;
        true
    }

    /// How long to wait before the next start: `initial * 2^(consecutive-1)` capped at
    /// `max` (exactly `max` while failing: the probe interval), times a jitter factor in
    /// `[0.8, 1.2)`, never above `max`. Zero when the last failure was the death of a good
    /// start, or when no start failed since the last worker that stayed up `reset_after`.
    ///
    /// `jitter` is a uniform value in `[0, 1)` (e.g. `rng.f64()`); values outside are
    /// clamped and NaN counts as the neutral middle, so a bad value cannot cause a panic.
    pub fn next_backoff(&self, policy: &RestartPolicy, jitter: f64) -> Duration {
        if !self.failing && (self.consecutive == 0 || self.good_start_died) {
            return Duration::ZERO;
        }
        let base = if self.failing {
            policy.max
        } else {
            exponential(policy, self.consecutive)
        };
        let unit = if jitter.is_nan() { 0.5 } else { jitter.clamp(0.0, 1.0) };
        let factor = JITTER_MIN + JITTER_SPAN * unit;
        Duration::try_from_secs_f64(base.as_secs_f64() * factor)
            .unwrap_or(policy.max)
            .min(policy.max)
    }

    /// [`PoolVerdict::Failing`] while the breaker is tripped, or when the failed starts
    /// within `crash_loop_window` before `now` reach `crash_loop_failures` (which also
    /// covers a policy made stricter by a reload). A `crash_loop_failures` or a
    /// `crash_loop_window` of zero disables the breaker.
    pub fn verdict(&self, policy: &RestartPolicy, now: Instant) -> PoolVerdict {
        let recent = self
            .failed_starts
            .iter()
            .filter(|&&t| within_window(policy, now, t))
            .count();
        if self.failing || Self::threshold_reached(policy, recent) {
            PoolVerdict::Failing
        } else {
            PoolVerdict::Healthy
        }
    }

    /// Failed starts counted by the backoff.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    fn threshold_reached(policy: &RestartPolicy, failed_starts: usize) -> bool {
        policy.crash_loop_failures > 0 && failed_starts >= policy.crash_loop_failures as usize
    }

    /// Drops failed starts that left the window, then all but the newest
    /// `crash_loop_failures`: if that many are inside the window, the newest ones are.
    fn forget_old(&mut self, policy: &RestartPolicy, now: Instant) {
        while let Some(&oldest) = self.failed_starts.front() {
            if within_window(policy, now, oldest) {
                break;
            }
            self.failed_starts.pop_front();
        }
        let keep = policy.crash_loop_failures as usize;
        while self.failed_starts.len() > keep {
            self.failed_starts.pop_front();
        }
    }
}

fn within_window(policy: &RestartPolicy, now: Instant, at: Instant) -> bool {
    now.saturating_duration_since(at) < policy.crash_loop_window
}

/// `initial * 2^(consecutive-1)`, capped at `max`, without overflow.
fn exponential(policy: &RestartPolicy, consecutive: u32) -> Duration {
    let mut delay = policy.initial;
    for _ in 1..consecutive {
        // Stop once capped (or stuck at zero): the loop never runs past ~100 doublings.
        if delay.is_zero() || delay >= policy.max {
            break;
        }
        delay = delay.saturating_mul(2);
    }
    delay.min(policy.max)
}

#[cfg(test)]
mod tests;
