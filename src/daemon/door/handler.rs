//! One request at the door. `POST /v1/call/{pool}/{method}`: who is calling (a bearer
//! token, or the connection's client certificate), whether it may call that pool and has a
//! call to spare, then the call itself, made as the call socket makes it (`Call::new`), into
//! the same pool path; its reply comes back through a port of this request's own and
//! becomes a JSON body, or server-sent events for a stream. `GET /v1/ready` and
//! `/v1/live` answer as `pitctl probe` does. Nothing reaches a pool before the caller is
//! known and allowed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::DoorState;
use super::flight::InFlight;
use super::principals::Principal;
use super::sse::{Reply, SseBody, error_body, read_reply};
use crate::daemon::pool::{Call, PoolHandle, PoolMsg, ReplyFrame, ReplyPort, ReplyTx};
use crate::proto::call::{CallRequest, ErrorKind};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The service of one connection; `conn` is who the connection is when no token says
/// otherwise (anonymous, or a client certificate's holder).
#[derive(Clone)]
pub struct DoorService {
    pub door: Arc<DoorState>,
    pub conn: Arc<Principal>,
}

impl hyper::service::Service<Request<Incoming>> for DoorService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let (door, conn) = (self.door.clone(), self.conn.clone());
        Box::pin(async move { Ok(handle(door, conn, req).await) })
    }
}

