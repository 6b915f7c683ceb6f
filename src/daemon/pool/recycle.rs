//! Recycling, draining and scaling: the replacement starts first, the old worker retires
//! only when the pool has `size` other ready workers, and at most `max_surge` workers of a
//! pool are being replaced at a time. `hard_rss` and `--now` are the exceptions: they kill
//! at once, then replace.

use std::time::Instant;

use super::core::PoolCore;
use super::effect::{Effect, Waiter};
use crate::ids::WorkerId;
use crate::lifecycle::phase::{Phase, PhaseEvent};
use crate::lifecycle::recycle::replacement_due;
use crate::lifecycle::{Reason, WorkerEvent, WorkerState, WorkerStats, recycle_decision};
use crate::proto::call::ErrorKind;
use crate::proto::event::EventKind;

impl PoolCore {
    /// How many workers the pool keeps: `size` (spec or `scale`), less the workers drained
    /// one by one, none while the pool is drained.
    pub(super) fn desired(&self) -> usize {
        if self.phase.drained() {
            0
        } else {
            (self.size as usize).saturating_sub(self.recycling.drained_out as usize)
        }
    }

    /// Evaluates the recycle triggers of one worker and acts on the first that fires.
    pub(super) fn check_triggers(&mut self, id: WorkerId, now: Instant) {
        let Some(w) = self.workers.get(&id) else { return };
        // `hard_rss` holds for a worker on its way out too: one still serving until its
        // replacement is ready, or draining its calls, is killed past it all the same.
        let leaving = w.retire.is_some() || w.state() == WorkerState::Draining;
        if leaving && w.writable && self.over_hard_rss(id) {
            return self.kill_over_hard_rss(id);
        }
        if w.retire.is_some() || !matches!(w.state(), WorkerState::Idle | WorkerState::Busy) {
            return;
        }
        let stats = WorkerStats {
            started_at: w.started_at,
            requests: w.requests,
            consecutive_errors: w.consecutive_errors,
            memory_bytes: w.sample.as_ref().map(|s| s.memory_bytes),
            samples_over_max_rss: w.samples_over_max_rss,
            health_failures: w.health_failures,
        };
        match recycle_decision(&stats, &w.limits, &self.spec.recycle, &self.spec.health, now) {
            Some(Reason::HardRss) => self.kill_over_hard_rss(id),
            Some(reason) => self.request_recycle(id, reason, now),
            None if self.predicts_crossing(id) => {
                tracing::info!(pool = %self.spec.name, worker = %id, "its memory growth would cross its limit before a replacement is ready: recycling it now");
                self.request_recycle(id, Reason::PredictedRss, now);
            }
            None if w.limits.max_requests.is_some() => {
                // Its replacement starts ahead of the limit, so that it is ready when the
                // worker reaches it (`lifecycle::recycle::ahead`).
                let due = replacement_due(
                    w.requests,
                    w.calls.in_flight() as u64,
                    w.limits.max_requests,
                    w.pace.per_second(now),
                    self.counts.startups.estimate(),
                );
                if due {
                    self.request_recycle(id, Reason::MaxRequests, now);
                }
            }
            None => {}
        }
    }

    fn over_hard_rss(&self, id: WorkerId) -> bool {
        let memory = self
            .workers
            .get(&id)
            .and_then(|w| w.sample.as_ref())
            .map(|s| s.memory_bytes);
        matches!((memory, self.spec.recycle.hard_rss), (Some(m), Some(limit)) if limit > 0 && m > limit)
    }

