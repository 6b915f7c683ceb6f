//! Per-worker pipe I/O on fds 3/4. The pool writes a frame straight into the pipe when
//! nothing is waiting before it (a non-blocking write: the worker gets its next call before
//! pitd turns to anything else); what the pipe does not take goes to a writer task through
//! a small bounded queue (the pool never awaits a worker: a full queue means the worker
//! stopped reading). A reader task decodes frames and forwards them to the pool. A frame that does
//! not decode, or is over the limit, is reported once as a protocol error; the pool kills
//! the worker. The end of the pipe is reported too: everything the worker wrote has then
//! been delivered, which is what the pool waits for before it settles a dead worker's calls.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::pool::PoolMsg;
use super::pool::pipe::{PipeOpener, WorkerMsg, WorkerPipe};
use super::write_all::write_all;
use crate::ids::WorkerId;
use crate::proto::call::ErrorKind;
use crate::proto::frame;
use crate::proto::worker::{FromWorker, MAX_FRAME, decode_from_worker};

/// Frames waiting to be written to one worker. A worker holds at most one running call,
/// `PIPELINE_DEPTH` pipelined ones and one ping, so this only fills when the worker stops
/// reading.
const OUTBOX: usize = super::pool::routing::PIPELINE_DEPTH + 4;

/// The pool's end of a worker's pipes.
#[derive(Debug)]
pub struct WorkerIo {
    pipe: Arc<pipe::Sender>,
    /// A second handle on the reply pipe, to see whether a reply is waiting there.
    replies: OwnedFd,
    /// Frames (or the unwritten rest of one) handed to the writer task and not yet written
    /// whole; while any is, later frames queue behind it to keep their order.
    queued: Arc<AtomicUsize>,
    outbox: mpsc::Sender<Vec<u8>>,
}

impl WorkerPipe for WorkerIo {
    /// Writes a complete frame, or queues what the pipe does not take at once. Gives it
    /// back when the worker is not reading (queue full) or gone.
    fn send(&self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        let mut frame = frame;
        if self.queued.load(Ordering::Acquire) == 0 {
            match self.pipe.try_write(&frame) {
                Ok(n) if n == frame.len() => return Ok(()),
                Ok(n) => {
                    frame.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // The worker is gone or closed fd 3; the reaper reports its exit.
                Err(_) => return Err(frame),
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.outbox.try_send(frame).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            e.into_inner()
        })
    }

    /// Whether the worker has written anything pitd has not read yet (when unsure: yes).
    fn reply_waiting(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.replies.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0].revents().is_none_or(|r| r.contains(PollFlags::POLLIN)),
            Err(_) => true,
        }
    }
}

/// Opens real worker pipes: a reader and a writer task each.
#[derive(Debug, Default)]
pub struct WorkerPipes;

impl PipeOpener for WorkerPipes {
    fn open(
        &self,
        id: WorkerId,
        to_worker: OwnedFd,
        from_worker: OwnedFd,
        mailbox: mpsc::UnboundedSender<PoolMsg>,
    ) -> std::io::Result<Box<dyn WorkerPipe>> {
        Ok(Box::new(start(id, to_worker, from_worker, mailbox, MAX_FRAME)?))
    }
}

/// Starts the reader and writer tasks of a worker. Must run inside the runtime.
pub fn start(
    id: WorkerId,
    to_worker: OwnedFd,
    from_worker: OwnedFd,
    pool: mpsc::UnboundedSender<PoolMsg>,
    max_frame: usize,
) -> std::io::Result<WorkerIo> {
    let pipe = Arc::new(pipe::Sender::from_owned_fd(to_worker)?);
    let replies = from_worker.try_clone()?;
    let reader = pipe::Receiver::from_owned_fd(from_worker)?;
    let (outbox, inbox) = mpsc::channel(OUTBOX);
    let queued = Arc::new(AtomicUsize::new(0));
    tokio::spawn(write_loop(pipe.clone(), queued.clone(), inbox));
    tokio::spawn(read_loop(id, reader, pool, max_frame));
    Ok(WorkerIo {
        pipe,
        replies,
        queued,
        outbox,
    })
}

/// Writes what `WorkerIo::send` could not write at once, in order.
async fn write_loop(pipe: Arc<pipe::Sender>, queued: Arc<AtomicUsize>, mut inbox: mpsc::Receiver<Vec<u8>>) {
    let mut batch = Vec::new();
    while let Some(first) = inbox.recv().await {
        // Whatever else is already queued goes out in the same write.
        batch.clear();
        batch.extend_from_slice(&first);
        let mut frames = 1;
        while let Ok(more) = inbox.try_recv() {
            batch.extend_from_slice(&more);
            frames += 1;
        }
        if write_all(pipe.as_ref(), &batch).await.is_err() {
            // The worker is gone or closed fd 3; the reaper reports its exit.
            return;
        }
        queued.fetch_sub(frames, Ordering::AcqRel);
    }
}

async fn read_loop(
    id: WorkerId,
    mut pipe: tokio::net::unix::pipe::Receiver,
    pool: mpsc::UnboundedSender<PoolMsg>,
    max_frame: usize,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                let _ = pool.send(PoolMsg::FromWorker {
                    id,
                    msg: WorkerMsg::Closed,
                });
                return;
            }
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            match frame::decode(&buf[at..], max_frame) {
                Ok(Some((range, used))) => {
                    let body = &buf[at..][range];
                    let msg = match decode_from_worker(body) {
                        Ok(FromWorker::Ready(r)) => WorkerMsg::Ready(r),
                        Ok(FromWorker::Ok { req_id, result }) => match valid_json(result) {
                            true => WorkerMsg::Reply {
                                req_id,
                                error: None,
                                body: result.to_vec(),
                            },
                            false => WorkerMsg::ProtocolError("an OK frame carried invalid JSON".into()),
                        },
                        Ok(FromWorker::Err { req_id, error }) => match error_kind(error) {
                            Some(kind) => WorkerMsg::Reply {
                                req_id,
                                error: Some(kind),
                                body: error.to_vec(),
                            },
                            None => WorkerMsg::ProtocolError("an ERR frame carried no valid error object".into()),
                        },
                        Ok(FromWorker::Pong { req_id }) => WorkerMsg::Pong { req_id },
                        Err(e) => WorkerMsg::ProtocolError(e.to_string()),
                    };
                    let fatal = matches!(msg, WorkerMsg::ProtocolError(_));
                    if pool.send(PoolMsg::FromWorker { id, msg }).is_err() || fatal {
                        return;
                    }
                    at += used;
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = pool.send(PoolMsg::FromWorker {
                        id,
                        msg: WorkerMsg::ProtocolError(e.to_string()),
                    });
                    return;
                }
            }
        }
        buf.drain(..at);
    }
}

fn valid_json(bytes: &[u8]) -> bool {
    bytes.is_empty() || serde_json::from_slice::<&serde_json::value::RawValue>(bytes).is_ok()
}

/// An ERR body must be an object with a known error kind.
fn error_kind(bytes: &[u8]) -> Option<ErrorKind> {
    serde_json::from_slice::<crate::proto::call::CallError>(bytes)
        .ok()
        .map(|e| e.kind)
}
