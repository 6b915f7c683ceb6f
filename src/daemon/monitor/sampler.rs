//! The monitor thread's state and one sampling pass: scan the process table, drop watched
//! pids that are no longer their worker, refresh only the pids of the watched trees, and
//! hand one [`TreeSample`] per worker to its sink.

use std::collections::HashMap;
use std::io;
use std::time::Instant;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::tree::{Children, RootCheck, root_check};
use super::{MemoryMetric, SampleSink, TreeSample};
use crate::procfs::{self, ProcStat};

/// Above this many processes that sysinfo remembers but no watched tree holds any more, the
/// `System` is rebuilt (see [`Sampler::forget_strays`]).
const STRAYS_BEFORE_REBUILD: usize = 256;

/// One watched worker.
pub(super) struct Watch {
    /// Recorded when the worker was registered; a different value in a later scan means
    /// the pid now names another process.
    pub start_ticks: u64,
    pub metric: MemoryMetric,
    pub sink: SampleSink,
    /// Whether we already said that `smaps_rollup` could not be read for this tree.
    pub rollup_warned: bool,
    /// Report PSS and USS beside RSS whatever the metric (workers sharing pages).
    pub shared_pages: bool,
}

/// Everything the monitor thread owns.
pub(super) struct Sampler {
    /// Kept for the thread's life: a process's CPU % is the difference from its previous
    /// refresh in this same `System`.
    system: System,
    watches: HashMap<u32, Watch>,
    /// The last scan of `/proc`, kept to reuse its allocation.
    table: Vec<ProcStat>,
    /// Read buffer for `/proc` files, reused for the same reason.
    buf: Vec<u8>,
    /// The pids refreshed in the last pass, sorted.
    refreshed: Vec<Pid>,
}

impl Sampler {
    pub fn new() -> io::Result<Sampler> {
        Ok(Sampler {
            system: new_system()?,
            watches: HashMap::new(),
            table: Vec::new(),
            buf: Vec::with_capacity(4096),
            refreshed: Vec::new(),
        })
    }

    /// Starts sampling `pid`'s tree, replacing an earlier watch of the same pid.
    pub fn watch(&mut self, pid: u32, watch: Watch) {
        self.watches.insert(pid, watch);
    }

    pub fn unwatch(&mut self, pid: u32) {
        self.watches.remove(&pid);
    }

    pub fn is_idle(&self) -> bool {
        self.watches.is_empty()
    }

