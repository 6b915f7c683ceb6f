//! Raw spec -> validated `Spec`: applies the defaults of `defaults.rs` and the rules that
//! types alone cannot express (ranges, exclusive keys, names that must resolve, paths that
//! must exist). The per-pool policies live in `policy.rs`. Every failure is a `Problem`
//! at the span of the value (or key) at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Group, User};
use toml::Spanned;

use super::defaults as def;
use super::error::{Problem, Result};
use super::host::Host;
use super::locate::is_bare_key;
use super::policy;
use super::raw::{Opt, RawDaemon, RawPool, RawSpec};
use super::rules::{self, choice, value_or};
use super::types::{DaemonSpec, GroupRef, LogFormat, PoolSpec, Program, Protocol, UserRef, Warmup};

/// What relative paths and privilege rules are judged against.
pub struct Ctx<'a> {
    /// The directory of the spec file: relative paths start here.
    pub dir: &'a Path,
    pub host: &'a Host,
}

pub fn spec(raw: RawSpec, ctx: &Ctx) -> Result<(DaemonSpec, Vec<PoolSpec>)> {
    let daemon = daemon(&raw.daemon.unwrap_or_default(), ctx)?;
    let mut pools: Vec<_> = raw.pools.unwrap_or_default().into_iter().collect();
    // The map arrives sorted by name; the spec keeps pools in file order.
    pools.sort_by_key(|(name, _)| name.span().start);
    let pools = pools
        .iter()
        .map(|(name, raw)| pool(name, raw, ctx))
        .collect::<Result<_>>()?;
    Ok((daemon, pools))
}

fn daemon(raw: &RawDaemon, ctx: &Ctx) -> Result<DaemonSpec> {
    let dir = &ctx.host.socket_dir;
    Ok(DaemonSpec {
        control_socket: path_or(&raw.control_socket, ctx.dir, || def::control_socket(dir)),
        call_socket: path_or(&raw.call_socket, ctx.dir, || def::call_socket(dir)),
        control_mode: value_or(&raw.control_mode, def::CONTROL_MODE, |m| m.0),
        call_mode: value_or(&raw.call_mode, def::CALL_MODE, |m| m.0),
        socket_group: raw.socket_group.as_ref().map(group).transpose()?,
        monitor_interval: rules::positive(&raw.monitor_interval, def::MONITOR_INTERVAL)?,
        shutdown_timeout: value_or(&raw.shutdown_timeout, def::SHUTDOWN_TIMEOUT, |d| d.0),
        shutdown_delay: value_or(&raw.shutdown_delay, Duration::ZERO, |d| d.0),
        metrics_listen: raw.metrics_listen.as_ref().map(socket_addr).transpose()?,
        memory_budget: raw.memory_budget.as_ref().map(|s| s.get_ref().0),
        log_format: choice(
            &raw.log_format,
            &[
                ("auto", LogFormat::Auto),
                ("text", LogFormat::Text),
                ("json", LogFormat::Json),
            ],
            def::LOG_FORMAT,
        )?,
    })
}

