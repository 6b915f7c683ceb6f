//! Why a worker left: the recycle reasons and the two unplanned-exit reasons of the
//! interface, and the classification of a reaped worker's exit status.
//!
//! [`Reason`] is wire-stable: status, events and metrics carry its `snake_case` names, and
//! `Reason::VARIANTS` is the list other components compare against.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a worker was recycled or why it exited on its own.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Memory above `max_rss`: graceful recycle.
    MaxRss,
    /// Memory above `hard_rss`: killed at once.
    HardRss,
    /// Served its drawn share of `max_requests`.
    MaxRequests,
    /// Older than its drawn `max_age`.
    MaxAge,
    /// `max_errors` consecutive failed calls.
    MaxErrors,
    /// `health_failures` consecutive failed health checks.
    Health,
    /// A call outlived `request_timeout`; the worker was killed.
    Timeout,
    /// An operator asked for it (`pitctl recycle`).
    Manual,
    /// The pool's spec changed on reload.
    Reload,
    /// The worker broke the fd 3/4 protocol (garbage or an oversized frame).
    ProtocolError,
    /// Unplanned exit: the worker died without being asked to.
    Crash,
    /// Unplanned exit caused by the `cpu` rlimit.
    CpuLimit,
    /// Its memory growth would take it past `hard_rss` (else `max_rss`) before a
    /// replacement could be ready and its calls drained (`predict_rss`).
    PredictedRss,
    /// Its pool, or the daemon, was over its `memory_budget`: the largest worker goes.
    MemoryBudget,
}

impl Reason {
    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// True for the exits pitd did not ask for. These count as restart failures; the
    /// others are recycles, which never feed the backoff or the crash-loop breaker.
    pub const fn is_unplanned(self) -> bool {
        matches!(self, Reason::Crash | Reason::CpuLimit)
    }
}

/// How a reaped process ended, as plain data (no `nix`/`libc` types, so this module stays
/// free of the OS layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatusInfo {
    /// Returned from `main` or called `exit` with this code.
    Exited(i32),
    /// Terminated by this signal number.
    Signaled(i32),
}

impl fmt::Display for ExitStatusInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatusInfo::Exited(code) => write!(f, "exit code {code}"),
            ExitStatusInfo::Signaled(sig) => match signal_name(sig) {
                Some(name) => write!(f, "killed by signal {sig} ({name})"),
                None => write!(f, "killed by signal {sig}"),
            },
        }
    }
}

/// SIGKILL's number, the same on every Linux architecture.
const SIGKILL: i32 = 9;
/// SIGXCPU's number on Linux x86_64 and aarch64 (the generic table).
const SIGXCPU: i32 = 24;

/// The name of a common signal by its Linux x86_64/aarch64 number; `None` for others
/// (real-time signals, rare ones), which are then shown by number only.
pub const fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        SIGKILL => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        SIGXCPU => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return None,
    })
}

/// The reason for an unplanned exit, from the exit status alone: SIGXCPU is `cpu_limit`,
/// everything else `crash`.
///
/// With the `cpu` rlimit applied soft = hard, Linux kills with SIGKILL, not SIGXCPU (the
/// hard-limit check runs before the soft one). Callers that know the worker's CPU time
/// should use [`exit_reason_with_cpu`], which recognizes that case.
pub fn exit_reason(status: &ExitStatusInfo) -> Reason {
    match status {
        ExitStatusInfo::Signaled(SIGXCPU) => Reason::CpuLimit,
        _ => Reason::Crash,
    }
}

/// How far below the limit a SIGKILLed worker's CPU time may read and still count as an
/// RLIMIT_CPU kill. The kernel compares tick-sampled CPU time against the limit, while the
/// figure a reaper reads (rusage, or `/proc/PID/stat` of the zombie) is accounted
/// differently, so the two can disagree by a few ticks.
pub const CPU_LIMIT_TOLERANCE: Duration = Duration::from_millis(100);

