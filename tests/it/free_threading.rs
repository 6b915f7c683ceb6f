//! Free-threaded Python (INTERFACE section 12) on a free-threaded build of CPython
//! (`harness::free_threaded_python`: `PIT_TEST_PYTHON_FT`, or `target/python-ft` as
//! `python3 bench/pythons.py --only ft` builds it; each test prints why it is skipped
//! without one): the workers of a concurrent pool run without the GIL and status says so;
//! an app that imports an extension module turning the GIL back on (`tests/workers/apps/
//! gil_app.py`, with a test module CPython builds) is warned about in status and events,
//! refused under `require_free_threading`, and warned about by a preloaded pool's template.

use serde_json::Value;

use crate::harness::{TestDaemon, events, free_threaded_python, wait_event, wait_until, worker};

/// The module `gil_app` loads, which the interpreter names when it turns the GIL back on.
const GIL_MODULE: &str = "_testsinglephase_check_cache_first";

/// The free-threaded interpreter, or `None` after printing why the test is skipped.
fn free_threaded(test: &str) -> Option<String> {
    match free_threaded_python() {
        Ok(python) => Some(python),
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            None
        }
    }
}

fn pool(python: &str, app: &str, size: u32, concurrency: u32, extra: &str) -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.app]\napp = \"{app}\"\npython = \"{python}\"\nsize = {size}\nconcurrency = {concurrency}\n\
         cwd = \"{}\"\nenv = {{ PYTHONPATH = \"{python_dir}\" }}\nkill_timeout = \"2s\"\n\
         startup_timeout = \"20s\"\n{extra}\n",
        worker("apps")
    )
}

fn all_idle(size: usize) -> impl Fn(&pit::proto::status::PoolStatus) -> bool {
    move |p| p.workers.len() == size && p.workers.iter().all(|w| w.state.as_str() == "idle")
}

fn status_json(d: &TestDaemon) -> Value {
    let out = d.pitctl(&["status", "app", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["pools"][0].clone()
}

fn call(d: &TestDaemon, method: &str) -> Value {
    let out = d.pitctl(&["call", "app", method]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON result")
}

#[test]
fn a_concurrent_pools_workers_on_a_free_threaded_build_run_without_the_gil() {
    let Some(python) = free_threaded("a_concurrent_pools_workers_on_a_free_threaded_build_run_without_the_gil") else {
        return;
    };
    let d = TestDaemon::start(&pool(&python, "concurrent_app", 2, 4, "require_free_threading = true"));
    let p = d.wait_pool("two ready workers", "app", all_idle(2));
    assert!(p.workers.iter().all(|w| w.gil_enabled == Some(false)), "{p:?}");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let json = status_json(&d);
    for w in json["workers"].as_array().unwrap() {
        assert_eq!(w["gil_enabled"], Value::Bool(false), "{json}");
    }
    let text = String::from_utf8_lossy(&d.pitctl(&["status", "app"]).stdout).to_string();
    assert!(text.contains("free-threaded (GIL off)"), "{text}");
    assert!(!events(&d).iter().any(|e| e["event"] == "worker_warning"), "no warning");
}

#[test]
fn an_app_that_turns_the_gil_back_on_is_warned_about_in_status_and_events() {
    let Some(python) = free_threaded("an_app_that_turns_the_gil_back_on_is_warned_about_in_status_and_events") else {
        return;
    };
    let d = TestDaemon::start(&pool(&python, "gil_app", 1, 2, ""));
    let p = d.wait_pool("a ready worker", "app", all_idle(1));
    assert_eq!(p.workers[0].gil_enabled, Some(true), "{p:?}");
    let named = |w: &str| w.starts_with("GIL_REENABLED: ") && w.contains(GIL_MODULE);
    assert!(
        p.warnings.len() == 1 && named(&p.warnings[0]) && p.warnings[0].ends_with(&format!("({})", p.workers[0].id)),
        "{:?}",
        p.warnings
    );
    let event = wait_event(&d, "a worker_warning event", |e| e["event"] == "worker_warning");
    assert!(event["message"].as_str().is_some_and(named), "{event}");
    assert_eq!(event["pool"], "app", "{event}");
    let text = String::from_utf8_lossy(&d.pitctl(&["status", "app"]).stdout).to_string();
    assert!(
        text.contains("warning: GIL_REENABLED: ") && text.contains(GIL_MODULE),
        "{text}"
    );
    let reply = call(&d, "whoami");
    assert_eq!(reply["gil"], Value::Bool(true), "{reply}");
}

#[test]
fn require_free_threading_refuses_an_app_that_turns_the_gil_back_on_naming_the_module() {
    let Some(python) =
        free_threaded("require_free_threading_refuses_an_app_that_turns_the_gil_back_on_naming_the_module")
    else {
        return;
    };
    let d = TestDaemon::start(&pool(
        &python,
        "gil_app",
        1,
        2,
        "require_free_threading = true\n[pools.app.restart]\ncrash_loop_failures = 2\ncrash_loop_window = \"30s\"\n",
    ));
    let p = d.wait_pool("the pool failing", "app", |p| p.state.as_str() == "failing");
    let why = p.failing_reason.unwrap_or_default();
    assert!(
        why.contains("require_free_threading") && why.contains("GIL_REENABLED") && why.contains(GIL_MODULE),
        "{why}"
    );
    assert!(p.workers.iter().all(|w| w.state.as_str() != "idle"), "no worker served");
}

#[test]
fn a_preloaded_pool_whose_preload_turns_the_gil_back_on_has_a_template_warning() {
    let Some(python) = free_threaded("a_preloaded_pool_whose_preload_turns_the_gil_back_on_has_a_template_warning")
    else {
        return;
    };
    let d = TestDaemon::start(&pool(&python, "gil_app", 1, 2, "preload = [\"gil_app\"]"));
    d.wait_pool("a ready worker", "app", all_idle(1));
    let event = wait_event(&d, "a template_warning event", |e| e["event"] == "template_warning");
    let gil = |w: &str| w.starts_with("GIL_REENABLED:");
    assert!(event["message"].as_str().is_some_and(gil), "{event}");
    let p = wait_until("the template's warning in status", || {
        let p = d.pool("app");
        match p.template.is_some() && p.warnings.first().is_some_and(|w| gil(w)) {
            true => Ok(p),
            false => Err(format!("{:?}", p.warnings)),
        }
    });
    assert_eq!(p.workers[0].gil_enabled, Some(true), "{p:?}");
    let json = status_json(&d);
    assert!(
        json["warnings"].as_array().unwrap()[0].as_str().is_some_and(gil),
        "{json}"
    );
}
