//! The pool's seams to the world of processes: `Spawner` starts and signals them (the real
//! one is the process thread, `process::procs`), `WorkerPipe` writes frames to a worker while
//! what workers say arrives in the pool's own mailbox (`PoolMsg::FromWorker`; the real pipes
//! are `process::pipes`). The pool's tests use fakes that record what the pool asked for,
//! so its logic is tested without processes.

use std::fmt::Debug;
use std::os::fd::OwnedFd;

use tokio::sync::mpsc;

pub use crate::daemon::process::pipes::WorkerMsg;

use nix::sys::signal::Signal;

use super::PoolMsg;
use crate::daemon::process::children::{OnExit, OnSpawned};
use crate::daemon::process::pipes::{self, WorkerIo};
use crate::daemon::process::procs::Procs;
use crate::daemon::process::spawn::SpawnRequest;
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

/// Opens real worker pipes (`process::pipes`): what a worker writes reaches its pool's mailbox.
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

/// Starting and signalling processes, behind a seam so the actor can be tested with a fake.
pub trait Spawner: Send + Sync + 'static {
    fn spawn(&self, req: SpawnRequest, on_spawned: OnSpawned, on_exit: OnExit);
    fn signal_group(&self, pid: u32, signal: Signal);
    /// Stops a pool's preload template (`None`: every pool's); the next worker start of a
    /// preloaded pool starts a fresh one.
    fn release_template(&self, _pool: Option<&str>) {}
}

impl Spawner for Procs {
    fn spawn(&self, req: SpawnRequest, on_spawned: OnSpawned, on_exit: OnExit) {
        Procs::spawn(self, req, on_spawned, on_exit)
    }
    fn signal_group(&self, pid: u32, signal: Signal) {
        Procs::signal_group(self, pid, signal)
    }
    fn release_template(&self, pool: Option<&str>) {
        Procs::release_template(self, pool)
    }
}
