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
mod tests {
    use super::*;

    const POOL: &str = r#"{"name":"p","state":"running","size":1,"workers":[],"requests":0,"errors":0,
        "queued":0,"recycled":0,"restarts":0"#;

    #[test]
    fn a_pool_says_its_memory_metric_and_limits_and_null_for_an_unset_limit() {
        let pool: PoolStatus =
            serde_json::from_str(&format!(r#"{POOL},"memory_metric":"pss","max_rss_bytes":536870912}}"#)).unwrap();
        assert_eq!(pool.memory_metric, MemoryMetric::Pss);
        let json: serde_json::Value = serde_json::to_value(&pool).unwrap();
        assert_eq!(json["memory_metric"], "pss");
        assert_eq!(json["max_rss_bytes"], 536870912);
        assert!(json["hard_rss_bytes"].is_null(), "{json}");
        assert!(
            json.as_object().unwrap().contains_key("hard_rss_bytes"),
            "an unset limit is null, not left out: {json}"
        );
    }

    #[test]
    fn the_figure_beside_rss_is_the_pools_metric_or_pss_where_pages_are_shared() {
        let worker = |pss: &str| {
            format!(
                r#"{{"id":"worker-1","pid":9,"state":"idle","health":"ok","rss_bytes":50,"memory_bytes":30,{pss}
                "rss_growth_bytes_per_s":0,"cpu_percent":0.0,"requests":0,"errors":0,"age_s":1.0,"last_recycle_reason":null}}"#
            )
        };
        let template = r#""template":{"pid":5,"rss_bytes":40,"memory_bytes":40,"pss_bytes":20}"#;
        // (memory_metric, the worker's pss/uss, template, shown metric, its total over the pool)
        let cases = [
            ("rss", "", "", None, 0),
            (
                "rss",
                r#""pss_bytes":10,"uss_bytes":2,"#,
                template,
                Some(MemoryMetric::Pss),
                30,
            ),
            (
                "pss",
                r#""pss_bytes":30,"uss_bytes":2,"#,
                "",
                Some(MemoryMetric::Pss),
                30,
            ),
            // USS is its memory_bytes, what max_rss compares.
            (
                "uss",
                r#""pss_bytes":40,"uss_bytes":30,"#,
                "",
                Some(MemoryMetric::Uss),
                30,
            ),
        ];
        for (metric, pss, template, shown, total) in cases {
            let json = format!(
                r#"{},"memory_metric":"{metric}","workers":[{}]{}{template}}}"#,
                POOL.replace(r#""workers":[],"#, ""),
                worker(pss),
                if template.is_empty() { "" } else { "," }
            );
            let pool: PoolStatus = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(pool.shown_metric(), shown, "{json}");
            if let Some(m) = shown {
                assert_eq!(pool.total(m), total, "{json}");
            }
            assert_eq!(
                pool.total(MemoryMetric::Rss),
                50 + if template.is_empty() { 0 } else { 40 }
            );
        }
    }

    #[test]
    fn a_pools_total_is_read_from_pitds_sum_and_never_names_rss_as_pss() {
        let memory = r#""memory":{"rss_bytes":90,"memory_bytes":30,"complete":true"#;
        let cases = [
            // (memory_metric, pss summed, metric asked, total)
            ("pss", r#","pss_bytes":30"#, MemoryMetric::Pss, Some(30)),
            ("pss", r#","pss_bytes":30"#, MemoryMetric::Rss, Some(90)),
            ("uss", "", MemoryMetric::Uss, Some(30)),
            ("uss", "", MemoryMetric::Pss, None),
            // A pool on RSS whose PSS was not read in every process: no PSS total at all.
            ("rss", "", MemoryMetric::Pss, None),
            ("rss", r#","pss_bytes":25"#, MemoryMetric::Pss, Some(25)),
        ];
        for (metric, pss, asked, want) in cases {
            let json = format!(r#"{POOL},"memory_metric":"{metric}",{memory}{pss}}}}}"#);
            let pool: PoolStatus = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(pool.memory_total(asked), want, "{json}");
        }
        let without: PoolStatus = serde_json::from_str(&format!("{POOL}}}")).unwrap();
        assert_eq!(without.memory_total(MemoryMetric::Rss), None);
    }

    #[test]
    fn a_status_without_the_memory_fields_reads_as_rss_without_limits() {
        let pool: PoolStatus = serde_json::from_str(&format!("{POOL}}}")).unwrap();
        assert_eq!(
            (pool.memory_metric, pool.max_rss_bytes, pool.hard_rss_bytes),
            (MemoryMetric::Rss, None, None)
        );
    }

    #[test]
    fn a_pool_total_names_the_processes_it_leaves_out() {
        let all = PoolMemory::sum([
            ("worker-1".to_string(), Some((10, 4, Some(4)))),
            ("template".to_string(), Some((20, 6, Some(6)))),
            ("spare".to_string(), Some((5, 1, Some(1)))),
        ]);
        assert_eq!(
            all,
            PoolMemory {
                rss_bytes: 35,
                memory_bytes: 11,
                pss_bytes: Some(11),
                complete: true,
                unsampled: vec![],
            }
        );
        let partial = PoolMemory::sum([
            ("worker-1".to_string(), Some((10, 4, Some(4)))),
            ("template".to_string(), None),
            ("spare".to_string(), None),
        ]);
        assert_eq!((partial.rss_bytes, partial.pss_bytes), (10, Some(4)));
        assert!(!partial.complete);
        assert_eq!(partial.unsampled, ["template", "spare"]);
        let json = serde_json::to_value(&partial).unwrap();
        assert_eq!(json["complete"], false, "{json}");
        assert_eq!(json["unsampled"], serde_json::json!(["template", "spare"]), "{json}");
    }

    #[test]
    fn pss_is_summed_only_when_every_process_has_it() {
        let mixed = PoolMemory::sum([
            ("worker-1".to_string(), Some((10, 10, None))),
            ("worker-2".to_string(), Some((10, 10, Some(3)))),
        ]);
        assert_eq!((mixed.rss_bytes, mixed.pss_bytes), (20, None));
        let none = PoolMemory::sum(std::iter::empty());
        assert!(none.complete && none.pss_bytes.is_none() && none.rss_bytes == 0);
    }
}
