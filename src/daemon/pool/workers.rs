//! The worker half of the pool actor: starting workers, readiness, exits, restarts with
//! backoff and the crash-loop breaker, stopping and killing.

use std::time::{Duration, Instant};

use super::pipe::WorkerMsg;
use super::routing::PIPELINE_DEPTH;
use super::window::WindowPolicy;
use super::worker::{Replies, Worker};
use super::{PoolActor, PoolMsg};
use crate::daemon::monitor;
use crate::daemon::worker::children::ExitInfo;
use crate::daemon::worker::output;
use crate::daemon::worker::spawn::{SpawnError, SpawnRequest, Spawned, TemplateRequest};
use crate::ids::WorkerId;
use crate::lifecycle::{
    Failure, Health, PoolVerdict, Reason, WorkerEvent, WorkerLimits, WorkerState, exit_reason, exit_reason_with_cpu,
};
use crate::proto::call::ErrorKind;
use crate::proto::event::EventKind;
use crate::proto::worker::MAX_FRAME;
use crate::spec::Protocol;

/// A supervise-only worker has no ready frame: one that stays up this long counts as a
/// successful start (this is what ends a `failing` state).
pub const SUPERVISED_STABLE_AFTER: Duration = Duration::from_secs(1);

/// The resolution of the runtime's timers.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// How long an exited worker's remaining replies are waited for (its pipe normally ends
/// at once; a descendant that escaped its group may hold it open).
const EXIT_REPLIES_WAIT: Duration = Duration::from_millis(200);

impl PoolActor {
    /// The calls one worker of this pool may hold: `concurrency` running; with one, up to
    /// `PIPELINE_DEPTH` more pipelined behind it (a worker running several at once starts
    /// each as it arrives: nothing waits in its pipe).
    pub(super) fn window_policy(&self) -> WindowPolicy {
        let slots = self.spec.concurrency.max(1) as usize;
        WindowPolicy {
            slots,
            pipeline_depth: if slots == 1 { PIPELINE_DEPTH } else { 0 },
        }
    }

    /// Workers that count towards `size`: live and not being retired.
    pub(super) fn live_count(&self) -> usize {
        self.workers.values().filter(|w| w.live() && w.retire.is_none()).count()
    }

