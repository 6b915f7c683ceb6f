//! The guard: a tiny process forked at startup that outlives pitd by a moment. pitd tells it
//! each worker's process group over a pipe; when the pipe closes (pitd exited or was
//! SIGKILLed) it kills every group still registered. PDEATHSIG only reaches the worker
//! itself, so without the guard a worker's own children would survive a SIGKILL of pitd.

// fork() is unsafe: it is called once, before any thread exists, and the child only runs
// plain single-threaded code.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;

use nix::sys::signal::{SigHandler, Signal, killpg, signal};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};

/// pitd's end of the guard pipe.
#[derive(Debug)]
pub struct Guard {
    pipe: File,
    pub pid: u32,
    broken: bool,
}

/// Forks the guard. Must be called while pitd is still single-threaded.
pub fn start() -> std::io::Result<Guard> {
    let (read_end, write_end) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: no other thread exists yet (called first thing in main), so the child's
    // copy of the heap and locks is consistent.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(write_end);
            run(read_end)
        }
        ForkResult::Parent { child } => {
            drop(read_end);
            Ok(Guard {
                pipe: File::from(write_end),
                pid: child.as_raw() as u32,
                broken: false,
            })
        }
    }
}

impl Guard {
    /// Registers a worker's process group (= its pid: workers call setsid).
    pub fn watch(&mut self, pgid: u32) {
        self.send(&format!("+{pgid}\n"));
    }

    /// Forgets a group after its leader was reaped, so a reused pgid is never killed.
    pub fn forget(&mut self, pgid: u32) {
        self.send(&format!("-{pgid}\n"));
    }

    fn send(&mut self, line: &str) {
        if self.broken {
            return;
        }
        if let Err(e) = self.pipe.write_all(line.as_bytes()) {
            self.broken = true;
            tracing::error!(
                guard_pid = self.pid,
                "the guard process is gone ({e}); workers' children would survive a SIGKILL of pitd"
            );
        }
    }
}

/// The guard's whole life: track groups until EOF, then kill them all.
fn run(read_end: OwnedFd) -> ! {
    // Own session: a Ctrl-C aimed at pitd's terminal group must not take the guard down
    // before pitd, and terminal hangups are not ours to obey.
    let _ = setsid();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let _ = nix::sys::prctl::set_name(c"pitd-guard");
    let mut groups = BTreeSet::new();
    let reader = BufReader::new(File::from(read_end));
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let (op, num) = line.split_at(1.min(line.len()));
        let Ok(pgid) = num.parse::<i32>() else { continue };
        match op {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    std::process::exit(0)
}
