//! pitd itself: startup order, signals and shutdown ordering, written once, here.
//!
//! Startup: the guard is forked while pitd is single-threaded (`guard::start`, called by
//! the binary first thing), then pitd becomes a child subreaper, starts the process thread,
//! the runtime, the control socket and the pools. Shutdown: a root token is cancelled by
//! SIGTERM/SIGINT or a shutdown request; pools stop their workers (SIGTERM to each group,
//! SIGKILL after kill_timeout) within shutdown_timeout; then the socket files are removed.

pub mod door;
pub mod events;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod outbox;
pub mod pool;
pub mod probe;
pub mod process;
pub mod serve;
pub mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::ids::IdAllocator;
use crate::spec::Spec;
use events::EventLog;
use pool::PoolDeps;
use process::guard;
use process::output::OutputStore;
use process::procs::Procs;
use serve::socket::{self, Access};
use serve::{calls, control};
use supervisor::Supervisor;

/// Extra time, beyond shutdown_timeout, for SIGKILLed workers to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(2);

/// Runs the daemon until it is told to stop. Returns once every worker has been reaped.
pub fn run(spec: Spec, guard: Option<guard::Guard>) -> anyhow::Result<()> {
    // Orphans of workers (double-forked children) are re-parented to pitd, which reaps them.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!("cannot become a child subreaper ({e}); orphans of workers go to init");
    }
    let procs = Procs::start(guard).context("starting the process thread")?;
    // One runtime thread: every hop of a call (socket -> pool actor -> worker pipe and back)
    // is a task wake-up, and on one thread those cost no futex round trip. pitd's work per
    // call is small; forking, reaping and sampling have OS threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(spec, procs))
}

async fn serve(spec: Spec, procs: Procs) -> anyhow::Result<()> {
    let daemon = &spec.daemon;
    let monitor = monitor::Monitor::start(daemon.monitor_interval).context("starting the monitor thread")?;
    let access = Access {
        uid: nix::unistd::geteuid().as_raw(),
        group: daemon.socket_group.as_ref().map(|g| g.gid),
    };
    let control = socket::bind(&daemon.control_socket, daemon.control_mode, access.group)?;
    control.set_nonblocking(true)?;
    let control = tokio::net::UnixListener::from_std(control)?;

    let shutdown = CancellationToken::new();
    let metrics = Arc::new(metrics::Metrics::default());
    let deps_spawner: Arc<dyn pool::Spawner> = Arc::new(procs);
    let deps = PoolDeps {
        pipes: Arc::new(pool::seams::WorkerPipes),
        spawner: deps_spawner.clone(),
        ids: Arc::new(IdAllocator::default()),
        output: Arc::new(OutputStore::default()),
        events: Arc::new(EventLog::default()),
        monitor: Some(monitor),
        metrics: metrics.clone(),
        clock: pool::seams::WorkerClock::read(),
    };
    let sup = Arc::new(Supervisor::start(spec.clone(), deps, shutdown.clone()));
    let listeners = CancellationToken::new();
    let control_task = tokio::spawn(control::serve(control, sup.clone(), access, listeners.clone()));
    let call = socket::bind(&daemon.call_socket, daemon.call_mode, access.group)?;
    call.set_nonblocking(true)?;
    let call = tokio::net::UnixListener::from_std(call)?;
    let call_task = tokio::spawn(calls::serve(call, sup.pool_table(), access, listeners.clone()));
    let notify_task = tokio::spawn(notify::run(sup.clone(), shutdown.clone()));
    if let Some(budget) = daemon.memory_budget {
        // Kept at the sampling pace: a budget can only be seen crossed that often.
        let (sup, stop, every) = (sup.clone(), listeners.clone(), daemon.monitor_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => sup.balance_memory(budget).await,
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    if let Some(http) = &spec.http {
        let door = door::DoorState::new(http.clone(), sup.pool_table(), metrics.clone(), sup.clone())
            .map_err(|e| anyhow::anyhow!("the HTTP door: {e}"))?;
        // Its TLS files are read once, before it listens: a bad one stops pitd at start.
        let tls = door::tls::server_config(http).map_err(|e| anyhow::anyhow!("the HTTP door: {e}"))?;
        let listener = tokio::net::TcpListener::bind(http.listen)
            .await
            .with_context(|| format!("binding the HTTP door at {}", http.listen))?;
        let door = Arc::new(door);
        sup.set_door(door.clone());
        tokio::spawn(door::serve(listener, tls, door, listeners.clone()));
        let scheme = if http.tls.is_some() { "https" } else { "http" };
        tracing::info!("serving calls at {scheme}://{}/v1/call/POOL/METHOD", http.listen);
    }
    if let Some(addr) = daemon.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics_listen {addr}"))?;
        tokio::spawn(serve::metrics_http::serve_http(
            listener,
            sup.clone(),
            listeners.clone(),
        ));
        tracing::info!("serving metrics at http://{addr}/metrics");
    }
    tracing::info!(
        control_socket = %daemon.control_socket.display(),
        call_socket = %daemon.call_socket.display(),
        pools = spec.pools.len(),
        "pitd {} running (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let why = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = sup.stop_requested.cancelled() => break "a shutdown request",
            _ = hup.recv() => {
                // An invalid spec is refused and logged; the running one stays.
                if let Err(refusal) = sup.reload() {
                    tracing::error!("{}", refusal.message);
                }
            }
        }
    };
    // Not ready from now on; calls are still taken for `shutdown_delay` (a load balancer
    // or Kubernetes takes pitd out of its endpoints meanwhile), unless a second SIGTERM or
    // a SIGINT says not to wait.
    sup.begin_shutting_down();
    let delay = daemon.shutdown_delay;
    if why != "SIGINT" && !delay.is_zero() {
        tracing::info!("{why}: not ready; still taking calls for shutdown_delay ({delay:?})");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = term.recv() => tracing::info!("a second SIGTERM: stopping without the rest of the delay"),
            _ = int.recv() => tracing::info!("SIGINT: stopping without the rest of the delay"),
        }
    }
    shutdown.cancel();
    notify::stopping();
    let _ = notify_task.await;
    tracing::info!(
        "stopping on {why}: stopping workers (budget {:?})",
        daemon.shutdown_timeout
    );

    // 1. Stop every pool: queued calls get `shutting_down`, running calls may finish until
    //    the deadline, then workers get SIGTERM, and SIGKILL after their kill_timeout.
    let deadline = std::time::Instant::now() + daemon.shutdown_timeout;
    if tokio::time::timeout(daemon.shutdown_timeout + REAP_GRACE, sup.stop_pools(deadline))
        .await
        .is_err()
    {
        tracing::error!("workers were still running after shutdown_timeout; exiting anyway (the guard kills them)");
    }
    deps_spawner.release_template(None);
    // 2. Stop listening; 3. remove our socket files so the next pitd finds a clean path.
    listeners.cancel();
    let _ = control_task.await;
    let _ = call_task.await;
    let _ = std::fs::remove_file(&daemon.control_socket);
    let _ = std::fs::remove_file(&daemon.call_socket);
    tracing::info!("pitd stopped");
    Ok(())
}

/// The current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
