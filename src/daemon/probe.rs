//! The answers of `pitctl probe`, decided by pitd itself from facts each pool actor
//! publishes when it starts and after every batch of messages or timers (`PoolFacts`):
//! never by a worker, and never waiting behind a busy pool. Pure: the facts in, a yes or
//! a one-line no out.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use strum::VariantArray;

use crate::proto::status::PoolState;

/// A pool as a probe sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub name: String,
    pub reached_size: bool,
    pub ready_workers: u32,
    pub size: u32,
    pub state: PoolState,
    pub serves_calls: bool,
}

/// `startup`: every pool has reached its size once.
pub fn started(pools: &[PoolSnapshot]) -> Result<(), String> {
    match pools.iter().find(|p| !p.reached_size) {
        Some(p) => Err(format!(
            "pool {} has not reached its size yet ({}/{} ready)",
            p.name, p.ready_workers, p.size
        )),
        None => Ok(()),
    }
}

/// `ready`: pitd takes calls, and every pool that serves calls can run one.
pub fn ready(shutting_down: bool, pools: &[PoolSnapshot]) -> Result<(), String> {
    if shutting_down {
        return Err("pitd is shutting down".into());
    }
    for p in pools.iter().filter(|p| p.serves_calls) {
        match p.state {
            PoolState::Failing | PoolState::Draining | PoolState::Drained => {
                return Err(format!("pool {} is {}", p.name, p.state.as_str()));
            }
            _ if p.ready_workers == 0 => return Err(format!("pool {} has no ready worker", p.name)),
            _ => {}
        }
    }
    Ok(())
}

/// A pool's facts, written by its actor, read by probes from any task.
#[derive(Debug, Default)]
pub struct PoolFacts {
    reached_size: AtomicBool,
    ready_workers: AtomicU32,
    size: AtomicU32,
    /// Index into `PoolState::VARIANTS`.
    state: AtomicU8,
    serves_calls: AtomicBool,
}

impl PoolFacts {
    pub fn publish(&self, s: &PoolSnapshot) {
        let state = PoolState::VARIANTS.iter().position(|v| *v == s.state).unwrap_or(0) as u8;
        self.reached_size.store(s.reached_size, Ordering::Relaxed);
        self.ready_workers.store(s.ready_workers, Ordering::Relaxed);
        self.size.store(s.size, Ordering::Relaxed);
        self.state.store(state, Ordering::Relaxed);
        self.serves_calls.store(s.serves_calls, Ordering::Relaxed);
    }

    pub fn snapshot(&self, name: &str) -> PoolSnapshot {
        let state = PoolState::VARIANTS[self.state.load(Ordering::Relaxed) as usize % PoolState::VARIANTS.len()];
        PoolSnapshot {
            name: name.to_string(),
            reached_size: self.reached_size.load(Ordering::Relaxed),
            ready_workers: self.ready_workers.load(Ordering::Relaxed),
            size: self.size.load(Ordering::Relaxed),
            state,
            serves_calls: self.serves_calls.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, reached_size: bool, ready_workers: u32, state: PoolState, serves_calls: bool) -> PoolSnapshot {
        PoolSnapshot {
            name: name.into(),
            reached_size,
            ready_workers,
            size: 2,
            state,
            serves_calls,
        }
    }

    #[test]
    fn startup_waits_for_every_pool_to_reach_its_size_once() {
        let up = pool("a", true, 2, PoolState::Running, true);
        let starting = pool("b", false, 1, PoolState::Starting, true);
        assert_eq!(started(std::slice::from_ref(&up)), Ok(()));
        assert_eq!(
            started(&[up.clone(), starting]),
            Err("pool b has not reached its size yet (1/2 ready)".into())
        );
        // Once reached, a later loss of workers does not undo it.
        assert_eq!(started(&[pool("a", true, 0, PoolState::Failing, true)]), Ok(()));
    }

    #[test]
    fn ready_table() {
        use PoolState::*;
        let rows: [(bool, PoolSnapshot, Result<(), &str>); 8] = [
            (false, pool("a", true, 2, Running, true), Ok(())),
            (true, pool("a", true, 2, Running, true), Err("pitd is shutting down")),
            (
                false,
                pool("a", true, 0, Running, true),
                Err("pool a has no ready worker"),
            ),
            (false, pool("a", true, 1, Failing, true), Err("pool a is failing")),
            (false, pool("a", true, 1, Draining, true), Err("pool a is draining")),
            (false, pool("a", true, 0, Drained, true), Err("pool a is drained")),
            (false, pool("a", false, 1, Starting, true), Ok(())),
            // A supervise-only pool serves no calls: its state does not make pitd unready.
            (false, pool("t", true, 0, Failing, false), Ok(())),
        ];
        for (shutting_down, p, want) in rows {
            assert_eq!(
                ready(shutting_down, std::slice::from_ref(&p)),
                want.map_err(String::from),
                "{p:?}"
            );
        }
    }

    #[test]
    fn facts_round_trip_through_the_atomics() {
        let facts = PoolFacts::default();
        let p = pool("a", true, 3, PoolState::Draining, true);
        facts.publish(&p);
        assert_eq!(facts.snapshot("a"), p);
    }
}
