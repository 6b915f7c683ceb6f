//! Integration tests: the real pitd and pitctl binaries with real Python workers.

mod harness;

mod calls;
mod chaos;
mod check;
mod concurrent;
mod control;
mod door;
mod free_threading;
mod hostile;
mod lifecycle;
mod man;
mod memory;
mod metrics;
mod pid1;
mod pipeline;
mod preload;
mod probe;
mod reload;
mod streams;
mod supervise;
mod systemd;
mod template_life;
mod top;
mod warmup;
