//! The embedded memory store: the reference implementation of the store protocol.
//!
//! It is a product feature (the default store that needs nothing), not a mock: bounded by
//! entry count and bytes, with the same semantics the Redis scripts implement. It holds no
//! clock: every op takes `now_ms` from the driver.
//!
//! What it keeps when full is decided by [`crate::evict::WTinyLfu`] (adaptive W-TinyLFU, as in
//! Caffeine), one per shard: a new key enters a small window, and leaves it for the main region
//! only if it looks more popular than what it would push out, so scans and loops slightly
//! larger than the store do not flush it (docs/eviction.md has the measurements). Every slot
//! weighs `max(1, ⌈bytes · max_entries / max_bytes⌉)` units against `max_entries` units, so one
//! bound holds both limits. Sharding (by a stable key hash) keeps two threads hitting different
//! keys off each other's lock; each shard holds `1/N` of the budget, and small stores use fewer
//! shards (at least [`MIN_ENTRIES_PER_SHARD`] each) so each shard's frequency estimate has room.
//! The same ops in the same order with the same seed evict the same keys in every runtime.

use crate::store::{
    Bytes, InvalidateMode, LeaseMode, LeaseOutcome, ReadReply, RejectReason, StoreOp, StoreReply,
    Token,
};
use crate::evict::{Cause, EvictionCounts, WTinyLfu, key_hash};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Fixed-key SipHash for the maps (not observable: shard placement and eviction use the
/// stable [`key_hash`]).
type Hasher = BuildHasherDefault<DefaultHasher>;

/// Bookkeeping bytes charged per entry on top of key and value.
const OVERHEAD: usize = 96;

/// Bookkeeping bytes charged per generation counter on top of its key and its 8-byte value:
/// the map slot (a 24-byte `String` header, the value and a control byte) with hashbrown's
/// growth slack, and the key allocation's header and rounding. Measured
/// (`examples/memory_overhead.rs`): 35–61 heap bytes requested per counter besides key + 8, at
/// 1 k / 100 k / 1 M counters, plus malloc's 8–16 per key allocation; 80 stays above that.
pub const GEN_OVERHEAD: usize = 80;

/// Generation counters may hold at most `1 / GEN_SHARE` of each shard's bytes; past that (or
/// past the count bound) counters are dropped, failing closed (docs/eviction.md).
pub const GEN_SHARE: usize = 4;

/// Bytes a generation counter under `key` is charged against `max_bytes`.
pub fn gen_cost(key: &str) -> usize {
    key.len() + 8 + GEN_OVERHEAD
}

/// Smallest entry budget a shard is given: a store with `max_entries` below
/// `shards × MIN_ENTRIES_PER_SHARD` uses fewer shards. Each shard runs its own W-TinyLFU, and
/// small ones lose hit ratio (16 shards at 100,000 entries cost 1 point on Zipf 0.8 against 2;
/// docs/eviction.md), so this trades some lock spread for it.
pub const MIN_ENTRIES_PER_SHARD: usize = 32_768;

/// Size limits of a [`MemoryStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStoreConfig {
    /// Most entries kept (leases and version floors count too).
    pub max_entries: usize,
    /// Most bytes kept: keys + encoded entries + a fixed overhead each, and the generation
    /// counters (key + value + [`GEN_OVERHEAD`] each, at most `1 / GEN_SHARE` of the bytes).
    pub max_bytes: usize,
    /// Most independently locked shards (rounded up to a power of two; fewer when
    /// `max_entries` is small, see [`MIN_ENTRIES_PER_SHARD`]).
    pub shards: usize,
    /// Keys the placement hash and draws the admission coin. Any value is valid; hosts may pass
    /// OS randomness so shard and sketch slots cannot be predicted from key names. The same
    /// seed and the same ops give the same evictions everywhere.
    pub seed: u64,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig { max_entries: 100_000, max_bytes: 256 << 20, shards: 16, seed: 0 }
    }
}

