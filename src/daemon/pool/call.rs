//! One call, in one place: made from the caller's request (its pitd id, its worker frame),
//! the frame a worker is given (with the time it has left), and every reply it can get.
//! The call socket only parses a request and hands it here; the pool decides where the
//! call goes and which reply it gets, through these. A reply leaves by a `ReplyPort`: in
//! pitd the caller's connection (an `Outbox` over the socket's write half), in tests
//! anything that records frames, so a test of the call path needs no socket.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::daemon::outbox::{Outbox, Outgoing};
use crate::ids::WorkerId;
use crate::proto::call::{CallRequest, ErrorKind, chunk_frame, error_frame, error_frame_raw, error_json, ok_frame};
use crate::proto::worker::{encode_call, set_call_stream, set_call_timeout};

/// pitd's call ids on worker pipes: unique per daemon run.
static NEXT_REQ_ID: AtomicU64 = AtomicU64::new(1);

/// One call on its way through the pool.
#[derive(Debug)]
pub struct Call {
    /// pitd's id for the call on the worker pipe (unique per daemon run).
    pub req_id: u64,
    /// The caller's `id`, as raw JSON, echoed in the reply.
    pub client_id: Box<[u8]>,
    pub method: String,
    pub session: Option<String>,
    /// The caller's `timeout_ms`, if any.
    pub timeout: Option<Duration>,
    pub idempotent: bool,
    /// Already retried once after its worker died.
    pub retried: bool,
    /// The complete CALL frame for the worker (timeout set when it is handed over).
    pub frame: Vec<u8>,
    pub reply: ReplyTx,
    /// This call's in-flight slot on its connection.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
    pub received: Instant,
    /// The caller reads a stream (`"stream": true`).
    pub stream: bool,
    /// Chunks sent to the caller so far: a call that sent one is never retried.
    pub chunks: u64,
    /// Credit its caller gave back that is not yet passed on to the worker.
    pub credit_held: u32,
    /// When it must end, whatever it sends (set when a worker takes it): a stream's idle
    /// deadline moves with its chunks up to this.
    pub ends_by: Option<Instant>,
}

impl Call {
    /// A caller's request, received at `now`, answered through `reply`.
    pub fn new(
        req: CallRequest<'_>,
        reply: ReplyTx,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
        now: Instant,
    ) -> Call {
        let req_id = NEXT_REQ_ID.fetch_add(1, Ordering::Relaxed);
        let args = req.args.map_or(&b"null"[..], |a| a.get().as_bytes());
        Call {
            req_id,
            client_id: req.id.get().as_bytes().into(),
            frame: encode_call(req_id, 0, &req.method, req.session.as_deref(), args),
            method: req.method.into_owned(),
            session: req.session.map(|s| s.into_owned()),
            timeout: req.timeout_ms.map(Duration::from_millis),
            idempotent: req.idempotent,
            retried: false,
            reply,
            slot,
            received: now,
            stream: req.stream,
            chunks: 0,
            credit_held: 0,
            ends_by: None,
        }
    }

    /// Marks its frame as a stream whose first credit is `window` chunks.
    pub(super) fn set_window(&mut self, window: u32) {
        set_call_stream(&mut self.frame, window);
    }

    /// One chunk the worker yielded, for the caller, with the credit its writing gives back.
    pub(super) fn chunk(&mut self, worker: WorkerId, body: &[u8]) -> ReplyFrame {
        self.chunks += 1;
        let mut frame = ReplyFrame::new(chunk_frame(&self.client_id, body), None);
        frame.credits.tags.push(StreamCredit {
            worker,
            req_id: self.req_id,
            n: 1,
        });
        frame
    }

    /// Its frame set to run until `deadline`, for a worker at `now`.
    pub(super) fn set_deadline(&mut self, deadline: Instant, now: Instant) {
        let remaining = deadline
            .saturating_duration_since(now)
            .as_millis()
            .clamp(1, u32::MAX as u128) as u32;
        set_call_timeout(&mut self.frame, remaining);
    }

    /// The worker's answer: its result, or its error object, naming the worker.
    pub(super) fn worker_reply(&self, error: Option<ErrorKind>, body: &[u8], worker: &str) -> Vec<u8> {
        match error {
            None => ok_frame(&self.client_id, body, worker),
            Some(_) => error_frame_raw(&self.client_id, body, Some(worker)),
        }
    }

    /// An error pitd gives the call after it reached a worker (a timeout, a crash), naming it.
    pub(super) fn failed_on(&self, worker: &str, kind: ErrorKind, message: &str) -> Vec<u8> {
        error_frame_raw(&self.client_id, &error_json(kind, message), Some(worker))
    }

