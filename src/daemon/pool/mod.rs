//! The pool actor: one tokio task per pool owns its workers, call queue, session affinity,
//! restart history and counters. Everyone else holds a `PoolHandle` and sends `PoolMsg`s;
//! status is answered from the actor's own state. The message handler is synchronous:
//! effects leave as calls on the `Spawner` (which only enqueues work for the process
//! thread), as `try_send`s to worker pipes, or as reply frames to callers' connections.
//!
//! - `call`: one call: made from a request, its worker frame, its replies.
//! - `mailbox`: the actor's loop: messages in batches, its one timer, replies out.
//! - `worker`: one worker (state through the lifecycle table, its calls, its pipe).
//! - `window`: the calls one worker holds, running and pipelined (pure).
//! - `seams`: the pool's seams to processes (`Spawner`) and to workers' pipes (`WorkerPipe`);
//!   the real ones are `process::procs` and `process::pipes`, the tests' are fakes.
//! - `starting`: starting workers, their messages, readiness.
//! - `exits`: settling a dead worker's calls, restarts with backoff, the crash-loop breaker.
//! - `stopping`: graceful and immediate stops, shutdown, and their timers.
//! - `recycle`: triggers, surge recycling, drain, resume, scale, reload.
//! - `health`: pings to idle workers.
//! - `dispatch`: calls: queue, affinity, replies.
//! - `expiry`: calls past their timeouts, cancels, stuck slots, callers that hung up.
//! - `pipeline`: calls written behind a busy worker's short call, and taken back.
//! - `routing`: the pure choice of a worker for a call.
//! - `reply`: the port a call's reply leaves by (a caller's connection, or a fake).
//! - `report`: status built from the actor's state.
//! - `preload`: a preloaded pool's template and spare: pids, memory, warnings.

mod call;
mod counts;
mod dispatch;
mod exits;
mod expiry;
mod health;
mod mailbox;
mod pipeline;
mod preload;
mod recycle;
mod reply;
mod report;
pub mod routing;
pub mod seams;
mod starting;
mod stopping;
#[cfg(test)]
mod tests;
mod window;
mod worker;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::events::EventLog;
use super::metrics::{Metrics, PoolCallMetrics};
use super::monitor::{Monitor, TreeSample};
use super::probe::PoolFacts;
use crate::daemon::process::children::ExitInfo;
use crate::daemon::process::output::OutputStore;
use crate::daemon::process::spawn::{SpawnError, Spawned, TemplateNews, TemplateSink};
use crate::ids::{IdAllocator, WorkerId};
use crate::lifecycle::phase::{Phase, PhaseEvent, next_phase};
use crate::lifecycle::{Reason, RestartHistory};
use crate::proto::event::{Event, EventKind};
use crate::proto::status::PoolStatus;
use crate::spec::PoolSpec;
pub use seams::Spawner;
use seams::{PipeOpener, WorkerMsg};
use worker::Worker;

pub use call::Call;
pub use reply::{ReplyFrame, ReplyPort, ReplyTx};

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
    /// A reloaded spec for this pool.
    Reconfigure(Box<PoolSpec>),
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
    let mut actor = PoolActor::new(spec, deps, tx.clone());
    let handle = PoolHandle {
        name: actor.spec.name.clone(),
        tx,
        facts: actor.facts.clone(),
    };
    actor.fill(Instant::now());
    // Probes may ask before the actor hears anything (a template may import the app for a
    // while): they see it as it is, not as the defaults.
    actor.facts.publish(&actor.snapshot());
    tokio::spawn(actor.run(rx));
    handle
}

/// A session's sticky worker.
#[derive(Debug, Clone, Copy)]
struct Affinity {
    worker: WorkerId,
    last_used: Instant,
}

/// A call handed to a worker binds its session (if any) to that worker.
fn bind_session(affinity: &mut HashMap<String, Affinity>, call: &Call, worker: WorkerId, now: Instant) {
    if let Some(s) = &call.session {
        affinity.insert(s.clone(), Affinity { worker, last_used: now });
    }
}

