//! Per-worker pipe I/O on fds 3/4. Frames to the worker go through an `Outbox` (written at
//! once when nothing waits before them; the pool never awaits a worker: a full outbox means
//! the worker stopped reading). A reader task decodes the worker's frames with the one
//! frame reader (`FrameBuf`) and hands each to the pool's sink. A frame that does not
//! decode, or is over the limit, is reported once as a protocol error; the pool kills the
//! worker. The end of the pipe is reported too: everything the worker wrote has then been
//! delivered, which is what the pool waits for before it settles a dead worker's calls.

use std::os::fd::{AsFd, OwnedFd};

use tokio::net::unix::pipe;

use crate::daemon::outbox::Outbox;
use crate::proto::call::ErrorKind;
use crate::proto::frame::FrameBuf;
use crate::proto::worker::{FromWorker, Ready, decode_from_worker};

/// Frames that may wait for one worker. A worker holds at most one running call, 16
/// pipelined ones and one ping, so this only fills when the worker stops reading.
const OUTBOX: usize = 20;

/// What a worker said, owned, for its pool.
#[derive(Debug)]
pub enum WorkerMsg {
    Ready(Ready),
    /// OK (`error = None`, body = result JSON) or ERR (`error` = its kind, body = the
    /// error object JSON).
    Reply {
        req_id: u64,
        error: Option<ErrorKind>,
        body: Vec<u8>,
    },
    Pong {
        req_id: u64,
    },
    /// One chunk of a stream (its JSON, as the worker wrote it).
    Chunk {
        req_id: u64,
        body: Vec<u8>,
    },
    /// Garbage, an oversized frame, or a broken pipe: the worker must go.
    ProtocolError(String),
    /// The end of the reply pipe: every frame the worker wrote has been delivered before
    /// this (the worker exited, or closed fd 4).
    Closed,
    /// The same end, while the worker was alive and not exiting (its pool's pipe seam looks
    /// at `/proc` when the pipe ends): nothing it answers can reach pitd any more.
    ClosedWhileAlive,
}

/// Where a worker's frames go; returns false once nobody listens (the reader then ends).
pub type Sink = Box<dyn Fn(WorkerMsg) -> bool + Send>;

/// pitd's end of a worker's pipes.
#[derive(Debug)]
pub struct WorkerIo {
    outbox: Outbox<pipe::Sender, Vec<u8>>,
    /// A second handle on the reply pipe, to see whether a reply is waiting there.
    replies: OwnedFd,
}

impl WorkerIo {
    /// Writes complete frames, or queues what the pipe does not take at once. Gives them
    /// back when the worker is not reading (outbox full) or gone.
    pub fn send(&self, frames: Vec<u8>) -> Result<(), Vec<u8>> {
        self.outbox.send(frames)
    }

    /// Whether the worker has written anything pitd has not read yet (when unsure: yes).
    pub fn reply_waiting(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.replies.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0].revents().is_none_or(|r| r.contains(PollFlags::POLLIN)),
            Err(_) => true,
        }
    }
}

/// Starts the reader and writer tasks of a worker. Must run inside the runtime.
pub fn start(to_worker: OwnedFd, from_worker: OwnedFd, sink: Sink, max_frame: usize) -> std::io::Result<WorkerIo> {
    let outbox = Outbox::new(pipe::Sender::from_owned_fd(to_worker)?, Some(OUTBOX));
    let replies = from_worker.try_clone()?;
    let reader = pipe::Receiver::from_owned_fd(from_worker)?;
    tokio::spawn(read_loop(reader, sink, max_frame));
    Ok(WorkerIo { outbox, replies })
}

async fn read_loop(mut pipe: pipe::Receiver, sink: Sink, max_frame: usize) {
    let mut frames = FrameBuf::new(max_frame);
    loop {
        loop {
            let msg = match frames.next_frame() {
                Ok(Some(body)) => decode(body),
                Ok(None) => break,
                Err(e) => WorkerMsg::ProtocolError(e.to_string()),
            };
            let fatal = matches!(msg, WorkerMsg::ProtocolError(_));
            if !sink(msg) || fatal {
                return;
            }
        }
        if !matches!(frames.read_from_async(&mut pipe).await, Ok(n) if n > 0) {
            sink(WorkerMsg::Closed);
            return;
        }
    }
}

/// One frame from a worker as the pool's message.
fn decode(body: &[u8]) -> WorkerMsg {
    match decode_from_worker(body) {
        Ok(FromWorker::Ready(r)) => WorkerMsg::Ready(r),
        Ok(FromWorker::Ok { req_id, result }) if valid_json(result) => WorkerMsg::Reply {
            req_id,
            error: None,
            body: result.to_vec(),
        },
        Ok(FromWorker::Ok { .. }) => WorkerMsg::ProtocolError("an OK frame carried invalid JSON".into()),
        Ok(FromWorker::Err { req_id, error }) => match error_kind(error) {
            Some(kind) => WorkerMsg::Reply {
                req_id,
                error: Some(kind),
                body: error.to_vec(),
            },
            None => WorkerMsg::ProtocolError("an ERR frame carried no valid error object".into()),
        },
        Ok(FromWorker::Pong { req_id }) => WorkerMsg::Pong { req_id },
        Ok(FromWorker::Chunk { req_id, chunk }) if valid_json(chunk) && !chunk.is_empty() => WorkerMsg::Chunk {
            req_id,
            body: chunk.to_vec(),
        },
        Ok(FromWorker::Chunk { .. }) => WorkerMsg::ProtocolError("a CHUNK frame carried invalid JSON".into()),
        Err(e) => WorkerMsg::ProtocolError(e.to_string()),
    }
}

fn valid_json(bytes: &[u8]) -> bool {
    bytes.is_empty() || serde_json::from_slice::<&serde_json::value::RawValue>(bytes).is_ok()
}

/// An ERR body must be an object with a known error kind.
fn error_kind(bytes: &[u8]) -> Option<ErrorKind> {
    serde_json::from_slice::<crate::proto::call::CallError>(bytes)
        .ok()
        .map(|e| e.kind)
}
