//! A template's channel: fork requests out, with the worker's four fds as SCM_RIGHTS; the
//! template's messages in (ready with what to warn about, forked, spare, fork failed).

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::time::Instant;

use nix::sys::socket::{ControlMessage, MsgFlags, recv, sendmsg};

use super::warnings::ready_warnings;
use super::{InFlight, Request, Template, fail};
use crate::daemon::process::children::Table;
use crate::daemon::process::spawn::{Spawned, TemplateNews, high_pipe};
use crate::proto::template::{FromTemplate, MAX_MESSAGE, ToTemplate};

impl Template {
    /// Sends one fork request with the worker's four fds.
    pub(super) fn fork(&mut self, request: Request) {
        let worker_id = request.req.id.to_string();
        let ends = (|| -> io::Result<_> { Ok((high_pipe()?, high_pipe()?, high_pipe()?, high_pipe()?)) })();
        let ((to_r, to_w), (from_r, from_w), (out_r, out_w), (err_r, err_w)) = match ends {
            Ok(ends) => ends,
            Err(e) => return fail(request, &self.req.argv0(), e),
        };
        let msg = ToTemplate::Fork {
            worker_id: worker_id.clone(),
        }
        .encode();
        let fds = [
            to_r.as_raw_fd(),
            from_w.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
        ];
        let sent = sendmsg::<()>(
            self.channel.as_raw_fd(),
            &[IoSlice::new(&msg)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        );
        // The template has its own copies now (or none, on failure): ours close here.
        drop((to_r, from_w, out_w, err_w));
        if let Err(e) = sent {
            let why = io::Error::other(format!("cannot send the fork request to the preload template: {e}"));
            return fail(request, &self.req.argv0(), why);
        }
        self.forking.insert(
            worker_id,
            InFlight {
                request,
                to_worker: to_w,
                from_worker: from_r,
                stdout: out_r,
                stderr: err_r,
                sent_at: Instant::now(),
            },
        );
    }

    /// Reads every message waiting on the channel. An error means the template must go.
    pub(super) fn read_channel(&mut self, table: &mut Table) -> Result<(), String> {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            let n = match recv(self.channel.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => {
                    self.closed_at.get_or_insert_with(Instant::now);
                    return Ok(());
                }
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("reading its channel: {e}")),
            };
            if n > MAX_MESSAGE {
                return Err(format!("it sent a message over {MAX_MESSAGE} bytes"));
            }
            match FromTemplate::decode(&buf[..n])? {
                FromTemplate::Ready {
                    pid,
                    import_ms,
                    warmup,
                    warmup_ms,
                    threads,
                    sockets,
                    gil_reenabled,
                    ..
                } => {
                    if self.ready_at.is_some() {
                        return Err("it sent a second ready message".into());
                    }
                    let warm = match (&warmup, warmup_ms) {
                        (Some(warmup), Some(ms)) => format!(", warm-up {warmup} {ms:.0} ms"),
                        _ => String::new(),
                    };
                    tracing::info!(
                        pool = %self.req.pool,
                        pid,
                        "preload template ready: imports took {import_ms:.0} ms{warm}"
                    );
                    let warnings = ready_warnings(&threads, &sockets, warmup.is_some(), gil_reenabled);
                    for warning in &warnings {
                        tracing::warn!(pool = %self.req.pool, pid, "{warning}");
                    }
                    // The pid it reports is its own; the one pitd started is the one it trusts.
                    self.spec.news.tell(TemplateNews::Ready {
                        pid: self.pid,
                        warnings,
                    });
                    self.ready_at = Some(Instant::now());
                    for request in std::mem::take(&mut self.waiting) {
                        self.fork(request);
                    }
                }
                FromTemplate::Forked { worker_id, pid } => self.forked(&worker_id, pid, table)?,
                FromTemplate::Spare { pid } => {
                    self.spare = Some(pid);
                    self.spec.news.tell(TemplateNews::Spare { pid })
                }
                FromTemplate::ForkFailed { worker_id, error } => {
                    let Some(f) = self.forking.remove(&worker_id) else {
                        return Err(format!("it reported a fork pitd did not ask for ({worker_id})"));
                    };
                    let why = io::Error::other(format!("the preload template could not fork it: {error}"));
                    fail(f.request, &self.req.argv0(), why);
                }
            }
        }
    }

    fn forked(&mut self, worker_id: &str, pid: u32, table: &mut Table) -> Result<(), String> {
        let Some(f) = self.forking.remove(worker_id) else {
            return Err(format!("it reported a fork pitd did not ask for ({worker_id})"));
        };
        if self.spare == Some(pid) {
            self.spare = None;
        }
        // Only a child of pitd leading its own group may be registered: pitd signals the
        // group of every pid it registers.
        if !table.claimable(pid, f.sent_at) {
            let why = io::Error::other(format!(
                "the preload template reported pid {pid}, which is not a child of pitd leading its own process group"
            ));
            fail(f.request, &self.req.argv0(), why);
            return Err(format!("it reported pid {pid}, not a worker it forked"));
        }
        let early_exit = table.register_worker(pid, f.request.on_exit, f.sent_at);
        (f.request.on_spawned)(Ok(Spawned {
            pid,
            started_at: f.sent_at,
            stdout: f.stdout,
            stderr: f.stderr,
            to_worker: Some(f.to_worker),
            from_worker: Some(f.from_worker),
        }));
        if let Some((on_exit, info)) = early_exit {
            on_exit(info);
        }
        Ok(())
    }
}
