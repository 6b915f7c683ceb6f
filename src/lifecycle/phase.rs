//! A pool's phase: the state of the pool as a whole, apart from its workers', as one
//! transition table (like `state.rs` for a worker). The pool actor moves it only through
//! [`next_phase`]; what the pool does in each phase (take calls, fail them fast, start one
//! probe worker at a time, start none) is read from the phase, not from separate flags.
//!
//! | from \ event | ReachedSize | Tripped | Recovered | Drain    | Emptied | Resume   | Shutdown     |
//! |--------------|-------------|---------|-----------|----------|---------|----------|--------------|
//! | Starting     | Running     | Failing | -         | Draining | -       | Starting | ShuttingDown |
//! | Running      | Running     | Failing | -         | Draining | -       | Running  | ShuttingDown |
//! | Failing      | Failing     | Failing | Running*  | Draining | -       | Failing  | ShuttingDown |
//! | Draining     | Draining    | Draining| Draining  | Draining | Drained | Starting | ShuttingDown |
//! | Drained      | Drained     | Drained | Drained   | Drained  | Drained | Starting | ShuttingDown |
//! | ShuttingDown | (stays)     |         |           |          |         |          |              |
//!
//! `-`: invalid (a bug in the caller). *: `Starting` if the pool never reached its size.
//! A drained pool forgets a crash loop: `resume` starts it afresh, as a reload does. A pool
//! shutting down keeps showing the state it was in (status has no "shutting down" state of
//! a pool; `shutting_down` is pitd's).

use serde::{Deserialize, Serialize};

/// A pool's state as status shows it (INTERFACE section 4): its phase, less shutting down.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, strum::IntoStaticStr, strum::Display, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    Starting,
    Running,
    Draining,
    Drained,
    Failing,
}

impl PoolState {
    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// See the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not yet at its size for the first time.
    Starting,
    /// Serving calls.
    Running,
    /// In a crash loop: calls fail fast, one probe worker at a time.
    Failing,
    /// `pitctl drain POOL`: calls refused, workers finishing theirs.
    Draining,
    /// Drained: no workers until `resume`.
    Drained,
    /// pitd is stopping: no new calls, no new workers. Status shows `shown`.
    ShuttingDown { shown: PoolState },
}

/// What moves a pool's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseEvent {
    /// As many workers ready as the pool's size.
    ReachedSize,
    /// The crash-loop breaker tripped.
    Tripped,
    /// A probe worker got (and stayed) ready: the crash loop is over.
    Recovered,
    /// `pitctl drain POOL`.
    Drain,
    /// The last worker of a draining pool is gone.
    Emptied,
    /// `pitctl resume POOL`.
    Resume,
    Shutdown,
}

/// An event the phase has no answer for: a bug in the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pool phase {from:?} has no transition on {event:?}")]
pub struct InvalidPhaseTransition {
    pub from: Phase,
    pub event: PhaseEvent,
}

/// The phase after `event`; `reached_size` says whether the pool ever reached its size
/// (where a recovered pool goes).
pub fn next_phase(from: Phase, event: PhaseEvent, reached_size: bool) -> Result<Phase, InvalidPhaseTransition> {
    use Phase::*;
    use PhaseEvent::*;
    let invalid = Err(InvalidPhaseTransition { from, event });
    Ok(match (from, event) {
        (ShuttingDown { .. }, _) => from,
        (_, Shutdown) => ShuttingDown { shown: from.state() },
        (Draining | Drained, Resume) => Starting,
        (Draining, Emptied) => Drained,
        (Draining | Drained, _) => from,
        (_, Drain) => Draining,
        (Starting | Running, ReachedSize) => Running,
        (Starting | Running | Failing, Tripped) => Failing,
        (Failing, Recovered) if reached_size => Running,
        (Failing, Recovered) => Starting,
        (Failing, ReachedSize) => Failing,
        (Starting | Running | Failing, Resume) => from,
        (Starting | Running, Recovered) | (Starting | Running | Failing, Emptied) => return invalid,
    })
}

impl Phase {
    /// The pool state status shows.
    pub fn state(self) -> PoolState {
        match self {
            Phase::Starting => PoolState::Starting,
            Phase::Running => PoolState::Running,
            Phase::Failing => PoolState::Failing,
            Phase::Draining => PoolState::Draining,
            Phase::Drained => PoolState::Drained,
            Phase::ShuttingDown { shown } => shown,
        }
    }

    pub fn shutting_down(self) -> bool {
        matches!(self, Phase::ShuttingDown { .. })
    }

    /// Drained or on the way: no workers wanted.
    pub fn drained(self) -> bool {
        matches!(self, Phase::Draining | Phase::Drained)
    }

    pub fn failing(self) -> bool {
        self == Phase::Failing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;
    use PhaseEvent::*;

    const PHASES: [Phase; 6] = [
        Starting,
        Running,
        Failing,
        Draining,
        Drained,
        ShuttingDown {
            shown: PoolState::Running,
        },
    ];
    const EVENTS: [PhaseEvent; 7] = [ReachedSize, Tripped, Recovered, Drain, Emptied, Resume, Shutdown];

    /// The module doc's table, row by row (`None`: invalid), for a pool that reached its size.
    fn expected(from: Phase) -> [Option<Phase>; 7] {
        let sd = |shown| Some(ShuttingDown { shown });
        match from {
            Starting => [
                Some(Running),
                Some(Failing),
                None,
                Some(Draining),
                None,
                Some(Starting),
                sd(PoolState::Starting),
            ],
            Running => [
                Some(Running),
                Some(Failing),
                None,
                Some(Draining),
                None,
                Some(Running),
                sd(PoolState::Running),
            ],
            Failing => [
                Some(Failing),
                Some(Failing),
                Some(Running),
                Some(Draining),
                None,
                Some(Failing),
                sd(PoolState::Failing),
            ],
            Draining => [
                Some(Draining),
                Some(Draining),
                Some(Draining),
                Some(Draining),
                Some(Drained),
                Some(Starting),
                sd(PoolState::Draining),
            ],
            Drained => [
                Some(Drained),
                Some(Drained),
                Some(Drained),
                Some(Drained),
                Some(Drained),
                Some(Starting),
                sd(PoolState::Drained),
            ],
            ShuttingDown { .. } => [Some(from); 7],
        }
    }

    #[test]
    fn every_phase_and_event_follows_the_table() {
        for from in PHASES {
            for (event, want) in EVENTS.into_iter().zip(expected(from)) {
                let got = next_phase(from, event, true).ok();
                assert_eq!(got, want, "{from:?} on {event:?}");
            }
        }
    }

    #[test]
    fn a_pool_that_never_reached_its_size_recovers_to_starting() {
        assert_eq!(next_phase(Failing, Recovered, false), Ok(Starting));
        assert_eq!(next_phase(Failing, Recovered, true), Ok(Running));
    }

    #[test]
    fn shutting_down_shows_the_state_it_came_from_and_never_leaves() {
        let sd = next_phase(Drained, Shutdown, true).unwrap();
        assert_eq!(sd.state(), PoolState::Drained);
        assert!(sd.shutting_down() && !sd.drained());
        for event in EVENTS {
            assert_eq!(next_phase(sd, event, true), Ok(sd));
        }
    }

    #[test]
    fn invalid_transitions_name_the_phase_and_event() {
        let err = next_phase(Running, Emptied, true).unwrap_err();
        assert_eq!(err.to_string(), "pool phase Running has no transition on Emptied");
    }
}
