//! Starting a `max_requests` replacement ahead of the limit.
//!
//! A worker that reaches `max_requests` goes only once its replacement is ready (a pool
//! never drops below its size), and it keeps serving meanwhile when no other worker can
//! take a call. Under load that overshoots by every call it finishes while the replacement
//! starts: at 1,000 calls/s and a 300 ms start-up, 300 calls. So the replacement starts
//! early: when the calls the worker will finish within the pool's start-up time, at its
//! recent pace, would take it to its limit. The worker then reaches the limit about when
//! its replacement is ready.
//!
//! [`CallPace`] measures a worker's pace from its recent completions, [`RecentDuration`] the
//! pool's start-up time from its recent starts, and [`replacement_due`] decides. All pure:
//! the pool actor passes every instant in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Completions a pace is measured over: enough to smooth a burst, few enough to follow a
/// change of load within a few calls.
const PACE_WINDOW: usize = 16;
/// The weight of the latest start in the start-up estimate: half, so that a pool's first
/// starts (a preloaded pool's include its template's imports, 100 times a fork from its
/// spare) stop counting after a few replacements.
const STARTUP_WEIGHT: f64 = 0.5;

/// When a worker's last calls finished: its pace, in calls per second.
#[derive(Debug, Clone, Default)]
pub struct CallPace {
    done: VecDeque<Instant>,
}

impl CallPace {
    /// Records a call that finished at `now`.
    pub fn record(&mut self, now: Instant) {
        if self.done.len() == PACE_WINDOW {
            self.done.pop_front();
        }
        self.done.push_back(now);
    }

    /// Calls per second over the recent completions, measured up to `now` (so a worker
    /// that stopped getting calls slows down as time passes). `None` before two calls.
    pub fn per_second(&self, now: Instant) -> Option<f64> {
        let first = *self.done.front()?;
        if self.done.len() < 2 {
            return None;
        }
        let span = now.saturating_duration_since(first).as_secs_f64();
        // All within the clock's resolution: as fast as can be measured.
        let span = span.max(1e-6);
        Some((self.done.len() - 1) as f64 / span)
    }
}

/// A duration that recurs (a start-up, a call), weighted towards the latest.
#[derive(Debug, Clone, Default)]
pub struct RecentDuration {
    estimate: Option<Duration>,
}

impl RecentDuration {
    pub fn record(&mut self, took: Duration) {
        self.estimate = Some(match self.estimate {
            None => took,
            Some(before) => before.mul_f64(1.0 - STARTUP_WEIGHT) + took.mul_f64(STARTUP_WEIGHT),
        });
    }

    /// `None` before the first start.
    pub fn estimate(&self) -> Option<Duration> {
        self.estimate
    }
}

/// Whether a worker's `max_requests` replacement should start now: it has reached its
/// `limit` counting the calls it holds (`done + in_flight`), or the calls it will finish
/// within `startup` at `per_second` would take it there. Without a pace or a start-up
/// measured yet, only the limit itself counts. A limit of zero never fires.
pub fn replacement_due(
    done: u64,
    in_flight: u64,
    limit: Option<u64>,
    per_second: Option<f64>,
    startup: Option<Duration>,
) -> bool {
    let Some(limit) = limit.filter(|&l| l > 0) else {
        return false;
    };
    let held = done.saturating_add(in_flight);
    let ahead = match (per_second, startup) {
        (Some(rate), Some(startup)) if rate.is_finite() && rate > 0.0 => {
            (rate * startup.as_secs_f64()).ceil().min(u64::MAX as f64) as u64
        }
        _ => 0,
    };
    held.saturating_add(ahead) >= limit
}

