//! pitd: args -> spec -> guard -> daemon. Errors end here as an exit code.

use std::process::ExitCode;

use clap::Parser;
use pit::args::PitdArgs;
use pit::daemon::{self, process::guard};
use pit::spec::{self, LogFormat};

fn main() -> ExitCode {
    let args = PitdArgs::parse();
    let spec = match spec::load(&args.config) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("pitd: {e}");
            return ExitCode::from(1);
        }
    };
    if args.check {
        if let Err(problem) = spec::lookup::check_modules(&spec) {
            eprintln!("pitd: {}: {problem}", args.config.display());
            return ExitCode::from(1);
        }
        if let Some(http) = &spec.http
            && let Err(problem) = daemon::door::check(http)
        {
            eprintln!("pitd: {}: [http] {problem}", args.config.display());
            return ExitCode::from(1);
        }
        println!("{}: ok", args.config.display());
        for line in spec.summary_lines() {
            println!("{line}");
        }
        return ExitCode::SUCCESS;
    }
    // First, while pitd is still single-threaded: forking later would copy a process whose
    // other threads may hold locks.
    let guard = match guard::start() {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("pitd: cannot start the guard process ({e}); workers' children would survive a SIGKILL of pitd");
            None
        }
    };
    init_logging(spec.daemon.log_format);
    match daemon::run(spec, guard) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr. Under systemd (JOURNAL_STREAM set) the journal adds timestamps, so
/// `auto` leaves them out; `json` gives one object per line for log shippers.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PITD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Auto if journal => builder.without_time().with_ansi(false).init(),
        LogFormat::Auto | LogFormat::Text => {
            use std::io::IsTerminal;
            builder.with_ansi(std::io::stderr().is_terminal()).init()
        }
    }
}