/// The reason for an unplanned exit, using the worker's consumed CPU time (user + system)
/// and its `cpu` rlimit, if any.
///
/// SIGXCPU is always `cpu_limit`. A SIGKILL is `cpu_limit` when the CPU time reached the
/// limit (within [`CPU_LIMIT_TOLERANCE`]): that is how Linux enforces a limit whose soft and
/// hard values are equal. Any other exit is `crash`.
pub fn exit_reason_with_cpu(status: &ExitStatusInfo, cpu_used: Duration, cpu_limit: Option<Duration>) -> Reason {
    match (status, cpu_limit) {
        (ExitStatusInfo::Signaled(SIGKILL), Some(limit)) if cpu_used.saturating_add(CPU_LIMIT_TOLERANCE) >= limit => {
            Reason::CpuLimit
        }
        _ => exit_reason(status),
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    fn reason_index(r: Reason) -> usize {
        match r {
            Reason::MaxRss => 0,
            Reason::HardRss => 1,
            Reason::MaxRequests => 2,
            Reason::MaxAge => 3,
            Reason::MaxErrors => 4,
            Reason::Health => 5,
            Reason::Timeout => 6,
            Reason::Manual => 7,
            Reason::Reload => 8,
            Reason::ProtocolError => 9,
            Reason::Crash => 10,
            Reason::CpuLimit => 11,
            Reason::PredictedRss => 12,
            Reason::MemoryBudget => 13,
        }
    }

    #[test]
    fn all_is_complete_and_in_order() {
        for (i, r) in Reason::VARIANTS.iter().copied().enumerate() {
            assert_eq!(reason_index(r), i, "{r}");
        }
    }

    #[test]
    fn wire_names_are_the_interface_strings() {
        let names: Vec<&str> = Reason::VARIANTS.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "max_rss",
                "hard_rss",
                "max_requests",
                "max_age",
                "max_errors",
                "health",
                "timeout",
                "manual",
                "reload",
                "protocol_error",
                "crash",
                "cpu_limit",
                "predicted_rss",
                "memory_budget",
            ]
        );
    }

    #[test]
    fn serde_form_equals_as_str_and_round_trips() {
        for &r in Reason::VARIANTS {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), r);
            assert_eq!(r.to_string(), r.as_str());
        }
    }

    #[test]
    fn only_crash_and_cpu_limit_are_unplanned() {
        let unplanned: Vec<Reason> = Reason::VARIANTS.iter().copied().filter(|r| r.is_unplanned()).collect();
        assert_eq!(unplanned, [Reason::Crash, Reason::CpuLimit]);
    }

    #[test]
    fn exit_status_display() {
        let cases = [
            (ExitStatusInfo::Exited(0), "exit code 0"),
            (ExitStatusInfo::Exited(3), "exit code 3"),
            (ExitStatusInfo::Exited(-1), "exit code -1"),
            (ExitStatusInfo::Signaled(9), "killed by signal 9 (SIGKILL)"),
            (ExitStatusInfo::Signaled(11), "killed by signal 11 (SIGSEGV)"),
            (ExitStatusInfo::Signaled(24), "killed by signal 24 (SIGXCPU)"),
            (ExitStatusInfo::Signaled(10), "killed by signal 10"),
            (ExitStatusInfo::Signaled(34), "killed by signal 34"),
        ];
        for (status, text) in cases {
            assert_eq!(status.to_string(), text, "{status:?}");
        }
    }

    #[test]
    fn signal_names_by_number() {
        let cases = [
            (1, "SIGHUP"),
            (2, "SIGINT"),
            (3, "SIGQUIT"),
            (4, "SIGILL"),
            (6, "SIGABRT"),
            (7, "SIGBUS"),
            (8, "SIGFPE"),
            (9, "SIGKILL"),
            (11, "SIGSEGV"),
            (13, "SIGPIPE"),
            (14, "SIGALRM"),
            (15, "SIGTERM"),
            (24, "SIGXCPU"),
            (25, "SIGXFSZ"),
        ];
        for (sig, name) in cases {
            assert_eq!(signal_name(sig), Some(name), "signal {sig}");
        }
        for sig in [0, 5, 10, 12, 16, 23, 26, 64, -1] {
            assert_eq!(signal_name(sig), None, "signal {sig}");
        }
    }

    #[test]
    fn exit_reason_from_status_alone() {
        let cases = [
            (ExitStatusInfo::Exited(0), Reason::Crash),
            (ExitStatusInfo::Exited(1), Reason::Crash),
            (ExitStatusInfo::Signaled(SIGXCPU), Reason::CpuLimit),
            (ExitStatusInfo::Signaled(SIGKILL), Reason::Crash),
            (ExitStatusInfo::Signaled(11), Reason::Crash),
            (ExitStatusInfo::Signaled(25), Reason::Crash),
        ];
        for (status, reason) in cases {
            assert_eq!(exit_reason(&status), reason, "{status}");
        }
    }

    #[test]
    fn exit_reason_with_cpu_recognizes_a_sigkill_at_the_limit() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let kill = ExitStatusInfo::Signaled(SIGKILL);
        let cases = [
            // (status, cpu used, cpu limit, expected)
            (kill, ms(1_021), Some(s(1)), Reason::CpuLimit),
            (kill, s(1), Some(s(1)), Reason::CpuLimit),
            (kill, ms(950), Some(s(1)), Reason::CpuLimit),
            (kill, ms(899), Some(s(1)), Reason::Crash),
            (kill, s(3600), None, Reason::Crash),
            (kill, ms(10), Some(s(3600)), Reason::Crash),
            (ExitStatusInfo::Signaled(SIGXCPU), ms(10), None, Reason::CpuLimit),
            (ExitStatusInfo::Signaled(11), s(2), Some(s(1)), Reason::Crash),
            (ExitStatusInfo::Exited(1), s(2), Some(s(1)), Reason::Crash),
        ];
        for (status, used, limit, reason) in cases {
            assert_eq!(
                exit_reason_with_cpu(&status, used, limit),
                reason,
                "{status}, used {used:?}, limit {limit:?}"
            );
        }
    }
}
