//! `CallClient`: a blocking client of the call socket (INTERFACE section 5), used by
//! `pitctl call`, `pitctl bench` and the tests. One call at a time per client; concurrency
//! comes from several clients.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::Value;

use crate::proto::call::CALL_MAX;

pub struct CallClient {
    stream: UnixStream,
    next_id: u64,
    buf: Vec<u8>,
    /// Bytes read from the socket and not yet returned as a reply.
    received: Vec<u8>,
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
            received: Vec::with_capacity(4096),
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

    /// Reads one reply frame's body into `self.buf`, usually with one read. It waits in
    /// `poll` rather than in `read`: a reader blocked in `read` on a Unix stream socket is
    /// also woken each time pitd takes a request off it (the space that frees up wakes the
    /// socket's sleepers), a wake-up and a context switch per call for nothing.
    fn read_frame(&mut self) -> Result<(), CallClientError> {
        loop {
            if self.received.len() >= 4 {
                let len = u32::from_be_bytes(self.received[..4].try_into().expect("4 bytes")) as usize;
                if len > CALL_MAX {
                    return Err(CallClientError::BadReply(format!("reply of {len} bytes")));
                }
                if self.received.len() >= 4 + len {
                    self.buf.clear();
                    self.buf.extend_from_slice(&self.received[4..4 + len]);
                    self.received.drain(..4 + len);
                    return Ok(());
                }
                self.received.reserve(4 + len - self.received.len());
            }
            self.wait_readable()?;
            if self.received.capacity() - self.received.len() < 4096 {
                self.received.reserve(4096);
            }
            let at = self.received.len();
            let room = self.received.capacity() - at;
            self.received.resize(at + room, 0);
            let n = match self.stream.read(&mut self.received[at..]) {
                Ok(n) => n,
                Err(e) => {
                    self.received.truncate(at);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e.into());
                }
            };
            self.received.truncate(at + n);
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    fn wait_readable(&self) -> io::Result<()> {
        use std::os::fd::AsFd;
        loop {
            let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
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
