//! One worker as its pool sees it: its lifecycle state (moved only through the lifecycle
//! table), its calls (one `CallWindow`), whether pitd writes to it, and what the pool
//! tracks for recycling and health. The pool core owns every `Worker`; its modules read
//! these fields and change state only through `apply`. (Its pipes are the actor's.)

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Call;
use super::window::{CallWindow, WindowPolicy};
use crate::daemon::monitor::{TreeSample, reported_growth_rate};
use crate::daemon::process::children::ExitInfo;
use crate::ids::WorkerId;
use crate::lifecycle::recycle::predict::PREDICT_WINDOW;
use crate::lifecycle::recycle::{CallPace, samples_over};
use crate::lifecycle::{Health, Reason, WorkerEvent, WorkerLimits, WorkerState, transition};

#[derive(Debug)]
pub struct Worker {
    pub id: WorkerId,
    pub pid: Option<u32>,
    state: WorkerState,
    pub health: Health,
    pub started_at: Instant,
    pub ready_at: Option<Instant>,
    /// When it last became idle: the longest idle worker takes the next call.
    pub idle_since: Instant,
    pub requests: u64,
    pub errors: u64,
    /// When its recent calls finished: when its `max_requests` replacement starts.
    pub pace: CallPace,
    /// Methods the worker announced in its ready frame.
    pub handlers: Vec<String>,
    /// pitd writes to its pipe: not before it started, nor for supervise-only workers, nor
    /// once pitd killed it. (A killed worker's pipe stays open, unwritten, until it is
    /// reaped: closing it would let the worker see the end of its input and exit by
    /// itself, racing the SIGKILL.)
    pub writable: bool,
    /// The calls it holds.
    pub calls: CallWindow<Call>,
    /// Whether its interpreter runs with the GIL, as its ready frame said.
    pub gil_enabled: Option<bool>,
    /// What its ready frame warned of (`GIL_REENABLED: ...`).
    pub warning: Option<String>,
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
    /// The worker it replaces (recycled, or crashed and owed a restart) and why that one
    /// went (its `worker_started` event says so; its own status does not: that is about
    /// what happened to it).
    pub started_for: Option<(WorkerId, Reason)>,
    /// While draining: stop it at this instant even if its calls have not finished.
    pub drain_deadline: Option<Instant>,
    /// An unanswered health ping: its id and when it was sent.
    pub ping: Option<(u64, Instant)>,
    /// Last time it proved alive (ready, a reply, a pong): pings go to workers idle since.
    pub last_seen: Instant,
    pub health_failures: u32,
    /// Recent (time, RSS) points for the growth rate.
    pub rss_history: VecDeque<(Instant, u64)>,
    /// Recent (time, `memory_metric`) points, for `predict_rss`.
    pub memory_history: VecDeque<(Instant, u64)>,
    /// Its latest consecutive samples over `max_rss` (`max_rss_samples`).
    pub samples_over_max_rss: u32,
    /// Recycled in place: it drains before its replacement starts (a surge would cross a
    /// memory budget), so it still counts towards the pool's size until it exits.
    pub in_place: bool,
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

/// Samples kept for the RSS growth rate (at 1 s sampling: the last half minute).
const RSS_HISTORY: usize = 30;

impl Worker {
    /// A worker about to be spawned: starting, health unknown, no calls.
    pub fn new(
        id: WorkerId,
        now: Instant,
        limits: WorkerLimits,
        started_for: Option<(WorkerId, Reason)>,
        window: WindowPolicy,
    ) -> Worker {
        Worker {
            id,
            pid: None,
            state: WorkerState::Starting,
            health: Health::Unknown,
            started_at: now,
            ready_at: None,
            idle_since: now,
            requests: 0,
            errors: 0,
            pace: CallPace::default(),
            handlers: Vec::new(),
            writable: false,
            calls: CallWindow::new(window),
            gil_enabled: None,
            warning: None,
            replies: Replies::None,
            exit: None,
            kill_at: None,
            stop_reason: None,
            kill_detail: None,
            sample: None,
            limits,
            consecutive_errors: 0,
            retire: None,
            started_for,
            drain_deadline: None,
            ping: None,
            last_seen: now,
            health_failures: 0,
            rss_history: VecDeque::new(),
            memory_history: VecDeque::new(),
            samples_over_max_rss: 0,
            in_place: false,
        }
    }