    /// Kills a worker past `hard_rss` at once; a replacement starts unless one already did
    /// (it was being recycled).
    fn kill_over_hard_rss(&mut self, id: WorkerId) {
        const MIB: u64 = 1024 * 1024;
        let Some(w) = self.workers.get(&id) else { return };
        let memory = w.sample.as_ref().map_or(0, |s| s.memory_bytes);
        let replaced = w.retire.is_some() && !w.in_place;
        let detail = format!(
            "memory over hard_rss ({} MiB > {} MiB)",
            memory / MIB,
            self.spec.recycle.hard_rss.unwrap_or(0) / MIB
        );
        tracing::warn!(pool = %self.spec.name, worker = %id, "{detail}: killing it at once");
        if !replaced {
            self.recycling.replacing.push_back((id, Reason::HardRss));
        }
        self.kill_worker(id, Reason::HardRss, detail);
    }

    /// Workers past their own max_age.
    pub(super) fn check_ages(&mut self, now: Instant) {
        let old: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.retire.is_none() && w.limits.max_age.is_some_and(|a| w.started_at + a <= now))
            .map(|w| w.id)
            .collect();
        for id in old {
            self.check_triggers(id, now);
        }
    }

    /// Queues a graceful recycle; it starts when a surge slot is free.
    pub(super) fn request_recycle(&mut self, id: WorkerId, reason: Reason, now: Instant) {
        let queued = self.recycling.queue.iter().any(|(w, _)| *w == id);
        if queued || self.workers.get(&id).is_none_or(|w| w.retire.is_some() || !w.live()) {
            return;
        }
        self.recycling.queue.push_back((id, reason));
        self.advance_recycles(now);
    }

    /// Selects queued recycles while fewer than `max_surge` replacements are under way: a
    /// selected worker holds its slot until its replacement is ready and it starts to drain.
    /// A worker draining its last calls holds none: the next replacement need not wait for
    /// a long call to end (nor, with `max_requests`, let the next due worker serve on while
    /// it waits).
    pub(super) fn advance_recycles(&mut self, now: Instant) {
        while let Some(&(id, reason)) = self.recycling.queue.front() {
            // A worker recycled in place holds a slot too, until it has exited: the pool is
            // one worker short meanwhile.
            let in_flight = self
                .workers
                .values()
                .filter(|w| (w.retire.is_some() && w.is_ready()) || w.in_place)
                .count();
            if in_flight >= self.spec.recycle.max_surge as usize {
                return;
            }
            self.recycling.queue.pop_front();
            let Some(w) = self.workers.get_mut(&id).filter(|w| w.live() && w.retire.is_none()) else {
                continue;
            };
            if w.state() == WorkerState::Starting {
                // Nothing to hand over: replace it outright.
                self.recycling.replacing.push_back((id, reason));
                self.kill_worker(id, reason, format!("recycled ({reason}) before it was ready"));
                continue;
            }
            if self.surge_crosses_budget() {
                // A replacement beside it would cross the memory budget: it goes first.
                self.recycle_in_place(id, reason, now);
                continue;
            }
            let Some(w) = self.workers.get_mut(&id) else { continue };
            w.retire = Some(reason);
            let pid = w.pid;
            self.counts.recycled += 1;
            self.deps.metrics.recycle(&self.spec.name, reason);
            self.recycling.replacing.push_back((id, reason));
            self.emit(EventKind::WorkerRecycled, Some(id), pid, |ev| ev.reason = Some(reason));
        }
        self.fill(now);
    }

    /// Retires workers whose replacements are ready: once the pool has `desired` ready
    /// workers not being retired, each retiring worker drains.
    pub(super) fn retire_replaced(&mut self, now: Instant) {
        let ready_members = self
            .workers
            .values()
            .filter(|w| w.retire.is_none() && matches!(w.state(), WorkerState::Idle | WorkerState::Busy))
            .count();
        if ready_members < self.desired() {
            return;
        }
        let retiring: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.retire.is_some() && matches!(w.state(), WorkerState::Idle | WorkerState::Busy))
            .map(|w| w.id)
            .collect();
        for id in retiring {
            self.drain_worker(id, now);
        }
        self.advance_recycles(now);
    }

    /// Takes a worker out of rotation: it finishes its call (within drain_timeout), then stops.
    pub(super) fn drain_worker(&mut self, id: WorkerId, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if w.state() == WorkerState::Starting {
            let reason = w.retire.or(Some(Reason::Manual));
            return self.stop_worker(id, reason, now);
        }
        if !w.is_ready() {
            return; // already draining or stopping
        }
        w.apply(WorkerEvent::Drain);
        w.drain_deadline = Some(now + self.spec.drain_timeout);
        // Not being retired, it drains because an operator said so (`pitctl drain`).
        let (idle, pid, reason) = (w.calls.is_empty(), w.pid, w.retire.unwrap_or(Reason::Manual));
        self.emit(EventKind::WorkerDraining, Some(id), pid, |ev| ev.reason = Some(reason));
        // Sessions bound to it move on their next call (only idle/busy workers bind).
        if idle {
            self.stop_worker(id, Some(reason), now);
        }
    }

    /// Stops draining workers that are done or out of time.
    pub(super) fn finish_drains(&mut self, now: Instant) {
        let done: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.state() == WorkerState::Draining)
            .filter(|w| w.calls.is_empty() || w.drain_deadline.is_some_and(|t| t <= now))
            .map(|w| w.id)
            .collect();
        for id in done {
            let reason = self.workers.get(&id).and_then(|w| w.retire).or(Some(Reason::Manual));
            self.stop_worker(id, reason, now);
        }
        self.note_emptied();
    }

    /// A draining pool whose last worker is gone is drained: `drain --wait` returns.
    pub(super) fn note_emptied(&mut self) {
        if self.phase == Phase::Draining && self.workers.is_empty() {
            self.move_phase(PhaseEvent::Emptied);
        }
        if self.phase == Phase::Drained {
            for done in std::mem::take(&mut self.recycling.drain_waiters) {
                self.effect(Effect::Wake(done));
            }
        }
    }

    /// `pitctl recycle`: one worker, or every worker of the pool one after another.
    pub(super) fn recycle_command(
        &mut self,
        worker: Option<WorkerId>,
        now: bool,
        at: Instant,
    ) -> Result<String, String> {
        let targets: Vec<WorkerId> = match worker {
            Some(id) => vec![self.known_worker(id)?],
            None => self
                .workers
                .values()
                .filter(|w| w.live() && w.retire.is_none())
                .map(|w| w.id)
                .collect(),
        };
        if worker.is_none() && !targets.is_empty() {
            // A recycled pool picks up the code on disk: its template imports it afresh.
            self.effect(Effect::ReleaseTemplate);
        }
        for &id in &targets {
            if now {
                self.recycling.replacing.push_back((id, Reason::Manual));
                self.kill_worker(id, Reason::Manual, "pitctl recycle --now".into());
            } else {
                self.request_recycle(id, Reason::Manual, at);
            }
        }
        self.fill(at);
        let how = if now {
            "killed and replaced"
        } else {
            "recycling (replacement first)"
        };
        Ok(format!("{} worker(s) of pool {}: {how}", targets.len(), self.spec.name))
    }

    /// `pitctl drain`: a worker (the pool keeps one worker fewer) or the whole pool.
    pub(super) fn drain_command(
        &mut self,
        worker: Option<WorkerId>,
        done: Option<Waiter>,
        now: Instant,
    ) -> Result<String, String> {
        let message = match worker {
            Some(id) => {
                let id = self.known_worker(id)?;
                if self.workers.get(&id).is_some_and(|w| w.retire.is_none() && w.live()) {
                    self.recycling.drained_out += 1;
                }
                self.drain_worker(id, now);
                if let Some(done) = done {
                    self.recycling.worker_waiters.push((id, done));
                }
                format!("draining {id} of pool {}; it will not be replaced", self.spec.name)
            }
            None => {
                self.move_phase(PhaseEvent::Drain);
                for call in std::mem::take(&mut self.calls.queue) {
                    self.fail_call(call, ErrorKind::PoolDrained);
                }
                let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
                for id in ids {
                    self.drain_worker(id, now);
                }
                if let Some(done) = done {
                    self.recycling.drain_waiters.push(done);
                }
                format!("draining pool {}: new calls get pool_drained", self.spec.name)
            }
        };
        self.finish_drains(now);
        Ok(message)
    }

    /// `pitctl resume`: undoes drains; the pool starts its workers again.
    pub(super) fn resume_command(&mut self, now: Instant) -> Result<String, String> {
        let was = self.phase.drained() || self.recycling.drained_out > 0;
        if self.phase.drained() {
            // A drained pool starts afresh, a crash loop before the drain forgotten.
            self.move_phase(PhaseEvent::Resume);
            self.restarts.failing_cause = None;
            self.restarts.history = Default::default();
            self.restarts.at = None;
        }
        self.recycling.drained_out = 0;
        self.fill(now);
        Ok(if was {
            format!("pool {} resumed: {} workers", self.spec.name, self.desired())
        } else {
            format!("pool {} was not drained", self.spec.name)
        })
    }

    /// `pitctl scale`: a new size; extra workers drain (the newest idle first).
    pub(super) fn scale_command(&mut self, size: u32, now: Instant) -> Result<String, String> {
        if size == 0 {
            return Err("a pool's size must be at least 1 (use `pitctl drain` to empty it)".into());
        }
        let old = self.size;
        self.resize(size, now);
        Ok(format!("pool {} scaled from {old} to {size} workers", self.spec.name))
    }

    /// A reloaded spec: a change beyond `size` recycles every worker (reason `reload`), one
    /// surge at a time, and the new workers run the new spec; `size` scales.
    pub(super) fn reconfigure(&mut self, spec: crate::spec::PoolSpec, now: Instant) {
        let size_only = crate::spec::PoolSpec {
            size: spec.size,
            ..self.spec.clone()
        } == spec;
        let size = spec.size;
        self.spec = spec;
        if !size_only {
            // Replacements must run the new spec (and the code on disk now), not a template
            // that imported the old.
            self.effect(Effect::ReleaseTemplate);
            // A fixed spec deserves a fresh start, not the old crash loop's backoff.
            if self.phase.failing() {
                self.move_phase(PhaseEvent::Recovered);
                self.restarts.failing_cause = None;
            }
            self.restarts.history = Default::default();
            self.restarts.at = None;
            let ids: Vec<WorkerId> = self
                .workers
                .values()
                .filter(|w| w.live() && w.retire.is_none())
                .map(|w| w.id)
                .collect();
            for id in ids {
                self.request_recycle(id, Reason::Reload, now);
            }
        }
        self.resize(size, now);
    }

    fn resize(&mut self, size: u32, now: Instant) {
        self.size = size;
        self.recycling.drained_out = 0;
        let mut members: Vec<(bool, bool, Instant, WorkerId)> = self
            .workers
            .values()
            .filter(|w| w.live() && w.retire.is_none())
            .map(|w| {
                (
                    w.state() != WorkerState::Starting,
                    !w.calls.is_empty(),
                    w.started_at,
                    w.id,
                )
            })
            .collect();
        // Starting first, then idle before busy, newest first.
        members.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(b.2.cmp(&a.2)));
        let extra = members.len().saturating_sub(self.desired());
        for &(_, _, _, id) in members.iter().take(extra) {
            if let Some(w) = self.workers.get_mut(&id) {
                w.retire = Some(Reason::Manual);
            }
            self.drain_worker(id, now);
        }
        self.fill(now);
    }

    fn known_worker(&self, id: WorkerId) -> Result<WorkerId, String> {
        self.workers
            .get(&id)
            .filter(|w| w.live())
            .map(|w| w.id)
            .ok_or_else(|| format!("{id} is not a running worker of pool {}", self.spec.name))
    }
}
