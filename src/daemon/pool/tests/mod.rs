//! The pool driven by messages through its actor, with fakes behind the seams that record
//! what pitd would do: restarts, backoff, the crash-loop breaker and surge recycling in
//! milliseconds, without processes. `calls` adds fake worker pipes for the call path;
//! `effects` drives the core alone and reads its effects; `sim` is the seeded simulation.

mod budget;
mod call_kit;
mod calls;
mod concurrent;
mod effects;
mod preload;
mod probes;
mod sim;
mod streams;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};

use super::seams::{PipeOpener, WorkerPipe};
use super::{PoolActor, PoolDeps, PoolMsg, Spawner};
use crate::daemon::events::EventLog;
use crate::daemon::pool::core::Command;
use crate::daemon::process::children::{ExitInfo, OnExit, OnSpawned};
use crate::daemon::process::output::OutputStore;
use crate::daemon::process::spawn::{SpawnRequest, Spawned};
use crate::ids::{IdAllocator, WorkerId};
use crate::lifecycle::{ExitStatusInfo, Reason, WorkerState};
use crate::proto::event::EventKind;
use crate::proto::status::{PoolState, PoolStatus};

/// Records spawn requests and signals; never starts anything.
#[derive(Default)]
struct FakeSpawner {
    spawned: Mutex<Vec<WorkerId>>,
    signals: Mutex<Vec<(u32, Signal)>>,
}

impl Spawner for FakeSpawner {
    fn spawn(&self, req: SpawnRequest, _: OnSpawned, _: OnExit) {
        self.spawned.lock().unwrap().push(req.id);
    }
    fn signal_group(&self, pid: u32, signal: Signal) {
        self.signals.lock().unwrap().push((pid, signal));
    }
}

