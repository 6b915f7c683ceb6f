//! The calls one worker holds, as one model with one owner: a window of calls in flight.
//!
//! A worker has `slots` calls *running* (started, or certain to start: the worker reads its
//! pipe in order), and, once every slot is taken, up to `pipeline_depth` more *pipelined*
//! behind them: written to its pipe with a start-by instant, not started yet, and taken back
//! when the calls ahead run long (`pipeline.rs` says why). Today's pools are `slots = 1`
//! with pipelining; concurrent workers are `slots = N` without; both are this one model.
//!
//! A running call whose caller has had `timeout` keeps its slot, without the call, until
//! the worker answers it or dies: the slot is the worker's, and only the worker frees it.
//! Calls pitd took back are remembered until the worker's refusal of them arrives.
//!
//! Pure: no I/O and no clock. Instants are passed in; the window is generic over what a
//! call is, so its rules are tested with plain values.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::routing::{may_pipeline, overdue_from_back, pipe_has_bytes_for};

/// How many calls a worker may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicy {
    /// Calls running at once.
    pub slots: usize,
    /// Calls written behind full slots, not started yet (0: no pipelining).
    pub pipeline_depth: usize,
}

/// A call started on the worker.
#[derive(Debug)]
struct Running<C> {
    req_id: u64,
    /// `None` once its caller has been answered (timed out): the slot stays taken.
    call: Option<C>,
    deadline: Instant,
    /// When it was handed over, or reached the front of the pipe.
    since: Instant,
    /// It was pipelined: the worker refuses it if it got to it past its start-by.
    pipelined: bool,
}

/// A call written behind the running ones.
#[derive(Debug)]
struct Pipelined<C> {
    req_id: u64,
    call: C,
    frame_len: usize,
    deadline: Instant,
    /// The worker does not start it at or after this instant of CLOCK_MONOTONIC.
    start_by_ns: u64,
    /// The same instant on pitd's clock.
    start_by: Instant,
    /// When pitd looks at taking it back: from `start_by` on, and again a little later
    /// while an answer is on its way.
    revoke_at: Instant,
}

/// What the worker's answer to a call means.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion<C> {
    /// It ran the call: its caller gets the answer.
    Answered { call: C, took: Duration },
    /// It got to a pipelined call past its start-by and did not run it.
    NotStarted(C),
    /// The answer to a call whose caller already had `timeout`: dropped, its slot freed.
    Late,
    /// The answer to a call pitd took back: dropped. `ran` when it ran anyway (a bug).
    TakenBack { ran: bool },
    /// Not a call this worker holds: it broke the protocol.
    Unknown,
}

/// A dead worker's calls, oldest first.
#[derive(Debug, PartialEq, Eq)]
pub struct Settled<C> {
    /// Started, or may have: they failed with the worker (or are retried).
    pub lost: Vec<C>,
    /// Known never to have started: they go to another worker.
    pub unstarted: Vec<C>,
}

#[derive(Debug)]
pub struct CallWindow<C> {
    policy: WindowPolicy,
    /// In the order they started.
    running: VecDeque<Running<C>>,
    /// In pipe order; start-by instants never increase towards the back.
    pipelined: VecDeque<Pipelined<C>>,
    /// Calls taken back whose refusal has not arrived.
    taken_back: Vec<u64>,
    /// Calls in a row that took at most `PIPELINE_FAST`.
    fast_streak: u32,
}

impl<C> CallWindow<C> {
    pub fn new(policy: WindowPolicy) -> Self {
        CallWindow {
            policy,
            running: VecDeque::new(),
            pipelined: VecDeque::new(),
            taken_back: Vec::new(),
            fast_streak: 0,
        }
    }

