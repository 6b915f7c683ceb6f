//! Who may call through the door: the tokens file (INTERFACE section 10), one table per
//! principal with the SHA-256 of its bearer token, the pools it may call and how many calls
//! it may have in flight. The token itself is never stored; a presented token is hashed and
//! compared with every principal's hash in constant time, so neither a match nor its
//! position shows in the time taken.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// The tokens file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    #[serde(default)]
    principals: BTreeMap<String, RawPrincipal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    token_sha256: String,
    pools: Vec<String>,
    #[serde(default)]
    max_in_flight: Option<u32>,
    #[serde(default)]
    tracebacks: bool,
}

/// One caller of the door.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    hash: [u8; 32],
    /// `None`: every pool (`["*"]`).
    pools: Option<Vec<String>>,
    pub max_in_flight: Option<u32>,
    /// Its handler errors carry their tracebacks.
    pub tracebacks: bool,
    /// Its calls and streams in flight (`max_in_flight` permits, when it has one).
    pub in_flight: Option<Arc<Semaphore>>,
}

impl Principal {
    /// A caller the door does not identify by token: anyone on loopback without a tokens
    /// file, or a client certificate's holder when `client_ca` alone guards the door.
    pub fn open(name: &str) -> Principal {
        Principal {
            name: name.to_string(),
            hash: [0; 32],
            pools: None,
            max_in_flight: None,
            tracebacks: false,
            in_flight: None,
        }
    }

    pub fn may_call(&self, pool: &str) -> bool {
        self.pools.as_ref().is_none_or(|p| p.iter().any(|n| n == pool))
    }
}

/// The principals of a tokens file.
#[derive(Debug, Default)]
pub struct Principals {
    list: Vec<Arc<Principal>>,
}

impl Principals {
    /// Reads and checks a tokens file; the error says what is wrong and where.
    pub fn load(path: &Path) -> Result<Principals, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Principals::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Principals, String> {
        let raw: RawTokens = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut list = Vec::with_capacity(raw.principals.len());
        for (name, p) in raw.principals {
            let hash = hex32(&p.token_sha256).ok_or_else(|| {
                format!("principals.{name}.token_sha256: expected 64 hex digits (the SHA-256 of the token)")
            })?;
            if p.pools.is_empty() {
                return Err(format!(
                    "principals.{name}.pools: expected the pools it may call, or [\"*\"] for all"
                ));
            }
            if p.max_in_flight == Some(0) {
                return Err(format!("principals.{name}.max_in_flight: expected at least 1"));
            }
            let pools = (!p.pools.iter().any(|n| n == "*")).then_some(p.pools);
            list.push(Arc::new(Principal {
                in_flight: p.max_in_flight.map(|n| Arc::new(Semaphore::new(n as usize))),
                name,
                hash,
                pools,
                max_in_flight: p.max_in_flight,
                tracebacks: p.tracebacks,
            }));
        }
        let mut seen: Vec<&[u8; 32]> = Vec::new();
        for p in &list {
            if seen.contains(&&p.hash) {
                return Err(format!("principals.{}: the same token as another principal", p.name));
            }
            seen.push(&p.hash);
        }
        Ok(Principals { list })
    }

    /// The principal whose token this is. Every principal's hash is compared, whatever
    /// matched before.
    pub fn find(&self, token: &str) -> Option<Arc<Principal>> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for p in &self.list {
            if bool::from(p.hash.ct_eq(&presented)) {
                found = Some(p.clone());
            }
        }
        found
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|p| p.name.clone()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Principal>> {
        self.list.iter()
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(token: &str) -> String {
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn a_token_finds_its_principal_and_only_its_pools() {
        let text = format!(
            "[principals.frontend]\ntoken_sha256 = \"{}\"\npools = [\"agent\"]\nmax_in_flight = 2\n\
             [principals.ops]\ntoken_sha256 = \"{}\"\npools = [\"*\"]\ntracebacks = true\n",
            sha("front-token"),
            sha("ops-token")
        );
        let ps = Principals::parse(&text).unwrap();
        let front = ps.find("front-token").unwrap();
        assert_eq!((front.name.as_str(), front.max_in_flight), ("frontend", Some(2)));
        assert!(front.may_call("agent") && !front.may_call("echo"));
        let ops = ps.find("ops-token").unwrap();
        assert!(ops.may_call("echo") && ops.tracebacks);
        assert!(ps.find("front-token ").is_none());
        assert!(ps.find("").is_none());
    }

    #[test]
    fn a_bad_tokens_file_says_what_is_wrong() {
        let cases = [
            (
                "[principals.a]\ntoken_sha256 = \"abc\"\npools = [\"*\"]\n",
                "principals.a.token_sha256: expected 64 hex digits",
            ),
            (
                &format!("[principals.a]\ntoken_sha256 = \"{}\"\npools = []\n", sha("t")),
                "principals.a.pools: expected",
            ),
            (
                &format!(
                    "[principals.a]\ntoken_sha256 = \"{}\"\npools = [\"*\"]\ntoken = \"t\"\n",
                    sha("t")
                ),
                "unknown field `token`",
            ),
            (
                &format!(
                    "[principals.a]\ntoken_sha256 = \"{0}\"\npools = [\"*\"]\n[principals.b]\ntoken_sha256 = \"{0}\"\npools = [\"*\"]\n",
                    sha("t")
                ),
                "principals.b: the same token as another principal",
            ),
        ];
        for (text, want) in cases {
            let err = Principals::parse(text).unwrap_err();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
    }
}
