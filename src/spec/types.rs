//! The validated pool spec: what the rest of pitd consumes. Every value here has been
//! checked (ranges, exclusive keys, paths resolved against the config file's directory);
//! code outside `spec` never sees raw TOML.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole validated config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The file it was read from (absolute).
    pub path: PathBuf,
    pub daemon: DaemonSpec,
    /// Pools in the order they appear in the file.
    pub pools: Vec<PoolSpec>,
    /// The HTTP front door, when the spec has an `[http]` table.
    pub http: Option<HttpSpec>,
}

/// `[http]`: the HTTP front door (INTERFACE section 10).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    pub listen: SocketAddr,
    /// Certificate chain and key (PEM): HTTPS, HTTP/1.1 and HTTP/2.
    pub tls: Option<TlsFiles>,
    /// Client certificates must be signed by one of these (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Principals and the SHA-256 of their bearer tokens; re-read on SIGHUP.
    pub tokens: Option<PathBuf>,
    /// Largest request body (413 beyond).
    pub max_body: u64,
    /// A connection that has not sent a whole request head this long after it connected,
    /// or after its last response (an idle keep-alive connection), is closed.
    pub header_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSpec {
    pub control_socket: PathBuf,
    pub call_socket: PathBuf,
    /// File mode bits, e.g. 0o600.
    pub control_mode: u32,
    pub call_mode: u32,
    /// Group owning both sockets, resolved to its gid at validation time.
    pub socket_group: Option<GroupRef>,
    pub monitor_interval: Duration,
    pub shutdown_timeout: Duration,
    /// After SIGTERM: not ready at once, still taking calls this long, then the graceful stop.
    pub shutdown_delay: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// Every pool's memory together, on each pool's `memory_metric`.
    pub memory_budget: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub name: String,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    pub name: String,
    pub program: Program,
    pub protocol: Protocol,
    pub preload: Vec<String>,
    /// Called once in the preload template, after the preload and before any fork.
    pub warmup: Option<Warmup>,
    pub size: u32,
    /// Calls a worker holds at once (`concurrency`; 1 for supervise-only pools).
    pub concurrency: u32,
    /// A worker whose GIL is on after its import is a failed start (free-threaded builds).
    pub require_free_threading: bool,
    /// Absolute working directory of the workers.
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub user: Option<UserRef>,
    pub group: Option<GroupRef>,
    pub startup_timeout: Duration,
    pub request_timeout: Duration,
    pub drain_timeout: Duration,
    pub kill_timeout: Duration,
    /// Chunks of one stream held between its worker and its caller (`stream_window`).
    pub stream_window: u32,
    /// A stream that sends no chunk for this long fails with `timeout`.
    pub stream_idle_timeout: Option<Duration>,
    pub recycle: RecyclePolicy,
    pub health: HealthPolicy,
    pub queue: QueuePolicy,
    pub restart: RestartPolicy,
    pub rlimits: Rlimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub name: String,
    pub uid: u32,
    /// The user's primary group, used when `group` is not given.
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Program {
    /// `app = "module"`: `python -m pit serve module`.
    App { module: String, python: String },
    /// `command = [argv...]`, no shell.
    Command(Vec<String>),
}

/// `warmup = "module:function"`: what a first call would load lazily, loaded once in the
/// template so every forked worker shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warmup {
    /// A dotted module name, imported in the template.
    pub module: String,
    /// An attribute path in the module (`run`, `Model.warm`), called without arguments.
    pub function: String,
}

impl std::fmt::Display for Warmup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.module, self.function)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Calls are routed to the workers over fds 3/4.
    Pit,
    /// Supervise only.
    None,
}

/// What `max_rss`/`hard_rss` compare; status reports it per pool under the spec's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryMetric {
    /// Also what a pool reports when its daemon did not say (status from before the field).
    #[default]
    Rss,
    Pss,
    Uss,
}

impl MemoryMetric {
    /// The spec's and the wire's name ("rss").
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryMetric::Rss => "rss",
            MemoryMetric::Pss => "pss",
            MemoryMetric::Uss => "uss",
        }
    }

    /// The name as a column head ("RSS").
    pub fn label(self) -> &'static str {
        match self {
            MemoryMetric::Rss => "RSS",
            MemoryMetric::Pss => "PSS",
            MemoryMetric::Uss => "USS",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecyclePolicy {
    pub max_rss: Option<u64>,
    /// Consecutive samples over `max_rss` before it recycles (a shorter spike passes).
    pub max_rss_samples: u32,
    /// Recycle gracefully before the memory growth would cross `hard_rss` (else `max_rss`).
    pub predict_rss: bool,
    /// The pool's workers, template and spare together, on `memory_metric`.
    pub memory_budget: Option<u64>,
    pub hard_rss: Option<u64>,
    pub max_requests: Option<u64>,
    pub max_requests_jitter: u64,
    pub max_age: Option<Duration>,
    pub max_age_jitter: Duration,
    pub max_errors: Option<u32>,
    pub memory_metric: MemoryMetric,
    pub max_surge: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueuePolicy {
    pub max: usize,
    pub timeout: Duration,
    pub affinity_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
    /// How long a worker must stay up after it got ready for its start to count as good:
    /// its death is then replaced at once; dying sooner counts as a failed start.
    pub min_uptime: Duration,
    pub crash_loop_failures: u32,
    pub crash_loop_window: Duration,
}

/// Resource limits applied in the child before exec, soft = hard. `None` = inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rlimits {
    pub nofile: Option<u64>,
    pub nproc: Option<u64>,
    /// Seconds of CPU time.
    pub cpu: Option<u64>,
    pub core: Option<u64>,
    /// Bytes of virtual address space.
    pub address_space: Option<u64>,
}
