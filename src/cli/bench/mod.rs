//! `pitctl bench POOL`: a bounded load generator. `concurrency` calls kept in flight for
//! `duration`, over `connections` connections (one thread each; by default one connection
//! per call in flight, each waiting for its reply before the next call, as independent
//! callers do; fewer connections carry several calls each, pipelined, as one process
//! multiplexing its callers over a connection does); then calls/s and latency
//! percentiles over every call. `--stream` measures streams instead (`stream.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Failure;
use super::call::connect;
use super::duration::human;
mod load;
mod stream;

use load::{Prepared, Tally, pipeline_prepared};

use crate::call_client::{CallClient, CallOptions, Outcome};
use crate::proto::call::{ErrorKind, IN_FLIGHT_PER_CONNECTION};

/// How long the last calls may take to come back once the load has stopped.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub pool: String,
    pub method: String,
    pub concurrency: usize,
    pub connections: usize,
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
    /// None: one per call in flight.
    pub connections: Option<usize>,
    pub duration: Duration,
    /// Streams, not calls (`stream.rs`).
    pub stream: bool,
}

pub fn run(a: BenchArgs<'_>, json: bool) -> Result<(), Failure> {
    if a.stream {
        let report = stream::measure(&a)?;
        match json {
            true => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
            false => print!("{}", stream::text(&report)),
        }
        return Ok(());
    }
    let report = measure(&a)?;
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}

/// The report as a person reads it, latencies in their own unit; `--json` keeps microseconds.
pub fn text(report: &BenchReport) -> String {
    let latency = |us: u64| human(Duration::from_micros(us));
    format!(
        "{} calls of {}.{} in {:.1}s with concurrency {} over {} connection{}: {:.0} calls/s, {} errors\n\
         latency: p50 {}, p90 {}, p99 {}, max {}\n",
        report.calls,
        report.pool,
        report.method,
        report.duration_s,
        report.concurrency,
        report.connections,
        if report.connections == 1 { "" } else { "s" },
        report.calls_per_s,
        report.errors,
        latency(report.p50_us),
        latency(report.p90_us),
        latency(report.p99_us),
        latency(report.max_us)
    )
}

pub fn measure(a: &BenchArgs<'_>) -> Result<BenchReport, Failure> {
    let concurrency = a.concurrency.max(1);
    let connections = a.connections.unwrap_or(concurrency).clamp(1, concurrency);
    if concurrency.div_ceil(connections) > IN_FLIGHT_PER_CONNECTION {
        // pitd stops reading a connection at that many calls in flight: the load would
        // wait on itself.
        return Err(Failure::Usage(format!(
            "at most {IN_FLIGHT_PER_CONNECTION} calls in flight per connection: \
             --concurrency {concurrency} needs --connections {} or more",
            concurrency.div_ceil(IN_FLIGHT_PER_CONNECTION)
        )));
    }
    // Connect everyone first: a missing socket is an error before any load.
    let mut clients = (0..connections)
        .map(|_| connect(a.socket))
        .collect::<Result<Vec<_>, _>>()?;
    probe(&mut clients[0], a)?;
    let start = Instant::now();
    let end = start + a.duration;
    let results: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut client)| {
                let depth = share(concurrency, connections, i);
                s.spawn(move || {
                    let mut tally = Tally {
                        latencies: Vec::with_capacity(1 << 16),
                        ..Tally::default()
                    };
                    let prepared = Prepared::new(a.pool, a.method, a.args);
                    if pipeline_prepared(&mut client, &prepared, depth, end, DRAIN, &mut tally).is_err() {
                        // The connection broke or pitd answered nonsense: what it owed
                        // failed, and at least one call did.
                        tally.errors += tally.in_flight.max(1) as u64;
                    }
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let errors = results.iter().map(|t| t.errors).sum();
    let mut lat: Vec<u32> = results.into_iter().flat_map(|t| t.latencies).collect();
    lat.sort_unstable();
    let pct = |p: f64| percentile(&lat, p);
    Ok(BenchReport {
        pool: a.pool.to_string(),
        method: a.method.to_string(),
        concurrency,
        connections,
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

/// The `p` percentile (0..=1) of sorted microseconds: the nearest rank; 0 when empty.
fn percentile(sorted: &[u32], p: f64) -> u64 {
    match sorted.len() {
        0 => 0,
        n => sorted[((n - 1) as f64 * p).round() as usize] as u64,
    }
}

/// One stream before the load, as `probe` does for calls.
fn probe_stream(client: &mut CallClient, a: &BenchArgs<'_>) -> Result<(), Failure> {
    let opts = CallOptions {
        stream: true,
        ..CallOptions::default()
    };
    let outcome = client
        .call_streaming(a.pool, a.method, a.args, &opts, |_| Ok(()))
        .map_err(|e| Failure::Refused(e.to_string()))?;
    refused_for_good(outcome)
}

fn refused_for_good(outcome: Outcome) -> Result<(), Failure> {
    match outcome {
        Outcome::Err { kind, message, .. } if REFUSED_FOR_GOOD.contains(&kind) => {
            Err(Failure::Refused(format!("{kind}: {message}")))
        }
        _ => Ok(()),
    }
}

/// One call before the load: a pool, method or argument that can never succeed is an
/// error, not a benchmark of error replies. Failures a loaded pool may give (a full queue,
/// a handler error, a timeout) are what the load measures, and are counted.
fn probe(client: &mut CallClient, a: &BenchArgs<'_>) -> Result<(), Failure> {
    let outcome = client
        .call(a.pool, a.method, a.args, &CallOptions::default())
        .map_err(|e| Failure::Refused(e.to_string()))?;
    refused_for_good(outcome)
}

/// Error kinds that say the call itself is wrong: every call of the load would get them.
const REFUSED_FOR_GOOD: [ErrorKind; 4] = [
    ErrorKind::NoSuchPool,
    ErrorKind::NoSuchMethod,
    ErrorKind::BadRequest,
    ErrorKind::TooLarge,
];

/// The calls in flight connection `i` of `connections` carries: `concurrency` shared out
/// as evenly as it goes.
fn share(concurrency: usize, connections: usize, i: usize) -> usize {
    concurrency / connections + usize::from(i < concurrency % connections)
}

#[cfg(test)]
mod tests {
    use super::{BenchReport, share, text};

    #[test]
    fn the_text_report_gives_latencies_in_the_unit_a_person_reads() {
        let report = BenchReport {
            pool: "agent".into(),
            method: "ask".into(),
            concurrency: 16,
            connections: 16,
            duration_s: 3.02,
            calls: 96,
            errors: 0,
            calls_per_s: 31.8,
            p50_us: 87,
            p90_us: 1234,
            p99_us: 501_917,
            max_us: 1_240_000,
        };
        assert_eq!(
            text(&report),
            "96 calls of agent.ask in 3.0s with concurrency 16 over 16 connections: 32 calls/s, 0 errors\n\
             latency: p50 87 us, p90 1.23 ms, p99 502 ms, max 1.24 s\n"
        );
    }

    #[test]
    fn calls_in_flight_are_shared_evenly_over_connections() {
        assert_eq!((0..3).map(|i| share(8, 3, i)).collect::<Vec<_>>(), [3, 3, 2]);
        assert_eq!((0..4).map(|i| share(4, 4, i)).collect::<Vec<_>>(), [1, 1, 1, 1]);
        assert_eq!(share(64, 1, 0), 64);
    }
}
