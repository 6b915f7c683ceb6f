//! The supervisor: pools by name, the routing of control requests to them, and reload. It
//! holds only handles; every pool's state lives in its own actor. The set of pools changes
//! only on reload; readers take a snapshot (`handles`) and never hold the lock across an
//! await.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::daemon::door::{DoorState, Probes};
use crate::daemon::events::EventLog;
use crate::daemon::pool::{self, PoolDeps, PoolHandle, PoolMsg, PoolTable};
use crate::daemon::probe::{self, PoolSnapshot};
use crate::daemon::process::output::OutputStore;
use crate::ids::WorkerId;
use crate::proto::control::{ControlErrorKind, LogLine, ProbeKind};
use crate::proto::status::{BudgetStatus, PoolStatus, StatusReport};
use crate::spec::{self, Spec};

/// Where a pool command's answer goes.
pub type Reply = oneshot::Sender<Result<String, String>>;

pub struct Supervisor {
    /// Pools in spec order. Written only by `reload`.
    pools: RwLock<Vec<PoolHandle>>,
    /// The same pools by name for the call server; replaced on reload.
    table: watch::Sender<PoolTable>,
    /// The spec running now (reload diffs against it).
    spec: Mutex<Spec>,
    deps: PoolDeps,
    started: Instant,
    pub output: Arc<OutputStore>,
    pub events: Arc<EventLog>,
    /// Cancelled to stop the daemon (SIGTERM, SIGINT or a shutdown request).
    pub shutdown: CancellationToken,
    /// Set at the first stop signal or request, before `shutdown_delay`: not ready.
    shutting_down: AtomicBool,
    /// Cancelled by a stop request (`pitctl shutdown`); the daemon's signal loop begins
    /// the stop (with its delay) when it is.
    pub stop_requested: CancellationToken,
    /// The HTTP front door, once it is open: status shows it, reload re-reads its tokens.
    door: std::sync::OnceLock<Arc<DoorState>>,
}

/// A control request the supervisor refuses, with the kind pitctl maps to its message.
#[derive(Debug)]
pub struct Refusal {
    pub kind: ControlErrorKind,
    pub message: String,
}

fn table_of(pools: &[PoolHandle]) -> PoolTable {
    Arc::new(pools.iter().map(|p| (p.name.clone(), p.clone())).collect())
}

impl Supervisor {
    /// Starts every pool of the spec. Must run inside the runtime.
    pub fn start(spec: Spec, deps: PoolDeps, shutdown: CancellationToken) -> Supervisor {
        let pools: Vec<PoolHandle> = spec
            .pools
            .iter()
            .map(|p| pool::start(p.clone(), deps.clone()))
            .collect();
        let (table, _) = watch::channel(table_of(&pools));
        Supervisor {
            pools: RwLock::new(pools),
            table,
            spec: Mutex::new(spec),
            output: deps.output.clone(),
            events: deps.events.clone(),
            deps,
            started: Instant::now(),
            shutdown,
            shutting_down: AtomicBool::new(false),
            stop_requested: CancellationToken::new(),
            door: std::sync::OnceLock::new(),
        }
    }

    /// Pools by name, kept current across reloads, for the call server.
    pub fn pool_table(&self) -> watch::Receiver<PoolTable> {
        self.table.subscribe()
    }

    fn handles(&self) -> Vec<PoolHandle> {
        self.pools.read().expect("pools lock").clone()
    }

