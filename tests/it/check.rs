//! `pitd --check` on the spec fixtures, as a user runs it.

use std::process::Command;

fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pitd"))
        .arg("--check")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap()
}

fn fixtures(kind: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/specs")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn check_accepts_good_specs_with_a_line_per_pool() {
    for path in fixtures("good") {
        let out = check(&path);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.lines().count() >= 2, "{}: {stdout}", path.display());
    }
}

#[test]
fn check_refuses_bad_specs_with_file_line_and_column() {
    let bad = fixtures("bad");
    assert!(!bad.is_empty());
    for path in bad {
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(stderr.contains(&format!("{name}:")), "{}: {stderr}", path.display());
    }
}

#[test]
fn check_on_a_missing_file_names_it() {
    let out = check(std::path::Path::new("/nonexistent/pitd.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pitd.toml"));
}

#[test]
fn the_demo_spec_is_valid_and_preloads_its_model_pool() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let out = check(&demo);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for pool in ["ticker", "flaky", "echo", "model"] {
        assert!(stdout.contains(&format!("pool {pool}:")), "{stdout}");
    }
    let model = stdout.lines().find(|l| l.contains("pool model:")).unwrap();
    assert!(
        model.contains("forked from a template preloading pit.examples.model, warmed up by pit.examples.model:warm_up"),
        "{model}"
    );
}

/// `pitd --check` on a spec of one `app` pool `x` with these extra lines.
fn check_app_pool(lines: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pitd.toml");
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        &spec,
        format!(
            "[pools.x]\ncwd = \"{}\"\nenv = {{ PYTHONPATH = \"{python_dir}\" }}\n{lines}\n",
            crate::harness::worker("apps")
        ),
    )
    .unwrap();
    let out = check(&spec);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn check_refuses_an_interpreter_or_modules_the_pool_cannot_find() {
    let python = crate::harness::python();
    let cases = [
        // (pool lines, the message's start after the file name, or None when accepted)
        (
            "app = \"callapp\"\npython = \"/nonexistent/python3\"".to_string(),
            Some("pools.x.python: interpreter `/nonexistent/python3` cannot be run"),
        ),
        (
            format!("app = \"no_such_app_for_pit\"\npython = \"{python}\""),
            Some("pools.x.app: module `no_such_app_for_pit` is not found"),
        ),
        (
            format!("app = \"callapp\"\npython = \"{python}\"\npreload = [\"json\", \"pit.no_such_module\"]"),
            Some("pools.x.preload: module `pit.no_such_module` is not found"),
        ),
        (
            format!("app = \"callapp\"\npython = \"{python}\"\npreload = [\"no_such_package.sub\"]"),
            Some("pools.x.preload: module `no_such_package.sub` is not found"),
        ),
        (
            format!(
                "app = \"callapp\"\npython = \"{python}\"\npreload = [\"json\"]\nwarmup = \"no_such_warmup_for_pit:run\""
            ),
            Some("pools.x.warmup: module `no_such_warmup_for_pit` is not found"),
        ),
        // Found through PYTHONPATH (env) and cwd, dotted names down their packages.
        (
            format!("app = \"callapp\"\npython = \"{python}\"\npreload = [\"json.decoder\", \"pit.examples.echo\"]"),
            None,
        ),
        // Found, not imported: an app whose import fails passes the check.
        (format!("app = \"import_fails\"\npython = \"{python}\""), None),
    ];
    for (lines, want) in cases {
        let (code, stderr) = check_app_pool(&lines);
        match want {
            Some(start) => {
                assert_eq!(code, Some(1), "{lines}: {stderr}");
                assert!(
                    stderr.starts_with("pitd: ") && stderr.contains(&format!("pitd.toml: {start}")),
                    "{lines}: {stderr}"
                );
            }
            None => assert_eq!(code, Some(0), "{lines}: {stderr}"),
        }
    }
    // Without PYTHONPATH the pit runtime itself is missing for an interpreter it is not
    // installed in: said as such.
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pitd.toml");
    std::fs::write(&spec, format!("[pools.y]\napp = \"callapp\"\npython = \"{python}\"\nenv = {{ PYTHONNOUSERSITE = \"1\", PYTHONPATH = \"\" }}\n")).unwrap();
    let out = check(&spec);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let has_pit = std::process::Command::new(&python)
        .args([
            "-c",
            "import importlib.util, sys; sys.exit(importlib.util.find_spec('pit') is None)",
        ])
        .current_dir(dir.path())
        .status()
        .unwrap()
        .success();
    if !has_pit {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("pools.y.app: the worker runtime `pit` is not found"),
            "{stderr}"
        );
    }
}
