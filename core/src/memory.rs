//! The embedded memory store: the reference implementation of the store protocol.
//!
//! It is a product feature (the default store that needs nothing), not a mock: bounded by
//! entry count and bytes, with exact LRU eviction per shard, and the same semantics the Redis
//! scripts implement. It holds no clock: every op takes `now_ms` from the driver.
//!
//! Why exact LRU in shards: a doubly linked list threaded through a slab gives O(1) touch and
//! evict with no per-hit allocation; sharding (by key hash) keeps two threads hitting different
//! keys off each other's lock. Within a shard the order is exact; across shards each shard
//! holds `1/N` of the budget, which is what Caffeine and moka also do at this size.

use crate::store::{
    Bytes, InvalidateMode, LeaseMode, LeaseOutcome, ReadReply, RejectReason, StoreOp, StoreReply,
    Token,
};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Fixed-key SipHash: deterministic (no OS randomness in the core), DoS-resistant enough for
/// keys that went through [`crate::key::Key`].
type Hasher = BuildHasherDefault<DefaultHasher>;

const NIL: usize = usize::MAX;
/// Bookkeeping bytes charged per entry on top of key and value.
const OVERHEAD: usize = 96;

/// Size limits of a [`MemoryStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStoreConfig {
    /// Most entries kept (leases and version floors count too).
    pub max_entries: usize,
    /// Most bytes kept (keys + encoded entries + a fixed overhead each).
    pub max_bytes: usize,
    /// Number of independently locked shards (rounded up to a power of two).
    pub shards: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig { max_entries: 100_000, max_bytes: 256 << 20, shards: 16 }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    entry: Option<Bytes>,
    soft_at: u64,
    hard_at: u64,
    expire_at: u64,
    version: Option<u64>,
    gens: Vec<u64>,
    marked_stale: bool,
    lease: Option<(Token, u64)>,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            entry: None,
            soft_at: 0,
            hard_at: 0,
            expire_at: 0,
            version: None,
            gens: Vec::new(),
            marked_stale: false,
            lease: None,
        }
    }
    fn live_lease(&self, now: u64) -> Option<(Token, u64)> {
        self.lease.filter(|&(_, until)| until > now)
    }
    /// Nothing left worth keeping: no servable data, no version floor, no live lease.
    fn dead(&self, now: u64) -> bool {
        now >= self.expire_at && self.live_lease(now).is_none()
    }
    fn cost(&self, key: &str) -> usize {
        key.len() + self.entry.as_ref().map_or(0, |e| e.len()) + OVERHEAD
    }
}

struct Node {
    key: String,
    slot: Slot,
    prev: usize,
    next: usize,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, usize, Hasher>,
    nodes: Vec<Node>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used.
    tail: usize,
    bytes: usize,
}

impl Shard {
    fn new() -> Shard {
        Shard { head: NIL, tail: NIL, ..Default::default() }
    }
    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.nodes[i].prev, self.nodes[i].next);
        if p != NIL { self.nodes[p].next = n } else { self.head = n }
        if n != NIL { self.nodes[n].prev = p } else { self.tail = p }
    }
    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }
    fn touch(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }
    fn remove(&mut self, i: usize) {
        self.unlink(i);
        let key = std::mem::take(&mut self.nodes[i].key);
        self.bytes -= self.nodes[i].slot.cost(&key);
        self.nodes[i].slot = Slot::empty();
        self.map.remove(&key);
        self.free.push(i);
    }
    /// Index of a live slot for `key`, dropping it first if it is dead.
    fn find(&mut self, key: &str, now: u64) -> Option<usize> {
        let i = *self.map.get(key)?;
        if self.nodes[i].slot.dead(now) {
            self.remove(i);
            return None;
        }
        Some(i)
    }
    fn insert(&mut self, key: &str, slot: Slot) -> usize {
        let node = Node { key: key.to_string(), slot, prev: NIL, next: NIL };
        self.bytes += node.slot.cost(key);
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.map.insert(key.to_string(), i);
        self.push_front(i);
        i
    }
    fn set_slot(&mut self, i: usize, slot: Slot) {
        let key = std::mem::take(&mut self.nodes[i].key);
        self.bytes -= self.nodes[i].slot.cost(&key);
        self.bytes += slot.cost(&key);
        self.nodes[i].slot = slot;
        self.nodes[i].key = key;
    }
    /// Evict from the LRU end until within budget, never the node `keep`.
    fn evict(&mut self, max_entries: usize, max_bytes: usize, keep: usize) -> u64 {
        let mut n = 0;
        while self.map.len() > max_entries || self.bytes > max_bytes {
            let mut victim = self.tail;
            if victim == keep {
                victim = self.nodes[victim].prev;
            }
            if victim == NIL {
                break;
            }
            self.remove(victim);
            n += 1;
        }
        n
    }
}