    /// How many processes sysinfo holds: what a pass costs in memory.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.system.processes().len()
    }

    /// One sampling pass: every watched worker that is still itself gets one sample.
    pub fn pass(&mut self) {
        self.sample(None);
    }

    /// A pass over one watched worker alone (nothing if it is not watched).
    pub fn pass_of(&mut self, pid: u32) {
        if self.watches.contains_key(&pid) {
            self.sample(Some(pid));
        }
    }

    /// Samples every watched worker, or only `only`.
    fn sample(&mut self, only: Option<u32>) {
        if self.watches.is_empty() {
            return;
        }
        if let Err(e) = procfs::scan(&mut self.table, &mut self.buf) {
            tracing::warn!("cannot list /proc ({e}); worker memory not sampled this time");
            return;
        }
        self.drop_departed_roots();

        let children = Children::new(self.table.iter().map(|s| (s.pid, s.ppid)));
        let trees: Vec<(u32, Vec<u32>)> = self
            .watches
            .keys()
            .filter(|&&root| only.is_none_or(|pid| pid == root))
            .map(|&root| (root, children.tree(root)))
            .collect();
        let mut wanted: Vec<Pid> = trees
            .iter()
            .flat_map(|(_, tree)| tree)
            .map(|&pid| Pid::from_u32(pid))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if only.is_some() {
            self.refresh_more(wanted);
        } else {
            self.refresh(wanted);
        }

        let at = Instant::now();
        let Sampler {
            system, watches, buf, ..
        } = self;
        for (root, tree) in trees {
            if let Some(watch) = watches.get_mut(&root) {
                let sample = measure(system, buf, root, &tree, watch, at);
                (watch.sink)(sample);
            }
        }
    }

    /// Forgets watched pids whose worker has been reaped, or whose pid now belongs to a
    /// newer process: sampling that process would charge a stranger's memory to the pool.
    fn drop_departed_roots(&mut self) {
        let starts: HashMap<u32, u64> = self.table.iter().map(|s| (s.pid, s.start_ticks)).collect();
        self.watches.retain(
            |&pid, watch| match root_check(watch.start_ticks, starts.get(&pid).copied()) {
                RootCheck::Same => true,
                RootCheck::Gone => {
                    tracing::debug!(pid, "watched worker has exited; no longer sampled");
                    false
                }
                RootCheck::Reused => {
                    tracing::debug!(pid, "watched pid now names another process; no longer sampled");
                    false
                }
            },
        );
    }

    /// Refreshes memory and CPU of exactly `wanted` (sorted), plus the pids that left the
    /// trees since the last pass, so that sysinfo drops those that have died.
    fn refresh(&mut self, wanted: Vec<Pid>) {
        self.forget_strays(wanted.len());
        let mut pids = wanted.clone();
        pids.extend(self.refreshed.iter().filter(|pid| wanted.binary_search(pid).is_err()));
        // `nothing()` still lists every process's threads (a readdir of /proc/PID/task per
        // process) unless told otherwise; threads are never counted here, so skip that.
        let kind = ProcessRefreshKind::nothing().with_memory().with_cpu().without_tasks();
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::Some(&pids), true, kind);
        self.refreshed = wanted;
    }

    /// Refreshes `wanted` (sorted) alone, between passes: the pids of the other trees stay
    /// in the record, so the next full pass still refreshes those that left their tree.
    fn refresh_more(&mut self, wanted: Vec<Pid>) {
        let kind = ProcessRefreshKind::nothing().with_memory().with_cpu().without_tasks();
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::Some(&wanted), true, kind);
        self.refreshed.extend(wanted);
        self.refreshed.sort_unstable();
        self.refreshed.dedup();
    }

    /// sysinfo only removes a process when asked to refresh it and finds it dead. A process
    /// that left every tree while alive (reparented, or its worker unwatched) would stay in
    /// its map for good, so past a threshold the map is rebuilt. The cost is one pass with
    /// CPU % at 0, since a new `System` has no previous sample to compare with.
    fn forget_strays(&mut self, wanted: usize) {
        if self.system.processes().len() <= wanted.saturating_mul(2) + STRAYS_BEFORE_REBUILD {
            return;
        }
        match new_system() {
            Ok(system) => {
                self.system = system;
                self.refreshed.clear();
            }
            Err(e) => tracing::debug!("cannot rebuild the process sampler ({e}); keeping the old one"),
        }
    }
}

fn new_system() -> io::Result<System> {
    System::new().map_err(|e| io::Error::other(format!("creating the process sampler: {e}")))
}

/// Sums one worker's tree. Processes that exited since the scan are left out.
fn measure(system: &System, buf: &mut Vec<u8>, root: u32, tree: &[u32], watch: &mut Watch, at: Instant) -> TreeSample {
    let mut sample = TreeSample {
        pid: root,
        rss_bytes: 0,
        memory_bytes: 0,
        pss_bytes: None,
        uss_bytes: None,
        cpu_percent: 0.0,
        processes: 0,
        at,
    };
    for &pid in tree {
        let Some(process) = system.process(Pid::from_u32(pid)) else {
            continue;
        };
        let rss = process.memory();
        let memory = match watch.metric {
            MemoryMetric::Rss if !watch.shared_pages => rss,
            _ => match procfs::read_rollup(pid, buf) {
                Ok(Some(rollup)) => {
                    sample.pss_bytes = Some(sample.pss_bytes.unwrap_or(0).saturating_add(rollup.pss));
                    sample.uss_bytes = Some(sample.uss_bytes.unwrap_or(0).saturating_add(rollup.uss));
                    match watch.metric {
                        MemoryMetric::Rss => rss,
                        MemoryMetric::Pss => rollup.pss,
                        MemoryMetric::Uss => rollup.uss,
                    }
                }
                // A zombie's rollup is empty: it maps nothing.
                Ok(None) => 0,
                Err(e) if vanished(&e) => continue,
                Err(e) => {
                    if !watch.rollup_warned {
                        watch.rollup_warned = true;
                        tracing::warn!(
                            pid = root,
                            "cannot read smaps_rollup of pid {pid} ({e}); counting its RSS"
                        );
                    }
                    // RSS over-estimates PSS and USS, which errs on the side of recycling.
                    sample.pss_bytes = None;
                    sample.uss_bytes = None;
                    rss
                }
            },
        };
        sample.processes += 1;
        sample.rss_bytes = sample.rss_bytes.saturating_add(rss);
        sample.memory_bytes = sample.memory_bytes.saturating_add(memory);
        sample.cpu_percent += f64::from(process.cpu_usage());
    }
    sample
}

/// Errors that only mean the process exited between the scan and the read.
fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}
