//! The one way pitd writes to a peer that may be slow: a caller's connection (replies) and
//! a worker's pipe (calls, pings). An `Outbox` writes at once when nothing waits before
//! (a non-blocking write: the peer gets its bytes before pitd turns to anything else);
//! what the kernel does not take goes, in order, to the outbox's writer task, which writes
//! whatever has queued up in one batch. An item lives until its bytes are written (a
//! reply's in-flight slot is freed then). A peer that stops reading closes the outbox.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::unix::{OwnedWriteHalf, pipe};
use tokio::sync::mpsc;

/// Bytes the writer task puts in one write at most (beyond that, the next write).
const BATCH_BYTES: usize = 256 * 1024;

/// What an outbox carries: bytes to write, and whatever must live until they are.
pub trait Outgoing: Send + 'static {
    fn bytes(&self) -> &[u8];
    /// Drops the first `n` bytes (the kernel took them).
    fn consume(&mut self, n: usize);
}

impl Outgoing for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn consume(&mut self, n: usize) {
        self.drain(..n);
    }
}

/// See the module doc.
#[derive(Debug)]
pub struct Outbox<W, T> {
    sink: Arc<W>,
    /// Items (or the unwritten rest of one) handed to the writer task and not yet written
    /// whole; while any is, later items queue behind them to keep their order.
    queued: Arc<AtomicUsize>,
    /// Items that may wait at once (`None`: no limit); beyond it `send` gives the item back.
    limit: Option<usize>,
    /// To the writer task; it ends, closing this, when the peer stops reading.
    tx: mpsc::UnboundedSender<T>,
}

impl<W, T> Clone for Outbox<W, T> {
    fn clone(&self) -> Self {
        Outbox {
            sink: self.sink.clone(),
            queued: self.queued.clone(),
            limit: self.limit,
            tx: self.tx.clone(),
        }
    }
}

impl<W: TryWrite + Send + Sync + 'static, T: Outgoing> Outbox<W, T> {
    /// An outbox for `sink`, its writer task started (inside the runtime).
    pub fn new(sink: W, limit: Option<usize>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Arc::new(sink);
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_queued(sink.clone(), queued.clone(), rx));
        Outbox {
            sink,
            queued,
            limit,
            tx,
        }
    }

    /// Writes `item` now, or queues what the kernel does not take. Gives it back when the
    /// peer is gone or, past the limit, not reading.
    pub fn send(&self, mut item: T) -> Result<(), T> {
        if self.tx.is_closed() {
            return Err(item);
        }
        if self.queued.load(Ordering::Acquire) == 0 {
            match self.sink.try_write(item.bytes()) {
                Ok(n) if n == item.bytes().len() => return Ok(()),
                Ok(n) => item.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer is gone (or closed its end).
                Err(_) => return Err(item),
            }
        }
        if self.limit.is_some_and(|max| self.queued.load(Ordering::Acquire) >= max) {
            return Err(item);
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(item).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            e.0
        })
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The sink itself (a worker's pipe, to see whether it is still open).
    pub fn sink(&self) -> &W {
        &self.sink
    }
}

/// Writes what `Outbox::send` could not write at once, in order, what has queued up in one
/// batch; ends when every outbox handle is gone or the peer stopped reading.
async fn write_queued<W: TryWrite, T: Outgoing>(
    sink: Arc<W>,
    queued: Arc<AtomicUsize>,
    mut rx: mpsc::UnboundedReceiver<T>,
) {
    let mut batch = Vec::new();
    // Items live until their bytes are written.
    let mut written: Vec<T> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(first.bytes());
        written.push(first);
        while batch.len() < BATCH_BYTES
            && let Ok(more) = rx.try_recv()
        {
            batch.extend_from_slice(more.bytes());
            written.push(more);
        }
        if write_all(sink.as_ref(), &batch).await.is_err() {
            return;
        }
        queued.fetch_sub(written.len(), Ordering::AcqRel);
        written.clear();
    }
}

/// A non-blocking fd that tokio can wait on for writability.
pub trait TryWrite {
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize>;
}

impl TryWrite for OwnedWriteHalf {
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        OwnedWriteHalf::writable(self)
    }
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        OwnedWriteHalf::try_write(self, bytes)
    }
}

impl TryWrite for pipe::Sender {
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        pipe::Sender::writable(self)
    }
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        pipe::Sender::try_write(self, bytes)
    }
}

/// Writes all of `bytes`; an error means the peer is gone (or closed its end).
pub async fn write_all(to: &impl TryWrite, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_outbox_keeps_order_past_a_full_pipe_and_refuses_past_its_limit() {
        let (tx, mut rx) = pipe::pipe().expect("a pipe");
        let outbox: Outbox<pipe::Sender, Vec<u8>> = Outbox::new(tx, Some(2));
        // More than a pipe holds: the rest queues for the writer task.
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        outbox.send(big.clone()).unwrap();
        outbox.send(b"second".to_vec()).unwrap();
        assert_eq!(outbox.send(b"third".to_vec()), Err(b"third".to_vec()), "past its limit");
        let mut got = vec![0; big.len() + 6];
        tokio::io::AsyncReadExt::read_exact(&mut rx, &mut got).await.unwrap();
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..], b"second");
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_pipe_arrives_whole_and_a_closed_pipe_is_an_error() {
        let (tx, mut rx) = pipe::pipe().expect("a pipe");
        let batch: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut rx, &mut got)
                .await
                .map(|_| got)
        });
        write_all(&tx, &batch).await.expect("written");
        drop(tx);
        assert_eq!(reader.await.unwrap().unwrap(), batch);

        let (tx, rx) = pipe::pipe().expect("a pipe");
        drop(rx);
        assert!(write_all(&tx, b"nobody reads").await.is_err());
    }
}