fn pool(name: &Spanned<String>, raw: &RawPool, ctx: &Ctx) -> Result<PoolSpec> {
    // Pool names are exactly TOML's bare keys: they appear unquoted in the spec, in
    // `pitctl` arguments and in key paths of error messages.
    if !is_bare_key(name.get_ref()) {
        let msg = format!(
            "expected a pool name of letters, digits, `_` and `-`, found {:?}",
            name.get_ref()
        );
        return Err(Problem::key(name.span(), msg));
    }
    let program = program(name, raw)?;
    let protocol = choice(
        &raw.protocol,
        &[("pit", Protocol::Pit), ("none", Protocol::None)],
        def::PROTOCOL,
    )?;
    if let (Some(preload), Protocol::None) = (&raw.preload, protocol) {
        let msg = "only allowed with protocol = \"pit\" (preloading happens in the pit runtime's template process)";
        return Err(Problem::key(preload.span(), msg));
    }
    if let (Some(preload), Program::Command(_)) = (&raw.preload, &program) {
        let msg =
            "only allowed with `app` (the pit runtime forks workers from its template; a `command` is exec'd as is)";
        return Err(Problem::key(preload.span(), msg));
    }
    if let Some(preload) = &raw.preload
        && let Some(bad) = preload.get_ref().iter().find(|m| !is_module_name(m))
    {
        let msg = format!("expected a list of Python module names like \"numpy\", found {bad:?}");
        return Err(Problem::value(preload.span(), msg));
    }
    let warmup = raw.warmup.as_ref().map(|w| warmup(w, &raw.preload)).transpose()?;
    let concurrency = rules::count(&raw.concurrency, 1, def::CONCURRENCY)?;
    if let (Some(given), Protocol::None) = (&raw.concurrency, protocol)
        && concurrency > 1
    {
        let msg =
            format!("expected 1 with protocol = \"none\" (calls in flight need the pit protocol), found {concurrency}");
        return Err(Problem::value(given.span(), msg));
    }
    let user = raw.user.as_ref().map(|u| user(u, ctx.host)).transpose()?;
    let group = match &raw.group {
        Some(g) => Some(root_only(g, ctx.host).and_then(|()| group(g))?),
        None => None,
    };
    Ok(PoolSpec {
        name: name.get_ref().clone(),
        program,
        protocol,
        preload: value_or(&raw.preload, Vec::new(), Clone::clone),
        warmup,
        size: rules::count(&raw.size, 1, def::SIZE)?,
        concurrency,
        require_free_threading: raw.require_free_threading.as_ref().is_some_and(|r| *r.get_ref()),
        cwd: cwd(&raw.cwd, ctx.dir)?,
        env: value_or(&raw.env, BTreeMap::new(), Clone::clone),
        user,
        group,
        startup_timeout: rules::positive(&raw.startup_timeout, def::STARTUP_TIMEOUT)?,
        request_timeout: rules::positive(&raw.request_timeout, def::REQUEST_TIMEOUT)?,
        drain_timeout: value_or(&raw.drain_timeout, def::DRAIN_TIMEOUT, |d| d.0),
        kill_timeout: value_or(&raw.kill_timeout, def::KILL_TIMEOUT, |d| d.0),
        stream_window: rules::count(&raw.stream_window, 1, def::STREAM_WINDOW)?,
        stream_idle_timeout: rules::optional_positive(&raw.stream_idle_timeout)?,
        recycle: policy::recycle(raw)?,
        health: policy::health(raw)?,
        queue: policy::queue(raw)?,
        restart: policy::restart(raw.restart.as_ref())?,
        rlimits: policy::rlimits(raw.rlimits.as_ref(), &ctx.host.hard_limits)?,
    })
}

/// `warmup = "module:function"`, which needs a template to run in: a non-empty `preload`.
fn warmup(raw: &Spanned<String>, preload: &Opt<Vec<String>>) -> Result<Warmup> {
    if preload.as_ref().is_none_or(|p| p.get_ref().is_empty()) {
        let msg = "only allowed with `preload` (the warm-up runs once in the template process a preloaded pool \
                   forks its workers from)";
        return Err(Problem::key(raw.span(), msg));
    }
    match raw.get_ref().split_once(':') {
        Some((module, function)) if is_module_name(module) && is_module_name(function) => Ok(Warmup {
            module: module.to_string(),
            function: function.to_string(),
        }),
        _ => {
            let msg = format!(
                "expected \"module:function\" like \"myapp.model:warm_up\", found {:?}",
                raw.get_ref()
            );
            Err(Problem::value(raw.span(), msg))
        }
    }
}

/// A dotted Python module name: `numpy`, `myapp.handlers`; also an attribute path in a
/// module (`Model.warm_up`), which has the same shape.
fn is_module_name(module: &str) -> bool {
    module.split('.').all(|part| {
        part.chars().next().is_some_and(|c| !c.is_ascii_digit())
            && part.chars().all(|c| c.is_alphanumeric() || c == '_')
    })
}

