//! The pool spec: reads a TOML config file and turns it into a validated [`Spec`], or a
//! [`SpecError`] that names file:line:column, the key, what was expected and what was found.
//! It holds no daemon code: besides reading the file it only consults the filesystem (`cwd`),
//! the user and group database and pitd's own rlimits. `pitd` calls [`load`] at startup, on
//! reload and for `--check`, and codes against the types in [`types`] only.
//!
//! The pipeline: `raw` (serde mirror of the TOML, values parsed by `units`) -> `validate` and
//! `policy` (defaults from [`defaults`], the rules of `rules`).
//! Errors carry byte spans until `locate` turns them into positions and key paths.

pub mod defaults;
mod error;
mod host;
mod http;
mod locate;
pub mod lookup;
mod policy;
mod raw;
mod rules;
pub mod types;
mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::SpecError;
pub use types::*;

use error::Problem;
use host::Host;
use locate::Locator;
use units::{show_duration, show_size};

/// Reads and validates the spec at `path`. Relative paths in it are relative to the file's
/// directory; errors name the file as `path` was given.
pub fn load(path: &Path) -> Result<Spec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validates spec `text` as if read from `path` (which need not exist; it names the file in
/// errors and anchors relative paths).
pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecError> {
    parse_with(text, path, &Host::current())
}

/// [`parse`] with the host facts given, so tests do not depend on who runs them.
pub(crate) fn parse_with(text: &str, path: &Path, host: &Host) -> Result<Spec, SpecError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
    let locator = Locator::new(text);
    let fail = |problem: Problem| problem.into_error(&locator, path.to_path_buf());

    let raw: raw::RawSpec = toml::from_str(text).map_err(|e| fail(Problem::from_toml(&e, text)))?;
    let ctx = validate::Ctx { dir: &dir, host };
    let http = raw
        .http
        .as_ref()
        .map(|h| http::door(h, &dir))
        .transpose()
        .map_err(fail)?;
    let (daemon, pools) = validate::spec(raw, &ctx).map_err(fail)?;
    Ok(Spec {
        path: absolute,
        daemon,
        pools,
        http,
    })
}

/// Where sockets go by default: `/run/pitd` when running as root, else
/// `$XDG_RUNTIME_DIR/pitd`, else `/tmp/pitd-$UID`. `pitctl` uses it to find the daemon.
pub fn default_socket_dir() -> PathBuf {
    host::socket_dir_now(nix::unistd::geteuid().as_raw(), nix::unistd::getuid().as_raw())
}

impl Spec {
    /// One readable line per pool, for `pitd --check`; `no pools` when there are none.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = match self.pools.is_empty() {
            true => vec!["no pools".to_string()],
            false => self.pools.iter().map(PoolSpec::summary).collect(),
        };
        if let Some(http) = &self.http {
            let scheme = if http.tls.is_some() { "https" } else { "http" };
            let mut line = format!("http: {scheme}://{}", http.listen);
            if http.client_ca.is_some() {
                line.push_str(", client certificates required");
            }
            line.push_str(match http.tokens.is_some() {
                true => ", bearer tokens",
                false => ", no tokens",
            });
            lines.push(line);
        }
        lines
    }
}

impl PoolSpec {
    /// The argv a worker is started with.
    pub fn argv(&self) -> Vec<String> {
        match &self.program {
            Program::App { module, python } => [python.as_str(), "-m", "pit", "serve", module]
                .map(String::from)
                .to_vec(),
            Program::Command(argv) => argv.clone(),
        }
    }

    /// The argv of the pool's preload template, when it has `preload`: workers are then
    /// forked from it instead of started with [`PoolSpec::argv`].
    pub fn template_argv(&self) -> Option<Vec<String>> {
        let Program::App { module, python } = &self.program else {
            return None;
        };
        if self.preload.is_empty() {
            return None;
        }
        let mut argv: Vec<String> = [python.as_str(), "-m", "pit", "template", module]
            .map(String::from)
            .to_vec();
        for m in &self.preload {
            argv.push("--preload".into());
            argv.push(m.clone());
        }
        if let Some(warmup) = &self.warmup {
            argv.push("--warmup".into());
            argv.push(warmup.to_string());
        }
        Some(argv)
    }

    /// e.g. `pool echo: 4 x python3 -m pit serve pit.examples.echo (protocol pit), max_rss 512.0 MiB`.
    fn summary(&self) -> String {
        let argv: Vec<String> = self.argv().iter().map(|a| quote(a)).collect();
        let protocol = match self.protocol {
            Protocol::Pit => "pit",
            Protocol::None => "none",
        };
        let mut line = format!(
            "pool {}: {} x {} (protocol {protocol})",
            self.name,
            self.size,
            argv.join(" ")
        );
        if self.concurrency > 1 {
            line.push_str(&format!(", {} calls in flight per worker", self.concurrency));
        }
        if !self.preload.is_empty() {
            line.push_str(&format!(
                ", forked from a template preloading {}",
                self.preload.join(" ")
            ));
        }
        if let Some(warmup) = &self.warmup {
            line.push_str(&format!(", warmed up by {warmup}"));
        }
        let r = &self.recycle;
        let triggers = [
            r.max_rss.map(|b| format!("max_rss {}", show_size(b))),
            r.hard_rss.map(|b| format!("hard_rss {}", show_size(b))),
            r.max_requests.map(|n| format!("max_requests {n}")),
            r.max_age.map(|d| format!("max_age {}", show_duration(d))),
            r.max_errors.map(|n| format!("max_errors {n}")),
        ];
        for trigger in triggers.into_iter().flatten() {
            line.push_str(", ");
            line.push_str(&trigger);
        }
        line
    }
}

/// Shell-style quoting, only where needed, so an argv with spaces reads unambiguously.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
