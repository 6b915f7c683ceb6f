//! The worker pipe protocol. For each frame of the input (split with `frame::decode` under
//! `worker::MAX_FRAME`), `decode_from_worker` (what pitd runs on a worker's bytes) and
//! `decode_to_worker` (the reference decoder of what pitd sends) must not panic, and every
//! CALL that decodes must re-encode with `encode_call` to the very same bytes: pitd patches
//! the timeout in place and splices args verbatim, so the layout must be exact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pit::proto::frame;
use pit::proto::worker::{self, FromWorker, ToWorker};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while let Ok(Some((range, used))) = frame::decode(&data[at..], worker::MAX_FRAME) {
        assert!(used >= 4 && used <= data.len() - at);
        let whole = &data[at..at + used];
        let body = &data[at..][range];
        at += used;

        match worker::decode_from_worker(body) {
            Ok(FromWorker::Ok { result: rest, .. } | FromWorker::Err { error: rest, .. }) => {
                assert_eq!(rest.len(), body.len() - 9, "OK/ERR payload follows type and req_id");
            }
            Ok(FromWorker::Chunk { chunk, .. }) => {
                assert_eq!(chunk.len(), body.len() - 9, "a CHUNK's JSON follows type and req_id");
            }
            Ok(FromWorker::Ready(_) | FromWorker::Pong { .. }) | Err(_) => {}
        }

        match worker::decode_to_worker(body) {
            Ok(ToWorker::Call {
                req_id,
                timeout_ms,
                stream,
                window,
                method,
                session,
                args,
            }) => {
                let encoded = canonical_call(req_id, timeout_ms, stream, window, method, session, args);
                assert_eq!(encoded, whole, "encode_call does not reproduce the decoded CALL frame");
            }
            Ok(ToWorker::Credit { req_id, n }) => {
                let mut encoded = Vec::new();
                worker::encode_credit_into(&mut encoded, req_id, n);
                assert_eq!(&encoded[4..], &body[..13]);
            }
            Ok(ToWorker::Ping { req_id }) => {
                // A PING body longer than 9 bytes decodes too; the canonical one must match.
                let encoded = worker::encode_ping(req_id);
                assert_eq!(&encoded[4..], &body[..9]);
            }
            Ok(ToWorker::Cancel { req_id }) => {
                let encoded = worker::encode_cancel(req_id);
                assert_eq!(&encoded[4..], &body[..9]);
            }
            Ok(ToWorker::CallBy { start_by_ns, call }) => {
                let ToWorker::Call {
                    req_id,
                    timeout_ms,
                    stream,
                    window,
                    method,
                    session,
                    args,
                } = *call
                else {
                    panic!("a CALL_BY carries a call")
                };
                let call = canonical_call(req_id, timeout_ms, stream, window, method, session, args);
                let mut encoded = Vec::new();
                worker::encode_call_by_into(&mut encoded, &call, start_by_ns);
                assert_eq!(encoded, whole, "encode_call_by_into does not reproduce it");
            }
            Err(_) => {}
        }
    }
});

/// The CALL frame pitd would write for these fields: a stream's, or a plain call's (whose
/// window field is zero unless the bytes said otherwise).
fn canonical_call(
    req_id: u64,
    timeout_ms: u32,
    stream: bool,
    window: u32,
    method: &str,
    session: Option<&str>,
    args: &[u8],
) -> Vec<u8> {
    if stream {
        return worker::encode_stream_call(req_id, timeout_ms, window, method, session, args);
    }
    let mut f = worker::encode_call(req_id, timeout_ms, method, session, args);
    f[18..22].copy_from_slice(&window.to_be_bytes());
    f
}
