//! systemd integration over `NOTIFY_SOCKET` (no-ops without it): READY=1 once every pool
//! has reached its size or is marked failing, STATUS= lines while running, WATCHDOG=1 at
//! half the watchdog period (sent from the async runtime, so a stalled runtime is caught),
//! and STOPPING=1 when the graceful stop begins.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::daemon::supervisor::Supervisor;
use crate::proto::status::{PoolState, StatusReport};

const READY_POLL: Duration = Duration::from_millis(50);
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Runs until `stop` is cancelled.
pub async fn run(sup: Arc<Supervisor>, stop: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let mut pet = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut status = tokio::time::interval(READY_POLL);
    let mut ready = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = pet.tick(), if watchdog.is_some() => send(&[NotifyState::Watchdog]),
            _ = status.tick() => {
                let Ok(report) = sup.status(None).await else { continue };
                let line = summary(&report);
                if !ready && all_settled(&report) {
                    ready = true;
                    status = tokio::time::interval(STATUS_EVERY);
                    status.tick().await;
                    send(&[NotifyState::Ready, NotifyState::Status(&line)]);
                } else if ready {
                    send(&[NotifyState::Status(&line)]);
                }
            }
        }
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: draining pools")]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

/// Every pool has reached its size, or is failing, or is drained: startup is over.
fn all_settled(report: &StatusReport) -> bool {
    report.pools.iter().all(|p| p.state != PoolState::Starting)
}

/// `STATUS=` text: "3 pools, 7/7 workers ready, 1234 calls, 2 failing".
pub fn summary(report: &StatusReport) -> String {
    let ready: usize = report
        .pools
        .iter()
        .map(|p| {
            p.workers
                .iter()
                .filter(|w| matches!(w.state.as_str(), "idle" | "busy"))
                .count()
        })
        .sum();
    let wanted: u32 = report.pools.iter().map(|p| p.size).sum();
    let calls: u64 = report.pools.iter().map(|p| p.requests).sum();
    let failing: Vec<&str> = report
        .pools
        .iter()
        .filter(|p| p.state == PoolState::Failing)
        .map(|p| p.name.as_str())
        .collect();
    let mut line = format!(
        "{} pools, {ready}/{wanted} workers ready, {calls} calls",
        report.pools.len()
    );
    if !failing.is_empty() {
        line.push_str(&format!(", failing: {}", failing.join(", ")));
    }
    line
}
