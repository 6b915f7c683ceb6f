//! pitd <-> preload template messages, on the template's fd 3 (a `SOCK_SEQPACKET` socket):
//! one JSON object per datagram. A `fork` request carries the new worker's four fds as
//! `SCM_RIGHTS`: calls in, replies out, stdout, stderr (see `python/pit/template.py`).

use serde::{Deserialize, Serialize};

/// The largest message either side sends; anything longer is a protocol error.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// How many fds a fork request carries, in this order: the worker's fd 3 (calls in), fd 4
/// (replies out), stdout, stderr.
pub const FDS_PER_FORK: usize = 4;

/// From pitd to the template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToTemplate {
    Fork { worker_id: String },
}

/// From the template to pitd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromTemplate {
    /// The preload modules are imported; fork requests may come.
    Ready {
        pid: u32,
        #[serde(default)]
        preloaded: Vec<String>,
        #[serde(default)]
        import_ms: f64,
        /// Threads running after the preload (other than the main one): forked workers
        /// get none of them, and a lock one of them held stays locked in every worker.
        #[serde(default)]
        threads: Vec<String>,
        /// A free-threaded build whose GIL is on again after the preload (an extension
        /// module that needs it): workers run with the GIL.
        #[serde(default)]
        gil_reenabled: bool,
    },
    /// A spare worker was forked ahead of need (it waits to be handed an id); it replaces
    /// the previous spare, which is now a worker or gone.
    Spare {
        pid: u32,
    },
    /// The worker runs as `pid`, re-parented to pitd (or already dead and reaped).
    Forked {
        worker_id: String,
        pid: u32,
    },
    ForkFailed {
        worker_id: String,
        error: String,
    },
}

impl FromTemplate {
    pub fn decode(bytes: &[u8]) -> Result<FromTemplate, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
            format!("unreadable message from the template ({e}): {shown:?}")
        })
    }
}

impl ToTemplate {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("template messages always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_the_python_template_writes_them() {
        let ready = br#"{"type": "ready", "pid": 42, "preloaded": ["json"], "import_ms": 1.5, "threads": ["t"]}"#;
        assert_eq!(
            FromTemplate::decode(ready).unwrap(),
            FromTemplate::Ready {
                pid: 42,
                preloaded: vec!["json".into()],
                import_ms: 1.5,
                threads: vec!["t".into()],
                gil_reenabled: false,
            }
        );
        let spare = br#"{"type": "spare", "pid": 43}"#;
        assert_eq!(FromTemplate::decode(spare).unwrap(), FromTemplate::Spare { pid: 43 });
        let forked = br#"{"type": "forked", "worker_id": "worker-3", "pid": 7}"#;
        assert_eq!(
            FromTemplate::decode(forked).unwrap(),
            FromTemplate::Forked {
                worker_id: "worker-3".into(),
                pid: 7
            }
        );
        let failed = br#"{"type": "fork_failed", "worker_id": "worker-3", "error": "no"}"#;
        assert!(matches!(
            FromTemplate::decode(failed).unwrap(),
            FromTemplate::ForkFailed { .. }
        ));
        let fork = ToTemplate::Fork {
            worker_id: "worker-9".into(),
        };
        assert_eq!(fork.encode(), br#"{"type":"fork","worker_id":"worker-9"}"#);
    }

    #[test]
    fn garbage_is_an_error_naming_what_came() {
        let err = FromTemplate::decode(b"\x00\x01hello").unwrap_err();
        assert!(err.contains("unreadable message from the template"), "{err}");
        assert!(FromTemplate::decode(br#"{"type": "launch"}"#).is_err());
    }
}
