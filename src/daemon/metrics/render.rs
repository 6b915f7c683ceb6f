//! The exposition: the gauges set from a status report, then every family encoded.

use super::*;

impl Metrics {
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
