//! The caches under test, each behind [`Sim`]: one read or write of a key id at a time.

use karlton_core::store::{Bytes, LeaseMode, LeaseOutcome, ReadReply, StoreOp, StoreReply};
use karlton_core::{MemoryStore, MemoryStoreConfig};
use std::num::NonZeroUsize;

/// The seed karlton's store is given (its default would be 0; hosts pass OS randomness). Fixed
/// so karlton's numbers are an exact replay.
pub const KARLTON_SEED: u64 = 1;

/// A cache as the benchmark drives it.
pub trait Sim {
    /// A read: `true` on a hit; on a miss the value is "loaded" and stored.
    fn read(&mut self, key: u64) -> bool;
    /// A write of a new value (YCSB inserts): stored, neither a hit nor a miss.
    fn write(&mut self, key: u64);
    /// Protocol surprises worth reporting (karlton: leases not granted, fills refused).
    fn anomalies(&self) -> u64 {
        0
    }
}

fn key_name(key: u64) -> String {
    format!("bench:{key}")
}

/// karlton's `MemoryStore`, driven as `karlton::Cache` drives it: `peek_valid` (the
/// fresh-hit fast path); on a miss a `Read` taking the lease, then a `Fill` under that token.
/// A virtual clock advances 1 ms per request; entries never expire.
pub struct Karlton {
    store: MemoryStore,
    now: u64,
    value: Bytes,
    anomalies: u64,
}

impl Karlton {
    /// A store bounded to `cap` entries (the byte bound out of the way), default shards.
    pub fn new(cap: usize) -> Karlton {
        Karlton {
            store: MemoryStore::new(config(cap)),
            now: 1_000,
            value: vec![b'v'; 16].into(),
            anomalies: 0,
        }
    }
    fn fill(&mut self, key: String, token: Option<u64>) {
        let far = u64::MAX / 4;
        let op = StoreOp::Fill {
            key,
            entry: self.value.clone(),
            soft_at: far,
            hard_at: far,
            expire_at: far,
            version: None,
            generations: None,
            gen_keys: vec![],
            token,
        };
        if !matches!(self.store.apply(self.now, &op), StoreReply::Stored) {
            // A lease-only slot evicted before its fill, for instance.
            self.anomalies += 1;
        }
    }
}

/// The store's configuration for `cap` entries.
pub fn config(cap: usize) -> MemoryStoreConfig {
    MemoryStoreConfig {
        max_entries: cap,
        max_bytes: 1 << 40,
        seed: KARLTON_SEED,
        ..MemoryStoreConfig::default()
    }
}

impl Sim for Karlton {
    fn read(&mut self, key: u64) -> bool {
        self.now += 1;
        let k = key_name(key);
        if self.store.peek_valid(self.now, &k, &[]).is_some() {
            return true;
        }
        let op = StoreOp::Read {
            key: k.clone(),
            gen_keys: vec![],
            lease: LeaseMode::IfNeeded,
            lease_ttl_ms: 60_000,
        };
        match self.store.apply(self.now, &op) {
            StoreReply::Read(ReadReply { lease: LeaseOutcome::Granted { token }, .. }) => self.fill(k, Some(token)),
            _ => self.anomalies += 1,
        }
        false
    }
    fn write(&mut self, key: u64) {
        self.now += 1;
        self.fill(key_name(key), None);
    }
    fn anomalies(&self) -> u64 {
        self.anomalies
    }
}

/// moka's `sync::Cache`, used as a user would: `get`, then `insert` on a miss. With `synced`
/// it also runs `run_pending_tasks()` after every insert, so its policy sees every access
/// before the next one (moka's best case; a real program does not do this).
pub struct Moka {
    cache: moka::sync::Cache<String, Bytes>,
    synced: bool,
    value: Bytes,
}

impl Moka {
    /// `moka::sync::Cache::builder().max_capacity(cap).build()`.
    pub fn new(cap: usize, synced: bool) -> Moka {
        Moka {
            cache: moka::sync::Cache::builder()
                .max_capacity(cap as u64)
                .build(),
            synced,
            value: vec![b'v'; 16].into(),
        }
    }
    fn insert(&mut self, k: String) {
        self.cache.insert(k, self.value.clone());
        if self.synced {
            self.cache.run_pending_tasks();
        }
    }
}

impl Sim for Moka {
    fn read(&mut self, key: u64) -> bool {
        let k = key_name(key);
        if self.cache.get(&k).is_some() {
            return true;
        }
        self.insert(k);
        false
    }
    fn write(&mut self, key: u64) {
        self.insert(key_name(key));
    }
}

/// Exact LRU (the `lru` crate): `get`, then `put` on a miss. The baseline, and what karlton's
/// store did per shard before W-TinyLFU.
pub struct Lru {
    cache: lru::LruCache<String, Bytes>,
    value: Bytes,
}

impl Lru {
    /// An LRU of `cap` entries (`cap` > 0).
    pub fn new(cap: usize) -> Lru {
        Lru {
            cache: lru::LruCache::new(NonZeroUsize::new(cap).expect("capacity > 0")),
            value: vec![b'v'; 16].into(),
        }
    }
}

impl Sim for Lru {
    fn read(&mut self, key: u64) -> bool {
        let k = key_name(key);
        if self.cache.get(&k).is_some() {
            return true;
        }
        self.cache.put(k, self.value.clone());
        false
    }
    fn write(&mut self, key: u64) {
        self.cache.put(key_name(key), self.value.clone());
    }
}
