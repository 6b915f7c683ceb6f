//! Tests against real processes: the monitor thread end to end, the pid-reuse guard in a
//! real pass, and the cost benchmark (ignored in the normal suite).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::sampler::{Sampler, Watch};
use super::tree::Children;
use super::*;
use crate::procfs;

/// One generous deadline for everything a test waits on.
const DEADLINE: Duration = Duration::from_secs(10);

/// A process started by the test, with whatever children it starts. Dropping it kills them
/// all by pid, children first, and reaps the process.
struct Tree {
    child: Child,
}

impl Tree {
    fn spawn(argv: &[&str]) -> Tree {
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {argv:?}: {e}"));
        Tree { child }
    }

    /// A shell with one `sleep` child.
    fn with_child() -> Tree {
        Tree::spawn(&["/bin/sh", "-c", "sleep 60 & wait"])
    }

    /// A single process.
    fn alone() -> Tree {
        Tree::spawn(&["sleep", "60"])
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let (mut table, mut buf) = (Vec::new(), Vec::new());
        if procfs::scan(&mut table, &mut buf).is_ok() {
            let tree = Children::new(table.iter().map(|s| (s.pid, s.ppid))).tree(self.pid());
            for &pid in tree.iter().skip(1).rev() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sink that forwards samples to a channel, as the daemon's does.
fn channel_sink() -> (SampleSink, mpsc::Receiver<TreeSample>) {
    let (tx, rx) = mpsc::channel();
    (
        Box::new(move |sample| {
            let _ = tx.send(sample);
        }),
        rx,
    )
}

/// The first sample that satisfies `pred`; panics at the deadline naming `what` and the
/// last sample seen.
fn wait_for(rx: &mpsc::Receiver<TreeSample>, what: &str, pred: impl Fn(&TreeSample) -> bool) -> TreeSample {
    let deadline = Instant::now() + DEADLINE;
    let mut last = None;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(sample) if pred(&sample) => return sample,
            Ok(sample) => last = Some(sample),
            Err(_) => panic!("no {what} within {DEADLINE:?}; last sample: {last:?}"),
        }
    }
}

#[test]
fn a_worker_and_its_child_are_sampled_as_one_tree() {
    let worker = Tree::with_child();
    let monitor = Monitor::start(Duration::from_millis(20)).unwrap();
    let (sink, rx) = channel_sink();
    monitor.watch(worker.pid(), MemoryMetric::Rss, sink);

    let sample = wait_for(&rx, "sample of the shell and its sleep", |s| {
        s.processes == 2 && s.rss_bytes > 0
    });
    assert_eq!(sample.pid, worker.pid());
    assert_eq!(sample.memory_bytes, sample.rss_bytes, "RSS metric");
    assert!(sample.cpu_percent >= 0.0);
}

#[test]
fn pss_and_uss_are_positive_and_at_most_rss() {
    let worker = Tree::with_child();
    let monitor = Monitor::start(Duration::from_millis(20)).unwrap();
    for metric in [MemoryMetric::Pss, MemoryMetric::Uss] {
        let (sink, rx) = channel_sink();
        // Replaces the previous watch of this pid, and with it the previous sink.
        monitor.watch(worker.pid(), metric, sink);
        let sample = wait_for(&rx, "sample of the whole tree", |s| s.processes == 2);
        assert!(
            0 < sample.memory_bytes && sample.memory_bytes <= sample.rss_bytes,
            "{metric:?}: {sample:?}"
        );
    }
}

#[test]
fn sample_now_samples_at_once_between_passes() {
    let (worker, other) = (Tree::alone(), Tree::alone());
    // No pass due for an hour: every sample below is asked for.
    let monitor = Monitor::start(Duration::from_secs(3600)).unwrap();
    let (sink, rx) = channel_sink();
    let (other_sink, other_rx) = channel_sink();
    monitor.watch(worker.pid(), MemoryMetric::Rss, sink);
    monitor.watch(other.pid(), MemoryMetric::Rss, other_sink);
    monitor.sample_now(worker.pid());
    let sample = wait_for(&rx, "the sample asked for", |_| true);
    assert_eq!(sample.pid, worker.pid());
    assert!(sample.rss_bytes > 0, "{sample:?}");
    // Only the worker asked about; a pid not watched is ignored.
    monitor.sample_now(u32::MAX);
    monitor.sample_now(other.pid());
    wait_for(&other_rx, "the other's sample", |_| true);
    assert!(rx.try_recv().is_err(), "the first worker was sampled again");
}

#[test]
fn unwatched_worker_gets_no_more_samples() {
    let worker = Tree::alone();
    let monitor = Monitor::start(Duration::from_millis(10)).unwrap();
    let (sink, rx) = channel_sink();
    monitor.watch(worker.pid(), MemoryMetric::Rss, sink);
    wait_for(&rx, "first sample", |_| true);
    monitor.unwatch(worker.pid());
    // The sink is dropped with the watch, which closes the channel once drained.
    let deadline = Instant::now() + DEADLINE;
    while rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok()
    {}
    assert!(Instant::now() < deadline, "samples kept coming after unwatch");
}

#[test]
fn a_reused_or_reaped_pid_is_dropped_without_a_sample() {
    let live = Tree::alone();
    let reaped = {
        let mut gone = Tree::alone();
        let start = start_time_ticks(gone.pid()).unwrap();
        let _ = gone.child.kill();
        let _ = gone.child.wait();
        (gone.pid(), start)
    };
    // A pid whose recorded start time differs from the one in /proc is what a reused pid
    // looks like: this test process stands in for the stranger that got the pid.
    let me = std::process::id();
    let stranger_start = start_time_ticks(me).unwrap() + 1;

    let mut sampler = Sampler::new().unwrap();
    let watch = |sampler: &mut Sampler, pid: u32, start_ticks: u64| {
        let (sink, rx) = channel_sink();
        sampler.watch(
            pid,
            Watch {
                start_ticks,
                metric: MemoryMetric::Rss,
                sink,
                rollup_warned: false,
                shared_pages: false,
            },
        );
        rx
    };
    let live_rx = watch(&mut sampler, live.pid(), start_time_ticks(live.pid()).unwrap());
    let reused_rx = watch(&mut sampler, me, stranger_start);
    let reaped_rx = watch(&mut sampler, reaped.0, reaped.1);
    sampler.pass();

    let sample = live_rx.try_recv().expect("the live worker is sampled");
    assert_eq!((sample.pid, sample.processes), (live.pid(), 1));
    // The watches were dropped, so their sinks are gone: disconnected, never a sample.
    assert_eq!(reused_rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    assert_eq!(reaped_rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    sampler.unwatch(live.pid());
    assert!(sampler.is_idle());
}

#[test]
fn a_child_that_exits_is_forgotten_by_the_sampler() {
    let worker = Tree::spawn(&["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"]);
    let mut sampler = Sampler::new().unwrap();
    let (sink, rx) = channel_sink();
    let start_ticks = start_time_ticks(worker.pid()).unwrap();
    sampler.watch(
        worker.pid(),
        Watch {
            start_ticks,
            metric: MemoryMetric::Rss,
            sink,
            rollup_warned: false,
            shared_pages: false,
        },
    );

    let deadline = Instant::now() + DEADLINE;
    let mut poll_until = |what: &str, done: &dyn Fn(&TreeSample, usize) -> bool| loop {
        sampler.pass();
        let sample = rx.try_recv().expect("one sample per pass");
        if done(&sample, sampler.remembered()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {DEADLINE:?}; last sample: {sample:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    poll_until("tree of three", &|s, remembered| s.processes == 3 && remembered == 3);

    let (mut table, mut buf) = (Vec::new(), Vec::new());
    procfs::scan(&mut table, &mut buf).unwrap();
    let one_sleep = Children::new(table.iter().map(|s| (s.pid, s.ppid))).tree(worker.pid())[1];
    kill(Pid::from_raw(one_sleep as i32), Signal::SIGKILL).unwrap();
    // The shell reaps it; the pass after that refreshes it once more and sysinfo drops it.
    poll_until("tree of two, the dead child forgotten", &|s, remembered| {
        s.processes == 2 && remembered == 2
    });
}

#[test]
fn passes_stay_on_the_interval_grid_unless_one_overruns() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    assert_eq!(next_deadline(t0, ms(100), t0 + ms(30)), t0 + ms(100));
    assert_eq!(next_deadline(t0, ms(100), t0 + ms(99)), t0 + ms(100));
    assert_eq!(
        next_deadline(t0, ms(100), t0 + ms(100)),
        t0 + ms(200),
        "overran exactly"
    );
    assert_eq!(
        next_deadline(t0, ms(100), t0 + ms(350)),
        t0 + ms(450),
        "no catch-up burst"
    );
}

/// CPU time this thread has used so far.
fn thread_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let micros = |tv: nix::sys::time::TimeVal| tv.tv_sec() as u64 * 1_000_000 + tv.tv_usec() as u64;
    Duration::from_micros(micros(usage.user_time()) + micros(usage.system_time()))
}

/// Cost of one sampling pass with N single-process workers, for each metric, next to the
/// cost of the `/proc` scan alone (the floor every pass pays). Prints a table; run with
/// `cargo test --release -- --ignored --nocapture sampling_cost`.
#[test]
#[ignore = "benchmark, prints figures"]
fn sampling_cost_per_pass() {
    const PASSES: u32 = 100;
    let (mut table, mut buf) = (Vec::new(), Vec::new());
    procfs::scan(&mut table, &mut buf).unwrap();
    println!("processes on the machine before spawning: {}", table.len());
    println!(
        "{:>5} {:>6} {:>12} {:>12} {:>14}",
        "N", "metric", "wall/pass", "cpu/pass", "scan-only wall"
    );
    for n in [8, 64, 256] {
        let mut workers: Vec<Child> = (0..n)
            .map(|_| {
                Command::new("sleep")
                    .arg("60")
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("spawning sleep")
            })
            .collect();
        let scan_start = Instant::now();
        for _ in 0..PASSES {
            procfs::scan(&mut table, &mut buf).unwrap();
        }
        let scan_wall = scan_start.elapsed() / PASSES;
        for metric in [MemoryMetric::Rss, MemoryMetric::Pss] {
            let samples = Arc::new(AtomicU64::new(0));
            let mut sampler = Sampler::new().unwrap();
            for worker in &workers {
                let pid = worker.id();
                let counter = samples.clone();
                let sink: SampleSink = Box::new(move |_| {
                    counter.fetch_add(1, Ordering::Relaxed);
                });
                let start_ticks = start_time_ticks(pid).expect("sleep is running");
                sampler.watch(
                    pid,
                    Watch {
                        start_ticks,
                        metric,
                        sink,
                        rollup_warned: false,
                        shared_pages: false,
                    },
                );
            }
            // The first pass fills sysinfo's map; measure the steady state.
            sampler.pass();
            let (wall0, cpu0) = (Instant::now(), thread_cpu());
            for _ in 0..PASSES {
                sampler.pass();
            }
            let (wall, cpu) = (wall0.elapsed() / PASSES, (thread_cpu() - cpu0) / PASSES);
            assert_eq!(
                samples.load(Ordering::Relaxed),
                u64::from(PASSES + 1) * n as u64,
                "one sample per worker"
            );
            println!(
                "{n:>5} {:>6} {wall:>12.1?} {cpu:>12.1?} {scan_wall:>14.1?}",
                format!("{metric:?}")
            );
        }
        for worker in &mut workers {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }
}
