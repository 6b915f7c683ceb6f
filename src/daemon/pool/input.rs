//! What the pool core takes: inputs (messages and facts the actor feeds it) and operators'
//! commands. Each is answered by the core's effects (`effect.rs`).

use std::time::Instant;

use super::Call;
use super::call::{ReplyTx, StreamCredit};
use super::effect::Waiter;
use super::seams::WorkerMsg;
use crate::daemon::monitor::TreeSample;
use crate::daemon::process::children::ExitInfo;
use crate::daemon::process::spawn::TemplateNews;
use crate::ids::WorkerId;
use crate::spec::PoolSpec;

/// One input, as the actor feeds it.
#[derive(Debug)]
pub enum Input {
    Call(Call),
    /// A caller's connection ended: its calls are dropped or cancelled.
    CallerGone(ReplyTx),
    /// A frame (or the end of the pipe) from a worker.
    Worker {
        id: WorkerId,
        msg: WorkerMsg,
    },
    /// A worker's process was started; `pipes` is whether its fd 3/4 pipes could be
    /// opened (`None` for a worker without them).
    Started {
        id: WorkerId,
        pid: u32,
        started_at: Instant,
        pipes: Option<Result<(), String>>,
    },
    /// A worker's process could not be started.
    StartFailed {
        id: WorkerId,
        error: String,
    },
    Exited {
        id: WorkerId,
        info: ExitInfo,
    },
    /// A memory/CPU sample of a worker's process tree.
    Sample {
        id: WorkerId,
        sample: TreeSample,
    },
    /// The preload template is ready, has a new spare, said a line, or is gone.
    Template(TemplateNews),
    /// A sample of the template or its spare.
    TemplateSample(TreeSample),
    /// A worker's pipe did not take what pitd wrote (the worker is not reading, or is
    /// gone); `calls` were in what it refused, so never reached it.
    PipeRefused {
        worker: WorkerId,
        calls: Vec<u64>,
    },
    /// The caller cancelled its call `client_id` (`{"cancel": id}` on its connection).
    Cancel {
        caller: ReplyTx,
        client_id: Box<[u8]>,
    },
    /// Callers' connections took these chunks of streams.
    Credit(Vec<StreamCredit>),
    /// What this pool may use under the daemon's `memory_budget` (`None`: no daemon budget).
    DaemonBudget(Option<u64>),
    /// A reloaded spec for this pool.
    Reconfigure(Box<PoolSpec>),
    /// Stop taking calls, let running ones finish until `deadline`, stop every worker;
    /// `waiter` is woken when all are reaped.
    Shutdown {
        deadline: Instant,
        waiter: Waiter,
    },
}

/// An operator's command, answered with a message or an error.
#[derive(Debug)]
pub enum Command {
    /// A worker or (None) the whole pool; `now` kills at once.
    Recycle {
        worker: Option<WorkerId>,
        now: bool,
    },
    /// A worker or (None) the whole pool; `done` is woken when it is over.
    Drain {
        worker: Option<WorkerId>,
        done: Option<Waiter>,
    },
    Resume,
    Scale {
        size: u32,
    },
}
