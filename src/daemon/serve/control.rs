//! The control socket server: one task per connection, framed JSON requests, typed replies.
//! A peer that is not allowed, sends garbage or an oversized frame gets an error reply and
//! a closed connection; nothing a client sends can take pitd down.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::daemon::pool::PoolMsg;
use crate::daemon::serve::socket::Access;
use crate::daemon::supervisor::{Refusal, Supervisor};
use crate::proto::control::{ControlErrorKind, Reply, Request};
use crate::proto::frame::{self, CONTROL_MAX, FrameBuf, FrameError};
use tokio::sync::oneshot;

/// A connection that sends nothing for this long is closed: idle clients cannot pile up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn serve(listener: UnixListener, sup: Arc<Supervisor>, access: Access, stop: CancellationToken) {
    let accept_stop = stop.clone();
    crate::daemon::serve::socket::accept_loop(listener, "control socket", accept_stop, |stream| {
        connection(stream, sup.clone(), access, stop.clone())
    })
    .await
}

async fn connection(mut stream: UnixStream, sup: Arc<Supervisor>, access: Access, stop: CancellationToken) {
    let allowed = stream
        .peer_cred()
        .is_ok_and(|c| access.allows(c.uid(), c.gid(), c.pid()));
    if !allowed {
        let reply = refuse(
            ControlErrorKind::PermissionDenied,
            "not allowed to use this control socket",
        );
        return refuse_and_close(stream, reply).await;
    }
    let mut frames = FrameBuf::new(CONTROL_MAX);
    loop {
        let parsed = loop {
            match frames.next_frame() {
                Ok(Some(body)) => break serde_json::from_slice::<Request>(body),
                Ok(None) => {}
                Err(FrameError::TooLarge { len, max }) => {
                    let msg = format!("request of {len} bytes exceeds the limit of {max}");
                    return refuse_and_close(stream, refuse(ControlErrorKind::BadRequest, &msg)).await;
                }
                Err(_) => return,
            }
            tokio::select! {
                r = tokio::time::timeout(IDLE_TIMEOUT, frames.read_from_async(&mut stream)) => match r {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                },
                _ = stop.cancelled() => return,
            }
        };
        let request = match parsed {
            Ok(r) => r,
            Err(e) => {
                let reply = refuse(ControlErrorKind::BadRequest, &format!("invalid request: {e}"));
                return refuse_and_close(stream, reply).await;
            }
        };
        if dispatch(request, &mut stream, &sup).await.is_err() {
            return;
        }
    }
}

/// Answers one request. `Err` means the connection is unusable.
async fn dispatch(request: Request, stream: &mut UnixStream, sup: &Supervisor) -> std::io::Result<()> {
    match request {
        Request::Status { pool } => {
            let reply = sup
                .status(pool.as_deref())
                .await
                .map(Reply::Status)
                .unwrap_or_else(refusal);
            send(stream, &reply).await
        }
        Request::Logs { target, lines, follow } => {
            let filter = match sup.log_filter(&target).await {
                Ok(f) => f,
                Err(r) => return send(stream, &refusal(r)).await,
            };
            // Subscribe before taking the tail so no line falls between the two.
            let mut live = sup.output.subscribe();
            let tail = sup.output.tail(lines, |l| filter.matches(l));
            let last_seq = tail.last().map(|l| l.seq);
            send(stream, &Reply::Logs { lines: tail }).await?;
            if !follow {
                return Ok(());
            }
            loop {
                tokio::select! {
                    line = live.recv() => match line {
                        Ok(l) if filter.matches(&l) && last_seq.is_none_or(|s| l.seq > s) => send(stream, &Reply::LogLine(l)).await?,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return Ok(()),
                    },
                    _ = sup.shutdown.cancelled() => return Ok(()),
                }
            }
        }
        Request::Recycle { target, now } => {
            let r = sup
                .command(&target, |worker, reply| PoolMsg::Recycle { worker, now, reply })
                .await;
            send(stream, &done(r)).await
        }
        Request::Drain { target, wait } => {
            let (done_tx, done_rx) = oneshot::channel();
            let done_tx = wait.then_some(done_tx);
            let r = sup
                .command(&target, |worker, reply| PoolMsg::Drain {
                    worker,
                    done: done_tx,
                    reply,
                })
                .await;
            if wait && r.is_ok() {
                tokio::select! {
                    _ = done_rx => {}
                    _ = sup.shutdown.cancelled() => {}
                }
            }
            send(stream, &done(r)).await
        }
        Request::Resume { pool } => {
            let r = sup.command(&pool, |_, reply| PoolMsg::Resume { reply }).await;
            send(stream, &done(r)).await
        }
        Request::Scale { pool, size } => {
            let r = sup.command(&pool, |_, reply| PoolMsg::Scale { size, reply }).await;
            send(stream, &done(r)).await
        }
        Request::Events { follow } => {
            let (events, mut live) = sup.events.recent_and_subscribe();
            send(stream, &Reply::Events { events }).await?;
            if !follow {
                return Ok(());
            }
            loop {
                tokio::select! {
                    ev = live.recv() => match ev {
                        Ok(ev) => send(stream, &Reply::Event(ev)).await?,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return Ok(()),
                    },
                    _ = sup.shutdown.cancelled() => return Ok(()),
                }
            }
        }
        Request::Reload => send(stream, &done(sup.reload())).await,
        Request::Metrics => {
            send(
                stream,
                &Reply::Metrics {
                    text: sup.metrics_text().await,
                },
            )
            .await
        }
        Request::Probe { kind, timeout_ms } => {
            let answer = sup.probe(kind, Duration::from_millis(timeout_ms)).await;
            let reply = Reply::Probe {
                ok: answer.is_ok(),
                reason: answer.err(),
            };
            send(stream, &reply).await
        }
        Request::Shutdown => {
            sup.stop_requested.cancel();
            send(
                stream,
                &Reply::Done {
                    message: "pitd is shutting down".into(),
                },
            )
            .await
        }
    }
}

/// Sends a last error reply and closes without a reset: unread input at close() would make
/// the kernel send RST, and the peer could lose the reply explaining why it was cut off.
async fn refuse_and_close(mut stream: UnixStream, reply: Reply) {
    use tokio::io::AsyncReadExt;
    if send(&mut stream, &reply).await.is_err() {
        return;
    }
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
    let mut sink = [0u8; 4096];
    let mut budget = 1024 * 1024;
    let drain = async {
        while budget > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget -= n.min(budget),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

fn refuse(kind: ControlErrorKind, message: &str) -> Reply {
    Reply::Error {
        kind,
        message: message.to_string(),
    }
}

fn done(r: Result<String, Refusal>) -> Reply {
    r.map(|message| Reply::Done { message }).unwrap_or_else(refusal)
}

fn refusal(r: Refusal) -> Reply {
    Reply::Error {
        kind: r.kind,
        message: r.message,
    }
}

async fn send(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let body = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    frame::write_frame(stream, &body).await
}
