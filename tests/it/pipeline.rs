//! Pipelining: a call written behind a busy worker's short call. It must run exactly once,
//! be taken back (and honour queue_timeout) when the call ahead turns out long, and go to
//! another worker when its worker dies before starting it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use serde_json::{Value, json};

use crate::harness::{DEADLINE, TestDaemon, python, worker};

/// One worker, so that a call arriving while it is busy can only wait or be pipelined.
fn one_worker_pool(extra: &str) -> TestDaemon {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    TestDaemon::start(&format!(
        "[pools.p]\napp = \"callapp\"\npython = \"{}\"\nsize = 1\ncwd = \"{}\"\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\nkill_timeout = \"2s\"\n{extra}\n\
         [pools.p.restart]\ninitial = \"10ms\"\n",
        python(),
        worker("apps")
    ))
}

fn frame(req: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(req).unwrap();
    [&(body.len() as u32).to_be_bytes()[..], &body].concat()
}

/// Writes the requests in one write, so that pitd reads them together.
fn send_together(conn: &mut UnixStream, reqs: &[Value]) {
    let bytes: Vec<u8> = reqs.iter().flat_map(frame).collect();
    conn.write_all(&bytes).unwrap();
}

fn recv(conn: &mut UnixStream) -> Value {
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut head = [0u8; 4];
    conn.read_exact(&mut head).expect("a reply before the deadline");
    let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
    conn.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn call(conn: &mut UnixStream, id: u64, method: &str, args: Value) -> Value {
    send_together(conn, &[json!({"id": id, "pool": "p", "method": method, "args": args})]);
    let reply = recv(conn);
    assert_eq!(reply["id"], id, "{reply}");
    reply
}

/// Short calls one after another: what makes pitd pipeline to this worker.
fn warm_up(conn: &mut UnixStream) {
    for i in 0..8 {
        let reply = call(conn, 1000 + i, "echo", json!(i));
        assert_eq!(reply["ok"], true, "{reply}");
    }
}

fn counter(d: &TestDaemon, name: &str) -> u64 {
    let out = d.pitctl(&["metrics"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let prefix = format!("pit_{name}_total{{pool=\"p\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

fn marks(conn: &mut UnixStream) -> Vec<Value> {
    call(conn, 9000, "marks", json!(null))["result"]
        .as_array()
        .expect("a list")
        .clone()
}

#[test]
fn a_call_pipelined_behind_a_long_one_is_taken_back_runs_once_and_keeps_queue_timeout() {
    let d = one_worker_pool("queue_timeout = \"1s\"");
    let mut conn = UnixStream::connect(d.call_socket()).unwrap();

    // The call ahead is longer than a pipelined call may wait, shorter than queue_timeout:
    // the waiting call is taken back and runs once the worker is free, exactly once.
    let mut attempts = 0;
    while counter(&d, "calls_taken_back") == 0 {
        attempts += 1;
        assert!(attempts <= 10, "no call was pipelined and taken back in 10 attempts");
        warm_up(&mut conn);
        send_together(
            &mut conn,
            &[
                json!({"id": 1, "pool": "p", "method": "sleep", "args": 0.3}),
                json!({"id": 2, "pool": "p", "method": "mark", "args": attempts}),
            ],
        );
        let (first, second) = (recv(&mut conn), recv(&mut conn));
        assert_eq!((first["id"].clone(), second["id"].clone()), (json!(1), json!(2)));
        assert_eq!(second["result"], attempts, "each mark ran once: {second}");
    }
    assert!(counter(&d, "calls_pipelined") >= 1);
    let ran = marks(&mut conn);
    assert_eq!(ran.len(), attempts as usize, "no call ran twice: {ran:?}");

    // The call ahead outlasts queue_timeout: the waiting call gets queue_timeout at its
    // deadline, before the long call ends, and never runs.
    let before = counter(&d, "calls_taken_back");
    let mut attempts = 0;
    while counter(&d, "calls_taken_back") == before {
        attempts += 1;
        assert!(attempts <= 5, "no call was pipelined and taken back in 5 attempts");
        warm_up(&mut conn);
        send_together(
            &mut conn,
            &[
                json!({"id": 3, "pool": "p", "method": "sleep", "args": 1.6}),
                json!({"id": 4, "pool": "p", "method": "mark", "args": "too late"}),
            ],
        );
        let first = recv(&mut conn);
        assert_eq!(first["id"], 4, "the waiting call is answered first: {first}");
        assert_eq!(first["error"]["kind"], "queue_timeout", "{first}");
        let second = recv(&mut conn);
        assert_eq!(second["id"], 3, "{second}");
        assert_eq!(second["ok"], true, "{second}");
    }
    let ran = marks(&mut conn);
    assert!(
        !ran.contains(&json!("too late")),
        "a call answered queue_timeout ran: {ran:?}"
    );
}

#[test]
fn a_pipelined_call_whose_worker_dies_first_is_served_by_the_replacement() {
    let d = one_worker_pool("");
    let mut conn = UnixStream::connect(d.call_socket()).unwrap();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let pipelined = counter(&d, "calls_pipelined");
        warm_up(&mut conn);
        send_together(
            &mut conn,
            &[
                json!({"id": 1, "pool": "p", "method": "die", "args": 7}),
                json!({"id": 2, "pool": "p", "method": "mark", "args": "after the crash"}),
            ],
        );
        let mut replies = [recv(&mut conn), recv(&mut conn)];
        replies.sort_by_key(|r| r["id"].as_u64());
        assert_eq!(replies[0]["error"]["kind"], "worker_crashed", "{}", replies[0]);
        // It never started on the dead worker: its replacement runs it, once.
        assert_eq!(replies[1]["ok"], true, "{}", replies[1]);
        assert_eq!(replies[1]["result"], 1, "{}", replies[1]);
        if counter(&d, "calls_pipelined") > pipelined {
            break;
        }
        assert!(attempts < 10, "the call was never pipelined in 10 attempts");
    }
}

#[test]
fn several_calls_pipelined_behind_a_long_one_are_taken_back_together_and_run_once_in_order() {
    let d = one_worker_pool("queue_timeout = \"5s\"");
    let mut conn = UnixStream::connect(d.call_socket()).unwrap();
    let mut attempts = 0;
    let mut expected = Vec::new();
    loop {
        attempts += 1;
        assert!(
            attempts <= 10,
            "no group of calls was pipelined and taken back in 10 attempts"
        );
        let (pipelined, taken_back) = (counter(&d, "calls_pipelined"), counter(&d, "calls_taken_back"));
        warm_up(&mut conn);
        let mut reqs = vec![json!({"id": 1, "pool": "p", "method": "sleep", "args": 0.3})];
        let group: Vec<Value> = (0..6).map(|k| json!(format!("{attempts}.{k}"))).collect();
        reqs.extend(
            group
                .iter()
                .enumerate()
                .map(|(k, mark)| json!({"id": 10 + k, "pool": "p", "method": "mark", "args": mark})),
        );
        send_together(&mut conn, &reqs);
        // One worker: the replies come in the order the calls ran.
        let ids: Vec<Value> = (0..reqs.len()).map(|_| recv(&mut conn)["id"].clone()).collect();
        let want: Vec<Value> = reqs.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, want, "the calls ran in the order they came");
        expected.extend(group);
        if counter(&d, "calls_pipelined") >= pipelined + 2 && counter(&d, "calls_taken_back") >= taken_back + 2 {
            break;
        }
    }
    let ran = marks(&mut conn);
    assert_eq!(ran, expected, "every call ran once, in order");
}
