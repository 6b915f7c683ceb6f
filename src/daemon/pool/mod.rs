//! A pool: one tokio task per pool (`actor.rs`) feeds a pure state machine (`core.rs`)
//! and carries out what it decides. Everyone else holds a `PoolHandle` and sends
//! `PoolMsg`s; status is answered from the core's state.
//!
//! - `core`: all of a pool's state and decisions, no I/O: inputs in, `effect`s out.
//! - `actor`: the tokio loop: mailbox, timer, worker pipes; turns messages into inputs and
//!   effects into I/O.
//! - `call`: one call: made from a request, its worker frame, its replies, and the port
//!   they leave by.
//! - `dispatch`: calls: admission, the queue, session affinity, the worker's answers.
//! - `routing`: the pure choice of a worker for a call.
//! - `worker`: one worker (state through the lifecycle table, its calls); `window`: the
//!   calls one worker holds, running and pipelined (pure).
//! - `seams`: the seams to processes (`Spawner`) and to workers' pipes (`WorkerPipe`); the
//!   real ones are `process::procs` and `process::pipes`, the tests' are fakes.
//! - `starting`, `exits`, `stopping`: starting workers and readiness; settling a dead
//!   worker's calls, restarts with backoff, the crash-loop breaker; graceful and immediate
//!   stops, shutdown, their timers.
//! - `recycle`: triggers, surge recycling, drain, resume, scale, reload.
//! - `streams`: chunks to callers, credit back to workers, cancels by callers.
//! - `health`: pings to idle workers. `expiry`: calls past their timeouts, callers that hung
//!   up. `pipeline`: calls written behind a busy worker's short call, and taken back.
//! - `parts`: the core's state in plain parts (calls, restarts, recycling, template).
//! - `report`: status from the core's state. `preload`: the template and its spare.

mod actor;
mod budget;
mod call;
mod core;
mod counts;
mod dispatch;
mod effect;
mod exits;
mod expiry;
mod health;
mod parts;
mod pipeline;
mod preload;
mod recycle;
mod report;
pub mod routing;
pub mod seams;
mod starting;
mod stopping;
mod streams;
#[cfg(test)]
mod tests;
mod window;
mod worker;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::events::EventLog;
use super::metrics::Metrics;
use super::monitor::{Monitor, TreeSample};
use super::probe::PoolFacts;
use crate::daemon::process::children::ExitInfo;
use crate::daemon::process::output::OutputStore;
use crate::daemon::process::spawn::{SpawnError, Spawned, TemplateNews};
use crate::ids::{IdAllocator, WorkerId};
use crate::proto::status::PoolStatus;
use crate::spec::PoolSpec;
use actor::PoolActor;
pub use seams::Spawner;
use seams::{PipeOpener, WorkerMsg};

pub use call::{Call, ReplyFrame, ReplyPort, ReplyTx, StreamCredit};

/// Messages a pool understands. Senders: the control server (Status, Shutdown), the call
/// server (Call), the process thread's callbacks (Spawned, Exited) and the worker I/O tasks
/// (FromWorker).
#[derive(Debug)]
pub enum PoolMsg {
    Status(oneshot::Sender<PoolStatus>),
    /// Answered at once: the actor is alive (`pitctl probe live`).
    Ping(oneshot::Sender<()>),
    Call(Call),
    Spawned {
        id: WorkerId,
        result: Result<Spawned, SpawnError>,
    },
    Exited {
        id: WorkerId,
        info: ExitInfo,
    },
    FromWorker {
        id: WorkerId,
        msg: WorkerMsg,
    },
    /// A memory/CPU sample of a worker's process tree, from the monitor thread.
    Sample {
        id: WorkerId,
        sample: TreeSample,
    },
    /// From the process thread: the pool's preload template is ready, has a new spare, or
    /// is gone.
    Template(TemplateNews),
    /// A sample of the template or its spare.
    TemplateSample(TreeSample),
    /// `pitctl recycle`: a worker or (None) the whole pool; `now` kills at once.
    Recycle {
        worker: Option<WorkerId>,
        now: bool,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// `pitctl drain`: a worker or (None) the whole pool; `done` fires when it is over.
    Drain {
        worker: Option<WorkerId>,
        done: Option<oneshot::Sender<()>>,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Resume {
        reply: oneshot::Sender<Result<String, String>>,
    },
    Scale {
        size: u32,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// A caller's connection ended: its calls are dropped or cancelled.
    CallerGone(ReplyTx),
    /// A caller cancelled its call `client_id` (`{"cancel": id}`).
    Cancel {
        caller: ReplyTx,
        client_id: Box<[u8]>,
    },
    /// Callers' connections took these chunks of streams (from written reply frames).
    Credit(Vec<call::StreamCredit>),
    /// A reloaded spec for this pool.
    Reconfigure(Box<PoolSpec>),
    /// What the pool may use under the daemon's `memory_budget` (from the supervisor).
    DaemonBudget(Option<u64>),
    /// Stop taking calls (queued ones get `shutting_down`), let running calls finish until
    /// `deadline`, stop every worker (SIGTERM, SIGKILL after kill_timeout); the reply is
    /// sent once all have been reaped, and the actor ends.
    Shutdown {
        deadline: Instant,
        done: oneshot::Sender<()>,
    },
}

/// Pools by name, as the call server routes them (replaced wholesale on reload).
pub type PoolTable = Arc<std::collections::HashMap<String, PoolHandle>>;

/// The only way to talk to a pool.
#[derive(Debug, Clone)]
pub struct PoolHandle {
    pub name: String,
    tx: mpsc::UnboundedSender<PoolMsg>,
    /// What probes read without asking the actor.
    pub facts: Arc<PoolFacts>,
}

impl PoolHandle {
    pub fn send(&self, msg: PoolMsg) -> bool {
        self.tx.send(msg).is_ok()
    }

    pub async fn status(&self) -> Option<PoolStatus> {
        let (tx, rx) = oneshot::channel();
        self.send(PoolMsg::Status(tx));
        rx.await.ok()
    }

    /// Asks the actor to answer (`pitctl probe live`); `None` when it is gone.
    pub fn ping(&self) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.send(PoolMsg::Ping(tx)).then_some(rx)
    }

    pub async fn shutdown(&self, deadline: Instant) {
        let (done, rx) = oneshot::channel();
        if self.send(PoolMsg::Shutdown { deadline, done }) {
            let _ = rx.await;
        }
    }
}

/// What a pool needs from the daemon.
#[derive(Clone)]
pub struct PoolDeps {
    pub spawner: Arc<dyn Spawner>,
    /// Opens the pipes of started workers (`pipe::WorkerPipes`, or a fake in tests).
    pub pipes: Arc<dyn PipeOpener>,
    pub ids: Arc<IdAllocator>,
    pub output: Arc<OutputStore>,
    pub events: Arc<EventLog>,
    /// Samples workers' process trees; `None` in tests that run no processes.
    pub monitor: Option<Monitor>,
    pub metrics: Arc<Metrics>,
    /// The workers' clock, for the start-by of pipelined calls.
    pub clock: seams::WorkerClock,
}

/// Starts a pool actor on the current runtime and returns its handle.
pub fn start(spec: PoolSpec, deps: PoolDeps) -> PoolHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let name = spec.name.clone();
    let mut actor = PoolActor::new(spec, deps, tx.clone());
    let handle = PoolHandle {
        name,
        tx,
        facts: actor.facts(),
    };
    actor.begin(Instant::now());
    tokio::spawn(actor.run(rx));
    handle
}
