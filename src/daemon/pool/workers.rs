//! The worker half of the pool actor: starting workers, readiness, exits, restarts with
//! backoff and the crash-loop breaker, stopping and killing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{PoolActor, PoolMsg};
use crate::daemon::monitor::{self, TreeSample, reported_growth_rate};
use crate::daemon::output;
use crate::daemon::procs::ExitInfo;
use crate::daemon::spawn::{SpawnError, SpawnRequest, Spawned, TemplateRequest};
use crate::daemon::worker_io::{self, WorkerIo, WorkerMsg};
use crate::ids::WorkerId;
use crate::lifecycle::{
    Failure, Health, PoolVerdict, Reason, WorkerEvent, WorkerLimits, WorkerState, exit_reason, exit_reason_with_cpu,
    transition,
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

#[derive(Debug)]
pub struct Worker {
    pub id: WorkerId,
    pub pid: Option<u32>,
    pub state: WorkerState,
    pub health: Health,
    pub started_at: Instant,
    pub ready_at: Option<Instant>,
    /// When it last became idle: the longest idle worker takes the next call.
    pub idle_since: Instant,
    pub requests: u64,
    pub errors: u64,
    /// Methods the worker announced in its ready frame.
    pub handlers: Vec<String>,
    pub io: Option<WorkerIo>,
    /// The call it is running, with the instant it times out.
    pub running: Option<(super::Call, Instant)>,
    /// When the running call was handed over (or reached the front of its pipe).
    pub running_since: Instant,
    /// The running call was pipelined: the worker refuses it if it got to it too late.
    pub running_pipelined: bool,
    /// Calls written behind the running one, not started yet, in pipe order (`pipeline.rs`).
    pub next: VecDeque<super::pipeline::Pipelined>,
    /// Pipelined calls pitd took back: the worker's answers to them are dropped.
    pub taken_back: Vec<u64>,
    /// The last call of it that timed out: a late reply to it is dropped.
    pub timed_out: Option<u64>,
    /// Calls in a row that took at most `PIPELINE_FAST`.
    pub fast_streak: u32,
    /// How far its reply pipe has been read.
    pub replies: Replies,
    /// Its exit, reaped while the rest of its replies may still be on their way, and when
    /// to stop waiting for them. Meanwhile it is given nothing new.
    pub exit: Option<(ExitInfo, Instant)>,
    /// Set when pitd asked it to stop: SIGKILL is due at this instant.
    pub kill_at: Option<Instant>,
    /// Why pitd stopped it; `None` for an exit nobody asked for.
    pub stop_reason: Option<Reason>,
    /// Set when pitd sent it SIGKILL, saying why in words ("protocol error (...)"): its
    /// lost calls and its exit event name this rather than the signal.
    pub kill_detail: Option<String>,
    /// The latest sample of its process tree.
    pub sample: Option<TreeSample>,
    /// Its own draw of max_requests/max_age (jitter keeps workers from recycling together).
    pub limits: WorkerLimits,
    pub consecutive_errors: u32,
    /// Selected for retirement: it no longer counts towards `size` (so a replacement
    /// starts) but keeps serving until the pool has `size` other ready workers.
    pub retire: Option<Reason>,
    /// The recycled worker it replaces and why that one was recycled (its `worker_started`
    /// event says so; its own status does not: that is about what happened to it).
    pub started_for: Option<(WorkerId, Reason)>,
    /// While draining: stop it at this instant even if its call has not finished.
    pub drain_deadline: Option<Instant>,
    /// An unanswered health ping: its id and when it was sent.
    pub ping: Option<(u64, Instant)>,
    /// Last time it proved alive (ready, a reply, a pong): pings go to workers idle since.
    pub last_seen: Instant,
    pub health_failures: u32,
    /// Recent (time, RSS) points for the growth rate.
    pub rss_history: VecDeque<(Instant, u64)>,
}

/// How much of what a worker wrote on its reply pipe pitd has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replies {
    /// No pipe (supervise-only, or not started yet).
    None,
    /// Being read.
    Open,
    /// Read to its end: every frame the worker wrote has been handled.
    Done,
    /// Reading stopped at a bad frame: what came after it is unknown.
    Broken,
}

/// How long an exited worker's remaining replies are waited for (its pipe normally ends
/// at once; a descendant that escaped its group may hold it open).
const EXIT_REPLIES_WAIT: Duration = Duration::from_millis(200);

/// Samples kept for the RSS growth rate (at 1 s sampling: the last half minute).
const RSS_HISTORY: usize = 30;

impl Worker {
    pub fn record_sample(&mut self, sample: TreeSample) {
        // The growth of a worker still importing its app is its start-up, not a leak.
        if self.state != WorkerState::Starting {
            self.rss_history.push_back((sample.at, sample.rss_bytes));
            while self.rss_history.len() > RSS_HISTORY {
                self.rss_history.pop_front();
            }
        }
        self.sample = Some(sample);
    }

