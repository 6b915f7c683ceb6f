//! The call socket server (INTERFACE section 5). Per connection: a reader that parses
//! requests and hands each to its pool without waiting for the result, and a reply path:
//! a reply is written straight into the socket when nothing waits before it (a
//! non-blocking write), otherwise it queues for the connection's writer task, which sends
//! replies in completion order, batching whatever is ready into one write. A slow caller
//! only slows its own connection. `{"cancel": id}` cancels one of the connection's calls.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::daemon::pool::{Call, PoolHandle, PoolMsg, PoolTable, ReplyFrame, ReplyTx};
use crate::daemon::serve::socket::Access;
use crate::proto::call::{
    CALL_MAX, CallRequest, CancelRequest, ErrorKind, IN_FLIGHT_PER_CONNECTION, error_frame, sniff_id,
};
use crate::proto::frame::{FrameBuf, FrameError};

/// An error reply pitd sends before a call reaches a pool (no in-flight slot held).
fn reply(tx: &ReplyTx, bytes: Vec<u8>) {
    // A caller that hung up gets nothing.
    let _ = tx.send(ReplyFrame::new(bytes, None));
}

/// Bytes of an oversized request read before answering `too_large`, to find its id.
const ID_SNIFF_BYTES: usize = 64;

/// Pools as the call server sees them: replaced wholesale on reload.
pub type PoolTableRx = tokio::sync::watch::Receiver<PoolTable>;

pub async fn serve(listener: UnixListener, pools: PoolTableRx, access: Access, stop: CancellationToken) {
    crate::daemon::serve::socket::accept_loop(listener, "call socket", stop, |stream| {
        connection(stream, pools.clone(), access)
    })
    .await
}

async fn connection(stream: UnixStream, pools: PoolTableRx, access: Access) {
    let allowed = stream
        .peer_cred()
        .is_ok_and(|c| access.allows(c.uid(), c.gid(), c.pid()));
    let (reader, writer) = stream.into_split();
    let tx = ReplyTx::new(writer, None);
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
    let mut frames = FrameBuf::new(CALL_MAX);
    // The pools this caller has called: told when it hangs up.
    let mut called: Vec<PoolHandle> = Vec::new();
    loop {
        if !matches!(frames.read_from_async(&mut reader).await, Ok(n) if n > 0) {
            // Hung up, not just done sending (a caller may shut down its writing side and
            // still read its replies).
            if hung_up(&reader) {
                for pool in called {
                    pool.send(PoolMsg::CallerGone(tx.clone()));
                }
            }
            return;
        }
        loop {
            match frames.next_frame() {
                Ok(Some(body)) => {
                    if let Some(cancel) = as_cancel(body) {
                        // The call is in one of the pools this connection called.
                        let client_id: Box<[u8]> = cancel.cancel.get().as_bytes().into();
                        for pool in &called {
                            pool.send(PoolMsg::Cancel {
                                caller: tx.clone(),
                                client_id: client_id.clone(),
                            });
                        }
                        continue;
                    }
                    // A cancel takes no slot: it must get through when all are taken.
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    if let Some(pool) = handle_request(body, pools, &tx, Instant::now(), slot)
                        && !called.iter().any(|p| p.name == pool.name)
                    {
                        called.push(pool);
                    }
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max }) => {
                    // Wait for the start of the body: the reply should carry the call's id.
                    let head = frames.partial_body();
                    if head.len() < ID_SNIFF_BYTES.min(len) {
                        break;
                    }
                    let id = sniff_id(head);
                    let msg = format!("request of {len} bytes exceeds the limit of {max} bytes");
                    reply(&tx, error_frame(&id, ErrorKind::TooLarge, &msg));
                    frames.skip_frame(len);
                }
                Err(_) => return,
            }
        }
    }
}

/// A `{"cancel": id}` request. A call request is not parsed a second time to find out:
/// only a short body naming `"cancel"` is.
fn as_cancel(body: &[u8]) -> Option<CancelRequest<'_>> {
    const MAX_CANCEL: usize = 256;
    let named = body.len() <= MAX_CANCEL && body.windows(8).any(|w| w == b"\"cancel\"");
    named.then(|| serde_json::from_slice(body).ok()).flatten()
}

/// Whether the peer closed its socket altogether (POLLHUP), not only its writing side.
fn hung_up(reader: &OwnedReadHalf) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let stream: &UnixStream = reader.as_ref();
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLHUP)),
        Err(_) => false,
    }
}

/// Hands one request to its pool (returned), or answers it at once.
fn handle_request(
    body: &[u8],
    pools: &PoolTableRx,
    tx: &ReplyTx,
    now: Instant,
    slot: OwnedSemaphorePermit,
) -> Option<PoolHandle> {
    let req: CallRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("invalid call request: {e}");
            reply(tx, error_frame(&sniff_id(body), ErrorKind::BadRequest, &msg));
            return None;
        }
    };
    let id = req.id.get().as_bytes();
    let pools = pools.borrow();
    let Some(pool) = pools.get(req.pool.as_ref()) else {
        let mut names: Vec<&str> = pools.keys().map(String::as_str).collect();
        names.sort_unstable();
        let msg = format!("no pool named {:?} (pools: {})", req.pool, names.join(", "));
        reply(tx, error_frame(id, ErrorKind::NoSuchPool, &msg));
        return None;
    };
    if req.method.len() > u16::MAX as usize || req.session.as_ref().is_some_and(|s| s.len() > u16::MAX as usize) {
        reply(
            tx,
            error_frame(id, ErrorKind::BadRequest, "method or session longer than 65535 bytes"),
        );
        return None;
    }
    let id: Box<[u8]> = id.into();
    if !pool.send(PoolMsg::Call(Call::new(req, tx.clone(), Some(slot), now))) {
        reply(tx, error_frame(&id, ErrorKind::ShuttingDown, "pitd is shutting down"));
        return None;
    }
    Some(pool.clone())
}
