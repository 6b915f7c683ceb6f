//! Pure routing decisions: which worker takes a call. No I/O, no clock inside.

use crate::ids::WorkerId;

/// Where a call goes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Run it on this (idle) worker.
    Worker(WorkerId),
    /// Keep it queued: its session's worker is busy, or nobody is idle.
    Wait,
}

/// A session's binding as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub worker: WorkerId,
    pub idle: bool,
}

/// A call bound to a live worker waits for that worker rather than migrating (its state
/// lives there); any other call takes the worker that has been idle longest, which spreads
/// calls evenly.
pub fn choose_worker(bound: Option<Bound>, longest_idle: Option<WorkerId>) -> Choice {
    match (bound, longest_idle) {
        (Some(b), _) if b.idle => Choice::Worker(b.worker),
        (Some(_), _) => Choice::Wait,
        (None, Some(w)) => Choice::Worker(w),
        (None, None) => Choice::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_table() {
        let w1 = WorkerId(1);
        let w2 = WorkerId(2);
        let rows = [
            (None, None, Choice::Wait),
            (None, Some(w2), Choice::Worker(w2)),
            (Some(Bound { worker: w1, idle: true }), Some(w2), Choice::Worker(w1)),
            (Some(Bound { worker: w1, idle: true }), None, Choice::Worker(w1)),
            (
                Some(Bound {
                    worker: w1,
                    idle: false,
                }),
                Some(w2),
                Choice::Wait,
            ),
            (
                Some(Bound {
                    worker: w1,
                    idle: false,
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
