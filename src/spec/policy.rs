//! The per-pool policies: recycling, health checks, the call queue, restart backoff and
//! resource limits, each validated from the raw pool with its defaults and range rules.

use std::time::Duration;

use super::defaults as def;
use super::error::{Problem, Result};
use super::host::HardLimits;
use super::raw::{Opt, RawPool, RawRestart, RawRlimits};
use super::rules::{choice, count, optional_count, optional_positive, positive, value_or};
use super::types::{HealthPolicy, MemoryMetric, QueuePolicy, RecyclePolicy, RestartPolicy, Rlimits};
use super::units::{show_duration, show_size};

pub fn recycle(raw: &RawPool) -> Result<RecyclePolicy> {
    let max_rss = raw.max_rss.as_ref().map(|s| s.get_ref().0);
    let hard_rss = raw.hard_rss.as_ref().map(|s| s.get_ref().0);
    if let (Some(max), Some(hard), Some(given)) = (max_rss, hard_rss, &raw.hard_rss)
        && hard < max
    {
        let msg = format!(
            "expected at least max_rss ({}), found {}",
            show_size(max),
            show_size(hard)
        );
        return Err(Problem::value(given.span(), msg));
    }
    if let Some(given) = &raw.predict_rss
        && *given.get_ref()
        && max_rss.is_none()
        && hard_rss.is_none()
    {
        let msg = "only allowed with `max_rss` or `hard_rss` (the limit the growth is predicted against)";
        return Err(Problem::key(given.span(), msg));
    }
    Ok(RecyclePolicy {
        max_rss,
        max_rss_samples: count(&raw.max_rss_samples, 1, def::MAX_RSS_SAMPLES)?,
        predict_rss: raw.predict_rss.as_ref().is_some_and(|p| *p.get_ref()),
        memory_budget: raw.memory_budget.as_ref().map(|s| s.get_ref().0),
        hard_rss,
        max_requests: optional_count(&raw.max_requests, 1)?,
        max_requests_jitter: value_or(&raw.max_requests_jitter, def::MAX_REQUESTS_JITTER, |c| c.0),
        max_age: optional_positive(&raw.max_age)?,
        max_age_jitter: value_or(&raw.max_age_jitter, def::MAX_AGE_JITTER, |d| d.0),
        max_errors: optional_count(&raw.max_errors, 1)?,
        memory_metric: choice(
            &raw.memory_metric,
            &[
                ("rss", MemoryMetric::Rss),
                ("pss", MemoryMetric::Pss),
                ("uss", MemoryMetric::Uss),
            ],
            def::MEMORY_METRIC,
        )?,
        max_surge: count(&raw.max_surge, 1, def::MAX_SURGE)?,
    })
}

pub fn health(raw: &RawPool) -> Result<HealthPolicy> {
    Ok(HealthPolicy {
        interval: positive(&raw.health_interval, def::HEALTH_INTERVAL)?,
        timeout: positive(&raw.health_timeout, def::HEALTH_TIMEOUT)?,
        failures: count(&raw.health_failures, 1, def::HEALTH_FAILURES)?,
    })
}

pub fn queue(raw: &RawPool) -> Result<QueuePolicy> {
    Ok(QueuePolicy {
        max: count(&raw.queue_max, 1, def::QUEUE_MAX)?,
        timeout: positive(&raw.queue_timeout, def::QUEUE_TIMEOUT)?,
        affinity_ttl: value_or(&raw.affinity_ttl, def::AFFINITY_TTL, |d| d.0),
    })
}

pub fn restart(raw: Option<&RawRestart>) -> Result<RestartPolicy> {
    let empty = RawRestart::default();
    let raw = raw.unwrap_or(&empty);
    let initial = value_or(&raw.initial, def::RESTART_INITIAL, |d| d.0);
    let max = positive(&raw.max, def::RESTART_MAX)?;
    if initial > max {
        // Blame whichever of the two was written (initial if both): a default is not a mistake.
        let (span, msg) = match (&raw.initial, &raw.max) {
            (Some(i), _) => (
                i.span(),
                format!(
                    "expected at most restart.max ({}), found {}",
                    show_duration(max),
                    show_duration(initial)
                ),
            ),
            (None, Some(m)) => (
                m.span(),
                format!(
                    "expected at least restart.initial ({}), found {}",
                    show_duration(initial),
                    show_duration(max)
                ),
            ),
            (None, None) => unreachable!("the defaults keep initial <= max"),
        };
        return Err(Problem::value(span, msg));
    }
    Ok(RestartPolicy {
        initial,
        max,
        reset_after: value_or(&raw.reset_after, def::RESTART_RESET_AFTER, |d| d.0),
        min_uptime: value_or(&raw.min_uptime, def::RESTART_MIN_UPTIME, |d| d.0),
        crash_loop_failures: count(&raw.crash_loop_failures, 1, def::CRASH_LOOP_FAILURES)?,
        crash_loop_window: positive(&raw.crash_loop_window, def::CRASH_LOOP_WINDOW)?,
    })
}

pub fn rlimits(raw: Option<&RawRlimits>, hard: &HardLimits) -> Result<Rlimits> {
    let Some(raw) = raw else {
        return Ok(Rlimits::default());
    };
    if let Some(rss) = &raw.rss {
        let msg =
            "RLIMIT_RSS has no effect on Linux; use the pool's max_rss (graceful recycle) or hard_rss (kill) instead";
        return Err(Problem::key(rss.span(), msg));
    }
    // RLIMIT_CPU counts whole seconds; rounding a written "1500ms" either way would be a guess.
    if let Some(cpu) = &raw.cpu
        && (cpu.get_ref().0 < Duration::from_secs(1) || cpu.get_ref().0.subsec_nanos() != 0)
    {
        let found = show_duration(cpu.get_ref().0);
        let msg = format!("expected a whole number of seconds, at least 1s, found {found}");
        return Err(Problem::value(cpu.span(), msg));
    }
    let plain = |n: u64| n.to_string();
    Ok(Rlimits {
        nofile: limit(&raw.nofile, |c| c.0, hard.nofile, "nofile", plain)?,
        nproc: limit(&raw.nproc, |c| c.0, hard.nproc, "nproc", plain)?,
        cpu: limit(&raw.cpu, |d| d.0.as_secs(), hard.cpu, "cpu", |s| format!("{s}s"))?,
        core: limit(&raw.core, |s| s.0, hard.core, "core", show_bytes)?,
        address_space: limit(&raw.address_space, |s| s.0, hard.address_space, "as", show_bytes)?,
    })
}

fn show_bytes(n: u64) -> String {
    format!("{n} bytes ({})", show_size(n))
}

/// A limit within pitd's own hard limit: children inherit it, and pitd cannot grant more.
fn limit<T>(
    raw: &Opt<T>,
    value: fn(&T) -> u64,
    hard: Option<u64>,
    key: &str,
    show: fn(u64) -> String,
) -> Result<Option<u64>> {
    let Some(given) = raw else { return Ok(None) };
    let v = value(given.get_ref());
    match hard {
        Some(hard) if v > hard => {
            let (hard, v) = (show(hard), show(v));
            let msg =
                format!("expected at most pitd's own hard limit for {key} ({hard}), found {v}; pitd cannot raise it");
            Err(Problem::value(given.span(), msg))
        }
        _ => Ok(Some(v)),
    }
}
