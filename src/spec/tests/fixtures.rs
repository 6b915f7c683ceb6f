//! The spec fixtures in `tests/specs`: every `good/*.toml` must be accepted and every
//! `bad/*.toml` must fail with exactly the text of its sibling `*.expected`, the spec's
//! directory left out so the file shows as its base name. They run against a fixed host, so
//! they do not depend on who runs them.

use std::fs;
use std::path::{Path, PathBuf};

use super::super::{Spec, parse_with};
use super::{SAMPLES, test_host};

fn fixtures(kind: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs").join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{ext} fixtures in {}", dir.display());
    files
}

fn parse_fixture(path: &Path) -> Result<Spec, String> {
    let text = fs::read_to_string(path).expect("readable fixture");
    let dir = format!("{}/", path.parent().expect("fixture dir").display());
    parse_with(&text, path, &test_host(0)).map_err(|e| e.to_string().replace(&dir, ""))
}

#[test]
fn good_fixtures_are_accepted() {
    for path in fixtures("good", "toml") {
        let spec = parse_fixture(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!spec.summary_lines().is_empty());
    }
}

#[test]
fn bad_fixtures_fail_with_their_expected_message() {
    let mut mismatches = Vec::new();
    for path in fixtures("bad", "toml") {
        let expected_path = path.with_extension("expected");
        let expected =
            fs::read_to_string(&expected_path).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        match parse_fixture(&path) {
            Ok(_) => mismatches.push(format!("{}: accepted", path.display())),
            Err(got) if got == expected.trim_end() => {}
            Err(got) => mismatches.push(format!(
                "{}:\n  want {}\n  got  {got}",
                path.display(),
                expected.trim_end()
            )),
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_expected_message_has_its_fixture() {
    for path in fixtures("bad", "expected") {
        assert!(path.with_extension("toml").is_file(), "{} has no .toml", path.display());
    }
}

/// The full fixture documents every key by use.
#[test]
fn the_full_fixture_uses_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/good/full.toml");
    let text = fs::read_to_string(&path).expect("full.toml");
    let doc: toml_edit::DocumentMut = text.parse().expect("valid TOML");
    let pools = doc["pools"].as_table_like().expect("pools");
    let written = |key: &str| {
        let has = |mut item: &toml_edit::Item, path: &str| {
            path.split('.').all(|k| match item.get(k) {
                Some(next) => {
                    item = next;
                    true
                }
                None => false,
            })
        };
        match key.strip_prefix("daemon.") {
            Some(_) => has(doc.as_item(), key),
            None => pools.iter().any(|(_, pool)| has(pool, key)),
        }
    };
    let missing: Vec<&str> = SAMPLES
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| !written(key))
        .collect();
    assert!(missing.is_empty(), "full.toml does not use these keys: {missing:?}");
}
