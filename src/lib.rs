//! pit: a supervisor for pools of Python worker processes.
//!
//! ```text
//!  clients ──call socket──▶ calls ──────────────────────(Call)──────────────────┐
//!  pitctl ──control socket──▶ control ─▶ Supervisor ─▶ PoolHandle ─(PoolMsg)─▶ PoolActor
//!                                                                              │  ▲
//!                                                   spawn / signal requests    ▼  │ spawned / exited
//!                                                                         procs thread
//!                                                          fork+exec (spawn), waitpid(-1) (the one reaper)
//!                                                                              │
//!                    guard process ◀── worker pgids ──────────────────────────┘
//!                    (kills them if pitd dies)            workers: own process group,
//!                                                         rlimits, PDEATHSIG, stdout/stderr
//!                                                         captured line by line (output)
//! ```
//!
//! - `spec`: the TOML pool spec, raw serde types validated into plain types, errors with
//!   file:line:column.
//! - `lifecycle`: pure decisions: the worker state machine, restart backoff and the
//!   crash-loop breaker, recycle triggers. No I/O, no clock.
//! - `proto`: what travels on each socket: frames, control requests/replies, status,
//!   events.
//! - `daemon`: the running pitd. One actor task per pool owns its workers, queue and
//!   session affinity; one OS thread forks every worker and reaps every child; a guard
//!   process kills worker groups if pitd is SIGKILLed; a monitor thread samples process
//!   trees; the supervisor routes control requests and applies reloads.
//! - `client` and `cli`: pitctl.

pub mod args;
pub mod call_client;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod ids;
pub mod lifecycle;
pub mod proto;
pub mod spec;
