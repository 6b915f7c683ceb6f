//! Restart backoff and the crash-loop breaker, table by table.

use super::*;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The interface's example policy.
fn policy() -> RestartPolicy {
    RestartPolicy {
        initial: ms(100),
        max: secs(30),
        reset_after: secs(60),
        min_uptime: secs(1),
        crash_loop_failures: 5,
        crash_loop_window: secs(60),
    }
}

/// Ready, then dead within `min_uptime`: a failed start.
const SHORT: Failure = Failure::Crash {
    uptime: ms(500),
    ready_for: ms(400),
};
const NEUTRAL: f64 = 0.5;

#[test]
fn no_failure_means_no_delay_whatever_the_jitter() {
    let h = RestartHistory::new();
    for jitter in [0.0, 0.5, 0.999, -3.0, 7.0, f64::NAN] {
        assert_eq!(h.next_backoff(&policy(), jitter), Duration::ZERO);
    }
    assert_eq!(h.verdict(&policy(), Instant::now()), PoolVerdict::Healthy);
}

#[test]
fn backoff_doubles_from_initial_up_to_max() {
    let p = policy();
    let t0 = Instant::now();
    let mut h = RestartHistory::new();
    let expected = [100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000];
    for (i, &want) in expected.iter().enumerate() {
        h.record_failure(&p, t0 + secs(i as u64), SHORT);
        assert_eq!(h.consecutive_failures(), i as u32 + 1);
        assert_eq!(h.next_backoff(&p, NEUTRAL), ms(want), "failure {}", i + 1);
    }
}

#[test]
fn backoff_cap_holds_for_huge_counts_and_odd_policies() {
    let t0 = Instant::now();
    let cases = [
        // (initial, max, failures, expected at neutral jitter)
        (ms(100), secs(30), 10_000, secs(30)),
        (Duration::from_nanos(1), secs(30), 200, secs(30)),
        (secs(60), secs(30), 1, secs(30)),
        (Duration::ZERO, secs(30), 50, Duration::ZERO),
        (ms(100), ms(100), 7, ms(100)),
        (Duration::MAX, Duration::MAX, 3, Duration::MAX),
    ];
    for (initial, max, failures, want) in cases {
        let p = RestartPolicy {
            initial,
            max,
            ..policy()
        };
        let mut h = RestartHistory::new();
        for _ in 0..failures {
            h.record_failure(&p, t0, SHORT);
        }
        assert_eq!(
            h.next_backoff(&p, NEUTRAL),
            want,
            "initial {initial:?}, max {max:?}, {failures} failures"
        );
    }
}

