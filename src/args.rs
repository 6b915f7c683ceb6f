//! pitd's command line, in the library so the man page generator sees the same definition.

use std::path::PathBuf;

use clap::Parser;

/// pitd: keeps pools of Python worker processes alive, healthy and small.
///
/// Runs in the foreground and logs to stderr. SIGTERM or SIGINT stop it gracefully.
#[derive(Debug, Parser)]
#[command(name = "pitd", version, about, long_about = None)]
pub struct PitdArgs {
    /// The pool spec (TOML)
    #[arg(
        long,
        env = "PITD_CONFIG",
        hide_env_values = true,
        default_value = "/etc/pitd/pitd.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,

    /// Validate the spec, and that each app pool's interpreter runs and finds pit, its app, preload and warmup modules (from the pool's cwd, with its env; found, not imported); print one summary line per pool, and exit (0 valid, 1 invalid)
    #[arg(long)]
    pub check: bool,
}
