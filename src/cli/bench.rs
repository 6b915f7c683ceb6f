//! `pitctl bench POOL`: a bounded load generator. `concurrency` threads, each with its own
//! connection and one call in flight, for `duration`; then calls/s and latency
//! percentiles over every call.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Failure;
use super::call::connect;
use crate::call_client::Prepared;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub pool: String,
    pub method: String,
    pub concurrency: usize,
    pub duration_s: f64,
    pub calls: u64,
    pub errors: u64,
    pub calls_per_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

pub struct BenchArgs<'a> {
    pub socket: &'a Path,
    pub pool: &'a str,
    pub method: &'a str,
    pub args: &'a str,
    pub concurrency: usize,
    pub duration: Duration,
}

pub fn run(a: BenchArgs<'_>, json: bool) -> Result<(), Failure> {
    let report = measure(&a)?;
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!(
            "{} calls of {}.{} in {:.1}s with concurrency {}: {:.0} calls/s, {} errors",
            report.calls,
            report.pool,
            report.method,
            report.duration_s,
            report.concurrency,
            report.calls_per_s,
            report.errors
        );
        println!(
            "latency: p50 {} us, p90 {} us, p99 {} us, max {} us",
            report.p50_us, report.p90_us, report.p99_us, report.max_us
        );
    }
    Ok(())
}

pub fn measure(a: &BenchArgs<'_>) -> Result<BenchReport, Failure> {
    // Connect everyone first: a missing socket is an error before any load.
    let clients = (0..a.concurrency.max(1))
        .map(|_| connect(a.socket))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let end = start + a.duration;
    let results: Vec<(Vec<u32>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(1 << 16);
                    let mut errors = 0u64;
                    let prepared = Prepared::new(a.pool, a.method, a.args);
                    while Instant::now() < end {
                        let t0 = Instant::now();
                        match client.call_prepared(&prepared) {
                            Ok(true) => {}
                            Ok(false) => errors += 1,
                            Err(_) => {
                                errors += 1;
                                break;
                            }
                        }
                        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    (lat, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let errors = results.iter().map(|(_, e)| e).sum();
    let mut lat: Vec<u32> = results.into_iter().flat_map(|(l, _)| l).collect();
    lat.sort_unstable();
    let pct = |p: f64| -> u64 {
        if lat.is_empty() {
            return 0;
        }
        lat[((lat.len() - 1) as f64 * p).round() as usize] as u64
    };
    Ok(BenchReport {
        pool: a.pool.to_string(),
        method: a.method.to_string(),
        concurrency: a.concurrency.max(1),
        duration_s: elapsed,
        calls: lat.len() as u64,
        errors,
        calls_per_s: lat.len() as f64 / elapsed.max(1e-9),
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        max_us: lat.last().copied().unwrap_or(0) as u64,
    })
}
