//! The control socket's decoding path, as pitd runs it on bytes from any local client:
//! split the input into frames with `frame::decode` under `CONTROL_MAX`, parse each body as
//! a `control::Request`. Neither may panic, and every request that parses must survive a
//! round trip (encode, frame, decode, parse) unchanged, since pitctl and pitd share the type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pit::proto::control::Request;
use pit::proto::frame::{self, CONTROL_MAX};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    // `Ok(None)` is "need more bytes" and an error ends the connection: either ends the stream.
    while let Ok(Some((range, used))) = frame::decode(&data[at..], CONTROL_MAX) {
        assert!(
            used >= 4 && used <= data.len() - at,
            "frame consumed {used} of {} bytes",
            data.len() - at
        );
        assert_eq!(range.end, used, "body must end where the frame ends");
        let body = &data[at..][range];
        at += used;

        let Ok(request) = serde_json::from_slice::<Request>(body) else {
            continue;
        };
        let json = serde_json::to_vec(&request).expect("a Request always serializes");
        let mut wire = Vec::new();
        frame::encode_into(&mut wire, &json);
        let (range, used) = frame::decode(&wire, CONTROL_MAX)
            .expect("re-encoded frame is under the limit")
            .expect("re-encoded frame is complete");
        assert_eq!(used, wire.len());
        let again: Request = serde_json::from_slice(&wire[range]).expect("re-encoded request parses");
        assert_eq!(
            again,
            request,
            "round trip changed the request; json: {}",
            String::from_utf8_lossy(&json)
        );
    }
});
