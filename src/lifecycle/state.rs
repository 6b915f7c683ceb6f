//! Worker states, worker health, and the transition table between states.
//!
//! The pool actor owns each worker's [`WorkerState`] and moves it only through
//! [`transition`], so every state change the daemon makes is one row of the table below.
//! An event that does not fit the current state is an [`InvalidTransition`]: the caller logs
//! it and keeps the old state; it never panics.

use serde::{Deserialize, Serialize};

/// Where a worker is in its life. Serialized as the `snake_case` names of the interface
/// (`starting`, `idle`, `busy`, `draining`, `stopping`, `exited`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Spawned, not yet ready to take calls.
    Starting,
    /// Ready, no call in flight.
    Idle,
    /// At least one call in flight.
    Busy,
    /// Out of rotation: in-flight calls may finish, no new call is routed to it.
    Draining,
    /// Asked to exit (SIGTERM sent or about to be); waiting for the exit.
    Stopping,
    /// Reaped. Terminal.
    Exited,
}

impl WorkerState {
    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A worker's health as seen by the pings, separate from its state: a busy worker can be
/// failing its health checks, a starting one has not been checked yet.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The last health check answered in time.
    Ok,
    /// The last health check failed or timed out.
    Failing,
    /// Not checked yet.
    Unknown,
}

