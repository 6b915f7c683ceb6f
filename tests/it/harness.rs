//! `TestDaemon`: the real pitd binary on a spec in its own temp dir, with its own sockets.
//! Every process of the run carries a unique marker in its environment; on drop the daemon
//! is stopped and the test fails if any marked process survives.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pit::client::ControlClient;
use pit::proto::control::{Reply, Request};
use pit::proto::status::{PoolStatus, StatusReport};

/// One generous deadline for every wait: a loaded 2-core machine is slow, never wrong.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub const MARKER_VAR: &str = "PIT_TEST_RUN";

pub fn worker(name: &str) -> String {
    format!("{}/tests/workers/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The interpreter for test workers: `PIT_TEST_PYTHON`, else `python3` resolved once to
/// its real executable (a version-manager shim in front of it can cost 100+ ms per start).
pub fn python() -> String {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Ok(p) = std::env::var("PIT_TEST_PYTHON") {
                return p;
            }
            Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "python3".into())
        })
        .clone()
}

/// Whether `python` is a free-threaded build of CPython (3.13+, `--disable-gil`).
pub fn is_free_threaded(python: &str) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('Py_GIL_DISABLED') or 0)",
        ])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
}

/// Whether `python()`, the interpreter of every test's workers, is a free-threaded build.
pub fn python_is_free_threaded() -> bool {
    static FREE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FREE.get_or_init(|| is_free_threaded(&python()))
}

/// A free-threaded interpreter for the tests that need one: `PIT_TEST_PYTHON_FT`, else
/// `python()` when it is one, else `target/python-ft/bin/python3.13t` when built there
/// (`python3 bench/pythons.py --only ft`); `Err` saying why there is none. A
/// `PIT_TEST_PYTHON_FT` that is not one is a mistake, not a reason to skip: it panics.
pub fn free_threaded_python() -> Result<String, String> {
    if let Ok(p) = std::env::var("PIT_TEST_PYTHON_FT") {
        assert!(
            is_free_threaded(&p),
            "PIT_TEST_PYTHON_FT={p} is not a free-threaded Python"
        );
        return Ok(p);
    }
    if python_is_free_threaded() {
        return Ok(python());
    }
    let built = format!("{}/target/python-ft/bin/python3.13t", env!("CARGO_MANIFEST_DIR"));
    if is_free_threaded(&built) {
        return Ok(built);
    }
    Err(format!(
        "no free-threaded Python: PIT_TEST_PYTHON_FT is unset, {} has the GIL and {built} is not built \
         (python3 bench/pythons.py --only ft builds it)",
        python()
    ))
}

