//! pitctl: the operator's client. One file per command group; errors map to exit codes in
//! one place (`Failure::exit_code`): 0 success, 1 refused or failed, 2 usage, 3 no daemon.

mod logs;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::{ClientError, ControlClient};
use crate::proto::control::{Reply, Request};

/// pitctl: see and steer a running pitd.
#[derive(Debug, Parser)]
#[command(name = "pitctl", version, about, long_about = None)]
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
    /// Pools and workers: id, pid, state, health, RSS, CPU %, calls, errors, age, last recycle reason
    Status {
        /// Only this pool
        pool: Option<String>,
        /// Print the status as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Captured stdout/stderr of a worker (worker-N) or of every worker of a pool
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
    /// Graceful stop of the daemon
    Shutdown,
}

/// Why pitctl failed, and so its exit code.
#[derive(Debug)]
pub enum Failure {
    /// 1: pitd refused, or the call failed.
    Refused(String),
    /// 3: no daemon at the socket.
    Unreachable(String),
    /// Our stdout was closed (`pitctl status | head`): not an error worth a word.
    BrokenPipe,
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Refused(_) => ExitCode::from(1),
            Failure::Unreachable(_) => ExitCode::from(3),
            Failure::BrokenPipe => ExitCode::SUCCESS,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Unreachable(m) => m,
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
    let mut client = ControlClient::connect(&socket)?;
    match cli.command {
        Command::Status { pool, json } => status::run(&mut client, pool, json),
        Command::Logs {
            target,
            lines,
            follow,
            json,
        } => logs::run(&mut client, target, lines, follow, json),
        Command::Shutdown => match client.request(&Request::Shutdown)? {
            Reply::Done { message } => {
                println!("{message}");
                Ok(())
            }
            other => Err(unexpected(&other)),
        },
    }
}

fn unexpected(reply: &Reply) -> Failure {
    Failure::Refused(format!("unexpected reply from pitd: {reply:?}"))
}
