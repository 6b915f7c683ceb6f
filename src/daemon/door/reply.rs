//! The responses the door makes itself: error bodies (`{"error": {...}}`) with the HTTP
//! status of their kind (INTERFACE section 10) and `Retry-After` where a retry may succeed.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::proto::call::ErrorKind;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

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

pub fn status(mut r: Response<Body>, code: StatusCode) -> Response<Body> {
    *r.status_mut() = code;
    r
}

pub fn retry_after(r: &mut Response<Body>, kind: ErrorKind) {
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