/// Records what pitd writes to each worker's pipe; `full` workers' pipes take nothing, and
/// `waiting` says a reply is unread in every pipe.
#[derive(Debug, Default)]
struct FakePipes {
    written: Mutex<Vec<(WorkerId, Vec<u8>)>>,
    full: Mutex<Vec<WorkerId>>,
    waiting: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct FakePipe {
    id: WorkerId,
    pipes: Arc<FakePipes>,
}

impl WorkerPipe for FakePipe {
    fn send(&self, frames: Vec<u8>) -> Result<(), Vec<u8>> {
        if self.pipes.full.lock().unwrap().contains(&self.id) {
            return Err(frames);
        }
        self.pipes.written.lock().unwrap().push((self.id, frames));
        Ok(())
    }
    fn reply_waiting(&self) -> bool {
        self.pipes.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }
}

struct FakeOpener(Arc<FakePipes>);

impl PipeOpener for FakeOpener {
    fn open(
        &self,
        id: WorkerId,
        _: u32,
        _: std::os::fd::OwnedFd,
        _: std::os::fd::OwnedFd,
        _: mpsc::UnboundedSender<PoolMsg>,
    ) -> std::io::Result<Box<dyn WorkerPipe>> {
        Ok(Box::new(FakePipe {
            id,
            pipes: self.0.clone(),
        }))
    }
}

struct Harness {
    actor: PoolActor,
    fake: Arc<FakeSpawner>,
    pipes: Arc<FakePipes>,
    /// Pools that speak the pit protocol get pipes.
    pit: bool,
    /// The actor's own mailbox: what it sends itself (stream credit) lands here.
    rx: mpsc::UnboundedReceiver<PoolMsg>,
}

fn harness(pool_toml: &str) -> Harness {
    spec_harness(&format!(
        "[pools.p]\ncommand = [\"w\"]\nprotocol = \"none\"\n{pool_toml}"
    ))
}

fn spec_harness(text: &str) -> Harness {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
    let spec = crate::spec::parse(text, &path).expect("valid spec").pools.remove(0);
    let fake = Arc::new(FakeSpawner::default());
    let pipes = Arc::new(FakePipes::default());
    let pit = spec.protocol == crate::spec::Protocol::Pit;
    let deps = PoolDeps {
        pipes: Arc::new(FakeOpener(pipes.clone())),
        spawner: fake.clone(),
        ids: Arc::new(IdAllocator::default()),
        output: Arc::new(OutputStore::default()),
        events: Arc::new(EventLog::default()),
        monitor: None,
        metrics: Arc::default(),
        clock: super::seams::WorkerClock::pair(Instant::now(), 1_000_000_000),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    Harness {
        actor: PoolActor::new(spec, deps, tx),
        fake,
        pipes,
        pit,
        rx,
    }
}

impl Harness {
    fn spawned(&self) -> Vec<WorkerId> {
        self.fake.spawned.lock().unwrap().clone()
    }

    fn signals(&self) -> Vec<(u32, Signal)> {
        self.fake.signals.lock().unwrap().clone()
    }

    /// Reports worker `id` as started with pid 1000 + id (pipes stand in for its output).
    fn started(&mut self, id: WorkerId, now: Instant) {
        let (out_r, _out_w) = nix::unistd::pipe().unwrap();
        let (err_r, _err_w) = nix::unistd::pipe().unwrap();
        let (to_worker, from_worker) = match self.pit {
            true => {
                let (r, w) = nix::unistd::pipe().unwrap();
                (Some(w), Some(r))
            }
            false => (None, None),
        };
        let spawned = Spawned {
            pid: 1000 + id.0 as u32,
            started_at: now,
            stdout: out_r,
            stderr: err_r,
            to_worker,
            from_worker,
        };
        self.actor.handle(
            PoolMsg::Spawned {
                id,
                result: Ok(spawned),
            },
            now,
        );
    }

    fn exited(&mut self, id: WorkerId, code: i32, now: Instant) {
        let info = ExitInfo {
            pid: 1000 + id.0 as u32,
            status: ExitStatusInfo::Exited(code),
            at: now,
            cpu_time: None,
        };
        self.actor.handle(PoolMsg::Exited { id, info }, now);
    }

    fn status(&mut self, now: Instant) -> PoolStatus {
        let (tx, mut rx) = oneshot::channel();
        self.actor.handle(PoolMsg::Status(tx), now);
        rx.try_recv().unwrap()
    }
}

#[tokio::test]
async fn a_crashed_worker_is_replaced_after_its_backoff_under_a_new_id() {
    let mut h = harness("size = 2\n[pools.p.restart]\ninitial = \"100ms\"\nmax = \"1s\"");
    let t0 = Instant::now();
    h.actor.begin(t0);
    assert_eq!(h.spawned(), [WorkerId(1), WorkerId(2)]);
    h.started(WorkerId(1), t0);
    h.started(WorkerId(2), t0);
    // Dead 500 ms after ready, within min_uptime: a failed start, so the replacement waits
    // for the backoff.
    let t1 = t0 + Duration::from_millis(500);
    h.exited(WorkerId(1), 1, t1);
    assert_eq!(h.spawned().len(), 2, "no restart before the backoff");
    h.actor.tick(t1 + Duration::from_millis(50));
    assert_eq!(h.spawned().len(), 2, "backoff is at least 80 ms (100 ms less jitter)");
    h.actor.tick(t1 + Duration::from_millis(130));
    assert_eq!(h.spawned(), [WorkerId(1), WorkerId(2), WorkerId(3)]);
    assert_eq!(h.status(t1).restarts, 1);
    // Its worker_started names the worker it replaces and how that one ended.
    h.started(WorkerId(3), t1 + Duration::from_millis(130));
    let (events, _) = h.actor.deps.events.recent_and_subscribe();
    let started = events
        .iter()
        .find(|e| e.event == EventKind::WorkerStarted && e.worker == Some(WorkerId(3)))
        .expect("worker-3 started");
    assert_eq!(started.replaces, Some(WorkerId(1)));
    assert_eq!(started.reason, Some(Reason::Crash));
}

#[tokio::test]
async fn a_worker_that_ran_past_min_uptime_is_replaced_at_once_after_failed_starts() {
    let mut h = harness("size = 2\n[pools.p.restart]\ninitial = \"100ms\"\nmax = \"1s\"");
    let t0 = Instant::now();
    h.actor.begin(t0);
    h.started(WorkerId(1), t0);
    h.started(WorkerId(2), t0);
    // worker-1 dies at once: a failed start, backed off.
    h.exited(WorkerId(1), 1, t0 + Duration::from_millis(200));
    h.actor.tick(t0 + Duration::from_millis(400));
    assert_eq!(h.spawned().len(), 3);
    // worker-2 ran 5 s, far short of reset_after but past min_uptime: no wait.
    let t1 = t0 + Duration::from_secs(5);
    h.exited(WorkerId(2), 1, t1);
    assert_eq!(h.spawned(), [WorkerId(1), WorkerId(2), WorkerId(3), WorkerId(4)]);
}

#[tokio::test]
async fn failed_starts_trip_the_breaker_and_the_pool_probes_once_per_max() {
    let mut h = harness("size = 1\n[pools.p.restart]\ninitial = \"1ms\"\nmax = \"1s\"\ncrash_loop_failures = 3");
    let mut now = Instant::now();
    h.actor.begin(now);
    for attempt in 1..=3 {
        let id = *h.spawned().last().unwrap();
        assert_eq!(id, WorkerId(attempt), "a new id for every start");
        h.started(id, now);
        // Dead before it was up 1 s: a failed start for a supervise-only worker.
        h.exited(id, 3, now + Duration::from_millis(10));
        now += Duration::from_millis(20);
        h.actor.tick(now);
    }
    let s = h.status(now);
    assert_eq!(s.state, PoolState::Failing);
    assert!(s.failing_reason.unwrap().contains("exit code 3"));
    assert_eq!(h.spawned().len(), 3, "no restart right after the breaker trips");
    h.actor.tick(now + Duration::from_millis(500));
    assert_eq!(h.spawned().len(), 3, "no probe before restart.max");
    h.actor.tick(now + Duration::from_millis(1001));
    assert_eq!(h.spawned().len(), 4, "one probe after restart.max");
    h.actor.tick(now + Duration::from_millis(1002));
    assert_eq!(h.spawned().len(), 4, "only one probe at a time");
}

#[tokio::test]
async fn a_graceful_recycle_starts_the_replacement_first_and_one_at_a_time() {
    let mut h = harness("size = 2\nmax_surge = 1");
    let t0 = Instant::now();
    h.actor.begin(t0);
    h.started(WorkerId(1), t0);
    h.started(WorkerId(2), t0);
    let answer = h
        .actor
        .command(
            Command::Recycle {
                worker: None,
                now: false,
            },
            t0,
        )
        .unwrap();
    assert!(answer.contains("2 worker(s)"), "{answer}");
    // One replacement requested; nobody stopped yet.
    assert_eq!(h.spawned(), [WorkerId(1), WorkerId(2), WorkerId(3)]);
    assert!(
        h.signals().is_empty(),
        "no worker stops before its replacement is ready"
    );
    // The replacement is ready: the first old worker drains (idle: stops at once), which
    // frees the surge slot for the second recycle.
    h.started(WorkerId(3), t0);
    assert_eq!(h.signals(), [(1001, Signal::SIGTERM)]);
    assert_eq!(h.spawned().last(), Some(&WorkerId(4)));
    h.exited(WorkerId(1), 0, t0);
    h.started(WorkerId(4), t0);
    assert_eq!(h.signals().last(), Some(&(1002, Signal::SIGTERM)));
    let s = h.status(t0);
    assert_eq!(s.recycled, 2);
    let ready = s.workers.iter().filter(|w| w.state == WorkerState::Idle).count();
    assert_eq!(ready, 2, "never fewer than size ready: {s:?}");
}

#[tokio::test]
async fn a_worker_that_does_not_stop_gets_sigkill_after_kill_timeout() {
    let mut h = harness("size = 1\nkill_timeout = \"2s\"");
    let t0 = Instant::now();
    h.actor.begin(t0);
    h.started(WorkerId(1), t0);
    let (done, _rx) = oneshot::channel();
    h.actor.handle(
        PoolMsg::Shutdown {
            deadline: t0 + Duration::from_secs(30),
            done,
        },
        t0,
    );
    assert_eq!(h.signals(), [(1001, Signal::SIGTERM)]);
    h.actor.tick(t0 + Duration::from_secs(1));
    assert_eq!(h.signals().len(), 1);
    h.actor.tick(t0 + Duration::from_secs(2));
    assert_eq!(h.signals().last(), Some(&(1001, Signal::SIGKILL)));
}

#[test]
fn replies_joined_for_one_connection_keep_their_order_and_free_every_slot_together() {
    let slots = Arc::new(tokio::sync::Semaphore::new(4));
    let slot = || Some(slots.clone().try_acquire_owned().unwrap());
    let mut first = super::ReplyFrame::new(b"one".to_vec(), slot());
    first.join(super::ReplyFrame::new(b"two".to_vec(), slot()));
    first.join(super::ReplyFrame::new(b"three".to_vec(), None));
    let mut slotless = super::ReplyFrame::new(Vec::new(), None);
    slotless.join(super::ReplyFrame::new(b"four".to_vec(), slot()));
    assert_eq!(first.bytes, b"onetwothree");
    assert_eq!(slots.available_permits(), 1);
    drop(slotless);
    assert_eq!(slots.available_permits(), 2);
    drop(first);
    assert_eq!(slots.available_permits(), 4, "the joined frame held both slots");
}
