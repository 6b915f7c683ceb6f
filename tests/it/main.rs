//! Integration tests: the real pitd and pitctl binaries with real Python workers.

mod harness;

mod calls;
mod check;
mod control;
mod hostile;
mod lifecycle;
mod man;
mod metrics;
mod reload;
mod supervise;
mod systemd;
