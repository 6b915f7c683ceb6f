//! The HTTP front door (INTERFACE section 10): calls and streams over HTTP/1.1 and HTTP/2,
//! with TLS (rustls) and bearer tokens, into the same pool path as the call socket. Secure
//! by default (the spec refuses a reachable address without TLS and tokens or client
//! certificates); bounded: request bodies (`max_body`), the time to send a request head or
//! to start the next one (`header_timeout`), connections (`max_connections`), and each
//! principal's calls in flight.
//!
//! - `principals`: the tokens file, and who a token is.
//! - `tls`: certificates and keys, client certificates, the checks of `pitd --check`.
//! - `flight`: a call in flight at the door (counted; its pool told if its client goes).
//! - `handler`: one request: routing, who may call what, the call, its reply.
//! - `reply`: the responses the door makes itself: error bodies and their statuses.
//! - `request`: what a call's request says (the `Pit-*` headers), its body within `max_body`.
//! - `sse`: a stream's reply body as server-sent events.

mod flight;
mod handler;
mod io;
pub mod principals;
mod reply;
mod request;
mod sse;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use self::principals::{Principal, Principals};
use super::metrics::Metrics;
use super::pool::PoolTable;
use crate::proto::status::DoorStatus;
use crate::spec::types::HttpSpec;

/// What the door asks the daemon: its probes (`GET /v1/ready`, `/v1/live`).
pub trait Probes: Send + Sync {
    fn ready(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
    fn live(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// The door's state, shared by its connections and read by status and reload.
pub struct DoorState {
    spec: HttpSpec,
    /// `None`: no tokens file (loopback, or client certificates alone).
    principals: RwLock<Option<Arc<Principals>>>,
    pools: watch::Receiver<PoolTable>,
    metrics: Arc<Metrics>,
    probes: Arc<dyn Probes>,
    in_flight: AtomicU64,
    connections: AtomicU64,
}

impl DoorState {
    /// The door's state, its tokens file read (an unreadable or invalid one is an error).
    pub fn new(
        spec: HttpSpec,
        pools: watch::Receiver<PoolTable>,
        metrics: Arc<Metrics>,
        probes: Arc<dyn Probes>,
    ) -> Result<DoorState, String> {
        let principals = spec.tokens.as_deref().map(Principals::load).transpose()?.map(Arc::new);
        Ok(DoorState {
            spec,
            principals: RwLock::new(principals),
            pools,
            metrics,
            probes,
            in_flight: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        })
    }

    /// Re-reads the tokens file (SIGHUP, `pitctl reload`). A file that cannot be read or
    /// is invalid keeps the principals that were loaded, as a bad spec keeps the running
    /// one; calls in flight keep the principal they started with.
    pub fn reload_tokens(&self) -> Result<String, String> {
        let Some(path) = &self.spec.tokens else {
            return Ok(String::new());
        };
        match Principals::load(path) {
            Ok(p) => {
                let names = p.names().join(", ");
                *self.principals.write().expect("principals lock") = Some(Arc::new(p));
                tracing::info!("tokens reloaded from {}: {names}", path.display());
                Ok(format!("tokens reloaded: {names}"))
            }
            Err(e) => {
                let msg = format!("tokens not reloaded, the loaded ones are kept: {e}");
                tracing::error!("{msg}");
                Err(msg)
            }
        }
    }

    pub fn spec(&self) -> &HttpSpec {
        &self.spec
    }

    fn principals(&self) -> Option<Arc<Principals>> {
        self.principals.read().expect("principals lock").clone()
    }

    pub fn status(&self) -> DoorStatus {
        DoorStatus {
            listen: self.spec.listen.to_string(),
            tls: self.spec.tls.is_some(),
            client_certificates: self.spec.client_ca.is_some(),
            principals: self.principals().map(|p| p.names()).unwrap_or_default(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }
}

/// `pitd --check`: the door's certificate and key (readable, matching, in their validity
/// period), its client CA, and its tokens file.
pub fn check(spec: &HttpSpec) -> Result<(), String> {
    tls::check(spec)?;
    if let Some(path) = &spec.tokens {
        Principals::load(path)?;
    }
    Ok(())
}

/// Serves the door on `listener` until `stop`, with TLS when `tls` is given
/// (`tls::server_config`, read once at start).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    door: Arc<DoorState>,
    stop: CancellationToken,
) {
    let tls = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(door.spec.max_connections as usize));
    loop {
        // At `max_connections`, the next connection waits in the listen backlog.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("never closed"),
            _ = stop.cancelled() => return,
        };
        let (stream, _) = tokio::select! {
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("HTTP door: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let door = door.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            door.connections.fetch_add(1, Ordering::Relaxed);
            connection(stream, tls, &door, &stop).await;
            door.connections.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    tls: Option<TlsAcceptor>,
    door: &Arc<DoorState>,
    stop: &CancellationToken,
) {
    let header_timeout = door.spec.header_timeout;
    let (io, name) = match tls {
        None => (io::Io::Plain(stream), "anonymous".to_string()),
        Some(acceptor) => {
            // The handshake is part of the request head's time.
            let Ok(Ok(tls)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await else {
                return;
            };
            let name = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(tls::common_name)
                .map_or_else(|| "anonymous".to_string(), |cn| format!("cert:{cn}"));
            (io::Io::Tls(Box::new(tls)), name)
        }
    };
    let service = handler::DoorService {
        door: door.clone(),
        conn: Arc::new(Principal::open(&name)),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    // Until it ends, or until the daemon stops: then gracefully (requests in flight finish,
    // no new ones start).
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
