//! The pool actor: one tokio task per pool owns its workers, restart history and counters.
//! Everyone else holds a `PoolHandle` and sends `PoolMsg`s; status is answered from the
//! actor's own state. The message handler is synchronous: effects leave as calls on the
//! `Spawner` (which only enqueues work for the process thread) or as sends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};

use super::events::EventLog;
use super::output::{self, OutputStore};
use super::procs::{ExitInfo, OnExit, OnSpawned, Procs};
use super::spawn::{SpawnError, SpawnRequest, Spawned};
use crate::ids::{IdAllocator, WorkerId};
use crate::lifecycle::{
    ExitStatusInfo, Failure, Health, PoolVerdict, Reason, RestartHistory, WorkerEvent, WorkerState, exit_reason,
    transition,
};
use crate::proto::event::{Event, EventKind};
use crate::proto::status::{PoolState, PoolStatus, WorkerStatus};
use crate::spec::{PoolSpec, Protocol};

/// A supervise-only worker has no ready frame: one that stays up this long counts as a
/// successful start (this is what ends a `failing` state).
const SUPERVISED_STABLE_AFTER: Duration = Duration::from_secs(1);
/// stderr lines quoted in a failing pool's reason.
const CRASH_REPORT_LINES: usize = 5;

/// Starting and signalling processes, behind a seam so the actor can be tested with a fake.
pub trait Spawner: Send + Sync + 'static {
    fn spawn(&self, req: SpawnRequest, on_spawned: OnSpawned, on_exit: OnExit);
    fn signal_group(&self, pid: u32, signal: Signal);
}

impl Spawner for Procs {
    fn spawn(&self, req: SpawnRequest, on_spawned: OnSpawned, on_exit: OnExit) {
        Procs::spawn(self, req, on_spawned, on_exit)
    }
    fn signal_group(&self, pid: u32, signal: Signal) {
        Procs::signal_group(self, pid, signal)
    }
}

/// Messages a pool understands. Senders: the control server (Status, Shutdown) and the
/// process thread's callbacks (Spawned, Exited).
#[derive(Debug)]
pub enum PoolMsg {
    Status(oneshot::Sender<PoolStatus>),
    Spawned {
        id: WorkerId,
        result: Result<Spawned, SpawnError>,
    },
    Exited {
        id: WorkerId,
        info: ExitInfo,
    },
    /// Stop every worker (SIGTERM, SIGKILL after kill_timeout); the reply is sent once all
    /// have been reaped, and the actor ends.
    Shutdown(oneshot::Sender<()>),
}

/// The only way to talk to a pool. Closing every handle does not stop the pool: Shutdown does.
#[derive(Debug, Clone)]
pub struct PoolHandle {
    pub name: String,
    tx: mpsc::UnboundedSender<PoolMsg>,
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

    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(PoolMsg::Shutdown(tx)) {
            let _ = rx.await;
        }
    }
}

/// What a pool needs from the daemon.
#[derive(Clone)]
pub struct PoolDeps {
    pub spawner: Arc<dyn Spawner>,
    pub ids: Arc<IdAllocator>,
    pub output: Arc<OutputStore>,
    pub events: Arc<EventLog>,
}

#[derive(Debug)]
struct Worker {
    id: WorkerId,
    pid: Option<u32>,
    state: WorkerState,
    health: Health,
    started_at: Instant,
    ready_at: Option<Instant>,
    requests: u64,
    errors: u64,
    /// Set when pitd asked it to stop: SIGKILL is due at this instant.
    kill_at: Option<Instant>,
    /// Why pitd stopped it; `None` for an exit nobody asked for.
    stop_reason: Option<Reason>,
}

/// Starts a pool actor on the current runtime and returns its handle.
pub fn start(spec: PoolSpec, deps: PoolDeps) -> PoolHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = PoolHandle {
        name: spec.name.clone(),
        tx: tx.clone(),
    };
    let mut actor = PoolActor::new(spec, deps, tx);
    actor.fill(Instant::now());
    tokio::spawn(actor.run(rx));
    handle
}

