//! What the probes read: the facts a running pool actor publishes, from the moment its
//! handle exists and after whatever changes them, a message or a timer.

use std::time::{Duration, Instant};

use super::super::seams::WorkerMsg;
use super::super::{Call, PoolHandle, PoolMsg, start};
use super::call_kit::{W1, caller, req};
use super::spec_harness;
use crate::daemon::probe;
use crate::daemon::process::spawn::Spawned;
use crate::proto::worker::{Ready, encode_call};

/// A pit pool of one worker, running on the test's runtime.
fn running_pool(keys: &str) -> PoolHandle {
    let h = spec_harness(&format!("[pools.p]\napp = \"app\"\nsize = 1\n{keys}\n"));
    start(h.actor.core.spec.clone(), h.actor.deps.clone())
}

fn ready(handle: &PoolHandle) -> Result<(), String> {
    probe::ready(false, &[handle.facts.snapshot(&handle.name)])
}

/// Waits (up to 10 s) for the probe `ready` to give `want`, letting the actor run.
async fn wait_ready(handle: &PoolHandle, want: Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(handle) != want {
        assert!(
            Instant::now() < deadline,
            "probe ready: {:?}, want {want:?}",
            ready(handle)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_pool_whose_workers_have_not_started_is_not_ready() {
    // The fake spawner never reports the start: like a worker forked by a template still
    // importing the app, the actor hears nothing for a while.
    let handle = running_pool("");
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(ready(&handle), Err("pool p has no ready worker".to_string()));
}

#[tokio::test]
async fn a_worker_killed_by_a_timer_stops_counting_as_ready() {
    let handle = running_pool("request_timeout = \"50ms\"");
    let (out_r, _out_w) = nix::unistd::pipe().unwrap();
    let (err_r, _err_w) = nix::unistd::pipe().unwrap();
    let (to_r, to_w) = nix::unistd::pipe().unwrap();
    let spawned = Spawned {
        pid: 1001,
        started_at: Instant::now(),
        stdout: out_r,
        stderr: err_r,
        to_worker: Some(to_w),
        from_worker: Some(to_r),
    };
    handle.send(PoolMsg::Spawned {
        id: W1,
        result: Ok(spawned),
    });
    let msg = WorkerMsg::Ready(Ready {
        protocol: 1,
        pid: 1001,
        handlers: vec!["echo".into()],
        concurrency: 1,
        gil_enabled: Some(true),
        gil_reenabled: None,
    });
    handle.send(PoolMsg::FromWorker { id: W1, msg });
    wait_ready(&handle, Ok(())).await;
    // The call times out on the actor's timer: the worker is killed, and until its exit
    // is reaped (never, with the fake spawner) nothing else reaches the actor.
    let c = caller();
    handle.send(PoolMsg::Call(Call {
        req_id: req(1),
        client_id: b"1".to_vec().into(),
        frame: encode_call(req(1), 0, "echo", None, b"null"),
        method: "echo".into(),
        session: None,
        timeout: None,
        idempotent: false,
        retried: false,
        reply: c.tx.clone(),
        slot: None,
        received: Instant::now(),
        stream: false,
        chunks: 0,
        ends_by: None,
    }));
    wait_ready(&handle, Err("pool p has no ready worker".to_string())).await;
}