/// A snapshot of one key's state, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Entry bytes, if any.
    pub entry: Option<Bytes>,
    /// Fresh until.
    pub soft_at: u64,
    /// Servable until.
    pub hard_at: u64,
    /// Physically kept until.
    pub expire_at: u64,
    /// Highest version seen.
    pub version: Option<u64>,
    /// Generations stamped at fill.
    pub generations: Vec<u64>,
    /// Marked stale by an invalidation.
    pub marked_stale: bool,
    /// Live lease: (token, until).
    pub lease: Option<(Token, u64)>,
}

/// The embedded store. Thread-safe (`&self` everywhere); clock-free.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    gens: RwLock<HashMap<String, u64, Hasher>>,
    max_entries: usize,
    max_bytes: usize,
    evictions: AtomicU64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(MemoryStoreConfig::default())
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("len", &self.len()).finish()
    }
}

impl MemoryStore {
    /// A store with these limits.
    pub fn new(config: MemoryStoreConfig) -> MemoryStore {
        let n = config.shards.clamp(1, 1024).next_power_of_two();
        MemoryStore {
            shards: (0..n).map(|_| Mutex::new(Shard::new())).collect(),
            gens: RwLock::new(HashMap::default()),
            max_entries: config.max_entries.div_ceil(n).max(1),
            max_bytes: config.max_bytes.div_ceil(n).max(1),
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let h = Hasher::default().hash_one(key);
        let i = (h as usize) & (self.shards.len() - 1);
        // A panic while holding a shard lock cannot leave a slot half-written (every mutation
        // is a whole-value assignment), so a poisoned lock is safe to keep using.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn generations(&self, gen_keys: &[String]) -> Vec<u64> {
        if gen_keys.is_empty() {
            return Vec::new();
        }
        let g = self.gens.read().unwrap_or_else(|p| p.into_inner());
        gen_keys.iter().map(|k| g.get(k).copied().unwrap_or(0)).collect()
    }

    /// Entries evicted for space so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Slots held (entries, live leases and version floors).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len()).sum()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged against `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes).sum()
    }

    /// The entry bytes for `key` if present and not orphaned by a generation bump, with its
    /// marked-stale flag; touches the LRU. No lease, no allocation: the fresh-hit fast path
    /// (`flow::fast_hit`) is built on it.
    pub fn peek_valid(&self, now_ms: u64, key: &str, gen_keys: &[String]) -> Option<(Bytes, bool)> {
        // Lock order everywhere: generations, then a shard (never the other way round).
        let gens = (!gen_keys.is_empty()).then(|| self.gens.read().unwrap_or_else(|p| p.into_inner()));
        let mut sh = self.shard(key);
        let i = sh.find(key, now_ms)?;
        sh.touch(i);
        let s = &sh.nodes[i].slot;
        let e = s.entry.as_ref()?;
        if s.gens.len() != gen_keys.len() {
            return None;
        }
        if let Some(g) = &gens {
            for (v, k) in s.gens.iter().zip(gen_keys) {
                if *v != g.get(k).copied().unwrap_or(0) {
                    return None;
                }
            }
        }
        Some((e.clone(), s.marked_stale))
    }

    /// What the store holds for `key` at `now_ms` (no LRU touch).
    pub fn inspect(&self, now_ms: u64, key: &str) -> Option<SlotInfo> {
        let mut sh = self.shard(key);
        let i = sh.find(key, now_ms)?;
        let s = &sh.nodes[i].slot;
        Some(SlotInfo {
            entry: s.entry.clone(),
            soft_at: s.soft_at,
            hard_at: s.hard_at,
            expire_at: s.expire_at,
            version: s.version,
            generations: s.gens.clone(),
            marked_stale: s.marked_stale,
            lease: s.live_lease(now_ms),
        })
    }

