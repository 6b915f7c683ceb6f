//! The pitd <-> worker protocol on fds 3 (pitd -> worker) and 4 (worker -> pitd).
//!
//! Binary and small: every frame is a `u32` big-endian length, a `u8` type, then the body.
//! The call's args and the worker's result travel as the raw JSON bytes the client and the
//! handler produced; pitd never re-encodes them.
//!
//! ```text
//! pitd -> worker  0x01 CALL  u64 req_id, u32 timeout_ms (0 = none), u8 flags (0x01 STREAM:
//!                            the caller asked for a stream), u32 window (a stream's first
//!                            credit: chunks it may send before a CREDIT), u16 method_len,
//!                            u16 session_len (0 = none), method, session, args JSON (rest)
//!                 0x02 PING  u64 req_id
//!                 0x03 CALL_BY  u64 start_by (CLOCK_MONOTONIC ns), then a CALL body: a
//!                            call written while the worker runs another; the worker
//!                            starts it only before `start_by`, else answers ERR
//!                            `queue_timeout` without running it (pitd has taken it back)
//!                 0x04 CANCEL u64 req_id: pitd gave up on the call (past its timeout, or
//!                            its caller cancelled or hung up); a worker that can stops it
//!                            (a stream's generator is closed) and still answers it once
//!                 0x05 CREDIT u64 req_id, u32 n: the caller took n more chunks of a stream
//! worker -> pitd  0x81 READY JSON {"protocol": 1, "pid": N, "handlers": [...],
//!                            "concurrency": N, "gil_enabled": true|false|null}
//!                 0x82 OK    u64 req_id, result JSON (rest)
//!                 0x83 ERR   u64 req_id, JSON {"kind", "message", "type", "traceback"}
//!                 0x84 PONG  u64 req_id
//!                 0x85 CHUNK u64 req_id, chunk JSON (rest): one value a stream yielded
//! ```

pub const CALL: u8 = 0x01;
pub const PING: u8 = 0x02;
pub const CALL_BY: u8 = 0x03;
pub const CANCEL: u8 = 0x04;
pub const CREDIT: u8 = 0x05;
pub const READY: u8 = 0x81;
pub const OK: u8 = 0x82;
pub const ERR: u8 = 0x83;
pub const PONG: u8 = 0x84;
pub const CHUNK: u8 = 0x85;

/// Byte offset of `timeout_ms` inside an encoded CALL frame (length prefix included), so
/// the pool can set the effective timeout without rebuilding the frame.
pub const CALL_TIMEOUT_OFFSET: usize = 4 + 1 + 8;
/// Byte offset of `flags` (then `window`) inside an encoded CALL frame.
const CALL_FLAGS_OFFSET: usize = CALL_TIMEOUT_OFFSET + 4;
/// CALL flag: the caller asked for a stream.
pub const FLAG_STREAM: u8 = 0x01;

/// Default largest frame in either direction (the worker learns it from `PIT_MAX_FRAME`).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerFrameError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("frame type 0x{kind:02x} is {len} bytes, too short")]
    Short { kind: u8, len: usize },
    #[error("invalid READY frame: {0}")]
    BadReady(String),
    #[error("invalid UTF-8 in the method or session")]
    BadText,
    #[error("unknown CALL flags 0x{0:02x}")]
    UnknownFlags(u8),
}

/// Encodes a complete CALL frame (length prefix included), not a stream.
pub fn encode_call(req_id: u64, timeout_ms: u32, method: &str, session: Option<&str>, args: &[u8]) -> Vec<u8> {
    let mut f = encode_call_frame(req_id, timeout_ms, method, session, args);
    f.shrink_to_fit();
    f
}

/// A CALL frame with every field given (`stream` with its first credit, `window`).
pub fn encode_stream_call(
    req_id: u64,
    timeout_ms: u32,
    window: u32,
    method: &str,
    session: Option<&str>,
    args: &[u8],
) -> Vec<u8> {
    let mut f = encode_call_frame(req_id, timeout_ms, method, session, args);
    set_call_stream(&mut f, window);
    f
}

