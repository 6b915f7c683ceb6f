//! Streaming replies (INTERFACE section 9), real pitd and real workers
//! (`tests/workers/apps/stream_app.py`): chunks in order under 64 concurrent streams, a
//! slow reader beside a fast one on one worker, hang-up and cancel closing the generator,
//! the idle timeout, a worker killed mid-stream, recycle and drain with streams open, a
//! chunk too large for a frame.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use pit::call_client::{CallClient, CallOptions, Outcome};
use pit::proto::call::ErrorKind;
use pit::proto::frame::{self, FrameBuf};
use serde_json::{Value, json};

use crate::harness::{TestDaemon, python, wait_until, worker};

fn pool(size: u32, concurrency: u32, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.app]\napp = \"stream_app\"\npython = \"{}\"\nsize = {size}\nconcurrency = {concurrency}\n\
         cwd = \"{}\"\nenv = {{ PYTHONPATH = \"{python_dir}\" }}\nkill_timeout = \"2s\"\n{extra}\n",
        python(),
        worker("apps")
    )
}

fn started(size: u32, concurrency: u32, extra: &str) -> TestDaemon {
    let d = TestDaemon::start(&pool(size, concurrency, extra));
    d.wait_pool("ready workers", "app", |p| {
        p.workers.len() == size as usize && p.workers.iter().all(|w| w.state.as_str() == "idle")
    });
    d
}

const STREAM: CallOptions = CallOptions {
    session: None,
    timeout: None,
    idempotent: false,
    stream: true,
};

/// One stream on its own connection: its chunks and its outcome.
fn stream(d: &TestDaemon, method: &str, args: Value) -> (Vec<Value>, Outcome) {
    let mut c = CallClient::connect(&d.call_socket()).expect("the call socket");
    let mut chunks = Vec::new();
    let outcome = c
        .call_streaming("app", method, &args.to_string(), &STREAM, |chunk| {
            chunks.push(serde_json::from_str(chunk.get()).expect("a chunk is JSON"));
            Ok(())
        })
        .expect("a final reply");
    (chunks, outcome)
}

fn kind(outcome: &Outcome) -> Option<ErrorKind> {
    match outcome {
        Outcome::Ok { .. } => None,
        Outcome::Err { kind, .. } => Some(*kind),
    }
}

/// A raw connection to the call socket: requests written as they are, frames read back.
struct Raw {
    sock: UnixStream,
    frames: FrameBuf,
}

impl Raw {
    fn connect(d: &TestDaemon) -> Raw {
        Raw {
            sock: UnixStream::connect(d.call_socket()).expect("the call socket"),
            frames: FrameBuf::new(32 << 20),
        }
    }

    fn send(&mut self, request: Value) {
        let mut out = Vec::new();
        frame::encode_into(&mut out, request.to_string().as_bytes());
        self.sock.write_all(&out).expect("a request written");
    }

    /// The next frame, within 10 s.
    fn next(&mut self) -> Value {
        self.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        loop {
            if let Some(body) = self.frames.next_frame().expect("a frame") {
                return serde_json::from_slice(body).expect("JSON");
            }
            assert!(
                self.frames.read_from(&mut self.sock).expect("a reply within 10 s") > 0,
                "pitd hung up"
            );
        }
    }
}

fn marker(d: &TestDaemon, name: &str) -> String {
    d.dir.path().join(name).to_string_lossy().into_owned()
}

