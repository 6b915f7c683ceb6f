//! The call socket (INTERFACE section 5): requests, replies and the wire-stable error kinds.
//!
//! A request is parsed once, borrowing its `args` as raw JSON; a worker's result is spliced
//! into the reply as the bytes the worker sent. The hot path never re-encodes a payload.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Largest call request or reply frame on the call socket.
pub const CALL_MAX: usize = 16 * 1024 * 1024;
/// Calls in flight per connection; beyond it pitd does not read the connection until
/// replies have been written (backpressure on a caller that does not read its replies).
pub const IN_FLIGHT_PER_CONNECTION: usize = 256;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
/// The error kinds of a call reply, in INTERFACE order (`VARIANTS`); the Python package's
/// `pit.ERROR_KINDS` must list the same.
pub enum ErrorKind {
    BadRequest,
    NoSuchPool,
    NoSuchMethod,
    HandlerError,
    Timeout,
    WorkerCrashed,
    QueueFull,
    QueueTimeout,
    PoolDrained,
    PoolFailing,
    TooLarge,
    ShuttingDown,
    /// The caller cancelled the call (`{"cancel": id}`), streaming or not.
    Cancelled,
    /// HTTP front door: no token, or one it does not know (401).
    Unauthenticated,
    /// HTTP front door: a pool this principal may not call (403).
    Forbidden,
    /// HTTP front door: the principal's `max_in_flight` is reached (429).
    Quota,
}

impl ErrorKind {
    /// The kinds of a call a pool refuses before any worker sees it: counted apart from the
    /// calls its workers ran (status `rejected`, metric `pit_calls_rejected_total`).
    /// `bad_request` is a call to a supervise-only pool, `timeout` one whose caller's own
    /// timeout ran out while it waited in the queue.
    /// `cancelled` is a call its caller cancelled while it waited.
    pub const REJECTIONS: [ErrorKind; 9] = [
        ErrorKind::BadRequest,
        ErrorKind::NoSuchMethod,
        ErrorKind::Timeout,
        ErrorKind::QueueFull,
        ErrorKind::QueueTimeout,
        ErrorKind::PoolDrained,
        ErrorKind::PoolFailing,
        ErrorKind::ShuttingDown,
        ErrorKind::Cancelled,
    ];

    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A request: parsed by pitd borrowing from the frame, written by the Rust client.
#[derive(Debug, Deserialize, Serialize)]
pub struct CallRequest<'a> {
    #[serde(borrow)]
    pub id: &'a RawValue,
    #[serde(borrow)]
    pub pool: Cow<'a, str>,
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub args: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// The caller reads a stream: chunks, then the final reply (INTERFACE section 9).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// `{"cancel": 7}`: cancels the caller's call 7 on the same connection.
#[derive(Debug, Deserialize, Serialize)]
pub struct CancelRequest<'a> {
    #[serde(borrow)]
    pub cancel: &'a RawValue,
}

/// One chunk of a stream: `{"id":7,"chunk":<the worker's JSON>}` (length prefix included).
pub fn chunk_frame(id: &[u8], chunk: &[u8]) -> Vec<u8> {
    const A: &[u8] = b"{\"id\":";
    const B: &[u8] = b",\"chunk\":";
    let len = A.len() + id.len() + B.len() + chunk.len() + 1;
    let mut f = Vec::with_capacity(4 + len);
    f.extend_from_slice(&(len as u32).to_be_bytes());
    f.extend_from_slice(A);
    f.extend_from_slice(id);
    f.extend_from_slice(B);
    f.extend_from_slice(chunk);
    f.push(b'}');
    f
}

/// A reply as a client reads it (pitd writes replies with `ok_frame` and `error_frame*`,
/// splicing the worker's bytes).
#[derive(Debug, Deserialize)]
pub struct CallReply<'a> {
    #[serde(borrow)]
    pub id: &'a RawValue,
    pub ok: bool,
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(default)]
    pub error: Option<CallError>,
    #[serde(borrow, default)]
    pub worker: Option<Cow<'a, str>>,
}

/// The error object of a failed call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallError {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default)]
    pub traceback: Option<String>,
}

/// A complete success reply frame (length prefix included): `result` is spliced verbatim.
pub fn ok_frame(id: &[u8], result: &[u8], worker: &str) -> Vec<u8> {
    const A: &[u8] = b"{\"id\":";
    const B: &[u8] = b",\"ok\":true,\"result\":";
    const C: &[u8] = b",\"worker\":\"";
    const D: &[u8] = b"\"}";
    let result = if result.is_empty() { b"null" } else { result };
    let len = A.len() + id.len() + B.len() + result.len() + C.len() + worker.len() + D.len();
    let mut f = Vec::with_capacity(4 + len);
    f.extend_from_slice(&(len as u32).to_be_bytes());
    for part in [A, id, B, result, C, worker.as_bytes(), D] {
        f.extend_from_slice(part);
    }
    f
}

/// A complete error reply frame. `error` is a JSON object (a worker's ERR body, or one made
/// by `error_json`).
pub fn error_frame_raw(id: &[u8], error: &[u8], worker: Option<&str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(40 + id.len() + error.len());
    body.extend_from_slice(b"{\"id\":");
    body.extend_from_slice(id);
    body.extend_from_slice(b",\"ok\":false,\"error\":");
    body.extend_from_slice(error);
    if let Some(w) = worker {
        body.extend_from_slice(b",\"worker\":\"");
        body.extend_from_slice(w.as_bytes());
        body.push(b'"');
    }
    body.push(b'}');
    let mut f = Vec::with_capacity(4 + body.len());
    crate::proto::frame::encode_into(&mut f, &body);
    f
}