    /// The pitd ids of the calls it holds: running (answered or not) and pipelined.
    #[cfg(test)]
    pub fn req_ids(&self) -> impl Iterator<Item = u64> + '_ {
        let running = self.running.iter().map(|r| r.req_id);
        running.chain(self.pipelined.iter().map(|p| p.req_id))
    }

    /// Calls it may run at once.
    pub fn slots(&self) -> usize {
        self.policy.slots
    }

    /// Calls the worker holds: running (answered or not) and pipelined.
    pub fn in_flight(&self) -> usize {
        self.running.len() + self.pipelined.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.pipelined.is_empty()
    }

    /// Pipelined calls, and the bytes of their frames.
    pub fn pipelined(&self) -> (usize, usize) {
        (self.pipelined.len(), self.pipelined.iter().map(|p| p.frame_len).sum())
    }

    /// Whether a call handed over now would start at once.
    pub fn has_free_slot(&self) -> bool {
        self.running.len() < self.policy.slots && self.pipelined.is_empty()
    }

    /// Whether a call of `frame_len` bytes may be pipelined now: every slot busy with calls
    /// that have been short (`may_pipeline`), room in the pipe, and the latest start-by
    /// still `half_hold_from_now` or later (else the pipe is let run dry first).
    pub fn may_pipeline(&self, frame_len: usize, now: Instant, half_hold_from_now: Instant) -> bool {
        let Some(oldest) = self.running.front() else {
            return false;
        };
        let (held, held_bytes) = self.pipelined();
        self.running.len() >= self.policy.slots
            && held < self.policy.pipeline_depth
            && self.taken_back.is_empty()
            && self.pipelined.back().is_none_or(|p| p.start_by >= half_hold_from_now)
            && pipe_has_bytes_for(held, held_bytes, frame_len)
            && may_pipeline(self.fast_streak, now.saturating_duration_since(oldest.since))
    }

    /// The latest start-by in the pipe, on both clocks: a call pipelined behind it must not
    /// be started later.
    pub fn last_start_by(&self) -> Option<(Instant, u64)> {
        self.pipelined.back().map(|p| (p.start_by, p.start_by_ns))
    }

    /// Starts a call now (a slot must be free).
    pub fn admit(&mut self, req_id: u64, call: C, deadline: Instant, now: Instant) {
        debug_assert!(self.has_free_slot(), "admit without a free slot");
        self.running.push_back(Running {
            req_id,
            call: Some(call),
            deadline,
            since: now,
            pipelined: false,
        });
    }

    /// Books a call written behind the running ones.
    pub fn pipeline(
        &mut self,
        req_id: u64,
        call: C,
        frame_len: usize,
        deadline: Instant,
        start_by: Instant,
        start_by_ns: u64,
    ) {
        self.pipelined.push_back(Pipelined {
            req_id,
            call,
            frame_len,
            deadline,
            start_by_ns,
            start_by,
            revoke_at: start_by,
        });
    }

    /// The worker answered `req_id`; `refused` when its answer says it did not start the
    /// call (a pipelined call it got to too late).
    pub fn complete(&mut self, req_id: u64, refused: bool, now: Instant) -> Completion<C> {
        if let Some(at) = self.taken_back.iter().position(|t| *t == req_id) {
            self.taken_back.swap_remove(at);
            return Completion::TakenBack { ran: !refused };
        }
        let Some(at) = self.running.iter().position(|r| r.req_id == req_id) else {
            return Completion::Unknown;
        };
        let done = self.running.remove(at).expect("position found");
        let completion = match done.call {
            None => Completion::Late,
            Some(call) if refused && done.pipelined => Completion::NotStarted(call),
            Some(call) => {
                let took = now.saturating_duration_since(done.since);
                self.fast_streak = if took <= super::routing::PIPELINE_FAST {
                    self.fast_streak.saturating_add(1)
                } else {
                    0
                };
                Completion::Answered { call, took }
            }
        };
        // The worker reads its pipe in order: the first pipelined call is the next it runs.
        if self.running.len() < self.policy.slots
            && let Some(p) = self.pipelined.pop_front()
        {
            self.running.push_back(Running {
                req_id: p.req_id,
                call: Some(p.call),
                deadline: p.deadline,
                since: now,
                pipelined: true,
            });
        }
        completion
    }

    /// Takes the calls of running slots past their deadline, oldest first, each with its
    /// deadline; their slots stay taken until the worker answers or dies.
    pub fn time_out(&mut self, now: Instant) -> Vec<(u64, C, Instant)> {
        self.running
            .iter_mut()
            .filter(|r| r.call.is_some() && r.deadline <= now)
            .filter_map(|r| Some((r.req_id, r.call.take()?, r.deadline)))
            .collect()
    }

    /// When the oldest call that timed out (or was cancelled) and still holds its slot was
    /// due: the worker has not freed that slot since.
    pub fn oldest_cancelled(&self) -> Option<Instant> {
        self.running
            .iter()
            .filter(|r| r.call.is_none())
            .map(|r| r.deadline)
            .min()
    }

    /// Takes the running calls `cancel` picks (their callers are gone), each with its id;
    /// their slots stay taken until the worker answers, as for a timeout.
    pub fn cancel_where(&mut self, now: Instant, cancel: impl Fn(&C) -> bool) -> Vec<(u64, C)> {
        let mut out = Vec::new();
        for r in self.running.iter_mut() {
            if r.call.as_ref().is_some_and(&cancel) {
                let call = r.call.take().expect("checked");
                r.deadline = now;
                out.push((r.req_id, call));
            }
        }
        out
    }

    /// Whether the worker holds call `req_id` (running, answered or not, or pipelined).
    pub fn holds(&self, req_id: u64) -> bool {
        self.running.iter().any(|r| r.req_id == req_id) || self.pipelined.iter().any(|p| p.req_id == req_id)
    }

    /// Gives back a call that never reached the worker (its pipe refused the write): its
    /// slot, or its place in the pipe, is free again. `None` when the call is not held, or
    /// was answered already.
    pub fn unsend(&mut self, req_id: u64) -> Option<C> {
        if let Some(at) = self.pipelined.iter().position(|p| p.req_id == req_id) {
            return self.pipelined.remove(at).map(|p| p.call);
        }
        let at = self.running.iter().position(|r| r.req_id == req_id)?;
        self.running.remove(at).and_then(|r| r.call)
    }

    /// A running call not answered yet, with its deadline (a stream's moves with its chunks).
    pub fn running_mut(&mut self, req_id: u64) -> Option<(&mut C, &mut Instant)> {
        let r = self.running.iter_mut().find(|r| r.req_id == req_id)?;
        let Running { call, deadline, .. } = r;
        Some((call.as_mut()?, deadline))
    }

    /// How many running calls not answered yet `pick` picks.
    pub fn running_where(&self, pick: impl Fn(&C) -> bool) -> usize {
        self.running
            .iter()
            .filter(|r| r.call.as_ref().is_some_and(&pick))
            .count()
    }

    /// Calls that have timed out and whose slots the worker has not freed yet.
    #[cfg(test)]
    fn cancelled(&self) -> usize {
        self.running.iter().filter(|r| r.call.is_none()).count()
    }

    /// Whether the pipe's last call is due to be looked at for taking back.
    pub fn revoke_due(&self, now: Instant) -> bool {
        self.pipelined.back().is_some_and(|p| p.revoke_at <= now)
    }

    /// How many pipelined calls, from the back of the pipe, are past their start-by
    /// (`now_ns` on the workers' clock): those the worker will refuse once it gets to them.
    pub fn overdue(&self, now_ns: u64) -> usize {
        overdue_from_back(self.pipelined.iter().map(|p| p.start_by_ns), now_ns)
    }

    /// Takes back the last `count` pipelined calls (the overdue ones), oldest first; the
    /// worker's refusals of them will be dropped. Only valid while no answer of the worker
    /// is unread: then none of them can have started.
    pub fn take_back(&mut self, count: usize) -> Vec<C> {
        let back = self.pipelined.split_off(self.pipelined.len().saturating_sub(count));
        self.taken_back.extend(back.iter().map(|p| p.req_id));
        back.into_iter().map(|p| p.call).collect()
    }

    /// An answer is on its way: look again at `at`.
    pub fn postpone_revoke(&mut self, at: Instant) {
        if let Some(p) = self.pipelined.back_mut() {
            p.revoke_at = at;
        }
    }

    /// The worker is gone. `read_to_end`: its reply pipe was read to its end, so a pipelined
    /// call not answered was never started.
    pub fn settle_exit(&mut self, read_to_end: bool) -> Settled<C> {
        let mut lost: Vec<C> = self.running.drain(..).filter_map(|r| r.call).collect();
        let pipelined = self.pipelined.drain(..).map(|p| p.call);
        let unstarted = if read_to_end {
            pipelined.collect()
        } else {
            lost.extend(pipelined);
            Vec::new()
        };
        self.taken_back.clear();
        Settled { lost, unstarted }
    }

    /// The earliest deadline of a running call not answered yet.
    pub fn deadline(&self) -> Option<Instant> {
        self.running
            .iter()
            .filter(|r| r.call.is_some())
            .map(|r| r.deadline)
            .min()
    }

    /// When to look at taking pipelined calls back.
    pub fn revoke_at(&self) -> Option<Instant> {
        self.pipelined.back().map(|p| p.revoke_at)
    }

    /// When the oldest running call started.
    pub fn running_since(&self) -> Option<Instant> {
        self.running.front().map(|r| r.since)
    }

    /// The running calls, oldest first (answered ones left out).
    #[cfg(test)]
    fn running_calls(&self) -> impl Iterator<Item = &C> {
        self.running.iter().filter_map(|r| r.call.as_ref())
    }
}

#[cfg(test)]
mod tests;
