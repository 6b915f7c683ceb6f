//! THE process thread: it forks every worker and is the only caller of `waitpid`.
//!
//! Registering a pid and reaping it on one thread means an exit can never arrive before its
//! pid is known. PDEATHSIG fires when the *thread* that forked a child dies, so this thread
//! lives as long as pitd. Children inherit the signal mask of the forking thread: this
//! thread keeps an empty one. Exits are peeked with `waitid(WNOWAIT)`, the worker's process
//! group is killed while the zombie leader still pins the pgid, and only then reaped.
//! Orphans adopted as a child subreaper (or as PID 1) are reaped and logged.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, pthread_sigmask};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use super::guard::Guard;
use super::spawn::{SpawnError, SpawnRequest, Spawned, spawn};
use crate::lifecycle::ExitStatusInfo;

/// How a worker ended, as seen by the reaper.
#[derive(Debug, Clone)]
pub struct ExitInfo {
    pub pid: u32,
    pub status: ExitStatusInfo,
    pub at: Instant,
    /// CPU time (user + system) the worker used, read from the zombie before reaping: a
    /// SIGKILL at RLIMIT_CPU (soft = hard) is told from any other SIGKILL by it.
    pub cpu_time: Option<std::time::Duration>,
}

/// Called on the process thread with the spawn result; must not block.
pub type OnSpawned = Box<dyn FnOnce(Result<Spawned, SpawnError>) + Send>;
/// Called on the process thread when the worker has been reaped; must not block.
pub type OnExit = Box<dyn FnOnce(ExitInfo) + Send>;

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
                live: HashMap::new(),
                guard,
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

    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            // A full wake pipe already guarantees a wake-up.
            let _ = nix::unistd::write(self.wake.as_fd(), &[1]);
        }
    }
}

struct Live {
    on_exit: OnExit,
}

struct ProcThread {
    rx: mpsc::Receiver<Cmd>,
    live: HashMap<u32, Live>,
    guard: Option<Guard>,
}

impl ProcThread {
    fn run(&mut self, sig_r: OwnedFd, wake_r: OwnedFd) -> ! {
        let mut sig_r = std::fs::File::from(sig_r);
        let mut wake_r = std::fs::File::from(wake_r);
        let mut scratch = [0u8; 256];
        loop {
            {
                let mut fds = [
                    PollFd::new(sig_r.as_fd(), PollFlags::POLLIN),
                    PollFd::new(wake_r.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => tracing::error!("process thread poll failed: {e}"),
                }
            }
            while sig_r.read(&mut scratch).is_ok_and(|n| n > 0) {}
            while wake_r.read(&mut scratch).is_ok_and(|n| n > 0) {}
            while let Ok(cmd) = self.rx.try_recv() {
                self.handle(cmd);
            }
            self.reap();
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Spawn {
                req,
                on_spawned,
                on_exit,
            } => match spawn(&req) {
                Ok(spawned) => {
                    self.live.insert(spawned.pid, Live { on_exit });
                    if let Some(g) = self.guard.as_mut() {
                        g.watch(spawned.pid);
                    }
                    on_spawned(Ok(spawned));
                }
                Err(e) => on_spawned(Err(e)),
            },
            Cmd::Signal { pid, signal } => {
                // Only pids not yet reaped: a reaped pid (and its pgid) may already be reused.
                if self.live.contains_key(&pid) {
                    match killpg(Pid::from_raw(pid as i32), signal) {
                        Ok(()) | Err(Errno::ESRCH) => {}
                        Err(e) => tracing::warn!(pid, "signalling process group {pid} with {signal}: {e}"),
                    }
                }
            }
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
            if let Some(live) = self.live.remove(&raw) {
                let cpu_time = zombie_cpu_time(raw);
                // The zombie leader still pins the pgid: kill what it left behind, then reap.
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                if let Some(g) = self.guard.as_mut() {
                    g.forget(raw);
                }
                (live.on_exit)(ExitInfo {
                    pid: raw,
                    status: info,
                    at: Instant::now(),
                    cpu_time,
                });
            } else {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                if self.guard.as_ref().is_some_and(|g| g.pid == raw) {
                    tracing::error!(
                        "the guard process exited ({info}); workers' children would survive a SIGKILL of pitd"
                    );
                } else {
                    tracing::info!(pid = raw, "reaped orphan process {raw} ({info})");
                }
            }
        }
    }
}

/// utime + stime of a not yet reaped child, from /proc/PID/stat (fields 14 and 15).
fn zombie_cpu_time(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the comm field: state is field 3, so utime (14) is index 11 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Some(std::time::Duration::from_millis(ticks * 1000 / hz.max(1)))
}
