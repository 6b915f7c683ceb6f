//! `pitctl shutdown [--wait]`.
//!
//! pitd is usually not our child, so its exit cannot be waited for: `--wait` learns pitd's
//! pid from the control socket's peer credentials (the pid as this pid namespace sees it,
//! so a pitd in a container whose socket is shared still names the right process), records
//! its start time, and polls `/proc` until that process is gone, a zombie, or the pid names
//! a newer process. Without a usable pid it waits until the control socket stops answering.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Failure, done};
use crate::client::{ClientError, ControlClient};
use crate::procfs::start_time_ticks;
use crate::proto::control::Request;

/// How often pitd's process is looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

/// What `/proc` says about the process that was pitd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// No such pid.
    Gone,
    /// A process with this start time and state (`R`, `S`, `Z`, ...).
    Process { start_ticks: u64, state: char },
}

/// Whether pitd (known by its start time) has exited: its pid is gone, names a newer
/// process, or is a zombie (exited, not yet reaped by its parent).
pub fn has_exited(pitd_start_ticks: u64, seen: Seen) -> bool {
    match seen {
        Seen::Gone => true,
        Seen::Process { start_ticks, state } => start_ticks != pitd_start_ticks || state == 'Z' || state == 'X',
    }
}

pub fn run(socket: &Path, wait: bool, timeout: Duration) -> Result<(), Failure> {
    let mut client = ControlClient::connect(socket)?;
    // Known before asking: once asked, pitd may be gone before we look.
    let pitd = wait
        .then(|| client.peer_pid())
        .flatten()
        .and_then(|pid| Some((pid, start_time_ticks(pid)?)));
    done(client.request(&Request::Shutdown)?)?;
    drop(client);
    if !wait {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    loop {
        let exited = match pitd {
            Some((pid, start_ticks)) => has_exited(start_ticks, look(pid)),
            None => matches!(ControlClient::connect(socket), Err(ClientError::Unreachable { .. })),
        };
        if exited {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let which = pitd.map_or_else(String::new, |(pid, _)| format!(" (pid {pid})"));
            return Err(Failure::Refused(format!(
                "pitd{which} is still running {timeout:?} after it was asked to shut down"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Reads `/proc/PID/stat`: the start time and the state (the field after the command
/// name, which may itself hold spaces and parentheses, hence the last `)`).
fn look(pid: u32) -> Seen {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Seen::Gone;
    };
    let state = text
        .rfind(')')
        .and_then(|i| text[i + 1..].trim_start().chars().next())
        .unwrap_or('?');
    match start_time_ticks(pid) {
        Some(start_ticks) => Seen::Process { start_ticks, state },
        None => Seen::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pitd_has_exited_when_its_process_is_gone_reaped_replaced_or_a_zombie() {
        let cases = [
            // (what /proc shows, exited)
            (Seen::Gone, true),
            (
                Seen::Process {
                    start_ticks: 100,
                    state: 'S',
                },
                false,
            ),
            (
                Seen::Process {
                    start_ticks: 100,
                    state: 'R',
                },
                false,
            ),
            (
                Seen::Process {
                    start_ticks: 100,
                    state: 'D',
                },
                false,
            ),
            // Exited, its parent has not reaped it yet: nothing of pitd runs any more.
            (
                Seen::Process {
                    start_ticks: 100,
                    state: 'Z',
                },
                true,
            ),
            (
                Seen::Process {
                    start_ticks: 100,
                    state: 'X',
                },
                true,
            ),
            // The pid was reused by a newer process.
            (
                Seen::Process {
                    start_ticks: 250,
                    state: 'S',
                },
                true,
            ),
        ];
        for (seen, exited) in cases {
            assert_eq!(has_exited(100, seen), exited, "{seen:?}");
        }
    }

    #[test]
    fn look_sees_this_process_running_and_an_unused_pid_gone() {
        let me = std::process::id();
        match look(me) {
            Seen::Process { start_ticks, state } => {
                assert_eq!(Some(start_ticks), start_time_ticks(me));
                assert!(
                    !has_exited(start_ticks, Seen::Process { start_ticks, state }),
                    "{state}"
                );
            }
            Seen::Gone => panic!("this process not found"),
        }
        assert_eq!(look(u32::MAX), Seen::Gone);
    }
}
