//! The core alone: inputs in, effects out, read as they come out. No actor, no fakes of
//! processes or pipes, no runtime: what the pool asks for is the test's whole view.

use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::super::core::{Command, CoreDeps, Input, PoolCore};
use super::super::effect::{Effect, Waiter};
use super::super::seams::{WorkerClock, WorkerMsg};
use super::call_kit::{Caller, caller, decode_all, ms, req};
use crate::daemon::process::children::ExitInfo;
use crate::daemon::process::spawn::TemplateSink;
use crate::ids::{IdAllocator, WorkerId};
use crate::lifecycle::ExitStatusInfo;
use crate::proto::worker::{Ready, encode_call};

pub(super) const W1: WorkerId = WorkerId(1);
pub(super) const W2: WorkerId = WorkerId(2);

/// A pit pool of `size` workers, started and ready at `t0`, its effects so far taken.
pub(super) fn ready_core(size: u32, t0: Instant) -> PoolCore {
    keyed_core(&format!("size = {size}"), t0)
}

/// A pit pool of the given extra keys, started and ready at `t0`, its effects so far taken.
pub(super) fn keyed_core(keys: &str, t0: Instant) -> PoolCore {
    let text = format!("[pools.p]\napp = \"app\"\n{keys}\n");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
    let spec = crate::spec::parse(&text, &path).expect("valid spec").pools.remove(0);
    let deps = CoreDeps {
        ids: Arc::new(IdAllocator::default()),
        metrics: Arc::default(),
        clock: WorkerClock::pair(t0, 1_000_000_000),
        output: Arc::default(),
    };
    let mut core = PoolCore::new(spec, deps, TemplateSink(Arc::new(|_| {})), 7);
    core.fill(t0);
    let spawned: Vec<WorkerId> = core
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Spawn(req) => Some(req.id),
            _ => None,
        })
        .collect();
    for id in spawned {
        let started = Input::Started {
            id,
            pid: pid(id),
            started_at: t0,
            pipes: Some(Ok(())),
        };
        core.handle(started, t0);
        let ready = Ready {
            protocol: 1,
            pid: pid(id),
            handlers: vec!["echo".into(), "tokens".into()],
            concurrency: 1,
            gil_enabled: Some(true),
            gil_reenabled: None,
        };
        core.handle(
            Input::Worker {
                id,
                msg: WorkerMsg::Ready(ready),
            },
            t0,
        );
    }
    core.take_effects();
    core
}

pub(super) fn pid(id: WorkerId) -> u32 {
    1000 + id.0 as u32
}

fn call(c: &Caller, id: u64, idempotent: bool, now: Instant) -> Input {
    Input::Call(super::super::Call {
        req_id: req(id),
        client_id: id.to_string().into_bytes().into(),
        frame: encode_call(req(id), 0, "echo", None, b"null"),
        method: "echo".into(),
        session: None,
        timeout: None,
        idempotent,
        retried: false,
        reply: c.tx.clone(),
        slot: None,
        received: now,
        stream: false,
        chunks: 0,
        ends_by: None,
    })
}

pub(super) fn answer(id: WorkerId, call: u64) -> Input {
    Input::Worker {
        id,
        msg: WorkerMsg::Reply {
            req_id: req(call),
            error: None,
            body: b"1".to_vec(),
        },
    }
}

pub(super) fn exited(id: WorkerId, signal: bool, now: Instant) -> Input {
    let status = match signal {
        true => ExitStatusInfo::Signaled(9),
        false => ExitStatusInfo::Exited(0),
    };
    Input::Exited {
        id,
        info: ExitInfo {
            pid: pid(id),
            status,
            at: now,
            cpu_time: None,
        },
    }
}