/// Polls `check` until it returns `Some`, or panics after `DEADLINE` naming what was awaited
/// and the last state seen.
pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < DEADLINE {
        match check() {
            Ok(v) => return v,
            Err(state) => last = state,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {DEADLINE:?} waiting for {what}; last seen: {last}");
}

/// Every event pitd has kept, as `pitctl events --json` prints them.
pub fn events(d: &TestDaemon) -> Vec<serde_json::Value> {
    let out = d.pitctl(&["events", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits for the first event that satisfies `pred`.
pub fn wait_event(d: &TestDaemon, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    wait_until(what, || {
        let all = events(d);
        match all.iter().find(|e| pred(e)) {
            Some(e) => Ok(e.clone()),
            // The last events, to tell what happened instead.
            None => Err(all.iter().rev().take(8).rev().map(|e| format!("\n  {e}")).collect()),
        }
    })
}

pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub control: PathBuf,
    pub marker: String,
    child: Option<Child>,
}

impl TestDaemon {
    /// Writes `body` (pool tables, and any extra `[daemon]` keys after the socket line)
    /// as the spec and starts pitd on it; returns once the control socket answers.
    pub fn start(body: &str) -> TestDaemon {
        let d = TestDaemon::configure(body);
        d.launch()
    }

    /// Like `start` but does not launch pitd yet.
    pub fn configure(body: &str) -> TestDaemon {
        let dir = tempfile::Builder::new().prefix("pit-it-").tempdir().expect("temp dir");
        let control = dir.path().join("control.sock");
        let config = dir.path().join("pitd.toml");
        // Both sockets in the temp dir: tests run in parallel and must not meet.
        let spec = format!(
            "[daemon]\ncontrol_socket = \"{}\"\ncall_socket = \"{}\"\n{body}",
            control.display(),
            dir.path().join("call.sock").display()
        );
        std::fs::write(&config, spec).expect("write spec");
        let marker = format!("{}-{}", std::process::id(), fastrand::u64(..));
        TestDaemon {
            dir,
            config,
            control,
            marker,
            child: None,
        }
    }

    pub fn call_socket(&self) -> PathBuf {
        self.dir.path().join("call.sock")
    }

    pub fn launch(mut self) -> TestDaemon {
        self.spawn_pitd();
        self.wait_for_socket();
        self
    }

    pub fn spawn_pitd(&mut self) {
        self.spawn_pitd_with_env(&[]);
    }

    /// Starts pitd with extra environment variables (e.g. systemd's, to check scrubbing).
    pub fn spawn_pitd_with_env(&mut self, env: &[(&str, &str)]) {
        self.spawn_pitd_under(&[], env);
    }

    /// Starts pitd as the last argument of `wrapper` (e.g. `unshare --pid --fork`); the
    /// child process is then the wrapper.
    pub fn spawn_pitd_under(&mut self, wrapper: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_pitd"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_pitd")),
        };
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .env(MARKER_VAR, &self.marker)
            .env("PITD_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pitd");
        self.child = Some(child);
    }

    pub fn wait_for_socket(&mut self) {
        wait_until("pitd's control socket to answer", || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("pitd exited early with {status}; log:\n{}", self.log());
            }
            self.try_status().map(|_| ())
        });
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("pitd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("pitd running").id()
    }

    pub fn try_status(&self) -> Result<StatusReport, String> {
        let mut c = ControlClient::connect(&self.control).map_err(|e| e.to_string())?;
        match c.request(&Request::Status { pool: None }).map_err(|e| e.to_string())? {
            Reply::Status(s) => Ok(s),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    pub fn status(&self) -> StatusReport {
        self.try_status()
            .unwrap_or_else(|e| panic!("status failed: {e}; log:\n{}", self.log()))
    }

    pub fn pool(&self, name: &str) -> PoolStatus {
        self.status()
            .pools
            .into_iter()
            .find(|p| p.name == name)
            .expect("pool in status")
    }

    /// Waits until `pool` satisfies `cond`, failing with the last status seen.
    pub fn wait_pool(&self, what: &str, name: &str, cond: impl Fn(&PoolStatus) -> bool) -> PoolStatus {
        wait_until(what, || {
            let p = self
                .try_status()?
                .pools
                .into_iter()
                .find(|p| p.name == name)
                .ok_or("no such pool")?;
            if cond(&p) {
                Ok(p)
            } else {
                Err(serde_json::to_string(&p).unwrap())
            }
        })
    }

    pub fn pitctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pitctl"))
            .arg("--socket")
            .arg(&self.control)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pitctl")
    }

    /// Sends `signal` to pitd and waits for it to exit; returns its exit status.
    /// Waits for the launched process (pitd or its wrapper) to exit on its own.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("pitd running");
        wait_until("pitd to exit", || {
            child
                .try_wait()
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "running".into())
        })
    }

    pub fn signal_and_wait(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("pitd running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::try_from(signal).unwrap(),
        );
        wait_until("pitd to exit", || {
            child
                .try_wait()
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "running".into())
        })
    }

    /// Whether the launched process has exited (and reaps it if so); pitd stays a zombie
    /// until asked, so other processes see it as exited before this does.
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Pids of live processes of this run (pitd, the guard, workers, workers' children).
    pub fn survivors(&self) -> Vec<u32> {
        marked_processes(&self.marker)
    }

    pub fn wait_no_survivors(&self) {
        wait_until("every process of the run to be gone", || {
            let left = self.survivors();
            if left.is_empty() { Ok(()) } else { Err(describe(&left)) }
        });
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while start.elapsed() < DEADLINE && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let start = Instant::now();
        let mut left = self.survivors();
        while !left.is_empty() && start.elapsed() < DEADLINE {
            std::thread::sleep(Duration::from_millis(20));
            left = self.survivors();
        }
        if !left.is_empty() {
            let what = describe(&left);
            for pid in &left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if !std::thread::panicking() {
                panic!("processes of this run survived the test: {what}");
            }
        }
    }
}

/// Live (non-zombie) processes whose environment carries `marker`.
pub fn marked_processes(marker: &str) -> Vec<u32> {
    let needle = format!("{MARKER_VAR}={marker}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()) {
            continue;
        }
        if process_state(pid).is_some_and(|s| s != 'Z') {
            found.push(pid);
        }
    }
    found
}

pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

pub fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            format!("{p} ({})", cmd.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
