//! The man pages in `man/` are generated from the clap definitions; this test fails when
//! one is stale. Regenerate with `PIT_UPDATE_MAN=1 cargo test --test it man_`.

use clap::CommandFactory;

fn render(cmd: clap::Command) -> String {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn check_page(file: &str, cmd: clap::Command) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(file);
    let fresh = render(cmd);
    if std::env::var_os("PIT_UPDATE_MAN").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: regenerate with `PIT_UPDATE_MAN=1 cargo test --test it man_`",
        path.display()
    );
}

#[test]
fn man_page_pitd_8_is_fresh() {
    check_page("pitd.8", pit::args::PitdArgs::command());
}

#[test]
fn man_page_pitctl_1_is_fresh() {
    check_page("pitctl.1", pit::cli::Cli::command());
}

/// Every key the spec accepts (the full fixture uses each one; a spec test enforces that)
/// must be documented in man/pitd.toml.5.
#[test]
fn man_page_pitd_toml_5_documents_every_spec_key() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("man/pitd.toml.5")).unwrap();
    let full: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("tests/specs/good/full.toml")).unwrap()).unwrap();
    let mut keys: Vec<String> = Vec::new();
    fn collect(t: &toml::Table, keys: &mut Vec<String>, skip_names: bool) {
        for (k, v) in t {
            match v {
                // Pool names are the user's, not keys.
                toml::Value::Table(inner) if skip_names => collect(inner, keys, false),
                // env holds the user's variables, not keys.
                toml::Value::Table(_) if k == "env" => keys.push(k.clone()),
                toml::Value::Table(inner) => {
                    keys.push(k.clone());
                    collect(inner, keys, k == "pools");
                }
                _ => keys.push(k.clone()),
            }
        }
    }
    collect(&full, &mut keys, false);
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !["pools", "daemon", "http", "restart", "rlimits"].contains(&k.as_str()))
        .filter(|k| !page.contains(&format!(".B {k}\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "undocumented spec keys in man/pitd.toml.5: {missing:?}"
    );
    for table in [
        "[daemon]",
        "[pools.NAME]",
        "[pools.NAME.restart]",
        "[pools.NAME.rlimits]",
    ] {
        assert!(page.contains(&format!(".SH {table}")), "no section {table}");
    }
}
