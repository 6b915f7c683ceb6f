//! Preload templates, kept by the process thread: one per pool with `preload`, started on the
//! pool's first worker, forking every worker of that pool on request.
//!
//! The template (`python -m pit template`, see `python/pit/template.py`) forks twice so each
//! worker is re-parented to pitd, a child subreaper: the process thread reaps and signals it
//! like any worker it exec'd itself. The template reports the worker's pid; a worker may die
//! before that report arrives, so the reaper keeps exits of unknown children for a while
//! (`Table::unclaimed`) and the registration picks its exit up from there.
//!
//! What the pool hears beside its forks goes through the request's `TemplateSink`: the
//! template ready (and the threads it runs, which pitd warns about), each spare's pid (so
//! the pool samples the spare's memory), its output lines (for `pitctl logs POOL`), and its
//! end.
//!
//! A template's spare (a worker forked ahead of need, adopted by pitd) exits by itself once
//! its template is gone; the reaper asks [`Templates::spare_exited`] to tell that expected
//! exit from an orphan nobody expected.
//!
//! A template that dies takes no worker with it. It is started again at once if it had been
//! serving for a while, else on the pool's next worker start (the pool's restart backoff
//! and crash-loop breaker then pace it: a template that cannot import its modules makes
//! every start fail, with the template's last stderr lines in the error).

mod channel;
mod output;
mod warnings;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::daemon::process::children::{ExitInfo, OnExit, OnSpawned, Table};
use crate::daemon::process::output::LogBudget;
use crate::daemon::process::spawn::{SpawnError, SpawnRequest, TemplateNews, TemplateRequest, spawn_template};

/// stderr lines of a template kept for the error of a failed start.
const TAIL_LINES: usize = 8;
/// Spares of templates that are gone, kept until reaped: how many at most.
const RETIRED_SPARES_KEPT: usize = 64;
/// A template that served at least this long is restarted at once when it dies.
const STABLE_AFTER: Duration = Duration::from_secs(5);
/// How long a template that closed its channel may take to exit.
const CLOSED_GRACE: Duration = Duration::from_secs(1);

/// Which of a template's fds is readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Channel,
    Stdout,
    Stderr,
}

/// A fd the process thread polls for a template.
pub type Token = (u64, Source);

struct Request {
    req: Box<SpawnRequest>,
    on_spawned: OnSpawned,
    on_exit: OnExit,
}

/// A fork sent to the template, waiting for its pid.
struct InFlight {
    request: Request,
    to_worker: OwnedFd,
    from_worker: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    sent_at: Instant,
}

struct Output {
    pipe: std::fs::File,
    partial: Vec<u8>,
    open: bool,
    /// Its lines go to pitd's log at a bounded rate, as workers' lines do.
    log: LogBudget,
}

struct Template {
    serial: u64,
    /// The request it was started for: later requests must match it (`same_template_as`).
    req: SpawnRequest,
    spec: TemplateRequest,
    pid: u32,
    channel: OwnedFd,
    stdout: Output,
    stderr: Output,
    tail: VecDeque<String>,
    started_at: Instant,
    ready_at: Option<Instant>,
    /// When it closed its channel: it is about to exit (the reaper then says how), or it
    /// is retired shortly after.
    closed_at: Option<Instant>,
    /// Its current spare's pid, from its `spare` message; none once handed out as a worker.
    spare: Option<u32>,
    /// Requests that came before the template was ready.
    waiting: Vec<Request>,
    forking: HashMap<String, InFlight>,
}

/// Every pool's template.
#[derive(Default)]
pub struct Templates {
    by_pool: HashMap<String, Template>,
    next_serial: u64,
    /// (pid, pool) of the spares of templates that are gone, not reaped yet.
    retired_spares: VecDeque<(u32, String)>,
}

/// Whose spare a reaped process was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpareOf {
    /// Of a pool's running template: it died while waiting to be handed out.
    Running(String),
    /// Of a pool's template that is gone: it exits by itself then.
    Gone(String),
}

impl Templates {
    /// Starts a worker of a preloaded pool: forks it now if the pool's template is ready,
    /// else once it is (starting the template if there is none, or replacing one started
    /// for a different spec).
    pub fn spawn(&mut self, req: Box<SpawnRequest>, on_spawned: OnSpawned, on_exit: OnExit, table: &mut Table) {
        let spec = req.template.clone().expect("only preloaded pools come here");
        let request = Request {
            req,
            on_spawned,
            on_exit,
        };
        let pool = request.req.pool.clone();
        if self
            .by_pool
            .get(&pool)
            .is_some_and(|t| !t.req.same_template_as(&request.req))
        {
            tracing::info!(pool = %pool, "the pool's spec changed: replacing its preload template");
            self.retire(&pool, table, "its pool's spec changed");
        }
        if !self.by_pool.contains_key(&pool)
            && let Err(e) = self.start(&request.req, &spec, table)
        {
            return (request.on_spawned)(Err(e));
        }
        let t = self.by_pool.get_mut(&pool).expect("started above");
        if t.ready_at.is_some() {
            t.fork(request);
        } else {
            t.waiting.push(request);
        }
    }

