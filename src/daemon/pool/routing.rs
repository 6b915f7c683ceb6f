//! Pure routing decisions: which worker takes a call. No I/O, no clock inside.

use std::time::Duration;

use crate::ids::WorkerId;

/// Where a call goes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Run it on this worker (it has a free slot).
    Worker(WorkerId),
    /// Keep it queued: its session's worker is full, or no worker has a free slot.
    Wait,
}

/// A session's binding as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub worker: WorkerId,
    /// It has a free slot.
    pub free: bool,
}

/// A call bound to a live worker waits for that worker rather than migrating (its state
/// lives there); any other call takes the free worker `pick` chose, which spreads
/// calls evenly.
pub fn choose_worker(bound: Option<Bound>, free: Option<WorkerId>) -> Choice {
    match (bound, free) {
        (Some(b), _) if b.free => Choice::Worker(b.worker),
        (Some(_), _) => Choice::Wait,
        (None, Some(w)) => Choice::Worker(w),
        (None, None) => Choice::Wait,
    }
}

/// A worker that could take a call, as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<T> {
    pub worker: WorkerId,
    /// Due for recycling (selected, or waiting for a surge slot).
    pub due: bool,
    /// Lower goes first among equals: how long it has been idle, how full its pipe is.
    pub rank: T,
}

/// Which of the workers that could take a call takes it: one not due for recycling if
/// there is one, then the lowest rank. A worker due for recycling keeps serving while
/// its replacement starts (the pool never drops below its size), but only when no other
/// worker can take the call: at its full share it would run far past its limit (with a
/// slow import, by thousands of calls).
pub fn pick<T: Ord>(candidates: impl IntoIterator<Item = Candidate<T>>) -> Option<WorkerId> {
    candidates
        .into_iter()
        .min_by(|a, b| (a.due, &a.rank).cmp(&(b.due, &b.rank)))
        .map(|c| c.worker)
}

/// A call "fast" enough for pipelining behind it.
pub const PIPELINE_FAST: Duration = Duration::from_millis(1);
/// Fast calls in a row a worker must have answered before calls are pipelined to it.
pub const PIPELINE_STREAK: u32 = 4;
/// How long a pipelined call may wait behind the running one before pitd takes it back
/// (and the worker, past that instant, will not start it).
pub const PIPELINE_HOLD: Duration = Duration::from_millis(10);
/// Calls a worker may hold behind its running one. A few in the pipe let the worker read
/// them with one read and pitd write them with one write; the hold bounds what a long call
/// ahead costs them.
pub const PIPELINE_DEPTH: usize = 16;
/// Bytes of calls a worker may hold behind its running one (one call of any size may
/// always wait there): pitd keeps a copy of each until it starts, in case it is taken back.
pub const PIPELINE_BYTES: usize = 64 * 1024;

/// Whether a call that would otherwise wait in the queue may be written behind a busy
/// worker's running call, so that the worker starts it without a round trip through pitd.
/// Only for workers whose calls are short: their recent ones all were, and the running
/// one has not run long. A call behind a long one would wait where no other worker can
/// take it; if that happens anyway, `PIPELINE_HOLD` bounds the wait.
pub fn may_pipeline(fast_streak: u32, running_for: Duration) -> bool {
    fast_streak >= PIPELINE_STREAK && running_for <= PIPELINE_FAST
}

/// Whether a call of `frame_len` bytes fits behind the `held` calls (of `held_bytes`)
/// already pipelined to a worker.
pub fn pipe_has_bytes_for(held: usize, held_bytes: usize, frame_len: usize) -> bool {
    held == 0 || held_bytes + frame_len <= PIPELINE_BYTES
}

/// How many pipelined calls, from the back of a worker's pipe, are past their start-by
/// (given front to back): those the worker will refuse once it gets to them.
pub fn overdue_from_back<T: Ord + Copy>(start_bys: impl DoubleEndedIterator<Item = T>, now: T) -> usize {
    start_bys.rev().take_while(|s| *s <= now).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelining_needs_a_streak_of_fast_calls_and_a_young_running_call() {
        let young = PIPELINE_FAST / 2;
        assert!(may_pipeline(PIPELINE_STREAK, young));
        assert!(may_pipeline(PIPELINE_STREAK + 100, PIPELINE_FAST));
        assert!(!may_pipeline(PIPELINE_STREAK - 1, young), "too few fast calls seen");
        assert!(!may_pipeline(0, Duration::ZERO));
        assert!(
            !may_pipeline(PIPELINE_STREAK, PIPELINE_FAST + Duration::from_micros(1)),
            "the running call is already slow"
        );
    }

    #[test]
    fn a_pipe_holds_one_call_of_any_size_and_more_within_its_bytes() {
        assert!(pipe_has_bytes_for(0, 0, 10 * PIPELINE_BYTES), "one call always fits");
        assert!(pipe_has_bytes_for(3, PIPELINE_BYTES - 100, 100));
        assert!(!pipe_has_bytes_for(1, 10, PIPELINE_BYTES));
    }

    #[test]
    fn overdue_calls_are_counted_from_the_back() {
        assert_eq!(overdue_from_back([9, 7, 5].into_iter(), 4), 0);
        assert_eq!(overdue_from_back([9, 7, 5].into_iter(), 7), 2);
        assert_eq!(overdue_from_back([9, 7, 5].into_iter(), 9), 3);
        assert_eq!(overdue_from_back(std::iter::empty::<u64>(), 9), 0);
        // Only a run at the back: a call past its start-by in front of one that is not
        // stays where it is (its refusal requeues it when it comes).
        assert_eq!(overdue_from_back([3, 7].into_iter(), 5), 0);
    }

    #[test]
    fn a_worker_due_for_recycling_is_picked_only_when_no_other_can_take_the_call() {
        let (w1, w2, w3) = (WorkerId(1), WorkerId(2), WorkerId(3));
        let c = |worker, due, rank| Candidate { worker, due, rank };
        let rows: [(&[Candidate<u32>], Option<WorkerId>); 6] = [
            (&[], None),
            (&[c(w1, false, 5), c(w2, false, 3)], Some(w2)),
            // The due worker has waited longest (lowest rank): the other still goes first.
            (&[c(w1, true, 1), c(w2, false, 9)], Some(w2)),
            (&[c(w1, true, 1), c(w2, false, 9), c(w3, false, 4)], Some(w3)),
            // Only due workers: they serve (capacity), lowest rank first.
            (&[c(w1, true, 7), c(w2, true, 2)], Some(w2)),
            (&[c(w1, true, 7)], Some(w1)),
        ];
        for (candidates, want) in rows {
            assert_eq!(pick(candidates.iter().copied()), want, "{candidates:?}");
        }
    }

    #[test]
    fn choices_table() {
        let w1 = WorkerId(1);
        let w2 = WorkerId(2);
        let rows = [
            (None, None, Choice::Wait),
            (None, Some(w2), Choice::Worker(w2)),
            (Some(Bound { worker: w1, free: true }), Some(w2), Choice::Worker(w1)),
            (Some(Bound { worker: w1, free: true }), None, Choice::Worker(w1)),
            (
                Some(Bound {
                    worker: w1,
                    free: false,
                }),
                Some(w2),
                Choice::Wait,
            ),
            (
                Some(Bound {
                    worker: w1,
                    free: false,
                }),
                None,
                Choice::Wait,
            ),
        ];
        for (bound, idle, want) in rows {
            assert_eq!(choose_worker(bound, idle), want, "{bound:?} {idle:?}");
        }
    }
}