/// The effects, in words: what a reader of the pool's decisions wants to see.
pub(super) fn said(core: &mut PoolCore) -> Vec<String> {
    core.take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Write { worker, frames } => Some(
                decode_all(&frames)
                    .into_iter()
                    .map(|(kind, req_id)| format!("{worker}: {kind} {req_id}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Effect::Reply { .. } => Some("reply".into()),
            Effect::Spawn(req) => Some(format!("spawn {}", req.id)),
            Effect::Signal { pid, signal } => Some(format!("{signal} to {pid}")),
            Effect::Event(ev) => Some(format!(
                "event {}",
                serde_json::to_value(ev.event).unwrap().as_str().unwrap()
            )),
            Effect::Wake(Waiter(n)) => Some(format!("wake {n}")),
            Effect::Forget(id) => Some(format!("forget {id}")),
            Effect::ReleaseTemplate => Some("release template".into()),
            // Samples and output labels: the monitor's and the log's business.
            Effect::Watch { .. }
            | Effect::SampleNow(_)
            | Effect::Unwatch(_)
            | Effect::OutputReady(_)
            | Effect::TemplateLine { .. } => None,
        })
        .collect()
}

#[test]
fn a_call_is_written_to_the_longest_idle_worker_and_its_answer_leaves_after_the_next_write() {
    let t0 = Instant::now();
    let mut core = ready_core(2, t0);
    let c = caller();
    core.handle(call(&c, 1, false, t0), t0);
    assert_eq!(said(&mut core), ["worker-1: call 1001"]);
    // The worker's answer and the next call in one batch: the worker gets its next call
    // before the caller gets the reply.
    let tick = core.feed(answer(W1, 1), t0 + ms(1));
    let tick = core.feed(call(&c, 2, false, t0 + ms(1)), t0 + ms(1)) || tick;
    core.settle(tick, t0 + ms(1));
    let out = said(&mut core);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].ends_with("call 1002"), "{out:?}");
    assert!(out[1].starts_with("reply"), "{out:?}");
}

#[test]
fn a_pipe_that_refuses_a_write_gets_its_worker_killed_and_an_idempotent_call_retried() {
    let t0 = Instant::now();
    let mut core = ready_core(2, t0);
    let c = caller();
    core.handle(call(&c, 1, true, t0), t0);
    assert_eq!(said(&mut core), ["worker-1: call 1001"]);
    core.handle(Input::PipeRefused(W1), t0 + ms(1));
    // Killed at once, its replacement started at once.
    assert_eq!(
        said(&mut core),
        ["SIGKILL to 1001", "event worker_recycled", "spawn worker-3"]
    );
    // Nothing more is written to it; its exit, once its reply pipe is read to the end,
    // hands the call to the other worker.
    core.handle(exited(W1, true, t0 + ms(2)), t0 + ms(2));
    assert_eq!(
        said(&mut core),
        Vec::<String>::new(),
        "its last replies may be on their way"
    );
    let closed = Input::Worker {
        id: W1,
        msg: WorkerMsg::Closed,
    };
    core.handle(closed, t0 + ms(2));
    let out = said(&mut core);
    assert!(out.contains(&"worker-2: call 1001".to_string()), "{out:?}");
    assert!(out.contains(&"forget worker-1".to_string()), "{out:?}");
}

#[test]
fn a_drain_stops_idle_workers_and_wakes_its_waiter_when_the_last_is_reaped() {
    let t0 = Instant::now();
    let mut core = ready_core(2, t0);
    let answer = core.command(
        Command::Drain {
            worker: None,
            done: Some(Waiter(7)),
        },
        t0,
    );
    assert!(answer.is_ok(), "{answer:?}");
    let out = said(&mut core);
    for w in [W1, W2] {
        assert!(out.contains(&format!("{} to {}", Signal::SIGTERM, pid(w))), "{out:?}");
    }
    core.handle(exited(W1, false, t0 + ms(5)), t0 + ms(5));
    assert!(
        !said(&mut core).iter().any(|e| e.starts_with("wake")),
        "one worker is left"
    );
    core.handle(exited(W2, false, t0 + ms(6)), t0 + ms(6));
    let out = said(&mut core);
    assert!(out.contains(&"wake 7".to_string()), "{out:?}");
}

#[test]
fn shutdown_lets_a_running_call_finish_then_stops_its_worker_and_wakes_the_caller() {
    let t0 = Instant::now();
    let mut core = ready_core(1, t0);
    let c = caller();
    core.handle(call(&c, 1, false, t0), t0);
    said(&mut core);
    core.handle(
        Input::Shutdown {
            deadline: t0 + ms(1000),
            waiter: Waiter(3),
        },
        t0 + ms(1),
    );
    assert!(
        !said(&mut core).iter().any(|e| e.contains("SIGTERM")),
        "its call still runs"
    );
    core.handle(answer(W1, 1), t0 + ms(2));
    let out = said(&mut core);
    assert_eq!(out, ["SIGTERM to 1001", "reply"]);
    core.handle(exited(W1, false, t0 + ms(3)), t0 + ms(3));
    assert!(core.finished());
    core.end();
    assert_eq!(said(&mut core).last().map(String::as_str), Some("wake 3"));
}
