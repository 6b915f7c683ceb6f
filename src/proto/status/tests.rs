//! Status: memory totals, the figures beside RSS, limits as JSON.

use super::*;

const POOL: &str = r#"{"name":"p","state":"running","size":1,"workers":[],"requests":0,"errors":0,
    "queued":0,"recycled":0,"restarts":0"#;

#[test]
fn a_pool_says_its_memory_metric_and_limits_and_null_for_an_unset_limit() {
    let pool: PoolStatus =
        serde_json::from_str(&format!(r#"{POOL},"memory_metric":"pss","max_rss_bytes":536870912}}"#)).unwrap();
    assert_eq!(pool.memory_metric, MemoryMetric::Pss);
    let json: serde_json::Value = serde_json::to_value(&pool).unwrap();
    assert_eq!(json["memory_metric"], "pss");
    assert_eq!(json["max_rss_bytes"], 536870912);
    assert!(json["hard_rss_bytes"].is_null(), "{json}");
    assert!(
        json.as_object().unwrap().contains_key("hard_rss_bytes"),
        "an unset limit is null, not left out: {json}"
    );
}

#[test]
fn the_figure_beside_rss_is_the_pools_metric_or_pss_where_pages_are_shared() {
    let worker = |pss: &str| {
        format!(
            r#"{{"id":"worker-1","pid":9,"state":"idle","health":"ok","rss_bytes":50,"memory_bytes":30,{pss}
            "rss_growth_bytes_per_s":0,"cpu_percent":0.0,"requests":0,"errors":0,"age_s":1.0,"last_recycle_reason":null}}"#
        )
    };
    let template = r#""template":{"pid":5,"rss_bytes":40,"memory_bytes":40,"pss_bytes":20}"#;
    // (memory_metric, the worker's pss/uss, template, shown metric, its total over the pool)
    let cases = [
        ("rss", "", "", None, 0),
        (
            "rss",
            r#""pss_bytes":10,"uss_bytes":2,"#,
            template,
            Some(MemoryMetric::Pss),
            30,
        ),
        (
            "pss",
            r#""pss_bytes":30,"uss_bytes":2,"#,
            "",
            Some(MemoryMetric::Pss),
            30,
        ),
        // USS is its memory_bytes, what max_rss compares.
        (
            "uss",
            r#""pss_bytes":40,"uss_bytes":30,"#,
            "",
            Some(MemoryMetric::Uss),
            30,
        ),
    ];
    for (metric, pss, template, shown, total) in cases {
        let json = format!(
            r#"{},"memory_metric":"{metric}","workers":[{}]{}{template}}}"#,
            POOL.replace(r#""workers":[],"#, ""),
            worker(pss),
            if template.is_empty() { "" } else { "," }
        );
        let pool: PoolStatus = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(pool.shown_metric(), shown, "{json}");
        if let Some(m) = shown {
            assert_eq!(pool.total(m), total, "{json}");
        }
        assert_eq!(
            pool.total(MemoryMetric::Rss),
            50 + if template.is_empty() { 0 } else { 40 }
        );
    }
}

#[test]
fn a_pools_total_is_read_from_pitds_sum_and_never_names_rss_as_pss() {
    let memory = r#""memory":{"rss_bytes":90,"memory_bytes":30,"complete":true"#;
    let cases = [
        // (memory_metric, pss summed, metric asked, total)
        ("pss", r#","pss_bytes":30"#, MemoryMetric::Pss, Some(30)),
        ("pss", r#","pss_bytes":30"#, MemoryMetric::Rss, Some(90)),
        ("uss", "", MemoryMetric::Uss, Some(30)),
        ("uss", "", MemoryMetric::Pss, None),
        // A pool on RSS whose PSS was not read in every process: no PSS total at all.
        ("rss", "", MemoryMetric::Pss, None),
        ("rss", r#","pss_bytes":25"#, MemoryMetric::Pss, Some(25)),
    ];
    for (metric, pss, asked, want) in cases {
        let json = format!(r#"{POOL},"memory_metric":"{metric}",{memory}{pss}}}}}"#);
        let pool: PoolStatus = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(pool.memory_total(asked), want, "{json}");
    }
    let without: PoolStatus = serde_json::from_str(&format!("{POOL}}}")).unwrap();
    assert_eq!(without.memory_total(MemoryMetric::Rss), None);
}

#[test]
fn a_status_without_the_memory_fields_reads_as_rss_without_limits() {
    let pool: PoolStatus = serde_json::from_str(&format!("{POOL}}}")).unwrap();
    assert_eq!(
        (pool.memory_metric, pool.max_rss_bytes, pool.hard_rss_bytes),
        (MemoryMetric::Rss, None, None)
    );
}

#[test]
fn a_pool_total_names_the_processes_it_leaves_out() {
    let all = PoolMemory::sum([
        ("worker-1".to_string(), Some((10, 4, Some(4)))),
        ("template".to_string(), Some((20, 6, Some(6)))),
        ("spare".to_string(), Some((5, 1, Some(1)))),
    ]);
    assert_eq!(
        all,
        PoolMemory {
            rss_bytes: 35,
            memory_bytes: 11,
            pss_bytes: Some(11),
            complete: true,
            unsampled: vec![],
        }
    );
    let partial = PoolMemory::sum([
        ("worker-1".to_string(), Some((10, 4, Some(4)))),
        ("template".to_string(), None),
        ("spare".to_string(), None),
    ]);
    assert_eq!((partial.rss_bytes, partial.pss_bytes), (10, Some(4)));
    assert!(!partial.complete);
    assert_eq!(partial.unsampled, ["template", "spare"]);
    let json = serde_json::to_value(&partial).unwrap();
    assert_eq!(json["complete"], false, "{json}");
    assert_eq!(json["unsampled"], serde_json::json!(["template", "spare"]), "{json}");
}

#[test]
fn pss_is_summed_only_when_every_process_has_it() {
    let mixed = PoolMemory::sum([
        ("worker-1".to_string(), Some((10, 10, None))),
        ("worker-2".to_string(), Some((10, 10, Some(3)))),
    ]);
    assert_eq!((mixed.rss_bytes, mixed.pss_bytes), (20, None));
    let none = PoolMemory::sum(std::iter::empty());
    assert!(none.complete && none.pss_bytes.is_none() && none.rss_bytes == 0);
}
