//! The hash of the engine's key tables: foldhash, keyed with a secret seed. Keys come from
//! tenants' events, so a fixed hash would let a tenant pick keys that all collide and turn
//! each lookup into a scan (hash flooding); with a seed no one outside the process knows,
//! they cannot. foldhash costs about what the fixed Fx hash it replaced did on short keys
//! (docs/BENCHMARKS.md, "keyed hash").
//!
//! The seed comes from the entropy seam: production draws it once per process from the
//! operating system ([`KeyedState`]'s default); the simulation sets one per run, on the
//! run's thread, from its seed ([`seed_this_thread`]), so a seed replays exactly. The
//! tables are only looked up, never iterated where order could leak: snapshots and the
//! local copy sort their keys and use no hash, and nothing that routes a record uses this
//! one, so outputs never depend on the seed.

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::OnceLock;
use weir_core::seams::{Entropy, OsEntropy};

/// A map keyed with the seeded hash.
pub(crate) type FxHashMap<K, V> = HashMap<K, V, KeyedState>;

/// A set hashed with the seeded hash (iterated only to be sorted).
pub(crate) type FxHashSet<K> = HashSet<K, KeyedState>;

/// Both halves of a foldhash seed.
#[derive(Debug, Clone, Copy)]
struct Seed {
    per_hasher: u64,
    shared: &'static SharedSeed,
}

impl Seed {
    fn from_entropy(entropy: &dyn Entropy) -> Seed {
        let mut bytes = [0u8; 16];
        entropy.fill(&mut bytes);
        let (a, b) = bytes.split_at(8);
        Seed::from_u64s(
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(b.try_into().unwrap_or_default()),
        )
    }

    fn from_u64s(per_hasher: u64, shared: u64) -> Seed {
        // One leaked seed per process, and one per simulated run: a few dozen bytes each.
        Seed {
            per_hasher,
            shared: Box::leak(Box::new(SharedSeed::from_u64(shared))),
        }
    }
}

thread_local! {
    static THREAD_SEED: Cell<Option<Seed>> = const { Cell::new(None) };
}

/// The process's seed, drawn from the operating system's entropy on first use.
fn process_seed() -> Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    *SEED.get_or_init(|| Seed::from_entropy(&OsEntropy))
}

/// Seeds the key tables built on this thread from now on (the simulation, once per run,
/// from the run's seed). Tables built before keep their seed.
pub fn seed_this_thread(seed: u64) {
    let seed = Seed::from_u64s(seed, seed.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15);
    THREAD_SEED.with(|s| s.set(Some(seed)));
}

/// The hasher builder of the key tables: the thread's seed when one was set, else the
/// process's.
#[derive(Debug, Clone)]
pub struct KeyedState(SeedableRandomState);

impl Default for KeyedState {
    fn default() -> Self {
        let seed = THREAD_SEED.with(Cell::get).unwrap_or_else(process_seed);
        KeyedState(SeedableRandomState::with_seed(seed.per_hasher, seed.shared))
    }
}

impl BuildHasher for KeyedState {
    type Hasher = <SeedableRandomState as BuildHasher>::Hasher;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_seed_fixes_the_hash_and_another_seed_changes_it() {
        let hash_with = |seed: u64| {
            seed_this_thread(seed);
            KeyedState::default().hash_one("card-4242")
        };
        assert_eq!(hash_with(1), hash_with(1));
        assert_ne!(hash_with(1), hash_with(2));
    }

    #[test]
    fn processes_seed_from_entropy() {
        // A fresh thread has no thread seed: it uses the process's, the same for every
        // table, drawn from the OS (so it differs from a fixed seed's).
        let (a, b) = std::thread::spawn(|| {
            (
                KeyedState::default().hash_one(42u64),
                KeyedState::default().hash_one(42u64),
            )
        })
        .join()
        .unwrap();
        assert_eq!(a, b);
        seed_this_thread(0);
        assert_ne!(KeyedState::default().hash_one(42u64), a);
    }
}
