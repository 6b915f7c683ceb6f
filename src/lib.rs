//! pit: a supervisor for pools of Python worker processes.
//!
//! ```text
//!  clients ──call socket──▶ daemon::serve::calls ──(Call)──────────────────────┐
//!  pitctl ──control socket──▶ serve::control ─▶ Supervisor ─▶ PoolHandle ─(PoolMsg)─▶ pool actor
//!                                                                              │  ▲
//!                                       spawn / signal (Spawner)   frames      ▼  │ exits, WorkerMsg
//!                                          process::procs thread  (WorkerPipe) process::pipes
//!                                  fork+exec, waitpid(-1) (the one reaper), preload templates
//!                   process::guard ◀── worker pgids         workers: own process group,
//!                    (kills them if pitd dies)              rlimits, PDEATHSIG, output captured
//! ```
//!
//! - `spec`: the TOML pool spec, raw serde types validated into plain types, errors with
//!   file:line:column.
//! - `lifecycle`: pure decisions: the worker state machine, a pool's phase, restart backoff
//!   and the crash-loop breaker, recycle triggers. No I/O, no clock.
//! - `proto`: what travels on each socket and pipe, one home per shape, and the one frame
//!   reader.
//! - `procfs`: reading `/proc`.
//! - `daemon`: the running pitd, grouped by noun: `pool` (one actor task per pool owns its
//!   workers, their calls, its queue and session affinity), `process` (the process thread
//!   that forks and reaps, templates, the guard, output, pipes), `serve` (the sockets),
//!   `outbox`, the supervisor (control requests and reloads) and the monitor thread.
//! - `client` and `cli`: pitctl.

pub mod args;
pub mod call_client;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod ids;
pub mod lifecycle;
pub mod procfs;
pub mod proto;
pub mod spec;