impl Health {
    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Something that happened to a worker and may change its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum WorkerEvent {
    /// The worker reported that it is ready for calls.
    Ready,
    /// A call was handed to the worker.
    CallStarted,
    /// The worker answered its last call in flight: none is left.
    CallsFinished,
    /// Take the worker out of rotation (drain, or the old side of a graceful recycle).
    Drain,
    /// Ask the worker to exit.
    Stop,
    /// The worker's process was reaped.
    Exited,
}

impl WorkerEvent {
    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An event that the table has no row for in the worker's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker transition: event `{event}` is not allowed in state `{from}`")]
pub struct InvalidTransition {
    pub from: WorkerState,
    pub event: WorkerEvent,
}

/// The state a worker in `from` moves to on `ev`, or [`InvalidTransition`].
///
/// One row per legal pair, so the table can be read (and reviewed) at a glance.
pub fn transition(from: WorkerState, ev: WorkerEvent) -> Result<WorkerState, InvalidTransition> {
    use WorkerEvent as E;
    use WorkerState as S;
    let to = match (from, ev) {
        (S::Starting, E::Ready) => S::Idle,

        (S::Idle, E::CallStarted) => S::Busy,
        // Legal so that a pool allowing several calls per worker needs no other table; the
        // pool, not this table, decides how many calls a worker may hold.
        (S::Busy, E::CallStarted) => S::Busy,

        (S::Busy, E::CallsFinished) => S::Idle,
        // A draining worker finishing its calls stays out of rotation until it is stopped.
        (S::Draining, E::CallsFinished) => S::Draining,

        (S::Starting, E::Drain) => S::Draining,
        (S::Idle, E::Drain) => S::Draining,
        (S::Busy, E::Drain) => S::Draining,

        (S::Starting, E::Stop) => S::Stopping,
        (S::Idle, E::Stop) => S::Stopping,
        (S::Busy, E::Stop) => S::Stopping,
        (S::Draining, E::Stop) => S::Stopping,
        // Idempotent: a second stop (e.g. `recycle --now` during a graceful stop) is harmless.
        (S::Stopping, E::Stop) => S::Stopping,

        // A process can die in any live state; only a reaped one cannot die again.
        (S::Starting, E::Exited) => S::Exited,
        (S::Idle, E::Exited) => S::Exited,
        (S::Busy, E::Exited) => S::Exited,
        (S::Draining, E::Exited) => S::Exited,
        (S::Stopping, E::Exited) => S::Exited,

        (from, event) => return Err(InvalidTransition { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    use WorkerEvent as E;
    use WorkerState as S;

    /// Position in `ALL`, written as a match so that a new variant fails to compile here
    /// until it is added to `ALL` and to the expected table.
    fn state_index(s: WorkerState) -> usize {
        match s {
            S::Starting => 0,
            S::Idle => 1,
            S::Busy => 2,
            S::Draining => 3,
            S::Stopping => 4,
            S::Exited => 5,
        }
    }

    fn event_index(e: WorkerEvent) -> usize {
        match e {
            E::Ready => 0,
            E::CallStarted => 1,
            E::CallsFinished => 2,
            E::Drain => 3,
            E::Stop => 4,
            E::Exited => 5,
        }
    }

    fn health_index(h: Health) -> usize {
        match h {
            Health::Ok => 0,
            Health::Failing => 1,
            Health::Unknown => 2,
        }
    }

    /// The expected table: one row per state (in `ALL` order), one column per event
    /// (Ready, CallStarted, CallsFinished, Drain, Stop, Exited). `None` = invalid.
    const EXPECTED: [[Option<WorkerState>; 6]; 6] = [
        // Starting
        [
            Some(S::Idle),
            None,
            None,
            Some(S::Draining),
            Some(S::Stopping),
            Some(S::Exited),
        ],
        // Idle
        [
            None,
            Some(S::Busy),
            None,
            Some(S::Draining),
            Some(S::Stopping),
            Some(S::Exited),
        ],
        // Busy
        [
            None,
            Some(S::Busy),
            Some(S::Idle),
            Some(S::Draining),
            Some(S::Stopping),
            Some(S::Exited),
        ],
        // Draining
        [None, None, Some(S::Draining), None, Some(S::Stopping), Some(S::Exited)],
        // Stopping
        [None, None, None, None, Some(S::Stopping), Some(S::Exited)],
        // Exited
        [None, None, None, None, None, None],
    ];

    #[test]
    fn all_lists_are_complete_and_in_order() {
        for (i, s) in WorkerState::VARIANTS.iter().copied().enumerate() {
            assert_eq!(state_index(s), i, "{s}");
        }
        for (i, e) in WorkerEvent::VARIANTS.iter().copied().enumerate() {
            assert_eq!(event_index(e), i, "{e}");
        }
        for (i, h) in Health::VARIANTS.iter().copied().enumerate() {
            assert_eq!(health_index(h), i, "{h}");
        }
    }

    #[test]
    fn every_state_event_pair_matches_the_expected_table() {
        let mut legal = 0;
        for &from in WorkerState::VARIANTS {
            for &ev in WorkerEvent::VARIANTS {
                let expected = EXPECTED[state_index(from)][event_index(ev)];
                let got = transition(from, ev);
                match expected {
                    Some(to) => {
                        legal += 1;
                        assert_eq!(got, Ok(to), "{from} --{ev}-->");
                    }
                    None => assert_eq!(
                        got,
                        Err(InvalidTransition { from, event: ev }),
                        "{from} --{ev}--> should be invalid"
                    ),
                }
            }
        }
        assert_eq!(legal, 18, "number of legal rows");
    }

    #[test]
    fn exited_is_terminal() {
        for &ev in WorkerEvent::VARIANTS {
            assert!(transition(S::Exited, ev).is_err(), "{ev}");
        }
    }

    #[test]
    fn invalid_transition_message_names_state_and_event() {
        let err = transition(S::Draining, E::CallStarted).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid worker transition: event `call_started` is not allowed in state `draining`"
        );
    }

    #[test]
    fn state_wire_names_match_serde_and_the_interface() {
        let names: Vec<&str> = WorkerState::VARIANTS.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["starting", "idle", "busy", "draining", "stopping", "exited"]);
        for &s in WorkerState::VARIANTS {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<WorkerState>(&json).unwrap(), s);
            assert_eq!(s.to_string(), s.as_str());
        }
    }

    #[test]
    fn health_wire_names_match_serde_and_the_interface() {
        let names: Vec<&str> = Health::VARIANTS.iter().map(|h| h.as_str()).collect();
        assert_eq!(names, ["ok", "failing", "unknown"]);
        for &h in Health::VARIANTS {
            let json = serde_json::to_string(&h).unwrap();
            assert_eq!(json, format!("\"{}\"", h.as_str()));
            assert_eq!(serde_json::from_str::<Health>(&json).unwrap(), h);
            assert_eq!(h.to_string(), h.as_str());
        }
    }
}