    fn pool(&self, name: &str) -> Result<PoolHandle, Refusal> {
        let pools = self.handles();
        pools.iter().find(|p| p.name == name).cloned().ok_or_else(|| {
            let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
            let names = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            };
            Refusal {
                kind: ControlErrorKind::NoSuchPool,
                message: format!("no pool named {name:?} (pools: {names})"),
            }
        })
    }

    /// Not ready from now on: the stop has begun (its `shutdown_delay` may still run).
    pub fn begin_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Answers a probe from the pools' published facts (`live`: every pool actor answers
    /// within `timeout`); `Err` is the one-line reason for a no.
    pub async fn probe(&self, kind: ProbeKind, timeout: Duration) -> Result<(), String> {
        let handles = self.handles();
        let snapshots: Vec<PoolSnapshot> = handles.iter().map(|h| h.facts.snapshot(&h.name)).collect();
        match kind {
            ProbeKind::Startup => probe::started(&snapshots),
            ProbeKind::Ready => probe::ready(self.is_shutting_down(), &snapshots),
            ProbeKind::Live => {
                // Every actor is asked at once; each answers as soon as it handles the ask.
                let deadline = tokio::time::Instant::now() + timeout;
                let asked: Vec<_> = handles.iter().map(|h| (&h.name, h.ping())).collect();
                for (name, answer) in asked {
                    let answered = match answer {
                        Some(rx) => matches!(tokio::time::timeout_at(deadline, rx).await, Ok(Ok(()))),
                        None => false,
                    };
                    if !answered {
                        return Err(format!("pool {name} did not answer within {timeout:?}"));
                    }
                }
                Ok(())
            }
        }
    }

    pub async fn status(&self, only: Option<&str>) -> Result<StatusReport, Refusal> {
        let handles = match only {
            Some(name) => vec![self.pool(name)?],
            None => self.handles(),
        };
        let mut pools = Vec::with_capacity(handles.len());
        for h in handles {
            if let Some(s) = h.status().await {
                pools.push(s);
            }
        }
        let call_socket = self
            .spec
            .lock()
            .expect("spec lock")
            .daemon
            .call_socket
            .display()
            .to_string();
        let memory_budget = self
            .spec
            .lock()
            .expect("spec lock")
            .daemon
            .memory_budget
            .map(|budget| BudgetStatus {
                budget_bytes: budget,
                used_bytes: pools.iter().map(pool_memory).sum(),
            });
        Ok(StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            pools,
            shutting_down: self.is_shutting_down(),
            call_socket: Some(call_socket),
            http: self.door.get().map(|d| d.status()),
            memory_budget,
        })
    }

    /// The Prometheus exposition of the whole daemon.
    pub async fn metrics_text(&self) -> String {
        match self.status(None).await {
            Ok(report) => self.deps.metrics.render(&report),
            Err(r) => format!("# {}\n", r.message),
        }
    }

    /// The pool that owns `target` (a pool name or a running worker's id), and the worker.
    async fn resolve(&self, target: &str) -> Result<(PoolHandle, Option<WorkerId>), Refusal> {
        let Some(id) = WorkerId::parse(target) else {
            return Ok((self.pool(target)?, None));
        };
        for pool in self.handles() {
            if pool
                .status()
                .await
                .is_some_and(|s| s.workers.iter().any(|w| w.id == id))
            {
                return Ok((pool, Some(id)));
            }
        }
        Err(Refusal {
            kind: ControlErrorKind::NoSuchWorker,
            message: format!("no running worker {target}"),
        })
    }

    /// Sends a command to the pool owning `target` and returns its answer.
    pub async fn command(
        &self,
        target: &str,
        build: impl FnOnce(Option<WorkerId>, Reply) -> PoolMsg,
    ) -> Result<String, Refusal> {
        let (pool, worker) = self.resolve(target).await?;
        let (tx, rx) = oneshot::channel();
        let gone = || Refusal {
            kind: ControlErrorKind::ShuttingDown,
            message: "pitd is shutting down".into(),
        };
        if !pool.send(build(worker, tx)) {
            return Err(gone());
        }
        match rx.await {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(message)) => Err(Refusal {
                kind: ControlErrorKind::BadRequest,
                message,
            }),
            Err(_) => Err(gone()),
        }
    }

    /// Which lines `logs TARGET` selects: a worker id or a pool name.
    pub async fn log_filter(&self, target: &str) -> Result<LogTarget, Refusal> {
        if let Some(id) = WorkerId::parse(target) {
            let known_now = self
                .status(None)
                .await?
                .pools
                .iter()
                .flat_map(|p| &p.workers)
                .any(|w| w.id == id);
            if known_now || !self.output.tail(1, |l| l.worker == Some(id)).is_empty() {
                return Ok(LogTarget::Worker(id));
            }
            return Err(Refusal {
                kind: ControlErrorKind::NoSuchWorker,
                message: format!("no worker {target} (not running, and no output kept for it)"),
            });
        }
        self.pool(target)?;
        Ok(LogTarget::Pool(target.to_string()))
    }

    /// Re-reads the spec file and applies the difference: changed pools are recycled worker
    /// by worker (reason `reload`), size-only changes scale, removed pools drain, new pools
    /// start. An invalid spec changes nothing and the error is returned.
    /// The daemon's `memory_budget`, kept: each pool is told what it may use (what the
    /// others leave), and when all together are over it, the pool holding the largest
    /// worker is told to give back the excess, which recycles that worker in place.
    pub async fn balance_memory(&self, budget: u64) {
        let handles = self.handles();
        let mut pools = Vec::with_capacity(handles.len());
        for h in handles {
            if let Some(s) = h.status().await {
                pools.push((h, s));
            }
        }
        let used: Vec<u64> = pools.iter().map(|(_, s)| pool_memory(s)).collect();
        let total: u64 = used.iter().sum();
        let headroom = budget.saturating_sub(total);
        let excess = total.saturating_sub(budget);
        let largest = pools
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| s.workers.iter().map(|w| w.memory_bytes).max().map(|m| (m, i)))
            .max()
            .map(|(_, i)| i);
        for (i, (h, _)) in pools.iter().enumerate() {
            let allowance = match excess > 0 && largest == Some(i) {
                true => used[i].saturating_sub(excess),
                false => used[i].saturating_add(headroom),
            };
            h.send(PoolMsg::DaemonBudget(Some(allowance)));
        }
    }

    /// The door is open: status shows it from now on, and reload re-reads its tokens.
    pub fn set_door(&self, door: Arc<DoorState>) {
        let _ = self.door.set(door);
    }

    pub fn reload(&self) -> Result<String, Refusal> {
        // The tokens are re-read whatever becomes of the spec: each keeps what it had when
        // its new file is bad.
        let tokens = self.door.get().map(|d| d.reload_tokens());
        let mut answer = self.reload_spec()?;
        if let Some(Err(e)) = tokens {
            answer = format!("{answer}; {e}");
        }
        Ok(answer)
    }

    fn reload_spec(&self) -> Result<String, Refusal> {
        let path = self.spec.lock().expect("spec lock").path.clone();
        let new = spec::load(&path).map_err(|e| Refusal {
            kind: ControlErrorKind::BadRequest,
            message: format!("reload refused, the running spec is kept: {e}"),
        })?;
        let mut current = self.spec.lock().expect("spec lock");
        if new.daemon != current.daemon {
            tracing::warn!("reload: [daemon] settings changed; they take effect when pitd restarts");
        }
        let mut pools = self.pools.write().expect("pools lock");
        let mut summary = Vec::new();
        let mut next = Vec::with_capacity(new.pools.len());
        for spec in &new.pools {
            match (
                current.pools.iter().find(|p| p.name == spec.name),
                pools.iter().find(|h| h.name == spec.name),
            ) {
                (Some(old), Some(handle)) => {
                    if old != spec {
                        handle.send(PoolMsg::Reconfigure(Box::new(spec.clone())));
                        summary.push(format!("{} changed", spec.name));
                    }
                    next.push(handle.clone());
                }
                _ => {
                    next.push(pool::start(spec.clone(), self.deps.clone()));
                    summary.push(format!("{} added", spec.name));
                }
            }
        }
        for old in pools.iter().filter(|h| !new.pools.iter().any(|p| p.name == h.name)) {
            let drain = current
                .pools
                .iter()
                .find(|p| p.name == old.name)
                .map_or(new.daemon.shutdown_timeout, |p| p.drain_timeout);
            let handle = old.clone();
            tokio::spawn(async move { handle.shutdown(Instant::now() + drain).await });
            summary.push(format!("{} removed (draining)", old.name));
        }
        *pools = next;
        self.table.send_replace(table_of(&pools));
        *current = new;
        let summary = if summary.is_empty() {
            "no changes".to_string()
        } else {
            summary.join(", ")
        };
        tracing::info!("reloaded {}: {summary}", path.display());
        Ok(format!("reloaded {}: {summary}", path.display()))
    }

    /// Stops every pool (all in parallel; running calls may finish until `deadline`) and
    /// returns when their workers are reaped.
    pub async fn stop_pools(&self, deadline: Instant) {
        let mut stops = tokio::task::JoinSet::new();
        for pool in self.handles() {
            stops.spawn(async move { pool.shutdown(deadline).await });
        }
        while stops.join_next().await.is_some() {}
    }
}

#[derive(Debug, Clone)]
pub enum LogTarget {
    Worker(WorkerId),
    Pool(String),
}

impl LogTarget {
    pub fn matches(&self, line: &LogLine) -> bool {
        match self {
            LogTarget::Worker(id) => line.worker == Some(*id),
            LogTarget::Pool(name) => line.pool == *name,
        }
    }
}

/// A pool's memory on its own metric, as its status sums it.
fn pool_memory(s: &PoolStatus) -> u64 {
    s.memory.as_ref().map_or(0, |m| m.memory_bytes)
}

/// The door's probes are pitctl's: `ready`, and `live` within a second.
impl Probes for Supervisor {
    fn ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(self.probe(ProbeKind::Ready, Duration::from_secs(1)))
    }
    fn live(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(self.probe(ProbeKind::Live, Duration::from_secs(1)))
    }
}
