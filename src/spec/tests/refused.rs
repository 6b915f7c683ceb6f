//! Specs that are invalid: every rule, and the exact message each one gives.

use super::super::*;
use super::*;

#[test]
fn every_rule_fails_with_position_key_expected_and_found() {
    let cases: &[(&str, &str)] = &[
        (
            "size = 0",
            "t.toml:3:8: pools.p.size: expected an integer >= 1, found 0",
        ),
        (
            "stream_window = 0",
            "t.toml:3:17: pools.p.stream_window: expected an integer >= 1, found 0",
        ),
        (
            "stream_idle_timeout = \"0s\"",
            "t.toml:3:23: pools.p.stream_idle_timeout: expected a duration above 0s, found 0s",
        ),
        (
            "size = -2",
            "t.toml:3:8: pools.p.size: expected a non-negative integer, found integer `-2`",
        ),
        (
            "size = 4294967296",
            "t.toml:3:8: pools.p.size: expected an integer from 1 to 4294967295, found 4294967296",
        ),
        (
            "size = \"4\"",
            "t.toml:3:8: pools.p.size: expected a non-negative integer, found string \"4\"",
        ),
        (
            "app = \"m\"",
            "t.toml:3:1: pools.p.app: expected exactly one of `app` and `command`, found both",
        ),
        (
            "python = \"python3.12\"",
            "t.toml:3:1: pools.p.python: only allowed with `app`; a `command` names its own program",
        ),
        (
            "protocol = \"http\"",
            "t.toml:3:12: pools.p.protocol: expected \"pit\" or \"none\", found \"http\"",
        ),
        (
            "protocol = \"none\"\npreload = [\"numpy\"]",
            "t.toml:4:1: pools.p.preload: only allowed with protocol = \"pit\" (preloading happens in the pit runtime's template process)",
        ),
        (
            "warmup = \"myapp:warm\"",
            "t.toml:3:1: pools.p.warmup: only allowed with `preload` (the warm-up runs once in the template process a preloaded pool forks its workers from)",
        ),
        (
            "memory_metric = \"vss\"",
            "t.toml:3:17: pools.p.memory_metric: expected \"rss\", \"pss\" or \"uss\", found \"vss\"",
        ),
        (
            "max_surge = 0",
            "t.toml:3:13: pools.p.max_surge: expected an integer >= 1, found 0",
        ),
        (
            "health_failures = 0",
            "t.toml:3:19: pools.p.health_failures: expected an integer >= 1, found 0",
        ),
        (
            "queue_max = 0",
            "t.toml:3:13: pools.p.queue_max: expected an integer >= 1, found 0",
        ),
        (
            "max_errors = 0",
            "t.toml:3:14: pools.p.max_errors: expected an integer >= 1, found 0",
        ),
        (
            "health_interval = \"0s\"",
            "t.toml:3:19: pools.p.health_interval: expected a duration above 0s, found 0s",
        ),
        (
            "startup_timeout = 30",
            "t.toml:3:19: pools.p.startup_timeout: expected a duration string like \"30s\", found integer `30`",
        ),
        (
            "kill_timeout = \"5 sec later\"",
            "t.toml:3:16: pools.p.kill_timeout: expected a duration like \"150ms\", \"30s\", \"5m\" or \"1h\", found \"5 sec later\"",
        ),
        (
            "max_rss = \"lots\"",
            "t.toml:3:11: pools.p.max_rss: expected a size like \"512MiB\", \"2GB\" or a number of bytes, found \"lots\"",
        ),
        (
            "max_rss = \"1GiB\"\nhard_rss = \"512MiB\"",
            "t.toml:4:12: pools.p.hard_rss: expected at least max_rss (1.0 GiB), found 512.0 MiB",
        ),
        (
            "cwd = \"nope\"",
            "t.toml:3:7: pools.p.cwd: expected an existing directory, found \"nope\" (no such directory: nope)",
        ),
        (
            "cwd = \"Cargo.toml\"",
            "t.toml:3:7: pools.p.cwd: expected an existing directory, found \"Cargo.toml\" (not a directory: Cargo.toml)",
        ),
        (
            "env = { A = \"1\", B = 2 }",
            "t.toml:3:22: pools.p.env.B: expected a string, found integer `2`",
        ),
        (
            "user = \"no-such-user-pit\"",
            "t.toml:3:8: pools.p.user: expected an existing user, found \"no-such-user-pit\"",
        ),
        (
            "group = \"no-such-group-pit\"",
            "t.toml:3:9: pools.p.group: expected an existing group, found \"no-such-group-pit\"",
        ),
        (
            "[pools.p.restart]\ninitial = \"1m\"",
            "t.toml:4:11: pools.p.restart.initial: expected at most restart.max (30s), found 1m",
        ),
        (
            "restart = { max = \"50ms\" }",
            "t.toml:3:19: pools.p.restart.max: expected at least restart.initial (100ms), found 50ms",
        ),
        (
            "restart.crash_loop_failures = 0",
            "t.toml:3:31: pools.p.restart.crash_loop_failures: expected an integer >= 1, found 0",
        ),
        (
            "[pools.p.rlimits]\nrss = \"1GiB\"",
            "t.toml:4:1: pools.p.rlimits.rss: RLIMIT_RSS has no effect on Linux; use the pool's max_rss (graceful recycle) or hard_rss (kill) instead",
        ),
        (
            "[pools.p.rlimits]\nnofile = 65536",
            "t.toml:4:10: pools.p.rlimits.nofile: expected at most pitd's own hard limit for nofile (4096), found 65536; pitd cannot raise it",
        ),
        (
            "rlimits = { cpu = \"2h\" }",
            "t.toml:3:19: pools.p.rlimits.cpu: expected at most pitd's own hard limit for cpu (3600s), found 7200s; pitd cannot raise it",
        ),
        (
            "rlimits = { cpu = \"1500ms\" }",
            "t.toml:3:19: pools.p.rlimits.cpu: expected a whole number of seconds, at least 1s, found 1s 500ms",
        ),
        (
            "size = 2\nsize = 3",
            "t.toml:4:1: expected each key once, found `size` again",
        ),
        (
            "size = ",
            "t.toml:3:8: string values must be quoted, expected literal string",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(&err(&pool(extra)), want, "with {extra:?}");
    }
}

#[test]
fn a_warmup_needs_a_template_and_names_a_function_of_a_module() {
    let app = |extra: &str| format!("[pools.p]\napp = \"m\"\n{extra}\n");
    let cases: &[(&str, &str)] = &[
        (
            "preload = []\nwarmup = \"m:warm\"",
            "t.toml:4:1: pools.p.warmup: only allowed with `preload` (the warm-up runs once in the template process a preloaded pool forks its workers from)",
        ),
        (
            "preload = [\"m\"]\nwarmup = \"m.warm\"",
            "t.toml:4:10: pools.p.warmup: expected \"module:function\" like \"myapp.model:warm_up\", found \"m.warm\"",
        ),
        (
            "preload = [\"m\"]\nwarmup = \"m:\"",
            "t.toml:4:10: pools.p.warmup: expected \"module:function\" like \"myapp.model:warm_up\", found \"m:\"",
        ),
        (
            "preload = [\"m\"]\nwarmup = \"my-app:warm\"",
            "t.toml:4:10: pools.p.warmup: expected \"module:function\" like \"myapp.model:warm_up\", found \"my-app:warm\"",
        ),
        (
            "preload = [\"m\"]\nwarmup = \"m:warm()\"",
            "t.toml:4:10: pools.p.warmup: expected \"module:function\" like \"myapp.model:warm_up\", found \"m:warm()\"",
        ),
        (
            "preload = [\"m\"]\nwarmup = [\"m:warm\"]",
            "t.toml:4:10: pools.p.warmup: expected a string, found array",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(&err(&app(extra)), want, "with {extra:?}");
    }
}

#[test]
fn program_rules_name_the_pool() {
    assert_eq!(
        err("[pools.p]\nsize = 2\n"),
        "t.toml:1:8: pools.p: expected exactly one of `app` and `command`, found neither"
    );
    assert_eq!(
        err("[pools.p]\ncommand = []\n"),
        "t.toml:2:11: pools.p.command: expected a non-empty array of strings, found []"
    );
    assert_eq!(
        err("[pools.p]\ncommand = [\"\", \"x\"]\n"),
        "t.toml:2:11: pools.p.command: expected the program to run as the first element, found \"\""
    );
    assert_eq!(
        err("[pools.p]\ncommand = \"w --x\"\n"),
        "t.toml:2:11: pools.p.command: expected an array, found string \"w --x\""
    );
    assert_eq!(
        err("[pools.p]\ncommand = [\"w\", 3]\n"),
        "t.toml:2:17: pools.p.command[1]: expected a string, found integer `3`"
    );
    assert_eq!(
        err("[pools.p]\napp = \"my-app\"\n"),
        "t.toml:2:7: pools.p.app: expected a Python module name like \"myapp.handlers\", found \"my-app\""
    );
    assert_eq!(
        err("[pools.\"a b\"]\ncommand = [\"w\"]\n"),
        "t.toml:1:8: pools.\"a b\": expected a pool name of letters, digits, `_` and `-`, found \"a b\""
    );
}

#[test]
fn daemon_rules() {
    let cases: &[(&str, &str)] = &[
        (
            "control_mode = \"0800\"",
            "t.toml:2:16: daemon.control_mode: expected an octal file mode like \"0600\" (at most \"0777\"), found \"0800\"",
        ),
        (
            "call_mode = 432",
            "t.toml:2:13: daemon.call_mode: expected an octal mode string like \"0600\", found integer `432`",
        ),
        (
            "log_format = \"xml\"",
            "t.toml:2:14: daemon.log_format: expected \"auto\", \"text\" or \"json\", found \"xml\"",
        ),
        (
            "metrics_listen = \"localhost\"",
            "t.toml:2:18: daemon.metrics_listen: expected a socket address like \"127.0.0.1:9464\", found \"localhost\"",
        ),
        (
            "monitor_interval = \"0ms\"",
            "t.toml:2:20: daemon.monitor_interval: expected a duration above 0s, found 0s",
        ),
        (
            "socket_group = \"no-such-group-pit\"",
            "t.toml:2:16: daemon.socket_group: expected an existing group, found \"no-such-group-pit\"",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(&err(&format!("[daemon]\n{line}\n")), want);
    }
    let spec = ok(
        "[daemon]\ncall_mode = \"0640\"\nsocket_group = \"root\"\nmetrics_listen = \"127.0.0.1:9464\"\nlog_format = \"json\"\n",
    );
    assert_eq!(spec.daemon.call_mode, 0o640);
    assert_eq!(
        spec.daemon.socket_group,
        Some(GroupRef {
            name: "root".into(),
            gid: 0
        })
    );
    assert_eq!(spec.daemon.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(spec.daemon.log_format, LogFormat::Json);
}

#[test]
fn unknown_keys_are_refused_with_the_keys_allowed_there() {
    assert_eq!(
        err("[demon]\n"),
        "t.toml:1:2: demon: unknown key `demon`, expected one of: daemon, pools, http; did you mean `daemon`?"
    );
    assert_eq!(
        err("[daemon]\ncontrol_sock = \"x\"\n"),
        "t.toml:2:1: daemon.control_sock: unknown key `control_sock`, expected one of: control_socket, call_socket, control_mode, call_mode, socket_group, monitor_interval, shutdown_timeout, shutdown_delay, metrics_listen, memory_budget, log_format; did you mean `control_socket`?"
    );
    let pool_err = err(&pool("sise = 2"));
    assert!(
        pool_err.starts_with("t.toml:3:1: pools.p.sise: unknown key `sise`, expected one of: app, command, python, ")
            && pool_err.ends_with(", restart, rlimits; did you mean `size`?"),
        "{pool_err}"
    );
    assert_eq!(
        err(&pool("[pools.p.restart]\nbackoff = \"1s\"")),
        "t.toml:4:1: pools.p.restart.backoff: unknown key `backoff`, expected one of: initial, max, reset_after, min_uptime, crash_loop_failures, crash_loop_window"
    );
    assert_eq!(
        err(&pool("rlimits = { nofile = 10, stack = 1 }")),
        "t.toml:3:26: pools.p.rlimits.stack: unknown key `stack`, expected one of: nofile, nproc, cpu, core, as"
    );
}
