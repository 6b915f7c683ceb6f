//! Specs that are valid: defaults, conversions, file order, summaries and `load`.

use std::path::Path;
use std::time::Duration;

use super::super::*;
use super::*;

#[test]
fn a_minimal_pool_gets_every_default() {
    let spec = ok(&pool(""));
    let d = &spec.daemon;
    assert_eq!(spec.path, spec_path());
    assert_eq!(d.control_socket, Path::new("/run/pitd/control.sock"));
    assert_eq!(d.call_socket, Path::new("/run/pitd/call.sock"));
    assert_eq!((d.control_mode, d.call_mode), (0o600, 0o660));
    assert_eq!((d.socket_group.clone(), d.metrics_listen), (None, None));
    assert_eq!(
        (d.monitor_interval, d.shutdown_timeout),
        (Duration::from_secs(1), Duration::from_secs(30))
    );
    assert_eq!(d.log_format, LogFormat::Auto);

    let p = &spec.pools[0];
    assert_eq!((p.name.as_str(), p.size, p.protocol), ("p", 1, Protocol::Pit));
    assert_eq!(p.program, Program::Command(vec!["w".into()]));
    assert_eq!(p.cwd, Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(p.env.is_empty() && p.preload.is_empty() && p.user.is_none() && p.group.is_none());
    let secs = Duration::from_secs;
    assert_eq!(
        [p.startup_timeout, p.request_timeout, p.drain_timeout, p.kill_timeout],
        [secs(30), secs(60), secs(30), secs(5)]
    );
    let r = &p.recycle;
    assert_eq!(
        (r.max_rss, r.hard_rss, r.max_requests, r.max_age, r.max_errors),
        (None, None, None, None, None)
    );
    assert_eq!(
        (r.max_requests_jitter, r.max_age_jitter, r.memory_metric, r.max_surge),
        (0, Duration::ZERO, MemoryMetric::Rss, 1)
    );
    assert_eq!(
        (p.health.interval, p.health.timeout, p.health.failures),
        (secs(30), secs(5), 3)
    );
    assert_eq!(
        (p.queue.max, p.queue.timeout, p.queue.affinity_ttl),
        (1024, secs(30), secs(300))
    );
    let rs = &p.restart;
    assert_eq!(
        (rs.initial, rs.max, rs.reset_after),
        (Duration::from_millis(100), secs(30), secs(60))
    );
    assert_eq!((rs.crash_loop_failures, rs.crash_loop_window), (5, secs(60)));
    assert_eq!(p.rlimits, Rlimits::default());
}

#[test]
fn an_empty_spec_is_valid_and_summarised_as_no_pools() {
    let spec = ok("");
    assert!(spec.pools.is_empty());
    assert_eq!(spec.summary_lines(), ["no pools"]);
}

#[test]
fn pools_keep_file_order_and_relative_paths_start_at_the_spec_dir() {
    let spec = ok(
        "[daemon]\ncontrol_socket = \"run/c.sock\"\n[pools.zed]\ncommand = [\"a\"]\ncwd = \"src\"\n[pools.alpha]\ncommand = [\"b\"]\n",
    );
    let names: Vec<_> = spec.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["zed", "alpha"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(spec.daemon.control_socket, root.join("run/c.sock"));
    assert_eq!(spec.pools[0].cwd, root.join("src"));
}

#[test]
fn app_pools_run_the_pit_runtime_and_summaries_show_recycling() {
    let spec = ok("[pools.echo]\napp = \"pit.examples.echo\"\nsize = 4\nmax_rss = \"512MiB\"\nmax_requests = 1000\n");
    let p = &spec.pools[0];
    assert_eq!(p.argv(), ["python3", "-m", "pit", "serve", "pit.examples.echo"]);
    assert_eq!(
        spec.summary_lines(),
        ["pool echo: 4 x python3 -m pit serve pit.examples.echo (protocol pit), max_rss 512.0 MiB, max_requests 1000"]
    );
    let spec =
        ok(&pool("command = [\"python3\", \"my worker.py\"]\nprotocol = \"none\"").replace("command = [\"w\"]\n", ""));
    assert_eq!(spec.pools[0].argv(), ["python3", "my worker.py"]);
    assert_eq!(
        spec.summary_lines(),
        ["pool p: 1 x python3 'my worker.py' (protocol none)"]
    );
}

#[test]
fn a_warmup_is_passed_to_the_template_and_shown_in_the_summary() {
    let spec = ok(
        "[pools.m]\napp = \"myapp.handlers\"\npreload = [\"numpy\", \"myapp.model\"]\nwarmup = \"myapp.model:Model.warm_up\"\n",
    );
    let p = &spec.pools[0];
    assert_eq!(
        p.warmup,
        Some(Warmup {
            module: "myapp.model".into(),
            function: "Model.warm_up".into()
        })
    );
    assert_eq!(
        p.template_argv().unwrap(),
        [
            "python3",
            "-m",
            "pit",
            "template",
            "myapp.handlers",
            "--preload",
            "numpy",
            "--preload",
            "myapp.model",
            "--warmup",
            "myapp.model:Model.warm_up"
        ]
    );
    assert_eq!(
        spec.summary_lines(),
        [
            "pool m: 1 x python3 -m pit serve myapp.handlers (protocol pit), forked from a template preloading numpy \
          myapp.model, warmed up by myapp.model:Model.warm_up"
        ]
    );
}

#[test]
fn user_and_group_need_root_and_resolve_to_ids() {
    let spec = ok(&pool("user = \"root\"\ngroup = \"root\""));
    let p = &spec.pools[0];
    assert_eq!(
        p.user,
        Some(UserRef {
            name: "root".into(),
            uid: 0,
            gid: 0
        })
    );
    assert_eq!(
        p.group,
        Some(GroupRef {
            name: "root".into(),
            gid: 0
        })
    );
    let as_user = |extra: &str| parse_as(1000, &pool(extra)).unwrap_err();
    assert_eq!(
        as_user("user = \"root\""),
        "t.toml:3:1: pools.p.user: only allowed when pitd runs as root (it runs as uid 1000)"
    );
    assert_eq!(
        as_user("group = \"root\""),
        "t.toml:3:1: pools.p.group: only allowed when pitd runs as root (it runs as uid 1000)"
    );
}

#[test]
fn valid_values_are_converted() {
    let spec = ok(&pool(
        "env = { PYTHONUNBUFFERED = \"1\" }\nmax_age = \"1h\"\nmax_age_jitter = \"5m\"\nmax_requests_jitter = 100\nhard_rss = \"2GB\"\n\
         [pools.p.rlimits]\nnofile = 1024\nnproc = 512\ncpu = \"1h\"\ncore = 0\nas = \"8GiB\"",
    ));
    let p = &spec.pools[0];
    assert_eq!(p.env.get("PYTHONUNBUFFERED").map(String::as_str), Some("1"));
    assert_eq!(p.recycle.max_age, Some(Duration::from_secs(3600)));
    assert_eq!(
        (p.recycle.max_age_jitter, p.recycle.max_requests_jitter),
        (Duration::from_secs(300), 100)
    );
    assert_eq!(p.recycle.hard_rss, Some(2_000_000_000));
    let want = Rlimits {
        nofile: Some(1024),
        nproc: Some(512),
        cpu: Some(3600),
        core: Some(0),
        address_space: Some(8 << 30),
    };
    assert_eq!(p.rlimits, want);
}

#[test]
fn load_reads_files_and_names_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pitd.toml");
    std::fs::write(&path, "[pools.w]\ncommand = [\"w\"]\nprotocol = \"none\"\n").unwrap();
    let spec = load(&path).unwrap();
    assert_eq!(
        (spec.path.as_path(), spec.pools[0].cwd.as_path()),
        (path.as_path(), dir.path())
    );
    let missing = dir.path().join("missing.toml");
    let e = load(&missing).unwrap_err();
    assert!(
        matches!(e, SpecError::Read { ref path, .. } if *path == missing),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("cannot read spec {}: ", missing.display())),
        "{e}"
    );
}

#[test]
fn every_sample_is_a_valid_spec() {
    for (key, _) in SAMPLES {
        let text = spec_with_sample(key);
        parse_as(0, &text).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}
