//! `CallClient`: a blocking client of the call socket (INTERFACE section 5), used by
//! `pitctl call`, `pitctl bench` and the tests. It writes `proto::call::CallRequest`s and
//! reads `CallReply`s, one call at a time; `pitctl bench` drives the connection itself
//! through `send_raw`, `wait_readable` and `read_frames` to keep many calls in flight.

use std::borrow::Cow;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::proto::call::{CALL_MAX, CallReply, CallRequest, ErrorKind};
use crate::proto::frame::{self, FrameBuf, FrameError};

pub struct CallClient {
    stream: UnixStream,
    next_id: u64,
    out: Vec<u8>,
    frames: FrameBuf,
}

/// One call's outcome as the caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok {
        result: Value,
        worker: String,
    },
    Err {
        kind: ErrorKind,
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
    #[error("the call's arguments are not JSON: {0}")]
    BadArgs(serde_json::Error),
}

/// Options of one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub session: Option<String>,
    pub timeout: Option<Duration>,
    pub idempotent: bool,
    /// Ask for a stream: chunks, then the final reply (INTERFACE section 9).
    pub stream: bool,
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
            out: Vec::with_capacity(256),
            frames: FrameBuf::new(CALL_MAX),
        })
    }

    /// Sends one call (`args` is raw JSON text, sent as it is) and waits for its reply.
    pub fn call(
        &mut self,
        pool: &str,
        method: &str,
        args: &str,
        opts: &CallOptions,
    ) -> Result<Outcome, CallClientError> {
        self.call_streaming(pool, method, args, opts, |_| Ok(()))
    }

    /// Sends one call and waits for its final reply, handing each chunk of its stream (if
    /// `opts.stream`) to `on_chunk` as it arrives.
    pub fn call_streaming(
        &mut self,
        pool: &str,
        method: &str,
        args: &str,
        opts: &CallOptions,
        mut on_chunk: impl FnMut(&RawValue) -> Result<(), CallClientError>,
    ) -> Result<Outcome, CallClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let id_json = serde_json::value::to_raw_value(&id).expect("an integer is JSON");
        let args: &RawValue = serde_json::from_str(args).map_err(CallClientError::BadArgs)?;
        let request = CallRequest {
            stream: opts.stream,
            id: &id_json,
            pool: Cow::Borrowed(pool),
            method: Cow::Borrowed(method),
            args: Some(args),
            session: opts.session.as_deref().map(Cow::Borrowed),
            timeout_ms: opts.timeout.map(|t| t.as_millis() as u64),
            idempotent: opts.idempotent,
        };
        let body = serde_json::to_vec(&request).expect("a request is JSON");
        self.out.clear();
        frame::encode_into(&mut self.out, &body);
        self.stream.write_all(&self.out)?;
        loop {
            if let Some(body) = self.frames.next_frame().map_err(bad_frame)? {
                if let Some(chunk) = as_chunk(body) {
                    if chunk.id.get() != id_json.get() {
                        return Err(CallClientError::BadReply(format!(
                            "chunk of another call: {}",
                            chunk.id
                        )));
                    }
                    on_chunk(chunk.chunk)?;
                    continue;
                }
                let reply: CallReply =
                    serde_json::from_slice(body).map_err(|e| CallClientError::BadReply(e.to_string()))?;
                if reply.id.get() != id_json.get() {
                    return Err(CallClientError::BadReply(format!(
                        "reply for another call: {}",
                        reply.id
                    )));
                }
                return outcome(reply);
            }
            // Waiting in `poll` rather than in `read`: a reader blocked in `read` on a Unix
            // stream socket is also woken each time pitd takes a request off it, a wake-up
            // and a context switch per call for nothing.
            self.wait_readable(None)?;
            self.fill()?;
        }
    }

    /// Writes bytes as they are: frames a load generator encoded itself.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads what the socket has (waiting for at least one byte) and hands each complete
    /// reply frame's body to `each`.
    pub fn read_frames(
        &mut self,
        mut each: impl FnMut(&[u8]) -> Result<(), CallClientError>,
    ) -> Result<(), CallClientError> {
        self.fill()?;
        while let Some(body) = self.frames.next_frame().map_err(bad_frame)? {
            each(body)?;
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<(), CallClientError> {
        match self.frames.read_from(&mut self.stream)? {
            0 => Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            _ => Ok(()),
        }
    }

    /// Waits until the socket is readable (true) or `timeout` passes (false).
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
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

/// A chunk of a stream: `{"id": 7, "chunk": ...}`.
#[derive(serde::Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow)]
    chunk: &'a RawValue,
}

/// The chunk a reply frame is, if it is one (a final reply has `ok`, a chunk `chunk`).
fn as_chunk(body: &[u8]) -> Option<Chunk<'_>> {
    let named = body.windows(7).any(|w| w == b"\"chunk\"");
    named.then(|| serde_json::from_slice::<Chunk>(body).ok()).flatten()
}

fn bad_frame(e: FrameError) -> CallClientError {
    match e {
        FrameError::TooLarge { len, .. } => CallClientError::BadReply(format!("reply of {len} bytes")),
        other => CallClientError::BadReply(other.to_string()),
    }
}

fn outcome(reply: CallReply<'_>) -> Result<Outcome, CallClientError> {
    if reply.ok {
        let result = match reply.result {
            Some(raw) => serde_json::from_str(raw.get()).map_err(|e| CallClientError::BadReply(e.to_string()))?,
            None => Value::Null,
        };
        let worker = reply.worker.unwrap_or_default().into_owned();
        return Ok(Outcome::Ok { result, worker });
    }
    let error = reply
        .error
        .ok_or_else(|| CallClientError::BadReply("a failed call's reply without an error".into()))?;
    Ok(Outcome::Err {
        kind: error.kind,
        message: error.message,
        traceback: error.traceback,
        worker: reply.worker.map(Cow::into_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::as_chunk;

    #[test]
    fn a_chunk_frame_is_told_from_a_final_reply_even_one_that_says_chunk() {
        let chunk = as_chunk(br#"{"id":7,"chunk":{"token":"a"}}"#).expect("a chunk");
        assert_eq!((chunk.id.get(), chunk.chunk.get()), ("7", r#"{"token":"a"}"#));
        assert!(as_chunk(br#"{"id":7,"ok":true,"result":{"chunk":1},"worker":"worker-1"}"#).is_none());
        assert!(as_chunk(br#"{"id":7,"ok":true,"result":null,"worker":"worker-1"}"#).is_none());
    }
}
