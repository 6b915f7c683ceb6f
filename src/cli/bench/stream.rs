//! `pitctl bench POOL --stream`: `concurrency` streams at once, one per connection, each
//! started again as soon as it ends, for `duration`; then chunks/s, the time to each
//! stream's first chunk, and the gaps between chunks of one stream.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::super::Failure;
use super::super::call::connect;
use super::super::duration::human;
use super::{BenchArgs, probe_stream};
use crate::call_client::{CallOptions, Outcome};

#[derive(Debug, Serialize)]
pub struct StreamReport {
    pub pool: String,
    pub method: String,
    pub concurrency: usize,
    pub duration_s: f64,
    /// Streams that ended (well or not) within the run.
    pub streams: u64,
    pub errors: u64,
    pub chunks: u64,
    pub chunks_per_s: f64,
    pub first_chunk_p50_us: u64,
    pub first_chunk_p99_us: u64,
    pub gap_p50_us: u64,
    pub gap_p99_us: u64,
    pub gap_max_us: u64,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    streams: u64,
    errors: u64,
    chunks: u64,
    first: Vec<u32>,
    gaps: Vec<u32>,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

pub fn measure(a: &BenchArgs<'_>) -> Result<StreamReport, Failure> {
    let concurrency = a.concurrency.max(1);
    let mut clients = (0..concurrency)
        .map(|_| connect(a.socket))
        .collect::<Result<Vec<_>, _>>()?;
    probe_stream(&mut clients[0], a)?;
    let opts = CallOptions {
        stream: true,
        ..CallOptions::default()
    };
    let start = Instant::now();
    let end = start + a.duration;
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let opts = &opts;
                s.spawn(move || {
                    let mut t = Tally::default();
                    while Instant::now() < end {
                        let began = Instant::now();
                        let mut last: Option<Instant> = None;
                        let outcome = client.call_streaming(a.pool, a.method, a.args, opts, |_| {
                            let now = Instant::now();
                            match last {
                                None => t.first.push(micros(now - began)),
                                Some(prev) => t.gaps.push(micros(now - prev)),
                            }
                            last = Some(now);
                            t.chunks += 1;
                            Ok(())
                        });
                        t.streams += 1;
                        match outcome {
                            Ok(Outcome::Ok { .. }) => {}
                            Ok(Outcome::Err { .. }) => t.errors += 1,
                            Err(_) => {
                                // The connection broke: this stream failed, and no other
                                // can run on it.
                                t.errors += 1;
                                break;
                            }
                        }
                    }
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut first: Vec<u32> = tallies.iter().flat_map(|t| t.first.iter().copied()).collect();
    let mut gaps: Vec<u32> = tallies.iter().flat_map(|t| t.gaps.iter().copied()).collect();
    first.sort_unstable();
    gaps.sort_unstable();
    let chunks: u64 = tallies.iter().map(|t| t.chunks).sum();
    Ok(StreamReport {
        pool: a.pool.to_string(),
        method: a.method.to_string(),
        concurrency,
        duration_s: elapsed,
        streams: tallies.iter().map(|t| t.streams).sum(),
        errors: tallies.iter().map(|t| t.errors).sum(),
        chunks,
        chunks_per_s: chunks as f64 / elapsed.max(1e-9),
        first_chunk_p50_us: super::percentile(&first, 0.50),
        first_chunk_p99_us: super::percentile(&first, 0.99),
        gap_p50_us: super::percentile(&gaps, 0.50),
        gap_p99_us: super::percentile(&gaps, 0.99),
        gap_max_us: gaps.last().copied().unwrap_or(0) as u64,
    })
}

/// The report as a person reads it; `--json` keeps microseconds.
pub fn text(r: &StreamReport) -> String {
    let t = |us: u64| human(Duration::from_micros(us));
    format!(
        "{} streams of {}.{} in {:.1}s with concurrency {}: {} chunks, {:.0} chunks/s, {} errors\n\
         first chunk: p50 {}, p99 {}\n\
         gap between chunks: p50 {}, p99 {}, max {}\n",
        r.streams,
        r.pool,
        r.method,
        r.duration_s,
        r.concurrency,
        r.chunks,
        r.chunks_per_s,
        r.errors,
        t(r.first_chunk_p50_us),
        t(r.first_chunk_p99_us),
        t(r.gap_p50_us),
        t(r.gap_p99_us),
        t(r.gap_max_us),
    )
}
