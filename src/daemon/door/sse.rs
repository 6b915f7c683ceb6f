//! A call's replies as the door sends them: each reply frame from the pool (the call
//! socket's JSON, one or several joined) read into chunks, a result or an error, and a
//! stream's body as server-sent events: `event: chunk` per chunk, then `event: end` with
//! the result or `event: error` with the error object. Chunks travel as the worker wrote
//! them, never re-encoded; a frame's credit goes back to the worker once its chunks are in
//! the body, which hyper polls only as the client takes what was sent.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body, Frame};
use serde_json::Value;
use tokio::sync::mpsc;

use super::flight::InFlight;
use crate::daemon::pool::ReplyFrame;
use crate::proto::call::ErrorKind;

/// One reply of a call.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// A chunk's JSON.
    Chunk(Bytes),
    /// The result's JSON and the worker that ran it.
    Done { result: Bytes, worker: Option<String> },
    /// The error kind and the error object (`{"kind", "message", "worker"?, ...}`).
    Failed { kind: ErrorKind, error: Bytes },
}

/// The door's own calls all have the id `1`: a chunk frame starts so.
const CHUNK_HEAD: &[u8] = br#"{"id":1,"chunk":"#;

/// The replies in a frame from the pool. A handler error keeps its traceback only for a
/// principal allowed to see tracebacks.
pub fn read_reply(bytes: &[u8], tracebacks: bool) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let Some(body) = rest.get(4..4 + len) else { break };
        rest = &rest[4 + len..];
        if let Some(chunk) = body.strip_prefix(CHUNK_HEAD).and_then(|b| b.strip_suffix(b"}")) {
            out.push(Reply::Chunk(Bytes::copy_from_slice(chunk)));
            continue;
        }
        if let Ok(reply) = serde_json::from_slice::<crate::proto::call::CallReply>(body)
            && reply.ok
        {
            let result = reply.result.map_or(&b"null"[..], |r| r.get().as_bytes());
            out.push(Reply::Done {
                result: Bytes::copy_from_slice(result),
                worker: reply.worker.map(|w| w.into_owned()),
            });
            continue;
        }
        let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
            continue;
        };
        let mut error = v["error"].take();
        let kind = serde_json::from_value(error["kind"].clone()).unwrap_or(ErrorKind::HandlerError);
        if let Some(obj) = error.as_object_mut() {
            if !tracebacks {
                obj.remove("traceback");
            }
            if let Some(w) = v.get("worker").filter(|w| w.is_string()) {
                obj.insert("worker".into(), w.clone());
            }
        }
        out.push(Reply::Failed {
            kind,
            error: Bytes::from(error.to_string()),
        });
    }
    out
}

/// The body of a reply that is not a stream: `{"error": {...}}` for an error.
pub fn error_body(error: &Bytes) -> Bytes {
    let mut b = BytesMut::with_capacity(error.len() + 10);
    b.put_slice(b"{\"error\":");
    b.put_slice(error);
    b.put_u8(b'}');
    b.freeze()
}

fn event(out: &mut BytesMut, name: &str, data: &[u8]) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

/// A stream's response body.
pub struct SseBody {
    rx: mpsc::UnboundedReceiver<ReplyFrame>,
    flight: InFlight,
    tracebacks: bool,
    /// Events not yet handed to hyper.
    pending: BytesMut,
    done: bool,
}

impl SseBody {
    pub fn new(rx: mpsc::UnboundedReceiver<ReplyFrame>, flight: InFlight, tracebacks: bool) -> SseBody {
        SseBody {
            rx,
            flight,
            tracebacks,
            pending: BytesMut::new(),
            done: false,
        }
    }

    pub fn push(&mut self, reply: Reply) {
        match reply {
            Reply::Chunk(chunk) => event(&mut self.pending, "chunk", &chunk),
            Reply::Done { result, .. } => {
                event(&mut self.pending, "end", &result);
                self.end();
            }
            Reply::Failed { error, .. } => {
                event(&mut self.pending, "error", &error);
                self.end();
            }
        }
    }

    fn end(&mut self) {
        self.done = true;
        self.flight.answered = true;
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        // Everything that has arrived goes out in one frame.
        while !this.done {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) => {
                    for r in read_reply(&frame.bytes, this.tracebacks) {
                        this.push(r);
                    }
                    // Its chunks are in the body now: their credit goes back.
                    drop(frame);
                }
                Poll::Ready(None) => {
                    let error =
                        serde_json::json!({"kind": ErrorKind::ShuttingDown, "message": "pitd is shutting down"});
                    event(&mut this.pending, "error", error.to_string().as_bytes());
                    this.end();
                }
                Poll::Pending => break,
            }
        }
        if !this.pending.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(this.pending.split().freeze()))));
        }
        match this.done {
            true => Poll::Ready(None),
            false => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(bodies: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b.as_bytes());
        }
        out
    }

    #[test]
    fn joined_frames_read_as_chunks_then_the_result() {
        let bytes = framed(&[
            r#"{"id":1,"chunk":{"token":"a"}}"#,
            r#"{"id":1,"chunk":"b"}"#,
            r#"{"id":1,"ok":true,"result":null,"worker":"worker-3"}"#,
        ]);
        assert_eq!(
            read_reply(&bytes, false),
            [
                Reply::Chunk(Bytes::from_static(br#"{"token":"a"}"#)),
                Reply::Chunk(Bytes::from_static(br#""b""#)),
                Reply::Done {
                    result: Bytes::from_static(b"null"),
                    worker: Some("worker-3".into())
                },
            ]
        );
    }

    #[test]
    fn an_error_names_its_worker_and_keeps_its_traceback_only_when_allowed() {
        let bytes = framed(&[
            r#"{"id":1,"ok":false,"error":{"kind":"handler_error","message":"boom","type":"ValueError","traceback":"tb"},"worker":"worker-2"}"#,
        ]);
        let Reply::Failed { kind, error } = &read_reply(&bytes, false)[0] else {
            panic!()
        };
        let v: Value = serde_json::from_slice(error).unwrap();
        assert_eq!(*kind, ErrorKind::HandlerError);
        assert_eq!(
            v,
            serde_json::json!({"kind":"handler_error","message":"boom","type":"ValueError","worker":"worker-2"})
        );
        let Reply::Failed { error, .. } = &read_reply(&bytes, true)[0] else {
            panic!()
        };
        assert!(String::from_utf8_lossy(error).contains(r#""traceback":"tb""#));
    }
}
