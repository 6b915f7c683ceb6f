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
        model.contains("forked from a template preloading pit.examples.model"),
        "{model}"
    );
}