impl MemoryStoreConfig {
    /// The number of shards actually used: `shards` rounded up to a power of two (1–1024),
    /// lowered to a power of two that leaves each shard at least [`MIN_ENTRIES_PER_SHARD`].
    pub fn effective_shards(&self) -> usize {
        let asked = self.shards.clamp(1, 1024).next_power_of_two();
        let room = (self.max_entries / MIN_ENTRIES_PER_SHARD).max(1);
        let room = 1usize << (usize::BITS - 1 - room.leading_zeros());
        asked.min(room)
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
    /// The generations the lease was granted under: a lease from before a bump does not hold
    /// the key against readers of the new generation (its load can never fill).
    lease_gens: Vec<u64>,
    /// The host's memo on `entry` (see [`Memo`]); dropped with it.
    memo: Option<Memo>,
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
            lease_gens: Vec::new(),
            memo: None,
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
}

struct Shard {
    /// Key -> node index. The index is stored as `u64` (the same type as natively on 64-bit)
    /// so this map and `MemoryStore::gens` are one `HashMap<String, u64, Hasher>` type: on wasm32
    /// a second (`usize`-valued) copy of hashbrown's code cost the module ≈ 1.8 KB.
    map: HashMap<String, u64, Hasher>,
    nodes: Vec<Node>,
    free: Vec<usize>,
    bytes: usize,
    /// Bytes of the generation counters charged to this shard (the shard of the counter's key);
    /// the policy holds them as reserved units, so entries make room for them.
    gen_bytes: usize,
    /// This shard's budget, for weighing slots in policy units.
    max_entries: usize,
    max_bytes: usize,
    policy: WTinyLfu,
    /// Scratch for the ids an eviction hands back (kept to avoid an allocation per fill).
    out: Vec<(usize, Cause)>,
}

impl Shard {
    fn new(max_entries: usize, max_bytes: usize, seed: u64) -> Shard {
        Shard {
            map: HashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            bytes: 0,
            gen_bytes: 0,
            max_entries,
            max_bytes,
            policy: WTinyLfu::new(max_entries as u64, seed),
            out: Vec::new(),
        }
    }
    /// Policy units for a slot costing `cost` bytes: a share of the entry budget at least as
    /// large as its share of the byte budget.
    fn weight(&self, cost: usize) -> u32 {
        // 64-bit sizes need 128 bits for the product; with 32-bit sizes (wasm32) 64 bits hold
        // it exactly, and a 128-bit division would cost the module a kilobyte of code.
        #[cfg(target_pointer_width = "64")]
        let w = (cost as u128 * self.max_entries as u128).div_ceil(self.max_bytes as u128);
        #[cfg(not(target_pointer_width = "64"))]
        let w = (cost as u64 * self.max_entries as u64).div_ceil(self.max_bytes as u64);
        w.clamp(1, u32::MAX.into()) as u32
    }
    /// Bytes an entry may use: the budget less what counters hold here.
    fn room(&self) -> usize {
        self.max_bytes.saturating_sub(self.gen_bytes)
    }
    /// Charge (`add`) or refund counter bytes; after a charge, evict entries until everything
    /// fits again. Returns how many slots went for space.
    fn charge_gens(&mut self, bytes: usize, add: bool, now: u64) -> u64 {
        self.gen_bytes = if add { self.gen_bytes + bytes } else { self.gen_bytes - bytes };
        // The same rounding up as `weight`, over the sum (0 bytes reserve nothing).
        #[cfg(target_pointer_width = "64")]
        let units = (self.gen_bytes as u128 * self.max_entries as u128).div_ceil(self.max_bytes as u128) as u64;
        #[cfg(not(target_pointer_width = "64"))]
        let units = (self.gen_bytes as u64 * self.max_entries as u64).div_ceil(self.max_bytes as u64);
        self.policy.set_reserved(units);
        if add { self.evict(None, now) } else { 0 }
    }
    fn touch(&mut self, i: usize) {
        self.policy.access(i);
    }
    fn remove(&mut self, i: usize) {
        self.policy.remove(i);
        self.free_node(i);
    }
    /// Drop a node's data (the policy has already forgotten it).
    fn free_node(&mut self, i: usize) {
        let key = std::mem::take(&mut self.nodes[i].key);
        self.bytes -= self.nodes[i].slot.cost(&key);
        self.nodes[i].slot = Slot::empty();
        self.map.remove(&key);
        self.free.push(i);
    }
    /// Index of a live slot for `key`, dropping it first if it is dead.
    fn find(&mut self, key: &str, now: u64) -> Option<usize> {
        let i = *self.map.get(key)? as usize;
        if self.nodes[i].slot.dead(now) {
            self.remove(i);
            return None;
        }
        Some(i)
    }
    fn insert(&mut self, key: &str, hash: u64, slot: Slot) -> usize {
        let cost = slot.cost(key);
        let node = Node { key: key.to_string(), slot };
        self.bytes += cost;
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
        self.map.insert(key.to_string(), i as u64);
        let w = self.weight(cost);
        self.policy.insert(i, hash, w);
        i
    }
    /// Replace a slot's state. `accessed`: a write that counts as a use (a fill) moves the slot
    /// up; an invalidation only reweighs it.
    fn set_slot(&mut self, i: usize, slot: Slot, accessed: bool) {
        let key = std::mem::take(&mut self.nodes[i].key);
        self.bytes -= self.nodes[i].slot.cost(&key);
        let cost = slot.cost(&key);
        self.bytes += cost;
        self.nodes[i].slot = slot;
        self.nodes[i].key = key;
        let w = self.weight(cost);
        if accessed { self.policy.update(i, w) } else { self.policy.reweigh(i, w) }
    }
    /// Evict until within budget, never the node `keep` (unless it alone outweighs the shard).
    /// Returns how many slots went for space (dead slots dropped on the way are not counted).
    fn evict(&mut self, keep: Option<usize>, now: u64) -> u64 {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let nodes = &self.nodes;
        self.policy.evict(keep, |id| nodes[id].slot.dead(now), &mut out);
        let mut n = 0;
        for &(id, cause) in &out {
            self.free_node(id);
            if cause != Cause::Expired {
                n += 1;
            }
        }
        self.out = out;
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

/// What a host keeps with one stored entry — its decoded value, say — so that a hit on the
/// same bytes need not decode them again ([`MemoryStore::attach_memo`]). The store never reads
/// it and does not count its size; it goes with the entry (replaced, deleted, expired or
/// evicted), so it never outlives or mismatches the bytes it was made from.
pub type Memo = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// The embedded store. Thread-safe (`&self` everywhere); clock-free.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    gens: RwLock<HashMap<String, u64, Hasher>>,
    /// At most this many generation counters (namespaces and tags) are kept.
    max_gens: usize,
    /// What a counter that is not kept reads as: 0 until counters were first dropped, then a
    /// new value each time, so no entry stamped before a drop can match a dropped counter.
    absent_gen: AtomicU64,
    seed: u64,
    evictions: AtomicU64,
    /// The last lease token issued: each grant takes the next one, so no two leases this store
    /// ever granted share a token (C2 fencing cannot depend on clients' random streams).
    last_token: AtomicU64,
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
        let n = config.effective_shards();
        let (e, b) = (config.max_entries.div_ceil(n).max(1), config.max_bytes.div_ceil(n).max(1));
        MemoryStore {
            shards: (0..n)
                .map(|i| Mutex::new(Shard::new(e, b, config.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))))
                .collect(),
            gens: RwLock::new(HashMap::default()),
            max_gens: config.max_entries.max(1_024),
            absent_gen: AtomicU64::new(0),
            seed: config.seed,
            evictions: AtomicU64::new(0),
            last_token: AtomicU64::new(0),
        }
    }