fn encode_call_frame(req_id: u64, timeout_ms: u32, method: &str, session: Option<&str>, args: &[u8]) -> Vec<u8> {
    let session = session.unwrap_or("");
    let body_len = 1 + 8 + 4 + 1 + 4 + 2 + 2 + method.len() + session.len() + args.len();
    let mut f = Vec::with_capacity(4 + body_len);
    f.extend_from_slice(&(body_len as u32).to_be_bytes());
    f.push(CALL);
    f.extend_from_slice(&req_id.to_be_bytes());
    f.extend_from_slice(&timeout_ms.to_be_bytes());
    f.push(0);
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&(method.len() as u16).to_be_bytes());
    f.extend_from_slice(&(session.len() as u16).to_be_bytes());
    f.extend_from_slice(method.as_bytes());
    f.extend_from_slice(session.as_bytes());
    f.extend_from_slice(args);
    f
}

/// Sets the timeout field of a frame made by `encode_call`.
pub fn set_call_timeout(frame: &mut [u8], timeout_ms: u32) {
    frame[CALL_TIMEOUT_OFFSET..CALL_TIMEOUT_OFFSET + 4].copy_from_slice(&timeout_ms.to_be_bytes());
}

/// Marks a frame made by `encode_call` as a stream whose first credit is `window` chunks.
pub fn set_call_stream(frame: &mut [u8], window: u32) {
    frame[CALL_FLAGS_OFFSET] |= FLAG_STREAM;
    frame[CALL_FLAGS_OFFSET + 1..CALL_FLAGS_OFFSET + 5].copy_from_slice(&window.to_be_bytes());
}