    /// RSS growth in bytes per second over the recent samples since it was ready; 0 until
    /// there are enough of them to tell.
    pub fn rss_growth(&self) -> i64 {
        let points: Vec<(Instant, u64)> = self.rss_history.iter().copied().collect();
        reported_growth_rate(&points)
    }

    pub fn live(&self) -> bool {
        !matches!(self.state, WorkerState::Stopping | WorkerState::Exited)
    }

    pub(super) fn startup_deadline(&self, timeout: Duration) -> Option<Instant> {
        (self.state == WorkerState::Starting).then_some(self.started_at + timeout)
    }
}

impl PoolActor {
    /// Workers that count towards `size`: live and not being retired.
    pub(super) fn live_count(&self) -> usize {
        self.workers.values().filter(|w| w.live() && w.retire.is_none()).count()
    }

    fn starting_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.state == WorkerState::Starting)
            .count()
    }

    pub(super) fn ready_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| matches!(w.state, WorkerState::Idle | WorkerState::Busy))
            .count()
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
        if self.owed_restarts > 0 {
            self.owed_restarts -= 1;
            self.restarts += 1;
            self.deps.metrics.restart(&self.spec.name);
        }
        let mut env: Vec<(String, String)> = self.spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.push(("PIT_MAX_FRAME".into(), MAX_FRAME.to_string()));
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
        let worker = Worker {
            id,
            pid: None,
            state: WorkerState::Starting,
            health: Health::Unknown,
            started_at: now,
            ready_at: None,
            idle_since: now,
            requests: 0,
            errors: 0,
            handlers: Vec::new(),
            io: None,
            running: None,
            running_since: now,
            running_pipelined: false,
            next: VecDeque::new(),
            taken_back: Vec::new(),
            timed_out: None,
            fast_streak: 0,
            replies: Replies::None,
            exit: None,
            kill_at: None,
            stop_reason: None,
            kill_detail: None,
            sample: None,
            rss_history: VecDeque::new(),
            limits: WorkerLimits::draw(&self.spec.recycle, &mut self.rng),
            consecutive_errors: 0,
            retire: None,
            started_for: self.replacing.pop_front(),
            drain_deadline: None,
            ping: None,
            last_seen: now,
            health_failures: 0,
        };
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
                let booked = self.count_failure(Failure::Start, now);
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
            match worker_io::start(id, to, from, self.me.clone(), MAX_FRAME) {
                Ok(io) => {
                    w.io = Some(io);
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
            self.worker_ready(id, Vec::new(), now);
        }
    }

    pub(super) fn on_worker_msg(&mut self, id: WorkerId, msg: WorkerMsg, now: Instant) {
        match msg {
            WorkerMsg::Ready(ready) => {
                if ready.protocol != 1 {
                    let why = format!("speaks protocol version {}, pitd speaks 1", ready.protocol);
                    return self.protocol_error(id, &why, now);
                }
                self.worker_ready(id, ready.handlers, now)
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
        let starting = w.state == WorkerState::Starting;
        tracing::error!(pool = %self.spec.name, worker = %id, "protocol error, killing the worker: {why}");
        self.kill_worker(id, Reason::ProtocolError, format!("protocol error ({why})"));
        if starting {
            let booked = self.count_failure(Failure::Start, now);
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

    fn worker_ready(&mut self, id: WorkerId, handlers: Vec<String>, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        match transition(w.state, WorkerEvent::Ready) {
            Ok(next) => w.state = next,
            Err(e) => {
                tracing::error!(pool = %self.spec.name, worker = %id, "{e}");
                return;
            }
        }
        w.ready_at = Some(now);
        w.idle_since = now;
        w.last_seen = now;
        w.health = Health::Ok;
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
            && (w.running.is_some() || !w.next.is_empty())
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
        let planned = w.stop_reason.is_some() || w.state == WorkerState::Stopping;
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
        // Back to front, each to the front of the queue: the calls that go back to the
        // queue keep their order, the running one (the oldest) first.
        let unanswered = w.replies == Replies::Done;
        for p in std::mem::take(&mut w.next).into_iter().rev() {
            if unanswered {
                // Its reply pipe ended without an answer to the call ahead: never started.
                self.requeue_unstarted(p.call);
            } else {
                self.call_lost(p.call, &id, &ended);
            }
        }
        if let Some((call, _)) = w.running.take() {
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
            self.count_failure(failure, now)
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
    pub(super) fn count_failure(&mut self, failure: Failure, now: Instant) -> Option<Booked> {
        if self.shutdown.is_some() {
            return None;
        }
        self.owed_restarts += 1;
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
