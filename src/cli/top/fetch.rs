//! The control connection of `pitctl top`, on a thread of its own: a pitd that is slow or
//! stopped (SIGSTOP) delays the figures, never the keys, so `q` always quits.
//!
//! The event loop sends `Job`s and collects `Outcome`s; jobs run one at a time, in order.
//! A broken connection is dropped and the next job opens a new one, which is how top comes
//! back after pitd restarts.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Instant;

use super::state::Action;
use crate::client::{ClientError, ControlClient};
use crate::proto::control::{Reply, Request};
use crate::proto::event::Event;
use crate::proto::status::StatusReport;

pub enum Job {
    /// Read status and the recent events.
    Refresh,
    Act(Action),
}

pub enum Outcome {
    /// Status and events as read at that instant, or why they could not be read.
    Refreshed(Result<(StatusReport, Vec<Event>), String>, Instant),
    /// pitd's answer to an action, or why it failed.
    Acted(Result<String, String>),
}

/// The thread stopped (it can only panic): the view could never change again.
#[derive(Debug)]
pub struct Stopped;

pub struct Fetcher {
    /// Closed when the event loop returns: the thread then ends after its current job.
    jobs: Sender<Job>,
    /// Closed only if the thread died.
    outcomes: Receiver<Outcome>,
}

impl Fetcher {
    /// Starts the thread with an open connection (the caller connected once already, to fail
    /// fast on a wrong socket).
    pub fn start(socket: PathBuf, client: ControlClient) -> std::io::Result<Fetcher> {
        let (jobs, job_rx) = mpsc::channel();
        let (out_tx, outcomes) = mpsc::channel();
        let mut conn = Connection {
            socket,
            client: Some(client),
        };
        std::thread::Builder::new().name("top-control".into()).spawn(move || {
            for job in job_rx {
                let outcome = match job {
                    Job::Refresh => {
                        let read = conn.refresh();
                        Outcome::Refreshed(read, Instant::now())
                    }
                    Job::Act(action) => Outcome::Acted(conn.act(action)),
                };
                if out_tx.send(outcome).is_err() {
                    return;
                }
            }
        })?;
        Ok(Fetcher { jobs, outcomes })
    }

    pub fn send(&self, job: Job) -> Result<(), Stopped> {
        self.jobs.send(job).map_err(|_| Stopped)
    }

    /// The next finished job, if any; never blocks.
    pub fn try_recv(&self) -> Result<Option<Outcome>, Stopped> {
        match self.outcomes.try_recv() {
            Ok(outcome) => Ok(Some(outcome)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(Stopped),
        }
    }
}

struct Connection {
    socket: PathBuf,
    client: Option<ControlClient>,
}

impl Connection {
    fn request(&mut self, req: &Request) -> Result<Reply, String> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self
                .client
                .insert(ControlClient::connect(&self.socket).map_err(|e| e.to_string())?),
        };
        let reply = client.request(req);
        // A refusal is an answer on a healthy connection; anything else leaves it unusable.
        if let Err(e) = &reply
            && !matches!(e, ClientError::Refused { .. })
        {
            self.client = None;
        }
        reply.map_err(|e| e.to_string())
    }

    fn refresh(&mut self) -> Result<(StatusReport, Vec<Event>), String> {
        let report = match self.request(&Request::Status { pool: None })? {
            Reply::Status(report) => report,
            other => return Err(format!("unexpected reply {other:?}")),
        };
        match self.request(&Request::Events { follow: false })? {
            Reply::Events { events } => Ok((report, events)),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    fn act(&mut self, action: Action) -> Result<String, String> {
        let req = match action {
            Action::Quit => return Ok(String::new()),
            Action::Recycle(id) => Request::Recycle {
                target: id.to_string(),
                now: false,
            },
            Action::Drain(id) => Request::Drain {
                target: id.to_string(),
                wait: false,
            },
            Action::Resume(pool) => Request::Resume { pool },
        };
        match self.request(&req)? {
            Reply::Done { message } => Ok(message),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }
}