pub struct PoolActor {
    spec: PoolSpec,
    deps: PoolDeps,
    /// Our own mailbox, for the process thread's callbacks.
    me: mpsc::UnboundedSender<PoolMsg>,
    workers: BTreeMap<WorkerId, Worker>,
    restart: RestartHistory,
    /// No start before this instant (backoff after a crash, or the failing probe delay).
    restart_at: Option<Instant>,
    /// Crashed workers not yet replaced: their replacements count as restarts.
    owed_restarts: u32,
    /// Set while failing: the worker whose exit tipped the pool, and how it ended.
    failing: Option<(WorkerId, String)>,
    reached_size: bool,
    shutdown: Option<Vec<oneshot::Sender<()>>>,
    requests: u64,
    errors: u64,
    recycled: u64,
    restarts: u64,
    rng: fastrand::Rng,
}

impl PoolActor {
    pub fn new(spec: PoolSpec, deps: PoolDeps, me: mpsc::UnboundedSender<PoolMsg>) -> PoolActor {
        PoolActor {
            spec,
            deps,
            me,
            workers: BTreeMap::new(),
            restart: RestartHistory::default(),
            restart_at: None,
            owed_restarts: 0,
            failing: None,
            reached_size: false,
            shutdown: None,
            requests: 0,
            errors: 0,
            recycled: 0,
            restarts: 0,
            rng: fastrand::Rng::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<PoolMsg>) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg, Instant::now()),
                    None => break,
                },
                _ = sleep_until(deadline), if deadline.is_some() => self.tick(Instant::now()),
            }
            if self.finished() {
                for reply in self.shutdown.take().unwrap_or_default() {
                    let _ = reply.send(());
                }
                break;
            }
        }
    }

    pub fn handle(&mut self, msg: PoolMsg, now: Instant) {
        match msg {
            PoolMsg::Status(reply) => {
                let _ = reply.send(self.status(now));
            }
            PoolMsg::Spawned { id, result } => self.on_spawned(id, result, now),
            PoolMsg::Exited { id, info } => self.on_exited(id, info, now),
            PoolMsg::Shutdown(reply) => {
                self.shutdown.get_or_insert_with(Vec::new).push(reply);
                let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
                for id in ids {
                    self.stop_worker(id, None, now);
                }
            }
        }
        self.tick(now);
    }

    /// Timers: overdue kills, supervised workers becoming stable, starting replacements.
    pub fn tick(&mut self, now: Instant) {
        for w in self.workers.values_mut() {
            if let (Some(at), Some(pid)) = (w.kill_at, w.pid)
                && at <= now
            {
                tracing::warn!(pool = %self.spec.name, worker = %w.id, "did not stop within kill_timeout; sending SIGKILL");
                self.deps.spawner.signal_group(pid, Signal::SIGKILL);
                w.kill_at = None;
            }
        }
        if self.failing.is_some() && self.has_stable_worker(now) {
            self.restart.record_ready();
            self.failing = None;
            self.restart_at = None;
            self.emit(EventKind::PoolRecovered, None, None, |_| {});
        }
        self.fill(now);
    }

    fn finished(&self) -> bool {
        self.shutdown.is_some() && self.workers.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        let kills = self.workers.values().filter_map(|w| w.kill_at);
        let stable = self
            .failing
            .as_ref()
            .and_then(|_| self.workers.values().filter_map(|w| w.ready_at).min())
            .map(|t| t + self.stable_after());
        let restart = self.restart_at.filter(|_| self.live_count() < self.spec.size as usize);
        kills.chain(stable).chain(restart).min()
    }

    fn stable_after(&self) -> Duration {
        match self.spec.protocol {
            Protocol::None => SUPERVISED_STABLE_AFTER,
            Protocol::Pit => Duration::ZERO,
        }
    }

    fn has_stable_worker(&self, now: Instant) -> bool {
        let after = self.stable_after();
        self.workers.values().any(|w| {
            matches!(w.state, WorkerState::Idle | WorkerState::Busy) && w.ready_at.is_some_and(|t| t + after <= now)
        })
    }

    /// Workers that count towards `size`.
    fn live_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| !matches!(w.state, WorkerState::Stopping | WorkerState::Exited))
            .count()
    }

    /// Starts workers until the pool has `size` live ones, unless a backoff or a failing
    /// state says to wait (then one probe at a time).
    pub fn fill(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        if self.restart_at.is_some_and(|t| now < t) {
            return;
        }
        self.restart_at = None;
        let missing = (self.spec.size as usize).saturating_sub(self.live_count());
        let allowed = if self.failing.is_some() {
            missing.min(1).saturating_sub(self.starting_count())
        } else {
            missing
        };
        for _ in 0..allowed {
            self.start_worker(now);
        }
    }

    fn starting_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.state == WorkerState::Starting)
            .count()
    }

    fn start_worker(&mut self, now: Instant) {
        let id = self.deps.ids.next();
        if self.owed_restarts > 0 {
            self.owed_restarts -= 1;
            self.restarts += 1;
        }
        let req = SpawnRequest {
            pool: self.spec.name.clone(),
            id,
            argv: self.spec.argv(),
            cwd: self.spec.cwd.clone(),
            env: self.spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            rlimits: self.spec.rlimits.clone(),
            credentials: self
                .spec
                .user
                .as_ref()
                .map(|u| (u.uid, self.spec.group.as_ref().map_or(u.gid, |g| g.gid))),
            protocol_fds: self.spec.protocol == Protocol::Pit,
        };
        let worker = Worker {
            id,
            pid: None,
            state: WorkerState::Starting,
            health: Health::Unknown,
            started_at: now,
            ready_at: None,
            requests: 0,
            errors: 0,
            kill_at: None,
            stop_reason: None,
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

    fn on_spawned(&mut self, id: WorkerId, result: Result<Spawned, SpawnError>, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        match result {
            Err(e) => {
                tracing::error!(pool = %self.spec.name, worker = %id, "{e}");
                self.workers.remove(&id);
                let status = format!("could not start: {}", e.source);
                self.emit(EventKind::WorkerExited, Some(id), None, |ev| {
                    ev.reason = Some(Reason::Crash);
                    ev.message = Some(e.to_string());
                });
                self.count_failure(id, status, Failure::Start, now);
            }
            Ok(spawned) => {
                w.pid = Some(spawned.pid);
                w.started_at = spawned.started_at;
                output::capture(&self.deps.output, &self.spec.name, id, spawned.stdout, spawned.stderr);
                let pid = spawned.pid;
                self.emit(EventKind::WorkerStarted, Some(id), Some(pid), |_| {});
                if self.shutdown.is_some() {
                    self.stop_worker(id, None, now);
                } else if self.spec.protocol == Protocol::None {
                    // Supervise-only workers have no ready frame: running is ready.
                    self.worker_ready(id, now);
                }
            }
        }
    }

    fn worker_ready(&mut self, id: WorkerId, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        match transition(w.state, WorkerEvent::Ready) {
            Ok(next) => w.state = next,
            Err(e) => {
                tracing::error!(pool = %self.spec.name, worker = %id, "{e}");
                return;
            }
        }
        w.ready_at = Some(now);
        w.health = Health::Ok;
        let pid = w.pid;
        self.emit(EventKind::WorkerReady, Some(id), pid, |_| {});
        if !self.reached_size && self.ready_count() >= self.spec.size as usize {
            self.reached_size = true;
        }
    }

    fn ready_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| matches!(w.state, WorkerState::Idle | WorkerState::Busy))
            .count()
    }

    fn on_exited(&mut self, id: WorkerId, info: ExitInfo, now: Instant) {
        self.deps.output.worker_exited(id);
        let Some(w) = self.workers.remove(&id) else { return };
        let planned = w.stop_reason.is_some() || w.state == WorkerState::Stopping;
        let reason = w.stop_reason.unwrap_or_else(|| exit_reason(&info.status));
        let status = describe(&info.status);
        let pid = w.pid;
        self.emit(EventKind::WorkerExited, Some(id), pid, |ev| {
            ev.reason = Some(reason);
            ev.exit_status = Some(status.clone());
        });
        if planned {
            return;
        }
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
        self.count_failure(id, status, failure, now);
    }

    /// Books an unplanned exit or failed start and decides when the replacement may start.
    fn count_failure(&mut self, id: WorkerId, status: String, failure: Failure, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        self.owed_restarts += 1;
        let policy = &self.spec.restart;
        match self.restart.record_failure(policy, now, failure) {
            PoolVerdict::Failing => {
                self.restart_at = Some(now + policy.max);
                let first = self.failing.is_none();
                self.failing = Some((id, status));
                if first {
                    let msg = self.failing_reason();
                    self.emit(EventKind::PoolFailing, Some(id), None, |ev| ev.message = msg);
                }
            }
            PoolVerdict::Healthy => {
                let delay = self.restart.next_backoff(policy, self.rng.f64());
                self.restart_at = Some(now + delay);
            }
        }
    }

    /// SIGTERM to the worker's group now, SIGKILL after kill_timeout.
    fn stop_worker(&mut self, id: WorkerId, reason: Option<Reason>, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if w.state == WorkerState::Stopping {
            return;
        }
        match transition(w.state, WorkerEvent::Stop) {
            Ok(next) => w.state = next,
            Err(e) => {
                tracing::error!(pool = %self.spec.name, worker = %id, "{e}");
                return;
            }
        }
        w.stop_reason = reason.or(w.stop_reason);
        if let Some(pid) = w.pid {
            self.deps.spawner.signal_group(pid, Signal::SIGTERM);
            w.kill_at = Some(now + self.spec.kill_timeout);
        }
    }

    fn failing_reason(&self) -> Option<String> {
        let (id, status) = self.failing.as_ref()?;
        let lines = self.deps.output.last_stderr(*id, CRASH_REPORT_LINES);
        Some(if lines.is_empty() {
            format!("crash loop: {id} {status}")
        } else {
            format!("crash loop: {id} {status}; last stderr: {}", lines.join(" | "))
        })
    }

    fn pool_state(&self) -> PoolState {
        if self.failing.is_some() {
            PoolState::Failing
        } else if self.reached_size {
            PoolState::Running
        } else {
            PoolState::Starting
        }
    }

    pub fn status(&self, now: Instant) -> PoolStatus {
        let workers = self
            .workers
            .values()
            .map(|w| WorkerStatus {
                id: w.id,
                pid: w.pid.unwrap_or(0),
                state: w.state,
                health: w.health,
                rss_bytes: 0,
                memory_bytes: 0,
                rss_growth_bytes_per_s: 0,
                cpu_percent: 0.0,
                requests: w.requests,
                errors: w.errors,
                age_s: now.saturating_duration_since(w.started_at).as_secs_f64(),
                last_recycle_reason: None,
            })
            .collect();
        PoolStatus {
            name: self.spec.name.clone(),
            state: self.pool_state(),
            size: self.spec.size,
            workers,
            requests: self.requests,
            errors: self.errors,
            queued: 0,
            recycled: self.recycled,
            restarts: self.restarts,
            failing_reason: self.failing_reason(),
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
        };
        fill(&mut ev);
        self.deps.events.emit(ev);
    }
}

fn describe(status: &ExitStatusInfo) -> String {
    status.to_string()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
