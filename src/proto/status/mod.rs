//! `StatusReport`: the reply to a status request and, byte for byte, what
//! `pitctl status --json` prints (INTERFACE section 4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::WorkerId;
use crate::lifecycle::{Health, Reason, WorkerState};
pub use crate::spec::MemoryMetric;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub uptime_s: f64,
    pub pools: Vec<PoolStatus>,
    /// pitd got SIGTERM (or a shutdown request): not ready, stopping once its
    /// `shutdown_delay` is over.
    #[serde(default)]
    pub shutting_down: bool,
    /// Where calls go (lets `pitctl call` find it from the control socket alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_socket: Option<String>,
    /// The HTTP front door, when the spec has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<DoorStatus>,
    /// The daemon's `memory_budget` and its use (every pool's memory on its own metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<BudgetStatus>,
}

/// A memory budget and what uses it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct BudgetStatus {
    pub budget_bytes: u64,
    pub used_bytes: u64,
}

/// The HTTP front door as status shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DoorStatus {
    /// The address it serves.
    pub listen: String,
    pub tls: bool,
    /// Client certificates are required (`client_ca`).
    pub client_certificates: bool,
    /// The principals of its tokens file (none without one).
    pub principals: Vec<String>,
    /// Calls and streams in flight through it.
    pub in_flight: u64,
    /// Connections open.
    pub connections: u64,
}

impl DoorStatus {
    /// One line for `pitctl status` and `top`: `door https://0.0.0.0:8443 (client
    /// certificates), principals frontend, ops; 3 in flight, 5 connections`.
    pub fn summary(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let certs = if self.client_certificates {
            " (client certificates)"
        } else {
            ""
        };
        let who = match self.principals.is_empty() {
            true => "no tokens".to_string(),
            false => format!("principals {}", self.principals.join(", ")),
        };
        format!(
            "door {scheme}://{}{certs}, {who}; {} in flight, {} connection{}",
            self.listen,
            self.in_flight,
            self.connections,
            if self.connections == 1 { "" } else { "s" }
        )
    }
}

/// A pool's state as status shows it: what its phase (`lifecycle::phase`) shows.
pub use crate::lifecycle::phase::PoolState;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolStatus {
    pub name: String,
    pub state: PoolState,
    pub size: u32,
    pub workers: Vec<WorkerStatus>,
    /// Calls a worker ran, and of those the ones that failed.
    pub requests: u64,
    pub errors: u64,
    /// Calls refused before any worker saw them, by error kind (every kind of
    /// `ErrorKind::REJECTIONS`, zero included).
    #[serde(default)]
    pub rejected: BTreeMap<String, u64>,
    pub queued: u64,
    pub recycled: u64,
    pub restarts: u64,
    /// Calls a worker holds at once (`concurrency`).
    #[serde(default = "one")]
    pub concurrency: u32,
    /// Calls the workers hold now (running, pipelined, or timed out and not yet freed).
    #[serde(default)]
    pub in_flight: u64,
    /// Calls the pool can run at once: ready workers x concurrency.
    #[serde(default)]
    pub capacity: u64,
    /// Streams its workers are sending now (INTERFACE section 9).
    #[serde(default)]
    pub streams_open: u64,
    /// What `max_rss` and `hard_rss` compare, and so each worker's `memory_bytes`.
    #[serde(default)]
    pub memory_metric: MemoryMetric,
    /// The pool's `max_rss` (graceful recycle past it), `null` when unset.
    #[serde(default)]
    pub max_rss_bytes: Option<u64>,
    /// The pool's `hard_rss` (killed past it), `null` when unset.
    #[serde(default)]
    pub hard_rss_bytes: Option<u64>,
    /// The budget the pool stays under now on its `memory_metric` (its own `memory_budget`,
    /// or less when the daemon's leaves it less), `null` without one. Its use is `memory`.
    #[serde(default)]
    pub memory_budget_bytes: Option<u64>,
    /// Why the pool is `failing`: the last exit status and the last stderr lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_reason: Option<String>,
    /// A preloaded pool's template and spare worker, which use memory no worker row shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateStatus>,
    /// What an operator should know about the pool (threads running and sockets open in its
    /// template after the preload and warm-up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The memory of all its processes together: workers, template and spare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<PoolMemory>,
}

impl PoolStatus {
    /// The figure shown beside RSS: the pool's `memory_metric`, or PSS for a pool on RSS
    /// whose processes share pages (a preloaded one: RSS counts each shared page in every
    /// worker); `None` when RSS is all there is to say.
    pub fn shown_metric(&self) -> Option<MemoryMetric> {
        match self.memory_metric {
            MemoryMetric::Rss => self
                .measured()
                .any(|m| m.figures().pss.is_some())
                .then_some(MemoryMetric::Pss),
            metric => Some(metric),
        }
    }

    /// `metric` of one of the pool's processes (0 when not measured): for the pool's own
    /// metric its `memory_bytes`, the very figure `max_rss` is compared with (RSS where
    /// smaps could not be read).
    pub fn figure(&self, process: &(impl Measured + ?Sized), metric: MemoryMetric) -> u64 {
        let f = process.figures();
        match metric {
            MemoryMetric::Rss => f.rss,
            _ if metric == self.memory_metric => f.memory,
            MemoryMetric::Pss => f.pss.unwrap_or(0),
            MemoryMetric::Uss => f.uss.unwrap_or(0),
        }
    }