    fn start(&mut self, req: &SpawnRequest, spec: &TemplateRequest, table: &mut Table) -> Result<(), SpawnError> {
        let spawned = spawn_template(req, spec)?;
        let nonblocking = |fd: &OwnedFd| -> io::Result<()> {
            use nix::fcntl::{FcntlArg, OFlag, fcntl};
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            Ok(())
        };
        for fd in [&spawned.channel, &spawned.stdout, &spawned.stderr] {
            if let Err(e) = nonblocking(fd) {
                tracing::warn!(pool = %req.pool, "template fd: {e}");
            }
        }
        table.register_template(spawned.pid, &req.pool);
        tracing::info!(pool = %req.pool, pid = spawned.pid, "started the preload template (pid {})", spawned.pid);
        self.next_serial += 1;
        let output = |fd: OwnedFd| Output {
            pipe: std::fs::File::from(fd),
            partial: Vec::new(),
            open: true,
            log: LogBudget::new(),
        };
        self.by_pool.insert(
            req.pool.clone(),
            Template {
                serial: self.next_serial,
                req: req.clone(),
                spec: spec.clone(),
                pid: spawned.pid,
                channel: spawned.channel,
                stdout: output(spawned.stdout),
                stderr: output(spawned.stderr),
                tail: VecDeque::new(),
                started_at: Instant::now(),
                ready_at: None,
                closed_at: None,
                spare: None,
                waiting: Vec::new(),
                forking: HashMap::new(),
            },
        );
        Ok(())
    }

    /// Stops a pool's template (its pool is gone, or no longer preloads); its pending
    /// requests fail.
    pub fn release(&mut self, pool: &str, table: &mut Table) {
        self.retire(pool, table, "its pool no longer preloads");
    }

    /// Stops every template (pitd is stopping).
    pub fn release_all(&mut self, table: &mut Table) {
        let pools: Vec<String> = self.by_pool.keys().cloned().collect();
        for pool in pools {
            self.retire(&pool, table, "pitd is stopping");
        }
    }

    fn retire(&mut self, pool: &str, table: &mut Table, why: &str) {
        if let Some(mut t) = self.by_pool.remove(pool) {
            table.signal_group(t.pid, Signal::SIGKILL);
            self.spare_left(&t);
            t.spec.news.tell(TemplateNews::Gone { pid: t.pid });
            t.read_output(false);
            t.read_output(true);
            t.fail_all(&format!("the preload template was stopped ({why})"));
        }
    }

    /// The fds to poll, with the token to hand back to [`Templates::readable`].
    pub fn fds(&self) -> Vec<(Token, BorrowedFd<'_>)> {
        let mut fds = Vec::new();
        for t in self.by_pool.values() {
            if t.closed_at.is_none() {
                fds.push(((t.serial, Source::Channel), t.channel.as_fd()));
            }
            for (source, out) in [(Source::Stdout, &t.stdout), (Source::Stderr, &t.stderr)] {
                if out.open {
                    fds.push(((t.serial, source), out.pipe.as_fd()));
                }
            }
        }
        fds
    }

    /// Handles a readable (or hung-up) fd of a template.
    pub fn readable(&mut self, (serial, source): Token, table: &mut Table) {
        let Some(pool) = self.pool_of(serial) else { return };
        let t = self.by_pool.get_mut(&pool).expect("found above");
        match source {
            Source::Stdout => t.read_output(false),
            Source::Stderr => t.read_output(true),
            Source::Channel => {
                if let Err(why) = t.read_channel(table) {
                    tracing::error!(pool = %pool, "preload template (pid {}): {why}; killing it", t.pid);
                    self.retire(&pool, table, &why);
                }
            }
        }
    }

    /// The earliest instant a template or one of its forks is overdue.
    pub fn deadline(&self) -> Option<Instant> {
        self.by_pool.values().filter_map(Template::deadline).min()
    }