/// CREDIT frames for streams (req_id, n), appended to `out`: several go in one write.
pub fn encode_credit_into(out: &mut Vec<u8>, req_id: u64, n: u32) {
    out.extend_from_slice(&13u32.to_be_bytes());
    out.push(CREDIT);
    out.extend_from_slice(&req_id.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
}

/// A CALL_BY frame from a frame made by `encode_call`: the same call, to be started only
/// before `start_by_ns` on the CLOCK_MONOTONIC clock, which pitd and its workers share.
/// It is appended to `out`: several go to a worker in one write.
pub fn encode_call_by_into(out: &mut Vec<u8>, call_frame: &[u8], start_by_ns: u64) {
    let body = &call_frame[5..];
    out.extend_from_slice(&((1 + 8 + body.len()) as u32).to_be_bytes());
    out.push(CALL_BY);
    out.extend_from_slice(&start_by_ns.to_be_bytes());
    out.extend_from_slice(body);
}

pub fn encode_ping(req_id: u64) -> Vec<u8> {
    encode_id_frame(PING, req_id)
}

/// A CANCEL of call `req_id` (past its timeout).
pub fn encode_cancel(req_id: u64) -> Vec<u8> {
    encode_id_frame(CANCEL, req_id)
}

fn encode_id_frame(kind: u8, req_id: u64) -> Vec<u8> {
    let mut f = Vec::with_capacity(13);
    f.extend_from_slice(&9u32.to_be_bytes());
    f.push(kind);
    f.extend_from_slice(&req_id.to_be_bytes());
    f
}

/// A decoded frame from a worker, borrowing the frame body.
#[derive(Debug, PartialEq, Eq)]
pub enum FromWorker<'a> {
    Ready(Ready),
    Ok { req_id: u64, result: &'a [u8] },
    Err { req_id: u64, error: &'a [u8] },
    Pong { req_id: u64 },
    Chunk { req_id: u64, chunk: &'a [u8] },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Ready {
    pub protocol: u32,
    pub pid: u32,
    pub handlers: Vec<String>,
    /// Calls it runs at once (older runtimes do not say: one).
    #[serde(default = "one")]
    pub concurrency: u32,
    /// Whether its interpreter runs with the GIL (free-threaded builds may not); `None`
    /// when it cannot tell.
    #[serde(default)]
    pub gil_enabled: Option<bool>,
    /// Why a free-threaded build's GIL is on again after the app's import
    /// (`GIL_REENABLED: ...`, naming the module when the interpreter did); absent otherwise.
    #[serde(default)]
    pub gil_reenabled: Option<String>,
}

fn one() -> u32 {
    1
}

/// Decodes one frame body (after the length prefix) sent by a worker.
pub fn decode_from_worker(body: &[u8]) -> Result<FromWorker<'_>, WorkerFrameError> {
    let (&kind, rest) = body.split_first().ok_or(WorkerFrameError::Empty)?;
    let req_id = |rest: &[u8]| -> Result<u64, WorkerFrameError> {
        rest.get(..8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
            .ok_or(WorkerFrameError::Short { kind, len: body.len() })
    };
    match kind {
        READY => serde_json::from_slice(rest)
            .map(FromWorker::Ready)
            .map_err(|e| WorkerFrameError::BadReady(e.to_string())),
        OK => Ok(FromWorker::Ok {
            req_id: req_id(rest)?,
            result: &rest[8..],
        }),
        ERR => Ok(FromWorker::Err {
            req_id: req_id(rest)?,
            error: &rest[8..],
        }),
        PONG => Ok(FromWorker::Pong { req_id: req_id(rest)? }),
        CHUNK => Ok(FromWorker::Chunk {
            req_id: req_id(rest)?,
            chunk: &rest[8..],
        }),
        other => Err(WorkerFrameError::UnknownType(other)),
    }
}

/// A decoded frame to a worker (used by tests and the fuzz targets; the worker side of the
/// protocol is Python).
#[derive(Debug, PartialEq, Eq)]
pub enum ToWorker<'a> {
    Call {
        req_id: u64,
        timeout_ms: u32,
        stream: bool,
        window: u32,
        method: &'a str,
        session: Option<&'a str>,
        args: &'a [u8],
    },
    Ping {
        req_id: u64,
    },
    Cancel {
        req_id: u64,
    },
    Credit {
        req_id: u64,
        n: u32,
    },
    CallBy {
        start_by_ns: u64,
        call: Box<ToWorker<'a>>,
    },
}

pub fn decode_to_worker(body: &[u8]) -> Result<ToWorker<'_>, WorkerFrameError> {
    let (&kind, rest) = body.split_first().ok_or(WorkerFrameError::Empty)?;
    let short = WorkerFrameError::Short { kind, len: body.len() };
    match kind {
        CALL_BY if rest.len() >= 8 => Ok(ToWorker::CallBy {
            start_by_ns: u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
            call: Box::new(decode_call_body(&rest[8..], short)?),
        }),
        CALL_BY => Err(short),
        CALL => decode_call_body(rest, short),
        PING if rest.len() >= 8 => Ok(ToWorker::Ping {
            req_id: u64::from_be_bytes(rest[..8].try_into().expect("8")),
        }),
        PING => Err(short),
        CANCEL if rest.len() >= 8 => Ok(ToWorker::Cancel {
            req_id: u64::from_be_bytes(rest[..8].try_into().expect("8")),
        }),
        CANCEL => Err(short),
        CREDIT if rest.len() >= 12 => Ok(ToWorker::Credit {
            req_id: u64::from_be_bytes(rest[..8].try_into().expect("8")),
            n: u32::from_be_bytes(rest[8..12].try_into().expect("4")),
        }),
        CREDIT => Err(short),
        other => Err(WorkerFrameError::UnknownType(other)),
    }
}

/// The fields of a CALL after its type byte; `short` is the error for a cut-off body.
fn decode_call_body(rest: &[u8], short: WorkerFrameError) -> Result<ToWorker<'_>, WorkerFrameError> {
    if rest.len() < 21 {
        return Err(short);
    }
    let req_id = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
    let timeout_ms = u32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
    let flags = rest[12];
    if flags & !FLAG_STREAM != 0 {
        return Err(WorkerFrameError::UnknownFlags(flags));
    }
    let stream = flags & FLAG_STREAM != 0;
    let window = u32::from_be_bytes(rest[13..17].try_into().expect("4 bytes"));
    let mlen = u16::from_be_bytes([rest[17], rest[18]]) as usize;
    let slen = u16::from_be_bytes([rest[19], rest[20]]) as usize;
    let text = &rest[21..];
    if text.len() < mlen + slen {
        return Err(short);
    }
    let method = std::str::from_utf8(&text[..mlen]).map_err(|_| WorkerFrameError::BadText)?;
    let session = std::str::from_utf8(&text[mlen..mlen + slen]).map_err(|_| WorkerFrameError::BadText)?;
    let session = (slen > 0).then_some(session);
    Ok(ToWorker::Call {
        req_id,
        timeout_ms,
        stream,
        window,
        method,
        session,
        args: &text[mlen + slen..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn call_frame_round_trips_and_timeout_can_be_patched() {
        let mut f = encode_call(7, 0, "echo", Some("u-1"), br#"{"a":1}"#);
        set_call_timeout(&mut f, 1500);
        set_call_stream(&mut f, 64);
        let len = u32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
        assert_eq!(len, f.len() - 4);
        let got = decode_to_worker(&f[4..]).unwrap();
        let want = ToWorker::Call {
            req_id: 7,
            timeout_ms: 1500,
            stream: true,
            window: 64,
            method: "echo",
            session: Some("u-1"),
            args: br#"{"a":1}"#,
        };
        assert_eq!(got, want);
    }

    #[test]
    fn worker_frames_decode_and_garbage_is_an_error() {
        let mut ok = vec![OK];
        ok.extend_from_slice(&9u64.to_be_bytes());
        ok.extend_from_slice(b"[1]");
        assert_eq!(
            decode_from_worker(&ok).unwrap(),
            FromWorker::Ok {
                req_id: 9,
                result: b"[1]"
            }
        );
        let ready = [&[READY][..], br#"{"protocol":1,"pid":5,"handlers":["echo"]}"#].concat();
        assert!(matches!(decode_from_worker(&ready).unwrap(), FromWorker::Ready(r) if r.handlers == ["echo"]));
        assert_eq!(decode_from_worker(&[]), Err(WorkerFrameError::Empty));
        assert_eq!(decode_from_worker(b"hello"), Err(WorkerFrameError::UnknownType(b'h')));
        assert!(matches!(
            decode_from_worker(&[PONG, 1, 2]),
            Err(WorkerFrameError::Short { .. })
        ));
        assert!(matches!(
            decode_from_worker(&[READY, b'{']),
            Err(WorkerFrameError::BadReady(_))
        ));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_from_worker(&bytes);
            let _ = decode_to_worker(&bytes);
        }

        #[test]
        fn any_call_by_round_trips(id in any::<u64>(), by in any::<u64>(), m in "[a-z_]{1,20}", s in proptest::option::of("[a-z0-9-]{1,20}"), a in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut f = Vec::new();
            encode_call_by_into(&mut f, &encode_call(id, 5, &m, s.as_deref(), &a), by);
            prop_assert_eq!(u32::from_be_bytes(f[..4].try_into().unwrap()) as usize, f.len() - 4);
            let got = decode_to_worker(&f[4..]).unwrap();
            let call = ToWorker::Call { req_id: id, timeout_ms: 5, stream: false, window: 0, method: &m, session: s.as_deref(), args: &a };
            prop_assert_eq!(got, ToWorker::CallBy { start_by_ns: by, call: Box::new(call) });
        }

        #[test]
        fn any_call_round_trips(id in any::<u64>(), t in any::<u32>(), w in proptest::option::of(any::<u32>()), m in "[a-z_]{1,20}", s in proptest::option::of("[a-z0-9-]{1,20}"), a in proptest::collection::vec(any::<u8>(), 0..64)) {
            let f = match w {
                Some(w) => encode_stream_call(id, t, w, &m, s.as_deref(), &a),
                None => encode_call(id, t, &m, s.as_deref(), &a),
            };
            let got = decode_to_worker(&f[4..]).unwrap();
            prop_assert_eq!(got, ToWorker::Call { req_id: id, timeout_ms: t, stream: w.is_some(), window: w.unwrap_or(0), method: &m, session: s.as_deref(), args: &a });
        }
    }
}
