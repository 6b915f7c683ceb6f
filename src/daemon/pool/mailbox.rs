//! The actor's loop: its mailbox handled in batches (each batch is followed by one look at
//! the queue and the timers and one round of replies, joined per connection), and its one
//! timer.

use std::time::Instant;

use tokio::sync::mpsc;

use super::{PoolActor, PoolMsg, ReplyFrame, ReplyTx};

/// Messages handled before the actor hands out the queue, looks at its timers and sends
/// its replies (a queue at `queue_max` is handed out at once, before a call is refused).
/// Enough that a burst of calls or answers is handled as one; few enough that a timer or
/// a reply is never held up long behind a flood.
const MAILBOX_BATCH: usize = 64;

impl PoolActor {
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<PoolMsg>) {
        // One timer for the actor's life. It is moved only when the next deadline comes
        // before it: moving a timer earlier wakes the runtime's driver, and most messages
        // only push the deadline later. A timer that fires before anything is due costs a
        // `tick` that finds nothing to do, and is then set to the real deadline.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            if let Some(due) = self.next_deadline()
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
                        // worker gets from one batch go in one write, and the replies to
                        // one connection in one.
                        let now = Instant::now();
                        let mut tick = self.handle_one(msg, now);
                        for _ in 1..MAILBOX_BATCH {
                            let Ok(msg) = rx.try_recv() else { break };
                            tick |= self.handle_one(msg, now);
                        }
                        self.settle(tick, now);
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
                        self.handle_one(msg, now);
                    }
                    let now = Instant::now();
                    self.take_back_overdue(now);
                    self.tick(now);
                    // Timers change what probes read too (a worker killed, a drain over).
                    self.facts.publish(&self.snapshot());
                }
            }
            self.send_replies();
            if self.finished() {
                if !self.spec.preload.is_empty() {
                    self.deps.spawner.release_template(Some(&self.spec.name));
                }
                if let Some((_, replies)) = self.shutdown.take() {
                    for done in replies {
                        let _ = done.send(());
                    }
                }
                break;
            }
        }
    }

    /// Handles one message and what follows from it.
    pub fn handle(&mut self, msg: PoolMsg, now: Instant) {
        let tick = self.handle_one(msg, now);
        self.settle(tick, now);
    }

    /// After a batch of messages: the timers if any message may have moved them, and the
    /// queue in any case (a call only joins it, an answer frees a worker).
    fn settle(&mut self, tick: bool, now: Instant) {
        if tick {
            self.tick(now);
        } else {
            self.dispatch(now);
        }
        self.facts.publish(&self.snapshot());
    }

    /// Handles one message without looking at the queue or the timers; returns whether
    /// the timers need a look (`tick`) before the next wait.
    fn handle_one(&mut self, msg: PoolMsg, now: Instant) -> bool {
        match msg {
            PoolMsg::Call(call) => {
                self.on_call(call, now);
                return false;
            }
            PoolMsg::Ping(reply) => {
                let _ = reply.send(());
                return false;
            }
            PoolMsg::Status(reply) => {
                let _ = reply.send(self.status(now));
                return false;
            }
            PoolMsg::FromWorker { id, msg } => self.on_worker_msg(id, msg, now),
            PoolMsg::Sample { id, sample } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.record_sample(sample);
                }
                self.check_triggers(id, now);
                self.fill(now);
                return false;
            }
            PoolMsg::Template(news) => {
                self.on_template_news(news);
                return false;
            }
            PoolMsg::TemplateSample(sample) => {
                self.on_template_sample(sample);
                return false;
            }
            PoolMsg::Spawned { id, result } => self.on_spawned(id, result, now),
            PoolMsg::Exited { id, info } => self.on_exited(id, info, now),
            PoolMsg::Shutdown { deadline, done } => self.begin_shutdown(deadline, done, now),
            PoolMsg::Recycle {
                worker,
                now: at_once,
                reply,
            } => {
                let _ = reply.send(self.recycle_command(worker, at_once, now));
            }
            PoolMsg::Drain { worker, done, reply } => {
                let _ = reply.send(self.drain_command(worker, done, now));
            }
            PoolMsg::Resume { reply } => {
                let _ = reply.send(self.resume_command(now));
            }
            PoolMsg::Scale { size, reply } => {
                let _ = reply.send(self.scale_command(size, now));
            }
            PoolMsg::Reconfigure(spec) => self.reconfigure(*spec, now),
            PoolMsg::CallerGone(caller) => self.caller_gone(&caller, now),
        }
        true
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

    /// Sends the replies the last batch of messages produced.
    pub(super) fn send_replies(&mut self) {
        for (tx, frame) in self.replies.drain(..) {
            // A caller that hung up gets nothing.
            let _ = tx.send(frame);
        }
    }

    pub(super) fn finished(&self) -> bool {
        self.phase.shutting_down() && self.workers.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
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
}
