//! What pitd says about a preloaded pool's template beyond its forks: the end of a retired
//! template's spare is expected, not an orphan worth an INFO line; the template and spare
//! count in the pool's memory total as soon as they are there.

use serde_json::Value;

use crate::harness::{TestDaemon, python, wait_until, worker};

fn preloaded(name: &str, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.{name}]\napp = \"preload_app\"\npython = \"{}\"\nsize = 1\ncwd = \"{}\"\n\
         preload = [\"preload_heavy\"]\nenv = {{ PYTHONPATH = \"{python_dir}\", PRELOAD_DELAY = \"0\" }}\n\
         kill_timeout = \"2s\"\nstartup_timeout = \"20s\"\n{extra}\n",
        python(),
        worker("apps")
    )
}

fn status_json(d: &TestDaemon, pool: &str) -> Value {
    let out = d.pitctl(&["status", pool, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["pools"][0].clone()
}

fn spare_pid(pool: &Value) -> Option<u64> {
    pool["template"]["spare"]["pid"].as_u64()
}

/// A whole-pool recycle starts a new template and retires the old one, whose spare then
/// exits by itself: pitd reaps it as what it is, at debug level.
#[test]
fn the_spare_of_a_retired_template_is_reaped_without_an_orphan_line() {
    let d = TestDaemon::start(&preloaded("pre", ""));
    let pool = wait_until("a ready worker and a spare", || {
        let pool = status_json(&d, "pre");
        let ready = pool["workers"].as_array().unwrap().iter().any(|w| w["state"] == "idle");
        if ready && spare_pid(&pool).is_some() {
            Ok(pool)
        } else {
            Err(pool.to_string())
        }
    });
    let old_spare = spare_pid(&pool).unwrap();
    let out = d.pitctl(&["recycle", "pre"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = format!("reaped the spare worker {old_spare} of a preload template that is gone (exit code 0)");
    let log = wait_until("the old spare reaped", || {
        let log = d.log();
        if log.contains(&expected) { Ok(log) } else { Err(log) }
    });
    let line = log.lines().find(|l| l.contains(&expected)).unwrap();
    assert!(line.contains("DEBUG"), "at debug level: {line}");
    assert!(
        !log.contains("reaped orphan process"),
        "no orphan line for an expected exit:\n{log}"
    );
}

/// With a monitor interval far beyond the test, the template and the spare are sampled only
/// because pitd samples them as soon as they are there; the total names what it leaves out
/// until then, and counts them after.
#[test]
fn the_template_and_spare_are_in_the_memory_total_once_sampled() {
    let d = TestDaemon::start(&format!("monitor_interval = \"1h\"\n{}", preloaded("pre", "")));
    let pool = wait_until("a complete memory total with the template and spare", || {
        let pool = status_json(&d, "pre");
        let memory = &pool["memory"];
        let t = &pool["template"];
        let measured = |p: &Value| p["rss_bytes"].as_u64() > Some(0) && p["pss_bytes"].as_u64() > Some(0);
        let idle = pool["workers"].as_array().unwrap().iter().any(|w| w["state"] == "idle");
        match memory["complete"].as_bool() {
            Some(true) if idle && measured(t) && measured(&t["spare"]) => Ok(pool),
            Some(false) if memory["unsampled"].as_array().is_none_or(|u| u.is_empty()) => {
                panic!("an incomplete total must name what it leaves out: {pool}")
            }
            _ => Err(pool.to_string()),
        }
    });
    let t = &pool["template"];
    let parts: Vec<&Value> = pool["workers"]
        .as_array()
        .unwrap()
        .iter()
        .chain([t, &t["spare"]])
        .collect();
    let sum = |key: &str| parts.iter().map(|p| p[key].as_u64().unwrap()).sum::<u64>();
    let memory = &pool["memory"];
    assert_eq!(memory["rss_bytes"].as_u64(), Some(sum("rss_bytes")), "{pool}");
    assert_eq!(memory["pss_bytes"].as_u64(), Some(sum("pss_bytes")), "{pool}");
    assert!(memory.get("unsampled").is_none(), "{pool}");
    let text = String::from_utf8_lossy(&d.pitctl(&["status", "pre"]).stdout).to_string();
    let line = text.lines().find(|l| l.contains("memory: RSS")).unwrap_or_default();
    assert!(
        line.ends_with("(workers, template and spare)"),
        "nothing left out: {text}"
    );
}
