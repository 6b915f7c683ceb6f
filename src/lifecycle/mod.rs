//! Pure lifecycle decisions: what state a worker moves to, why it left, when to recycle it,
//! how long to wait before restarting, and whether its pool is in a crash loop.
//!
//! Everything here is a plain function or a small value type: no I/O, no async, no clock
//! and no hidden randomness. The caller passes `now: Instant` and any randomness (a jitter
//! value or a `fastrand::Rng`), so every decision is reproducible in a unit test.
//!
//! The caller is the pool actor: it owns each worker's [`WorkerState`], [`WorkerStats`] and
//! [`WorkerLimits`] and its pool's [`RestartHistory`], feeds them the events it receives
//! (ready, call started/finished, exit, memory sample, health result), and turns the
//! answers into effects (spawn, drain, kill, events, metrics). Nothing here imports the
//! daemon, so this module can become its own crate unchanged.
//!
//! - [`state`]: worker states, health, and the transition table.
//! - [`phase`]: a pool's phase and its transition table.
//! - [`reason`]: recycle and exit reasons; classifying an exit status.
//! - [`recycle`]: per-worker limits and the recycle decision.
//! - [`restart`]: restart backoff with jitter and the crash-loop breaker.

pub mod phase;
pub mod reason;
pub mod recycle;
pub mod restart;
pub mod state;

pub use reason::{CPU_LIMIT_TOLERANCE, ExitStatusInfo, Reason, exit_reason, exit_reason_with_cpu, signal_name};
pub use recycle::{WorkerLimits, WorkerStats, recycle_decision};
pub use restart::{Failure, PoolVerdict, RestartHistory};
pub use state::{Health, InvalidTransition, WorkerEvent, WorkerState, transition};
