//! Building one worker process: argv, env, cwd, credentials, rlimits, the protocol fds and
//! the `pre_exec` discipline. Called only on the process thread (`procs`), which is also
//! the only reaper, so a child can never exit before its pid is registered.

// `pre_exec` is unsafe by nature: the closure runs between fork and exec. It only makes raw
// syscalls on `Copy` data captured before the fork (async-signal-safe, no allocation).
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::ids::WorkerId;
use crate::spec::Rlimits;

/// Environment variables that belong to pitd's own supervisor (systemd) and must not leak
/// into workers: a worker that saw NOTIFY_SOCKET could tell systemd it is the service.
const SCRUBBED_PREFIXES: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_"];

/// The fds a worker finds its protocol pipes on (INTERFACE section 3).
pub const WORKER_IN_FD: RawFd = 3;
pub const WORKER_OUT_FD: RawFd = 4;

/// Everything needed to start one worker; plain data so a fake spawner can record it.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub pool: String,
    pub id: WorkerId,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub rlimits: Rlimits,
    /// (uid, gid) to switch to; only set when pitd runs as root.
    pub credentials: Option<(u32, u32)>,
    /// Give the worker protocol pipes on fds 3 and 4.
    pub protocol_fds: bool,
    /// Fork the worker from the pool's preload template instead of exec'ing `argv`.
    pub template: Option<TemplateRequest>,
}

/// How to run a pool's preload template (one per pool, started on its first worker).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRequest {
    /// `python -m pit template MODULE --preload M ...`
    pub argv: Vec<String>,
    /// Spawn -> ready for the template, and fork request -> forked for each worker.
    pub startup_timeout: std::time::Duration,
    /// Where the template's own news go (its pid, its spare's, its warnings): the pool.
    pub news: TemplateSink,
}

/// What a pool hears about its template, beside the forks it asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateNews {
    /// Ready, with what pitd should warn about (threads after the preload, the GIL back on).
    Ready { pid: u32, warnings: Vec<String> },
    /// A new spare, replacing the previous one (now a worker, or gone).
    Spare { pid: u32 },
    /// The template exited or was stopped; its spare goes with it.
    Gone { pid: u32 },
    /// A line the template wrote (already in pitd's log, at a bounded rate).
    Output {
        stream: crate::proto::control::Stream,
        line: String,
    },
}

/// Called on the process thread, so it must not block (the pool's sends into its mailbox).
#[derive(Clone)]
pub struct TemplateSink(pub std::sync::Arc<dyn Fn(TemplateNews) + Send + Sync>);

impl TemplateSink {
    pub fn tell(&self, news: TemplateNews) {
        (self.0)(news)
    }
}

impl std::fmt::Debug for TemplateSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateSink")
    }
}

/// The same sink: a pool makes one for its life, so a template started for a pool keeps
/// serving it, and a new pool of the same name gets a template of its own.
impl PartialEq for TemplateSink {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl SpawnRequest {
    /// Whether a template started for `other` can fork workers for this request: same
    /// program, directory, environment, limits and credentials.
    pub fn same_template_as(&self, other: &SpawnRequest) -> bool {
        self.pool == other.pool
            && self.template == other.template
            && self.cwd == other.cwd
            && self.env == other.env
            && self.rlimits == other.rlimits
            && self.credentials == other.credentials
    }
}

/// A started template's handles.
#[derive(Debug)]
pub struct SpawnedTemplate {
    pub pid: u32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// pitd's end of the template's fd 3 (`SOCK_SEQPACKET`).
    pub channel: OwnedFd,
}

/// What the child finds from fd 3 up.
#[derive(Debug, Clone, Copy)]
enum ChildFds {
    None,
    /// Calls in on 3, replies out on 4 (a worker).
    Pipes(RawFd, RawFd),
    /// A socket on 3 (a template).
    Socket(RawFd),
}

/// A started worker's handles, passed back to its pool.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    pub started_at: Instant,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// pitd -> worker (fd 3 in the worker), when `protocol_fds`.
    pub to_worker: Option<OwnedFd>,
    /// worker -> pitd (fd 4 in the worker), when `protocol_fds`.
    pub from_worker: Option<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
#[error("starting {id} of pool {pool} ({program}): {source}")]
pub struct SpawnError {
    pub pool: String,
    pub id: WorkerId,
    pub program: String,
    #[source]
    pub source: io::Error,
}

/// Forks and execs one worker. Must run on the process thread (PDEATHSIG is tied to the
/// forking thread, and only that thread reaps).
pub fn spawn(req: &SpawnRequest) -> Result<Spawned, SpawnError> {
    let fail = |source: io::Error| spawn_error(req, &req.argv, source);
    // Protocol pipes, parked on fds >= 10 so the dup2 onto 3 and 4 in the child can never
    // clobber one another.
    let pipes = if req.protocol_fds {
        let (to_r, to_w) = high_pipe().map_err(fail)?;
        let (from_r, from_w) = high_pipe().map_err(fail)?;
        Some((to_r, to_w, from_r, from_w))
    } else {
        None
    };
    let child_fds = match &pipes {
        Some((to_r, _, _, from_w)) => ChildFds::Pipes(to_r.as_raw_fd(), from_w.as_raw_fd()),
        None => ChildFds::None,
    };
    let mut cmd = command(req, &req.argv).map_err(fail)?;
    cmd.env("PIT_WORKER_ID", req.id.to_string());
    let (pid, stdout, stderr) = start(cmd, &req.rlimits, child_fds).map_err(fail)?;
    let started_at = Instant::now();
    let (to_worker, from_worker) = match pipes {
        Some((_to_r, to_w, from_r, _from_w)) => (Some(to_w), Some(from_r)),
        None => (None, None),
    };
    Ok(Spawned {
        pid,
        started_at,
        stdout,
        stderr,
        to_worker,
        from_worker,
    })
}

/// Forks and execs the preload template for `req`'s pool, with its channel socket on fd 3.
/// The same discipline as a worker: own session, rlimits, PDEATHSIG, scrubbed environment,
/// credentials; every worker forked from it inherits all of them.
pub fn spawn_template(req: &SpawnRequest, template: &TemplateRequest) -> Result<SpawnedTemplate, SpawnError> {
    let fail = |source: io::Error| spawn_error(req, &template.argv, source);
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| fail(e.into()))?;
    let theirs = raise_fd(theirs).map_err(fail)?;
    let mut cmd = command(req, &template.argv).map_err(fail)?;
    cmd.env("PIT_TEMPLATE", "1");
    let (pid, stdout, stderr) = start(cmd, &req.rlimits, ChildFds::Socket(theirs.as_raw_fd())).map_err(fail)?;
    Ok(SpawnedTemplate {
        pid,
        stdout,
        stderr,
        channel: ours,
    })
}