    /// The shard holding `key`, locked, and the key's stable hash.
    fn shard(&self, key: &str) -> (std::sync::MutexGuard<'_, Shard>, u64) {
        let h = key_hash(self.seed, key);
        (self.lock(self.shard_of(h)), h)
    }

    /// The shard index of a key with stable hash `h`: high bits pick it; the sketch uses the
    /// hash as a whole.
    fn shard_of(&self, h: u64) -> usize {
        (h >> 40) as usize & (self.shards.len() - 1)
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard lock cannot leave a slot half-written (every mutation
        // is a whole-value assignment), so a poisoned lock is safe to keep using.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop about every 8th counter (at least one, so a small map shrinks too), refund their
    /// bytes to their shards, and move "absent" to a value never used before. Returns how many
    /// went. Fail closed: a dropped counter must not read as a value some entry was stamped
    /// with (its old value, or the absent value of entries filled before its first bump — that
    /// would bring them back), so every entry under a dropped or never-bumped counter reads as
    /// orphaned: misses, never a stale hit. Which ones go is decided by the stable key hash,
    /// salted by the current absent value (so each round picks others), never by the map's
    /// iteration order, which differs between platforms (hashbrown's group width): the same ops
    /// drop the same counters in every runtime.
    fn drop_gens(&self, g: &mut HashMap<String, u64, Hasher>) -> u64 {
        let a = self.absent_gen.load(Ordering::Relaxed);
        let salt = self.seed ^ a;
        let mut refund = vec![0usize; self.shards.len()];
        let before = g.len();
        g.retain(|k, _| {
            let keep = key_hash(salt, k) % 8 != 0;
            if !keep {
                refund[self.shard_of(key_hash(self.seed, k))] += gen_cost(k);
            }
            keep
        });
        if g.len() == before {
            // None fell on the 1-in-8: the lowest hash goes (a minimum, so order-independent).
            let k = g.keys().min_by_key(|k| (key_hash(salt, k), k.as_str())).cloned();
            if let Some(k) = k {
                g.remove(&k);
                refund[self.shard_of(key_hash(self.seed, &k))] += gen_cost(&k);
            }
        }
        for (si, b) in refund.into_iter().enumerate() {
            if b > 0 {
                self.lock(si).charge_gens(b, false, 0);
            }
        }
        self.absent_gen.store((a | 1 << 63).wrapping_add(1), Ordering::Relaxed);
        (before - g.len()) as u64
    }

    fn generations(&self, gen_keys: &[String]) -> Vec<u64> {
        if gen_keys.is_empty() {
            return Vec::new();
        }
        let g = self.gens.read().unwrap_or_else(|p| p.into_inner());
        let absent = self.absent_gen.load(Ordering::Relaxed);
        gen_keys.iter().map(|k| g.get(k).copied().unwrap_or(absent)).collect()
    }

    /// Entries evicted for space so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Removals by eviction so far, by cause, summed over shards.
    pub fn eviction_counts(&self) -> EvictionCounts {
        let mut t = EvictionCounts::default();
        for s in self.shards.iter() {
            let c = s.lock().unwrap_or_else(|p| p.into_inner()).policy.counts();
            t.evicted += c.evicted;
            t.rejected += c.rejected;
            t.oversized += c.oversized;
            t.expired += c.expired;
        }
        t
    }

    /// Shards in use (see [`MemoryStoreConfig::effective_shards`]).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Bytes of bookkeeping held besides keys and entries: slab nodes, map slots, policy links
    /// and frequency sketches (an estimate from capacities, for the per-entry overhead figure).
    pub fn overhead_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.nodes.capacity() * std::mem::size_of::<Node>()
                    + s.map.capacity() * (std::mem::size_of::<(String, u64)>() + 1)
                    + s.free.capacity() * std::mem::size_of::<usize>()
                    + s.policy.heap_bytes()
            })
            .sum()
    }

    /// Slots held (entries, live leases and version floors).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len()).sum()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged against `max_bytes`: entries, leases and version floors, and the
    /// generation counters ([`MemoryStore::generation_bytes`]).
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.bytes + s.gen_bytes
            })
            .sum()
    }

    /// The part of [`MemoryStore::bytes`] held by generation counters (namespaces and tags
    /// ever bumped and still kept): key + 8 + [`GEN_OVERHEAD`] each.
    pub fn generation_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).gen_bytes).sum()
    }

    /// Generation counters kept.
    pub fn generation_count(&self) -> usize {
        self.gens.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The entry bytes for `key` if present and not orphaned by a generation bump, with its
    /// marked-stale flag and the host's memo on it; touches the LRU. No lease, no allocation:
    /// the fresh-hit fast path (`flow::fast_hit`) is built on it.
    pub fn peek_valid(&self, now_ms: u64, key: &str, gen_keys: &[String]) -> Option<(Bytes, bool, Option<Memo>)> {
        // Lock order everywhere: generations, then a shard (never the other way round).
        let gens = (!gen_keys.is_empty()).then(|| self.gens.read().unwrap_or_else(|p| p.into_inner()));
        let (mut sh, _) = self.shard(key);
        let i = sh.find(key, now_ms)?;
        sh.touch(i);
        let s = &sh.nodes[i].slot;
        let e = s.entry.as_ref()?;
        if s.gens.len() != gen_keys.len() || now_ms >= s.expire_at {
            return None;
        }
        if let Some(g) = &gens {
            for (v, k) in s.gens.iter().zip(gen_keys) {
                if *v != g.get(k).copied().unwrap_or(self.absent_gen.load(Ordering::Relaxed)) {
                    return None;
                }
            }
        }
        Some((e.clone(), s.marked_stale, s.memo.clone()))
    }

    /// Keep `memo` with `key`'s entry if it still is `entry` (the bytes `peek_valid` gave, by
    /// identity); otherwise do nothing. No LRU touch.
    pub fn attach_memo(&self, key: &str, entry: &Bytes, memo: Memo) {
        let (mut sh, _) = self.shard(key);
        if let Some(&i) = sh.map.get(key) {
            let s = &mut sh.nodes[i as usize].slot;
            if s.entry.as_ref().is_some_and(|e| std::sync::Arc::ptr_eq(e, entry)) {
                s.memo = Some(memo);
            }
        }
    }

    /// What the store holds for `key` at `now_ms` (no LRU touch).
    pub fn inspect(&self, now_ms: u64, key: &str) -> Option<SlotInfo> {
        let (mut sh, _) = self.shard(key);
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
            StoreOp::Read { key, gen_keys, lease, lease_ttl_ms } => {
                StoreReply::Read(self.read(now_ms, key, gen_keys, *lease, *lease_ttl_ms))
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
                let (mut sh, hash) = self.shard(key);
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
                    lease_gens: Vec::new(),
                    memo: None,
                };
                if slot.cost(key) > sh.room() {
                    // Larger than this shard's whole budget (less its counters): keeping it
                    // would flush the shard and still break `max_bytes`. It is evicted at once,
                    // as Caffeine does with an entry heavier than the cache; the value it
                    // replaces goes too (a reader must not get it after this write), its version
                    // floor stays.
                    if let Some(i) = found {
                        let old = &sh.nodes[i].slot;
                        if old.version.is_none() && slot.version.is_none() {
                            sh.remove(i);
                        } else {
                            let floor = Slot { entry: None, memo: None, lease: None, ..slot };
                            sh.set_slot(i, floor, false);
                        }
                    }
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    return StoreReply::Stored;
                }
                let i = match found {
                    Some(i) => {
                        sh.set_slot(i, slot, true);
                        i
                    }
                    None => sh.insert(key, hash, slot),
                };
                let ev = sh.evict(Some(i), now_ms);
                if ev > 0 {
                    self.evictions.fetch_add(ev, Ordering::Relaxed);
                }
                StoreReply::Stored
            }
            StoreOp::Invalidate { key, mode } => {
                let (mut sh, _) = self.shard(key);
                let Some(i) = sh.find(key, now_ms) else {
                    return StoreReply::Invalidated { existed: false };
                };
                let mut slot = sh.nodes[i].slot.clone();
                let existed = slot.entry.is_some();
                slot.lease = None;
                match mode {
                    InvalidateMode::Delete => {
                        slot.entry = None;
                        slot.memo = None;
                        slot.marked_stale = false;
                    }
                    InvalidateMode::MarkStale => slot.marked_stale = existed,
                }
                if slot.entry.is_none() && slot.version.is_none() {
                    sh.remove(i);
                } else {
                    sh.set_slot(i, slot, false);
                }
                StoreReply::Invalidated { existed }
            }
            StoreOp::Release { key, token } => {
                let (mut sh, _) = self.shard(key);
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
                let (mut sh, _) = self.shard(key);
                let Some(i) = sh.find(key, now_ms) else { return StoreReply::Lease { ok: false } };
                let slot = &mut sh.nodes[i].slot;
                // Only a live lease can be extended: an expired one may already be someone else's.
                let ok = slot.live_lease(now_ms).map(|l| l.0) == Some(*token);
                if ok {
                    slot.lease = Some((*token, now_ms.saturating_add(*lease_ttl_ms)));
                }
                StoreReply::Lease { ok }
            }
            StoreOp::Bump { gen_key, value } => {
                let mut g = self.gens.write().unwrap_or_else(|p| p.into_inner());
                // Lock order: generations, then a shard.
                let new = (!g.contains_key(gen_key)).then(|| (gen_cost(gen_key), self.shard_of(key_hash(self.seed, gen_key))));
                let mut kept = true;
                if let Some((cost, si)) = new {
                    // Bounded by count and by bytes (a million distinct tags must not grow the
                    // store past either): counters take at most 1/GEN_SHARE of the bytes of the
                    // shard they are charged to; past that, counters are dropped (fail closed,
                    // see `drop_gens`) until the new one fits.
                    let share = self.lock(si).max_bytes / GEN_SHARE;
                    if cost > share {
                        // Heavier than the whole share (a huge key in a tiny store): not kept.
                        // Moving "absent" still orphans what was stamped under it (fail closed).
                        let a = self.absent_gen.load(Ordering::Relaxed);
                        self.absent_gen.store((a | 1 << 63).wrapping_add(1), Ordering::Relaxed);
                        kept = false;
                    }
                    while kept && (g.len() >= self.max_gens || self.lock(si).gen_bytes + cost > share) {
                        let n = self.drop_gens(&mut g);
                        self.evictions.fetch_add(n, Ordering::Relaxed);
                    }
                }
                if !kept {
                    return StoreReply::Bumped { generation: self.absent_gen.load(Ordering::Relaxed) };
                }
                let old = g.get(gen_key).copied().unwrap_or(self.absent_gen.load(Ordering::Relaxed));
                // Never "bump" to the same value (would not orphan anything).
                let v = if *value == old { value.wrapping_add(1).max(1) } else { *value };
                g.insert(gen_key.clone(), v);
                if let Some((cost, si)) = new {
                    // Entries in the counter's shard make room for it.
                    let ev = self.lock(si).charge_gens(cost, true, now_ms);
                    self.evictions.fetch_add(ev, Ordering::Relaxed);
                }
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
    ) -> ReadReply {
        let generations = self.generations(gen_keys);
        let (mut sh, hash) = self.shard(key);
        let found = sh.find(key, now);
        let (entry, marked_stale, needs_load, held) = match found {
            Some(i) => {
                sh.touch(i);
                let s = &sh.nodes[i].slot;
                // Past expire_at the entry is gone (the slot lives on only for its lease), as
                // on Redis, whose counters are kept only until then.
                let valid = s.entry.is_some() && now < s.expire_at && s.gens == generations;
                let entry = if valid { s.entry.clone() } else { None };
                let needs = !valid || s.marked_stale || now >= s.soft_at;
                let held = s.live_lease(now).filter(|_| s.lease_gens == generations);
                (entry, valid && s.marked_stale, needs, held)
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
            let until = now.saturating_add(lease_ttl_ms);
            // Store-wide rather than per key: one atomic add, and no token ever repeats here.
            let token = self.last_token.fetch_add(1, Ordering::Relaxed) + 1;
            match found {
                Some(i) => {
                    let slot = &mut sh.nodes[i].slot;
                    slot.lease = Some((token, until));
                    slot.lease_gens.clone_from(&generations);
                }
                None => {
                    let mut slot = Slot::empty();
                    slot.lease = Some((token, until));
                    slot.lease_gens.clone_from(&generations);
                    let i = sh.insert(key, hash, slot);
                    let ev = sh.evict(Some(i), now);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;
    use std::sync::Arc;

    fn fill(m: &MemoryStore, key: &str, value: &[u8]) {
        let e = Entry { value: value.to_vec(), soft_at: 1_000, hard_at: 2_000, ..Entry::default() };
        let op = StoreOp::Fill {
            key: key.into(),
            entry: e.encode().into(),
            soft_at: 1_000,
            hard_at: 2_000,
            expire_at: 2_000,
            version: None,
            generations: None,
            gen_keys: Vec::new(),
            token: None,
        };
        assert_eq!(m.apply(0, &op), StoreReply::Stored);
    }

    #[test]
    fn a_memo_lives_exactly_as_long_as_its_entry() {
        let m = MemoryStore::new(MemoryStoreConfig::default());
        fill(&m, "k", b"1");
        let (e1, _, memo) = m.peek_valid(0, "k", &[]).unwrap();
        assert!(memo.is_none());
        m.attach_memo("k", &e1, Arc::new(1u8));
        let memo = m.peek_valid(0, "k", &[]).unwrap().2.unwrap();
        assert_eq!(memo.downcast_ref::<u8>(), Some(&1));
        // Marking stale keeps the bytes, so the memo stays; a refill drops it, and a memo for
        // the old bytes is not attached to the new entry.
        m.apply(0, &StoreOp::Invalidate { key: "k".into(), mode: InvalidateMode::MarkStale });
        assert!(m.peek_valid(0, "k", &[]).unwrap().2.is_some());
        fill(&m, "k", b"2");
        m.attach_memo("k", &e1, Arc::new(1u8));
        assert!(m.peek_valid(0, "k", &[]).unwrap().2.is_none());
        m.apply(0, &StoreOp::Invalidate { key: "k".into(), mode: InvalidateMode::Delete });
        assert!(m.peek_valid(0, "k", &[]).is_none());
    }

    /// Issue 11: an entry heavier than its shard's whole budget is not kept (it would flush
    /// the shard and still break `max_bytes`); the value it replaces goes too.
    #[test]
    fn max_bytes_holds_for_an_entry_larger_than_its_shard() {
        let cfg = MemoryStoreConfig { max_entries: 1_000, max_bytes: 64 << 10, shards: 1, seed: 0 };
        let m = MemoryStore::new(cfg);
        for i in 0..20 {
            fill(&m, &format!("small{i}"), &[b'x'; 100]);
        }
        fill(&m, "big", b"old");
        let before = m.len();
        fill(&m, "big", &vec![b'y'; 100 << 10]);
        assert!(m.bytes() <= 64 << 10, "bytes {} over max_bytes", m.bytes());
        assert!(m.peek_valid(0, "big", &[]).is_none(), "neither the big value nor the one it replaced is served");
        assert_eq!(m.len(), before - 1, "the other entries stay");
        assert_eq!(m.evictions(), 1);
        // Many of them never add up past the bound either.
        for i in 0..50 {
            fill(&m, &format!("big{i}"), &vec![b'z'; 70 << 10]);
        }
        assert!(m.bytes() <= 64 << 10);
    }

    /// Issue 11: generation counters are bounded, and dropping one fails closed.
    #[test]
    fn generation_counters_are_bounded_and_fail_closed() {
        let m = MemoryStore::new(MemoryStoreConfig { max_entries: 100, max_bytes: 1 << 20, shards: 1, seed: 0 });
        let bump = |k: &str, v: u64| m.apply(0, &StoreOp::Bump { gen_key: k.into(), value: v });
        bump("g:tag:first", 7);
        let e = Entry { value: b"1".to_vec(), soft_at: 1_000, hard_at: 2_000, generations: vec![7], ..Entry::default() };
        let fill = StoreOp::Fill {
            key: "k".into(),
            entry: e.encode().into(),
            soft_at: 1_000,
            hard_at: 2_000,
            expire_at: 2_000,
            version: None,
            generations: Some(vec![7]),
            gen_keys: vec!["g:tag:first".into()],
            token: None,
        };
        assert_eq!(m.apply(0, &fill), StoreReply::Stored);
        assert!(m.peek_valid(0, "k", &["g:tag:first".into()]).is_some());
        let mut i = 0;
        while m.gens.read().unwrap().contains_key("g:tag:first") {
            bump(&format!("g:tag:{i}"), 1 + i);
            i += 1;
            assert!(i < 100_000, "the first counter is never dropped");
            assert!(m.gens.read().unwrap().len() <= 1_024, "bounded");
        }
        assert!(m.peek_valid(0, "k", &["g:tag:first".into()]).is_none(), "its entry reads as orphaned (fail closed)");
        // An entry filled before its namespace's first bump (stamped 0) must not come back
        // when that counter is dropped.
        let m = MemoryStore::new(MemoryStoreConfig { max_entries: 100, max_bytes: 1 << 20, shards: 1, seed: 0 });
        let mut old = fill;
        if let StoreOp::Fill { entry, generations, gen_keys, .. } = &mut old {
            *entry = Entry { generations: vec![0], ..e }.encode().into();
            *generations = Some(vec![0]);
            *gen_keys = vec!["g:ns".into()];
        }
        assert_eq!(m.apply(0, &old), StoreReply::Stored);
        m.apply(0, &StoreOp::Bump { gen_key: "g:ns".into(), value: 9 });
        assert!(m.peek_valid(0, "k", &["g:ns".into()]).is_none(), "orphaned by the bump");
        let mut i = 0;
        while m.gens.read().unwrap().contains_key("g:ns") {
            m.apply(0, &StoreOp::Bump { gen_key: format!("g:tag:{i}"), value: 1 + i });
            i += 1;
        }
        assert!(m.peek_valid(0, "k", &["g:ns".into()]).is_none(), "a dropped counter does not resurrect pre-bump entries");
        assert!(m.evictions() > 0);
    }
}
