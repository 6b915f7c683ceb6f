//! The status table as an operator reads it.

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
        text.contains("concurrency 8 per worker: 11 call(s) in flight of a capacity of 16, free-threaded (GIL off)"),
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
