//! Recycle triggers and each worker's drawn limits.

use super::*;
use crate::spec::MemoryMetric;

const MIB: u64 = 1024 * 1024;

fn recycle_policy() -> RecyclePolicy {
    RecyclePolicy {
        max_rss: Some(512 * MIB),
        max_rss_samples: 1,
        predict_rss: false,
        memory_budget: None,
        hard_rss: Some(1024 * MIB),
        max_requests: Some(1000),
        max_requests_jitter: 100,
        max_age: Some(Duration::from_secs(3600)),
        max_age_jitter: Duration::from_secs(300),
        max_errors: Some(5),
        memory_metric: MemoryMetric::Rss,
        max_surge: 1,
    }
}

fn health_policy() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        failures: 3,
    }
}

/// Limits as if the draw had landed on the policy's base values.
const LIMITS: WorkerLimits = WorkerLimits {
    max_requests: Some(1000),
    max_age: Some(Duration::from_secs(3600)),
};

/// One case: the worker's figures, its age, and the expected decision.
struct Row {
    name: &'static str,
    memory: Option<u64>,
    requests: u64,
    errors: u32,
    health_failures: u32,
    age: Duration,
    want: Option<Reason>,
}

const FRESH: Row = Row {
    name: "fresh worker",
    memory: Some(50 * MIB),
    requests: 0,
    errors: 0,
    health_failures: 0,
    age: Duration::ZERO,
    want: None,
};

fn check(rows: &[Row], limits: &WorkerLimits, recycle: &RecyclePolicy, health: &HealthPolicy) {
    let t0 = Instant::now();
    for row in rows {
        let stats = WorkerStats {
            started_at: t0,
            requests: row.requests,
            consecutive_errors: row.errors,
            memory_bytes: row.memory,
            samples_over_max_rss: samples_over(0, row.memory.unwrap_or(0), recycle.max_rss),
            health_failures: row.health_failures,
        };
        let got = recycle_decision(&stats, limits, recycle, health, t0 + row.age);
        assert_eq!(got, row.want, "{}", row.name);
    }
}

#[test]
fn max_rss_fires_only_after_max_rss_samples_samples_over_it_and_hard_rss_at_once() {
    let recycle = RecyclePolicy {
        max_rss_samples: 3,
        ..recycle_policy()
    };
    let t0 = Instant::now();
    let decide = |memory: u64, over: u32| {
        let stats = WorkerStats {
            memory_bytes: Some(memory * MIB),
            samples_over_max_rss: over,
            ..WorkerStats::new(t0)
        };
        recycle_decision(&stats, &LIMITS, &recycle, &health_policy(), t0)
    };
    assert_eq!(decide(600, 1), None, "one sample over: a spike so far");
    assert_eq!(decide(600, 2), None);
    assert_eq!(decide(600, 3), Some(Reason::MaxRss));
    assert_eq!(decide(2048, 1), Some(Reason::HardRss), "hard_rss does not wait");
}

#[test]
fn each_trigger_fires_at_its_threshold() {
    let hour = Duration::from_secs(3600);
    let rows = [
        FRESH,
        Row {
            name: "no memory sample yet",
            memory: None,
            ..FRESH
        },
        Row {
            name: "memory at max_rss does not exceed it",
            memory: Some(512 * MIB),
            ..FRESH
        },
        Row {
            name: "memory above max_rss",
            memory: Some(512 * MIB + 1),
            want: Some(Reason::MaxRss),
            ..FRESH
        },
        Row {
            name: "memory at hard_rss is still only max_rss",
            memory: Some(1024 * MIB),
            want: Some(Reason::MaxRss),
            ..FRESH
        },
        Row {
            name: "memory above hard_rss",
            memory: Some(1024 * MIB + 1),
            want: Some(Reason::HardRss),
            ..FRESH
        },
        Row {
            name: "errors below max_errors",
            errors: 4,
            ..FRESH
        },
        Row {
            name: "errors at max_errors",
            errors: 5,
            want: Some(Reason::MaxErrors),
            ..FRESH
        },
        Row {
            name: "health failures below the limit",
            health_failures: 2,
            ..FRESH
        },
        Row {
            name: "health failures at the limit",
            health_failures: 3,
            want: Some(Reason::Health),
            ..FRESH
        },
        Row {
            name: "requests below the drawn limit",
            requests: 999,
            ..FRESH
        },
        Row {
            name: "requests at the drawn limit",
            requests: 1000,
            want: Some(Reason::MaxRequests),
            ..FRESH
        },
        Row {
            name: "younger than the drawn age",
            age: hour - Duration::from_millis(1),
            ..FRESH
        },
        Row {
            name: "at the drawn age",
            age: hour,
            want: Some(Reason::MaxAge),
            ..FRESH
        },
    ];
    check(&rows, &LIMITS, &recycle_policy(), &health_policy());
}

#[test]
fn the_most_urgent_trigger_wins() {
    let old = Duration::from_secs(7200);
    let everything = Row {
        name: "every trigger at once",
        memory: Some(2048 * MIB),
        requests: 5000,
        errors: 9,
        health_failures: 9,
        age: old,
        want: Some(Reason::HardRss),
    };
    let rows = [
        Row {
            name: "max_rss beats max_errors, health, requests, age",
            memory: Some(600 * MIB),
            want: Some(Reason::MaxRss),
            ..everything
        },
        Row {
            name: "max_errors beats health, requests, age",
            memory: Some(MIB),
            want: Some(Reason::MaxErrors),
            ..everything
        },
        Row {
            name: "health beats requests, age",
            memory: None,
            errors: 0,
            want: Some(Reason::Health),
            ..everything
        },
        Row {
            name: "max_requests beats age",
            memory: None,
            errors: 0,
            health_failures: 0,
            want: Some(Reason::MaxRequests),
            ..everything
        },
        everything,
    ];
    check(&rows, &LIMITS, &recycle_policy(), &health_policy());
}

