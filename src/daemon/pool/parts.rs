//! The pool core's state, in plain parts. Each has one owner among the core's halves,
//! which alone changes it: the waiting calls and the sessions' workers (`dispatch`),
//! restarts owed and the crash-loop breaker's record (`exits`), recycles and drains under
//! way (`recycle`), a preloaded pool's template and spare (`preload`). The workers, each
//! with its window of calls, are `worker::Worker`.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::Call;
use super::effect::Waiter;
use crate::daemon::monitor::TreeSample;
use crate::ids::WorkerId;
use crate::lifecycle::{Reason, RestartHistory};
use crate::proto::status::{MemorySample, ProcessStatus};

/// The calls waiting for a worker, and the sessions' workers. (Calls a worker holds are
/// its window, `Worker::calls`.)
#[derive(Debug, Default)]
pub(super) struct Calls {
    /// Oldest first.
    pub(super) queue: VecDeque<Call>,
    pub(super) affinity: HashMap<String, Affinity>,
}

/// A session's sticky worker.
#[derive(Debug, Clone, Copy)]
pub(super) struct Affinity {
    pub(super) worker: WorkerId,
    pub(super) last_used: Instant,
}

/// A call handed to a worker binds its session (if any) to that worker.
pub(super) fn bind_session(affinity: &mut HashMap<String, Affinity>, call: &Call, worker: WorkerId, now: Instant) {
    if let Some(s) = &call.session {
        affinity.insert(s.clone(), Affinity { worker, last_used: now });
    }
}

/// Restarts owed and the crash-loop breaker's record.
#[derive(Debug, Default)]
pub(super) struct Restarts {
    pub(super) history: RestartHistory,
    /// No start before this instant (backoff after a crash, or the failing probe delay).
    pub(super) at: Option<Instant>,
    /// Crashed workers not yet replaced, oldest first, with how each ended: their
    /// replacements count as restarts and name them (`replaces` in worker_started).
    pub(super) owed: VecDeque<(WorkerId, Reason)>,
    /// While failing: the worker whose exit tipped the pool, and how it ended.
    pub(super) failing_cause: Option<(WorkerId, String)>,
}

/// Recycles and drains under way.
#[derive(Debug, Default)]
pub(super) struct Recycling {
    /// Graceful recycles waiting for a surge slot, oldest first.
    pub(super) queue: VecDeque<(WorkerId, Reason)>,
    /// Recycled workers whose replacements are still to start, and why they were recycled.
    pub(super) replacing: VecDeque<(WorkerId, Reason)>,
    /// Workers drained one by one (`pitctl drain worker-N`): the pool keeps that many fewer.
    pub(super) drained_out: u32,
    /// `drain --wait` callers: for the pool, and for single workers.
    pub(super) drain_waiters: Vec<Waiter>,
    pub(super) worker_waiters: Vec<(WorkerId, Waiter)>,
}

/// A process of the pool that is not a worker, and its last sample.
#[derive(Debug)]
pub(super) struct Sampled {
    pub(super) pid: u32,
    pub(super) sample: Option<TreeSample>,
}

impl Sampled {
    pub(super) fn new(pid: u32) -> Sampled {
        Sampled { pid, sample: None }
    }

    pub(super) fn measured(&self) -> Option<MemorySample> {
        self.sample.as_ref().map(TreeSample::memory)
    }

    pub(super) fn status(&self) -> ProcessStatus {
        let s = self.sample.as_ref();
        ProcessStatus {
            pid: self.pid,
            rss_bytes: s.map_or(0, |s| s.rss_bytes),
            memory_bytes: s.map_or(0, |s| s.memory_bytes),
            pss_bytes: s.and_then(|s| s.pss_bytes),
            uss_bytes: s.and_then(|s| s.uss_bytes),
        }
    }
}

/// The pool's running template.
#[derive(Debug)]
pub(super) struct TemplateProcs {
    pub(super) template: Sampled,
    pub(super) spare: Option<Sampled>,
    /// Set from the template's ready report; gone with the template.
    pub(super) warnings: Vec<String>,
}
