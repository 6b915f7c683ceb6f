//! Prometheus metrics (OpenMetrics text, via prometheus-client). Counters and the latency
//! histogram are updated by the pool actors as things happen; gauges (workers by state,
//! per-worker RSS, memory metric and CPU, a preloaded pool's template and spare, pool
//! memory totals, queue depth) are set from a status report at scrape time, so a worker
//! that is gone leaves no stale series behind. Served by `pitctl metrics` and, with
//! `metrics_listen`, over HTTP at `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use strum::VariantArray;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::lifecycle::{Reason, WorkerState};
use crate::proto::call::ErrorKind;
use crate::proto::status::StatusReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub pool: String,
    /// `ok` or an error kind of the call protocol.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub principal: String,
    pub pool: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrincipalLabel {
    pub principal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub pool: String,
    /// The error kind the caller got.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub pool: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub pool: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub pool: String,
    pub worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessLabels {
    pub pool: String,
    /// `template` or `spare`.
    pub process: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~105 s: a no-op call to a slow model call.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.00005, 2.0, 22,
    ))
}

/// One pool's call counters (clones share the registered values).
#[derive(Clone)]
pub struct PoolCallMetrics {
    /// Calls written behind a busy worker's running call, and those taken back from there.
    pub pipelined: Counter,
    pub taken_back: Counter,
    /// Chunks of streams sent to callers.
    pub stream_chunks: Counter,
    ok: Counter,
    /// Indexed by the kind's declaration order.
    errors: Vec<Counter>,
    /// Calls refused before any worker saw them, one counter per kind of `ErrorKind::REJECTIONS`.
    rejected: Vec<(ErrorKind, Counter)>,
    latency: Histogram,
}

impl PoolCallMetrics {
    /// A call pitd refused before any worker saw it (`pool_drained`, `queue_full`, ...).
    pub fn rejected(&self, kind: ErrorKind) {
        if let Some((_, counter)) = self.rejected.iter().find(|(k, _)| *k == kind) {
            counter.inc();
        }
    }

    /// A call a worker ran (or was running when it died), by outcome.
    pub fn call(&self, error: Option<ErrorKind>, took: Duration) {
        match error {
            None => self.ok.inc(),
            Some(kind) => self.errors[kind as usize].inc(),
        };
        self.latency.observe(took.as_secs_f64());
    }
}

