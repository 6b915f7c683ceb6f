//! `pitd --check`'s look at what a spec names outside itself: each `app` pool's interpreter
//! must exist, and the modules it is to run (`pit`, `app`, each of `preload`) must be
//! findable by it from the pool's `cwd` with the pool's `env` (so `PYTHONPATH` applies).
//! Finding is not importing: nothing of the user's code runs. A dotted name is followed down
//! its parent chain by each package's search path, so a package's `__init__` is not run either.
//!
//! This is I/O (it runs the interpreter), kept out of loading so a reload never waits on it;
//! the decision of what to report is [`missing_report`].

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

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
        .current_dir(&pool.cwd)
        .envs(&pool.env)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(user) = pool.user.as_ref().filter(|_| nix::unistd::geteuid().is_root()) {
        cmd.uid(user.uid).gid(pool.group.as_ref().map_or(user.gid, |g| g.gid));
    }
    let key = |k: &str| format!("pools.{}.{k}", pool.name);
    let out = cmd.output().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
            format!("{}: interpreter `{python}` cannot be run: {e}", key("python"))
        }
        _ => format!("{}: running `{python}` to find the pool's modules: {e}", key("python")),
    })?;
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

/// What to say about the modules `python` could not find, by the key that names each:
/// `preload` for a preloaded one, `app` for the app module and for the `pit` runtime.
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
    } else {
        format!("pools.{}.preload: module `{first}` is not found {where_}", pool.name)
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolSpec {
        let text = "[pools.m]\napp = \"myapp.handlers\"\npreload = [\"numpy\", \"myapp.model\"]\n";
        let spec = super::super::parse(text, std::path::Path::new("/srv/t.toml")).unwrap();
        spec.pools.into_iter().next().unwrap()
    }

    #[test]
    fn each_missing_module_is_blamed_on_the_key_that_names_it() {
        let cases: [(&[&str], Option<&str>); 5] = [
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
