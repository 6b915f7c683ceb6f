//! Lifecycle events: what `pitctl events` prints and what pitd keeps in its event ring.

use serde::{Deserialize, Serialize};

use crate::ids::WorkerId;
use crate::lifecycle::Reason;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    WorkerStarted,
    WorkerReady,
    WorkerExited,
    WorkerRecycled,
    WorkerDraining,
    PoolFailing,
    PoolRecovered,
    PoolDrained,
    /// Something about the pool's preload template an operator should know (threads
    /// running after the preload); `message` says what.
    TemplateWarning,
    /// Something about a worker an operator should know (`GIL_REENABLED`: an extension
    /// module turned a free-threaded build's GIL back on); `message` says what.
    WorkerWarning,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// RFC 3339, UTC.
    pub ts: String,
    pub event: EventKind,
    pub pool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// "exit code 1" or "killed by signal 9 (SIGKILL)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// On an unplanned `worker_exited`: the restart backoff pitd chose before the worker's
    /// replacement may start (0: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// On `worker_started`: the recycled worker this one replaces (its reason in `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<WorkerId>,
}
