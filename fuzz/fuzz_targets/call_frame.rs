//! The call socket's decoding path and the replies built from it. For each frame of the
//! input (split with `frame::decode` under `CALL_MAX`):
//! - `sniff_id(body)`, used when the body does not parse, must give valid JSON (`null` or a
//!   number), and an error reply built from it must be a valid JSON frame;
//! - a body that parses as a `CallRequest` must give valid ok and error reply frames when
//!   its `id` (and `args`, as a stand-in result) are spliced in verbatim.
//!
//! This target found `sniff_id` echoing ids with a leading zero (`01`, not JSON); fixed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pit::proto::call::{self, CALL_MAX, CallRequest, ErrorKind};
use pit::proto::frame;

/// A reply frame is a 4-byte big-endian length then exactly that many bytes of one JSON
/// object carrying `id` and `ok`.
fn check_reply(frame: &[u8], id: &[u8], ok: bool) {
    let (range, used) = frame::decode(frame, CALL_MAX)
        .expect("reply under the limit")
        .expect("reply is a complete frame");
    assert_eq!(used, frame.len(), "length prefix disagrees with the frame");
    let body = &frame[range];
    let reply: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let want_id: serde_json::Value = serde_json::from_slice(id).expect("id was checked to be JSON");
    assert_eq!(reply["id"], want_id, "reply: {}", String::from_utf8_lossy(body));
    assert_eq!(reply["ok"], ok, "reply: {}", String::from_utf8_lossy(body));
}

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while let Ok(Some((range, used))) = frame::decode(&data[at..], CALL_MAX) {
        assert!(used >= 4 && used <= data.len() - at);
        let body = &data[at..][range];
        at += used;

        let sniffed = call::sniff_id(body);
        let valid = sniffed == b"null"
            || (sniffed.iter().all(u8::is_ascii_digit)
                && serde_json::from_slice::<serde_json::Value>(&sniffed).is_ok());
        assert!(
            valid,
            "sniff_id gave {:?}, not null or a JSON number, for body {:?}",
            String::from_utf8_lossy(&sniffed),
            String::from_utf8_lossy(body)
        );
        check_reply(
            &call::error_frame(&sniffed, ErrorKind::BadRequest, "invalid request"),
            &sniffed,
            false,
        );

        let Ok(req) = serde_json::from_slice::<CallRequest>(body) else {
            continue;
        };
        let id = req.id.get().as_bytes();
        let result = req.args.map_or(&b""[..], |a| a.get().as_bytes());
        check_reply(&call::ok_frame(id, result, "worker-1"), id, true);
        // The message carries client text (quotes, escapes, control characters) on purpose.
        let message = format!("no method {:?} in pool {}", req.method, req.pool);
        check_reply(&call::error_frame(id, ErrorKind::NoSuchMethod, &message), id, false);
        let raw = call::error_json(ErrorKind::HandlerError, &req.method);
        check_reply(&call::error_frame_raw(id, &raw, Some("worker-1")), id, false);
    }
});
