//! The children the process thread knows: workers (with what to call when each is
//! reaped) and preload templates, the guard told about each, and the exits of children
//! not claimed yet. Shared by the reaper (`procs`) and the templates, which register the
//! workers they fork.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::daemon::process::guard::Guard;
use crate::daemon::process::spawn::{SpawnError, Spawned};
use crate::lifecycle::ExitStatusInfo;
use crate::procfs::stat_of;

/// How a worker ended, as seen by the reaper.
#[derive(Debug, Clone)]
pub struct ExitInfo {
    pub pid: u32,
    pub status: ExitStatusInfo,
    pub at: Instant,
    /// CPU time (user + system) the worker used, read from the zombie before reaping: a
    /// SIGKILL at RLIMIT_CPU (soft = hard) is told from any other SIGKILL by it.
    pub cpu_time: Option<std::time::Duration>,
}

/// Called on the process thread with the spawn result; must not block.
pub type OnSpawned = Box<dyn FnOnce(Result<Spawned, SpawnError>) + Send>;
/// Called on the process thread when the worker has been reaped; must not block.
pub type OnExit = Box<dyn FnOnce(ExitInfo) + Send>;

pub(super) enum Live {
    Worker {
        on_exit: OnExit,
    },
    /// A pool's preload template.
    Template {
        pool: String,
    },
}

/// Exits of unknown children kept for a registration that may still come (a worker forked
/// by a template can die before the template reports its pid): how many, and how long.
pub(super) const UNCLAIMED_KEPT: usize = 64;
const UNCLAIMED_FOR: Duration = Duration::from_secs(30);

/// The children the process thread knows, and the guard told about them.
pub struct Table {
    pub(super) live: HashMap<u32, Live>,
    pub(super) guard: Option<Guard>,
    pub(super) unclaimed: VecDeque<ExitInfo>,
}

impl Table {
    pub(super) fn new(guard: Option<Guard>) -> Table {
        Table {
            live: HashMap::new(),
            guard,
            unclaimed: VecDeque::new(),
        }
    }

    pub(super) fn insert(&mut self, pid: u32, live: Live) {
        self.live.insert(pid, live);
        if let Some(g) = self.guard.as_mut() {
            g.watch(pid);
        }
    }

    pub fn register_template(&mut self, pid: u32, pool: &str) {
        self.insert(pid, Live::Template { pool: pool.to_string() });
    }

    /// Registers a worker forked elsewhere (by a template) after `since`. If it has already
    /// been reaped, its exit is handed back, to be reported once its spawn has been.
    pub fn register_worker(&mut self, pid: u32, on_exit: OnExit, since: Instant) -> Option<(OnExit, ExitInfo)> {
        if let Some(at) = self.unclaimed.iter().position(|e| e.pid == pid && e.at >= since) {
            let info = self.unclaimed.remove(at).expect("found above");
            return Some((on_exit, info));
        }
        self.insert(pid, Live::Worker { on_exit });
        None
    }

    /// Whether `pid` may be registered as a worker forked after `since`: a live child of
    /// pitd leading its own process group, or a child of pitd reaped since then.
    pub fn claimable(&self, pid: u32, since: Instant) -> bool {
        if self.live.contains_key(&pid) {
            return false;
        }
        if self.unclaimed.iter().any(|e| e.pid == pid && e.at >= since) {
            return true;
        }
        stat_of(pid).is_some_and(|s| s.ppid == std::process::id() && s.pgrp == pid)
    }

    /// Signals the process group of a registered, not yet reaped child.
    pub fn signal_group(&self, pid: u32, signal: Signal) {
        // Only pids not yet reaped: a reaped pid (and its pgid) may already be reused.
        if self.live.contains_key(&pid) {
            match killpg(Pid::from_raw(pid as i32), signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => tracing::warn!(pid, "signalling process group {pid} with {signal}: {e}"),
            }
        }
    }

    pub(super) fn keep_unclaimed(&mut self, info: ExitInfo) {
        let now = info.at;
        self.unclaimed
            .retain(|e| now.saturating_duration_since(e.at) < UNCLAIMED_FOR);
        if self.unclaimed.len() >= UNCLAIMED_KEPT {
            self.unclaimed.pop_front();
        }
        self.unclaimed.push_back(info);
    }
}
