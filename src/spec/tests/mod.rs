//! Behaviour of `parse` as a whole: defaults, every validation rule, and the exact text of
//! the errors a user sees. Runs with a fixed `Host`, so results do not depend on the
//! machine.

mod accepted;
mod fixtures;
mod refused;

use std::path::{Path, PathBuf};

use super::host::{HardLimits, Host};
use super::{Spec, parse_with};

pub fn test_host(euid: u32) -> Host {
    Host {
        euid,
        socket_dir: PathBuf::from("/run/pitd"),
        hard_limits: HardLimits {
            nofile: Some(4096),
            nproc: Some(1000),
            cpu: Some(3600),
            core: None,
            address_space: None,
        },
    }
}

/// A spec path inside the crate, so `cwd` can name real directories (`src`).
fn spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml")
}

fn parse_as(euid: u32, text: &str) -> Result<Spec, String> {
    parse_with(text, &spec_path(), &test_host(euid))
        .map_err(|e| e.to_string().replace(&format!("{}/", env!("CARGO_MANIFEST_DIR")), ""))
}

fn ok(text: &str) -> Spec {
    parse_as(0, text).unwrap_or_else(|e| panic!("{e}\n--- in ---\n{text}"))
}

fn err(text: &str) -> String {
    match parse_as(0, text) {
        Ok(spec) => panic!("expected an error, got {spec:?}\n--- in ---\n{text}"),
        Err(e) => e,
    }
}

/// A one-pool spec: `[pools.p]` with `command = ["w"]` and then `extra` (from line 3).
fn pool(extra: &str) -> String {
    format!("[pools.p]\ncommand = [\"w\"]\n{extra}\n")
}

/// A valid value for every key of the spec, pool keys relative to the pool and daemon keys
/// as `daemon.*`: lets tests build a spec using any one key.
pub const SAMPLES: &[(&str, &str)] = &[
    ("daemon.control_socket", "\"c.sock\""),
    ("daemon.call_socket", "\"call.sock\""),
    ("daemon.control_mode", "\"0600\""),
    ("daemon.call_mode", "\"0660\""),
    ("daemon.socket_group", "\"root\""),
    ("daemon.monitor_interval", "\"2s\""),
    ("daemon.shutdown_timeout", "\"10s\""),
    ("daemon.shutdown_delay", "\"5s\""),
    ("daemon.metrics_listen", "\"127.0.0.1:9464\""),
    ("daemon.log_format", "\"text\""),
    ("daemon.memory_budget", "\"16GiB\""),
    ("app", "\"m\""),
    ("command", "[\"w\"]"),
    ("python", "\"python3\""),
    ("protocol", "\"pit\""),
    ("preload", "[\"json\"]"),
    ("warmup", "\"json:loads\""),
    ("size", "2"),
    ("concurrency", "4"),
    ("cwd", "\".\""),
    ("env", "{ A = \"1\" }"),
    ("user", "\"root\""),
    ("group", "\"root\""),
    ("startup_timeout", "\"10s\""),
    ("request_timeout", "\"10s\""),
    ("drain_timeout", "\"10s\""),
    ("kill_timeout", "\"1s\""),
    ("stream_window", "16"),
    ("stream_idle_timeout", "\"30s\""),
    ("max_rss", "\"1GiB\""),
    ("max_rss_samples", "3"),
    ("require_free_threading", "false"),
    ("predict_rss", "false"),
    ("memory_budget", "\"4GiB\""),
    ("hard_rss", "\"2GiB\""),
    ("max_requests", "100"),
    ("max_requests_jitter", "10"),
    ("max_age", "\"1h\""),
    ("max_age_jitter", "\"5m\""),
    ("max_errors", "5"),
    ("memory_metric", "\"pss\""),
    ("max_surge", "2"),
    ("health_interval", "\"10s\""),
    ("health_timeout", "\"1s\""),
    ("health_failures", "2"),
    ("queue_max", "10"),
    ("queue_timeout", "\"10s\""),
    ("affinity_ttl", "\"1m\""),
    ("restart.initial", "\"1s\""),
    ("restart.max", "\"10s\""),
    ("restart.reset_after", "\"1m\""),
    ("restart.min_uptime", "\"2s\""),
    ("restart.crash_loop_failures", "3"),
    ("restart.crash_loop_window", "\"1m\""),
    ("rlimits.nofile", "1024"),
    ("rlimits.nproc", "100"),
    ("rlimits.cpu", "\"10s\""),
    ("rlimits.core", "0"),
    ("rlimits.as", "\"8GiB\""),
];

/// A spec whose line 2 sets `key` to its sample (and only what `key` needs besides).
pub fn spec_with_sample(key: &str) -> String {
    let value = SAMPLES.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let value = value.unwrap_or_else(|| panic!("add a sample value for `{key}` to SAMPLES"));
    if let Some(daemon_key) = key.strip_prefix("daemon.") {
        return format!("[daemon]\n{daemon_key} = {value}\n");
    }
    let program = match key {
        "app" | "command" => "",
        "python" | "preload" => "app = \"m\"\n",
        "warmup" => "app = \"m\"\npreload = [\"json\"]\n",
        _ => "command = [\"w\"]\n",
    };
    format!("[pools.p]\n{key} = {value}\n{program}")
}
