//! The worker processes and what pitd holds of them: forking and exec (`spawn`), the one
//! reaper thread (`procs`), the guard that kills worker groups if pitd dies (`guard`),
//! captured output (`output`), the pipes of the call protocol (`pipes`), and the preload
//! templates that fork workers (`template`).

pub mod children;
pub mod guard;
pub mod lines;
pub mod output;
pub mod pipes;
pub mod procs;
pub mod repeats;
pub mod spawn;
pub mod template;
