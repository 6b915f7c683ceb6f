//! Identifiers: `WorkerId` ("worker-N"), allocated from one counter per daemon run so an id
//! is never reused, even across pools and reloads.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A worker's id. Replacements get a new one: status, logs and events can then tell an old
/// worker from its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u64);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker-{}", self.0)
    }
}

impl WorkerId {
    /// Parses "worker-N"; `None` for anything else (a pool name, say).
    pub fn parse(s: &str) -> Option<WorkerId> {
        let n = s.strip_prefix("worker-")?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
            return None;
        }
        n.parse().ok().map(WorkerId)
    }
}

impl Serialize for WorkerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WorkerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        WorkerId::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("expected worker-N, found {s:?}")))
    }
}

/// Hands out worker ids for one daemon run; shared by every pool.
#[derive(Debug, Default)]
pub struct IdAllocator {
    last: AtomicU64,
}

impl IdAllocator {
    pub fn next(&self) -> WorkerId {
        WorkerId(self.last.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sequential_and_never_reused() {
        let ids = IdAllocator::default();
        let got: Vec<String> = (0..3).map(|_| ids.next().to_string()).collect();
        assert_eq!(got, ["worker-1", "worker-2", "worker-3"]);
    }

    #[test]
    fn parse_accepts_only_canonical_ids() {
        assert_eq!(WorkerId::parse("worker-12"), Some(WorkerId(12)));
        for bad in ["worker-", "worker-01", "worker-x", "echo", "worker-1a", "Worker-1"] {
            assert_eq!(WorkerId::parse(bad), None, "{bad}");
        }
    }
}
