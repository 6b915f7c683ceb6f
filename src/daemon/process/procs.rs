//! THE process thread: it forks every worker and is the only caller of `waitpid`.
//!
//! Registering a pid and reaping it on one thread means an exit can never arrive before its
//! pid is known. PDEATHSIG fires when the *thread* that forked a child dies, so this thread
//! lives as long as pitd. Children inherit the signal mask of the forking thread: this
//! thread keeps an empty one. Exits are peeked with `waitid(WNOWAIT)`, the worker's process
//! group is killed while the zombie leader still pins the pgid, and only then reaped.
//! Orphans adopted as a child subreaper (or as PID 1) are reaped and logged; a template's
//! spare exiting with its template is expected, and logged at debug level only.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, pthread_sigmask};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};

use crate::daemon::monitor::{ProcStat, stat_of};
use crate::daemon::process::children::{ExitInfo, OnExit, OnSpawned};
use crate::daemon::process::children::{Live, Table};
use crate::daemon::process::guard::Guard;
use crate::daemon::process::spawn::{SpawnRequest, spawn};
use crate::daemon::process::template::{SpareOf, Templates};
use crate::lifecycle::ExitStatusInfo;

enum Cmd {
    Spawn {
        req: Box<SpawnRequest>,
        on_spawned: OnSpawned,
        on_exit: OnExit,
    },
    Signal {
        pid: u32,
        signal: Signal,
    },
    /// Stop a pool's preload template (`None`: every template).
    ReleaseTemplate {
        pool: Option<String>,
    },
}

/// A cloneable handle to the process thread.
#[derive(Clone)]
pub struct Procs {
    tx: mpsc::Sender<Cmd>,
    wake: std::sync::Arc<OwnedFd>,
}

impl std::fmt::Debug for Procs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Procs")
    }
}

impl Procs {
    /// Starts the process thread. Spawn before the async runtime so no runtime thread can
    /// have blocked signals that would leak into workers through this thread's mask.
    pub fn start(guard: Option<Guard>) -> std::io::Result<Procs> {
        let (sig_r, sig_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        signal_hook::low_level::pipe::register(libc::SIGCHLD, sig_w)?;
        let (wake_r, wake_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("pitd-procs".into()).spawn(move || {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            let mut thread = ProcThread {
                rx,
                table: Table::new(guard),
                templates: Templates::default(),
            };
            thread.run(sig_r, wake_r)
        })?;
        Ok(Procs {
            tx,
            wake: std::sync::Arc::new(wake_w),
        })
    }

    /// Asks for a worker to be started; the callbacks report the result and, later, the exit.
    pub fn spawn(&self, req: SpawnRequest, on_spawned: OnSpawned, on_exit: OnExit) {
        self.send(Cmd::Spawn {
            req: Box::new(req),
            on_spawned,
            on_exit,
        });
    }

    /// Signals a worker's whole process group, if the worker has not been reaped yet.
    pub fn signal_group(&self, pid: u32, signal: Signal) {
        self.send(Cmd::Signal { pid, signal });
    }

    /// Stops a pool's preload template, or (`None`) every template; a pool without one is
    /// left alone. Workers forked from it are not affected.
    pub fn release_template(&self, pool: Option<&str>) {
        self.send(Cmd::ReleaseTemplate {
            pool: pool.map(str::to_string),
        });
    }

    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            // A full wake pipe already guarantees a wake-up.
            let _ = nix::unistd::write(self.wake.as_fd(), &[1]);
        }
    }
}

struct ProcThread {
    rx: mpsc::Receiver<Cmd>,
    table: Table,
    templates: Templates,
}

