//! `StatusReport`: the reply to a status request and, byte for byte, what
//! `pitctl status --json` prints (INTERFACE section 4).

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
}

#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, strum::IntoStaticStr, strum::Display, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    Starting,
    Running,
    Draining,
    Drained,
    Failing,
}

impl PoolState {
    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolStatus {
    pub name: String,
    pub state: PoolState,
    pub size: u32,
    pub workers: Vec<WorkerStatus>,
    pub requests: u64,
    pub errors: u64,
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
    /// What `max_rss` and `hard_rss` compare, and so each worker's `memory_bytes`.
    #[serde(default)]
    pub memory_metric: MemoryMetric,
    /// The pool's `max_rss` (graceful recycle past it), `null` when unset.
    #[serde(default)]
    pub max_rss_bytes: Option<u64>,
    /// The pool's `hard_rss` (killed past it), `null` when unset.
    #[serde(default)]
    pub hard_rss_bytes: Option<u64>,
    /// Why the pool is `failing`: the last exit status and the last stderr lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_reason: Option<String>,
    /// A preloaded pool's template and spare worker, which use memory no worker row shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateStatus>,
    /// What an operator should know about the pool (threads running in its template after
    /// the preload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl PoolStatus {
    /// The pool's processes' memory: its workers, template and spare, summed as
    /// (RSS, the `memory_metric` value).
    pub fn memory_totals(&self) -> (u64, u64) {
        let workers = self.workers.iter().map(|w| (w.rss_bytes, w.memory_bytes));
        let extra = self
            .template
            .iter()
            .flat_map(|t| t.processes())
            .map(|p| (p.rss_bytes, p.memory_bytes));
        workers.chain(extra).fold((0, 0), |(r, m), (pr, pm)| (r + pr, m + pm))
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
    fn a_status_without_the_memory_fields_reads_as_rss_without_limits() {
        let pool: PoolStatus = serde_json::from_str(&format!("{POOL}}}")).unwrap();
        assert_eq!(
            (pool.memory_metric, pool.max_rss_bytes, pool.hard_rss_bytes),
            (MemoryMetric::Rss, None, None)
        );
    }
}
