//! `eviction.json`: what the memory store keeps when it is full (adaptive W-TinyLFU, see
//! `core/src/evict.rs`). Each case is a request trace replayed as the Cache drives the store —
//! `read` with a lease, then `fill` with that token on a miss — followed by probes (`read`
//! without a lease) that show which keys are still held. The generator decides the ops by
//! running a real store alongside (a fill is emitted only when the read granted a lease), and
//! asserts the property each case is about, so a regenerated file cannot silently lose it.

use crate::File;
use karlton_core::entry::Entry;
use karlton_core::rand::SplitMix64;
use karlton_core::store::{LeaseMode, LeaseOutcome, StoreOp, StoreReply};
use karlton_core::{MemoryStore, MemoryStoreConfig};
use serde_json::{Value, json};

struct Trace {
    cfg: MemoryStoreConfig,
    store: MemoryStore,
    ops: Vec<Value>,
    now: u64,
    hits: usize,
}

impl Trace {
    fn new(max_entries: usize, max_bytes: usize, seed: u64) -> Trace {
        let cfg = MemoryStoreConfig { max_entries, max_bytes, shards: 1, seed };
        Trace { cfg, store: MemoryStore::new(cfg), ops: Vec::new(), now: 1_000, hits: 0 }
    }

    fn run(&mut self, op: StoreOp) -> StoreReply {
        self.ops.push(json!({ "now": self.now, "op": serde_json::to_value(&op).unwrap() }));
        self.store.apply(self.now, &op)
    }

    /// One cache request: read with a lease; on a miss fill `len` value bytes living `ttl` ms.
    fn get_sized(&mut self, key: &str, len: usize, ttl: u64) -> bool {
        self.now += 1;
        let op = StoreOp::Read { key: key.into(), gen_keys: vec![], lease: LeaseMode::IfNeeded, lease_ttl_ms: 1_000 };
        let StoreReply::Read(r) = self.run(op) else { unreachable!() };
        if r.entry.is_some() {
            self.hits += 1;
            return true;
        }
        if let LeaseOutcome::Granted { token } = r.lease {
            self.fill(key, len, ttl, Some(token));
        }
        false
    }

    fn get(&mut self, key: &str) -> bool {
        self.get_sized(key, 1, 1 << 40)
    }

    fn fill(&mut self, key: &str, len: usize, ttl: u64, token: Option<u64>) -> StoreReply {
        let (soft, hard) = (self.now + ttl, self.now + ttl);
        let e = Entry { value: vec![b'v'; len], codec: 1, version: None, generations: vec![], soft_at: soft, hard_at: hard, load_ms: 1, negative: false, tags: vec![] };
        let op = StoreOp::Fill { key: key.into(), entry: e.encode().into(), soft_at: soft, hard_at: hard, expire_at: hard, version: None, generations: None, gen_keys: vec![], token };
        self.run(op)
    }

    /// Probe without a lease (and without a fill): is `key` held?
    fn held(&mut self, key: &str) -> bool {
        self.now += 1;
        let op = StoreOp::Read { key: key.into(), gen_keys: vec![], lease: LeaseMode::None, lease_ttl_ms: 0 };
        matches!(self.run(op), StoreReply::Read(r) if r.entry.is_some())
    }

    fn held_all(&mut self, keys: &[String]) -> usize {
        keys.iter().filter(|k| self.held(k)).count()
    }

    fn emit(self, f: &mut File, name: &str, why: &str) -> Value {
        let c = self.cfg;
        let input = json!({
            "config": { "max_entries": c.max_entries, "max_bytes": c.max_bytes, "shards": c.shards, "seed": c.seed.to_string() },
            "ops": self.ops,
        });
        let expect = f.add(name, why, input);
        // The replay in eval must agree with the store the ops were chosen against.
        assert_eq!(expect["evictions"], json!(self.store.evictions()), "{name}: replay differs");
        expect
    }
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("ev:{prefix}{i}")).collect()
}