    /// Kills templates that did not get ready, or did not answer a fork, in time.
    pub fn expire(&mut self, now: Instant, table: &mut Table) {
        let overdue: Vec<String> = self
            .by_pool
            .iter()
            .filter(|(_, t)| t.deadline().is_some_and(|d| d <= now))
            .map(|(pool, _)| pool.clone())
            .collect();
        for pool in overdue {
            let t = &self.by_pool[&pool];
            let why = if t.closed_at.is_some() {
                "the preload template closed its channel but did not exit".to_string()
            } else if t.ready_at.is_none() {
                format!(
                    "the preload template was not ready within startup_timeout ({})",
                    humantime::format_duration(t.spec.startup_timeout)
                )
            } else {
                "the preload template did not answer a fork request within startup_timeout".to_string()
            };
            tracing::error!(pool = %pool, "{why}; killing it");
            self.retire(&pool, table, &why);
        }
    }

    /// A template was reaped. Its workers live on; its pending requests fail.
    pub fn exited(&mut self, pool: &str, pid: u32, info: &ExitInfo, table: &mut Table) {
        let Some(t) = self.by_pool.get_mut(pool) else { return };
        if t.pid != pid {
            return;
        }
        // What it wrote before dying (a traceback, typically) is still in the pipes, and a
        // report it sent may still be in the socket.
        t.read_output(false);
        t.read_output(true);
        let _ = t.read_channel(table);
        let mut t = self.by_pool.remove(pool).expect("found above");
        self.spare_left(&t);
        t.spec.news.tell(TemplateNews::Gone { pid });
        let why = format!("the preload template (pid {pid}) exited ({})", info.status);
        tracing::warn!(pool = %pool, "{why}");
        let stable = t
            .ready_at
            .is_some_and(|r| info.at.saturating_duration_since(r) >= STABLE_AFTER);
        let (req, spec) = (t.req.clone(), t.spec.clone());
        t.fail_all(&why);
        if stable && let Err(e) = self.start(&req, &spec, table) {
            tracing::error!(pool = %pool, "restarting the preload template: {e}");
        }
    }

    /// A template is gone: its spare (if it had one, and it is still pitd's child to reap)
    /// is about to exit by itself.
    fn spare_left(&mut self, t: &Template) {
        let ours = |pid: u32| crate::procfs::stat_of(pid).is_some_and(|s| s.ppid == std::process::id());
        if let Some(spare) = t.spare.filter(|pid| ours(*pid)) {
            if self.retired_spares.len() >= RETIRED_SPARES_KEPT {
                self.retired_spares.pop_front();
            }
            self.retired_spares.push_back((spare, t.req.pool.clone()));
        }
    }

    /// Whether the reaped child `pid`, not a registered worker, was a template's spare.
    pub fn spare_exited(&mut self, pid: u32) -> Option<SpareOf> {
        if let Some(at) = self.retired_spares.iter().position(|(spare, _)| *spare == pid) {
            let (_, pool) = self.retired_spares.remove(at).expect("found above");
            return Some(SpareOf::Gone(pool));
        }
        let (pool, t) = self.by_pool.iter_mut().find(|(_, t)| t.spare == Some(pid))?;
        t.spare = None;
        Some(SpareOf::Running(pool.clone()))
    }

    fn pool_of(&self, serial: u64) -> Option<String> {
        self.by_pool
            .iter()
            .find(|(_, t)| t.serial == serial)
            .map(|(pool, _)| pool.clone())
    }
}

impl Template {
    fn deadline(&self) -> Option<Instant> {
        if let Some(closed) = self.closed_at {
            return Some(closed + CLOSED_GRACE);
        }
        let timeout = self.spec.startup_timeout;
        if self.ready_at.is_none() {
            return Some(self.started_at + timeout);
        }
        self.forking.values().map(|f| f.sent_at + timeout).min()
    }

    fn fail_all(&mut self, why: &str) {
        let argv0 = self.req.argv0();
        let why = if self.tail.is_empty() {
            why.to_string()
        } else {
            let tail: Vec<&str> = self.tail.iter().map(String::as_str).collect();
            format!("{why}: {}", tail.join(" | "))
        };
        let why = why.as_str();
        for request in std::mem::take(&mut self.waiting) {
            fail(request, &argv0, io::Error::other(why.to_string()));
        }
        for (_, f) in std::mem::take(&mut self.forking) {
            fail(f.request, &argv0, io::Error::other(why.to_string()));
        }
    }
}

impl SpawnRequest {
    fn argv0(&self) -> String {
        self.template
            .as_ref()
            .and_then(|t| t.argv.first())
            .cloned()
            .unwrap_or_default()
    }
}

fn fail(request: Request, program: &str, source: io::Error) {
    let err = SpawnError {
        pool: request.req.pool.clone(),
        id: request.req.id,
        program: program.to_string(),
        source,
    };
    (request.on_spawned)(Err(err));
}
