//! Pure decisions over a process table: who belongs to a worker's tree, whether a watched
//! pid is still the process that was registered, and how fast memory grows. No I/O.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Children of each pid in one snapshot of the process table, built once per pass so that
/// finding every watched tree costs one walk of the table, not one per worker.
#[derive(Debug, Default)]
pub struct Children {
    of: HashMap<u32, Vec<u32>>,
}

impl Children {
    /// Indexes `(pid, ppid)` pairs. Duplicate and contradictory rows (a racing scan, bad
    /// data) are kept; [`Children::tree`] visits each pid once whatever they say.
    pub fn new(links: impl IntoIterator<Item = (u32, u32)>) -> Children {
        let mut of: HashMap<u32, Vec<u32>> = HashMap::new();
        for (pid, ppid) in links {
            if pid != ppid {
                of.entry(ppid).or_default().push(pid);
            }
        }
        Children { of }
    }

    /// `root` followed by all its descendants, each once, breadth first. Iterative with a
    /// visited set, so a deep chain cannot overflow the stack and a cycle cannot loop.
    pub fn tree(&self, root: u32) -> Vec<u32> {
        let mut seen = HashSet::from([root]);
        let mut tree = vec![root];
        let mut next = 0;
        while let Some(&pid) = tree.get(next) {
            next += 1;
            for &child in self.of.get(&pid).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(child) {
                    tree.push(child);
                }
            }
        }
        tree
    }
}

/// `root` and all its descendants, given `(pid, ppid)` pairs.
pub fn tree_pids(links: &[(u32, u32)], root: u32) -> Vec<u32> {
    Children::new(links.iter().copied()).tree(root)
}

/// Sum of the `(pid, value)` samples whose pid is in `tree`, each pid counted once even if
/// it was sampled twice.
pub fn sum_tree(samples: &[(u32, u64)], tree: &[u32]) -> u64 {
    let mut wanted: HashSet<u32> = tree.iter().copied().collect();
    samples
        .iter()
        .filter(|(pid, _)| wanted.remove(pid))
        .fold(0u64, |sum, (_, v)| sum.saturating_add(*v))
}

/// What the latest process table says about a watched pid, given the start time recorded
/// when it was registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootCheck {
    /// Same pid, same start time: still the worker.
    Same,
    /// The pid is not in the table: the worker has been reaped.
    Gone,
    /// The pid belongs to a newer process: the worker was reaped and its pid reused.
    Reused,
}

/// Compares the start time recorded at registration with the one in the latest scan.
pub fn root_check(recorded_ticks: u64, scanned_ticks: Option<u64>) -> RootCheck {
    match scanned_ticks {
        None => RootCheck::Gone,
        Some(ticks) if ticks == recorded_ticks => RootCheck::Same,
        Some(_) => RootCheck::Reused,
    }
}

/// Samples a reported growth rate needs at least: fewer give a slope that one sample moves.
pub const GROWTH_MIN_SAMPLES: usize = 5;
/// Time the samples of a reported growth rate must span at least: a worker's first seconds
/// (allocator arenas, caches, lazy imports warming up) are not a leak.
pub const GROWTH_MIN_SPAN: Duration = Duration::from_secs(10);

/// The growth rate to report for `history` (oldest first): [`growth_rate`] once there are
/// [`GROWTH_MIN_SAMPLES`] samples spanning [`GROWTH_MIN_SPAN`], 0 (not known yet) before.
pub use crate::lifecycle::recycle::growth_rate;

