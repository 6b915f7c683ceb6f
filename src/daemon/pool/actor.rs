//! The pool's tokio task: it only feeds and carries out. Messages from its mailbox become
//! the core's inputs, in batches (each batch followed by one look at the queue and the
//! timers); its one timer becomes the core's timer input; the core's effects become I/O:
//! frames on worker pipes, replies on callers' connections, spawns and signals on the
//! process thread, samples, logs and events. The core (`core.rs`) decides everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::call::CreditSink;
use super::core::{Command, CoreDeps, Input, PoolCore};
use super::effect::{Effect, Waiter};
use super::seams::WorkerPipe;
use super::{PoolDeps, PoolMsg};
use crate::daemon::probe::PoolFacts;
use crate::daemon::process::output;
use crate::daemon::process::spawn::{Spawned, TemplateSink};
use crate::ids::WorkerId;
use crate::proto::status::PoolStatus;

/// Messages handled before the core hands out the queue, looks at its timers and the
/// replies leave (a queue at `queue_max` is handed out at once, before a call is refused).
/// Enough that a burst of calls or answers is handled as one; few enough that a timer or a
/// reply is never held up long behind a flood.
const MAILBOX_BATCH: usize = 64;

pub struct PoolActor {
    pub(super) core: PoolCore,
    pub(super) deps: PoolDeps,
    /// Our own mailbox, for the process thread's callbacks and worker I/O tasks.
    me: mpsc::UnboundedSender<PoolMsg>,
    /// Each started worker's pipes, until the core forgets the worker.
    pipes: HashMap<WorkerId, Box<dyn WorkerPipe>>,
    /// Who waits for a drain or the shutdown, by the number the core knows them by.
    waiters: HashMap<Waiter, oneshot::Sender<()>>,
    next_waiter: u64,
    /// Published for the probes at the start and after every batch of messages or timers.
    facts: Arc<PoolFacts>,
    /// Where written chunks' credit comes back: our own mailbox.
    credit_sink: CreditSink,
}

impl PoolActor {
    pub fn new(spec: crate::spec::PoolSpec, deps: PoolDeps, me: mpsc::UnboundedSender<PoolMsg>) -> PoolActor {
        let core_deps = CoreDeps {
            ids: deps.ids.clone(),
            metrics: deps.metrics.clone(),
            clock: deps.clock,
            output: deps.output.clone(),
        };
        let credits = me.clone();
        let credit_sink: CreditSink = Arc::new(move |c| {
            let _ = credits.send(PoolMsg::Credit(c));
        });
        let news = me.clone();
        let sink = TemplateSink(Arc::new(move |n| {
            let _ = news.send(PoolMsg::Template(n));
        }));
        PoolActor {
            core: PoolCore::new(spec, core_deps, sink, fastrand::u64(..)),
            deps,
            me,
            pipes: HashMap::new(),
            waiters: HashMap::new(),
            next_waiter: 1,
            facts: Arc::default(),
            credit_sink,
        }
    }

    pub fn facts(&self) -> Arc<PoolFacts> {
        self.facts.clone()
    }

