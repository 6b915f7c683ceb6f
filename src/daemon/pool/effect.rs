//! What the pool core asks the world to do. The core decides and records effects in order;
//! the actor (`actor.rs`) carries them out after each input, in that order: frames to
//! workers, replies to callers, process starts and signals, samples, logs and events. The
//! tests read them from fakes, or straight from the core.

use nix::sys::signal::Signal;

use super::call::{ReplyFrame, ReplyTx};
use crate::daemon::process::spawn::SpawnRequest;
use crate::ids::WorkerId;
use crate::proto::event::Event;

/// Someone waiting for the end of something (a drain, a shutdown): the actor keeps the
/// channel, the core only its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Waiter(pub u64);

/// One thing the core asks for.
#[derive(Debug)]
pub enum Effect {
    /// Frames for a worker's fd 3, with the calls they carry (pitd's ids, in order). A pipe
    /// that does not take them (the worker is not reading, or is gone) comes back as
    /// `Input::PipeRefused` with those calls: they never reached the worker.
    Write {
        worker: WorkerId,
        frames: Vec<u8>,
        calls: Vec<u64>,
    },
    /// The worker is gone and settled: its pipes can go, and its output is kept as an
    /// exited worker's. (A killed worker's pipe stays open until then, unwritten, so its
    /// last replies are still read.)
    Forget(WorkerId),
    /// A reply to a caller's connection, joined with the other replies to that connection
    /// of the same input.
    Reply {
        to: ReplyTx,
        frame: ReplyFrame,
    },
    /// Start a worker (its result and exit come back as inputs).
    Spawn(Box<SpawnRequest>),
    /// A signal to a worker's process group.
    Signal {
        pid: u32,
        signal: Signal,
    },
    /// Stop this pool's preload template.
    ReleaseTemplate,
    /// Sample a process: a worker's (`worker`), or the template's or its spare's (`None`).
    Watch {
        pid: u32,
        worker: Option<WorkerId>,
        metric: crate::spec::MemoryMetric,
        shared_pages: bool,
    },
    /// Sample a process now rather than at the next round.
    SampleNow(u32),
    Unwatch(u32),
    /// The worker is ready: its output is labelled so from now on.
    OutputReady(WorkerId),
    /// A line of the template's output.
    TemplateLine {
        stream: crate::proto::control::Stream,
        line: String,
    },
    Event(Box<Event>),
    /// Wake a waiter (a drain or a shutdown is over).
    Wake(Waiter),
}