    /// Run one protocol op at `now_ms`. The memory store never fails.
    pub fn apply(&self, now_ms: u64, op: &StoreOp) -> StoreReply {
        match op {
            StoreOp::Read { key, gen_keys, lease, lease_ttl_ms, token } => {
                StoreReply::Read(self.read(now_ms, key, gen_keys, *lease, *lease_ttl_ms, *token))
            }
            StoreOp::Fill {
                key,
                entry,
                soft_at,
                hard_at,
                expire_at,
                version,
                generations,
                gen_keys,
                token,
            } => {
                let current = self.generations(gen_keys);
                if let Some(g) = generations {
                    if *g != current {
                        return StoreReply::Rejected { reason: RejectReason::GenerationChanged };
                    }
                }
                let mut sh = self.shard(key);
                let found = sh.find(key, now_ms);
                let old = found.map(|i| &sh.nodes[i].slot);
                if let Some(t) = token {
                    // The lease must be live: an expired one may already belong to someone else
                    // in spirit (same rule as release/extend), and C3 counts on it.
                    if old.and_then(|s| s.live_lease(now_ms)).map(|l| l.0) != Some(*t) {
                        return StoreReply::Rejected { reason: RejectReason::LeaseLost };
                    }
                }
                let floor = old.and_then(|s| s.version);
                if let (Some(v), Some(f)) = (version, floor) {
                    if *v < f {
                        return StoreReply::Rejected { reason: RejectReason::VersionNewer };
                    }
                }
                let slot = Slot {
                    entry: Some(entry.clone()),
                    soft_at: *soft_at,
                    hard_at: *hard_at,
                    expire_at: (*expire_at).max(old.map_or(0, |s| if s.version.is_some() { s.expire_at } else { 0 })),
                    version: match (version, floor) {
                        (Some(v), Some(f)) => Some((*v).max(f)),
                        (v, f) => v.or(f),
                    },
                    gens: current,
                    marked_stale: false,
                    // A fill consumes its own lease; an authoritative write revokes any lease.
                    lease: None,
                };
                let i = match found {
                    Some(i) => {
                        sh.set_slot(i, slot);
                        sh.touch(i);
                        i
                    }
                    None => sh.insert(key, slot),
                };
                let ev = sh.evict(self.max_entries, self.max_bytes, i);
                if ev > 0 {
                    self.evictions.fetch_add(ev, Ordering::Relaxed);
                }
                StoreReply::Stored
            }
            StoreOp::Invalidate { key, mode } => {
                let mut sh = self.shard(key);
                let Some(i) = sh.find(key, now_ms) else {
                    return StoreReply::Invalidated { existed: false };
                };
                let mut slot = sh.nodes[i].slot.clone();
                let existed = slot.entry.is_some();
                slot.lease = None;
                match mode {
                    InvalidateMode::Delete => {
                        slot.entry = None;
                        slot.marked_stale = false;
                    }
                    InvalidateMode::MarkStale => slot.marked_stale = existed,
                }
                if slot.entry.is_none() && slot.version.is_none() {
                    sh.remove(i);
                } else {
                    sh.set_slot(i, slot);
                }
                StoreReply::Invalidated { existed }
            }
            StoreOp::Release { key, token } => {
                let mut sh = self.shard(key);
                let Some(i) = sh.find(key, now_ms) else { return StoreReply::Lease { ok: false } };
                let slot = &mut sh.nodes[i].slot;
                let ok = slot.live_lease(now_ms).map(|l| l.0) == Some(*token);
                if ok {
                    slot.lease = None;
                    if slot.dead(now_ms) {
                        sh.remove(i);
                    }
                }
                StoreReply::Lease { ok }
            }
            StoreOp::Extend { key, token, lease_ttl_ms } => {
                let mut sh = self.shard(key);
                let Some(i) = sh.find(key, now_ms) else { return StoreReply::Lease { ok: false } };
                let slot = &mut sh.nodes[i].slot;
                // Only a live lease can be extended: an expired one may already be someone else's.
                let ok = slot.live_lease(now_ms).map(|l| l.0) == Some(*token);
                if ok {
                    slot.lease = Some((*token, now_ms + lease_ttl_ms));
                }
                StoreReply::Lease { ok }
            }
            StoreOp::Bump { gen_key, value } => {
                let mut g = self.gens.write().unwrap_or_else(|p| p.into_inner());
                let old = g.get(gen_key).copied().unwrap_or(0);
                // Never "bump" to the same value (would not orphan anything).
                let v = if *value == old { value.wrapping_add(1).max(1) } else { *value };
                g.insert(gen_key.clone(), v);
                StoreReply::Bumped { generation: v }
            }
        }
    }

    fn read(
        &self,
        now: u64,
        key: &str,
        gen_keys: &[String],
        mode: LeaseMode,
        lease_ttl_ms: u64,
        token: Token,
    ) -> ReadReply {
        let generations = self.generations(gen_keys);
        let mut sh = self.shard(key);
        let found = sh.find(key, now);
        let (entry, marked_stale, needs_load, held) = match found {
            Some(i) => {
                sh.touch(i);
                let s = &sh.nodes[i].slot;
                let valid = s.entry.is_some() && s.gens == generations;
                let entry = if valid { s.entry.clone() } else { None };
                let needs = !valid || s.marked_stale || now >= s.soft_at;
                (entry, valid && s.marked_stale, needs, s.live_lease(now))
            }
            None => (None, false, true, None),
        };
        let want = match mode {
            LeaseMode::None => false,
            LeaseMode::IfNeeded => needs_load,
            LeaseMode::Force => true,
        };
        let lease = if !want {
            LeaseOutcome::NotRequested
        } else if let Some((_, until)) = held {
            LeaseOutcome::Held { until_ms: until }
        } else {
            let until = now + lease_ttl_ms;
            match found {
                Some(i) => sh.nodes[i].slot.lease = Some((token, until)),
                None => {
                    let mut slot = Slot::empty();
                    slot.lease = Some((token, until));
                    let i = sh.insert(key, slot);
                    let ev = sh.evict(self.max_entries, self.max_bytes, i);
                    if ev > 0 {
                        self.evictions.fetch_add(ev, Ordering::Relaxed);
                    }
                }
            }
            LeaseOutcome::Granted { token }
        };
        ReadReply { now_ms: now, entry, marked_stale, generations, lease }
    }
}
