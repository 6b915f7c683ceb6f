//! pitctl: the operator's client. One file per command group; errors map to exit codes in
//! one place (`Failure::exit_code`): 0 success, 1 refused or failed, 2 usage, 3 no daemon.

pub mod bench;
pub mod call;
mod duration;
mod events;
mod follow;
mod logs;
mod shutdown;
mod status;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::{ClientError, ControlClient};
use crate::proto::control::{Reply, Request};

/// pitctl: see and steer a running pitd.
#[derive(Debug, Parser)]
#[command(
    name = "pitctl",
    version,
    about,
    long_about = None,
    after_help = "Durations (call --timeout, bench --duration, top --interval, shutdown --timeout, \
                  probe --timeout) are a number of seconds, e.g. 0.2, as timeout(1) takes them, or a \
                  number with a unit: 500ms, 1.5s, 1m30s."
)]
pub struct Cli {
    /// Control socket of the daemon [default: $XDG_RUNTIME_DIR/pitd/control.sock, /run/pitd/control.sock as root]
    #[arg(
        long,
        global = true,
        env = "PITD_SOCKET",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pools and workers: id, pid, state, health, RSS, CPU %, calls, errors, age, last recycle reason; beside RSS the pool's memory_metric where pages are shared (PSS or USS; PSS for a preloaded pool on rss) and its max_rss/hard_rss; a preloaded pool's template and spare worker (pid, RSS, PSS), its memory totals and warnings
    Status {
        /// Only this pool
        pool: Option<String>,
        /// Print the status as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Captured stdout/stderr of a worker (worker-N), or of every worker of a pool and its preload template
    Logs {
        /// worker-N or a pool name
        target: String,
        /// Lines to show
        #[arg(short = 'n', long = "lines", default_value_t = 50)]
        lines: usize,
        /// Keep printing new lines as they arrive
        #[arg(short = 'f', long)]
        follow: bool,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// One call through the call socket; prints the result (exit 1 with the error kind, the worker when pitd names one, and the message on failure)
    Call {
        pool: String,
        method: String,
        /// Arguments as JSON [default: null]
        #[arg(value_parser = call::parse_json)]
        args: Option<String>,
        /// Session id: calls of one session stick to one worker
        #[arg(long)]
        session: Option<String>,
        /// Give up after this long: seconds (0.2) or a number with a unit (500ms, 5s)
        #[arg(long, value_parser = duration::parse, allow_hyphen_values = true)]
        timeout: Option<std::time::Duration>,
        /// Retry once on another worker if the worker dies before replying
        #[arg(long)]
        idempotent: bool,
        /// Print the whole reply as JSON
        #[arg(long)]
        json: bool,
        /// Call a streaming handler: print each chunk as one JSON line as it comes
        #[arg(long)]
        stream: bool,
        /// Call socket [default: the one the daemon reports]
        #[arg(long, env = "PITD_CALL_SOCKET", hide_env_values = true, value_name = "PATH")]
        call_socket: Option<PathBuf>,
    },
    /// Load generator: calls/s and latency p50/p90/p99/max, each in the unit it reads best (87 us, 502 ms, 1.24 s)
    Bench {
        pool: String,
        /// Method to call
        #[arg(long, default_value = "echo")]
        method: String,
        /// Arguments as JSON
        #[arg(long, default_value = "null", value_parser = call::parse_json)]
        args: String,
        /// Calls in flight at once
        #[arg(long, short = 'c', default_value_t = 1)]
        concurrency: usize,
        /// Connections to carry them, each with its share of the calls pipelined on it
        /// [default: one per call in flight]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
        connections: Option<u64>,
        /// How long to run: seconds (2.5) or a number with a unit (500ms, 5s, 1m)
        #[arg(long, short = 'd', default_value = "5s", value_parser = duration::parse, allow_hyphen_values = true)]
        duration: std::time::Duration,
        /// Print one JSON object (calls_per_s, p50_us, p90_us, p99_us, max_us in microseconds, errors)
        #[arg(long)]
        json: bool,
        /// Run streams of a streaming handler (one per connection, `--concurrency` at once):
        /// chunks/s, time to first chunk, and gaps between chunks p50/p99
        #[arg(long, conflicts_with = "connections")]
        stream: bool,
        /// Call socket [default: the one the daemon reports]
        #[arg(long, env = "PITD_CALL_SOCKET", hide_env_values = true, value_name = "PATH")]
        call_socket: Option<PathBuf>,
    },
    /// Graceful recycle of worker-N, or of every worker of a pool one at a time (replacement first)
    Recycle {
        /// worker-N or a pool name
        target: String,
        /// Kill at once instead of draining, then replace
        #[arg(long)]
        now: bool,
    },
    /// Take worker-N or a pool out of rotation: in-flight calls finish, then the workers exit and are not replaced
    Drain {
        /// worker-N or a pool name
        target: String,
        /// Return only when the drain is complete
        #[arg(long)]
        wait: bool,
    },
    /// Undo a drain: the pool starts its workers again
    Resume { pool: String },
    /// Change a pool's size at run time
    Scale { pool: String, size: u32 },
    /// Re-read the spec (same as SIGHUP): changed pools are recycled worker by worker, removed pools drained, new pools started; an invalid spec is refused and the running one kept
    Reload,
    /// Lifecycle events: worker started (and what it replaces)/ready/exited (and the restart backoff)/recycled (with reason), pool failing/recovered, template_warning
    Events {
        /// Keep printing new events as they happen
        #[arg(short = 'f', long)]
        follow: bool,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Prometheus metrics (the Prometheus text format; --openmetrics for OpenMetrics)
    Metrics {
        /// Print the OpenMetrics exposition instead
        #[arg(long)]
        openmetrics: bool,
    },
    /// Live full-screen view of pools and workers; keys: arrows/j/k select, r recycle, d drain, u resume, s sort, ? help, q quit
    Top {
        /// Time between refreshes, at least 100ms: seconds (0.5) or a number with a unit (500ms, 2s)
        #[arg(long, default_value = "1s", value_parser = top::parse_interval, allow_hyphen_values = true)]
        interval: std::time::Duration,
    },
    /// Graceful stop of the daemon, as on SIGTERM: not ready at once, calls still taken for
    /// shutdown_delay, then new calls get shutting_down while running and queued ones finish
    /// (within shutdown_timeout); then each worker gets SIGTERM and SIGKILL only after
    /// kill_timeout; pit workers then exit at once (atexit hooks run, no interpreter teardown).
    /// With --wait, return only once pitd has exited (exit 3 if no daemon)
    Shutdown {
        /// Return only once pitd has exited (its workers stopped)
        #[arg(long)]
        wait: bool,
        /// With --wait: give up (exit 1) if pitd still runs after this: seconds (90) or a number with a unit (90s, 5m)
        #[arg(long, default_value = "5m", value_parser = duration::parse, allow_hyphen_values = true, requires = "wait")]
        timeout: std::time::Duration,
    },
    /// Ask pitd itself (never a worker): startup (every pool reached its size once), ready
    /// (not shutting down; every pool serving calls has a ready worker and is not failing,
    /// draining or drained), live (pitd and every pool actor answer within --timeout).
    /// Exit 0 yes, 1 no (with a one-line reason), 3 no daemon
    Probe {
        #[arg(value_enum)]
        kind: crate::proto::control::ProbeKind,
        /// How long pitd (and, for live, each pool actor) may take to answer: seconds (0.5) or a number with a unit (500ms, 1s)
        #[arg(long, default_value = "1s", value_parser = duration::parse, allow_hyphen_values = true)]
        timeout: std::time::Duration,
    },
    /// Print a shell completion script, e.g. `pitctl completions bash > /etc/bash_completion.d/pitctl`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Why pitctl failed, and so its exit code.
#[derive(Debug)]
pub enum Failure {
    /// 1: pitd refused, or the call failed.
    Refused(String),
    /// 2: arguments that do not go together (clap reports the rest itself).
    Usage(String),
    /// 3: no daemon at the socket.
    Unreachable(String),
    /// Our stdout was closed (`pitctl status | head`): not an error worth a word.
    BrokenPipe,
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Refused(_) => ExitCode::from(1),
            Failure::Usage(_) => ExitCode::from(2),
            Failure::Unreachable(_) => ExitCode::from(3),
            Failure::BrokenPipe => ExitCode::SUCCESS,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Usage(m) | Failure::Unreachable(m) => m,
            Failure::BrokenPipe => "",
        }
    }

    pub fn is_quiet(&self) -> bool {
        matches!(self, Failure::BrokenPipe)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match e {
            ClientError::Unreachable { .. } => Failure::Unreachable(e.to_string()),
            _ => Failure::Refused(e.to_string()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Failure::BrokenPipe;
        }
        Failure::Refused(e.to_string())
    }
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    let socket = cli.socket.unwrap_or_else(crate::client::default_control_socket);
    let control = || ControlClient::connect(&socket);
    match cli.command {
        Command::Status { pool, json } => status::run(&mut control()?, pool, json),
        Command::Logs {
            target,
            lines,
            follow,
            json,
        } => logs::run(&mut control()?, target, lines, follow, json),
        Command::Call {
            pool,
            method,
            args,
            session,
            timeout,
            idempotent,
            json,
            stream,
            call_socket,
        } => {
            let path = call::call_socket(call_socket, &socket)?;
            let opts = crate::call_client::CallOptions {
                session,
                timeout,
                idempotent,
                stream,
            };
            call::run(&path, &pool, &method, args.as_deref().unwrap_or("null"), opts, json)
        }
        Command::Bench {
            pool,
            method,
            args,
            concurrency,
            connections,
            duration,
            json,
            stream,
            call_socket,
        } => {
            let path = call::call_socket(call_socket, &socket)?;
            let a = bench::BenchArgs {
                stream,
                socket: &path,
                pool: &pool,
                method: &method,
                args: &args,
                concurrency,
                connections: connections.map(|n| n as usize),
                duration,
            };
            bench::run(a, json)
        }
        Command::Recycle { target, now } => done(control()?.request(&Request::Recycle { target, now })?),
        Command::Drain { target, wait } => {
            let mut client = control()?;
            if wait {
                // A drain lasts as long as the calls in flight (up to drain_timeout).
                client.set_timeout(None);
            }
            done(client.request(&Request::Drain { target, wait })?)
        }
        Command::Resume { pool } => done(control()?.request(&Request::Resume { pool })?),
        Command::Scale { pool, size } => done(control()?.request(&Request::Scale { pool, size })?),
        Command::Events { follow, json } => events::run(&mut control()?, follow, json),
        Command::Reload => done(control()?.request(&Request::Reload)?),
        Command::Metrics { openmetrics } => match control()?.request(&Request::Metrics)? {
            Reply::Metrics { text } => {
                use std::io::Write;
                let text = if openmetrics {
                    text
                } else {
                    crate::proto::exposition::to_prometheus_text(&text)
                };
                std::io::stdout().lock().write_all(text.as_bytes())?;
                Ok(())
            }
            other => Err(unexpected(&other)),
        },
        Command::Top { interval } => top::run(&socket, interval),
        Command::Shutdown { wait, timeout } => shutdown::run(&socket, wait, timeout),
        Command::Probe { kind, timeout } => {
            let mut client = control()?;
            client.set_timeout(Some(timeout));
            let timeout_ms = timeout.as_millis() as u64;
            match client.request(&Request::Probe { kind, timeout_ms }) {
                Ok(Reply::Probe { ok: true, .. }) => Ok(()),
                Ok(Reply::Probe { ok: false, reason }) => Err(Failure::Refused(reason.unwrap_or_default())),
                Ok(other) => Err(unexpected(&other)),
                Err(ClientError::Unreachable { .. }) => Err(Failure::Unreachable(format!(
                    "no pitd reachable at {}",
                    socket.display()
                ))),
                Err(e) => Err(Failure::Refused(format!("pitd did not answer the probe: {e}"))),
            }
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "pitctl", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Prints the message of a command's `Done` reply.
fn done(reply: Reply) -> Result<(), Failure> {
    match reply {
        Reply::Done { message } => {
            println!("{message}");
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

fn unexpected(reply: &Reply) -> Failure {
    Failure::Refused(format!("unexpected reply from pitd: {reply:?}"))
}
