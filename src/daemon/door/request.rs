//! What the door reads of a call's request: its options (the `Pit-*` headers and
//! `Accept`), its body within `max_body`, and the body of a refused request, read to its
//! end in the background.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::Response;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_LENGTH, HeaderMap};

use super::reply::{Body, error};
use crate::proto::call::ErrorKind;

/// The request headers a call reads.
pub struct Options {
    pub session: Option<String>,
    pub timeout: Option<Duration>,
    pub idempotent: bool,
    pub stream: bool,
}

impl Options {
    pub fn from(h: &HeaderMap) -> Result<Options, String> {
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
pub async fn body(headers: &HeaderMap, body: Incoming, max: u64) -> Result<Bytes, Response<Body>> {
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
pub fn discard(body: Incoming, max: u64, within: Duration) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(within, Limited::new(body, max as usize).collect()).await;
    });
}
