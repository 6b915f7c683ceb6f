//! The port a call's reply leaves by. In pitd it is the caller's connection (an `Outbox`
//! over the socket's write half); in tests anything that records frames. The pool only
//! sends frames, asks whether the caller is still there, and tells two callers apart, so a
//! test of the call path needs no socket and no runtime turns to read its replies.

use std::fmt;
use std::sync::Arc;

use crate::daemon::outbox::{Outbox, Outgoing};

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
    /// Appends another reply to the same connection: written after this one, and its slot
    /// freed with this one's.
    pub(super) fn join(&mut self, other: ReplyFrame) {
        self.bytes.extend_from_slice(&other.bytes);
        match (&mut self.slot, other.slot) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}
