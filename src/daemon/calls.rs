//! The call socket server (INTERFACE section 5). Per connection: a reader that parses
//! requests and hands each to its pool without waiting for the result, and a reply path:
//! a reply is written straight into the socket when nothing waits before it (a
//! non-blocking write), otherwise it queues for the connection's writer task, which sends
//! replies in completion order, batching whatever is ready into one write. A slow caller
//! only slows its own connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::pool::{Call, PoolHandle, PoolMsg, ReplyFrame};
use super::socket::Access;
use super::write_all::write_all;
use crate::proto::call::{CALL_MAX, CallRequest, ErrorKind, IN_FLIGHT_PER_CONNECTION, error_frame, sniff_id};
use crate::proto::frame;
use crate::proto::worker::encode_call;

/// Pools by name, as the call server routes them.
pub type PoolTable = Arc<HashMap<String, PoolHandle>>;

/// Where a call's reply frame goes: its caller's connection. Closed when the caller hung
/// up or stopped reading; its queued calls are then dropped instead of run.
#[derive(Debug, Clone)]
pub struct ReplyTx {
    socket: Arc<OwnedWriteHalf>,
    /// Replies (or the unwritten rest of one) handed to the writer task and not yet
    /// written whole; while any is, later replies queue behind it to keep their order.
    queued: Arc<AtomicUsize>,
    /// To the writer task; it ends, closing this, when the peer stops reading.
    tx: mpsc::UnboundedSender<ReplyFrame>,
}

impl ReplyTx {
    /// The replies of one caller's connection; starts its writer task (inside the runtime).
    pub fn new(writer: OwnedWriteHalf) -> ReplyTx {
        let (tx, rx) = mpsc::unbounded_channel();
        let socket = Arc::new(writer);
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_replies(socket.clone(), queued.clone(), rx));
        ReplyTx { socket, queued, tx }
    }

    /// Writes a reply, or queues what the socket does not take at once. Its in-flight slot
    /// is freed once the whole reply is written.
    pub fn send(&self, mut frame: ReplyFrame) {
        if self.tx.is_closed() {
            return;
        }
        if self.queued.load(Ordering::Acquire) == 0 {
            match self.socket.try_write(&frame.bytes) {
                Ok(n) if n == frame.bytes.len() => return,
                Ok(n) => {
                    frame.bytes.drain(..n);
                }
                // Would block, or broken: the writer task waits, or finds out and ends.
                Err(_) => {}
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(frame).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Whether both lead to the same caller's connection.
    pub fn same_connection(&self, other: &ReplyTx) -> bool {
        Arc::ptr_eq(&self.socket, &other.socket)
    }
}

/// An error reply pitd sends before a call reaches a pool (no in-flight slot held).
fn reply(tx: &ReplyTx, bytes: Vec<u8>) {
    tx.send(ReplyFrame { bytes, slot: None });
}

/// Bytes of an oversized request read before answering `too_large`, to find its id.
const ID_SNIFF_BYTES: usize = 64;

/// pitd's call ids on worker pipes: unique per daemon run.
static NEXT_REQ_ID: AtomicU64 = AtomicU64::new(1);

/// Pools as the call server sees them: replaced wholesale on reload.
pub type PoolTableRx = tokio::sync::watch::Receiver<PoolTable>;

pub async fn serve(listener: UnixListener, pools: PoolTableRx, access: Access, stop: CancellationToken) {
    super::socket::accept_loop(listener, "call socket", stop, |stream| {
        connection(stream, pools.clone(), access)
    })
    .await
}

async fn connection(stream: UnixStream, pools: PoolTableRx, access: Access) {
    let allowed = stream
        .peer_cred()
        .is_ok_and(|c| access.allows(c.uid(), c.gid(), c.pid()));
    let (reader, writer) = stream.into_split();
    let tx = ReplyTx::new(writer);
    if !allowed {
        reply(
            &tx,
            error_frame(b"null", ErrorKind::BadRequest, "not allowed to use this call socket"),
        );
        return;
    }
    read_requests(reader, &pools, tx).await;
}

/// Reads frames until EOF or a broken stream. An oversized frame is answered `too_large`
/// and skipped, so the connection stays usable. The buffer starts small and grows with the
/// frames, so a thousand idle connections cost little.
async fn read_requests(mut reader: OwnedReadHalf, pools: &PoolTableRx, tx: ReplyTx) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut skip: usize = 0;
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.len().max(4096));
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if skip > 0 {
            let k = skip.min(buf.len());
            buf.drain(..k);
            skip -= k;
        }
        let mut at = 0;
        loop {
            match frame::decode(&buf[at..], CALL_MAX) {
                Ok(Some((range, used))) => {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    handle_request(&buf[at..][range], pools, &tx, Instant::now(), slot);
                    at += used;
                }
                Ok(None) => break,
                Err(frame::FrameError::TooLarge { len, max }) => {
                    // Wait for the start of the body: the reply should carry the call's id.
                    let have = buf.len() - at - 4;
                    if have < ID_SNIFF_BYTES {
                        break;
                    }
                    let id = sniff_id(&buf[at + 4..]);
                    let msg = format!("request of {len} bytes exceeds the limit of {max} bytes");
                    reply(&tx, error_frame(&id, ErrorKind::TooLarge, &msg));
                    skip = len.saturating_sub(have);
                    at = buf.len().min(at + 4 + len);
                    if skip > 0 {
                        break;
                    }
                }
                Err(_) => return,
            }
        }
        buf.drain(..at);
        if buf.is_empty() && buf.capacity() > 64 * 1024 {
            // A large request has passed: give its memory back.
            buf = Vec::with_capacity(4096);
        }
    }
}