impl ProcThread {
    fn run(&mut self, sig_r: OwnedFd, wake_r: OwnedFd) -> ! {
        let mut sig_r = std::fs::File::from(sig_r);
        let mut wake_r = std::fs::File::from(wake_r);
        let mut scratch = [0u8; 256];
        loop {
            let readable = {
                let template_fds = self.templates.fds();
                let mut fds = vec![
                    PollFd::new(sig_r.as_fd(), PollFlags::POLLIN),
                    PollFd::new(wake_r.as_fd(), PollFlags::POLLIN),
                ];
                fds.extend(template_fds.iter().map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN)));
                let timeout = match self.templates.deadline() {
                    None => PollTimeout::NONE,
                    Some(at) => {
                        let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                        PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
                    }
                };
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => tracing::error!("process thread poll failed: {e}"),
                }
                let tokens: Vec<_> = template_fds.iter().map(|(token, _)| *token).collect();
                fds[2..]
                    .iter()
                    .zip(tokens)
                    .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(_, token)| token)
                    .collect::<Vec<_>>()
            };
            while sig_r.read(&mut scratch).is_ok_and(|n| n > 0) {}
            while wake_r.read(&mut scratch).is_ok_and(|n| n > 0) {}
            // Reap first: a worker that died before its template reported it is then
            // already among the unclaimed exits when the report is read.
            self.reap();
            for token in readable {
                self.templates.readable(token, &mut self.table);
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.handle(cmd);
            }
            self.templates.expire(Instant::now(), &mut self.table);
            self.reap();
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Spawn {
                req,
                on_spawned,
                on_exit,
            } if req.template.is_some() => self.templates.spawn(req, on_spawned, on_exit, &mut self.table),
            Cmd::Spawn {
                req,
                on_spawned,
                on_exit,
            } => match spawn(&req) {
                Ok(spawned) => {
                    self.table.insert(spawned.pid, Live::Worker { on_exit });
                    on_spawned(Ok(spawned));
                }
                Err(e) => on_spawned(Err(e)),
            },
            Cmd::Signal { pid, signal } => self.table.signal_group(pid, signal),
            Cmd::ReleaseTemplate { pool: Some(pool) } => self.templates.release(&pool, &mut self.table),
            Cmd::ReleaseTemplate { pool: None } => self.templates.release_all(&mut self.table),
        }
    }

    /// Reaps every exited child; loops until none is left (signals coalesce).
    fn reap(&mut self) {
        loop {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            let status = match waitid(Id::All, flags) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(s) => s,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("waitid failed: {e}");
                    return;
                }
            };
            let Some(pid) = status.pid() else { return };
            let raw = pid.as_raw() as u32;
            let info = match status {
                WaitStatus::Exited(_, code) => ExitStatusInfo::Exited(code),
                WaitStatus::Signaled(_, sig, _) => ExitStatusInfo::Signaled(sig as i32),
                _ => ExitStatusInfo::Exited(-1),
            };
            // One read of the zombie's stat: its CPU time (a SIGKILL at RLIMIT_CPU is told
            // apart by it) and, for an unknown child, whether it leads a group.
            let stat = stat_of(raw);
            let cpu_time = stat.as_ref().map(cpu_time);
            if let Some(live) = self.table.live.remove(&raw) {
                // The zombie leader still pins the pgid: kill what it left behind, then reap.
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                if let Some(g) = self.table.guard.as_mut() {
                    g.forget(raw);
                }
                let exit = ExitInfo {
                    pid: raw,
                    status: info,
                    at: Instant::now(),
                    cpu_time,
                };
                match live {
                    Live::Worker { on_exit } => on_exit(exit),
                    Live::Template { pool } => self.templates.exited(&pool, raw, &exit, &mut self.table),
                }
            } else {
                // Not known (yet): a leader of its own group may be a template's worker whose
                // pid is still on its way; its group goes with it, as a worker's would.
                if stat.is_some_and(|s| s.pgrp == raw) {
                    let _ = killpg(pid, Signal::SIGKILL);
                }
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                let exit = ExitInfo {
                    pid: raw,
                    status: info,
                    at: Instant::now(),
                    cpu_time,
                };
                if self.table.guard.as_ref().is_some_and(|g| g.pid == raw) {
                    tracing::error!(
                        "the guard process exited ({info}); workers' children would survive a SIGKILL of pitd"
                    );
                    continue;
                }
                // What pitd adopts without having started it: a template's spare (forked
                // through an intermediate so that pitd adopts it), which exits 0 by itself
                // when its template goes (every whole-pool recycle, every changed spec);
                // anything a worker left behind. The intermediates themselves are reaped by
                // their template (`_double_fork` in python/pit/template.py): one reaches
                // pitd only when its template died in the middle of a fork, which is news.
                match self.templates.spare_exited(raw) {
                    Some(SpareOf::Gone(pool)) => tracing::debug!(
                        pool = %pool,
                        pid = raw,
                        "reaped the spare worker {raw} of a preload template that is gone ({info})"
                    ),
                    Some(SpareOf::Running(pool)) => {
                        tracing::info!(
                            pool = %pool,
                            pid = raw,
                            "reaped process {raw}, the preload template's spare worker or the worker it was just \
                             handed out as ({info})"
                        );
                        // Handed out, its worker's report may still be on its way.
                        self.table.keep_unclaimed(exit);
                    }
                    None => {
                        tracing::info!(pid = raw, "reaped orphan process {raw} ({info})");
                        self.table.keep_unclaimed(exit);
                    }
                }
            }
        }
    }
}

/// utime + stime of a not yet reaped child, from its stat.
fn cpu_time(stat: &ProcStat) -> Duration {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis(stat.cpu_ticks * 1000 / hz.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::process::children::UNCLAIMED_KEPT;

    fn table() -> Table {
        Table::new(None)
    }

    fn exit(pid: u32, at: Instant) -> ExitInfo {
        ExitInfo {
            pid,
            status: ExitStatusInfo::Signaled(9),
            at,
            cpu_time: None,
        }
    }

    #[test]
    fn a_worker_reaped_before_its_registration_gets_its_exit_reported() {
        let mut t = table();
        let asked = Instant::now();
        t.keep_unclaimed(exit(4242, asked + Duration::from_millis(1)));
        assert!(t.claimable(4242, asked));
        let (_, info) = t
            .register_worker(4242, Box::new(|_| {}), asked)
            .expect("the early exit is handed back");
        assert_eq!(info.pid, 4242);
        assert!(t.live.is_empty() && t.unclaimed.is_empty());
    }

    #[test]
    fn an_exit_from_before_the_fork_request_is_another_process() {
        let mut t = table();
        let reaped = Instant::now();
        t.keep_unclaimed(exit(4242, reaped));
        let asked = reaped + Duration::from_millis(5);
        assert!(t.register_worker(4242, Box::new(|_| {}), asked).is_none());
        assert!(t.live.contains_key(&4242), "registered as live");
        assert!(!t.claimable(4242, asked), "a live pid is not claimed twice");
    }

    #[test]
    fn only_a_child_of_pitd_leading_its_group_is_claimable() {
        let t = table();
        // This test process is not a child of itself, and pid 1 is not our child.
        assert!(!t.claimable(std::process::id(), Instant::now()));
        assert!(!t.claimable(1, Instant::now()));
    }

    #[test]
    fn unclaimed_exits_are_bounded() {
        let mut t = table();
        let now = Instant::now();
        for pid in 0..(UNCLAIMED_KEPT as u32 + 10) {
            t.keep_unclaimed(exit(pid + 100, now));
        }
        assert_eq!(t.unclaimed.len(), UNCLAIMED_KEPT);
        assert_eq!(t.unclaimed.front().unwrap().pid, 110, "the oldest went first");
    }
}
