//! Worker stdout/stderr capture. Each stream is read by its own task, line by line, with a
//! bounded line length, so a worker is never blocked on a full pipe by pitd. Lines go to
//! the log (tagged with the worker id) and to a bounded ring per worker, kept a while after
//! the worker exits for `pitctl logs` and crash reports. A preloaded pool's template has a
//! ring of its own (its lines are read and logged by the process thread, `template/`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

pub use super::lines::{LOG_LINES_PER_S, LogBudget, MAX_LINE, take_lines};
use super::repeats::{FailedStart, StartEnd, StartOutput};
use crate::ids::WorkerId;
use crate::proto::control::{LogLine, Stream};

/// Bytes of text kept per worker; older lines are dropped (and counted).
pub const RING_BYTES: usize = 256 * 1024;
/// Exited workers whose output is kept for `logs` and crash reports.
pub const KEEP_EXITED: usize = 64;

/// All captured output of the daemon run. Shared by the reader tasks (writers) and the
/// control server (readers); a plain mutex suffices: each critical section is a push or a
/// copy, never I/O.
pub struct OutputStore {
    inner: Mutex<Inner>,
    seq: AtomicU64,
    live_tx: broadcast::Sender<LogLine>,
}

#[derive(Default)]
struct Inner {
    rings: HashMap<Source, Ring>,
    exited: VecDeque<WorkerId>,
    /// Workers that got ready (forgotten with their rings): their stderr is a running
    /// worker's, no longer a start's.
    ready: HashSet<WorkerId>,
    /// Per pool, the stderr of its last failed start (`repeats.rs`).
    failed_starts: HashMap<String, FailedStart>,
}

/// Whose lines a ring holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Worker(WorkerId),
    /// A pool's preload template (one ring per pool, whichever template is running).
    Template(String),
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
    dropped: u64,
}

impl Default for OutputStore {
    fn default() -> Self {
        OutputStore {
            inner: Mutex::default(),
            seq: AtomicU64::new(0),
            live_tx: broadcast::channel(1024).0,
        }
    }
}

impl OutputStore {
    fn push(&self, pool: &str, worker: WorkerId, stream: Stream, line: String) {
        self.push_from(pool, Source::Worker(worker), stream, line)
    }

    /// A line of `pool`'s preload template, for `pitctl logs POOL`.
    pub fn push_template(&self, pool: &str, stream: Stream, line: String) {
        self.push_from(pool, Source::Template(pool.to_string()), stream, line)
    }

    fn push_from(&self, pool: &str, source: Source, stream: Stream, line: String) {
        let (worker, process) = match &source {
            Source::Worker(id) => (Some(*id), None),
            Source::Template(_) => (None, Some("template".to_string())),
        };
        let entry = LogLine {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            ts: crate::daemon::now_rfc3339(),
            pool: pool.to_string(),
            worker,
            process,
            stream,
            line,
        };
        let _ = self.live_tx.send(entry.clone());
        let mut inner = self.inner.lock().expect("output store lock");
        let ring = inner.rings.entry(source).or_default();
        ring.bytes += entry.line.len();
        ring.lines.push_back(entry);
        while ring.bytes > RING_BYTES {
            let Some(old) = ring.lines.pop_front() else { break };
            ring.bytes -= old.line.len();
            ring.dropped += 1;
        }
    }

    /// Marks a worker as exited; its ring is kept until `KEEP_EXITED` newer exits push it out.
    pub fn worker_exited(&self, worker: WorkerId) {
        let mut inner = self.inner.lock().expect("output store lock");
        inner.exited.push_back(worker);
        while inner.exited.len() > KEEP_EXITED {
            if let Some(old) = inner.exited.pop_front() {
                inner.rings.remove(&Source::Worker(old));
                inner.ready.remove(&old);
            }
        }
    }

    /// A worker of `pool` got ready: its stderr is logged as it comes from now on, and the
    /// pool's next failed start is logged in full.
    pub fn worker_ready(&self, pool: &str, worker: WorkerId) {
        let mut inner = self.inner.lock().expect("output store lock");
        inner.ready.insert(worker);
        inner.failed_starts.remove(pool);
    }

    /// Whether `worker` got ready.
    fn is_ready(&self, worker: WorkerId) -> bool {
        self.inner.lock().expect("output store lock").ready.contains(&worker)
    }

    /// `pool`'s last failed start.
    fn failed_start(&self, pool: &str) -> Option<FailedStart> {
        self.inner
            .lock()
            .expect("output store lock")
            .failed_starts
            .get(pool)
            .cloned()
    }

    /// How a starting worker's stderr ended: remembers a new failed start, counts a
    /// repeated one.
    fn start_ended(&self, pool: &str, worker: WorkerId, end: &StartEnd) {
        let mut inner = self.inner.lock().expect("output store lock");
        match end {
            StartEnd::Remember(lines) => {
                let failed = FailedStart {
                    worker,
                    lines: lines.clone(),
                    times: 1,
                };
                inner.failed_starts.insert(pool.to_string(), failed);
            }
            StartEnd::Repeated { times, .. } => {
                if let Some(f) = inner.failed_starts.get_mut(pool) {
                    f.times = *times;
                }
            }
            StartEnd::Nothing | StartEnd::Release(_) => {}
        }
    }

    /// The last `n` lines of the workers matching `filter`, in capture order.
    pub fn tail(&self, n: usize, filter: impl Fn(&LogLine) -> bool) -> Vec<LogLine> {
        let inner = self.inner.lock().expect("output store lock");
        let mut lines: Vec<LogLine> = inner
            .rings
            .values()
            .flat_map(|r| r.lines.iter())
            .filter(|l| filter(l))
            .cloned()
            .collect();
        lines.sort_by_key(|l| l.seq);
        let skip = lines.len().saturating_sub(n);
        lines.split_off(skip)
    }

