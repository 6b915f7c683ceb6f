//! The seam between the pool and its workers' pipes, as `Spawner` is for processes: the
//! pool writes frames to a `WorkerPipe` and reads what workers say from its own mailbox
//! (`PoolMsg::FromWorker`). The real pipes are `worker_io`; the pool's tests use a fake
//! that records the frames, so the call logic is tested without processes.

use std::fmt::Debug;
use std::os::fd::OwnedFd;

use tokio::sync::mpsc;

use super::PoolMsg;
use crate::ids::WorkerId;
use crate::proto::call::ErrorKind;
use crate::proto::worker::Ready;

/// The pool's end of one worker's pipes.
pub trait WorkerPipe: Send + Debug {
    /// Writes a complete frame (or several), or queues what the pipe does not take at once.
    /// Gives it back when the worker is not reading (queue full) or gone.
    fn send(&self, frames: Vec<u8>) -> Result<(), Vec<u8>>;
    /// Whether the worker has written anything the pool has not read yet (when unsure: yes).
    fn reply_waiting(&self) -> bool;
}

/// Opens the pipes of a worker that was started: frames the worker writes reach the pool's
/// mailbox as `PoolMsg::FromWorker`, ending with `WorkerMsg::Closed`.
pub trait PipeOpener: Send + Sync + 'static {
    fn open(
        &self,
        id: WorkerId,
        to_worker: OwnedFd,
        from_worker: OwnedFd,
        mailbox: mpsc::UnboundedSender<PoolMsg>,
    ) -> std::io::Result<Box<dyn WorkerPipe>>;
}

/// What a worker said, owned, for the pool's mailbox.
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
    /// Garbage, an oversized frame, or a broken pipe: the worker must go.
    ProtocolError(String),
    /// The end of the reply pipe: every frame the worker wrote has been delivered before
    /// this (the worker exited, or closed fd 4).
    Closed,
}
