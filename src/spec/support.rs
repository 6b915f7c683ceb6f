//! What this pitd can do yet. The spec (INTERFACE.md) is ahead of the daemon: keys whose
//! behaviour is not built are refused by name, never accepted and ignored. Shrink
//! `NOT_SUPPORTED_YET` (and flip `PIT_PROTOCOL_SUPPORTED`) as features land; nothing else
//! needs to change.

use toml_edit::{Document, Item, TableLike};

use super::error::Problem;
use super::types::{PoolSpec, Protocol};

/// Keys whose behaviour is not built: relative to a pool (`"max_rss"`, `"restart.max"`), or
/// to the root for daemon keys (`"daemon.metrics_listen"`).
pub const NOT_SUPPORTED_YET: &[&str] = &[
    "app",
    "python",
    "preload",
    "request_timeout",
    "drain_timeout",
    "max_rss",
    "hard_rss",
    "max_requests",
    "max_requests_jitter",
    "max_age",
    "max_age_jitter",
    "max_errors",
    "memory_metric",
    "max_surge",
    "health_interval",
    "health_timeout",
    "health_failures",
    "queue_max",
    "queue_timeout",
    "affinity_ttl",
    "daemon.call_socket",
    "daemon.call_mode",
    "daemon.metrics_listen",
];

/// Whether pools may speak the pit protocol (calls routed to workers). Until they can, such
/// a pool is refused, whether `protocol = "pit"` is written or taken as the default.
pub const PIT_PROTOCOL_SUPPORTED: bool = false;

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
pub fn check(doc: &Document<&str>, pools: &[PoolSpec], support: Support) -> Result<(), Problem> {
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
        let uses: Vec<Option<&toml_edit::Key>> = match key.strip_prefix("daemon.") {
            Some(_) => vec![key_at(root, key)],
            None => pool_tables.iter().map(|(_, t)| key_at(*t, key)).collect(),
        };
        for k in uses.into_iter().flatten() {
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

/// The key at a dotted path below `table`, if written. Pool names are looked up whole, so a
/// pool may not contain a dot in its name for this to find it; pool names cannot.
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
