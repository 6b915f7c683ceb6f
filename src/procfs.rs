//! Reading `/proc`: the process table (pid, parent, start time) and `smaps_rollup`.
//!
//! Everything here tolerates processes vanishing mid-read and malformed content: a file
//! that cannot be read or parsed yields `None` and the caller skips that process.

use std::fs::File;
use std::io::{self, Read};

/// One line of the process table, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    /// Field 5: the process group.
    pub pgrp: u32,
    /// Fields 14 + 15: user and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 22: start time in clock ticks after boot. With the pid, it names a process
    /// uniquely for the life of the machine.
    pub start_ticks: u64,
}

/// Parses the content of `/proc/PID/stat`.
///
/// The second field is the command name in parentheses, which may itself contain spaces,
/// parentheses and bytes that are not UTF-8 (a process chooses its own name), so the
/// fields after it are found from the LAST `)`.
pub fn parse_stat(content: &[u8]) -> Option<ProcStat> {
    let open = content.iter().position(|&b| b == b'(')?;
    let close = content.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = parse_num(content[..open].trim_ascii())?;
    // After the name: state (field 3), ppid (4), pgrp (5), ... utime (14), stime (15), ...
    // starttime (22).
    let fields: Vec<&[u8]> = content[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .take(20)
        .collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| parse_num(f));
    Some(ProcStat {
        pid: u32::try_from(pid).ok()?,
        ppid: u32::try_from(field(4)?).ok()?,
        pgrp: u32::try_from(field(5)?).ok()?,
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
    })
}

fn parse_num(field: &[u8]) -> Option<u64> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The start time of a live process, in clock ticks after boot (`/proc/PID/stat` field 22).
/// `None` if the process does not exist (any more) or its stat cannot be read.
pub fn start_time_ticks(pid: u32) -> Option<u64> {
    stat_of(pid).map(|s| s.start_ticks)
}

/// `/proc/PID/stat` of one process (a zombie too), or `None` if it cannot be read.
pub fn stat_of(pid: u32) -> Option<ProcStat> {
    let mut buf = Vec::with_capacity(512);
    read_into(&format!("/proc/{pid}/stat"), &mut buf).ok()?;
    parse_stat(&buf).filter(|s| s.pid == pid)
}

/// `PF_EXITING` (include/linux/sched.h): set on a task when it starts to exit, before the
/// kernel closes its files.
const PF_EXITING: u64 = 0x4;

/// Whether a `/proc/PID/stat` line is that of a process on its way out: a zombie (or
/// dead), or past the start of its exit. `None` if the line does not parse.
pub fn parse_exiting(content: &[u8]) -> Option<bool> {
    let close = content.iter().rposition(|&b| b == b')')?;
    let mut fields = content[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    // Field 3 is the state, field 9 the flags.
    let state = *fields.next()?.first()?;
    let flags = parse_num(fields.nth(5)?)?;
    Some(matches!(state, b'Z' | b'X' | b'x') || flags & PF_EXITING != 0)
}

/// Whether process `pid` is gone or exiting: the end of its pipes is then its death, not
/// something it did while alive.
pub fn exiting(pid: u32) -> bool {
    let mut buf = Vec::with_capacity(512);
    if read_into(&format!("/proc/{pid}/stat"), &mut buf).is_err() {
        return true;
    }
    parse_exiting(&buf).unwrap_or(true)
}

/// Scans `/proc/*/stat` into `out` (cleared first), reusing `buf` between files.
///
/// `/proc` lists thread-group leaders only, so each process appears once and its threads
/// never do. A process that exits between the directory listing and the read is skipped.
pub fn scan(out: &mut Vec<ProcStat>, buf: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    let mut path = String::with_capacity(32);
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        path.clear();
        path.push_str("/proc/");
        path.push_str(pid);
        path.push_str("/stat");
        if read_into(&path, buf).is_ok()
            && let Some(stat) = parse_stat(buf)
        {
            out.push(stat);
        }
    }
    Ok(())
}

/// Proportional and private memory of one process, in bytes, from `/proc/PID/smaps_rollup`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollup {
    /// Resident pages, each shared page divided by the number of processes mapping it.
    pub pss: u64,
    /// Pages mapped by this process alone (`Private_Clean` + `Private_Dirty`): what its
    /// exit would give back.
    pub uss: u64,
}

/// Parses `smaps_rollup` content. Values there are in kB. `None` without a `Pss:` line
/// (a kernel thread or a zombie has an empty rollup).
pub fn parse_rollup(content: &[u8]) -> Option<Rollup> {
    let mut pss = None;
    let mut uss = 0u64;
    for line in content.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = (&line[..colon], &line[colon + 1..]);
        let kb = || {
            let num = value.trim_ascii().split(|b| b.is_ascii_whitespace()).next()?;
            parse_num(num).map(|kb| kb.saturating_mul(1024))
        };
        match key {
            b"Pss" => pss = kb(),
            b"Private_Clean" | b"Private_Dirty" => uss = uss.saturating_add(kb().unwrap_or(0)),
            _ => {}
        }
    }
    Some(Rollup { pss: pss?, uss })
}

/// Reads and parses `/proc/PID/smaps_rollup`, reusing `buf`.
pub fn read_rollup(pid: u32, buf: &mut Vec<u8>) -> io::Result<Option<Rollup>> {
    read_into(&format!("/proc/{pid}/smaps_rollup"), buf)?;
    Ok(parse_rollup(buf))
}

