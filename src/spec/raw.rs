//! The spec exactly as written: serde types mirroring the TOML, before any default or rule
//! is applied. Every key is an `Option<Spanned<_>>`, so validation knows whether a key was
//! given and where, and every table denies unknown keys. Nothing outside `spec` sees these.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::units::{Count, Dur, Mode, Size};

/// Keys that are parsed only to be refused with a specific message (see `RawRlimits::rss`);
/// error messages do not offer them as valid choices.
pub const REFUSED_KEYS: &[&str] = &["rss"];

/// A key that may be absent, with the span of its value when present.
pub type Opt<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub daemon: Option<RawDaemon>,
    /// Keyed by the spanned pool name; serde hands the map over sorted by name, so the file
    /// order is recovered from the key spans.
    pub pools: Option<BTreeMap<Spanned<String>, RawPool>>,
    /// The HTTP front door (INTERFACE section 10); off when absent.
    pub http: Option<Spanned<RawHttp>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Opt<String>,
    pub tls_cert: Opt<String>,
    pub tls_key: Opt<String>,
    pub client_ca: Opt<String>,
    pub tokens: Opt<String>,
    pub max_body: Opt<Size>,
    pub header_timeout: Opt<Dur>,
    pub max_connections: Opt<Count>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub control_socket: Opt<String>,
    pub call_socket: Opt<String>,
    pub control_mode: Opt<Mode>,
    pub call_mode: Opt<Mode>,
    pub socket_group: Opt<String>,
    pub monitor_interval: Opt<Dur>,
    pub shutdown_timeout: Opt<Dur>,
    pub shutdown_delay: Opt<Dur>,
    pub metrics_listen: Opt<String>,
    pub memory_budget: Opt<Size>,
    pub log_format: Opt<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub app: Opt<String>,
    pub command: Opt<Vec<String>>,
    pub python: Opt<String>,
    pub protocol: Opt<String>,
    pub preload: Opt<Vec<String>>,
    pub warmup: Opt<String>,
    pub size: Opt<Count>,
    pub concurrency: Opt<Count>,
    pub require_free_threading: Opt<bool>,
    pub cwd: Opt<String>,
    pub env: Opt<BTreeMap<String, String>>,
    pub user: Opt<String>,
    pub group: Opt<String>,

    pub startup_timeout: Opt<Dur>,
    pub request_timeout: Opt<Dur>,
    pub drain_timeout: Opt<Dur>,
    pub kill_timeout: Opt<Dur>,
    pub stream_window: Opt<Count>,
    pub stream_idle_timeout: Opt<Dur>,

    pub max_rss: Opt<Size>,
    pub max_rss_samples: Opt<Count>,
    pub predict_rss: Opt<bool>,
    pub memory_budget: Opt<Size>,
    pub hard_rss: Opt<Size>,
    pub max_requests: Opt<Count>,
    pub max_requests_jitter: Opt<Count>,
    pub max_age: Opt<Dur>,
    pub max_age_jitter: Opt<Dur>,
    pub max_errors: Opt<Count>,
    pub memory_metric: Opt<String>,
    pub max_surge: Opt<Count>,

    pub health_interval: Opt<Dur>,
    pub health_timeout: Opt<Dur>,
    pub health_failures: Opt<Count>,

    pub queue_max: Opt<Count>,
    pub queue_timeout: Opt<Dur>,
    pub affinity_ttl: Opt<Dur>,

    pub restart: Option<RawRestart>,
    pub rlimits: Option<RawRlimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    pub initial: Opt<Dur>,
    pub max: Opt<Dur>,
    pub reset_after: Opt<Dur>,
    pub min_uptime: Opt<Dur>,
    pub crash_loop_failures: Opt<Count>,
    pub crash_loop_window: Opt<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRlimits {
    pub nofile: Opt<Count>,
    pub nproc: Opt<Count>,
    pub cpu: Opt<Dur>,
    /// Core file size; a size string or bytes.
    pub core: Opt<Size>,
    /// `as` is a Rust keyword, hence the rename.
    #[serde(rename = "as")]
    pub address_space: Opt<Size>,
    /// Accepted by the parser only so that validation can refuse it with a useful message
    /// instead of "unknown key".
    pub rss: Opt<toml::Value>,
}