/// Whether a worker has reached its `max_requests` counting the calls it holds: from then
/// on it takes a call only when no other worker can.
pub fn at_limit(done: u64, in_flight: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|l| l > 0 && done.saturating_add(in_flight) >= l)
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pace_is_calls_per_second_over_the_recent_completions() {
        let t0 = Instant::now();
        let mut pace = CallPace::default();
        assert_eq!(pace.per_second(t0), None);
        pace.record(t0);
        assert_eq!(pace.per_second(t0 + ms(10)), None, "one call gives no pace");
        for i in 1..=10 {
            pace.record(t0 + ms(10 * i));
        }
        // 10 intervals of 10 ms.
        assert!((pace.per_second(t0 + ms(100)).unwrap() - 100.0).abs() < 1e-6);
        // Idle since: the pace falls as time passes.
        assert!((pace.per_second(t0 + ms(1000)).unwrap() - 10.0).abs() < 1e-6);
        // Only the last PACE_WINDOW count: a faster burst takes over.
        for i in 0..PACE_WINDOW as u64 {
            pace.record(t0 + ms(2000 + i));
        }
        let burst = pace.per_second(t0 + ms(2000 + PACE_WINDOW as u64 - 1)).unwrap();
        assert!((burst - 1000.0).abs() < 1e-6, "{burst}");
    }

    #[test]
    fn completions_at_one_instant_are_a_fast_pace_not_a_division_by_zero() {
        let t0 = Instant::now();
        let mut pace = CallPace::default();
        for _ in 0..4 {
            pace.record(t0);
        }
        let rate = pace.per_second(t0).unwrap();
        assert!(rate.is_finite() && rate > 1e5, "{rate}");
    }

    #[test]
    fn startup_estimate_follows_the_latest_starts() {
        let mut s = RecentDuration::default();
        assert_eq!(s.estimate(), None);
        s.record(ms(800));
        assert_eq!(s.estimate(), Some(ms(800)));
        // A preloaded pool's first starts waited for its template; forks from the spare
        // take milliseconds: within a few replacements the estimate is theirs.
        let mut seen = Vec::new();
        for _ in 0..6 {
            s.record(ms(8));
            seen.push(s.estimate().unwrap());
        }
        assert_eq!(seen[0], ms(404));
        assert!(seen.windows(2).all(|w| w[1] < w[0]), "{seen:?}");
        assert!(seen[5] < ms(22), "{seen:?}");
        // A slower start raises it at once, by half the difference.
        s.record(ms(208));
        assert!(s.estimate().unwrap() > ms(100));
    }

    #[test]
    fn replacement_is_due_when_the_calls_during_a_start_reach_the_limit() {
        let cases = [
            // (case, done, in flight, limit, pace/s, start-up, due)
            ("no limit", 1_000, 0, None, Some(1e3), Some(ms(300)), false),
            (
                "a zero limit never fires",
                5,
                0,
                Some(0),
                Some(1e3),
                Some(ms(300)),
                false,
            ),
            ("at the limit", 25, 0, Some(25), None, None, true),
            ("at it counting calls held", 20, 5, Some(25), None, None, true),
            ("below it, nothing measured", 24, 0, Some(25), None, None, false),
            (
                "below it, no start-up measured",
                24,
                0,
                Some(25),
                Some(100.0),
                None,
                false,
            ),
            // 100 calls/s x 50 ms = 5 calls during the start: due from 20 on.
            ("5 calls ahead, at 20", 20, 0, Some(25), Some(100.0), Some(ms(50)), true),
            (
                "5 calls ahead, at 19",
                19,
                0,
                Some(25),
                Some(100.0),
                Some(ms(50)),
                false,
            ),
            (
                "part of a call rounds up",
                19,
                0,
                Some(25),
                Some(101.0),
                Some(ms(50)),
                true,
            ),
            (
                "a start slower than the whole life",
                0,
                0,
                Some(25),
                Some(1e3),
                Some(ms(300)),
                true,
            ),
            ("a pace of zero", 24, 0, Some(25), Some(0.0), Some(ms(300)), false),
            (
                "a pace that is not a number",
                24,
                0,
                Some(25),
                Some(f64::NAN),
                Some(ms(300)),
                false,
            ),
            (
                "an endless pace",
                1,
                0,
                Some(25),
                Some(f64::INFINITY),
                Some(ms(300)),
                false,
            ),
        ];
        for (case, done, in_flight, limit, pace, startup, due) in cases {
            assert_eq!(replacement_due(done, in_flight, limit, pace, startup), due, "{case}");
        }
    }

    #[test]
    fn at_limit_counts_the_calls_held() {
        assert!(at_limit(25, 0, Some(25)));
        assert!(at_limit(10, 15, Some(25)));
        assert!(!at_limit(10, 14, Some(25)));
        assert!(!at_limit(10, 14, None));
        assert!(!at_limit(10, 14, Some(0)));
    }
}