async fn handle(door: Arc<DoorState>, conn: Arc<Principal>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/v1/ready") => probe(door.probes.ready().await),
        (&Method::GET, "/v1/live") => probe(door.probes.live().await),
        (method, p) if p.starts_with("/v1/call/") => {
            if method != Method::POST {
                let mut r = error(ErrorKind::BadRequest, &format!("{p} takes POST"), None);
                *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                r.headers_mut().insert("allow", HeaderValue::from_static("POST"));
                return r;
            }
            let (parts, body) = req.into_parts();
            let mut body = Some(body);
            let (principal, pool, response) = call(&door, conn, &parts, &mut body, &path).await;
            if let Some(unread) = body {
                // Refused before its body was read: it is read to the end (bounded) while
                // the answer goes out, so HTTP/2 has no reason to reset the stream and the
                // client sees the status, not an aborted upload.
                discard(unread, door.spec.max_body, door.spec.header_timeout);
            }
            door.metrics.http_request(&principal, &pool, response.status().as_u16());
            response
        }
        _ => {
            let mut r = error(
                ErrorKind::BadRequest,
                &format!("no such endpoint: {path} (POST /v1/call/POOL/METHOD, GET /v1/ready, GET /v1/live)"),
                None,
            );
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

fn probe(answer: Result<(), String>) -> Response<Body> {
    let (status, text) = match answer {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    };
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r
}

/// A call: returns the principal's name and the pool, for the metrics, with the response.
async fn call(
    door: &Arc<DoorState>,
    conn: Arc<Principal>,
    head: &hyper::http::request::Parts,
    unread: &mut Option<Incoming>,
    path: &str,
) -> (String, String, Response<Body>) {
    let mut parts = path["/v1/call/".len()..].splitn(2, '/');
    let (pool_name, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if pool_name.is_empty() || method.is_empty() || method.contains('/') {
        let r = status(
            error(
                ErrorKind::BadRequest,
                &format!("expected /v1/call/POOL/METHOD, found {path}"),
                None,
            ),
            StatusCode::NOT_FOUND,
        );
        return (conn.name.clone(), String::new(), r);
    }
    let principal = match who(door, conn, &head.headers) {
        Ok(p) => p,
        Err(r) => return ("-".into(), pool_name.into(), r),
    };
    let name = principal.name.clone();
    let respond = |r: Response<Body>| (name.clone(), pool_name.to_string(), r);
    if !principal.may_call(pool_name) {
        let msg = format!("{} may not call pool {pool_name}", principal.name);
        return respond(error(ErrorKind::Forbidden, &msg, None));
    }
    let Some(pool) = door.pools.borrow().get(pool_name).cloned() else {
        return respond(error(
            ErrorKind::NoSuchPool,
            &format!("no pool named {pool_name:?}"),
            None,
        ));
    };
    let permit = match &principal.in_flight {
        Some(slots) => match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let msg = format!(
                    "{} has {} calls in flight already (max_in_flight)",
                    principal.name,
                    principal.max_in_flight.unwrap_or(0)
                );
                return respond(error(ErrorKind::Quota, &msg, None));
            }
        },
        None => None,
    };
    let options = match Options::from(&head.headers) {
        Ok(o) => o,
        Err(msg) => return respond(error(ErrorKind::BadRequest, &msg, None)),
    };
    let request_body = unread.take().expect("the body is read once");
    let body = match body(&head.headers, request_body, door.spec.max_body).await {
        Ok(b) => b,
        Err(r) => return respond(r),
    };
    let args: Option<&RawValue> = match body.iter().all(u8::is_ascii_whitespace) {
        true => None,
        false => match serde_json::from_slice(&body) {
            Ok(a) => Some(a),
            Err(e) => {
                return respond(error(
                    ErrorKind::BadRequest,
                    &format!("the body is not JSON: {e}"),
                    None,
                ));
            }
        },
    };
    let id = RawValue::from_string("1".into()).expect("JSON");
    let request = CallRequest {
        id: &id,
        pool: pool_name.into(),
        method: method.into(),
        args,
        session: options.session.as_deref().map(Into::into),
        timeout_ms: options.timeout.map(|t| t.as_millis() as u64),
        idempotent: options.idempotent,
        stream: options.stream,
    };
    let stream = options.stream;
    respond(run(door, &principal, pool, request, permit, stream).await)
}

/// Who calls: the principal of the bearer token when the door has a tokens file, else the
/// connection's.
fn who(door: &DoorState, conn: Arc<Principal>, headers: &HeaderMap) -> Result<Arc<Principal>, Response<Body>> {
    let Some(principals) = door.principals() else {
        return Ok(conn);
    };
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match token {
        None => Err(error(
            ErrorKind::Unauthenticated,
            "expected an Authorization: Bearer TOKEN header",
            None,
        )),
        Some(t) => principals
            .find(t)
            .ok_or_else(|| error(ErrorKind::Unauthenticated, "unknown token", None)),
    }
}

/// The request headers a call reads.
struct Options {
    session: Option<String>,
    timeout: Option<Duration>,
    idempotent: bool,
    stream: bool,
}

impl Options {
    fn from(h: &HeaderMap) -> Result<Options, String> {
        let text = |name: &str| -> Result<Option<String>, String> {
            h.get(name)
                .map(|v| v.to_str().map(str::to_string).map_err(|_| format!("{name}: not text")))
                .transpose()
        };
        let timeout = match text("pit-timeout")? {
            None => None,
            Some(t) => Some(
                duration(&t)
                    .ok_or_else(|| format!("Pit-Timeout: expected a duration like 5s, 250ms or 0.5, found {t:?}"))?,
            ),
        };
        let idempotent = match text("pit-idempotent")?.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(format!("Pit-Idempotent: expected true or false, found {other:?}")),
        };
        let session = text("pit-session")?;
        if session.as_ref().is_some_and(|s| s.len() > u16::MAX as usize) {
            return Err("Pit-Session: longer than 65535 bytes".into());
        }
        let stream = h
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"));
        Ok(Options {
            session,
            timeout,
            idempotent,
            stream,
        })
    }
}

/// A duration with a unit, or a number of seconds.
fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Ok(_) => None,
        Err(_) => humantime::parse_duration(text).ok().filter(|d| !d.is_zero()),
    }
}

/// The request body, at most `max` bytes (413 beyond, before reading it when its length
/// says so).
async fn body(headers: &HeaderMap, body: Incoming, max: u64) -> Result<Bytes, Response<Body>> {
    let too_large = |len: Option<u64>| {
        let size = len.map_or_else(|| "more".to_string(), |n| n.to_string());
        error(
            ErrorKind::TooLarge,
            &format!("a body of {size} bytes exceeds max_body ({max} bytes)"),
            None,
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(declared));
    }
    match Limited::new(body, max as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(None)),
        Err(e) => Err(error(ErrorKind::BadRequest, &format!("reading the body: {e}"), None)),
    }
}

/// Reads a refused request's body to its end in the background, at most `max` bytes for
/// at most `within`.
fn discard(body: Incoming, max: u64, within: Duration) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(within, Limited::new(body, max as usize).collect()).await;
    });
}