    /// `metric` summed over the workers, template and spare as pitd summed them (`memory`,
    /// which says what it leaves out); `None` when pitd sent no sum, or did not sum that
    /// metric (PSS not read in every process).
    pub fn memory_total(&self, metric: MemoryMetric) -> Option<u64> {
        let m = self.memory.as_ref()?;
        match metric {
            MemoryMetric::Rss => Some(m.rss_bytes),
            _ if metric == self.memory_metric => Some(m.memory_bytes),
            MemoryMetric::Pss => m.pss_bytes,
            MemoryMetric::Uss => None,
        }
    }

    /// `metric` summed over the workers, template and spare.
    pub fn total(&self, metric: MemoryMetric) -> u64 {
        self.measured().map(|m| self.figure(m, metric)).sum()
    }

    fn measured(&self) -> impl Iterator<Item = &dyn Measured> {
        let workers = self.workers.iter().map(|w| w as &dyn Measured);
        let extra = self
            .template
            .iter()
            .flat_map(|t| t.processes())
            .map(|p| p as &dyn Measured);
        workers.chain(extra)
    }
}

/// A worker's tree or a single process as last sampled, each figure in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub rss: u64,
    /// The pool's `memory_metric`.
    pub memory: u64,
    pub pss: Option<u64>,
    pub uss: Option<u64>,
}

/// What status measures the memory of: workers, and a preloaded pool's template and spare.
pub trait Measured {
    fn figures(&self) -> Figures;
}

impl Measured for WorkerStatus {
    fn figures(&self) -> Figures {
        Figures {
            rss: self.rss_bytes,
            memory: self.memory_bytes,
            pss: self.pss_bytes,
            uss: self.uss_bytes,
        }
    }
}

impl Measured for ProcessStatus {
    fn figures(&self) -> Figures {
        Figures {
            rss: self.rss_bytes,
            memory: self.memory_bytes,
            pss: self.pss_bytes,
            uss: self.uss_bytes,
        }
    }
}

/// A pool's processes' memory summed: its workers, and a preloaded pool's template and
/// spare. A process not sampled yet is left out of the sums and named in `unsampled`, so a
/// total is never short without saying so.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolMemory {
    pub rss_bytes: u64,
    /// The pool's `memory_metric` (RSS, PSS or USS) summed.
    pub memory_bytes: u64,
    /// PSS summed, when every process summed was measured for it (preloaded pools,
    /// `memory_metric` pss or uss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pss_bytes: Option<u64>,
    /// Whether every process of the pool is in the sums.
    pub complete: bool,
    /// The processes left out because they have not been sampled yet: `worker-N`,
    /// `template`, `spare`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsampled: Vec<String>,
}

/// One process's memory as sampled: RSS, the `memory_metric` value, PSS when measured.
pub type MemorySample = (u64, u64, Option<u64>);

impl PoolMemory {
    /// Sums the pool's processes, each named, with its sample (`None`: not sampled yet).
    pub fn sum(processes: impl IntoIterator<Item = (String, Option<MemorySample>)>) -> PoolMemory {
        let mut total = PoolMemory {
            complete: true,
            ..PoolMemory::default()
        };
        let mut pss = Some(0);
        for (name, measured) in processes {
            let Some((rss, memory, process_pss)) = measured else {
                total.complete = false;
                total.unsampled.push(name);
                continue;
            };
            total.rss_bytes += rss;
            total.memory_bytes += memory;
            pss = pss.zip(process_pss).map(|(a, b)| a + b);
        }
        let summed_any = total.rss_bytes > 0;
        total.pss_bytes = pss.filter(|_| summed_any);
        total
    }
}

/// A process of a pool that is not a worker, as last sampled (0 bytes before the first
/// sample).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessStatus {
    pub pid: u32,
    pub rss_bytes: u64,
    /// The pool's `memory_metric` (RSS, PSS or USS).
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pss_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uss_bytes: Option<u64>,
}

/// A preloaded pool's template process, and the spare worker it keeps forked ahead of need.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemplateStatus {
    #[serde(flatten)]
    pub process: ProcessStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spare: Option<ProcessStatus>,
}

impl TemplateStatus {
    /// The template, then its spare.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessStatus> {
        std::iter::once(&self.process).chain(self.spare.as_ref())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerStatus {
    pub id: WorkerId,
    pub pid: u32,
    pub state: WorkerState,
    pub health: Health,
    pub rss_bytes: u64,
    pub memory_bytes: u64,
    /// Proportional and unique set sizes over the tree, when measured (`memory_metric`
    /// pss/uss, or a preloaded pool whose workers share pages with their template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pss_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uss_bytes: Option<u64>,
    pub rss_growth_bytes_per_s: i64,
    pub cpu_percent: f64,
    pub requests: u64,
    pub errors: u64,
    pub age_s: f64,
    pub last_recycle_reason: Option<Reason>,
    /// Calls it holds now.
    #[serde(default)]
    pub in_flight: u32,
    /// Whether its interpreter runs with the GIL; `null` when it did not say.
    #[serde(default)]
    pub gil_enabled: Option<bool>,
}

fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests;
