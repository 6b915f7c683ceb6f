//! What `pitctl top` knows and how keys change it: plain data, no terminal and no socket.
//!
//! The event loop (`mod.rs`) feeds it status reports and events and asks `on_key` what a key
//! means; the view (`view.rs`) only reads it. Time enters as an argument (`apply_status(..,
//! now)`), so the derived figures (calls/s) are reproducible in tests.
//!
//! Invariant: the selection names a row by pool and worker id, not by position, so a refresh
//! or a re-sort keeps the same worker selected; when that worker is gone the selection falls
//! back to the row at the same position.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::ids::WorkerId;
use crate::proto::event::Event;
use crate::proto::status::{MemoryMetric, PoolStatus, StatusReport, WorkerStatus};

/// Refreshes kept for the sparklines: a minute at the default interval.
pub const HISTORY: usize = 60;

/// Events kept; the pane shows the newest that fit.
const KEEP_EVENTS: usize = 200;

/// What the event loop must do for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    Recycle(WorkerId),
    Drain(WorkerId),
    Resume(String),
}

/// Worker order inside each pool; pools keep the daemon's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Rss,
    Cpu,
    Calls,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Id => SortKey::Rss,
            SortKey::Rss => SortKey::Cpu,
            SortKey::Cpu => SortKey::Calls,
            SortKey::Calls => SortKey::Id,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Rss => "rss",
            SortKey::Cpu => "cpu",
            SortKey::Calls => "calls",
        }
    }
}

/// One selectable row: a worker, or a pool without workers (so a drained pool can still be
/// selected and resumed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pool: String,
    pub worker: Option<WorkerId>,
}

/// A destructive action waiting for y/n.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub action: Action,
    pub prompt: String,
}

/// The status line: a reply from pitd or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// Per-pool history for the sparklines and the calls/s figure.
#[derive(Debug, Clone, Default)]
pub struct PoolHistory {
    /// The pool's `requests` counter at the previous refresh, and when it was read.
    last: Option<(u64, Instant)>,
    /// Calls/s between consecutive refreshes, oldest first.
    pub calls_per_s: VecDeque<f64>,
    /// The pool's memory at each refresh whose total left no process out, oldest first:
    /// workers, template and spare, on the figure shown beside RSS (RSS where there is none).
    pub memory: VecDeque<u64>,
}

#[derive(Debug, Clone)]
pub struct State {
    pub interval: Duration,
    pub status: Option<StatusReport>,
    pub events: VecDeque<Event>,
    pub history: HashMap<String, PoolHistory>,
    pub selected: Option<Target>,
    /// Position of the selection at the last move, used when the selected worker vanishes.
    selected_row: usize,
    pub sort: SortKey,
    pub confirm: Option<Confirm>,
    pub help: bool,
    pub message: Option<Message>,
    /// Why the last refresh failed; cleared by the next good one.
    pub disconnected: Option<String>,
}

impl State {
    pub fn new(interval: Duration) -> State {
        State {
            interval,
            status: None,
            events: VecDeque::new(),
            history: HashMap::new(),
            selected: None,
            selected_row: 0,
            sort: SortKey::Id,
            confirm: None,
            help: false,
            message: None,
            disconnected: None,
        }
    }

    /// Takes a fresh report read at `now`: extends each pool's history and keeps the selection.
    pub fn apply_status(&mut self, report: StatusReport, now: Instant) {
        // A new daemon pid means counters restarted from zero: old deltas would be nonsense.
        if self.status.as_ref().is_some_and(|old| old.pid != report.pid) {
            self.history.clear();
        }
        self.history
            .retain(|name, _| report.pools.iter().any(|p| &p.name == name));
        for pool in &report.pools {
            let h = self.history.entry(pool.name.clone()).or_default();
            if let Some((before, at)) = h.last {
                let secs = now.saturating_duration_since(at).as_secs_f64();
                // A counter that went down belongs to a restarted pool: skip that sample.
                if secs > 0.0 && pool.requests >= before {
                    push(&mut h.calls_per_s, (pool.requests - before) as f64 / secs);
                }
            }
            h.last = Some((pool.requests, now));
            // The pool's whole footprint, a preloaded pool's template and spare included; a
            // total that leaves a process out (not sampled yet) would draw a false dip.
            if pool.memory.as_ref().is_none_or(|m| m.complete) {
                let metric = pool.shown_metric().unwrap_or(MemoryMetric::Rss);
                push(&mut h.memory, pool.total(metric));
            }
        }
        self.status = Some(report);
        self.disconnected = None;
        self.keep_selection();
    }

    /// Takes the daemon's recent events (oldest first), keeping the newest.
    pub fn apply_events(&mut self, events: Vec<Event>) {
        let skip = events.len().saturating_sub(KEEP_EVENTS);
        self.events = events.into_iter().skip(skip).collect();
    }

