//! `pitctl top` in a real terminal: tmux gives it a pty of a fixed size, `capture-pane`
//! reads the screen back and `send-keys` types. Each test runs its own tmux server on a
//! unique socket (`-L`), without the user's config, so it never meets other sessions.
//! Skipped, with a note, where tmux is not installed.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::{TestDaemon, python, wait_until, worker};

fn pool(name: &str, size: u32) -> String {
    format!(
        "[pools.{name}]\ncommand = [\"{}\", \"{}\"]\nprotocol = \"none\"\nsize = {size}\nkill_timeout = \"2s\"\n",
        python(),
        worker("sleeper.py")
    )
}

/// A detached tmux session running one command; dropping it kills the session and its server.
struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// `None` when tmux is not installed.
    fn start(command: &str, width: u16, height: u16) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("note: tmux not found, skipping the terminal test of pitctl top");
            return None;
        }
        let unique = format!("pit-top-{}-{}", std::process::id(), fastrand::u64(..));
        let tmux = Tmux {
            socket: unique.clone(),
            session: unique,
        };
        let (w, h) = (width.to_string(), height.to_string());
        let out = tmux.run(&["new-session", "-d", "-s", &tmux.session, "-x", &w, "-y", &h, command]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The pane must close when the command ends, whatever a global config says.
        tmux.run(&["set-option", "-t", &tmux.session, "remain-on-exit", "off"]);
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", &self.session]).stdout).into_owned()
    }

    /// Waits until the screen contains every one of `needles`.
    fn wait_for(&self, what: &str, needles: &[&str]) -> String {
        wait_until(what, || {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                Ok(screen)
            } else {
                Err(format!("screen:\n{screen}"))
            }
        })
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", &self.session, keys]);
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", &self.session]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-session", "-t", &self.session]);
        self.run(&["kill-server"]);
    }
}

/// The shell command for the pane: pitctl top, then its exit code into `rc`.
fn top_command(socket: &Path, rc: &Path) -> String {
    format!(
        "'{}' --socket '{}' top --interval 200ms; echo $? > '{}'",
        env!("CARGO_BIN_EXE_pitctl"),
        socket.display(),
        rc.display()
    )
}

#[test]
fn top_shows_pools_and_workers_survives_a_resize_and_quits_on_q() {
    let d = TestDaemon::start(&pool("topsleepy", 2));
    d.wait_pool("2 workers", "topsleepy", |p| {
        p.workers.iter().filter(|w| w.pid != 0).count() == 2
    });
    let rc = d.dir.path().join("top.rc");
    let Some(tmux) = Tmux::start(&top_command(&d.control, &rc), 120, 40) else {
        return;
    };
    let screen = tmux.wait_for(
        "the pool and its workers on screen",
        &["topsleepy", "worker-1", "worker-2"],
    );
    assert!(screen.contains("pitctl top"), "{screen}");

    tmux.run(&["resize-window", "-t", &tmux.session, "-x", "50", "-y", "12"]);
    tmux.wait_for("a redraw at 50x12", &["pitctl top", "worker-1"]);
    tmux.run(&["resize-window", "-t", &tmux.session, "-x", "120", "-y", "40"]);
    tmux.wait_for("a redraw at 120x40", &["events (UTC)"]);

    tmux.keys("q");
    wait_until("the tmux session to end after q", || {
        if tmux.alive() {
            Err(format!("still running; screen:\n{}", tmux.screen()))
        } else {
            Ok(())
        }
    });
    let code = std::fs::read_to_string(&rc).unwrap_or_default();
    assert_eq!(code.trim(), "0", "pitctl top exit code");
}

#[test]
fn top_says_disconnected_while_pitd_is_down_and_reconnects() {
    let mut d = TestDaemon::start(&pool("toprestart", 1));
    d.wait_pool("1 worker", "toprestart", |p| p.workers.iter().any(|w| w.pid != 0));
    let rc = d.dir.path().join("top.rc");
    let Some(tmux) = Tmux::start(&top_command(&d.control, &rc), 120, 40) else {
        return;
    };
    let first = format!("(pid {})", d.pid());
    tmux.wait_for("the first daemon on screen", &[&first, "toprestart"]);

    d.signal_and_wait(libc::SIGTERM);
    tmux.wait_for("the lost daemon to be reported", &["disconnected: ", "retrying"]);

    d.spawn_pitd();
    d.wait_for_socket();
    let second = format!("(pid {})", d.pid());
    let screen = tmux.wait_for("the new daemon on screen", &[&second, "toprestart"]);
    assert!(!screen.contains("disconnected"), "{screen}");

    tmux.keys("q");
    wait_until("the tmux session to end after q", || {
        if tmux.alive() { Err(tmux.screen()) } else { Ok(()) }
    });
}
