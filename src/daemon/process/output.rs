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

use super::repeats::{FailedStart, StartEnd, StartOutput};
use crate::ids::WorkerId;
use crate::proto::control::{LogLine, Stream};

/// Longer lines are cut into pieces of this size: one line cannot eat the ring.
pub const MAX_LINE: usize = 8 * 1024;
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

    /// Whether `worker` got ready, and `pool`'s last failed start.
    fn start_state(&self, pool: &str, worker: WorkerId) -> (bool, Option<FailedStart>) {
        let inner = self.inner.lock().expect("output store lock");
        let ready = inner.ready.contains(&worker);
        (
            ready,
            if ready {
                None
            } else {
                inner.failed_starts.get(pool).cloned()
            },
        )
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
    let mut lines = |buf: &mut Vec<u8>, eof: bool, log: &mut LogBudget| {
        for line in take_lines(buf, eof) {
            let Some(s) = start.as_mut().filter(|s| !s.started()) else {
                emit(store, pool, worker, stream, line, log);
                continue;
            };
            store.push(pool, worker, stream, line.clone());
            let (ready, last) = store.start_state(pool, worker);
            for l in s.line(line, ready, last.as_ref()) {
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
        let (ready, last) = store.start_state(pool, worker);
        let end = s.end(ready, last.as_ref());
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

/// Lines per second per stream that also go to pitd's own log; the rest are only kept in
/// the ring. A worker printing at full speed must not turn pitd into a log pump.
pub const LOG_LINES_PER_S: f64 = 100.0;
const LOG_BURST: f64 = 200.0;

/// A token bucket for logging one stream's lines (a worker's, or a preload template's).
pub struct LogBudget {
    tokens: f64,
    last: std::time::Instant,
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget::new()
    }
}

impl LogBudget {
    pub fn new() -> LogBudget {
        LogBudget {
            tokens: LOG_BURST,
            last: std::time::Instant::now(),
            suppressed: 0,
        }
    }

    /// Whether to log the next line; counts the ones it refuses.
    pub fn allow(&mut self, now: std::time::Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * LOG_LINES_PER_S;
        self.tokens = (self.tokens + earned).min(LOG_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// The lines refused since the last call, to say so once logging resumes.
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

/// Complete lines from the front of `partial` (without their `\n` or `\r\n`), lines
/// longer than `MAX_LINE` cut into pieces of that size, and at `eof` the unterminated
/// rest; what remains is the start of the next line.
pub fn take_lines(partial: &mut Vec<u8>, eof: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut start = 0;
    loop {
        let rest = &partial[start..];
        let (end, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(pos) if pos <= MAX_LINE => (start + pos, start + pos + 1),
            _ if rest.len() >= MAX_LINE => (start + MAX_LINE, start + MAX_LINE),
            _ if eof && !rest.is_empty() => (partial.len(), partial.len()),
            _ => break,
        };
        let line = &partial[start..end];
        let line = if next > end {
            line.strip_suffix(b"\r").unwrap_or(line)
        } else {
            line
        };
        lines.push(String::from_utf8_lossy(line).into_owned());
        start = next;
    }
    partial.drain(..start);
    lines
}

fn emit(store: &OutputStore, pool: &str, worker: WorkerId, stream: Stream, line: String, log: &mut LogBudget) {
    log_line(pool, worker, stream, &line, log);
    store.push(pool, worker, stream, line);
}

/// A worker's line in pitd's own log, within its budget.
fn log_line(pool: &str, worker: WorkerId, stream: Stream, line: &str, log: &mut LogBudget) {
    if log.allow(std::time::Instant::now()) {
        if log.suppressed > 0 {
            let n = log.take_suppressed();
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
    fn take_lines_splits_cuts_long_lines_and_keeps_the_unfinished_one() {
        let mut partial = b"one\ntwo  \r\nthr".to_vec();
        assert_eq!(take_lines(&mut partial, false), ["one", "two  "]);
        assert_eq!(partial, b"thr");
        partial.extend_from_slice(b"ee\n");
        assert_eq!(take_lines(&mut partial, false), ["three"]);
        assert!(partial.is_empty());

        let mut long = vec![b'x'; MAX_LINE * 2 + 10];
        let pieces = take_lines(&mut long, false);
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() == MAX_LINE));
        assert_eq!(long.len(), 10, "the rest waits for its newline");
        assert_eq!(take_lines(&mut long, true), ["x".repeat(10)]);
        assert!(long.is_empty());
        assert!(take_lines(&mut long, true).is_empty());
    }

    #[test]
    fn log_budget_allows_a_burst_then_the_rate() {
        let mut b = LogBudget::new();
        let t0 = b.last;
        let burst = (0..1000).filter(|_| b.allow(t0)).count();
        assert_eq!(burst, LOG_BURST as usize);
        assert_eq!(b.suppressed, 1000 - LOG_BURST as u64);
        let later = t0 + std::time::Duration::from_secs(1);
        let refill = (0..1000).filter(|_| b.allow(later)).count();
        assert_eq!(refill, LOG_LINES_PER_S as usize);
    }

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
