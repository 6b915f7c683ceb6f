//! The load of `pitctl bench` on one connection: a call encoded once, kept `depth` times in
//! flight, its replies matched by id from their first bytes.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::call_client::{CallClient, CallClientError};

/// What `pipeline_prepared` saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Each answered call's round trip, µs.
    pub latencies: Vec<u32>,
    /// Answered calls that failed.
    pub errors: u64,
    /// Calls sent and not answered yet.
    pub in_flight: usize,
}

/// A call encoded once for `pipeline_prepared`: everything but the id.
#[derive(Debug, Clone)]
pub struct Prepared {
    prefix: Vec<u8>,
}

impl Prepared {
    /// `args` is raw JSON text.
    pub fn new(pool: &str, method: &str, args: &str) -> Prepared {
        let head = serde_json::json!({"pool": pool, "method": method}).to_string();
        let mut prefix = head.into_bytes();
        prefix.pop();
        prefix.extend_from_slice(b",\"args\":");
        prefix.extend_from_slice(args.as_bytes());
        prefix.extend_from_slice(b",\"id\":");
        Prepared { prefix }
    }

    /// Appends the call's frame, with id `id`, to `out`.
    fn encode_into(&self, out: &mut Vec<u8>, id: u64) {
        let head = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.prefix);
        write!(out, "{id}}}").expect("writing to a Vec");
        let len = (out.len() - head - 4) as u32;
        out[head..head + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Keeps `depth` copies of a prepared call in flight on this connection until `end`,
/// then waits for the last replies (until `drain_for` after `end`). Requests that can go together
/// go in one write, and every reply already received is taken from one read, as a
/// client multiplexing many callers over one connection does. Pushes each call's
/// latency (µs, from just before its request is written to just after its reply is
/// read) to `tally`, and counts failed calls there. The request is encoded once and
/// only the id changes; replies are checked, not parsed.
pub fn pipeline_prepared(
    client: &mut CallClient,
    prepared: &Prepared,
    depth: usize,
    end: Instant,
    drain_for: Duration,
    tally: &mut Tally,
) -> Result<(), CallClientError> {
    let depth = depth.max(1);
    let mut next_id: u64 = 1;
    let mut out = Vec::with_capacity(depth * 64);
    let mut sent_at: HashMap<u64, Instant> = HashMap::with_capacity(depth * 2);
    let give_up = end + drain_for;
    loop {
        let now = Instant::now();
        if now < end {
            out.clear();
            while sent_at.len() < depth {
                let id = next_id;
                next_id += 1;
                prepared.encode_into(&mut out, id);
                sent_at.insert(id, now);
            }
            tally.in_flight = sent_at.len();
            if !out.is_empty() {
                client.send_raw(&out)?;
            }
        } else if sent_at.is_empty() {
            return Ok(());
        }
        if now >= give_up {
            return Err(CallClientError::BadReply(format!(
                "{} calls unanswered {drain_for:?} after the load stopped",
                sent_at.len()
            )));
        }
        if !client.wait_readable(Some(give_up - now))? {
            continue;
        }
        let mut received = None;
        client.read_frames(|body| {
            let at = *received.get_or_insert_with(Instant::now);
            let (id, ok) =
                reply_id(body).ok_or_else(|| CallClientError::BadReply(String::from_utf8_lossy(body).into_owned()))?;
            let Some(t0) = sent_at.remove(&id) else {
                return Err(CallClientError::BadReply(format!("reply for a call not sent: {id}")));
            };
            tally
                .latencies
                .push(at.saturating_duration_since(t0).as_micros().min(u32::MAX as u128) as u32);
            tally.errors += u64::from(!ok);
            Ok(())
        })?;
        tally.in_flight = sent_at.len();
    }
}

/// The id of a reply and whether it is a success, read from its first bytes: pitd's
/// replies start with `{"id":N,"ok":true` or `{"id":N,"ok":false`.
fn reply_id(body: &[u8]) -> Option<(u64, bool)> {
    let rest = body.strip_prefix(b"{\"id\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    match &rest[digits..] {
        r if r.starts_with(b",\"ok\":true") => Some((id, true)),
        r if r.starts_with(b",\"ok\":false") => Some((id, false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::FrameBuf;

    #[test]
    fn a_prepared_call_is_a_frame_of_the_request_with_its_id() {
        let p = Prepared::new("echo", "echo", "[\"x\"]");
        let mut out = Vec::new();
        p.encode_into(&mut out, 0);
        p.encode_into(&mut out, 18_446_744_073_709_551_615);
        let mut frames = FrameBuf::new(1024);
        frames.read_from(&mut &out[..]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(frames.next_frame().unwrap().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"pool": "echo", "method": "echo", "args": ["x"], "id": 0})
        );
        let v: serde_json::Value = serde_json::from_slice(frames.next_frame().unwrap().unwrap()).unwrap();
        assert_eq!(v["id"].as_u64(), Some(u64::MAX));
    }

    #[test]
    fn a_reply_is_known_by_its_first_bytes() {
        assert_eq!(reply_id(br#"{"id":42,"ok":true,"result":1}"#), Some((42, true)));
        assert_eq!(reply_id(br#"{"id":7,"ok":false,"error":{}}"#), Some((7, false)));
        assert_eq!(reply_id(br#"{"ok":true,"id":7}"#), None);
        assert_eq!(reply_id(br#"{"id":,"ok":true}"#), None);
        assert_eq!(reply_id(br#"{"id":7}"#), None);
    }
}