#[test]
fn unset_and_zero_limits_never_fire() {
    let extreme = Row {
        name: "",
        memory: Some(u64::MAX),
        requests: u64::MAX,
        errors: u32::MAX,
        health_failures: u32::MAX,
        age: Duration::from_secs(10 * 365 * 86_400),
        want: None,
    };
    let unset = RecyclePolicy {
        max_rss: None,
        hard_rss: None,
        max_requests: None,
        max_age: None,
        max_errors: None,
        ..recycle_policy()
    };
    let zero = RecyclePolicy {
        max_rss: Some(0),
        hard_rss: Some(0),
        max_requests: Some(0),
        max_age: Some(Duration::ZERO),
        max_errors: Some(0),
        ..recycle_policy()
    };
    let no_health = HealthPolicy {
        failures: 0,
        ..health_policy()
    };
    let unset_limits = WorkerLimits {
        max_requests: None,
        max_age: None,
    };
    let zero_limits = WorkerLimits {
        max_requests: Some(0),
        max_age: Some(Duration::ZERO),
    };
    let fresh_zero = Row {
        name: "fresh worker, zero limits",
        memory: Some(1),
        ..FRESH
    };
    check(
        &[Row {
            name: "every limit unset",
            ..extreme
        }],
        &unset_limits,
        &unset,
        &no_health,
    );
    check(
        &[
            Row {
                name: "every limit zero",
                ..extreme
            },
            fresh_zero,
        ],
        &zero_limits,
        &zero,
        &no_health,
    );
}

#[test]
fn draw_without_jitter_gives_the_base_limits() {
    let policy = RecyclePolicy {
        max_requests_jitter: 0,
        max_age_jitter: Duration::ZERO,
        ..recycle_policy()
    };
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..100 {
        assert_eq!(WorkerLimits::draw(&policy, &mut rng), LIMITS);
    }
}

#[test]
fn draw_stays_in_range_and_reaches_both_ends() {
    let policy = RecyclePolicy {
        max_requests_jitter: 3,
        max_age_jitter: Duration::from_nanos(3),
        ..recycle_policy()
    };
    let base_age = Duration::from_secs(3600);
    let mut rng = fastrand::Rng::with_seed(42);
    let mut seen_requests = [false; 4];
    let mut seen_age = [false; 4];
    for _ in 0..1000 {
        let limits = WorkerLimits::draw(&policy, &mut rng);
        let requests = limits.max_requests.unwrap();
        let age = limits.max_age.unwrap();
        assert!((1000..=1003).contains(&requests), "{requests}");
        assert!(age >= base_age && age <= base_age + Duration::from_nanos(3));
        seen_requests[(requests - 1000) as usize] = true;
        seen_age[(age - base_age).as_nanos() as usize] = true;
    }
    assert_eq!(seen_requests, [true; 4]);
    assert_eq!(seen_age, [true; 4]);
}

#[test]
fn draw_is_deterministic_for_a_seed_and_spreads_workers() {
    let policy = recycle_policy();
    let draws = |seed| {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..8)
            .map(|_| WorkerLimits::draw(&policy, &mut rng))
            .collect::<Vec<_>>()
    };
    assert_eq!(draws(9), draws(9));
    let spread = draws(9);
    assert!(
        spread.iter().any(|l| *l != spread[0]),
        "eight workers drew identical limits"
    );
    for l in &spread {
        let age = l.max_age.unwrap();
        assert!(age >= Duration::from_secs(3600) && age <= Duration::from_secs(3900));
        assert!((1000..=1100).contains(&l.max_requests.unwrap()));
    }
}

#[test]
fn draw_saturates_and_keeps_unset_limits_unset() {
    let mut rng = fastrand::Rng::with_seed(3);
    let huge = RecyclePolicy {
        max_requests: Some(u64::MAX),
        max_requests_jitter: u64::MAX,
        max_age: Some(Duration::MAX),
        max_age_jitter: Duration::MAX,
        ..recycle_policy()
    };
    let limits = WorkerLimits::draw(&huge, &mut rng);
    assert_eq!(limits.max_requests, Some(u64::MAX));
    assert_eq!(limits.max_age, Some(Duration::MAX));

    let unset = RecyclePolicy {
        max_requests: None,
        max_age: None,
        ..recycle_policy()
    };
    let limits = WorkerLimits::draw(&unset, &mut rng);
    assert_eq!(
        limits,
        WorkerLimits {
            max_requests: None,
            max_age: None
        }
    );
}

#[test]
fn a_new_worker_has_clean_figures() {
    let t0 = Instant::now();
    let stats = WorkerStats::new(t0);
    assert_eq!(
        recycle_decision(&stats, &LIMITS, &recycle_policy(), &health_policy(), t0),
        None
    );
    assert_eq!(stats.started_at, t0);
    assert_eq!(stats.memory_bytes, None);
}
