//! `CallClient`: a blocking client of the call socket (INTERFACE section 5), used by
//! `pitctl call`, `pitctl bench` and the tests. One call at a time per client, or, for
//! `pitctl bench`, a fixed number kept in flight on the one connection (`pipeline_prepared`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::Value;

use crate::proto::call::CALL_MAX;
use crate::proto::frame::{self, FrameError};

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
        /// The worker the call ran on, when pitd names one (handler errors, timeouts and
        /// crashes of a running call).
        worker: Option<String>,
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

    /// Keeps `depth` copies of a prepared call in flight on this connection until `end`,
    /// then waits for the last replies (until `drain_for` after `end`). Requests that can go together
    /// go in one write, and every reply already received is taken from one read, as a
    /// client multiplexing many callers over one connection does. Pushes each call's
    /// latency (µs, from just before its request is written to just after its reply is
    /// read) to `tally`, and counts failed calls there. The request is encoded once and
    /// only the id changes; replies are checked, not parsed.
    pub fn pipeline_prepared(
        &mut self,
        prepared: &Prepared,
        depth: usize,
        end: Instant,
        drain_for: Duration,
        tally: &mut Tally,
    ) -> Result<(), CallClientError> {
        let depth = depth.max(1);
        let mut sent_at: HashMap<u64, Instant> = HashMap::with_capacity(depth * 2);
        let give_up = end + drain_for;
        loop {
            let now = Instant::now();
            if now < end {
                self.buf.clear();
                while sent_at.len() < depth {
                    let id = self.next_id;
                    self.next_id += 1;
                    prepared.encode_into(&mut self.buf, id);
                    sent_at.insert(id, now);
                }
                tally.in_flight = sent_at.len();
                if !self.buf.is_empty() {
                    self.stream.write_all(&self.buf)?;
                }
            } else if sent_at.is_empty() {
                return Ok(());
            }
            if now >= give_up {
                return Err(CallClientError::BadReply(format!(
                    "{} calls unanswered {drain_for:?} after the load stopped",
                    sent_at.len()
                )));
            }
            if !self.poll_readable(Some(give_up - now))? {
                continue;
            }
            self.read_some()?;
            let received = Instant::now();
            let mut at = 0;
            while let Some(body) = next_frame(&self.received[at..])? {
                let (id, ok) = reply_id(body)
                    .ok_or_else(|| CallClientError::BadReply(String::from_utf8_lossy(body).into_owned()))?;
                let Some(t0) = sent_at.remove(&id) else {
                    return Err(CallClientError::BadReply(format!("reply for a call not sent: {id}")));
                };
                tally
                    .latencies
                    .push(received.saturating_duration_since(t0).as_micros().min(u32::MAX as u128) as u32);
                tally.errors += u64::from(!ok);
                at += 4 + body.len();
            }
            tally.in_flight = sent_at.len();
            self.received.drain(..at);
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
            if let Some(body) = next_frame(&self.received)? {
                let len = body.len();
                self.buf.clear();
                self.buf.extend_from_slice(body);
                self.received.drain(..4 + len);
                return Ok(());
            }
            self.poll_readable(None)?;
            self.read_some()?;
        }
    }

    /// Appends what the socket has to `self.received` (at least one byte, or an error).
    fn read_some(&mut self) -> Result<(), CallClientError> {
        if self.received.len() >= 4 {
            let len = u32::from_be_bytes(self.received[..4].try_into().expect("4 bytes")) as usize;
            self.received.reserve((4 + len).saturating_sub(self.received.len()));
        }
        if self.received.capacity() - self.received.len() < 4096 {
            self.received.reserve(4096);
        }
        loop {
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
            return Ok(());
        }
    }

    /// Waits until the socket is readable (true) or `timeout` passes (false).
    fn poll_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        use std::os::fd::AsFd;
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX),
        };
        loop {
            let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(n) => return Ok(n > 0),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The first complete frame's body in `buf`, if it holds one.
fn next_frame(buf: &[u8]) -> Result<Option<&[u8]>, CallClientError> {
    match frame::decode(buf, CALL_MAX) {
        Ok(body) => Ok(body.map(|(range, _)| &buf[range])),
        Err(FrameError::TooLarge { len, .. }) => Err(CallClientError::BadReply(format!("reply of {len} bytes"))),
        Err(e) => Err(CallClientError::BadReply(e.to_string())),
    }
}

/// The id of a reply and whether it is a success, read from its first bytes: pitd's
/// replies start with `{"id":N,"ok":true` or `{"id":N,"ok":false`.
fn reply_id(body: &[u8]) -> Option<(u64, bool)> {
    let rest = body.strip_prefix(b"{\"id\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    match &rest[digits..] {
        r if r.starts_with(b",\"ok\":true") => Some((id, true)),
        r if r.starts_with(b",\"ok\":false") => Some((id, false)),
        _ => None,
    }
}

/// What `pipeline_prepared` saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Each answered call's round trip, µs.
    pub latencies: Vec<u32>,
    /// Answered calls that failed.
    pub errors: u64,
    /// Calls sent and not answered yet.
    pub in_flight: usize,
}

/// A call encoded once for `pipeline_prepared`: everything but the id.
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

    /// Appends the call's frame, with id `id`, to `out`.
    fn encode_into(&self, out: &mut Vec<u8>, id: u64) {
        let head = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.prefix);
        write!(out, "{id}}}").expect("writing to a Vec");
        let len = (out.len() - head - 4) as u32;
        out[head..head + 4].copy_from_slice(&len.to_be_bytes());
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
                worker: reply.get("worker").and_then(Value::as_str).map(str::to_string),
            })
        }
        None => Err(CallClientError::BadReply(reply.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_call_is_a_frame_of_the_request_with_its_id() {
        let p = Prepared::new("echo", "echo", "[\"x\"]");
        let mut out = Vec::new();
        p.encode_into(&mut out, 0);
        p.encode_into(&mut out, 18_446_744_073_709_551_615);
        let first = next_frame(&out).unwrap().unwrap();
        let v: Value = serde_json::from_slice(first).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"pool": "echo", "method": "echo", "args": ["x"], "id": 0})
        );
        let second = next_frame(&out[4 + first.len()..]).unwrap().unwrap();
        let v: Value = serde_json::from_slice(second).unwrap();
        assert_eq!(v["id"].as_u64(), Some(u64::MAX));
    }

    #[test]
    fn a_reply_is_known_by_its_first_bytes() {
        assert_eq!(reply_id(br#"{"id":42,"ok":true,"result":1}"#), Some((42, true)));
        assert_eq!(reply_id(br#"{"id":7,"ok":false,"error":{}}"#), Some((7, false)));
        assert_eq!(reply_id(br#"{"ok":true,"id":7}"#), None);
        assert_eq!(reply_id(br#"{"id":,"ok":true}"#), None);
        assert_eq!(reply_id(br#"{"id":7}"#), None);
    }

    #[test]
    fn frames_are_taken_only_when_complete_and_not_oversized() {
        assert_eq!(next_frame(&[0, 0]).unwrap(), None);
        assert_eq!(next_frame(&[0, 0, 0, 2, b'a']).unwrap(), None);
        assert_eq!(next_frame(&[0, 0, 0, 1, b'a', b'b']).unwrap(), Some(&b"a"[..]));
        assert!(next_frame(&((CALL_MAX + 1) as u32).to_be_bytes()).is_err());
    }
}