pub struct PoolActor {
    spec: PoolSpec,
    deps: PoolDeps,
    /// Our own mailbox, for the process thread's callbacks and worker I/O tasks.
    me: mpsc::UnboundedSender<PoolMsg>,
    workers: BTreeMap<WorkerId, Worker>,
    queue: VecDeque<Call>,
    affinity: HashMap<String, Affinity>,
    restart: RestartHistory,
    /// No start before this instant (backoff after a crash, or the failing probe delay).
    restart_at: Option<Instant>,
    /// Crashed workers not yet replaced, oldest first, with how each ended: their
    /// replacements count as restarts and name them (`replaces` in worker_started).
    owed_restarts: VecDeque<(WorkerId, Reason)>,
    /// The pool's phase (`lifecycle::phase`): moved only by `move_phase`.
    phase: Phase,
    /// While failing: the worker whose exit tipped the pool, and how it ended.
    failing_cause: Option<(WorkerId, String)>,
    /// It has had as many ready workers as its size at least once (`pitctl probe startup`).
    reached_size: bool,
    /// Workers kept: the spec's size until `pitctl scale` changes it.
    size: u32,
    /// Workers drained one by one (`pitctl drain worker-N`): the pool keeps that many fewer.
    drained_out: u32,
    /// `drain --wait` callers: for the pool, and for single workers.
    drain_waiters: Vec<oneshot::Sender<()>>,
    worker_waiters: Vec<(WorkerId, oneshot::Sender<()>)>,
    /// Graceful recycles waiting for a surge slot, oldest first.
    recycle_queue: VecDeque<(WorkerId, Reason)>,
    /// Recycled workers whose replacements are still to start, and why they were recycled.
    replacing: VecDeque<(WorkerId, Reason)>,
    next_ping: u64,
    /// Set by Shutdown (with the phase): running calls may finish until the deadline; who
    /// waits for the end.
    shutdown: Option<(Instant, Vec<oneshot::Sender<()>>)>,
    counts: counts::PoolCounts,
    rng: fastrand::Rng,
    call_metrics: PoolCallMetrics,
    /// Replies of the current batch of messages, joined per connection (`queue_reply`),
    /// sent once the batch is handled: a worker that finished a call gets its next one
    /// before its caller gets the reply.
    replies: Vec<(ReplyTx, ReplyFrame)>,
    /// Where this pool's template sends its news (one sink for the pool's life).
    template_sink: TemplateSink,
    /// The running template of a preloaded pool, once it reported ready.
    template: Option<preload::TemplateProcs>,
    /// Published for the probes at the start and after every batch of messages or timers.
    facts: Arc<PoolFacts>,
}

impl PoolActor {
    pub fn new(spec: PoolSpec, deps: PoolDeps, me: mpsc::UnboundedSender<PoolMsg>) -> PoolActor {
        let call_metrics = deps.metrics.calls_of(&spec.name);
        PoolActor {
            deps,
            workers: BTreeMap::new(),
            queue: VecDeque::new(),
            affinity: HashMap::new(),
            restart: RestartHistory::default(),
            restart_at: None,
            owed_restarts: VecDeque::new(),
            phase: Phase::Starting,
            failing_cause: None,
            reached_size: false,
            size: spec.size,
            spec,
            drained_out: 0,
            drain_waiters: Vec::new(),
            worker_waiters: Vec::new(),
            recycle_queue: VecDeque::new(),
            replacing: VecDeque::new(),
            next_ping: 1,
            shutdown: None,
            counts: counts::PoolCounts::default(),
            rng: fastrand::Rng::new(),
            call_metrics,
            replies: Vec::new(),
            facts: Arc::default(),
            template_sink: preload::sink(me.clone()),
            template: None,
            me,
        }
    }

    /// Moves the pool's phase through its table. An event the table has no answer for is a
    /// bug: it fails tests, and leaves the phase as it is in a release build.
    fn move_phase(&mut self, event: PhaseEvent) {
        match next_phase(self.phase, event, self.reached_size) {
            Ok(phase) => self.phase = phase,
            Err(e) => {
                debug_assert!(false, "pool {}: {e}", self.spec.name);
                tracing::error!(pool = %self.spec.name, "{e}");
            }
        }
    }

    fn emit(&self, kind: EventKind, worker: Option<WorkerId>, pid: Option<u32>, fill: impl FnOnce(&mut Event)) {
        let mut ev = Event {
            ts: super::now_rfc3339(),
            event: kind,
            pool: self.spec.name.clone(),
            worker,
            pid,
            reason: None,
            exit_status: None,
            message: None,
            backoff_ms: None,
            replaces: None,
        };
        fill(&mut ev);
        self.deps.events.emit(ev);
    }
}
