//! pitctl: args -> cli::run; exit codes 0 success, 1 refused/failed, 2 usage, 3 no daemon.

use std::process::ExitCode;

use clap::Parser;
use pit::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) if failure.is_quiet() => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("pitctl: {}", failure.message());
            failure.exit_code()
        }
    }
}