    /// The last `n` stderr lines of one worker, for crash reports.
    pub fn last_stderr(&self, worker: WorkerId, n: usize) -> Vec<String> {
        self.tail(n, |l| l.worker == Some(worker) && l.stream == Stream::Stderr)
            .into_iter()
            .map(|l| l.line)
            .collect()
    }

    /// Lines captured from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.live_tx.subscribe()
    }

    /// Lines dropped from a worker's ring because it was full.
    pub fn dropped(&self, worker: WorkerId) -> u64 {
        self.inner
            .lock()
            .expect("output store lock")
            .rings
            .get(&Source::Worker(worker))
            .map_or(0, |r| r.dropped)
    }
}

/// Starts the reader tasks for a worker's stdout and stderr. Must be called inside the
/// runtime. The tasks end at EOF (the worker's group is gone).
pub fn capture(store: &std::sync::Arc<OutputStore>, pool: &str, worker: WorkerId, stdout: OwnedFd, stderr: OwnedFd) {
    for (fd, stream) in [(stdout, Stream::Stdout), (stderr, Stream::Stderr)] {
        let store = store.clone();
        let pool = pool.to_string();
        tokio::spawn(async move {
            match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                Ok(rx) => read_lines(rx, &store, &pool, worker, stream).await,
                Err(e) => tracing::error!(pool, worker = %worker, "cannot read worker output: {e}"),
            }
        });
    }
}

async fn read_lines(
    mut rx: tokio::net::unix::pipe::Receiver,
    store: &OutputStore,
    pool: &str,
    worker: WorkerId,
    stream: Stream,
) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let mut log = LogBudget::new();
    // Only stderr carries a failed start's traceback.
    let mut start = (stream == Stream::Stderr).then(StartOutput::default);
    // The pool's last failed start, read once at this start's first line of stderr: what
    // every line of it is compared with.
    let mut last: Option<Option<FailedStart>> = None;
    let mut lines = |buf: &mut Vec<u8>, eof: bool, log: &mut LogBudget| {
        for line in take_lines(buf, eof) {
            let Some(s) = start.as_mut().filter(|s| !s.started()) else {
                emit(store, pool, worker, stream, line, log);
                continue;
            };
            store.push(pool, worker, stream, line.clone());
            let last = last.get_or_insert_with(|| store.failed_start(pool));
            for l in s.line(line, store.is_ready(worker), last.as_ref()) {
                log_line(pool, worker, stream, &l, log);
            }
        }
    };
    loop {
        let n = match rx.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        lines(&mut buf, false, &mut log);
    }
    lines(&mut buf, true, &mut log);
    if let Some(s) = start {
        let end = s.end(store.is_ready(worker), last.flatten().as_ref());
        match &end {
            StartEnd::Release(held) => {
                for l in held {
                    log_line(pool, worker, stream, l, &mut log);
                }
            }
            StartEnd::Repeated { like, lines, times } => tracing::warn!(
                target: "worker",
                pool,
                worker = %worker,
                "failed to start with the same {lines} line(s) of stderr as {like} ({times} failed starts in a row print them; `pitctl logs {worker}` has them)"
            ),
            StartEnd::Nothing | StartEnd::Remember(_) => {}
        }
        store.start_ended(pool, worker, &end);
    }
}

fn emit(store: &OutputStore, pool: &str, worker: WorkerId, stream: Stream, line: String, log: &mut LogBudget) {
    log_line(pool, worker, stream, &line, log);
    store.push(pool, worker, stream, line);
}

/// A worker's line in pitd's own log, within its budget.
fn log_line(pool: &str, worker: WorkerId, stream: Stream, line: &str, log: &mut LogBudget) {
    if log.allow(std::time::Instant::now()) {
        let n = log.take_suppressed();
        if n > 0 {
            tracing::warn!(target: "worker", pool, worker = %worker, "{n} lines not logged (over {LOG_LINES_PER_S}/s); `pitctl logs {worker}` has them");
        }
        match stream {
            Stream::Stdout => tracing::info!(target: "worker", pool, worker = %worker, "{line}"),
            Stream::Stderr => tracing::warn!(target: "worker", pool, worker = %worker, "{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_in_bytes_and_counts_drops() {
        let store = OutputStore::default();
        let w = WorkerId(1);
        let line = "x".repeat(1000);
        for _ in 0..(RING_BYTES / 1000 + 50) {
            store.push("p", w, Stream::Stdout, line.clone());
        }
        let kept = store.tail(usize::MAX, |_| true);
        assert!(kept.len() * 1000 <= RING_BYTES);
        assert!(store.dropped(w) >= 50);
    }

    #[test]
    fn tail_merges_workers_in_capture_order() {
        let store = OutputStore::default();
        store.push("p", WorkerId(1), Stream::Stdout, "a".into());
        store.push("p", WorkerId(2), Stream::Stderr, "b".into());
        store.push("p", WorkerId(1), Stream::Stdout, "c".into());
        let got: Vec<String> = store.tail(2, |_| true).into_iter().map(|l| l.line).collect();
        assert_eq!(got, ["b", "c"]);
        assert_eq!(store.last_stderr(WorkerId(2), 5), ["b"]);
    }

    #[test]
    fn exited_workers_are_forgotten_after_keep_exited_newer_exits() {
        let store = OutputStore::default();
        store.push("p", WorkerId(1), Stream::Stdout, "old".into());
        for i in 1..=(KEEP_EXITED as u64 + 1) {
            store.worker_exited(WorkerId(i));
        }
        assert!(store.tail(10, |l| l.worker == Some(WorkerId(1))).is_empty());
    }
}