    /// An error pitd gives the call before any worker saw it.
    pub(super) fn refused(&self, kind: ErrorKind, message: &str) -> Vec<u8> {
        error_frame(&self.client_id, kind, message)
    }

    /// Its reply, ready to send.
    pub(super) fn into_reply(self, bytes: Vec<u8>) -> (ReplyTx, ReplyFrame) {
        (self.reply, ReplyFrame::new(bytes, self.slot))
    }
}

/// What a reply port does.
pub trait ReplyPort: Send + Sync + fmt::Debug {
    /// Writes `frame` (or queues it); gives it back when the caller is gone.
    fn send(&self, frame: ReplyFrame) -> Result<(), ReplyFrame>;
    /// The caller hung up or stopped reading: its queued calls are dropped, not run.
    fn is_closed(&self) -> bool;
}

impl ReplyPort for Outbox<tokio::net::unix::OwnedWriteHalf, ReplyFrame> {
    fn send(&self, frame: ReplyFrame) -> Result<(), ReplyFrame> {
        Outbox::send(self, frame)
    }
    fn is_closed(&self) -> bool {
        Outbox::is_closed(self)
    }
}

/// Where a call's reply goes: one caller's connection. Clones are the same caller.
#[derive(Debug, Clone)]
pub struct ReplyTx(Arc<dyn ReplyPort>);

impl ReplyTx {
    /// A caller's connection: replies are written to `writer`.
    pub fn new(writer: tokio::net::unix::OwnedWriteHalf, limit: Option<usize>) -> ReplyTx {
        ReplyTx::to(Outbox::new(writer, limit))
    }

    /// Replies leave by `port`.
    pub fn to(port: impl ReplyPort + 'static) -> ReplyTx {
        ReplyTx(Arc::new(port))
    }

    pub fn send(&self, frame: ReplyFrame) -> Result<(), ReplyFrame> {
        self.0.send(frame)
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Whether both are the same caller's.
    pub fn same_peer(&self, other: &ReplyTx) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A reply on its way to a caller's connection, with the connection's in-flight slot that
/// is freed once the reply is written: a caller that stops reading its replies soon stops
/// being read, so pitd's memory for it stays bounded.
#[derive(Debug)]
pub struct ReplyFrame {
    pub bytes: Vec<u8>,
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The chunks of streams it carries, whose credit goes back to their workers once it
    /// is written (or dropped with a caller that is gone).
    pub credits: Credits,
}

/// Credit for `n` chunks of stream `req_id` on `worker`: its caller's connection took them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCredit {
    pub worker: WorkerId,
    pub req_id: u64,
    pub n: u32,
}

/// Where written chunks' credit is told (the actor's mailbox).
pub type CreditSink = Arc<dyn Fn(Vec<StreamCredit>) + Send + Sync>;

/// The credit a reply frame carries: told to `on_written` when the frame is dropped,
/// which the outbox does once it is written. The core only fills in `tags`; the actor
/// gives it the sink as it sends the frame.
#[derive(Default)]
pub struct Credits {
    pub tags: Vec<StreamCredit>,
    pub on_written: Option<CreditSink>,
}

impl fmt::Debug for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.tags).finish()
    }
}

impl Credits {
    /// Takes over `other`'s credit (told with this frame's, not when `other` is dropped).
    fn absorb(&mut self, other: &mut Credits) {
        for tag in other.tags.drain(..) {
            match self.tags.last_mut() {
                Some(last) if last.worker == tag.worker && last.req_id == tag.req_id => last.n += tag.n,
                _ => self.tags.push(tag),
            }
        }
    }
}

impl Drop for Credits {
    fn drop(&mut self) {
        if let Some(sink) = self.on_written.take()
            && !self.tags.is_empty()
        {
            sink(std::mem::take(&mut self.tags));
        }
    }
}

impl Outgoing for ReplyFrame {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn consume(&mut self, n: usize) {
        self.bytes.drain(..n);
    }
}

impl ReplyFrame {
    pub fn new(bytes: Vec<u8>, slot: Option<tokio::sync::OwnedSemaphorePermit>) -> ReplyFrame {
        ReplyFrame {
            bytes,
            slot,
            credits: Credits::default(),
        }
    }

    /// Appends another reply to the same connection: written after this one, and its slot
    /// (and its chunks' credit) freed with this one's.
    pub(super) fn join(&mut self, mut other: ReplyFrame) {
        self.bytes.extend_from_slice(&other.bytes);
        self.credits.absorb(&mut other.credits);
        match (&mut self.slot, other.slot) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}