fn spawn_error(req: &SpawnRequest, argv: &[String], source: io::Error) -> SpawnError {
    SpawnError {
        pool: req.pool.clone(),
        id: req.id,
        program: argv.first().cloned().unwrap_or_default(),
        source,
    }
}

/// The command for `argv` with the request's directory, environment and credentials.
fn command(req: &SpawnRequest, argv: &[String]) -> io::Result<Command> {
    if argv.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&req.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if scrubbed(&key) {
            cmd.env_remove(key);
        }
    }
    cmd.envs(req.env.iter().map(|(k, v)| (k, v)));
    cmd.env("PIT_POOL", &req.pool);
    if let Some((uid, gid)) = req.credentials {
        // std drops supplementary groups (setgroups(0)) before setuid when running as root.
        cmd.uid(uid).gid(gid);
    }
    Ok(cmd)
}

/// Spawns `cmd` with the child set-up; returns its pid and its stdout/stderr read ends.
fn start(mut cmd: Command, rlimits: &Rlimits, child_fds: ChildFds) -> io::Result<(u32, OwnedFd, OwnedFd)> {
    let limits = rlimit_table(rlimits);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only calls async-signal-safe syscalls on captured Copy values.
    unsafe {
        cmd.pre_exec(move || child_setup(parent, &limits, child_fds));
    }
    let mut child = cmd.spawn()?;
    let stdout = OwnedFd::from(child.stdout.take().expect("stdout was piped"));
    let stderr = OwnedFd::from(child.stderr.take().expect("stderr was piped"));
    // Dropping `child` neither waits nor kills: the reaper owns the pid from here.
    let pid = child.id();
    drop(child);
    Ok((pid, stdout, stderr))
}

fn scrubbed(key: &OsString) -> bool {
    let k = key.to_string_lossy();
    SCRUBBED_PREFIXES.iter().any(|p| k.starts_with(p))
}

/// A CLOEXEC pipe whose ends are both at fd >= 10.
pub fn high_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((raise_fd(r)?, raise_fd(w)?))
}

fn raise_fd(fd: OwnedFd) -> io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, fcntl};
    if fd.as_raw_fd() >= 10 {
        return Ok(fd);
    }
    let raised = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raised) })
}

type LimitRow = (libc::__rlimit_resource_t, libc::rlim_t);

/// The `[rlimits]` table as (resource, value) rows, `None` where the spec leaves a limit
/// inherited.
fn rlimit_table(r: &Rlimits) -> [Option<LimitRow>; 5] {
    [
        r.nofile.map(|v| (libc::RLIMIT_NOFILE, v as libc::rlim_t)),
        r.nproc.map(|v| (libc::RLIMIT_NPROC, v as libc::rlim_t)),
        r.cpu.map(|v| (libc::RLIMIT_CPU, v as libc::rlim_t)),
        r.core.map(|v| (libc::RLIMIT_CORE, v as libc::rlim_t)),
        r.address_space.map(|v| (libc::RLIMIT_AS, v as libc::rlim_t)),
    ]
}

/// Runs in the child between fork and exec. std has already set up fds 0-2, credentials and
/// cwd, and reset the signal mask and dispositions.
fn child_setup(parent: libc::pid_t, limits: &[Option<LimitRow>; 5], fds: ChildFds) -> io::Result<()> {
    // SAFETY (whole function): raw syscalls only, no allocation, no locks.
    unsafe {
        // Own session and process group, so the worker and everything it forks can be
        // signalled as one group; setsid also detaches from pitd's terminal.
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        for (resource, value) in limits.iter().flatten() {
            let lim = libc::rlimit {
                rlim_cur: *value,
                rlim_max: *value,
            };
            if libc::setrlimit(*resource, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Die with the forking thread (the process thread lives as long as pitd). If pitd
        // died between fork and prctl, the signal would never come: check the parent.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        // dup2 clears CLOEXEC on the new fd, so exactly these survive exec.
        let first: libc::c_uint = match fds {
            ChildFds::None => 3,
            ChildFds::Pipes(read_end, write_end) => {
                if libc::dup2(read_end, WORKER_IN_FD) < 0 || libc::dup2(write_end, WORKER_OUT_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                5
            }
            ChildFds::Socket(socket) => {
                if libc::dup2(socket, WORKER_IN_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                4
            }
        };
        // Belt and braces against fds opened without CLOEXEC by a library: everything above
        // the protocol fds is closed at exec. Errors (old kernels) are harmless: pitd opens
        // its own fds CLOEXEC.
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC);
    }
    Ok(())
}