pub fn error_json(kind: ErrorKind, message: &str) -> Vec<u8> {
    serde_json::to_vec(&CallError {
        kind,
        message: message.to_string(),
        traceback: None,
    })
    .expect("plain struct")
}

pub fn error_frame(id: &[u8], kind: ErrorKind, message: &str) -> Vec<u8> {
    error_frame_raw(id, &error_json(kind, message), None)
}

/// Best effort at the `id` of a request that cannot be parsed (too large, invalid JSON),
/// so a pipelining client can still match the error to its call: a leading `{"id": N`.
pub fn sniff_id(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(&body[..body.len().min(64)]);
    let rest = text.trim_start().strip_prefix('{').map(str::trim_start);
    let rest = rest.and_then(|r| r.strip_prefix("\"id\"")).map(str::trim_start);
    let rest = rest.and_then(|r| r.strip_prefix(':')).map(str::trim_start);
    let digits: String = rest
        .map(|r| r.chars().take_while(|c| c.is_ascii_digit()).collect())
        .unwrap_or_default();
    // JSON numbers have no leading zero: "01" is not an id that can be echoed.
    let json_number = !digits.is_empty() && digits.len() <= 19 && (digits == "0" || !digits.starts_with('0'));
    if json_number {
        digits.into_bytes()
    } else {
        b"null".to_vec()
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    fn body(frame: &[u8]) -> serde_json::Value {
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        serde_json::from_slice(&frame[4..]).unwrap()
    }

    #[test]
    fn kinds_serialize_to_their_wire_names() {
        for &k in ErrorKind::VARIANTS {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn replies_splice_id_and_result_verbatim() {
        let v = body(&ok_frame(b"\"abc\"", br#"{"x":[1,2]}"#, "worker-3"));
        assert_eq!(
            v,
            serde_json::json!({"id": "abc", "ok": true, "result": {"x": [1, 2]}, "worker": "worker-3"})
        );
        let v = body(&error_frame(b"7", ErrorKind::QueueFull, "queue \"q\" full"));
        assert_eq!(v["id"], 7);
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["kind"], "queue_full");
        assert_eq!(v["error"]["message"], "queue \"q\" full");
    }

    #[test]
    fn a_request_written_by_a_client_is_read_back_by_pitd() {
        let id = serde_json::value::to_raw_value(&7).unwrap();
        let args = RawValue::from_string("{\"x\": [1, 2]}".into()).unwrap();
        let req = CallRequest {
            stream: false,
            id: &id,
            pool: "p".into(),
            method: "m".into(),
            args: Some(&args),
            session: Some("s".into()),
            timeout_ms: None,
            idempotent: false,
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text, r#"{"id":7,"pool":"p","method":"m","args":{"x": [1, 2]},"session":"s"}"#,
            "args verbatim, absent options left out"
        );
        let back: CallRequest = serde_json::from_str(&text).unwrap();
        assert_eq!((back.id.get(), back.session.as_deref()), ("7", Some("s")));
    }

    #[test]
    fn replies_pitd_writes_are_read_as_typed_replies() {
        let ok = ok_frame(b"3", br#"[1]"#, "worker-2");
        let r: CallReply = serde_json::from_slice(&ok[4..]).unwrap();
        assert!(r.ok && r.error.is_none());
        assert_eq!((r.id.get(), r.result.unwrap().get()), ("3", "[1]"));
        assert_eq!(r.worker.as_deref(), Some("worker-2"));
        let err = error_frame(b"4", ErrorKind::PoolFailing, "down");
        let r: CallReply = serde_json::from_slice(&err[4..]).unwrap();
        assert!(!r.ok);
        assert_eq!(
            r.error.map(|e| (e.kind, e.message)),
            Some((ErrorKind::PoolFailing, "down".into()))
        );
    }

    #[test]
    fn request_parses_with_optional_fields() {
        let r: CallRequest = serde_json::from_str(r#"{"id":1,"pool":"p","method":"m"}"#).unwrap();
        assert!(r.args.is_none() && r.session.is_none() && !r.idempotent);
        let r: CallRequest = serde_json::from_str(
            r#"{"id":"x","pool":"p\u0041","method":"m","args":[1, 2],"session":"s","timeout_ms":5}"#,
        )
        .unwrap();
        assert_eq!(r.pool, "pA");
        assert_eq!(r.args.unwrap().get(), "[1, 2]");
        assert_eq!(r.timeout_ms, Some(5));
    }

    #[test]
    fn sniff_id_finds_a_leading_numeric_id_only() {
        assert_eq!(sniff_id(br#"{"id": 42, "pool": "#), b"42");
        assert_eq!(sniff_id(br#"{"pool":"p","id":1}"#), b"null");
        assert_eq!(sniff_id(b"garbage"), b"null");
        // Found by fuzzing: a leading zero is not JSON.
        assert_eq!(sniff_id(br#"{"id":01}"#), b"null");
        assert_eq!(sniff_id(br#"{"id":0,"#), b"0");
    }
}
