//! The monitor: owns sysinfo and samples each worker's process tree on a thread of its own.
//!
//! Pools register a worker with [`Monitor::watch`] once it is spawned, giving a sink (a
//! channel send into the pool's mailbox), ask for a sample at once with
//! [`Monitor::sample_now`] when it gets ready (so status has its memory from its first
//! moment, not one interval later), and [`Monitor::unwatch`] it when it goes. Every
//! interval the thread scans `/proc/*/stat` for parent links, refreshes through sysinfo
//! only the pids of the watched trees, and calls each sink with one [`TreeSample`]: the
//! worker's memory and CPU summed over it and all its descendants. Sampling never waits on
//! a pool, and a pool never waits on sampling.
//!
//! The invariant: a sample is only ever about the process that was registered. A worker is
//! known by (pid, start time); once its pid is gone or names a newer process, the watch is
//! dropped without a sample. Each process counts once per tree, its threads never: `/proc`
//! lists thread-group leaders only.
//!
//! The descendants are found by scanning `/proc` because the kernels we run on have no
//! `/proc/PID/task/TID/children`. That scan is the floor of the cost; an idle monitor (no
//! watches) does not scan at all.

mod sampler;
#[cfg(test)]
mod tests;
mod tree;

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

pub use crate::procfs::{ProcStat, exiting, start_time_ticks, stat_of};
pub use crate::spec::MemoryMetric;
pub use tree::{RootCheck, growth_rate, reported_growth_rate, root_check, sum_tree, tree_pids};

use sampler::{Sampler, Watch};

/// One worker's tree at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeSample {
    /// The worker (the root of the tree).
    pub pid: u32,
    /// Resident memory summed over the tree, shared pages counted in each process.
    pub rss_bytes: u64,
    /// The worker's chosen [`MemoryMetric`] summed over the tree; equal to `rss_bytes` for
    /// [`MemoryMetric::Rss`].
    pub memory_bytes: u64,
    /// PSS and USS summed over the tree, when they were read (`memory_metric` pss/uss, or a
    /// preloaded pool).
    pub pss_bytes: Option<u64>,
    pub uss_bytes: Option<u64>,
    /// CPU use since the previous pass, summed over the tree; 100 = one core busy. A process
    /// seen for the first time counts 0.
    pub cpu_percent: f64,
    /// How many processes of the tree were measured, the worker included.
    pub processes: u32,
    pub at: Instant,
}

impl TreeSample {
    /// Its memory as a pool's total sums it: RSS, the metric's value, PSS when read.
    pub fn memory(&self) -> crate::proto::status::MemorySample {
        (self.rss_bytes, self.memory_bytes, self.pss_bytes)
    }
}

/// Receives a worker's samples. Called on the monitor thread, so it must not block: the
/// daemon's sink sends on a channel into the pool and ignores a closed one.
pub type SampleSink = Box<dyn Fn(TreeSample) + Send>;

enum Cmd {
    Watch { pid: u32, watch: Watch },
    SampleNow { pid: u32 },
    Unwatch { pid: u32 },
}

/// A cloneable handle to the monitor thread. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Monitor {
    /// Commands to the monitor thread; closing it (dropping every handle) stops the thread.
    tx: mpsc::Sender<Cmd>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Monitor")
    }
}

impl Monitor {
    /// Starts the monitor thread, sampling every `interval` while anything is watched.
    pub fn start(interval: Duration) -> std::io::Result<Monitor> {
        let sampler = Sampler::new()?;
        // A zero interval would spin; a millisecond is already far below any useful one.
        let interval = interval.max(Duration::from_millis(1));
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("pitd-monitor".into())
            .spawn(move || run(sampler, &rx, interval))?;
        Ok(Monitor { tx })
    }

    /// Starts sampling `pid`'s process tree into `sink`, replacing any earlier watch of the
    /// same pid. The worker's start time is read now, so call this as soon as it is
    /// spawned; a pid that has already gone is not watched and `sink` is never called.
    pub fn watch(&self, pid: u32, metric: MemoryMetric, sink: SampleSink) {
        self.watch_with(pid, metric, false, sink)
    }

    /// Like [`Monitor::watch`], and with `shared_pages` the samples carry PSS and USS beside
    /// RSS whatever the metric (for workers forked from a preload template).
    pub fn watch_with(&self, pid: u32, metric: MemoryMetric, shared_pages: bool, sink: SampleSink) {
        let Some(start_ticks) = start_time_ticks(pid) else {
            tracing::debug!(pid, "worker exited before it could be watched");
            return;
        };
        self.send(Cmd::Watch {
            pid,
            watch: Watch {
                start_ticks,
                metric,
                sink,
                rollup_warned: false,
                shared_pages,
            },
        });
    }

    /// Samples `pid`'s tree now, outside the interval, if it is watched. The regular passes
    /// go on as before.
    pub fn sample_now(&self, pid: u32) {
        self.send(Cmd::SampleNow { pid });
    }

    /// Stops sampling `pid`. Samples already sent may still arrive.
    pub fn unwatch(&self, pid: u32) {
        self.send(Cmd::Unwatch { pid });
    }

    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_err() {
            tracing::error!("the monitor thread has stopped; worker memory is no longer sampled");
        }
    }
}

/// The monitor thread: applies commands as they come and samples at each deadline.
fn run(mut sampler: Sampler, rx: &mpsc::Receiver<Cmd>, interval: Duration) {
    let mut next = Instant::now() + interval;
    loop {
        // With nothing to watch, sleep until told otherwise instead of waking every interval.
        let cmd = if sampler.is_idle() {
            match rx.recv() {
                Ok(cmd) => {
                    next = Instant::now() + interval;
                    Some(cmd)
                }
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        match cmd {
            Some(Cmd::Watch { pid, watch }) => sampler.watch(pid, watch),
            Some(Cmd::SampleNow { pid }) => sampler.pass_of(pid),
            Some(Cmd::Unwatch { pid }) => sampler.unwatch(pid),
            None => {}
        }
        let now = Instant::now();
        if now >= next {
            sampler.pass();
            next = next_deadline(next, interval, Instant::now());
        }
    }
}

/// The deadline after `previous`: on the interval grid, or a whole interval from `now` if
/// a pass overran, so a slow pass is not followed by a burst of catch-up passes.
fn next_deadline(previous: Instant, interval: Duration, now: Instant) -> Instant {
    let next = previous + interval;
    if next > now { next } else { now + interval }
}
