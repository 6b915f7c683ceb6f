//! The supervisor: pools by name, and the routing of control requests to them. It holds
//! only handles; every pool's state lives in its own actor.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::events::EventLog;
use super::output::OutputStore;
use super::pool::{self, PoolDeps, PoolHandle, PoolMsg};
use tokio::sync::oneshot;

/// Where a pool command's answer goes.
pub type Reply = oneshot::Sender<Result<String, String>>;
use crate::ids::WorkerId;
use crate::proto::control::{ControlErrorKind, LogLine};
use crate::proto::status::StatusReport;
use crate::spec::Spec;

pub struct Supervisor {
    pools: Vec<PoolHandle>,
    call_socket: String,
    started: Instant,
    pub output: Arc<OutputStore>,
    pub events: Arc<EventLog>,
    /// Cancelled to stop the daemon (SIGTERM, SIGINT or a shutdown request).
    pub shutdown: CancellationToken,
}

/// A control request the supervisor refuses, with the kind pitctl maps to its message.
#[derive(Debug)]
pub struct Refusal {
    pub kind: ControlErrorKind,
    pub message: String,
}

impl Supervisor {
    /// Starts every pool of the spec. Must run inside the runtime.
    pub fn start(spec: &Spec, deps: PoolDeps, shutdown: CancellationToken) -> Supervisor {
        let pools = spec
            .pools
            .iter()
            .map(|p| pool::start(p.clone(), deps.clone()))
            .collect();
        Supervisor {
            pools,
            call_socket: spec.daemon.call_socket.display().to_string(),
            started: Instant::now(),
            output: deps.output,
            events: deps.events,
            shutdown,
        }
    }

    /// Pools by name, for the call server.
    pub fn pool_table(&self) -> super::calls::PoolTable {
        Arc::new(self.pools.iter().map(|p| (p.name.clone(), p.clone())).collect())
    }

    fn pool(&self, name: &str) -> Result<&PoolHandle, Refusal> {
        self.pools.iter().find(|p| p.name == name).ok_or_else(|| Refusal {
            kind: ControlErrorKind::NoSuchPool,
            message: format!("no pool named {name:?} (pools: {})", self.pool_names()),
        })
    }

    fn pool_names(&self) -> String {
        let names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    pub async fn status(&self, only: Option<&str>) -> Result<StatusReport, Refusal> {
        let handles: Vec<&PoolHandle> = match only {
            Some(name) => vec![self.pool(name)?],
            None => self.pools.iter().collect(),
        };
        let mut pools = Vec::with_capacity(handles.len());
        for h in handles {
            if let Some(s) = h.status().await {
                pools.push(s);
            }
        }
        Ok(StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            pools,
            call_socket: Some(self.call_socket.clone()),
        })
    }

    /// The pool that owns `target` (a pool name or a running worker's id), and the worker.
    async fn resolve(&self, target: &str) -> Result<(&PoolHandle, Option<WorkerId>), Refusal> {
        let Some(id) = WorkerId::parse(target) else {
            return Ok((self.pool(target)?, None));
        };
        for pool in &self.pools {
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
        if !pool.send(build(worker, tx)) {
            return Err(Refusal {
                kind: ControlErrorKind::ShuttingDown,
                message: "pitd is shutting down".into(),
            });
        }
        match rx.await {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(message)) => Err(Refusal {
                kind: ControlErrorKind::BadRequest,
                message,
            }),
            Err(_) => Err(Refusal {
                kind: ControlErrorKind::ShuttingDown,
                message: "pitd is shutting down".into(),
            }),
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
            if known_now || !self.output.tail(1, |l| l.worker == id).is_empty() {
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

    /// Stops every pool (all in parallel; running calls may finish until `deadline`) and
    /// returns when their workers are reaped.
    pub async fn stop_pools(&self, deadline: Instant) {
        let mut stops = tokio::task::JoinSet::new();
        for pool in &self.pools {
            let pool = pool.clone();
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
            LogTarget::Worker(id) => line.worker == *id,
            LogTarget::Pool(name) => line.pool == *name,
        }
    }
}