fn read_into(path: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    File::open(path)?.read_to_end(buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real stat line with its name replaced; fields 3.. as the kernel writes them.
    fn stat_line(pid: u32, comm: &[u8], ppid: u32, start: u64) -> Vec<u8> {
        let mut line = format!("{pid} (").into_bytes();
        line.extend_from_slice(comm);
        line.extend_from_slice(
            format!(
                ") S {ppid} {pid} {pid} 0 -1 4194560 120 0 0 0 1 0 0 0 20 0 1 0 {start} 9003008 \
                 896 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
            )
            .as_bytes(),
        );
        line
    }

    #[test]
    fn a_zombie_or_a_task_with_pf_exiting_is_exiting() {
        let live = stat_line(42, b"py) Z 1", 1, 5);
        assert_eq!(parse_exiting(&live), Some(false), "a name that looks like a state");
        let zombie = String::from_utf8(stat_line(42, b"py", 1, 5))
            .unwrap()
            .replacen(") S", ") Z", 1);
        assert_eq!(parse_exiting(zombie.as_bytes()), Some(true));
        // Flags (field 9) 4194560 is 0x400100; with PF_EXITING it is 0x400104.
        let leaving = String::from_utf8(stat_line(42, b"py", 1, 5))
            .unwrap()
            .replacen(" 4194560 ", " 4194564 ", 1);
        assert_eq!(parse_exiting(leaving.as_bytes()), Some(true));
        assert_eq!(parse_exiting(b"42 (py) R"), None, "cut short");
        assert!(!exiting(std::process::id()), "this test process is alive");
    }

    #[test]
    fn stat_parsing_survives_hostile_command_names() {
        let cases: &[(&[u8], u32, u32, u64)] = &[
            (b"sleep", 42, 1, 12345),
            (b"a) (b c", 7, 3, 99),
            (b") S 1 2 3", 8, 4, 100),
            (b"((()))", 9, 5, 101),
            (b"", 10, 6, 102),
            (b"na\xffme \xfe)", 11, 7, 103),
            (b"tab\tand\nnewline", 12, 8, 104),
        ];
        for &(comm, pid, ppid, start) in cases {
            let parsed = parse_stat(&stat_line(pid, comm, ppid, start));
            assert_eq!(
                parsed,
                Some(ProcStat {
                    pid,
                    ppid,
                    pgrp: pid,
                    cpu_ticks: 1,
                    start_ticks: start
                }),
                "comm {:?}",
                String::from_utf8_lossy(comm)
            );
        }
    }

    #[test]
    fn malformed_stat_content_is_rejected_not_panicked_on() {
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"12",
            b"12 (x",
            b"12 x) S 1",
            b") 12 (x S 1 2",
            b"12 (x) S 1 2 3",
            b"12 (x) S notanumber 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
            b"x (y) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
            b"99999999999 (y) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
            b"12 (y) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5",
        ];
        for &content in cases {
            assert_eq!(parse_stat(content), None, "{:?}", String::from_utf8_lossy(content));
        }
        assert_eq!(
            parse_stat(b"12 (y) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"),
            Some(ProcStat {
                pid: 12,
                ppid: 1,
                pgrp: 1,
                cpu_ticks: 0,
                start_ticks: 5
            }),
            "exactly 22 fields is enough"
        );
    }

    #[test]
    fn scan_finds_this_process_under_its_parent() {
        let (mut table, mut buf) = (Vec::new(), Vec::new());
        scan(&mut table, &mut buf).unwrap();
        let me = std::process::id();
        let row = table.iter().find(|s| s.pid == me).expect("this process in the scan");
        assert_eq!(row.ppid, nix::unistd::getppid().as_raw() as u32);
        assert_eq!(Some(row.start_ticks), start_time_ticks(me));
        assert!(table.iter().filter(|s| s.pid == me).count() == 1, "one row per process");
    }

    #[test]
    fn start_time_of_a_missing_process_is_none() {
        // Above the largest pid_max the kernel allows (2^22).
        assert_eq!(start_time_ticks(4_194_305), None);
    }

    #[test]
    fn rollup_gives_pss_and_private_pages_in_bytes() {
        let content = b"55d0c8a3e000-7ffd5a5fe000 ---p 00000000 00:00 0                          [rollup]\n\
            Rss:                3968 kB\n\
            Pss:                 901 kB\n\
            Pss_Dirty:           120 kB\n\
            Pss_Anon:            116 kB\n\
            Shared_Clean:       3072 kB\n\
            Shared_Dirty:          0 kB\n\
            Private_Clean:       772 kB\n\
            Private_Dirty:       124 kB\n\
            Referenced:         3968 kB\n";
        assert_eq!(
            parse_rollup(content),
            Some(Rollup {
                pss: 901 * 1024,
                uss: (772 + 124) * 1024
            })
        );
        assert_eq!(parse_rollup(b""), None, "an empty rollup (zombie) has no Pss");
        assert_eq!(parse_rollup(b"Pss: lots kB\n"), None);
        assert_eq!(
            parse_rollup(b"Pss: 4 kB"),
            Some(Rollup { pss: 4096, uss: 0 }),
            "no final newline"
        );
    }

    #[test]
    fn rollup_of_this_process_is_readable() {
        let rollup = read_rollup(std::process::id(), &mut Vec::new())
            .unwrap()
            .expect("a Pss line");
        assert!(rollup.pss > 0 && rollup.uss > 0, "{rollup:?}");
    }
}
