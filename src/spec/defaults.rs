//! Every default of the spec, in one place: validation takes them from here and the man
//! page lists them from here, so the two cannot disagree.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::types::{LogFormat, MemoryMetric, Protocol};

/// `daemon.control_socket`: this file name in the socket directory.
pub const CONTROL_SOCKET_NAME: &str = "control.sock";
/// `daemon.call_socket`: this file name in the socket directory.
pub const CALL_SOCKET_NAME: &str = "call.sock";
/// `daemon.control_mode`: only pitd's own user may administer it.
pub const CONTROL_MODE: u32 = 0o600;
/// `daemon.call_mode`: the owner's group may make calls.
pub const CALL_MODE: u32 = 0o660;
/// `daemon.monitor_interval`.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
/// `daemon.shutdown_timeout`.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// `daemon.log_format`.
pub const LOG_FORMAT: LogFormat = LogFormat::Auto;

/// `python`: the interpreter that runs an `app`.
pub const PYTHON: &str = "python3";
/// `protocol`.
pub const PROTOCOL: Protocol = Protocol::Pit;
/// `size`.
pub const SIZE: u32 = 1;
/// `concurrency`: calls in flight per worker.
pub const CONCURRENCY: u32 = 1;
/// `startup_timeout`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// `request_timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// `drain_timeout`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// `stream_window`: chunks of one stream between its worker and its caller.
pub const STREAM_WINDOW: u32 = 64;
/// `[http] max_body`.
pub const HTTP_MAX_BODY: u64 = 16 * 1024 * 1024;
/// `[http] header_timeout`: a slow request head, or an idle keep-alive connection, is
/// closed after this.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// `[http] max_connections`.
pub const HTTP_MAX_CONNECTIONS: u32 = 4096;
/// `max_rss_samples`: one sample over `max_rss` recycles.
pub const MAX_RSS_SAMPLES: u32 = 1;
/// `kill_timeout`.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// `max_requests_jitter`.
pub const MAX_REQUESTS_JITTER: u64 = 0;
/// `max_age_jitter`.
pub const MAX_AGE_JITTER: Duration = Duration::ZERO;
/// `memory_metric`.
pub const MEMORY_METRIC: MemoryMetric = MemoryMetric::Rss;
/// `max_surge`.
pub const MAX_SURGE: u32 = 1;
/// `health_interval`.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// `health_timeout`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// `health_failures`.
pub const HEALTH_FAILURES: u32 = 3;
/// `queue_max`.
pub const QUEUE_MAX: usize = 1024;
/// `queue_timeout`.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// `affinity_ttl`.
pub const AFFINITY_TTL: Duration = Duration::from_secs(5 * 60);

/// `restart.initial`.
pub const RESTART_INITIAL: Duration = Duration::from_millis(100);
/// `restart.max`.
pub const RESTART_MAX: Duration = Duration::from_secs(30);
/// `restart.reset_after`.
pub const RESTART_RESET_AFTER: Duration = Duration::from_secs(60);
/// `restart.min_uptime` (supervisord's `startsecs`).
pub const RESTART_MIN_UPTIME: Duration = Duration::from_secs(1);
/// `restart.crash_loop_failures`.
pub const CRASH_LOOP_FAILURES: u32 = 5;
/// `restart.crash_loop_window`.
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);

/// The socket directory for a process with these ids: `/run/pitd` when running as root
/// (euid 0), else `$XDG_RUNTIME_DIR/pitd`, else `/tmp/pitd-$UID`. Pure, so it can be
/// tested; the real values come from `spec::default_socket_dir`.
pub fn socket_dir(euid: u32, uid: u32, xdg_runtime_dir: Option<OsString>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/run/pitd");
    }
    match xdg_runtime_dir.filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(&dir).join("pitd"),
        None => PathBuf::from(format!("/tmp/pitd-{uid}")),
    }
}

/// `daemon.control_socket` when not given.
pub fn control_socket(socket_dir: &Path) -> PathBuf {
    socket_dir.join(CONTROL_SOCKET_NAME)
}

/// `daemon.call_socket` when not given.
pub fn call_socket(socket_dir: &Path) -> PathBuf {
    socket_dir.join(CALL_SOCKET_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dir_is_run_for_root_then_xdg_then_tmp() {
        let xdg = || Some("/run/user/1000".into());
        assert_eq!(socket_dir(0, 1000, xdg()), Path::new("/run/pitd"));
        assert_eq!(socket_dir(1000, 1000, xdg()), Path::new("/run/user/1000/pitd"));
        assert_eq!(socket_dir(1000, 1000, None), Path::new("/tmp/pitd-1000"));
        assert_eq!(socket_dir(1000, 1001, Some("".into())), Path::new("/tmp/pitd-1001"));
        assert_eq!(control_socket(Path::new("/d")), Path::new("/d/control.sock"));
        assert_eq!(call_socket(Path::new("/d")), Path::new("/d/call.sock"));
    }
}
