//! The pool's seams to the world of processes: `Spawner` starts and signals them (the real
//! one is the process thread, `process::procs`), `WorkerPipe` writes frames to a worker while
//! what workers say arrives in the pool's own mailbox (`PoolMsg::FromWorker`; the real pipes
//! are `process::pipes`). The pool's tests use fakes that record what the pool asked for,
//! so its logic is tested without processes.

use std::fmt::Debug;
use std::os::fd::OwnedFd;
use std::time::Instant;

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
        pid: u32,
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
        pid: u32,
        to_worker: OwnedFd,
        from_worker: OwnedFd,
        mailbox: mpsc::UnboundedSender<PoolMsg>,
    ) -> std::io::Result<Box<dyn WorkerPipe>> {
        let sink = Box::new(move |msg| {
            // Whether the worker is dying is read here, on the I/O side, when the pipe ends:
            // the pool decides from the message alone.
            let msg = match msg {
                WorkerMsg::Closed if !crate::procfs::exiting(pid) => WorkerMsg::ClosedWhileAlive,
                other => other,
            };
            mailbox.send(PoolMsg::FromWorker { id, msg }).is_ok()
        });
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

/// The workers' clock (CLOCK_MONOTONIC, what `time.monotonic_ns()` reads) as nanoseconds,
/// from pitd's `Instant`s: a pipelined call's start-by is written on it. Both are the same
/// clock on Linux, so one pair read together at start maps every instant exactly, and the
/// pool reads no clock itself.
#[derive(Debug, Clone, Copy)]
pub struct WorkerClock {
    at: Instant,
    ns: u64,
}

impl WorkerClock {
    /// Reads both clocks now (the daemon does, once).
    pub fn read() -> WorkerClock {
        let ns = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        WorkerClock::pair(Instant::now(), ns)
    }

    /// `at` is `ns` on the workers' clock.
    pub fn pair(at: Instant, ns: u64) -> WorkerClock {
        WorkerClock { at, ns }
    }

    /// `instant` on the workers' clock (instants before the pair map to it).
    pub fn ns(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.at).as_nanos();
        self.ns.saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}