type LatencyFamily = Family<PoolLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    calls: Family<OutcomeLabels, Counter>,
    rejected: Family<KindLabels, Counter>,
    latency: LatencyFamily,
    recycles: Family<ReasonLabels, Counter>,
    restarts: Family<PoolLabel, Counter>,
    workers: Family<StateLabels, Gauge>,
    worker_rss: Family<WorkerLabels, Gauge>,
    worker_memory: Family<WorkerLabels, Gauge>,
    worker_cpu: Family<WorkerLabels, Gauge<f64, AtomicU64>>,
    template_rss: Family<ProcessLabels, Gauge>,
    template_memory: Family<ProcessLabels, Gauge>,
    pool_rss: Family<PoolLabel, Gauge>,
    pool_memory: Family<PoolLabel, Gauge>,
    queue_depth: Family<PoolLabel, Gauge>,
    calls_in_flight: Family<PoolLabel, Gauge>,
    streams_open: Family<PoolLabel, Gauge>,
    stream_chunks: Family<PoolLabel, Counter>,
    capacity: Family<PoolLabel, Gauge>,
    saturation: Family<PoolLabel, Gauge<f64, AtomicU64>>,
    shutting_down: Gauge,
    pipelined: Family<PoolLabel, Counter>,
    taken_back: Family<PoolLabel, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_in_flight: Family<PrincipalLabel, Gauge>,
    pool_memory_budget: Family<PoolLabel, Gauge>,
    memory_budget: Gauge,
    memory_used: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pit");
        let m = Metrics {
            calls: Family::default(),
            rejected: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            recycles: Family::default(),
            restarts: Family::default(),
            workers: Family::default(),
            worker_rss: Family::default(),
            worker_memory: Family::default(),
            worker_cpu: Family::default(),
            template_rss: Family::default(),
            template_memory: Family::default(),
            pool_rss: Family::default(),
            pool_memory: Family::default(),
            queue_depth: Family::default(),
            calls_in_flight: Family::default(),
            streams_open: Family::default(),
            stream_chunks: Family::default(),
            capacity: Family::default(),
            saturation: Family::default(),
            shutting_down: Gauge::default(),
            pipelined: Family::default(),
            taken_back: Family::default(),
            http_requests: Family::default(),
            http_in_flight: Family::default(),
            pool_memory_budget: Family::default(),
            memory_budget: Gauge::default(),
            memory_used: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "calls",
            "Calls a worker ran, by pool and outcome (ok or error kind)",
            m.calls.clone(),
        );
        registry.register(
            "calls_rejected",
            "Calls refused before any worker saw them, by pool and error kind",
            m.rejected.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Call latency from arrival to reply",
            m.latency.clone(),
        );
        registry.register("recycles", "Workers recycled, by pool and reason", m.recycles.clone());
        registry.register("restarts", "Workers restarted after a crash", m.restarts.clone());
        registry.register("workers", "Workers by pool and state", m.workers.clone());
        registry.register(
            "worker_rss_bytes",
            "RSS of a worker's process tree",
            m.worker_rss.clone(),
        );
        registry.register(
            "worker_memory_bytes",
            "A worker's process tree measured by its pool's memory_metric (RSS, PSS or USS)",
            m.worker_memory.clone(),
        );
        registry.register(
            "template_rss_bytes",
            "RSS of a preloaded pool's template and of its spare worker (process label)",
            m.template_rss.clone(),
        );
        registry.register(
            "template_memory_bytes",
            "A preloaded pool's template and spare worker measured by the pool's memory_metric",
            m.template_memory.clone(),
        );
        registry.register(
            "pool_rss_bytes",
            "RSS summed over a pool's workers, template and spare; absent while one is not sampled yet",
            m.pool_rss.clone(),
        );
        registry.register(
            "pool_memory_bytes",
            "The pool's memory_metric summed over its workers, template and spare; absent while one is not sampled yet",
            m.pool_memory.clone(),
        );
        registry.register(
            "worker_cpu_percent",
            "CPU of a worker's process tree (100 = one core)",
            m.worker_cpu.clone(),
        );
        registry.register("queue_depth", "Calls waiting for a worker", m.queue_depth.clone());
        registry.register(
            "calls_in_flight",
            "Calls the pool's workers hold now",
            m.calls_in_flight.clone(),
        );
        registry.register(
            "streams_open",
            "Streams the pool's workers are sending now",
            m.streams_open.clone(),
        );
        registry.register(
            "stream_chunks",
            "Chunks of streams sent to callers",
            m.stream_chunks.clone(),
        );
        registry.register(
            "capacity",
            "Calls the pool can run at once: ready workers x concurrency",
            m.capacity.clone(),
        );
        registry.register(
            "saturation",
            "(calls in flight + queued calls) / capacity (a capacity of 0 counts as 1): the signal to scale on",
            m.saturation.clone(),
        );
        registry.register(
            "shutting_down",
            "1 once pitd got SIGTERM or a shutdown request (not ready), else 0",
            m.shutting_down.clone(),
        );
        registry.register(
            "calls_pipelined",
            "Calls written to a busy worker behind its running call",
            m.pipelined.clone(),
        );
        registry.register(
            "calls_taken_back",
            "Pipelined calls put back in the queue because the call ahead ran long",
            m.taken_back.clone(),
        );
        registry.register(
            "http_requests",
            "Calls through the HTTP front door, by principal, pool and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "http_in_flight",
            "Calls and streams in flight through the HTTP front door, by principal",
            m.http_in_flight.clone(),
        );
        registry.register(
            "pool_memory_budget_bytes",
            "The budget a pool stays under, on its memory_metric (its own, or what the daemon's leaves it)",
            m.pool_memory_budget.clone(),
        );
        registry.register(
            "memory_budget_bytes",
            "The daemon's memory_budget (0 without one)",
            m.memory_budget.clone(),
        );
        registry.register(
            "memory_used_bytes",
            "Every pool's memory together, each on its memory_metric",
            m.memory_used.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Handles to one pool's call counters, so a call is booked without building labels
    /// or taking the family's lock.
    pub fn calls_of(&self, pool: &str) -> PoolCallMetrics {
        // One statement per handle: `get_or_create` returns a read guard, and a second call
        // that inserts while the first guard lives would wait on its own lock.
        let counter = |outcome: &str| -> Counter {
            let labels = OutcomeLabels {
                pool: pool.into(),
                outcome: outcome.into(),
            };
            self.calls.get_or_create(&labels).clone()
        };
        let ok = counter("ok");
        let errors = ErrorKind::VARIANTS.iter().map(|k| counter(k.as_str())).collect();
        let rejected = ErrorKind::REJECTIONS
            .iter()
            .map(|&k| {
                let labels = KindLabels {
                    pool: pool.into(),
                    kind: k.as_str().into(),
                };
                (k, self.rejected.get_or_create(&labels).clone())
            })
            .collect();
        let label = PoolLabel { pool: pool.into() };
        let latency = self.latency.get_or_create(&label).clone();
        let pipelined = self.pipelined.get_or_create(&label).clone();
        let taken_back = self.taken_back.get_or_create(&label).clone();
        let stream_chunks = self.stream_chunks.get_or_create(&label).clone();
        PoolCallMetrics {
            pipelined,
            taken_back,
            stream_chunks,
            ok,
            errors,
            rejected,
            latency,
        }
    }

    pub fn recycle(&self, pool: &str, reason: Reason) {
        self.recycles
            .get_or_create(&ReasonLabels {
                pool: pool.into(),
                reason: reason.as_str().into(),
            })
            .inc();
    }

    /// A call through the HTTP front door answered with `code`.
    pub fn http_request(&self, principal: &str, pool: &str, code: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                principal: principal.into(),
                pool: pool.into(),
                code: code.to_string(),
            })
            .inc();
    }

    /// A principal's calls in flight at the door went up or down by `delta`.
    pub fn http_in_flight(&self, principal: &str, delta: i64) {
        self.http_in_flight
            .get_or_create(&PrincipalLabel {
                principal: principal.into(),
            })
            .inc_by(delta);
    }

    pub fn restart(&self, pool: &str) {
        self.restarts.get_or_create(&PoolLabel { pool: pool.into() }).inc();
    }

    /// The OpenMetrics exposition, with the gauges set from `status`.
    pub fn render(&self, status: &StatusReport) -> String {
        self.workers.clear();
        self.worker_rss.clear();
        self.worker_memory.clear();
        self.worker_cpu.clear();
        self.template_rss.clear();
        self.template_memory.clear();
        self.pool_rss.clear();
        self.pool_memory.clear();
        self.queue_depth.clear();
        self.calls_in_flight.clear();
        self.streams_open.clear();
        self.pool_memory_budget.clear();
        let used: u64 = status
            .pools
            .iter()
            .filter_map(|p| p.memory.as_ref())
            .map(|m| m.memory_bytes)
            .sum();
        self.memory_used.set(used as i64);
        self.memory_budget
            .set(status.memory_budget.map_or(0, |b| b.budget_bytes as i64));
        self.capacity.clear();
        self.saturation.clear();
        self.shutting_down.set(i64::from(status.shutting_down));
        for pool in &status.pools {
            for &state in WorkerState::VARIANTS {
                let n = pool.workers.iter().filter(|w| w.state == state).count();
                self.workers
                    .get_or_create(&StateLabels {
                        pool: pool.name.clone(),
                        state: state.as_str().into(),
                    })
                    .set(n as i64);
            }
            self.queue_depth
                .get_or_create(&PoolLabel {
                    pool: pool.name.clone(),
                })
                .set(pool.queued as i64);
            let label = PoolLabel {
                pool: pool.name.clone(),
            };
            self.calls_in_flight.get_or_create(&label).set(pool.in_flight as i64);
            self.streams_open.get_or_create(&label).set(pool.streams_open as i64);
            if let Some(budget) = pool.memory_budget_bytes {
                self.pool_memory_budget.get_or_create(&label).set(budget as i64);
            }
            self.capacity.get_or_create(&label).set(pool.capacity as i64);
            let demand = (pool.in_flight + pool.queued) as f64;
            self.saturation
                .get_or_create(&label)
                .set(demand / pool.capacity.max(1) as f64);
            for w in &pool.workers {
                let labels = WorkerLabels {
                    pool: pool.name.clone(),
                    worker: w.id.to_string(),
                };
                self.worker_rss.get_or_create(&labels).set(w.rss_bytes as i64);
                self.worker_memory.get_or_create(&labels).set(w.memory_bytes as i64);
                self.worker_cpu.get_or_create(&labels).set(w.cpu_percent);
            }
            if let Some(t) = &pool.template {
                for (process, p) in
                    std::iter::once(("template", &t.process)).chain(t.spare.as_ref().map(|s| ("spare", s)))
                {
                    let labels = ProcessLabels {
                        pool: pool.name.clone(),
                        process: process.into(),
                    };
                    self.template_rss.get_or_create(&labels).set(p.rss_bytes as i64);
                    self.template_memory.get_or_create(&labels).set(p.memory_bytes as i64);
                }
            }
            // A total that would leave a process out (not sampled yet) is not exposed at all.
            if let Some(memory) = pool.memory.as_ref().filter(|m| m.complete) {
                let label = PoolLabel {
                    pool: pool.name.clone(),
                };
                self.pool_rss.get_or_create(&label).set(memory.rss_bytes as i64);
                self.pool_memory.get_or_create(&label).set(memory.memory_bytes as i64);
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }
}