pub fn reported_growth_rate(history: &[(Instant, u64)]) -> i64 {
    let span = match (history.first(), history.last()) {
        (Some(&(first, _)), Some(&(last, _))) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    if history.len() < GROWTH_MIN_SAMPLES || span < GROWTH_MIN_SPAN {
        return 0;
    }
    growth_rate(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// (what the row shows, `(pid, ppid)` links, root, the expected tree in any order)
    type TreeCase = (&'static str, &'static [(u32, u32)], u32, &'static [u32]);
    /// (what the row shows, history, expected bytes/s)
    type GrowthCase = (&'static str, Vec<(Instant, u64)>, i64);

    #[test]
    fn tree_pids_follows_links_from_the_root_only() {
        let chain: Vec<(u32, u32)> = (2..=5000).map(|pid| (pid, pid - 1)).collect();
        let cases: &[TreeCase] = &[
            ("no links: the root alone", &[], 7, &[7]),
            ("root absent from the table", &[(2, 1), (3, 2)], 9, &[9]),
            (
                "siblings",
                &[(10, 1), (11, 10), (12, 10), (13, 10)],
                10,
                &[10, 11, 12, 13],
            ),
            (
                "grandchildren, unrelated pids left out",
                &[(10, 1), (11, 10), (20, 1), (12, 11), (21, 20), (13, 12)],
                10,
                &[10, 11, 12, 13],
            ),
            ("the root's parent is not in its tree", &[(10, 1), (11, 10)], 11, &[11]),
            ("two-process cycle", &[(10, 11), (11, 10)], 10, &[10, 11]),
            ("self-parented pid", &[(10, 10), (11, 10)], 10, &[10, 11]),
            (
                "cycle below the root",
                &[(11, 10), (12, 11), (13, 12), (11, 13)],
                10,
                &[10, 11, 12, 13],
            ),
            (
                "duplicate rows counted once",
                &[(11, 10), (11, 10), (12, 11), (12, 10)],
                10,
                &[10, 11, 12],
            ),
        ];
        for &(name, links, root, want) in cases {
            let mut got = tree_pids(links, root);
            assert_eq!(got[0], root, "{name}: root first");
            got.sort_unstable();
            let mut want = want.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(tree_pids(&chain, 1).len(), 5000, "deep chain");
        assert_eq!(
            tree_pids(&chain, 4990),
            (4990..=5000).collect::<Vec<_>>(),
            "deep chain, mid root"
        );
    }

    #[test]
    fn sum_tree_counts_tree_members_once() {
        let samples = [(10, 100), (11, 20), (12, 3), (99, 5000), (11, 20)];
        assert_eq!(sum_tree(&samples, &[10, 11, 12]), 123);
        assert_eq!(sum_tree(&samples, &[10, 13]), 100, "a vanished member adds nothing");
        assert_eq!(sum_tree(&samples, &[]), 0);
        assert_eq!(sum_tree(&[(1, u64::MAX), (2, 1)], &[1, 2]), u64::MAX, "saturates");
    }

    #[test]
    fn a_reused_pid_is_not_the_registered_worker() {
        let cases = [
            (500, Some(500), RootCheck::Same),
            (500, None, RootCheck::Gone),
            (500, Some(501), RootCheck::Reused),
            (500, Some(499), RootCheck::Reused),
        ];
        for (recorded, scanned, want) in cases {
            assert_eq!(
                root_check(recorded, scanned),
                want,
                "recorded {recorded}, scanned {scanned:?}"
            );
        }
    }

    #[test]
    fn growth_rate_is_the_slope_in_bytes_per_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let cases: &[GrowthCase] = &[
            ("empty", vec![], 0),
            ("one point", vec![(at(0), 5_000)], 0),
            (
                "two points a second apart",
                vec![(at(0), 1_000), (at(1000), 3_000)],
                2_000,
            ),
            ("half a second", vec![(at(0), 0), (at(500), 1_000)], 2_000),
            (
                "shrinking",
                vec![(at(0), 9_000), (at(1000), 6_000), (at(2000), 3_000)],
                -3_000,
            ),
            ("flat", vec![(at(0), 7), (at(100), 7), (at(200), 7)], 0),
            ("same instant", vec![(at(5), 0), (at(5), 1_000_000)], 0),
            (
                "steady leak, 1 MB/s over 10 points",
                (0..10).map(|i| (at(i * 100), 50_000_000 + i * 100_000)).collect(),
                1_000_000,
            ),
            (
                "noise around a flat line",
                vec![(at(0), 100), (at(1000), 110), (at(2000), 90), (at(3000), 100)],
                -2,
            ),
            ("huge values", vec![(at(0), 0), (at(1), u64::MAX)], i64::MAX),
        ];
        for (name, history, want) in cases {
            assert_eq!(growth_rate(history), *want, "{name}");
        }
    }

    #[test]
    fn growth_is_reported_only_from_enough_samples_over_enough_time() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 1 MB/s: `n` samples `gap_ms` apart.
        let leak = |n: u64, gap_ms: u64| -> Vec<(Instant, u64)> {
            (0..n)
                .map(|i| (at(i * gap_ms), 20_000_000 + i * gap_ms * 1_000))
                .collect()
        };
        let cases: &[GrowthCase] = &[
            ("no sample", vec![], 0),
            ("one sample", leak(1, 1000), 0),
            // A fresh worker sampled every second: four seconds of warming up say nothing.
            ("5 samples over 4 s", leak(5, 1000), 0),
            ("many samples over 9.9 s", leak(100, 100), 0),
            ("4 samples over 30 s", leak(4, 10_000), 0),
            ("5 samples over exactly 10 s", leak(5, 2500), 1_000_000),
            ("11 samples over 10 s", leak(11, 1000), 1_000_000),
            ("30 samples over 29 s", leak(30, 1000), 1_000_000),
            (
                "enough samples, no growth",
                (0..12).map(|i| (at(i * 1000), 30_000_000)).collect(),
                0,
            ),
        ];
        for (name, history, want) in cases {
            assert_eq!(reported_growth_rate(history), *want, "{name}");
        }
    }
}