#[test]
fn jitter_scales_by_0_8_to_1_2_and_never_exceeds_max() {
    let p = policy();
    let t0 = Instant::now();
    let cases = [
        // (failures, jitter, expected)
        (3, 0.0, ms(320)),
        (3, 0.25, ms(360)),
        (3, 0.5, ms(400)),
        (3, 0.75, ms(440)),
        // Out-of-range values are clamped; NaN is the neutral middle.
        (3, -1.0, ms(320)),
        (3, 2.0, ms(480)),
        (3, f64::NAN, ms(400)),
        // At the cap, jitter can only lower the delay.
        (12, 0.0, secs(24)),
        (12, 0.5, secs(30)),
        (12, 0.99, secs(30)),
    ];
    for (failures, jitter, want) in cases {
        let mut h = RestartHistory::new();
        for _ in 0..failures {
            h.record_failure(&p, t0, SHORT);
        }
        let got = h.next_backoff(&p, jitter);
        let diff = got.abs_diff(want);
        assert!(
            diff <= Duration::from_micros(1),
            "{failures} failures, jitter {jitter}: got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn random_jitter_stays_within_bounds() {
    let p = policy();
    let t0 = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    for failures in 1..=12u32 {
        let mut h = RestartHistory::new();
        for _ in 0..failures {
            h.record_failure(&p, t0, SHORT);
        }
        let base = exponential(&p, failures);
        for _ in 0..200 {
            let got = h.next_backoff(&p, rng.f64());
            assert!(got <= p.max, "{got:?} above max");
            assert!(got >= base.mul_f64(0.8), "{got:?} below 0.8 x {base:?}");
            assert!(got < base.mul_f64(1.2), "{got:?} not below 1.2 x {base:?}");
        }
    }
}

/// Up past `reset_after`.
const STABLE: Failure = Failure::Crash {
    uptime: secs(60),
    ready_for: secs(59),
};

/// Ready and up `min_uptime` and more, but younger than `reset_after`.
const fn good(uptime_s: u64) -> Failure {
    Failure::Crash {
        uptime: secs(uptime_s),
        ready_for: secs(uptime_s - 1),
    }
}

#[test]
fn backoff_grows_only_with_failed_starts() {
    let p = policy();
    let cases: [(&str, &[Failure], u32, Duration); 14] = [
        // (case, failures in order, consecutive after them, backoff at neutral jitter)
        ("one stable worker killed", &[STABLE], 0, Duration::ZERO),
        // A burst of kills on healthy workers: each replacement starts at once.
        ("five stable workers killed", &[STABLE; 5], 0, Duration::ZERO),
        // Young but past min_uptime: replaced at once, whatever the age.
        (
            "five good starts killed",
            &[good(5), good(15), good(25), good(40), good(50)],
            0,
            Duration::ZERO,
        ),
        (
            "ready for exactly min_uptime is a good start",
            &[Failure::Crash {
                uptime: secs(2),
                ready_for: secs(1),
            }],
            0,
            Duration::ZERO,
        ),
        (
            "a millisecond short of min_uptime is a failed start",
            &[Failure::Crash {
                uptime: secs(30),
                ready_for: secs(1) - ms(1),
            }],
            1,
            ms(100),
        ),
        (
            "up an hour",
            &[Failure::Crash {
                uptime: secs(3600),
                ready_for: secs(3599),
            }],
            0,
            Duration::ZERO,
        ),
        ("ready, then dead at once", &[SHORT, SHORT, SHORT], 3, ms(400)),
        ("failed starts", &[Failure::Start, Failure::Start], 2, ms(200)),
        // A good start's death is replaced at once but leaves the failed starts counted:
        // only `reset_after` of uptime clears them, so the next failure waits longer.
        (
            "failed starts, then a good start killed",
            &[Failure::Start, Failure::Start, good(10)],
            2,
            Duration::ZERO,
        ),
        (
            "... and one more failed start",
            &[Failure::Start, Failure::Start, good(10), Failure::Start],
            3,
            ms(400),
        ),
        // A stable worker's death clears the series; the next failure is the first.
        (
            "a series, then a stable death",
            &[SHORT, Failure::Start, SHORT, STABLE],
            0,
            Duration::ZERO,
        ),
        (
            "a stable death, then a failed start",
            &[SHORT, SHORT, STABLE, Failure::Start],
            1,
            ms(100),
        ),
        (
            "a good start killed, then a failed start",
            &[good(30), SHORT],
            1,
            ms(100),
        ),
        (
            "a failed start, then a good start killed",
            &[SHORT, good(30)],
            1,
            Duration::ZERO,
        ),
    ];
    let t0 = Instant::now();
    for (case, failures, consecutive, backoff) in cases {
        let mut h = RestartHistory::new();
        for (i, &failure) in failures.iter().enumerate() {
            h.record_failure(&p, t0 + secs(3 * i as u64), failure);
        }
        assert_eq!(h.consecutive_failures(), consecutive, "{case}");
        for jitter in [0.0, NEUTRAL, 0.99] {
            let got = h.next_backoff(&p, jitter);
            if backoff.is_zero() {
                assert_eq!(got, Duration::ZERO, "{case}, jitter {jitter}");
            } else {
                assert!(
                    got >= backoff.mul_f64(0.8) && got < backoff.mul_f64(1.2),
                    "{case}: {got:?}"
                );
            }
        }
        assert_eq!(h.next_backoff(&p, NEUTRAL), backoff, "{case}");
    }
}

#[test]
fn stable_deaths_neither_clear_nor_feed_the_breaker() {
    let p = RestartPolicy {
        crash_loop_failures: 3,
        ..policy()
    };
    let t0 = Instant::now();
    let mut h = RestartHistory::new();
    let steps = [
        // (seconds after t0, failure, verdict after it)
        (0, STABLE, PoolVerdict::Healthy),
        (1, Failure::Start, PoolVerdict::Healthy),
        (2, STABLE, PoolVerdict::Healthy),
        (3, Failure::Start, PoolVerdict::Healthy),
        (4, STABLE, PoolVerdict::Healthy),
        // The third failed start within the window trips it: the breaker counts per
        // pool, whatever died in between.
        (5, Failure::Start, PoolVerdict::Failing),
        // While failing, even a stable death waits for the probe interval.
        (6, STABLE, PoolVerdict::Failing),
    ];
    for (at, failure, verdict) in steps {
        assert_eq!(h.record_failure(&p, t0 + secs(at), failure), verdict, "t+{at}s");
    }
    assert_eq!(h.next_backoff(&p, NEUTRAL), p.max);
}

#[test]
fn failed_starts_within_the_window_trip_the_breaker() {
    let p = RestartPolicy {
        crash_loop_failures: 3,
        ..policy()
    };
    let t0 = Instant::now();
    let mut h = RestartHistory::new();
    let steps = [
        // (seconds after t0, failure, verdict after it)
        (0, Failure::Start, PoolVerdict::Healthy),
        (10, Failure::Start, PoolVerdict::Healthy),
        // Crashes after ready feed the backoff, not the breaker.
        (11, SHORT, PoolVerdict::Healthy),
        (12, SHORT, PoolVerdict::Healthy),
        // The failure at 0 is exactly one window old: out.
        (60, Failure::Start, PoolVerdict::Healthy),
        (65, Failure::Start, PoolVerdict::Failing),
    ];
    for (at, failure, verdict) in steps {
        let now = t0 + secs(at);
        assert_eq!(h.record_failure(&p, now, failure), verdict, "t+{at}s");
        assert_eq!(h.verdict(&p, now), verdict, "t+{at}s");
    }
}

#[test]
fn failing_holds_until_a_probe_gets_ready() {
    let p = policy();
    let t0 = Instant::now();
    let mut h = RestartHistory::new();
    for i in 0..5 {
        h.record_failure(&p, t0 + secs(i), Failure::Start);
    }
    assert_eq!(h.verdict(&p, t0 + secs(5)), PoolVerdict::Failing);
    // The probe interval is `max` even though five doublings reach only 1.6 s.
    assert_eq!(h.next_backoff(&p, NEUTRAL), p.max);
    assert_eq!(h.next_backoff(&p, 0.0), p.max.mul_f64(0.8));

    // Long after the failures left the window, nothing has proven the pool healthy.
    assert_eq!(h.verdict(&p, t0 + secs(3600)), PoolVerdict::Failing);
    // A failed probe keeps it failing.
    let verdict = h.record_failure(&p, t0 + secs(3600), Failure::Start);
    assert_eq!(verdict, PoolVerdict::Failing);

    // The probe succeeds: healthy, the backoff and the window start over.
    assert!(h.record_ready());
    assert_eq!(h.verdict(&p, t0 + secs(3601)), PoolVerdict::Healthy);
    assert_eq!(h.next_backoff(&p, NEUTRAL), Duration::ZERO);
    assert!(h.failed_starts.is_empty());

    // A relapse needs a full series of failed starts to trip again.
    for i in 0..4 {
        let v = h.record_failure(&p, t0 + secs(3602 + i), Failure::Start);
        assert_eq!(v, PoolVerdict::Healthy, "relapse failure {}", i + 1);
    }
    let v = h.record_failure(&p, t0 + secs(3606), Failure::Start);
    assert_eq!(v, PoolVerdict::Failing);
}

#[test]
fn ready_outside_a_crash_loop_changes_nothing() {
    let p = policy();
    let t0 = Instant::now();
    let mut h = RestartHistory::new();
    for _ in 0..3 {
        h.record_failure(&p, t0, SHORT);
    }
    h.record_failure(&p, t0, Failure::Start);
    assert!(!h.record_ready());
    // A worker that gets ready and dies at once must keep slowing down.
    assert_eq!(h.consecutive_failures(), 4);
    assert_eq!(h.next_backoff(&p, NEUTRAL), ms(800));
    assert_eq!(h.failed_starts.len(), 1);
}

#[test]
fn verdict_follows_the_window_when_the_policy_gets_stricter() {
    let lax = policy();
    let strict = RestartPolicy {
        crash_loop_failures: 2,
        ..policy()
    };
    let t0 = Instant::now();
    let mut h = RestartHistory::new();
    h.record_failure(&lax, t0, Failure::Start);
    h.record_failure(&lax, t0 + secs(1), Failure::Start);
    assert_eq!(h.verdict(&lax, t0 + secs(2)), PoolVerdict::Healthy);
    assert_eq!(h.verdict(&strict, t0 + secs(2)), PoolVerdict::Failing);
    // Not latched: once the failures age out, the stricter policy is satisfied too.
    assert_eq!(h.verdict(&strict, t0 + secs(61)), PoolVerdict::Healthy);
}

#[test]
fn a_zero_threshold_or_window_disables_the_breaker() {
    let t0 = Instant::now();
    let policies = [
        RestartPolicy {
            crash_loop_failures: 0,
            ..policy()
        },
        RestartPolicy {
            crash_loop_window: Duration::ZERO,
            ..policy()
        },
    ];
    for p in policies {
        let mut h = RestartHistory::new();
        for _ in 0..100 {
            assert_eq!(h.record_failure(&p, t0, Failure::Start), PoolVerdict::Healthy, "{p:?}");
        }
        // The backoff still grows to the cap.
        assert_eq!(h.next_backoff(&p, NEUTRAL), p.max);
    }
}

#[test]
fn memory_stays_bounded() {
    let p = policy();
    let t0 = Instant::now();
    let mut h = RestartHistory::new();
    for i in 0..10_000u64 {
        h.record_failure(&p, t0 + ms(i), Failure::Start);
        assert!(h.failed_starts.len() <= 5);
    }
    // Failures spread wider than the window keep only those inside it.
    let mut h = RestartHistory::new();
    let lax = RestartPolicy {
        crash_loop_failures: 1_000,
        ..policy()
    };
    for i in 0..1_000u64 {
        h.record_failure(&lax, t0 + secs(i * 30), Failure::Start);
        assert!(h.failed_starts.len() <= 2, "after failure {i}");
    }
}
