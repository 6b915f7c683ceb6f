//! A template's stdout and stderr: lines to pitd's log at the workers' bounded rate, to the
//! pool (`pitctl logs POOL`), and the last stderr lines kept for the error of a failed start.

use std::io::{self, Read};
use std::time::Instant;

use super::{TAIL_LINES, Template};
use crate::daemon::process::output::{LOG_LINES_PER_S, take_lines};
use crate::daemon::process::spawn::TemplateNews;
use crate::proto::control::Stream;

impl Template {
    /// Logs complete lines; keeps the last stderr lines for errors.
    pub(super) fn read_output(&mut self, is_stderr: bool) {
        let (out, pool, pid) = if is_stderr {
            (&mut self.stderr, &self.req.pool, self.pid)
        } else {
            (&mut self.stdout, &self.req.pool, self.pid)
        };
        let mut chunk = [0u8; 8192];
        while out.open {
            match out.pipe.read(&mut chunk) {
                Ok(0) => out.open = false,
                Ok(n) => out.partial.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => out.open = false,
            }
        }
        let lines = take_lines(&mut out.partial, !out.open);
        let pool = pool.clone();
        let stream = if is_stderr { "stderr" } else { "stdout" };
        let kind = if is_stderr { Stream::Stderr } else { Stream::Stdout };
        for line in lines.into_iter().filter(|l| !l.trim().is_empty()) {
            if out.log.allow(Instant::now()) {
                let n = out.log.take_suppressed();
                if n > 0 {
                    tracing::warn!(pool = %pool, pid, "template: {n} lines not logged (over {LOG_LINES_PER_S}/s)");
                }
                tracing::info!(pool = %pool, pid, stream, "template: {line}");
            }
            self.spec.news.tell(TemplateNews::Output {
                stream: kind,
                line: line.clone(),
            });
            if is_stderr {
                self.tail.push_back(line);
                while self.tail.len() > TAIL_LINES {
                    self.tail.pop_front();
                }
            }
        }
    }
}
