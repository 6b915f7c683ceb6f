//! `CallClient`: a blocking client of the call socket (INTERFACE section 5), used by
//! `pitctl call`, `pitctl bench` and the tests. One call at a time per client; concurrency
//! comes from several clients.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::proto::call::CALL_MAX;

pub struct CallClient {
    stream: UnixStream,
    next_id: u64,
    buf: Vec<u8>,
}

/// One call's outcome as the caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok {
        result: Value,
        worker: String,
    },
    Err {
        kind: String,
        message: String,
        traceback: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CallClientError {
    #[error("no pitd call socket at {path}: {source}")]
    Unreachable { path: PathBuf, source: io::Error },
    #[error("call connection: {0}")]
    Io(#[from] io::Error),
    #[error("unreadable reply from pitd: {0}")]
    BadReply(String),
}

/// Options of one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub session: Option<String>,
    pub timeout: Option<Duration>,
    pub idempotent: bool,
}

impl CallClient {
    pub fn connect(path: &Path) -> Result<CallClient, CallClientError> {
        let stream = UnixStream::connect(path).map_err(|source| CallClientError::Unreachable {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(CallClient {
            stream,
            next_id: 1,
            buf: Vec::with_capacity(256),
        })
    }

    /// Sends one call (`args` is raw JSON text) and waits for its reply.
    pub fn call(
        &mut self,
        pool: &str,
        method: &str,
        args: &str,
        opts: &CallOptions,
    ) -> Result<Outcome, CallClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = serde_json::json!({"id": id, "pool": pool, "method": method});
        if let Some(s) = &opts.session {
            req["session"] = Value::from(s.as_str());
        }
        if let Some(t) = opts.timeout {
            req["timeout_ms"] = Value::from(t.as_millis() as u64);
        }
        if opts.idempotent {
            req["idempotent"] = Value::Bool(true);
        }
        let mut body = serde_json::to_vec(&req).map_err(|e| CallClientError::BadReply(e.to_string()))?;
        // Splice the caller's args verbatim: `{"id":..}` -> `{"id":..,"args":ARGS}`.
        body.pop();
        body.extend_from_slice(b",\"args\":");
        body.extend_from_slice(args.as_bytes());
        body.push(b'}');
        self.buf.clear();
        crate::proto::frame::encode_into(&mut self.buf, &body);
        self.stream.write_all(&self.buf)?;
        let reply = self.read_reply()?;
        if reply.get("id").and_then(Value::as_u64) != Some(id) {
            return Err(CallClientError::BadReply(format!("reply for another call: {reply}")));
        }
        parse_outcome(reply)
    }

    /// The same call over and over, as a load generator makes it: the request is encoded
    /// once and only the id changes; the reply is checked, not parsed. Returns whether the
    /// call succeeded.
    pub fn call_prepared(&mut self, prepared: &Prepared) -> Result<bool, CallClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut digits = id.to_string().into_bytes();
        let body_len = prepared.prefix.len() + digits.len() + 1;
        self.buf.clear();
        self.buf.extend_from_slice(&(body_len as u32).to_be_bytes());
        self.buf.extend_from_slice(&prepared.prefix);
        self.buf.append(&mut digits);
        self.buf.push(b'}');
        self.stream.write_all(&self.buf)?;
        self.read_frame()?;
        // pitd's replies start with the caller's id, then `ok`.
        let expect_ok = format!("{{\"id\":{id},\"ok\":true");
        let expect_err = format!("{{\"id\":{id},\"ok\":false");
        if self.buf.starts_with(expect_ok.as_bytes()) {
            Ok(true)
        } else if self.buf.starts_with(expect_err.as_bytes()) {
            Ok(false)
        } else {
            Err(CallClientError::BadReply(
                String::from_utf8_lossy(&self.buf).into_owned(),
            ))
        }
    }

    fn read_reply(&mut self) -> Result<Value, CallClientError> {
        self.read_frame()?;
        serde_json::from_slice(&self.buf).map_err(|e| CallClientError::BadReply(e.to_string()))
    }

    /// Reads one reply frame's body into `self.buf`.
    fn read_frame(&mut self) -> Result<(), CallClientError> {
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head)?;
        let len = u32::from_be_bytes(head) as usize;
        if len > CALL_MAX {
            return Err(CallClientError::BadReply(format!("reply of {len} bytes")));
        }
        self.buf.resize(len, 0);
        self.stream.read_exact(&mut self.buf)?;
        Ok(())
    }
}

/// A call encoded once for `call_prepared`: everything but the id.
#[derive(Debug, Clone)]
pub struct Prepared {
    prefix: Vec<u8>,
}

impl Prepared {
    /// `args` is raw JSON text.
    pub fn new(pool: &str, method: &str, args: &str) -> Prepared {
        let head = serde_json::json!({"pool": pool, "method": method}).to_string();
        let mut prefix = head.into_bytes();
        prefix.pop();
        prefix.extend_from_slice(b",\"args\":");
        prefix.extend_from_slice(args.as_bytes());
        prefix.extend_from_slice(b",\"id\":");
        Prepared { prefix }
    }
}

fn parse_outcome(mut reply: Value) -> Result<Outcome, CallClientError> {
    match reply.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(Outcome::Ok {
            result: reply.get_mut("result").map(Value::take).unwrap_or(Value::Null),
            worker: reply
                .get("worker")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }),
        Some(false) => {
            let e = &reply["error"];
            let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            Ok(Outcome::Err {
                kind: text("kind").unwrap_or_default(),
                message: text("message").unwrap_or_default(),
                traceback: text("traceback"),
            })
        }
        None => Err(CallClientError::BadReply(reply.to_string())),
    }
}