    /// The processes the pool's latest memory total leaves out (not sampled yet).
    pub fn unsampled(&self, pool: &str) -> &[String] {
        let memory = self
            .status
            .as_ref()
            .and_then(|s| s.pools.iter().find(|p| p.name == pool))
            .and_then(|p| p.memory.as_ref());
        memory.map_or(&[], |m| &m.unsampled)
    }

    /// Calls/s of a pool over the last refresh; `None` until two reports were seen.
    pub fn calls_per_s(&self, pool: &str) -> Option<f64> {
        self.history.get(pool)?.calls_per_s.back().copied()
    }

    pub fn pool(&self, name: &str) -> Option<&PoolStatus> {
        self.status.as_ref()?.pools.iter().find(|p| p.name == name)
    }

    /// The selectable rows in display order: pools in the daemon's order, workers sorted.
    pub fn rows(&self) -> Vec<(&PoolStatus, Option<&WorkerStatus>)> {
        let Some(status) = &self.status else {
            return Vec::new();
        };
        let mut rows = Vec::new();
        for pool in &status.pools {
            if pool.workers.is_empty() {
                rows.push((pool, None));
                continue;
            }
            let mut workers: Vec<&WorkerStatus> = pool.workers.iter().collect();
            match self.sort {
                SortKey::Id => workers.sort_by_key(|w| w.id),
                SortKey::Rss => workers.sort_by_key(|w| std::cmp::Reverse((w.rss_bytes, w.id))),
                SortKey::Cpu => workers.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent).then(a.id.cmp(&b.id))),
                SortKey::Calls => workers.sort_by_key(|w| std::cmp::Reverse((w.requests, w.id))),
            }
            rows.extend(workers.into_iter().map(|w| (pool, Some(w))));
        }
        rows
    }

    /// Index of the selected row in `rows()`, if it is still there.
    pub fn selected_index(&self) -> Option<usize> {
        let sel = self.selected.as_ref()?;
        self.rows()
            .iter()
            .position(|(p, w)| p.name == sel.pool && w.map(|w| w.id) == sel.worker)
    }

    fn select_row(&mut self, index: usize) {
        let target = self.rows().get(index).map(|(p, w)| Target {
            pool: p.name.clone(),
            worker: w.map(|w| w.id),
        });
        self.selected = target;
        self.selected_row = index;
    }

    fn keep_selection(&mut self) {
        let len = self.rows().len();
        match self.selected_index() {
            Some(i) => self.selected_row = i,
            None if len > 0 => self.select_row(self.selected_row.min(len - 1)),
            None => self.selected = None,
        }
    }

    /// Moves the selection by `delta` rows, stopping at the first and last row.
    fn move_selection(&mut self, delta: isize) {
        let len = self.rows().len();
        if len == 0 {
            return;
        }
        let from = self.selected_index().unwrap_or(self.selected_row) as isize;
        self.select_row((from + delta).clamp(0, len as isize - 1) as usize);
    }

    /// What a key means. Keys that only change the view return `None`.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if ctrl_c {
            // Raw mode turns Ctrl-C into a key instead of SIGINT; it must still quit.
            return Some(Action::Quit);
        }
        if let Some(confirm) = self.confirm.take() {
            return match key.code {
                KeyCode::Char('y' | 'Y') => Some(confirm.action),
                KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                    self.say("cancelled", false);
                    None
                }
                _ => {
                    // Anything else leaves the question open: only y acts, only n/Esc cancel.
                    self.confirm = Some(confirm);
                    None
                }
            };
        }
        if self.help {
            self.help = false;
            return (key.code == KeyCode::Char('q')).then_some(Action::Quit);
        }
        self.message = None;
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Some(Action::Quit),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX / 2),
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('r') => self.ask("recycle", Action::Recycle),
            KeyCode::Char('d') => self.ask("drain", Action::Drain),
            KeyCode::Char('u') => match &self.selected {
                Some(t) => return Some(Action::Resume(t.pool.clone())),
                None => self.say("no pool selected", true),
            },
            _ => {}
        }
        None
    }

    /// Puts a worker action up for confirmation.
    fn ask(&mut self, verb: &str, action: fn(WorkerId) -> Action) {
        match &self.selected {
            Some(Target { pool, worker: Some(id) }) => {
                self.confirm = Some(Confirm {
                    action: action(*id),
                    prompt: format!("{verb} {id} of pool {pool}? (y/n)"),
                });
            }
            _ => self.say(&format!("select a worker to {verb}"), true),
        }
    }

    pub fn say(&mut self, text: &str, error: bool) {
        self.message = Some(Message {
            text: text.to_string(),
            error,
        });
    }
}

fn push<T>(ring: &mut VecDeque<T>, value: T) {
    if ring.len() == HISTORY {
        ring.pop_front();
    }
    ring.push_back(value);
}
