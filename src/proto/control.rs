//! The control socket's typed requests and replies, shared by pitd and pitctl. Each is one
//! JSON object in one frame (see `frame`); a reply stream (`logs -f`) is a sequence of
//! frames ending when the connection closes.

use serde::{Deserialize, Serialize};

use super::event::Event;
use super::status::StatusReport;
use crate::ids::WorkerId;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status {
        #[serde(default)]
        pool: Option<String>,
    },
    Logs {
        target: String,
        lines: usize,
        #[serde(default)]
        follow: bool,
    },
    Shutdown,
    /// Graceful recycle of `worker-N` or of every worker of a pool; `now` kills at once.
    Recycle {
        target: String,
        #[serde(default)]
        now: bool,
    },
    /// Take `worker-N` or a pool out of rotation; with `wait`, reply when it is done.
    Drain {
        target: String,
        #[serde(default)]
        wait: bool,
    },
    Resume {
        pool: String,
    },
    Scale {
        pool: String,
        size: u32,
    },
    /// Re-read the spec (same as SIGHUP).
    Reload,
    /// The Prometheus text exposition.
    Metrics,
    /// The recent events; with `follow`, new ones as they happen.
    Events {
        #[serde(default)]
        follow: bool,
    },
    /// Answered by pitd itself: `Reply::Probe`. `live` waits up to `timeout_ms` for every
    /// pool actor.
    Probe {
        kind: ProbeKind,
        timeout_ms: u64,
    },
}

/// What a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// Every pool has reached its size once.
    Startup,
    /// Not shutting down; every pool that serves calls has a ready worker and is not
    /// failing, draining or drained.
    Ready,
    /// The daemon and every pool actor answer.
    Live,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Status(StatusReport),
    Logs {
        lines: Vec<LogLine>,
    },
    /// One line of a followed log stream.
    LogLine(LogLine),
    Events {
        events: Vec<Event>,
    },
    /// One event of a followed stream.
    Event(Event),
    Metrics {
        text: String,
    },
    Done {
        message: String,
    },
    /// A probe's answer: yes, or no with a one-line reason.
    Probe {
        ok: bool,
        #[serde(default)]
        reason: Option<String>,
    },
    Error {
        kind: ControlErrorKind,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ControlErrorKind {
    BadRequest,
    NoSuchPool,
    NoSuchWorker,
    PermissionDenied,
    ShuttingDown,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One captured line of a worker's output, or of a preloaded pool's template.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    /// Global sequence number, so lines of several workers merge in capture order.
    pub seq: u64,
    /// RFC 3339, UTC.
    pub ts: String,
    pub pool: String,
    /// The worker that wrote it; absent for a line of the pool's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    /// `"template"` for a line of the pool's preload template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    pub stream: Stream,
    pub line: String,
}

impl LogLine {
    /// Who wrote it: `worker-N`, or `template`.
    pub fn source(&self) -> String {
        match (&self.worker, &self.process) {
            (Some(w), _) => w.to_string(),
            (None, Some(p)) => p.clone(),
            (None, None) => "-".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_json() {
        let reqs = [
            Request::Status { pool: None },
            Request::Status {
                pool: Some("echo".into()),
            },
            Request::Logs {
                target: "worker-3".into(),
                lines: 20,
                follow: true,
            },
            Request::Shutdown,
            Request::Recycle {
                target: "echo".into(),
                now: true,
            },
            Request::Drain {
                target: "worker-2".into(),
                wait: false,
            },
            Request::Resume { pool: "echo".into() },
            Request::Scale {
                pool: "echo".into(),
                size: 3,
            },
            Request::Events { follow: true },
        ];
        for r in reqs {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r, "{json}");
        }
    }

    #[test]
    fn unknown_command_is_a_decode_error() {
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"explode"}"#).is_err());
    }
}