fn program(name: &Spanned<String>, raw: &RawPool) -> Result<Program> {
    let one_of = "expected exactly one of `app` and `command`";
    match (&raw.app, &raw.command) {
        (Some(app), Some(command)) => {
            let later = std::cmp::max_by_key(app.span(), command.span(), |s| s.start);
            Err(Problem::key(later, format!("{one_of}, found both")))
        }
        (None, None) => Err(Problem::key(name.span(), format!("{one_of}, found neither"))),
        (Some(app), None) => {
            let module = app.get_ref();
            if !is_module_name(module) {
                let msg = format!("expected a Python module name like \"myapp.handlers\", found {module:?}");
                return Err(Problem::value(app.span(), msg));
            }
            Ok(Program::App {
                module: module.clone(),
                python: value_or(&raw.python, def::PYTHON.to_string(), Clone::clone),
            })
        }
        (None, Some(command)) => {
            if let Some(python) = &raw.python {
                let msg = "only allowed with `app`; a `command` names its own program";
                return Err(Problem::key(python.span(), msg));
            }
            match command.get_ref().first() {
                None => Err(Problem::value(
                    command.span(),
                    "expected a non-empty array of strings, found []",
                )),
                Some(program) if program.is_empty() => Err(Problem::value(
                    command.span(),
                    "expected the program to run as the first element, found \"\"",
                )),
                Some(_) => Ok(Program::Command(command.get_ref().clone())),
            }
        }
    }
}

/// The working directory: the spec's directory unless given, and then relative to it.
fn cwd(raw: &Opt<String>, dir: &Path) -> Result<PathBuf> {
    let Some(given) = raw else {
        return Ok(dir.to_path_buf());
    };
    let path = dir.join(given.get_ref());
    if path.is_dir() {
        return Ok(path);
    }
    let what = if path.exists() {
        "not a directory"
    } else {
        "no such directory"
    };
    let msg = format!(
        "expected an existing directory, found {:?} ({what}: {})",
        given.get_ref(),
        path.display()
    );
    Err(Problem::value(given.span(), msg))
}

fn user(raw: &Spanned<String>, host: &Host) -> Result<UserRef> {
    root_only(raw, host)?;
    let u = resolved(raw, "user", User::from_name(raw.get_ref()))?;
    Ok(UserRef {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    })
}

fn group(raw: &Spanned<String>) -> Result<GroupRef> {
    let g = resolved(raw, "group", Group::from_name(raw.get_ref()))?;
    Ok(GroupRef {
        name: g.name,
        gid: g.gid.as_raw(),
    })
}

/// The result of a user or group database lookup of `raw`; `what` names the database.
fn resolved<T>(raw: &Spanned<String>, what: &str, lookup: nix::Result<Option<T>>) -> Result<T> {
    let name = raw.get_ref();
    match lookup {
        Ok(Some(entry)) => Ok(entry),
        Ok(None) => Err(Problem::value(
            raw.span(),
            format!("expected an existing {what}, found {name:?}"),
        )),
        Err(e) => Err(Problem::value(
            raw.span(),
            format!("cannot look up {what} {name:?}: {e}"),
        )),
    }
}

/// Switching a worker's user or group needs root; say so rather than fail at spawn time.
fn root_only(raw: &Spanned<String>, host: &Host) -> Result<()> {
    if host.euid == 0 {
        return Ok(());
    }
    let msg = format!("only allowed when pitd runs as root (it runs as uid {})", host.euid);
    Err(Problem::key(raw.span(), msg))
}

fn socket_addr(raw: &Spanned<String>) -> Result<SocketAddr> {
    raw.get_ref().parse().map_err(|_| {
        let msg = format!(
            "expected a socket address like \"127.0.0.1:9464\", found {:?}",
            raw.get_ref()
        );
        Problem::value(raw.span(), msg)
    })
}

/// A path from the spec, relative to the spec's directory, or the default.
fn path_or(raw: &Opt<String>, dir: &Path, default: impl FnOnce() -> PathBuf) -> PathBuf {
    raw.as_ref().map_or_else(default, |p| dir.join(p.get_ref()))
}
