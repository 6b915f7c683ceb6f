//! The seam between the pool and its workers' pipes, as `Spawner` is for processes: the
//! pool writes frames to a `WorkerPipe` and reads what workers say from its own mailbox
//! (`PoolMsg::FromWorker`). The real pipes are `worker::pipes`; the pool's tests use a fake
//! that records the frames, so the call logic is tested without processes.

use std::fmt::Debug;
use std::os::fd::OwnedFd;

use tokio::sync::mpsc;

pub use crate::daemon::worker::pipes::WorkerMsg;

use super::PoolMsg;
use crate::daemon::worker::pipes::{self, WorkerIo};
use crate::ids::WorkerId;
use crate::proto::worker::MAX_FRAME;

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

impl WorkerPipe for WorkerIo {
    fn send(&self, frames: Vec<u8>) -> Result<(), Vec<u8>> {
        WorkerIo::send(self, frames)
    }
    fn reply_waiting(&self) -> bool {
        WorkerIo::reply_waiting(self)
    }
}

/// Opens real worker pipes (`worker::pipes`): what a worker writes reaches its pool's mailbox.
#[derive(Debug, Default)]
pub struct WorkerPipes;

impl PipeOpener for WorkerPipes {
    fn open(
        &self,
        id: WorkerId,
        to_worker: OwnedFd,
        from_worker: OwnedFd,
        mailbox: mpsc::UnboundedSender<PoolMsg>,
    ) -> std::io::Result<Box<dyn WorkerPipe>> {
        let sink = Box::new(move |msg| mailbox.send(PoolMsg::FromWorker { id, msg }).is_ok());
        Ok(Box::new(pipes::start(to_worker, from_worker, sink, MAX_FRAME)?))
    }
}
