//! `pitctl status [POOL] [--json]`: the JSON is the wire struct itself; the table is
//! rendered by a pure function so it can be tested.

use std::fmt::Write as _;

use super::{Failure, unexpected};
use crate::client::ControlClient;
use crate::proto::control::{Reply, Request};
use crate::proto::status::{MemoryMetric, PoolMemory, PoolStatus, ProcessStatus, StatusReport};

pub fn run(client: &mut ControlClient, pool: Option<String>, json: bool) -> Result<(), Failure> {
    let reply = client.request(&Request::Status { pool })?;
    let Reply::Status(report) = reply else {
        return Err(unexpected(&reply));
    };
    let text = if json {
        serde_json::to_string(&report).map_err(|e| Failure::Refused(e.to_string()))? + "\n"
    } else {
        render(&report)
    };
    use std::io::Write;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// The human-readable status table.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pitd {} (pid {}), up {}{}",
        report.version,
        report.pid,
        age(report.uptime_s),
        if report.shutting_down {
            ", shutting down (not ready)"
        } else {
            ""
        }
    );
    if let Some(door) = &report.http {
        let _ = writeln!(out, "{}", door.summary());
    }
    if let Some(b) = &report.memory_budget {
        let _ = writeln!(
            out,
            "memory budget {}: {} used",
            bytes(b.budget_bytes),
            bytes(b.used_bytes)
        );
    }
    if report.pools.is_empty() {
        out.push_str("no pools\n");
    }
    for pool in &report.pools {
        let ready = pool
            .workers
            .iter()
            .filter(|w| matches!(w.state.as_str(), "idle" | "busy"))
            .count();
        let _ = writeln!(
            out,
            "\npool {}: {}, {}/{} ready, calls {}, errors {}{}, queued {}, recycled {}, restarts {}",
            pool.name,
            pool.state.as_str(),
            ready,
            pool.size,
            pool.requests,
            pool.errors,
            rejected_note(pool),
            pool.queued,
            pool.recycled,
            pool.restarts
        );
        let concurrent = pool.concurrency > 1;
        if concurrent {
            let _ = writeln!(
                out,
                "  concurrency {} per worker: {} call(s) in flight of a capacity of {}{}",
                pool.concurrency,
                pool.in_flight,
                pool.capacity,
                gil_note(pool)
            );
        }
        if pool.streams_open > 0 {
            let _ = writeln!(out, "  {} stream(s) open", pool.streams_open);
        }
        if let Some(limits) = limits(pool) {
            let _ = writeln!(out, "  {limits}");
        }
        if let Some(why) = &pool.failing_reason {
            let _ = writeln!(out, "  failing: {why}");
        }
        for warning in &pool.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
        let extra: Vec<(&str, &ProcessStatus)> = pool.template.as_ref().map_or_else(Vec::new, |t| {
            std::iter::once(("template", &t.process))
                .chain(t.spare.as_ref().map(|s| ("spare", s)))
                .collect()
        });
        if pool.workers.is_empty() && extra.is_empty() {
            continue;
        }
        // Workers sharing pages (preloaded pools, pss/uss metrics) also show their pool's
        // metric (PSS on rss): RSS counts each shared page in every worker.
        let shown = pool.shown_metric();
        let metric_head = shown.map_or(String::new(), |m| format!(" {:>10}", m.label()));
        let metric_cell =
            |p: &dyn Fn(MemoryMetric) -> u64| shown.map_or(String::new(), |m| format!(" {:>10}", bytes(p(m))));
        // Calls in flight per worker matter only where a worker holds several.
        let flight_head = if concurrent {
            format!(" {:>9}", "IN FLIGHT")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:<10} {:>7}  {:<9} {:<8} {:>10}{metric_head} {:>6} {:>7} {:>6}{flight_head} {:>8}  LAST RECYCLE",
            "ID", "PID", "STATE", "HEALTH", "RSS", "CPU%", "CALLS", "ERRORS", "AGE"
        );
        for w in &pool.workers {
            let metric = metric_cell(&|m| pool.figure(w, m));
            let flight = if concurrent {
                format!(" {:>9}", format!("{}/{}", w.in_flight, pool.concurrency))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {:<10} {:>7}  {:<9} {:<8} {:>10}{metric} {:>6.1} {:>7} {:>6}{flight} {:>8}  {}",
                w.id.to_string(),
                if w.pid == 0 { "-".to_string() } else { w.pid.to_string() },
                w.state.as_str(),
                w.health.as_str(),
                bytes(w.rss_bytes),
                w.cpu_percent,
                w.requests,
                w.errors,
                age(w.age_s),
                w.last_recycle_reason.map_or("-", |r| r.as_str())
            );
        }
        // The template and its spare are no workers, but their memory is the pool's.
        for (name, p) in &extra {
            let metric = metric_cell(&|m| pool.figure(*p, m));
            let _ = writeln!(
                out,
                "  {:<10} {:>7}  {:<9} {:<8} {:>10}{metric}",
                name,
                p.pid,
                "-",
                "-",
                bytes(p.rss_bytes)
            );
        }
        if let Some(memory) = pool.memory.as_ref().filter(|_| !extra.is_empty()) {
            let _ = writeln!(out, "  memory: {}", memory_line(pool, memory, shown));
        }
    }
    out
}