/// Where this request's reply frames arrive from its pool.
#[derive(Debug)]
struct Port(mpsc::UnboundedSender<ReplyFrame>);

impl ReplyPort for Port {
    fn send(&self, frame: ReplyFrame) -> Result<(), ReplyFrame> {
        self.0.send(frame).map_err(|e| e.0)
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

async fn run(
    door: &Arc<DoorState>,
    principal: &Principal,
    pool: PoolHandle,
    request: CallRequest<'_>,
    quota: Option<OwnedSemaphorePermit>,
    stream: bool,
) -> Response<Body> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reply = ReplyTx::to(Port(tx));
    let call = Call::new(request, reply.clone(), None, Instant::now());
    door.in_flight.fetch_add(1, Ordering::Relaxed);
    door.metrics.http_in_flight(&principal.name, 1);
    let mut flight = InFlight {
        door: door.clone(),
        principal: principal.name.clone(),
        pool: pool.clone(),
        reply,
        answered: false,
        _quota: quota,
    };
    if !pool.send(PoolMsg::Call(call)) {
        flight.answered = true;
        return error(ErrorKind::ShuttingDown, "pitd is shutting down", None);
    }
    let Some(frame) = rx.recv().await else {
        flight.answered = true;
        return error(ErrorKind::ShuttingDown, "pitd is shutting down", None);
    };
    let tracebacks = principal.tracebacks;
    let mut replies = read_reply(&frame.bytes, tracebacks).into_iter();
    // The credit of the chunks read is given back once they are in the response.
    let first = replies.next();
    match first {
        Some(Reply::Chunk(first_chunk)) => {
            let mut sse = SseBody::new(rx, flight, tracebacks);
            sse.push(Reply::Chunk(first_chunk));
            for r in replies {
                sse.push(r);
            }
            drop(frame);
            let mut r = Response::new(sse.boxed_unsync());
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            r.headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-cache"));
            r
        }
        Some(Reply::Done { result, worker }) if stream => {
            // A plain handler called as a stream: its result as the one `end` event.
            let mut sse = SseBody::new(rx, flight, tracebacks);
            sse.push(Reply::Done { result, worker });
            let mut r = Response::new(sse.boxed_unsync());
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            r
        }
        Some(Reply::Done { result, worker }) => {
            flight.answered = true;
            let mut r = Response::new(full(result));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(w) = worker.and_then(|w| HeaderValue::from_str(&w).ok()) {
                r.headers_mut().insert("pit-worker", w);
            }
            r
        }
        Some(Reply::Failed { kind, error: body }) => {
            flight.answered = true;
            let mut r = Response::new(full(error_body(&body)));
            *r.status_mut() = status_of(kind);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            retry_after(&mut r, kind);
            r
        }
        None => {
            flight.answered = true;
            error(ErrorKind::BadRequest, "pitd sent a reply it cannot read", None)
        }
    }
}

/// An error reply the door makes itself.
pub fn error(kind: ErrorKind, message: &str, worker: Option<&str>) -> Response<Body> {
    let mut obj = serde_json::json!({"kind": kind, "message": message});
    if let Some(w) = worker {
        obj["worker"] = w.into();
    }
    let mut r = Response::new(full(serde_json::json!({ "error": obj }).to_string()));
    *r.status_mut() = status_of(kind);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    retry_after(&mut r, kind);
    r
}

fn status(mut r: Response<Body>, code: StatusCode) -> Response<Body> {
    *r.status_mut() = code;
    r
}

fn retry_after(r: &mut Response<Body>, kind: ErrorKind) {
    if matches!(
        kind,
        ErrorKind::QueueFull
            | ErrorKind::Quota
            | ErrorKind::PoolDrained
            | ErrorKind::PoolFailing
            | ErrorKind::ShuttingDown
    ) {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
}

/// The HTTP status of an error kind (INTERFACE section 10).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NoSuchPool | ErrorKind::NoSuchMethod => StatusCode::NOT_FOUND,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::QueueFull | ErrorKind::Quota => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::PoolDrained | ErrorKind::PoolFailing | ErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout | ErrorKind::QueueTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::HandlerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::WorkerCrashed => StatusCode::BAD_GATEWAY,
        // A caller cancels only its own stream on the call socket; over HTTP it hangs up.
        ErrorKind::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
    }
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}