    pub fn state(&self) -> WorkerState {
        self.state
    }

    /// Moves the worker through the lifecycle table. The pool applies only events that fit
    /// the state it checked; one the table has no row for is a bug in the pool: it fails
    /// the tests (debug builds) and is logged, with the state kept, in a release build.
    pub fn apply(&mut self, event: WorkerEvent) {
        match transition(self.state, event) {
            Ok(next) => self.state = next,
            Err(e) => {
                debug_assert!(false, "{} {e}", self.id);
                tracing::error!(worker = %self.id, "{e}");
            }
        }
    }

    /// Ready for calls: taking them, or able to once a slot frees.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, WorkerState::Idle | WorkerState::Busy)
    }

    /// A call was handed over (started, or pipelined).
    pub fn call_started(&mut self) {
        if self.is_ready() {
            self.apply(WorkerEvent::CallStarted);
        }
    }

    /// The worker answered a call (or pitd took calls back): once it holds none, a busy
    /// worker idles and a draining one stays out of rotation.
    pub fn calls_changed(&mut self, now: Instant) {
        if !self.calls.is_empty() || !matches!(self.state, WorkerState::Busy | WorkerState::Draining) {
            return;
        }
        self.apply(WorkerEvent::CallsFinished);
        if self.state == WorkerState::Idle {
            self.idle_since = now;
        }
    }

    /// A sample of its process tree; `max_rss` is the pool's, for the count of samples
    /// over it.
    pub fn record_sample(&mut self, sample: TreeSample, max_rss: Option<u64>) {
        // The growth of a worker still importing its app is its start-up, not a leak.
        if self.state != WorkerState::Starting {
            self.rss_history.push_back((sample.at, sample.rss_bytes));
            while self.rss_history.len() > RSS_HISTORY {
                self.rss_history.pop_front();
            }
            self.memory_history.push_back((sample.at, sample.memory_bytes));
            while self.memory_history.len() > PREDICT_WINDOW {
                self.memory_history.pop_front();
            }
            self.samples_over_max_rss = samples_over(self.samples_over_max_rss, sample.memory_bytes, max_rss);
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

    pub fn startup_deadline(&self, timeout: Duration) -> Option<Instant> {
        (self.state == WorkerState::Starting).then_some(self.started_at + timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> Worker {
        let policy = WindowPolicy {
            slots: 1,
            pipeline_depth: 0,
        };
        Worker::new(WorkerId(1), Instant::now(), WorkerLimits::default(), None, policy)
    }

    #[test]
    fn a_worker_moves_only_through_the_table() {
        let mut w = worker();
        assert_eq!(w.state(), WorkerState::Starting);
        w.call_started();
        assert_eq!(w.state(), WorkerState::Starting, "not ready: a call does not start it");
        w.apply(WorkerEvent::Ready);
        w.call_started();
        assert_eq!(w.state(), WorkerState::Busy);
        w.calls_changed(Instant::now());
        assert_eq!(w.state(), WorkerState::Idle, "no calls left");
        w.apply(WorkerEvent::Stop);
        w.calls_changed(Instant::now());
        assert_eq!(w.state(), WorkerState::Stopping, "a stopping worker stays stopping");
    }

    #[test]
    #[should_panic(expected = "invalid worker transition")]
    fn an_event_the_table_has_no_row_for_is_a_bug_the_tests_see() {
        let mut w = worker();
        w.apply(WorkerEvent::CallsFinished);
    }
}