/// A preloaded pool's memory total, saying which processes it leaves out (not sampled yet).
fn memory_line(pool: &PoolStatus, memory: &PoolMemory, shown: Option<MemoryMetric>) -> String {
    let figure = shown
        .filter(|&m| m != MemoryMetric::Rss)
        .and_then(|m| Some((m.label(), pool.memory_total(m)?)));
    let pss = figure.map_or(String::new(), |(label, b)| format!(", {label} {}", bytes(b)));
    let left_out = if memory.complete {
        String::new()
    } else {
        format!("; not yet sampled, so left out: {}", memory.unsampled.join(", "))
    };
    format!(
        "RSS {}{pss} (workers, template and spare{left_out})",
        bytes(memory.rss_bytes)
    )
}

/// Whether the pool's interpreters run with the GIL, as its workers reported at READY; said
/// only when it tells something (a free-threaded build, or workers that disagree).
fn gil_note(pool: &PoolStatus) -> &'static str {
    let reported: Vec<bool> = pool.workers.iter().filter_map(|w| w.gil_enabled).collect();
    let off = reported.iter().filter(|on| !**on).count();
    match off {
        0 => "",
        n if n == reported.len() => ", free-threaded (GIL off)",
        _ => ", GIL off in some workers only",
    }
}

/// The pool's memory limits and the metric they compare ("limits on PSS: max_rss 512.0M");
/// `None` without any.
pub fn limits(pool: &PoolStatus) -> Option<String> {
    let mut set: Vec<String> = [("max_rss", pool.max_rss_bytes), ("hard_rss", pool.hard_rss_bytes)]
        .into_iter()
        .filter_map(|(name, limit)| Some(format!("{name} {}", bytes(limit?))))
        .collect();
    if let Some(budget) = pool.memory_budget_bytes {
        let used = pool.memory.as_ref().map_or(0, |m| m.memory_bytes);
        set.push(format!("budget {} ({} used)", bytes(budget), bytes(used)));
    }
    (!set.is_empty()).then(|| format!("limits on {}: {}", pool.memory_metric.label(), set.join(", ")))
}

fn bytes(n: u64) -> String {
    if n == 0 {
        "-".into()
    } else {
        bytesize::ByteSize(n).display().iec_short().to_string()
    }
}

