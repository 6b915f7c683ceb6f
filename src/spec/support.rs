//! What this pitd can do yet. The documented spec is ahead of the daemon: keys whose
//! behaviour is not built are refused by name, never accepted and ignored. Shrink
//! `NOT_SUPPORTED_YET` (and flip `PIT_PROTOCOL_SUPPORTED`) as features land; nothing else
//! needs to change.

use toml_edit::{Document, Item, TableLike};

use super::error::Problem;
use super::types::{PoolSpec, Protocol};

/// Keys whose behaviour is not built: relative to a pool (`"max_rss"`, `"restart.max"`), or
/// to the root for daemon keys (`"daemon.metrics_listen"`).
pub const NOT_SUPPORTED_YET: &[&str] = &[];

/// Whether pools may speak the pit protocol (calls routed to workers). Until they can, such
/// a pool is refused, whether `protocol = "pit"` is written or taken as the default.
pub const PIT_PROTOCOL_SUPPORTED: bool = true;

/// What a validation run refuses as not built; `CURRENT` is this build's.
#[derive(Debug, Clone, Copy)]
pub struct Support {
    pub not_supported_yet: &'static [&'static str],
    pub pit_protocol: bool,
}

impl Support {
    pub const CURRENT: Support = Support {
        not_supported_yet: NOT_SUPPORTED_YET,
        pit_protocol: PIT_PROTOCOL_SUPPORTED,
    };
}

const NOT_BUILT: &str = "not supported yet by this pitd (it is part of the spec, but its behaviour is not built)";

/// The first (in file order) use of something this build does not support, if any. `doc` is
/// the spec's text parsed by `toml_edit`; presence is read from it because it mirrors the
/// file exactly, nested tables and inline tables alike.
pub(super) fn check(doc: &Document<&str>, pools: &[PoolSpec], support: Support) -> Result<(), Problem> {
    let root = doc.as_table();
    let pool_tables: Vec<(&str, &dyn TableLike)> = root
        .get("pools")
        .and_then(Item::as_table_like)
        .map(|t| {
            t.iter()
                .filter_map(|(name, item)| Some((name, item.as_table_like()?)))
                .collect()
        })
        .unwrap_or_default();

    let mut problems = Vec::new();
    for key in support.not_supported_yet {
        let tables: Vec<&dyn TableLike> = if key.starts_with("daemon.") {
            vec![root]
        } else {
            pool_tables.iter().map(|(_, t)| *t).collect()
        };
        for k in tables.into_iter().filter_map(|t| key_at(t, key)) {
            problems.push(Problem::key(k.span().unwrap_or(0..0), NOT_BUILT));
        }
    }
    if !support.pit_protocol {
        for pool in pools.iter().filter(|p| p.protocol == Protocol::Pit) {
            let Some((name, table)) = pool_tables.iter().find(|(n, _)| *n == pool.name) else {
                continue;
            };
            // Written or not, the error names the protocol key; without it, it points at the pool.
            let key = key_at(*table, "protocol").or_else(|| key_at(root, &format!("pools.{name}")));
            let span = key.and_then(toml_edit::Key::span).unwrap_or(0..0);
            let message = format!(
                "\"pit\" is {NOT_BUILT}; set protocol = \"none\" to supervise the workers without routing calls to them"
            );
            problems.push(Problem::key(span, message).named(format!("pools.{name}.protocol")));
        }
    }
    match problems.into_iter().min_by_key(|p| p.span.start) {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// The key at a dotted path below `table`, if written. Splitting on dots is safe because
/// every segment is a bare key: spec keys, and pool names, which validation keeps bare.
fn key_at<'d>(table: &'d dyn TableLike, path: &str) -> Option<&'d toml_edit::Key> {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let (key, item) = table.get_key_value(first)?;
    match rest {
        None => Some(key),
        Some(rest) => key_at(item.as_table_like()?, rest),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::parse_with;
    use super::super::tests::{spec_with_sample, test_host};
    use super::*;

    fn check_with(support: Support, text: &str) -> Result<(), String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
        parse_with(text, &path, &test_host(0), support)
            .map(drop)
            .map_err(|e| e.to_string().replace(&format!("{}/", env!("CARGO_MANIFEST_DIR")), ""))
    }

    #[test]
    fn every_listed_key_is_refused_at_the_key() {
        let support = Support {
            pit_protocol: true,
            ..Support::CURRENT
        };
        for key in support.not_supported_yet {
            let text = spec_with_sample(key);
            let (path, column) = match key.strip_prefix("daemon.") {
                Some(k) => (format!("daemon.{k}"), 1),
                None => (format!("pools.p.{key}"), key.rfind('.').map_or(1, |i| i + 2)),
            };
            let want = format!("t.toml:2:{column}: {path}: {NOT_BUILT}");
            assert_eq!(check_with(support, &text), Err(want), "{text}");
        }
    }

    const SYNTHETIC: Support = Support {
        not_supported_yet: &["max_rss", "restart.max", "rlimits.as", "daemon.log_format"],
        pit_protocol: true,
    };

    #[test]
    fn listed_keys_are_found_in_any_table_form_and_the_first_is_reported() {
        let pool = "[pools.p]\ncommand = [\"w\"]\n";
        let cases = [
            (
                format!("{pool}restart = {{ max = \"1s\" }}\n"),
                "t.toml:3:13: pools.p.restart.max",
            ),
            (
                format!("{pool}restart.max = \"1s\"\n"),
                "t.toml:3:9: pools.p.restart.max",
            ),
            (
                format!("{pool}[pools.p.rlimits]\nas = \"8GiB\"\n"),
                "t.toml:4:1: pools.p.rlimits.as",
            ),
            (
                format!("{pool}max_rss = \"1GiB\"\n[daemon]\nlog_format = \"json\"\n"),
                "t.toml:3:1: pools.p.max_rss",
            ),
            (
                format!("[daemon]\nlog_format = \"json\"\n{pool}max_rss = \"1GiB\"\n"),
                "t.toml:2:1: daemon.log_format",
            ),
            (
                format!("{pool}[pools.q]\ncommand = [\"w\"]\nmax_rss = 1\n"),
                "t.toml:5:1: pools.q.max_rss",
            ),
        ];
        for (text, at) in cases {
            assert_eq!(
                check_with(SYNTHETIC, &text),
                Err(format!("{at}: {NOT_BUILT}")),
                "{text}"
            );
        }
    }

    #[test]
    fn unlisted_keys_pass() {
        let text = "[daemon]\ncontrol_mode = \"0600\"\n[pools.p]\ncommand = [\"w\"]\nhard_rss = \"1GiB\"\nrestart.initial = \"1s\"\n";
        assert_eq!(check_with(SYNTHETIC, text), Ok(()));
    }

    #[test]
    fn pit_protocol_when_unsupported_is_refused_written_or_default() {
        let no_pit = Support {
            not_supported_yet: &[],
            pit_protocol: false,
        };
        let hint = "; set protocol = \"none\" to supervise the workers without routing calls to them";
        let want = |at: &str| Err(format!("t.toml:{at}: pools.p.protocol: \"pit\" is {NOT_BUILT}{hint}"));
        assert_eq!(check_with(no_pit, "[pools.p]\ncommand = [\"w\"]\n"), want("1:8"));
        assert_eq!(
            check_with(no_pit, "[pools.p]\ncommand = [\"w\"]\nprotocol = \"pit\"\n"),
            want("3:1")
        );
        assert_eq!(
            check_with(no_pit, "[pools.p]\ncommand = [\"w\"]\nprotocol = \"none\"\n"),
            Ok(())
        );
    }
}