    /// Starts the pool's workers. Probes may ask before the actor hears anything (a
    /// template may import the app for a while): they see it as it is, not as defaults.
    pub fn begin(&mut self, now: Instant) {
        self.core.fill(now);
        self.carry_out();
        self.facts.publish(&self.core.snapshot());
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<PoolMsg>) {
        // One timer for the actor's life. It is moved only when the next deadline comes
        // before it: moving a timer earlier wakes the runtime's driver, and most messages
        // only push the deadline later. A timer that fires before anything is due costs a
        // look that finds nothing to do, and is then set to the real deadline.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            if let Some(due) = self.core.next_deadline()
                && armed.is_none_or(|at| due < at)
            {
                timer.as_mut().reset(due.into());
                armed = Some(due);
            }
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        // What else is in the mailbox is handled with it, and the queue
                        // and the timers are looked at once for all of it: the calls a
                        // worker gets from one batch go out together, and the replies to
                        // one connection in one write.
                        let now = Instant::now();
                        let mut tick = self.take(msg, now);
                        for _ in 1..MAILBOX_BATCH {
                            let Ok(msg) = rx.try_recv() else { break };
                            tick |= self.take(msg, now);
                        }
                        self.core.settle(tick, now);
                    }
                    None => break,
                },
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    // What is already in the mailbox comes first: taking a pipelined call
                    // back is only safe once every answer the worker's reader has
                    // delivered has been seen.
                    let now = Instant::now();
                    while let Ok(msg) = rx.try_recv() {
                        self.take(msg, now);
                    }
                    self.timer(Instant::now());
                }
            }
            self.carry_out();
            self.facts.publish(&self.core.snapshot());
            if self.core.finished() {
                self.core.end();
                self.carry_out();
                break;
            }
        }
    }

    /// Handles one message and what follows from it, effects included (the tests' way in).
    #[cfg(test)]
    pub(super) fn handle(&mut self, msg: PoolMsg, now: Instant) {
        let tick = self.take(msg, now);
        self.core.settle(tick, now);
        self.carry_out();
    }

    /// The timer fired at `now`, effects included.
    pub fn timer(&mut self, now: Instant) {
        let pipes = &self.pipes;
        let waiting = |id: WorkerId| pipes.get(&id).is_none_or(|p| p.reply_waiting());
        self.core.on_timer(now, &waiting);
        self.carry_out();
    }

    /// The timers looked at, without a timer input (the tests' way to settle).
    #[cfg(test)]
    pub(super) fn tick(&mut self, now: Instant) {
        self.core.tick(now);
        self.carry_out();
    }

    /// An operator's command, effects included (the tests' way in).
    #[cfg(test)]
    pub(super) fn command(&mut self, command: Command, now: Instant) -> Result<String, String> {
        let answer = self.core.command(command, now);
        self.carry_out();
        answer
    }

    /// Turns one message into an input (or answers it from the core's state); returns
    /// whether the timers need a look.
    fn take(&mut self, msg: PoolMsg, now: Instant) -> bool {
        let input = match msg {
            PoolMsg::Call(call) => Input::Call(call),
            PoolMsg::Ping(reply) => {
                let _ = reply.send(());
                return false;
            }
            PoolMsg::Status(reply) => {
                let _ = reply.send(self.status(now));
                return false;
            }
            PoolMsg::FromWorker { id, msg } => Input::Worker { id, msg },
            PoolMsg::Sample { id, sample } => Input::Sample { id, sample },
            PoolMsg::Template(news) => Input::Template(news),
            PoolMsg::TemplateSample(sample) => Input::TemplateSample(sample),
            PoolMsg::Spawned { id, result } => match result {
                Ok(spawned) => self.started(id, spawned),
                Err(e) => {
                    tracing::error!(pool = %self.core.name(), worker = %id, "{e}");
                    Input::StartFailed {
                        id,
                        error: e.to_string(),
                    }
                }
            },
            PoolMsg::Exited { id, info } => Input::Exited { id, info },
            PoolMsg::Shutdown { deadline, done } => Input::Shutdown {
                deadline,
                waiter: self.waiter(done),
            },
            PoolMsg::Recycle {
                worker,
                now: at_once,
                reply,
            } => return self.answer(Command::Recycle { worker, now: at_once }, reply, now),
            PoolMsg::Drain { worker, done, reply } => {
                let done = done.map(|d| self.waiter(d));
                return self.answer(Command::Drain { worker, done }, reply, now);
            }
            PoolMsg::Resume { reply } => return self.answer(Command::Resume, reply, now),
            PoolMsg::Scale { size, reply } => return self.answer(Command::Scale { size }, reply, now),
            PoolMsg::Reconfigure(spec) => Input::Reconfigure(spec),
            PoolMsg::CallerGone(caller) => Input::CallerGone(caller),
            PoolMsg::Cancel { caller, client_id } => Input::Cancel { caller, client_id },
            PoolMsg::Credit(credits) => Input::Credit(credits),
            PoolMsg::DaemonBudget(allowance) => Input::DaemonBudget(allowance),
        };
        self.core.feed(input, now)
    }

    fn answer(&mut self, command: Command, reply: oneshot::Sender<Result<String, String>>, now: Instant) -> bool {
        let _ = reply.send(self.core.command(command, now));
        true
    }

    pub fn status(&self, now: Instant) -> PoolStatus {
        self.core.status(now)
    }

    fn waiter(&mut self, tx: oneshot::Sender<()>) -> Waiter {
        let waiter = Waiter(self.next_waiter);
        self.next_waiter += 1;
        self.waiters.insert(waiter, tx);
        waiter
    }

    /// A started worker: its output captured, its pipes opened; what the core needs to
    /// know of it.
    fn started(&mut self, id: WorkerId, spawned: Spawned) -> Input {
        let pid = spawned.pid;
        output::capture(&self.deps.output, self.core.name(), id, spawned.stdout, spawned.stderr);
        let pipes = match (spawned.to_worker, spawned.from_worker) {
            (Some(to), Some(from)) => Some(match self.deps.pipes.open(id, pid, to, from, self.me.clone()) {
                Ok(pipe) => {
                    self.pipes.insert(id, pipe);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }),
            _ => None,
        };
        Input::Started {
            id,
            pid,
            started_at: spawned.started_at,
            pipes,
        }
    }

    /// Carries out what the core asked for, in its order. A pipe that refuses a write is
    /// fed back, and what the core decides about it carried out in turn.
    fn carry_out(&mut self) {
        loop {
            let effects = self.core.take_effects();
            if effects.is_empty() {
                return;
            }
            let mut refused = Vec::new();
            for effect in effects {
                if let Some(id) = self.carry(effect) {
                    refused.push(id);
                }
            }
            for id in refused {
                self.core.handle(Input::PipeRefused(id), Instant::now());
            }
        }
    }

    /// Carries out one effect; returns the worker whose pipe refused a write.
    fn carry(&mut self, effect: Effect) -> Option<WorkerId> {
        match effect {
            Effect::Write { worker, frames } => {
                let refused = self.pipes.get(&worker).is_none_or(|p| p.send(frames).is_err());
                return refused.then_some(worker);
            }
            Effect::Forget(id) => {
                self.pipes.remove(&id);
                self.deps.output.worker_exited(id);
            }
            Effect::Reply { to, mut frame } => {
                if !frame.credits.tags.is_empty() {
                    frame.credits.on_written = Some(self.credit_sink.clone());
                }
                // A caller that hung up gets nothing (its chunks' credit is told at once).
                let _ = to.send(frame);
            }
            Effect::Spawn(req) => {
                let id = req.id;
                let (spawned_tx, exit_tx) = (self.me.clone(), self.me.clone());
                self.deps.spawner.spawn(
                    *req,
                    Box::new(move |result| {
                        let _ = spawned_tx.send(PoolMsg::Spawned { id, result });
                    }),
                    Box::new(move |info| {
                        let _ = exit_tx.send(PoolMsg::Exited { id, info });
                    }),
                );
            }
            Effect::Signal { pid, signal } => self.deps.spawner.signal_group(pid, signal),
            Effect::ReleaseTemplate => self.deps.spawner.release_template(Some(self.core.name())),
            Effect::Watch {
                pid,
                worker,
                metric,
                shared_pages,
            } => {
                if let Some(monitor) = &self.deps.monitor {
                    let me = self.me.clone();
                    let sink: Box<dyn Fn(_) + Send> = match worker {
                        Some(id) => Box::new(move |sample| {
                            let _ = me.send(PoolMsg::Sample { id, sample });
                        }),
                        None => Box::new(move |sample| {
                            let _ = me.send(PoolMsg::TemplateSample(sample));
                        }),
                    };
                    monitor.watch_with(pid, metric, shared_pages, sink);
                }
            }
            Effect::SampleNow(pid) => {
                if let Some(monitor) = &self.deps.monitor {
                    monitor.sample_now(pid);
                }
            }
            Effect::Unwatch(pid) => {
                if let Some(monitor) = &self.deps.monitor {
                    monitor.unwatch(pid);
                }
            }
            Effect::OutputReady(id) => self.deps.output.worker_ready(self.core.name(), id),
            Effect::TemplateLine { stream, line } => self.deps.output.push_template(self.core.name(), stream, line),
            Effect::Event(mut ev) => {
                ev.ts = crate::daemon::now_rfc3339();
                self.deps.events.emit(*ev);
            }
            Effect::Wake(waiter) => {
                if let Some(tx) = self.waiters.remove(&waiter) {
                    let _ = tx.send(());
                }
            }
        }
        None
    }
}