/// Compact age: 42s, 3m12s, 5h03m, 2d04h.
pub fn age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// ", rejected N (kind n, ...)" for the calls the pool refused before any worker saw
/// them; nothing when there were none.
fn rejected_note(pool: &PoolStatus) -> String {
    let total: u64 = pool.rejected.values().sum();
    if total == 0 {
        return String::new();
    }
    let mut kinds: Vec<(&String, &u64)> = pool.rejected.iter().filter(|(_, n)| **n > 0).collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(", rejected {total} ({})", kinds.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_compact() {
        let cases = [
            (0.4, "0s"),
            (59.9, "59s"),
            (192.0, "3m12s"),
            (18180.0, "5h03m"),
            (187200.0, "2d04h"),
        ];
        for (secs, want) in cases {
            assert_eq!(age(secs), want, "{secs}");
        }
    }

    #[test]
    fn table_shows_pool_line_failing_reason_and_worker_rows() {
        let json = r#"{"version":"0.1.0","pid":7,"uptime_s":65.0,"pools":[{"name":"echo","state":"failing","size":2,
            "workers":[{"id":"worker-3","pid":4242,"state":"idle","health":"ok","rss_bytes":12582912,"memory_bytes":12582912,
            "rss_growth_bytes_per_s":0,"cpu_percent":1.5,"requests":40,"errors":1,"age_s":12.5,"last_recycle_reason":"max_rss"}],
            "requests":123,"errors":1,"queued":0,"recycled":2,"restarts":1,"failing_reason":"crash loop: worker-2 exit code 1"}]}"#;
        let report: StatusReport = serde_json::from_str(json).unwrap();
        let text = render(&report);
        assert!(
            text.contains("pool echo: failing, 1/2 ready, calls 123, errors 1, queued 0, recycled 2, restarts 1"),
            "{text}"
        );
        assert!(text.contains("failing: crash loop: worker-2 exit code 1"), "{text}");
        let row = text.lines().find(|l| l.contains("worker-3")).unwrap();
        for cell in ["4242", "idle", "ok", "12.0M", "1.5", "40", "12s", "max_rss"] {
            assert!(row.contains(cell), "{cell} missing in {row:?}");
        }
    }

    #[test]
    fn a_preloaded_pool_shows_its_template_spare_warnings_and_memory_totals() {
        let json = r#"{"version":"0.1.0","pid":7,"uptime_s":1.0,"pools":[{"name":"pre","state":"running","size":1,
            "workers":[{"id":"worker-1","pid":9,"state":"idle","health":"ok","rss_bytes":52428800,"memory_bytes":52428800,
            "pss_bytes":10485760,"uss_bytes":2097152,"rss_growth_bytes_per_s":0,"cpu_percent":0.0,"requests":0,"errors":0,
            "age_s":1.0,"last_recycle_reason":null}],"requests":0,"errors":0,"queued":0,"recycled":0,"restarts":0,
            "template":{"pid":5,"rss_bytes":41943040,"memory_bytes":41943040,"pss_bytes":20971520,"uss_bytes":1048576,
            "spare":{"pid":6,"rss_bytes":31457280,"memory_bytes":31457280,"pss_bytes":5242880,"uss_bytes":1048576}},
            "warnings":["1 thread(s) running in the preload template after its imports (poller)"],
            "memory":{"rss_bytes":125829120,"memory_bytes":125829120,"pss_bytes":36700160,"complete":true}}]}"#;
        let text = render(&serde_json::from_str(json).unwrap());
        assert!(text.contains("  warning: 1 thread(s) running"), "{text}");
        let row = |name: &str| text.lines().find(|l| l.trim_start().starts_with(name)).unwrap();
        assert!(
            row("template").contains(" 5 ") && row("template").contains("40.0M") && row("template").contains("20.0M"),
            "{text}"
        );
        assert!(row("spare").contains(" 6 ") && row("spare").contains("5.0M"), "{text}");
        assert!(
            text.contains("memory: RSS 120.0M, PSS 35.0M (workers, template and spare)\n"),
            "{text}"
        );
    }

    #[test]
    fn a_memory_total_says_which_processes_it_leaves_out() {
        let json = r#"{"version":"0.1.0","pid":7,"uptime_s":1.0,"pools":[{"name":"pre","state":"running","size":1,
            "workers":[{"id":"worker-1","pid":9,"state":"idle","health":"ok","rss_bytes":52428800,"memory_bytes":52428800,
            "pss_bytes":10485760,"uss_bytes":2097152,"rss_growth_bytes_per_s":0,"cpu_percent":0.0,"requests":0,"errors":0,
            "age_s":1.0,"last_recycle_reason":null}],"requests":0,"errors":0,"queued":0,"recycled":0,"restarts":0,
            "template":{"pid":5,"rss_bytes":0,"memory_bytes":0,"spare":{"pid":6,"rss_bytes":0,"memory_bytes":0}},
            "memory":{"rss_bytes":52428800,"memory_bytes":52428800,"pss_bytes":10485760,"complete":false,
                      "unsampled":["template","spare"]}}]}"#;
        let text = render(&serde_json::from_str(json).unwrap());
        assert!(
            text.contains(
                "memory: RSS 50.0M, PSS 10.0M (workers, template and spare; not yet sampled, so left out: template, spare)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_pss_column_appears_only_for_pools_that_measure_it() {
        let worker = |pss: &str| {
            format!(
                r#"{{"id":"worker-1","pid":9,"state":"idle","health":"ok","rss_bytes":52428800,"memory_bytes":52428800,{pss}
                "rss_growth_bytes_per_s":0,"cpu_percent":0.0,"requests":0,"errors":0,"age_s":1.0,"last_recycle_reason":null}}"#
            )
        };
        let pool = |name: &str, w: String| {
            format!(
                r#"{{"name":"{name}","state":"running","size":1,"workers":[{w}],"requests":0,"errors":0,"queued":0,"recycled":0,"restarts":0}}"#
            )
        };
        let json = format!(
            r#"{{"version":"0.1.0","pid":7,"uptime_s":1.0,"pools":[{},{}]}}"#,
            pool("pre", worker(r#""pss_bytes":10485760,"uss_bytes":2097152,"#)),
            pool("plain", worker(""))
        );
        let text = render(&serde_json::from_str(&json).unwrap());
        let heads: Vec<&str> = text.lines().filter(|l| l.contains("HEALTH")).collect();
        assert!(heads[0].contains("PSS") && !heads[1].contains("PSS"), "{text}");
        let row = text.lines().find(|l| l.contains("worker-1")).unwrap();
        assert!(row.contains("50.0M") && row.contains("10.0M"), "{row}");
    }

    #[test]
    fn a_pool_on_uss_shows_uss_beside_rss_and_its_limits_on_it() {
        let json = r#"{"version":"0.1.0","pid":7,"uptime_s":1.0,"pools":[{"name":"u","state":"running","size":1,
            "memory_metric":"uss","max_rss_bytes":536870912,"hard_rss_bytes":1073741824,
            "workers":[{"id":"worker-1","pid":9,"state":"idle","health":"ok","rss_bytes":52428800,"memory_bytes":3145728,
            "pss_bytes":10485760,"uss_bytes":3145728,"rss_growth_bytes_per_s":0,"cpu_percent":0.0,"requests":0,"errors":0,
            "age_s":1.0,"last_recycle_reason":null}],"requests":0,"errors":0,"queued":0,"recycled":0,"restarts":0},
            {"name":"plain","state":"running","size":1,"max_rss_bytes":268435456,"workers":[],"requests":0,"errors":0,
            "queued":0,"recycled":0,"restarts":0}]}"#;
        let text = render(&serde_json::from_str(json).unwrap());
        let head = text.lines().find(|l| l.contains("HEALTH")).unwrap();
        assert!(head.contains("USS") && !head.contains("PSS"), "{text}");
        let row = text.lines().find(|l| l.contains("worker-1")).unwrap();
        assert!(
            row.contains("50.0M") && row.contains("3.0M") && !row.contains("10.0M"),
            "{row}"
        );
        assert!(
            text.contains("  limits on USS: max_rss 512.0M, hard_rss 1.0G\n"),
            "{text}"
        );
        assert!(text.contains("  limits on RSS: max_rss 256.0M\n"), "{text}");
    }

    #[test]
    fn a_concurrent_pool_shows_its_capacity_each_workers_calls_in_flight_and_the_gil() {
        let worker = |id: u32, in_flight: u32| {
            format!(
                r#"{{"id":"worker-{id}","pid":{id}0,"state":"busy","health":"ok","rss_bytes":1048576,"memory_bytes":1048576,
                "rss_growth_bytes_per_s":0,"cpu_percent":0.0,"requests":3,"errors":0,"age_s":1.0,"last_recycle_reason":null,
                "in_flight":{in_flight},"gil_enabled":false}}"#
            )
        };
        let json = format!(
            r#"{{"version":"0.1.0","pid":7,"uptime_s":1.0,"pools":[{{"name":"agent","state":"running","size":2,
            "workers":[{},{}],"requests":6,"errors":0,"queued":0,"recycled":0,"restarts":0,
            "concurrency":8,"in_flight":11,"capacity":16}}]}}"#,
            worker(1, 8),
            worker(2, 3)
        );
        let text = render(&serde_json::from_str(&json).unwrap());
        assert!(
            text.contains(
                "concurrency 8 per worker: 11 call(s) in flight of a capacity of 16, free-threaded (GIL off)"
            ),
            "{text}"
        );
        assert!(text.lines().any(|l| l.contains("IN FLIGHT")), "{text}");
        let row = |id: &str| text.lines().find(|l| l.contains(id)).unwrap().to_string();
        assert!(
            row("worker-1").contains(" 8/8 ") && row("worker-2").contains(" 3/8 "),
            "{text}"
        );
    }

    #[test]
    fn a_pool_of_one_call_per_worker_has_no_in_flight_column() {
        let json = r#"{"version":"0.1.0","pid":7,"uptime_s":1.0,"pools":[{"name":"echo","state":"running","size":1,
            "workers":[{"id":"worker-1","pid":9,"state":"busy","health":"ok","rss_bytes":1048576,"memory_bytes":1048576,
            "rss_growth_bytes_per_s":0,"cpu_percent":0.0,"requests":0,"errors":0,"age_s":1.0,"last_recycle_reason":null,
            "in_flight":1,"gil_enabled":true}],"requests":0,"errors":0,"queued":0,"recycled":0,"restarts":0}]}"#;
        let text = render(&serde_json::from_str(json).unwrap());
        assert!(!text.contains("IN FLIGHT") && !text.contains("concurrency"), "{text}");
    }
}