pub fn eviction() -> File {
    let mut f = File::new(
        "eviction",
        "Request traces against a small memory store (config: limits, shards, seed) → every reply, evictions for space, slots and bytes held. Memory store only: Redis evicts by its own maxmemory policy.",
    );

    {
        let mut t = Trace::new(8, 1 << 20, 0);
        let ks = keys("a", 8);
        for k in &ks {
            t.get(k);
        }
        assert_eq!(t.held_all(&ks), 8);
        let e = t.emit(&mut f, "under_capacity_keeps_everything", "8 keys in an 8-entry store: nothing is evicted");
        assert_eq!(e["evictions"], 0);
    }
    {
        let mut t = Trace::new(4, 1 << 20, 0);
        let ks = keys("b", 5);
        for k in &ks {
            t.get(k);
        }
        assert!(t.held(&ks[4]), "the key just written stays");
        let e = t.emit(&mut f, "the_write_that_overflows_keeps_its_own_entry", "a 5th key in a 4-entry store: one slot goes, never the one just filled");
        assert_eq!(e["evictions"], 1);
        assert_eq!(e["slots"], 4);
    }
    {
        let mut t = Trace::new(10, 1 << 20, 0);
        for _ in 0..8 {
            t.get("ev:hot");
        }
        for k in &keys("once", 30) {
            t.get(k);
        }
        assert!(t.held("ev:hot"));
        // (30 one-time keys)
        t.emit(&mut f, "frequency_beats_recency", "one key read 8 times survives 30 one-time keys (LRU would have dropped it)");
    }
    {
        let mut t = Trace::new(20, 1 << 20, 0);
        let hot = keys("hot", 10);
        for _ in 0..6 {
            for k in &hot {
                t.get(k);
            }
        }
        for k in &keys("scan", 30) {
            t.get(k);
        }
        assert_eq!(t.held_all(&hot), 10, "a scan does not flush the hot set");
        t.emit(&mut f, "hot_keys_survive_a_scan", "10 hot keys read 6 times each, then a scan of 30 cold keys: all 10 stay");
    }
    {
        let mut t = Trace::new(10, 1 << 20, 0);
        let ring = keys("loop", 12);
        for _ in 0..6 {
            for k in &ring {
                t.get(k);
            }
        }
        let before = t.hits;
        for k in &ring {
            t.get(k);
        }
        assert!(t.hits - before >= 6, "loop over 1.2x: {} hits of 12 in the last round", t.hits - before);
        t.emit(&mut f, "loop_over_1_2x_keeps_a_fixed_set", "a loop over 12 keys in a 10-entry store: most of a round hits (LRU: none)");
    }
    {
        let mut t = Trace::new(10, 2_000, 0);
        t.now += 1;
        let r = t.fill("ev:big", 3_000, 1 << 40, None);
        assert_eq!(r, StoreReply::Stored);
        assert!(!t.held("ev:big"));
        let e = t.emit(&mut f, "oversized_entry_is_not_kept", "an entry larger than the whole byte budget is acknowledged but not kept");
        assert_eq!(e["evictions"], 1);
        assert_eq!(e["slots"], 0);
    }
    {
        let mut t = Trace::new(100, 1_000, 0);
        for k in &keys("w", 20) {
            t.get_sized(k, 150, 1 << 40);
        }
        let e = t.emit(&mut f, "byte_bound_holds", "20 entries of ~250 bytes in a 1000-byte store: bytes never exceed the bound");
        assert!(e["bytes"].as_u64().unwrap() <= 1_000, "bytes {}", e["bytes"]);
    }
    {
        // Generation counters count in max_bytes (docs/eviction.md): entries make room for them
        // up to a quarter of the bytes, then counters are dropped.
        let mut t = Trace::new(100, 4_000, 0);
        let ks = keys("c", 12);
        for k in &ks {
            t.get_sized(k, 150, 1 << 40);
        }
        assert_eq!(t.store.evictions(), 0, "the entries fit before the counters come");
        for i in 0..8 {
            t.now += 1;
            t.run(StoreOp::Bump { gen_key: format!("ev:!tag:{i}"), value: 1 + i });
        }
        assert_eq!(t.store.generation_count(), 8);
        let room = t.store.evictions();
        assert!(room > 0, "entries made room for the counters");
        for i in 8..40 {
            t.now += 1;
            t.run(StoreOp::Bump { gen_key: format!("ev:!tag:{i}"), value: 1 + i });
        }
        assert!(t.store.generation_count() < 40, "past their share, counters are dropped");
        assert!(t.store.generation_bytes() <= 1_000);
        assert!(t.held_all(&ks) > 0, "entries keep three quarters");
        let e = t.emit(&mut f, "counters_count_in_the_byte_bound", "12 entries of ~280 bytes in a 4000-byte store, then 40 tag bumps: entries are evicted for the counters' bytes (key + 8 + 80 each) up to a quarter of the store, then counters are dropped; bytes (counters included) never exceed the bound");
        assert!(e["bytes"].as_u64().unwrap() <= 4_000, "bytes {}", e["bytes"]);
    }
    {
        let mut t = Trace::new(4, 1 << 20, 0);
        t.get_sized("ev:short1", 4, 100);
        t.get_sized("ev:short2", 4, 100);
        t.now += 1_000; // both are dead now, still in their slots
        for k in &keys("live", 3) {
            t.get(k);
        }
        let e = t.emit(&mut f, "dead_slots_go_first", "an expired slot is dropped before any live one, and is not counted as an eviction");
        assert_eq!(e["evictions"], 0);
        assert_eq!(e["slots"], 4); // 3 live + the other dead one (dropped when next needed or read)
    }
    {
        let mut t = Trace::new(3, 1 << 20, 0);
        let ks = keys("i", 3);
        for k in &ks {
            t.get(k);
        }
        t.now += 1;
        t.run(StoreOp::Invalidate { key: ks[0].clone(), mode: karlton_core::InvalidateMode::Delete });
        t.get("ev:i3");
        assert_eq!(t.held_all(&ks[1..]), 2);
        let e = t.emit(&mut f, "invalidate_frees_room", "a deleted entry frees its slot: the next key needs no eviction");
        assert_eq!(e["evictions"], 0);
    }
    {
        let mut t = Trace::new(2, 1 << 20, 0);
        // Three readers take leases on three keys before any fill: lease slots count as slots.
        let mut toks = Vec::new();
        for k in &keys("l", 3) {
            t.now += 1;
            let StoreReply::Read(r) = t.run(StoreOp::Read { key: k.clone(), gen_keys: vec![], lease: LeaseMode::IfNeeded, lease_ttl_ms: 1_000 }) else { unreachable!() };
            let LeaseOutcome::Granted { token } = r.lease else { panic!("{:?}", r.lease) };
            toks.push(token);
        }
        t.now += 1;
        let r: Vec<StoreReply> = (0..3).map(|i| t.fill(&format!("ev:l{i}"), 4, 1 << 40, Some(toks[i]))).collect();
        // l1 left the window as a candidate no more popular than l0: not admitted.
        assert_eq!(r[1], StoreReply::Rejected { reason: karlton_core::store::RejectReason::LeaseLost });
        assert_eq!(r[2], StoreReply::Stored);
        t.emit(&mut f, "lease_slots_count_and_can_be_evicted", "lease-only slots take room; an evicted lease's fill is refused (lease_lost), the newest survives");
    }
    {
        let mut t = Trace::new(10, 1 << 20, 0);
        let ks = keys("p", 9);
        for k in &ks {
            t.get(k);
        }
        for k in &ks[..4] {
            t.get(k); // second access: probation → protected
        }
        for k in &keys("new", 12) {
            t.get(k);
        }
        assert_eq!(t.held_all(&ks[..4]), 4, "protected entries stay");
        t.emit(&mut f, "protected_outlasts_probation", "entries read twice move to the protected segment and outlast those read once");
    }
    // Seeded Zipf-like traces long enough to run the hill climber (one sample = 10 × capacity
    // requests) and the sketch's halving: they pin the whole machine, step by step.
    for (name, seed, cap, n, keyspace) in [
        ("seeded_skewed_trace_seed1", 1u64, 4usize, 130usize, 24u64),
        ("seeded_skewed_trace_seed2", 2, 4, 130, 24),
        ("seeded_shifting_hot_set", 3, 5, 160, 16),
    ] {
        let mut t = Trace::new(cap, 1 << 20, seed);
        let mut rng = SplitMix64::new(seed);
        for i in 0..n {
            // Squared uniform: a skewed choice; the shifting case moves its hot set halfway.
            let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            let shift = if name.contains("shifting") && i >= n / 2 { 1_000 } else { 0 };
            let k = shift + ((u * u) * keyspace as f64) as u64;
            t.get(&format!("ev:z{k}"));
        }
        let probes = keys("z", 8);
        t.held_all(&probes);
        let hits = t.hits;
        let e = t.emit(&mut f, name, "a seeded skewed trace over a small store: every reply, through hill-climber samples and sketch halvings");
        assert!(e["slots"].as_u64().unwrap() <= cap as u64);
        assert!(hits > n / 5, "{name}: {hits} hits");
    }
    {
        // The admission coin: same trace, seeds differ, results may differ only through it.
        let mut t = Trace::new(4, 1 << 20, 99);
        for _ in 0..8 {
            for k in &keys("warm", 7) {
                t.get(k);
            }
        }
        t.emit(&mut f, "warm_candidates_and_the_admission_coin", "warm candidates losing to victims that are not saturated are never admitted: the seeded coin (1 in 128) is flipped only against a saturated victim");
    }
    {
        let mut t = Trace::new(16, 1 << 20, 0);
        t.cfg.shards = 16; // asked for 16; a 16-entry store uses one shard (MIN_ENTRIES_PER_SHARD)
        t.store = MemoryStore::new(t.cfg);
        assert_eq!(t.store.shard_count(), 1);
        for k in &keys("s", 20) {
            t.get(k);
        }
        let e = t.emit(&mut f, "small_store_uses_one_shard", "16 shards asked for 16 entries: one shard, so the bound is exact (16 slots)");
        assert_eq!(e["slots"], 16);
    }
    f
}
