//! The pool core: all of a pool's state and every decision, without I/O. Inputs (a call, a
//! caller gone, a worker's frame, a start, an exit, a sample, a timer, an operator's
//! command) go in with `now`; what should happen comes out as `Effect`s, which the actor
//! (`actor.rs`) carries out. No socket, no task, no clock and no `/proc` in here, so the
//! tests drive it input by input and the simulation (`tests/sim.rs`) over simulated time.
//!
//! Its state is a few parts with one owner each: the calls waiting and their sessions
//! (`parts::Calls`), the workers (each with its window of calls), restarts and the
//! crash-loop breaker (`parts::Restarts`), recycles and drains (`parts::Recycling`), and
//! the pool's phase.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::call::{ReplyFrame, ReplyTx, StreamCredit};
use super::effect::{Effect, Waiter};
use super::parts::{Calls, Recycling, Restarts, TemplateProcs};
use super::seams::{WorkerClock, WorkerMsg};
use super::worker::Worker;
use super::{Call, counts};
use crate::daemon::metrics::{Metrics, PoolCallMetrics};
use crate::daemon::monitor::TreeSample;
use crate::daemon::process::children::ExitInfo;
use crate::daemon::process::output::OutputStore;
use crate::daemon::process::spawn::{TemplateNews, TemplateSink};
use crate::ids::{IdAllocator, WorkerId};
use crate::lifecycle::phase::{Phase, PhaseEvent, next_phase};
use crate::proto::event::{Event, EventKind};
use crate::spec::PoolSpec;

/// What the core needs that is not its own state: worker ids (unique in the daemon), the
/// metrics it counts into, the workers' clock (a fixed mapping, read once), and the
/// workers' captured output, only read, to quote a crash in a failing pool's reason.
#[derive(Clone)]
pub struct CoreDeps {
    pub ids: Arc<IdAllocator>,
    pub metrics: Arc<Metrics>,
    pub clock: WorkerClock,
    pub output: Arc<OutputStore>,
}

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
    /// A worker's pipe did not take what pitd wrote: the worker is not reading.
    PipeRefused(WorkerId),
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

pub struct PoolCore {
    pub(super) spec: PoolSpec,
    pub(super) deps: CoreDeps,
    pub(super) workers: BTreeMap<WorkerId, Worker>,
    pub(super) calls: Calls,
    pub(super) restarts: Restarts,
    pub(super) recycling: Recycling,
    /// The pool's phase (`lifecycle::phase`): moved only by `move_phase`.
    pub(super) phase: Phase,
    /// It has had as many ready workers as its size at least once (`pitctl probe startup`).
    pub(super) reached_size: bool,
    /// Workers kept: the spec's size until `pitctl scale` changes it.
    pub(super) size: u32,
    pub(super) next_ping: u64,
    /// Set by Shutdown (with the phase): running calls may finish until the deadline; who
    /// waits for the end.
    pub(super) shutdown: Option<(Instant, Vec<Waiter>)>,
    pub(super) counts: counts::PoolCounts,
    /// What this pool may use under the daemon's `memory_budget`, as the supervisor last
    /// said.
    pub(super) daemon_allowance: Option<u64>,
    pub(super) rng: fastrand::Rng,
    pub(super) call_metrics: PoolCallMetrics,
    /// Effects of the current input, in order (`take_effects`).
    effects: Vec<Effect>,
    /// Replies of the current batch of inputs, joined per connection (`queue_reply`), which
    /// leave after the other effects: a worker that finished a call gets its next one
    /// before its caller gets the reply.
    replies: Vec<(ReplyTx, ReplyFrame)>,
    /// Where this pool's template sends its news (one sink for the pool's life).
    pub(super) template_sink: TemplateSink,
    /// The running template of a preloaded pool, once it reported ready.
    pub(super) template: Option<TemplateProcs>,
}