    fn starting_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.state() == WorkerState::Starting)
            .count()
    }

    pub(super) fn ready_count(&self) -> usize {
        self.workers.values().filter(|w| w.is_ready()).count()
    }

    /// Starts workers until the pool has `size` live ones, unless a backoff or a failing
    /// state says to wait (then one probe at a time).
    pub(super) fn fill(&mut self, now: Instant) {
        // The runtime's timers tick in whole milliseconds: a backoff due within the next one
        // is due now (a 1 ms backoff would otherwise cost 2).
        if self.shutdown.is_some() || self.restart_at.is_some_and(|t| now + TIMER_SLACK < t) {
            return;
        }
        self.restart_at = None;
        let missing = self.desired().saturating_sub(self.live_count());
        let allowed = if self.failing.is_some() {
            missing.min(1).saturating_sub(self.starting_count())
        } else {
            missing
        };
        for _ in 0..allowed {
            self.start_worker(now);
        }
    }

    fn start_worker(&mut self, now: Instant) {
        let id = self.deps.ids.next();
        let owed = self.owed_restarts.pop_front();
        if owed.is_some() {
            self.restarts += 1;
            self.deps.metrics.restart(&self.spec.name);
        }
        let mut env: Vec<(String, String)> = self.spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.push(("PIT_MAX_FRAME".into(), MAX_FRAME.to_string()));
        if self.spec.protocol == Protocol::Pit {
            env.push(("PIT_CONCURRENCY".into(), self.spec.concurrency.to_string()));
        }
        let req = SpawnRequest {
            pool: self.spec.name.clone(),
            id,
            argv: self.spec.argv(),
            cwd: self.spec.cwd.clone(),
            env,
            rlimits: self.spec.rlimits.clone(),
            credentials: self
                .spec
                .user
                .as_ref()
                .map(|u| (u.uid, self.spec.group.as_ref().map_or(u.gid, |g| g.gid))),
            protocol_fds: self.spec.protocol == Protocol::Pit,
            template: self.spec.template_argv().map(|argv| TemplateRequest {
                argv,
                startup_timeout: self.spec.startup_timeout,
                news: self.template_sink.clone(),
            }),
        };
        let limits = WorkerLimits::draw(&self.spec.recycle, &mut self.rng);
        let worker = Worker::new(
            id,
            now,
            limits,
            self.replacing.pop_front().or(owed),
            self.window_policy(),
        );
        self.workers.insert(id, worker);
        let (spawned_tx, exit_tx) = (self.me.clone(), self.me.clone());
        self.deps.spawner.spawn(
            req,
            Box::new(move |result| {
                let _ = spawned_tx.send(PoolMsg::Spawned { id, result });
            }),
            Box::new(move |info| {
                let _ = exit_tx.send(PoolMsg::Exited { id, info });
            }),
        );
    }

    pub(super) fn on_spawned(&mut self, id: WorkerId, result: Result<Spawned, SpawnError>, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        let spawned = match result {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(pool = %self.spec.name, worker = %id, "{e}");
                self.workers.remove(&id);
                let status = format!("could not start: {}", e.source);
                let booked = self.count_failure(id, Reason::Crash, Failure::Start, now);
                self.emit(EventKind::WorkerExited, Some(id), None, |ev| {
                    ev.reason = Some(Reason::Crash);
                    ev.message = Some(e.to_string());
                    ev.backoff_ms = booked.map(|b| b.backoff_ms());
                });
                return self.announce_failing(id, status, booked);
            }
        };
        w.pid = Some(spawned.pid);
        w.started_at = spawned.started_at;
        let replaced = w.started_for;
        let pid = spawned.pid;
        output::capture(&self.deps.output, &self.spec.name, id, spawned.stdout, spawned.stderr);
        if let Some(monitor) = &self.deps.monitor {
            let me = self.me.clone();
            let sink = Box::new(move |sample| {
                let _ = me.send(PoolMsg::Sample { id, sample });
            });
            let shared_pages = !self.spec.preload.is_empty();
            monitor.watch_with(pid, self.spec.recycle.memory_metric, shared_pages, sink);
        }
        if let (Some(to), Some(from)) = (spawned.to_worker, spawned.from_worker) {
            match self.deps.pipes.open(id, to, from, self.me.clone()) {
                Ok(pipe) => {
                    w.pipe = Some(pipe);
                    w.replies = Replies::Open;
                }
                Err(e) => {
                    tracing::error!(pool = %self.spec.name, worker = %id, "cannot use the worker's pipes: {e}");
                    self.kill_worker(id, Reason::ProtocolError, format!("cannot use its pipes: {e}"));
                }
            }
        }
        self.spare_taken(pid);
        self.emit(EventKind::WorkerStarted, Some(id), Some(pid), |ev| {
            if let Some((old, reason)) = replaced {
                ev.replaces = Some(old);
                ev.reason = Some(reason);
            }
        });
        if self.shutdown.is_some() {
            self.stop_worker(id, None, now);
        } else if self.spec.protocol == Protocol::None {
            // Supervise-only workers have no ready frame: running is ready.
            self.worker_ready(id, Vec::new(), None, now);
        }
    }

    pub(super) fn on_worker_msg(&mut self, id: WorkerId, msg: WorkerMsg, now: Instant) {
        match msg {
            WorkerMsg::Ready(ready) => {
                if ready.protocol != 1 {
                    let why = format!("speaks protocol version {}, pitd speaks 1", ready.protocol);
                    return self.protocol_error(id, &why, now);
                }
                if ready.concurrency != self.spec.concurrency {
                    // A runtime that does not run what the spec asks would be given calls
                    // it cannot start.
                    let why = format!(
                        "runs {} call(s) at once, the pool's concurrency is {} (is its pit package older than pitd?)",
                        ready.concurrency, self.spec.concurrency
                    );
                    tracing::error!(pool = %self.spec.name, worker = %id, "{why}");
                    return self.kill_worker(id, Reason::ProtocolError, format!("protocol error ({why})"));
                }
                self.worker_ready(id, ready.handlers, ready.gil_enabled, now)
            }
            WorkerMsg::Reply { req_id, error, body } => self.on_reply(id, req_id, error, body, now),
            WorkerMsg::Pong { req_id } => self.on_pong(id, req_id, now),
            WorkerMsg::ProtocolError(why) => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.replies = Replies::Broken;
                }
                self.protocol_error(id, &why, now);
                self.settle_exit(id, now);
            }
            WorkerMsg::Closed => {
                let Some(w) = self.workers.get_mut(&id) else { return };
                if w.exit.is_none() && w.live() && w.pid.is_some_and(|pid| !monitor::exiting(pid)) {
                    // A live worker closed fd 4: nothing it answers can reach pitd, and
                    // it may go on to the calls pipelined behind (its replies going
                    // nowhere), so those count as lost, not as never started.
                    w.replies = Replies::Broken;
                    return self.protocol_error(id, "closed its reply pipe (fd 4) while alive", now);
                }
                w.replies = Replies::Done;
                self.settle_exit(id, now);
            }
        }
    }

    /// A worker that broke the fd 3/4 protocol: killed at once and replaced (reason
    /// `protocol_error`). One that was not ready yet is a failed start, which the
    /// crash-loop breaker counts like any other.
    fn protocol_error(&mut self, id: WorkerId, why: &str, now: Instant) {
        let Some(w) = self.workers.get(&id) else { return };
        let starting = w.state() == WorkerState::Starting;
        tracing::error!(pool = %self.spec.name, worker = %id, "protocol error, killing the worker: {why}");
        self.kill_worker(id, Reason::ProtocolError, format!("protocol error ({why})"));
        if starting {
            let booked = self.count_failure(id, Reason::ProtocolError, Failure::Start, now);
            self.announce_failing(id, format!("protocol error: {why}"), booked);
        }
    }

    /// Settles an exit that was waiting for the worker's last replies, once they are in
    /// (or no longer expected).
    fn settle_exit(&mut self, id: WorkerId, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if w.replies != Replies::Open
            && let Some((info, _)) = w.exit.take()
        {
            self.finish_exit(id, info, now);
        }
    }

    /// Exits whose wait for the last replies is over.
    pub(super) fn expire_exits(&mut self, now: Instant) {
        let overdue: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.exit.as_ref().is_some_and(|(_, until)| *until <= now))
            .map(|w| w.id)
            .collect();
        for id in overdue {
            if let Some((info, _)) = self.workers.get_mut(&id).and_then(|w| w.exit.take()) {
                tracing::warn!(pool = %self.spec.name, worker = %id, "its reply pipe stayed open after it exited");
                self.finish_exit(id, info, now);
            }
        }
    }

    pub(super) fn exits_deadline(&self) -> Option<Instant> {
        self.workers
            .values()
            .filter_map(|w| w.exit.as_ref().map(|(_, t)| *t))
            .min()
    }

    fn worker_ready(&mut self, id: WorkerId, handlers: Vec<String>, gil_enabled: Option<bool>, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if w.state() != WorkerState::Starting {
            // Stopped or killed while it started, or a second READY: nothing to do.
            tracing::debug!(pool = %self.spec.name, worker = %id, state = %w.state(), "ready frame ignored");
            return;
        }
        w.apply(WorkerEvent::Ready);
        w.ready_at = Some(now);
        w.idle_since = now;
        w.last_seen = now;
        w.health = Health::Ok;
        w.gil_enabled = gil_enabled;
        w.handlers = handlers;
        let pid = w.pid;
        // Its memory from the moment it counts as ready, not one monitor interval later.
        if let (Some(monitor), Some(pid)) = (&self.deps.monitor, pid) {
            monitor.sample_now(pid);
        }
        self.emit(EventKind::WorkerReady, Some(id), pid, |_| {});
        if !self.reached_size && self.ready_count() >= self.desired() {
            self.reached_size = true;
        }
        self.retire_replaced(now);
    }

    /// A reaped worker. Its calls are settled once everything it wrote before it died has
    /// been read: a reply already in its pipe answers its call, and a pipelined call is
    /// known not to have started unless the call ahead of it was answered.
    pub(super) fn on_exited(&mut self, id: WorkerId, info: ExitInfo, now: Instant) {
        if let Some(w) = self.workers.get_mut(&id)
            && w.replies == Replies::Open
            && !w.calls.is_empty()
        {
            w.exit = Some((info, now + EXIT_REPLIES_WAIT));
            return;
        }
        self.finish_exit(id, info, now);
    }

    fn finish_exit(&mut self, id: WorkerId, info: ExitInfo, now: Instant) {
        self.deps.output.worker_exited(id);
        let Some(mut w) = self.workers.remove(&id) else { return };
        if let (Some(monitor), Some(pid)) = (&self.deps.monitor, w.pid) {
            monitor.unwatch(pid);
        }
        let planned = w.stop_reason.is_some() || w.state() == WorkerState::Stopping;
        let cpu_limit = self.spec.rlimits.cpu.map(Duration::from_secs);
        // A planned stop carries the reason pitd stopped it for (none for a plain stop,
        // such as shutdown); an unplanned exit is a crash or a CPU-limit kill.
        let reason = if planned {
            w.stop_reason
        } else {
            Some(match info.cpu_time {
                Some(used) => exit_reason_with_cpu(&info.status, used, cpu_limit),
                None => exit_reason(&info.status),
            })
        };
        let status = info.status.to_string();
        // What the worker's lost calls are told, after its id.
        let ended = match &w.kill_detail {
            Some(detail) => format!("was killed by pitd: {detail}"),
            None => format!("died during the call: {status}"),
        };
        // Its reply pipe read to the end without an answer to the call ahead: the calls
        // pipelined behind never started. Back to front, each to the front of the queue:
        // the calls that go back keep their order, the oldest first.
        let settled = w.calls.settle_exit(w.replies == Replies::Done);
        for call in settled.unstarted.into_iter().rev() {
            self.requeue_unstarted(call);
        }
        for call in settled.lost.into_iter().rev() {
            self.call_lost(call, &id, &ended);
        }
        for (_, done) in self.worker_waiters.extract_if(.., |(waited, _)| *waited == id) {
            let _ = done.send(());
        }
        let booked = if planned {
            None
        } else {
            tracing::warn!(pool = %self.spec.name, worker = %id, "exited unexpectedly: {status}");
            let uptime = info.at.saturating_duration_since(w.started_at);
            // A supervised worker has no ready frame: dying before it was stable is a failed
            // start, which is what the crash-loop breaker counts.
            let started = match self.spec.protocol {
                Protocol::None => uptime >= SUPERVISED_STABLE_AFTER,
                Protocol::Pit => w.ready_at.is_some(),
            };
            let failure = if started {
                Failure::Crash { uptime }
            } else {
                Failure::Start
            };
            self.count_failure(id, reason.unwrap_or(Reason::Crash), failure, now)
        };
        self.emit(EventKind::WorkerExited, Some(id), w.pid, |ev| {
            ev.reason = reason;
            ev.exit_status = Some(status.clone());
            ev.backoff_ms = booked.map(|b| b.backoff_ms());
            ev.message = w.kill_detail.as_ref().map(|d| format!("killed by pitd: {d}"));
        });
        self.announce_failing(id, status, booked);
    }

    /// Books an unplanned exit or failed start and decides when the replacement may start.
    /// `None` while shutting down: nothing is replaced then.
    pub(super) fn count_failure(
        &mut self,
        id: WorkerId,
        reason: Reason,
        failure: Failure,
        now: Instant,
    ) -> Option<Booked> {
        if self.shutdown.is_some() {
            return None;
        }
        self.owed_restarts.push_back((id, reason));
        let policy = &self.spec.restart;
        let verdict = self.restart.record_failure(policy, now, failure);
        let backoff = match verdict {
            PoolVerdict::Failing => policy.max,
            PoolVerdict::Healthy => self.restart.next_backoff(policy, self.rng.f64()),
        };
        // A later start may not be held back by an earlier, longer backoff: a stable
        // worker's death starts its replacement (and any other owed one) now.
        self.restart_at = Some(now + backoff);
        Some(Booked { backoff, verdict })
    }

    /// Marks the pool failing when the failure just booked tripped the breaker.
    pub(super) fn announce_failing(&mut self, id: WorkerId, status: String, booked: Option<Booked>) {
        if !booked.is_some_and(|b| b.verdict == PoolVerdict::Failing) {
            return;
        }
        let first = self.failing.is_none();
        self.failing = Some((id, status));
        if first {
            // Calls would wait for a pool that cannot start workers: fail them fast.
            for call in std::mem::take(&mut self.queue) {
                self.fail_call(call, ErrorKind::PoolFailing);
            }
            let msg = self.failing_reason();
            self.emit(EventKind::PoolFailing, Some(id), None, |ev| ev.message = msg);
        }
    }
}

/// What pitd decided about an unplanned exit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Booked {
    /// How long the replacement waits (the probe interval while failing).
    backoff: Duration,
    verdict: PoolVerdict,
}

impl Booked {
    fn backoff_ms(&self) -> u64 {
        u64::try_from(self.backoff.as_millis()).unwrap_or(u64::MAX)
    }
}
