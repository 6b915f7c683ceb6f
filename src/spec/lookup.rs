//! `pitd --check`'s look at what a spec names outside itself: each `app` pool's interpreter
//! must exist, and the modules it is to run (`pit`, `app`, each of `preload`, the module of
//! `warmup`) must be findable by it from the pool's `cwd` with the pool's `env` (so
//! `PYTHONPATH` applies). Finding is not importing: nothing of the user's code runs. A dotted
//! name is followed down its parent chain by each package's search path, so a package's
//! `__init__` is not run either.
//!
//! This is I/O (it runs the interpreter), kept out of loading so a reload never waits on it;
//! the decision of what to report is [`missing_report`].

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{PoolSpec, Program, Spec};

/// Prints, one per line, each argument that cannot be found as a module.
const FIND_SCRIPT: &str = r#"
import importlib.machinery, importlib.util, sys
def found(name):
    parts = name.split(".")
    spec = importlib.util.find_spec(parts[0])
    for i in range(1, len(parts)):
        if spec is None or spec.submodule_search_locations is None:
            return False
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), spec.submodule_search_locations)
    return spec is not None
for name in sys.argv[1:]:
    try:
        ok = found(name)
    except (ImportError, ValueError):
        ok = False
    if not ok:
        print(name)
"#;

/// How long an interpreter may take to look for a pool's modules. Finding imports nothing,
/// so this is start-up time alone; a check must never hang a deploy on a wedged interpreter
/// (an NFS path in `sys.path`, a `sitecustomize` that blocks).
const FIND_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks every `app` pool; the first problem, naming the pool and the key, as an error.
pub fn check_modules(spec: &Spec) -> Result<(), String> {
    spec.pools.iter().try_for_each(check_pool)
}

fn check_pool(pool: &PoolSpec) -> Result<(), String> {
    let Program::App { module, python } = &pool.program else {
        return Ok(());
    };
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(FIND_SCRIPT)
        .arg("pit")
        .arg(module)
        .args(&pool.preload)
        .args(pool.warmup.as_ref().map(|w| &w.module))
        .current_dir(&pool.cwd)
        .envs(&pool.env)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(user) = pool.user.as_ref().filter(|_| nix::unistd::geteuid().is_root()) {
        cmd.uid(user.uid).gid(pool.group.as_ref().map_or(user.gid, |g| g.gid));
    }
    let key = |k: &str| format!("pools.{}.{k}", pool.name);
    let child = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
            format!("{}: interpreter `{python}` cannot be run: {e}", key("python"))
        }
        _ => format!("{}: running `{python}` to find the pool's modules: {e}", key("python")),
    })?;
    let out = output_within(child, FIND_TIMEOUT)
        .map_err(|e| format!("{}: running `{python}` to find the pool's modules: {e}", key("python")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        return Err(format!(
            "{}: `{python}` failed to look for the pool's modules ({}): {last}",
            key("python"),
            out.status
        ));
    }
    let missing: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    match missing_report(pool, python, &missing) {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// The child's output, or an error once `timeout` has passed (the child is killed and reaped).
fn output_within(mut child: Child, timeout: Duration) -> io::Result<Output> {
    // Readers drain the pipes meanwhile, so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {}", humantime::format_duration(timeout)),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// What to say about the modules `python` could not find, by the key that names each:
/// `preload` for a preloaded one, `warmup` for the warm-up's, `app` for the app module and
/// for the `pit` runtime.
pub fn missing_report(pool: &PoolSpec, python: &str, missing: &[String]) -> Option<String> {
    let first = missing.first()?;
    let Program::App { module, .. } = &pool.program else {
        return None;
    };
    let where_ = format!("by `{python}` from {} (with the pool's env)", pool.cwd.display());
    let text = if first == "pit" {
        format!(
            "pools.{}.app: the worker runtime `pit` is not found {where_}: install it (pip install ./python) or set PYTHONPATH in env",
            pool.name
        )
    } else if first == module {
        format!("pools.{}.app: module `{first}` is not found {where_}", pool.name)
    } else if pool.warmup.as_ref().is_some_and(|w| &w.module == first) && !pool.preload.contains(first) {
        format!("pools.{}.warmup: module `{first}` is not found {where_}", pool.name)
    } else {
        format!("pools.{}.preload: module `{first}` is not found {where_}", pool.name)
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolSpec {
        let text = "[pools.m]\napp = \"myapp.handlers\"\npreload = [\"numpy\", \"myapp.model\"]\n\
                    warmup = \"myapp.warm:run\"\n";
        let spec = super::super::parse(text, std::path::Path::new("/srv/t.toml")).unwrap();
        spec.pools.into_iter().next().unwrap()
    }

    #[test]
    fn a_child_that_does_not_finish_in_time_is_killed_and_reported() {
        let child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = output_within(child, Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let child = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = output_within(child, Duration::from_secs(20)).unwrap();
        assert_eq!(
            (out.status.code(), &out.stdout[..], &out.stderr[..]),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );
    }

    #[test]
    fn each_missing_module_is_blamed_on_the_key_that_names_it() {
        let cases: [(&[&str], Option<&str>); 6] = [
            (&[], None),
            (
                &["pit", "myapp.handlers"],
                Some("pools.m.app: the worker runtime `pit` is not found"),
            ),
            (
                &["myapp.handlers"],
                Some("pools.m.app: module `myapp.handlers` is not found"),
            ),
            (
                &["myapp.model"],
                Some("pools.m.preload: module `myapp.model` is not found"),
            ),
            (
                &["numpy", "myapp.model"],
                Some("pools.m.preload: module `numpy` is not found"),
            ),
            (
                &["myapp.warm"],
                Some("pools.m.warmup: module `myapp.warm` is not found"),
            ),
        ];
        for (missing, want) in cases {
            let missing: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
            let got = missing_report(&pool(), "python3", &missing);
            match want {
                None => assert_eq!(got, None),
                Some(start) => {
                    let got = got.expect("a problem");
                    assert!(
                        got.starts_with(start) && got.contains("by `python3` from /srv"),
                        "{got}"
                    );
                }
            }
        }
    }
}