impl PoolCore {
    pub fn new(spec: PoolSpec, deps: CoreDeps, template_sink: TemplateSink, seed: u64) -> PoolCore {
        let call_metrics = deps.metrics.calls_of(&spec.name);
        PoolCore {
            deps,
            workers: BTreeMap::new(),
            calls: Calls::default(),
            restarts: Restarts::default(),
            recycling: Recycling::default(),
            phase: Phase::Starting,
            reached_size: false,
            size: spec.size,
            spec,
            next_ping: 1,
            shutdown: None,
            counts: counts::PoolCounts::default(),
            daemon_allowance: None,
            rng: fastrand::Rng::with_seed(seed),
            call_metrics,
            effects: Vec::new(),
            replies: Vec::new(),
            template_sink,
            template: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Takes one input without looking at the queue or the timers; returns whether the
    /// timers need a look before the next wait (`settle`).
    pub fn feed(&mut self, input: Input, now: Instant) -> bool {
        match input {
            Input::Call(call) => {
                self.on_call(call, now);
                return false;
            }
            Input::Sample { id, sample } => {
                let max_rss = self.spec.recycle.max_rss;
                if let Some(w) = self.workers.get_mut(&id) {
                    w.record_sample(sample, max_rss);
                }
                self.check_triggers(id, now);
                self.check_budget(now);
                self.fill(now);
                return false;
            }
            Input::DaemonBudget(allowance) => {
                self.daemon_allowance = allowance;
                self.check_budget(now);
            }
            Input::Template(news) => {
                self.on_template_news(news);
                return false;
            }
            Input::TemplateSample(sample) => {
                self.on_template_sample(sample);
                return false;
            }
            // A worker's answer goes straight to the call half; the rest of what workers
            // say is the worker half's (`starting`, `exits`).
            Input::Worker {
                id,
                msg: WorkerMsg::Reply { req_id, error, body },
            } => self.on_reply(id, req_id, error, body, now),
            // Chunks and credit move no timer that matters: a stream's idle deadline only
            // moves later, and the timer armed for the earlier one just looks again.
            Input::Worker {
                id,
                msg: WorkerMsg::Chunk { req_id, body },
            } => {
                self.on_chunk(id, req_id, body, now);
                return false;
            }
            Input::Credit(credits) => {
                self.on_credit(credits);
                return false;
            }
            Input::Cancel { caller, client_id } => self.cancel(&caller, &client_id, now),
            Input::Worker { id, msg } => self.on_worker_msg(id, msg, now),
            Input::Started {
                id,
                pid,
                started_at,
                pipes,
            } => self.on_started(id, pid, started_at, pipes, now),
            Input::StartFailed { id, error } => self.on_start_failed(id, error, now),
            Input::Exited { id, info } => self.on_exited(id, info, now),
            Input::PipeRefused(id) => self.pipe_refused(id),
            Input::Shutdown { deadline, waiter } => self.begin_shutdown(deadline, waiter, now),
            Input::Reconfigure(spec) => self.reconfigure(*spec, now),
            Input::CallerGone(caller) => self.caller_gone(&caller, now),
        }
        true
    }

    /// An operator's command and what follows from it.
    pub fn command(&mut self, command: Command, now: Instant) -> Result<String, String> {
        let answer = match command {
            Command::Recycle { worker, now: at_once } => self.recycle_command(worker, at_once, now),
            Command::Drain { worker, done } => self.drain_command(worker, done, now),
            Command::Resume => self.resume_command(now),
            Command::Scale { size } => self.scale_command(size, now),
        };
        self.settle(true, now);
        answer
    }

    /// Takes one input and what follows from it (a batch of one).
    pub fn handle(&mut self, input: Input, now: Instant) {
        let tick = self.feed(input, now);
        self.settle(tick, now);
    }

    /// After a batch of inputs: the timers if any input may have moved them, and the queue
    /// in any case (a call only joins it, an answer frees a worker).
    pub fn settle(&mut self, tick: bool, now: Instant) {
        if tick {
            self.tick(now);
        } else {
            self.dispatch(now);
        }
    }

    /// The timer fired. `reply_waiting` says whether a worker has written something the
    /// actor has not fed in yet (when unsure: yes): a pipelined call is taken back only
    /// once every answer the worker wrote has been seen.
    pub fn on_timer(&mut self, now: Instant, reply_waiting: &dyn Fn(WorkerId) -> bool) {
        self.take_back_overdue(now, reply_waiting);
        self.tick(now);
    }

    /// Timers: overdue kills and calls, stable workers ending a crash loop, replacements.
    pub fn tick(&mut self, now: Instant) {
        self.expire_calls(now);
        self.expire_exits(now);
        self.expire_workers(now);
        self.check_health(now);
        self.check_ages(now);
        self.finish_drains(now);
        self.advance_recycles(now);
        self.fill(now);
        self.dispatch(now);
    }

    /// The earliest instant a timer is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.workers_deadline(),
            self.calls_deadline(),
            self.health_deadline(),
            self.exits_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Shut down and every worker reaped: the actor ends.
    pub fn finished(&self) -> bool {
        self.phase.shutting_down() && self.workers.is_empty()
    }

    /// What the last inputs asked for, in order; replies last.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        let mut effects = std::mem::take(&mut self.effects);
        effects.extend(self.replies.drain(..).map(|(to, frame)| Effect::Reply { to, frame }));
        effects
    }

    /// When the pool has ended: the template goes, and who waited for the shutdown is woken.
    pub fn end(&mut self) {
        if !self.spec.preload.is_empty() {
            self.effects.push(Effect::ReleaseTemplate);
        }
        if let Some((_, waiters)) = self.shutdown.take() {
            self.effects.extend(waiters.into_iter().map(Effect::Wake));
        }
    }

    pub(super) fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// Frames for a worker, if pitd still writes to it (it has pipes and was not killed).
    /// Returns whether they were handed to its pipe.
    pub(super) fn write(&mut self, id: WorkerId, frames: Vec<u8>) -> bool {
        if !self.workers.get(&id).is_some_and(|w| w.writable) {
            return false;
        }
        self.effects.push(Effect::Write { worker: id, frames });
        true
    }

    /// Queues a reply for the end of the batch. Replies to one connection are joined, in
    /// the order they are made, so they leave in one write: a reply joins the latest frame
    /// of its connection among the last few queued; past that (thousands of replies at
    /// shutdown) it starts a frame of its own, sent after the earlier ones.
    pub(super) fn queue_reply(&mut self, tx: ReplyTx, frame: ReplyFrame) {
        const JOIN_WITHIN: usize = 8;
        match self
            .replies
            .iter_mut()
            .rev()
            .take(JOIN_WITHIN)
            .find(|(to, _)| to.same_peer(&tx))
        {
            Some((_, joined)) => joined.join(frame),
            None => self.replies.push((tx, frame)),
        }
    }

    /// Moves the pool's phase through its table. An event the table has no answer for is a
    /// bug: it fails tests, and leaves the phase as it is in a release build.
    pub(super) fn move_phase(&mut self, event: PhaseEvent) {
        match next_phase(self.phase, event, self.reached_size) {
            Ok(phase) => self.phase = phase,
            Err(e) => {
                debug_assert!(false, "pool {}: {e}", self.spec.name);
                tracing::error!(pool = %self.spec.name, "{e}");
            }
        }
    }

    pub(super) fn emit(
        &mut self,
        kind: EventKind,
        worker: Option<WorkerId>,
        pid: Option<u32>,
        fill: impl FnOnce(&mut Event),
    ) {
        let mut ev = Event {
            // Stamped when the actor publishes it: the core reads no clock.
            ts: String::new(),
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
        self.effects.push(Effect::Event(Box::new(ev)));
    }
}
