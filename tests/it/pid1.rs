//! pitd as a child subreaper, and as PID 1 of a new PID namespace (as in a container):
//! orphans that workers leave behind are reaped, and SIGHUP/SIGTERM are handled.

use crate::harness::{TestDaemon, python, wait_until, worker};

fn orphan_pool() -> String {
    format!(
        "[pools.p]\ncommand = [\"{}\", \"{}\"]\nprotocol = \"none\"\nsize = 2\nkill_timeout = \"2s\"\n",
        python(),
        worker("orphan_maker.py")
    )
}

/// Zombie children of `pid`.
fn zombies_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            fields.first() == Some(&"Z") && fields.get(1).and_then(|pp| pp.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

#[test]
fn orphans_left_by_workers_are_reaped_by_the_subreaper() {
    let d = TestDaemon::start(&orphan_pool());
    wait_until("two orphans reaped", || {
        let n = d.log().matches("reaped orphan process").count();
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} reaped so far"))
        }
    });
    assert!(zombies_of(d.pid()).is_empty());
}

fn unshare_works() -> bool {
    std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn as_pid_1_in_a_new_pid_namespace_it_reaps_orphans_reloads_and_stops_on_sigterm() {
    if !unshare_works() {
        eprintln!("skipped: cannot create a PID namespace here (unshare --pid --fork)");
        return;
    }
    let mut d = TestDaemon::configure(&orphan_pool());
    d.spawn_pitd_under(&["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"], &[]);
    d.wait_for_socket();
    let status = d.status();
    assert_eq!(status.pid, 1, "pitd is PID 1 in its namespace");
    wait_until("orphans reaped by PID 1", || {
        let n = d.log().matches("reaped orphan process").count();
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} reaped so far"))
        }
    });
    // pitd's pid as seen from here: the wrapper's child.
    let outer = wait_until("pitd's outer pid", || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                stat.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(d.pid())
            })
            .ok_or_else(|| "not found".to_string())
    });
    let signal = |sig| nix::sys::signal::kill(nix::unistd::Pid::from_raw(outer as i32), sig).unwrap();
    signal(nix::sys::signal::Signal::SIGHUP);
    wait_until("the reload in the log", || {
        if d.log().contains("reloaded") {
            Ok(())
        } else {
            Err(d.log())
        }
    });
    signal(nix::sys::signal::Signal::SIGTERM);
    let wrapper = d.wait_exit();
    assert_eq!(wrapper.code(), Some(0), "log:\n{}", d.log());
    d.wait_no_survivors();
}
