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
    /// The preload modules are imported (and the warm-up done); fork requests may come.
    Ready {
        pid: u32,
        #[serde(default)]
        preloaded: Vec<String>,
        #[serde(default)]
        import_ms: f64,
        /// The warm-up it ran (`module:function`), and how long it took.
        #[serde(default)]
        warmup: Option<String>,
        #[serde(default)]
        warmup_ms: Option<f64>,
        /// Threads running after the preload (other than the main one): forked workers
        /// get none of them, and a lock one of them held stays locked in every worker.
        #[serde(default)]
        threads: Vec<String>,
        /// Sockets open after the preload and warm-up (its channel to pitd aside): every
        /// forked worker would share each one, their traffic crossing on it.
        #[serde(default)]
        sockets: Vec<OpenSocket>,
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

/// A socket open in the template, as it describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSocket {
    pub fd: i32,
    /// `tcp`, `udp`, `unix`, or the address family's name.
    pub kind: String,
    /// Its own address and its peer's (`127.0.0.1:8080`, `[::1]:53`, a path); none when not
    /// bound, not connected, or unnamed.
    #[serde(default)]
    pub local: Option<String>,
    #[serde(default)]
    pub peer: Option<String>,
    #[serde(default)]
    pub listening: bool,
}

impl std::fmt::Display for OpenSocket {
    /// e.g. `tcp to 127.0.0.1:8080 from 127.0.0.1:41234 (fd 7)`, `tcp listening on
    /// 0.0.0.0:8000 (fd 5)`, `unix to an unnamed peer (fd 9)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        match (&self.peer, &self.local) {
            (_, Some(local)) if self.listening => write!(f, " listening on {local}")?,
            (Some(peer), Some(local)) => write!(f, " to {peer} from {local}")?,
            (Some(peer), None) => write!(f, " to {peer}")?,
            (None, Some(local)) => write!(f, " on {local}")?,
            (None, None) if self.kind == "unix" => f.write_str(" to an unnamed peer")?,
            (None, None) => {}
        }
        write!(f, " (fd {})", self.fd)
    }
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
                warmup: None,
                warmup_ms: None,
                threads: vec!["t".into()],
                sockets: vec![],
                gil_reenabled: false,
            }
        );
        let warmed = br#"{"type": "ready", "pid": 42, "preloaded": ["m"], "import_ms": 1.5, "warmup": "m:run",
            "warmup_ms": 20.5, "threads": [], "sockets": [{"fd": 7, "kind": "tcp", "local": "127.0.0.1:41234",
            "peer": "127.0.0.1:8080", "listening": false}], "gil_reenabled": false}"#;
        let FromTemplate::Ready {
            warmup,
            warmup_ms,
            sockets,
            ..
        } = FromTemplate::decode(warmed).unwrap()
        else {
            panic!("a ready message")
        };
        assert_eq!((warmup.as_deref(), warmup_ms), (Some("m:run"), Some(20.5)));
        assert_eq!(
            sockets,
            [OpenSocket {
                fd: 7,
                kind: "tcp".into(),
                local: Some("127.0.0.1:41234".into()),
                peer: Some("127.0.0.1:8080".into()),
                listening: false
            }]
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
    fn a_socket_is_named_by_its_kind_and_addresses() {
        let socket = |kind: &str, local: Option<&str>, peer: Option<&str>, listening: bool| {
            OpenSocket {
                fd: 7,
                kind: kind.into(),
                local: local.map(String::from),
                peer: peer.map(String::from),
                listening,
            }
            .to_string()
        };
        let cases = [
            (
                socket("tcp", Some("127.0.0.1:41234"), Some("127.0.0.1:8080"), false),
                "tcp to 127.0.0.1:8080 from 127.0.0.1:41234 (fd 7)",
            ),
            (
                socket("tcp", Some("0.0.0.0:8000"), None, true),
                "tcp listening on 0.0.0.0:8000 (fd 7)",
            ),
            (
                socket("udp", Some("0.0.0.0:5353"), None, false),
                "udp on 0.0.0.0:5353 (fd 7)",
            ),
            (
                socket("unix", None, Some("/run/docker.sock"), false),
                "unix to /run/docker.sock (fd 7)",
            ),
            (socket("unix", None, None, false), "unix to an unnamed peer (fd 7)"),
            (socket("netlink", None, None, false), "netlink (fd 7)"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn garbage_is_an_error_naming_what_came() {
        let err = FromTemplate::decode(b"\x00\x01hello").unwrap_err();
        assert!(err.contains("unreadable message from the template"), "{err}");
        assert!(FromTemplate::decode(br#"{"type": "launch"}"#).is_err());
    }
}
