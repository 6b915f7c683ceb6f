//! The event log: a bounded ring of lifecycle events plus a broadcast for followers.
//! Pools write; the control server reads.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::proto::event::Event;

/// Events kept for `pitctl events`.
pub const KEEP_EVENTS: usize = 1000;

pub struct EventLog {
    ring: Mutex<VecDeque<Event>>,
    tx: broadcast::Sender<Event>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            ring: Mutex::default(),
            tx: broadcast::channel(256).0,
        }
    }
}

impl EventLog {
    pub fn emit(&self, event: Event) {
        tracing::info!(
            target: "event",
            pool = %event.pool,
            worker = event.worker.map(|w| w.to_string()),
            pid = event.pid,
            reason = event.reason.map(|r| r.as_str()),
            exit_status = event.exit_status.as_deref(),
            "{}",
            serde_json::to_value(event.event).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        );
        let _ = self.tx.send(event.clone());
        let mut ring = self.ring.lock().expect("event ring lock");
        ring.push_back(event);
        while ring.len() > KEEP_EVENTS {
            ring.pop_front();
        }
    }

    pub fn recent(&self) -> Vec<Event> {
        self.ring.lock().expect("event ring lock").iter().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