fn handle_request(body: &[u8], pools: &PoolTableRx, tx: &ReplyTx, now: Instant, slot: OwnedSemaphorePermit) {
    let req: CallRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("invalid call request: {e}");
            reply(tx, error_frame(&sniff_id(body), ErrorKind::BadRequest, &msg));
            return;
        }
    };
    let id = req.id.get().as_bytes();
    let pools = pools.borrow();
    let Some(pool) = pools.get(req.pool.as_ref()) else {
        let mut names: Vec<&str> = pools.keys().map(String::as_str).collect();
        names.sort_unstable();
        let msg = format!("no pool named {:?} (pools: {})", req.pool, names.join(", "));
        reply(tx, error_frame(id, ErrorKind::NoSuchPool, &msg));
        return;
    };
    if req.method.len() > u16::MAX as usize || req.session.as_ref().is_some_and(|s| s.len() > u16::MAX as usize) {
        reply(
            tx,
            error_frame(id, ErrorKind::BadRequest, "method or session longer than 65535 bytes"),
        );
        return;
    }
    let req_id = NEXT_REQ_ID.fetch_add(1, Ordering::Relaxed);
    let args = req.args.map_or(&b"null"[..], |a| a.get().as_bytes());
    let call = Call {
        req_id,
        client_id: id.into(),
        frame: encode_call(req_id, 0, &req.method, req.session.as_deref(), args),
        method: req.method.into_owned(),
        session: req.session.map(|s| s.into_owned()),
        timeout: req.timeout_ms.map(Duration::from_millis),
        idempotent: req.idempotent,
        retried: false,
        reply: tx.clone(),
        slot: Some(slot),
        received: now,
    };
    if !pool.send(PoolMsg::Call(call)) {
        reply(tx, error_frame(id, ErrorKind::ShuttingDown, "pitd is shutting down"));
    }
}

/// Writes the replies `ReplyTx::send` could not write at once, in order; ends when every
/// sender is gone (the reader hit EOF and every call of this connection was answered) or
/// the peer stopped reading.
async fn write_replies(
    socket: Arc<OwnedWriteHalf>,
    queued: Arc<AtomicUsize>,
    mut rx: mpsc::UnboundedReceiver<ReplyFrame>,
) {
    let mut batch = Vec::new();
    // Slots are freed only once their replies are written.
    let mut written = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        written.clear();
        batch.extend_from_slice(&first.bytes);
        written.push(first.slot);
        while batch.len() < 256 * 1024
            && let Ok(more) = rx.try_recv()
        {
            batch.extend_from_slice(&more.bytes);
            written.push(more.slot);
        }
        if write_all(socket.as_ref(), &batch).await.is_err() {
            return;
        }
        queued.fetch_sub(written.len(), Ordering::AcqRel);
    }
}
