//! Memory that is predicted (`predict_rss`) and spikes that pass (`max_rss_samples`), as
//! pure decisions on a worker's samples.
//!
//! The fit is the least-squares slope of the worker's last few samples of the pool's
//! `memory_metric`. It predicts a crossing only while the worker keeps growing: its last
//! samples rise, none falls. A worker whose growth stopped, or that freed memory again, is
//! left alone; a spike that came and went does not count as growth.

use std::time::{Duration, Instant};

/// The samples the fit looks at: the last few, so that it follows a change of pace.
pub const PREDICT_WINDOW: usize = 6;
/// Fewer samples than this tell nothing yet.
pub const PREDICT_MIN_SAMPLES: usize = 3;

/// Memory growth in bytes per second over `history` (oldest first): the least-squares
/// slope, so one noisy sample moves it less than a first/last difference would. The caller
/// chooses the window by what it passes. 0 with fewer than two points or no time between
/// them.
pub fn growth_rate(history: &[(Instant, u64)]) -> i64 {
    let Some(&(t0, _)) = history.first() else { return 0 };
    if history.len() < 2 {
        return 0;
    }
    let n = history.len() as f64;
    let points = || {
        history
            .iter()
            .map(|&(t, v)| (t.saturating_duration_since(t0).as_secs_f64(), v as f64))
    };
    let (mean_t, mean_v) = points().fold((0.0, 0.0), |(st, sv), (t, v)| (st + t / n, sv + v / n));
    let (cov, var) = points().fold((0.0, 0.0), |(c, s), (t, v)| {
        let dt = t - mean_t;
        (c + dt * (v - mean_v), s + dt * dt)
    });
    if var <= f64::EPSILON {
        return 0;
    }
    // `as` saturates at the i64 range and maps NaN to 0.
    (cov / var).round() as i64
}

/// Whether a worker whose recent memory samples are `history` (oldest first), growing as
/// they do, would reach `limit` within `lead`: the time a replacement takes to be ready and
/// the worker's calls to drain, plus one sample's interval.
pub fn predicts_crossing(history: &[(Instant, u64)], limit: u64, lead: Duration) -> bool {
    let recent = &history[history.len().saturating_sub(PREDICT_WINDOW)..];
    if recent.len() < PREDICT_MIN_SAMPLES || limit == 0 {
        return false;
    }
    let rising = recent[recent.len() - PREDICT_MIN_SAMPLES..]
        .windows(2)
        .all(|w| w[1].1 > w[0].1);
    let slope = growth_rate(recent);
    if !rising || slope <= 0 {
        return false;
    }
    let (_, now_bytes) = recent[recent.len() - 1];
    if now_bytes >= limit {
        return true;
    }
    let to_cross = (limit - now_bytes) as f64 / slope as f64;
    to_cross <= lead.as_secs_f64()
}

/// Consecutive samples over `limit`, after one more `sample`: a sample at or under it
/// starts the count again.
pub fn samples_over(before: u32, sample: u64, limit: Option<u64>) -> u32 {
    match limit {
        Some(limit) if limit > 0 && sample > limit => before.saturating_add(1),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// Samples every 100 ms from `values` (MiB).
    fn history(values: &[u64]) -> Vec<(Instant, u64)> {
        let t0 = Instant::now();
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (t0 + Duration::from_millis(100 * i as u64), v * MIB))
            .collect()
    }

    #[test]
    fn a_crossing_is_predicted_only_for_a_worker_still_growing_fast_enough() {
        let lead = Duration::from_millis(1500);
        let cases: &[(&str, &[u64], u64, bool)] = &[
            // 10 MiB/s, 20 MiB from the limit: 2 s away, more than the lead.
            ("steady growth, far enough", &[100, 101, 102, 103, 104, 105], 125, false),
            // 10 MiB/s, 10 MiB from the limit: 1 s away, within the lead.
            ("steady growth, too close", &[100, 101, 102, 103, 104, 105], 115, true),
            ("growth that stopped", &[100, 102, 104, 106, 106, 106], 110, false),
            ("memory freed again", &[100, 102, 104, 106, 105, 104], 107, false),
            (
                "a spike that came and went",
                &[100, 100, 100, 140, 100, 101],
                150,
                false,
            ),
            ("already over the limit and rising", &[100, 110, 120, 130], 115, true),
            ("two samples tell nothing", &[100, 150], 151, false),
        ];
        for (what, values, limit, want) in cases {
            assert_eq!(predicts_crossing(&history(values), limit * MIB, lead), *want, "{what}");
        }
    }

    #[test]
    fn only_consecutive_samples_over_the_limit_count() {
        let limit = Some(100);
        let mut over = 0;
        let mut seen = Vec::new();
        for sample in [90, 101, 150, 100, 120, 130, 140] {
            over = samples_over(over, sample, limit);
            seen.push(over);
        }
        assert_eq!(seen, [0, 1, 2, 0, 1, 2, 3]);
        assert_eq!(samples_over(5, 1000, None), 0);
    }
}
