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
        // Send under the ring lock: a follower's snapshot plus stream never repeats an event.
        let mut ring = self.ring.lock().expect("event ring lock");
        let _ = self.tx.send(event.clone());
        ring.push_back(event);
        while ring.len() > KEEP_EVENTS {
            ring.pop_front();
        }
    }

    /// The events kept so far, and a receiver of every later one.
    pub fn recent_and_subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let ring = self.ring.lock().expect("event ring lock");
        (ring.iter().cloned().collect(), self.tx.subscribe())
    }
}
