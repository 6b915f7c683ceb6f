//! The worker half of the pool core: starting workers, what they say besides answers
//! (ready, pongs, the end of their pipe) and readiness. Their exits are `exits.rs`.

use std::time::{Duration, Instant};

use super::core::PoolCore;
use super::effect::Effect;
use super::routing::PIPELINE_DEPTH;
use super::seams::WorkerMsg;
use super::window::WindowPolicy;
use super::worker::{Replies, Worker};
use crate::daemon::process::spawn::{SpawnRequest, TemplateRequest};
use crate::ids::WorkerId;
use crate::lifecycle::phase::PhaseEvent;
use crate::lifecycle::{Failure, Health, Reason, WorkerEvent, WorkerLimits, WorkerState};
use crate::proto::event::EventKind;
use crate::proto::worker::MAX_FRAME;
use crate::spec::Protocol;

/// A supervise-only worker has no ready frame: one that stays up this long counts as a
/// successful start (this is what ends a `failing` state).
pub const SUPERVISED_STABLE_AFTER: Duration = Duration::from_secs(1);

/// The resolution of the runtime's timers.
const TIMER_SLACK: Duration = Duration::from_millis(1);

impl PoolCore {
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
    /// Workers that count towards the pool's size: live, and neither retiring nor draining
    /// (an operator's drain takes a worker out for good; it is not waited for).
    pub(super) fn live_count(&self) -> usize {
        self.workers
            .values()
            // One recycled in place holds its place until it has exited, not only stopped.
            .filter(|w| w.in_place || (w.live() && w.retire.is_none() && w.state() != WorkerState::Draining))
            .count()
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
        if self.phase.shutting_down() || self.restarts.at.is_some_and(|t| now + TIMER_SLACK < t) {
            return;
        }
        self.restarts.at = None;
        let missing = self.desired().saturating_sub(self.live_count());
        let allowed = if self.phase.failing() {
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
        let owed = self.restarts.owed.pop_front();
        if owed.is_some() {
            self.counts.restarts += 1;
            self.deps.metrics.restart(&self.spec.name);
        }
        let mut env: Vec<(String, String)> = self.spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.push(("PIT_MAX_FRAME".into(), MAX_FRAME.to_string()));
        if self.spec.protocol == Protocol::Pit {
            env.push(("PIT_CONCURRENCY".into(), self.spec.concurrency.to_string()));
        }
        if self.spec.require_free_threading {
            env.push(("PIT_REQUIRE_FREE_THREADING".into(), "1".into()));
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
            self.recycling.replacing.pop_front().or(owed),
            self.window_policy(),
        );
        self.workers.insert(id, worker);
        self.effect(Effect::Spawn(Box::new(req)));
    }

    /// A worker's process could not be started: a failed start.
    pub(super) fn on_start_failed(&mut self, id: WorkerId, error: String, now: Instant) {
        if self.workers.remove(&id).is_none() {
            return;
        }
        self.effect(Effect::Forget(id));
        let status = format!("could not start: {error}");
        let booked = self.count_failure(id, Reason::Crash, Failure::Start, now);
        self.emit(EventKind::WorkerExited, Some(id), None, |ev| {
            ev.reason = Some(Reason::Crash);
            ev.message = Some(error);
            ev.backoff_ms = booked.map(|b| b.backoff_ms());
        });
        self.announce_failing(id, status, booked);
    }

    /// A worker's process started (`pipes`: whether its fd 3/4 pipes could be opened).
    pub(super) fn on_started(
        &mut self,
        id: WorkerId,
        pid: u32,
        started_at: Instant,
        pipes: Option<Result<(), String>>,
        now: Instant,
    ) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        w.pid = Some(pid);
        w.started_at = started_at;
        let replaced = w.started_for;
        if pipes == Some(Ok(())) {
            w.writable = true;
            w.replies = Replies::Open;
        }
        self.effect(Effect::Watch {
            pid,
            worker: Some(id),
            metric: self.spec.recycle.memory_metric,
            shared_pages: !self.spec.preload.is_empty(),
        });
        // Its memory is the pool's from now on: sampled at once, so that the pool's total
        // leaves it out (and says so) for a moment only.
        self.effect(Effect::SampleNow(pid));
        if let Some(Err(e)) = pipes {
            tracing::error!(pool = %self.spec.name, worker = %id, "cannot use the worker's pipes: {e}");
            self.kill_worker(id, Reason::ProtocolError, format!("cannot use its pipes: {e}"));
        }
        self.spare_taken(pid);
        self.emit(EventKind::WorkerStarted, Some(id), Some(pid), |ev| {
            if let Some((old, reason)) = replaced {
                ev.replaces = Some(old);
                ev.reason = Some(reason);
            }
        });
        if self.phase.shutting_down() {
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
                // What it was started with (PIT_CONCURRENCY): a reload since may have
                // changed the spec, and then it is recycled, not broken.
                let asked = self.workers.get(&id).map_or(1, |w| w.calls.slots());
                if ready.concurrency as usize != asked {
                    // A runtime that does not run what it was asked to would be given calls
                    // it cannot start.
                    let why = format!(
                        "runs {} call(s) at once, the pool's concurrency is {asked} (is its pit package older than pitd?)",
                        ready.concurrency
                    );
                    tracing::error!(pool = %self.spec.name, worker = %id, "{why}");
                    return self.kill_worker(id, Reason::ProtocolError, format!("protocol error ({why})"));
                }
                if self.spec.require_free_threading && ready.gil_enabled != Some(false) {
                    // The runtime refuses this itself; one that did not is refused here.
                    let why = ready
                        .gil_reenabled
                        .as_deref()
                        .unwrap_or("its interpreter runs with the GIL");
                    return self.protocol_error(id, &format!("require_free_threading: {why}"), now);
                }
                if let Some(why) = ready.gil_reenabled {
                    if let Some(w) = self.workers.get_mut(&id) {
                        w.warning = Some(why.clone());
                    }
                    let pid = Some(ready.pid);
                    self.emit(EventKind::WorkerWarning, Some(id), pid, |ev| ev.message = Some(why));
                }
                self.worker_ready(id, ready.handlers, ready.gil_enabled, now)
            }
            WorkerMsg::Reply { req_id, error, body } => self.on_reply(id, req_id, error, body, now),
            WorkerMsg::Chunk { req_id, body } => self.on_chunk(id, req_id, body, now),
            WorkerMsg::Pong { req_id } => self.on_pong(id, req_id, now),
            WorkerMsg::ProtocolError(why) => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.replies = Replies::Broken;
                }
                self.protocol_error(id, &why, now);
                self.settle_exit(id, now);
            }
            WorkerMsg::Closed | WorkerMsg::ClosedWhileAlive => {
                let Some(w) = self.workers.get_mut(&id) else { return };
                let alive = matches!(msg, WorkerMsg::ClosedWhileAlive);
                if alive && w.exit.is_none() && w.live() {
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

    fn worker_ready(&mut self, id: WorkerId, handlers: Vec<String>, gil_enabled: Option<bool>, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if w.state() != WorkerState::Starting {
            // Stopped or killed while it started, or a second READY: nothing to do.
            tracing::debug!(pool = %self.spec.name, worker = %id, state = %w.state(), "ready frame ignored");
            return;
        }
        w.apply(WorkerEvent::Ready);
        w.ready_at = Some(now);
        self.counts.startups.record(now.saturating_duration_since(w.started_at));
        w.idle_since = now;
        w.last_seen = now;
        w.health = Health::Ok;
        w.gil_enabled = gil_enabled;
        w.handlers = handlers;
        let pid = w.pid;
        self.effect(Effect::OutputReady(id));
        // Its memory from the moment it counts as ready, not one monitor interval later.
        if let Some(pid) = pid {
            self.effect(Effect::SampleNow(pid));
        }
        self.emit(EventKind::WorkerReady, Some(id), pid, |_| {});
        if self.ready_count() >= self.desired() {
            self.reached_size = true;
            self.move_phase(PhaseEvent::ReachedSize);
        }
        self.retire_replaced(now);
    }
}
