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