fn wait_file(path: &str) {
    wait_until(&format!("{path} written"), || {
        Path::new(path)
            .exists()
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
}

#[test]
fn sixty_four_streams_at_once_get_every_chunk_in_order() {
    let d = started(4, 16, "");
    let results: Vec<(Vec<Value>, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let d = &d;
                let method = if i % 2 == 0 { "tokens" } else { "sync_tokens" };
                s.spawn(move || stream(d, method, json!({"count": 40, "interval": 0.002})))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (chunks, outcome) in results {
        assert!(
            matches!(
                &outcome,
                Outcome::Ok {
                    result: Value::Null,
                    ..
                }
            ),
            "{outcome:?}"
        );
        let order: Vec<u64> = chunks.iter().map(|c| c["i"].as_u64().unwrap()).collect();
        assert_eq!(order, (0..40).collect::<Vec<_>>());
    }
    let pool = d.pool("app");
    assert_eq!((pool.streams_open, pool.requests), (0, 64));
    let metrics = d.pitctl(&["metrics"]);
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(text.contains("pit_stream_chunks_total{pool=\"app\"} 2560"), "{text}");
}

#[test]
fn a_slow_reader_stalls_its_own_stream_only() {
    // One worker running two calls at once, a small window: the slow stream soon waits
    // for credit, and the fast one on the same worker runs on.
    let d = started(1, 2, "stream_window = 4");
    let mut slow = Raw::connect(&d);
    slow.send(json!({"id": 1, "pool": "app", "method": "burst", "args": {"count": 100000}, "stream": true}));
    assert_eq!(slow.next()["chunk"], json!(0), "the slow stream started");
    d.wait_pool("the slow stream open", "app", |p| p.streams_open == 1);
    let (chunks, outcome) = stream(&d, "burst", json!({"count": 5000}));
    assert!(kind(&outcome).is_none(), "{outcome:?}");
    assert_eq!(chunks.len(), 5000);
    assert_eq!(
        d.pool("app").streams_open,
        1,
        "the slow stream is still open, waiting for its reader"
    );
    // Its reader goes: the stream is cancelled and the slot freed.
    drop(slow);
    d.wait_pool("the slow stream closed", "app", |p| {
        p.streams_open == 0 && p.in_flight == 0
    });
}

#[test]
fn hanging_up_closes_the_generator_so_its_finally_runs() {
    let d = started(1, 1, "");
    for method in ["tokens", "sync_tokens"] {
        let done = marker(&d, &format!("{method}.closed"));
        let mut raw = Raw::connect(&d);
        let args = json!({"count": 1000, "interval": 0.05, "marker": done});
        raw.send(json!({"id": 1, "pool": "app", "method": method, "args": args, "stream": true}));
        assert_eq!(raw.next()["chunk"]["i"], json!(0));
        drop(raw);
        wait_file(&done);
        d.wait_pool("the slot freed", "app", |p| p.in_flight == 0 && p.streams_open == 0);
    }
    // The worker was told, not killed: it serves on.
    assert_eq!(d.pool("app").recycled, 0);
}

#[test]
fn cancel_answers_cancelled_and_closes_the_generator() {
    let d = started(1, 1, "");
    let done = marker(&d, "cancelled");
    let mut raw = Raw::connect(&d);
    let args = json!({"count": 1000, "interval": 0.05, "marker": done});
    raw.send(json!({"id": "s-1", "pool": "app", "method": "tokens", "args": args, "stream": true}));
    assert_eq!(raw.next()["chunk"]["i"], json!(0));
    raw.send(json!({"cancel": "s-1"}));
    let reply = loop {
        let frame = raw.next();
        if frame.get("chunk").is_none() {
            break frame;
        }
    };
    assert_eq!(reply["id"], json!("s-1"));
    assert_eq!(reply["error"]["kind"], json!("cancelled"), "{reply}");
    wait_file(&done);
    // The connection serves on.
    raw.send(json!({"id": 2, "pool": "app", "method": "pid"}));
    assert_eq!(raw.next()["ok"], json!(true));
}

#[test]
fn a_stream_silent_past_stream_idle_timeout_fails_with_timeout_and_the_worker_serves_on() {
    let d = started(1, 1, "stream_idle_timeout = \"300ms\"");
    let pid = d.pool("app").workers[0].pid;
    let done = marker(&d, "silent.closed");
    let (chunks, outcome) = stream(&d, "silent", json!({"marker": done}));
    assert_eq!(chunks, [json!("first")]);
    match &outcome {
        Outcome::Err { kind, message, .. } => {
            assert_eq!(*kind, ErrorKind::Timeout);
            assert!(message.contains("stream_idle_timeout"), "{message}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    wait_file(&done);
    let (_, outcome) = stream(&d, "tokens", json!({"count": 2}));
    assert!(kind(&outcome).is_none(), "{outcome:?}");
    assert_eq!(d.pool("app").workers[0].pid, pid, "the same worker");
}

#[test]
fn a_worker_killed_mid_stream_ends_it_with_worker_crashed_after_its_chunks() {
    let d = started(1, 1, "");
    let mut raw = Raw::connect(&d);
    let args = json!({"count": 1000, "interval": 0.02});
    raw.send(json!({"id": 1, "pool": "app", "method": "tokens", "args": args, "stream": true, "idempotent": true}));
    let first = raw.next();
    let pid = first["chunk"]["pid"].as_i64().unwrap() as i32;
    assert_eq!(raw.next()["chunk"]["i"], json!(1));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let reply = loop {
        let frame = raw.next();
        if frame.get("chunk").is_none() {
            break frame;
        }
    };
    // Idempotent or not, a stream that sent chunks is not run again.
    assert_eq!(reply["error"]["kind"], json!("worker_crashed"), "{reply}");
}

#[test]
fn recycle_and_drain_let_open_streams_finish() {
    let d = started(1, 1, "drain_timeout = \"20s\"");
    for command in [["recycle", "app"], ["drain", "app"]] {
        let results = std::thread::scope(|s| {
            let h = s.spawn(|| stream(&d, "tokens", json!({"count": 20, "interval": 0.05})));
            d.wait_pool("a stream open", "app", |p| p.streams_open == 1);
            let out = d.pitctl(&command);
            assert!(out.status.success(), "{out:?}");
            h.join().unwrap()
        });
        let (chunks, outcome) = results;
        assert!(kind(&outcome).is_none(), "{command:?}: {outcome:?}");
        assert_eq!(chunks.len(), 20, "{command:?}");
    }
}

#[test]
fn a_chunk_too_large_for_a_frame_fails_the_stream_with_too_large_and_the_worker_serves_on() {
    let d = started(1, 1, "");
    let pid = d.pool("app").workers[0].pid;
    let (chunks, outcome) = stream(&d, "huge", json!({"bytes": 17 * 1024 * 1024}));
    assert_eq!(chunks, [json!("small")]);
    assert_eq!(kind(&outcome), Some(ErrorKind::TooLarge), "{outcome:?}");
    let (_, outcome) = stream(&d, "tokens", json!({"count": 1}));
    assert!(kind(&outcome).is_none(), "{outcome:?}");
    assert_eq!(d.pool("app").workers[0].pid, pid);
}

#[test]
fn a_streaming_handler_needs_a_stream_and_a_plain_one_answers_a_stream_with_its_reply() {
    let d = started(1, 1, "");
    let mut c = CallClient::connect(&d.call_socket()).unwrap();
    let plain = c.call("app", "tokens", "{}", &CallOptions::default()).unwrap();
    match plain {
        Outcome::Err { kind, message, .. } => {
            assert_eq!(kind, ErrorKind::BadRequest);
            assert!(message.contains("stream"), "{message}");
        }
        other => panic!("expected bad_request, got {other:?}"),
    }
    let (chunks, outcome) = stream(&d, "pid", json!(null));
    assert!(chunks.is_empty());
    assert!(
        matches!(
            outcome,
            Outcome::Ok {
                result: Value::Number(_),
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[test]
fn pitctl_call_stream_prints_one_line_per_chunk() {
    let d = started(1, 1, "");
    let out = d.pitctl(&["call", "app", "tokens", r#"{"count": 3}"#, "--stream"]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let order: Vec<u64> = lines.iter().map(|c| c["i"].as_u64().unwrap()).collect();
    assert_eq!(order, [0, 1, 2]);
}
