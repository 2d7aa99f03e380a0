//! Survivors of `core/src/memory.rs`. The memory store's own scenario tests live in the
//! `cache` and `redis` crates and the bindings, which cargo-mutants does not run (only core's
//! tests judge core); these pin, through the public API, what those rely on.

use karlton_core::entry::Entry;
use karlton_core::memory::{MemoryStore, MemoryStoreConfig};
use karlton_core::store::{InvalidateMode, LeaseMode, LeaseOutcome, RejectReason, StoreOp, StoreReply};

fn store(max_entries: usize, max_bytes: usize, shards: usize) -> MemoryStore {
    MemoryStore::new(MemoryStoreConfig { max_entries, max_bytes, shards, seed: 7 })
}

/// An authoritative (tokenless) fill of `len` value bytes, fresh until 1 000, kept until
/// `expire_at`.
fn fill_op(key: &str, len: usize, expire_at: u64, version: Option<u64>) -> StoreOp {
    let e = Entry { value: vec![b'v'; len], soft_at: 1_000, hard_at: 1_000, version, ..Entry::default() };
    StoreOp::Fill {
        key: key.into(),
        entry: e.encode().into(),
        soft_at: 1_000,
        hard_at: 1_000,
        expire_at,
        version,
        generations: None,
        gen_keys: Vec::new(),
        token: None,
    }
}

fn read_op(key: &str, lease: LeaseMode) -> StoreOp {
    StoreOp::Read { key: key.into(), gen_keys: Vec::new(), lease, lease_ttl_ms: 100 }
}

/// `effective_shards` rounds `shards` up to a power of two within 1–1024 and lowers it so that
/// each shard keeps at least `MIN_ENTRIES_PER_SHARD` (32 768) entries; the store uses that many.
#[test]
fn effective_shards_is_a_power_of_two_that_leaves_each_shard_its_minimum() {
    let shards = |max_entries: usize, shards: usize| {
        MemoryStoreConfig { max_entries, max_bytes: 1 << 30, shards, seed: 0 }.effective_shards()
    };
    let big = 1 << 30;
    assert_eq!(shards(big, 0), 1);
    assert_eq!(shards(big, 1), 1);
    assert_eq!(shards(big, 3), 4);
    assert_eq!(shards(big, 16), 16);
    assert_eq!(shards(big, 5_000), 1_024);
    // Room for 1, 2, 3 (→ 2), 4 and 5 (→ 4) shards of 32 768.
    assert_eq!(shards(32_767, 16), 1);
    assert_eq!(shards(65_536, 16), 2);
    assert_eq!(shards(100_000, 16), 2);
    assert_eq!(shards(131_072, 16), 4);
    assert_eq!(shards(5 * 32_768, 16), 4);
    assert_eq!(shards(5 * 32_768, 2), 2);
    for (e, s) in [(big, 3), (100_000, 16), (10, 16)] {
        let cfg = MemoryStoreConfig { max_entries: e, max_bytes: 1 << 20, shards: s, seed: 0 };
        assert_eq!(MemoryStore::new(cfg).shard_count(), cfg.effective_shards());
    }
}

/// `is_empty` is whether the store holds any slot (an entry, a lease, a version floor).
#[test]
fn is_empty_is_whether_any_slot_is_held() {
    let m = store(1_000, 1 << 20, 1);
    assert!(m.is_empty());
    assert_eq!(m.apply(0, &fill_op("k", 3, 2_000, None)), StoreReply::Stored);
    assert!(!m.is_empty());
    m.apply(0, &StoreOp::Invalidate { key: "k".into(), mode: InvalidateMode::Delete });
    assert!(m.is_empty());
    // A lease alone is a slot.
    m.apply(0, &read_op("l", LeaseMode::IfNeeded));
    assert!(!m.is_empty());
    assert_eq!(m.len(), 1);
}

/// `eviction_counts` sums each cause over the shards, and the causes for space add up to
/// `evictions()` (expired slots dropped on the way are counted apart, not as evictions).
#[test]
fn eviction_counts_sum_every_cause_over_the_shards() {
    // Two shards of 32 768 entries and 64 KiB: a slot of ~130 bytes weighs ~65 units, so about
    // 500 fit in a shard.
    let m = store(65_536, 128 << 10, 2);
    assert_eq!(m.shard_count(), 2);
    // Short-lived entries, dead by t = 10: eviction drops them as expired.
    for i in 0..400 {
        assert_eq!(m.apply(0, &fill_op(&format!("short{i}"), 20, 10, None)), StoreReply::Stored);
    }
    // A scan of keys used once: past the budget, each new one loses its contest (rejected).
    for i in 0..1_500 {
        m.apply(20, &fill_op(&format!("cold{i}"), 20, 5_000, None));
    }
    // New keys read often while in the window win against the cold ones (evicted).
    for i in 0..200 {
        let k = format!("hot{i}");
        m.apply(20, &fill_op(&k, 20, 5_000, None));
        for _ in 0..5 {
            m.apply(20, &read_op(&k, LeaseMode::None));
        }
    }
    // A lease under a key heavier than a shard's whole budget: never kept.
    let huge = "h".repeat(70_000);
    assert!(matches!(m.apply(20, &read_op(&huge, LeaseMode::IfNeeded)), StoreReply::Read(r) if matches!(r.lease, LeaseOutcome::Granted { .. })));
    let c = m.eviction_counts();
    assert!(c.evicted > 0 && c.rejected > 0 && c.oversized > 0 && c.expired > 0, "{c:?}");
    assert_eq!(c.for_space(), m.evictions(), "{c:?}");
}

/// An entry too large for its shard is not kept, but a version it carries still becomes the
/// key's version floor, even over an unversioned value: an older version cannot be written after.
#[test]
fn an_oversized_versioned_fill_still_sets_the_version_floor() {
    let m = store(1_000, 4_096, 1);
    assert_eq!(m.apply(0, &fill_op("k", 10, 2_000, None)), StoreReply::Stored);
    assert_eq!(m.apply(0, &fill_op("k", 8_000, 2_000, Some(5))), StoreReply::Stored);
    let info = m.inspect(0, "k").expect("the version floor stays");
    assert_eq!((info.entry, info.version), (None, Some(5)));
    assert_eq!(
        m.apply(0, &fill_op("k", 10, 2_000, Some(4))),
        StoreReply::Rejected { reason: RejectReason::VersionNewer }
    );
    assert_eq!(m.apply(0, &fill_op("k", 10, 2_000, Some(5))), StoreReply::Stored);
}

/// `overhead_bytes` is the bookkeeping the store holds at its capacities: nothing for an idle
/// store, then the frequency sketch, the slab of nodes (and the policy's links, one per node),
/// one `(String, u64)` slot plus a control byte per map bucket, and the free list of slab
/// indices. The capacities are mirrored with the same std collections, so each growth step
/// shows alone.
#[test]
fn overhead_bytes_counts_the_sketch_slab_map_and_free_list_at_their_capacities() {
    use std::collections::HashMap;
    // One shard of 65 536 entries: its sketch holds 65 536 words.
    let m = store(65_536, 1 << 30, 1);
    assert_eq!(m.overhead_bytes(), 0, "an idle store holds nothing");
    m.apply(0, &fill_op("k0", 3, 2_000, None));
    let sketch = 65_536 * 8;
    let first = m.overhead_bytes();
    assert!((sketch..sketch + 4_096).contains(&first), "{first}");
    let mut map: HashMap<String, u64> = HashMap::new();
    let mut slab: Vec<[u8; 64]> = Vec::new();
    map.insert("k0".into(), 0);
    slab.push([0; 64]);
    let (mut map_steps, mut slab_steps) = (0, 0);
    for i in 1..40 {
        let before = (m.overhead_bytes(), map.capacity(), slab.capacity());
        let k = format!("k{i}");
        m.apply(0, &fill_op(&k, 3, 2_000, None));
        map.insert(k, 0);
        slab.push([0; 64]);
        let delta = m.overhead_bytes() as i64 - before.0 as i64;
        let (dmap, dslab) = ((map.capacity() - before.1) as i64, (slab.capacity() - before.2) as i64);
        match (dmap, dslab) {
            (0, 0) => assert_eq!(delta, 0, "fill {i}: no capacity moved"),
            (d, 0) => {
                assert_eq!(delta, d * (std::mem::size_of::<(String, u64)>() as i64 + 1), "fill {i}: map slots");
                map_steps += 1;
            }
            (0, d) => {
                // A node holds at least its key (a String) and three u64 times.
                assert!(delta >= d * 48, "fill {i}: {delta} for {d} nodes");
                assert!(delta <= d * 1_024, "fill {i}: {delta} for {d} nodes");
                slab_steps += 1;
            }
            _ => {}
        }
    }
    assert!(map_steps >= 2 && slab_steps >= 2, "{map_steps} {slab_steps}");
    // Deleting puts the slot on the free list (the slab and the map keep their capacity).
    let before = m.overhead_bytes();
    m.apply(0, &StoreOp::Invalidate { key: "k3".into(), mode: InvalidateMode::Delete });
    let mut free: Vec<usize> = Vec::new();
    free.push(3);
    assert_eq!(m.overhead_bytes() - before, free.capacity() * std::mem::size_of::<usize>());
}

/// `max_bytes` bounds the entries as well as `max_entries`: each slot weighs its share of the
/// byte budget, so small values in a byte-bound store stop at the bytes, not at the count.
#[test]
fn entries_never_hold_more_than_max_bytes() {
    let m = store(1_000, 10_000, 1);
    for i in 0..500 {
        assert_eq!(m.apply(0, &fill_op(&format!("k{i}"), 40, 2_000, None)), StoreReply::Stored);
        assert!(m.bytes() <= 10_000, "after {i}: {} bytes", m.bytes());
    }
    assert!(m.len() >= 40 && m.len() < 100, "{} entries of ~150 bytes in 10 000", m.len());
}

/// Generation counters are charged against `max_bytes`: in a full store, entries make room for
/// new counters, so entries and counters together stay within the budget.
#[test]
fn entries_make_room_for_generation_counters_within_max_bytes() {
    use karlton_core::memory::gen_cost;
    let m = store(1_000, 10_000, 1);
    for i in 0..200 {
        m.apply(0, &fill_op(&format!("k{i}"), 40, 2_000, None));
    }
    let entries = m.len();
    for i in 0..20 {
        let g = format!("g:tag:{i:02}");
        assert!(matches!(m.apply(0, &StoreOp::Bump { gen_key: g, value: 5 }), StoreReply::Bumped { .. }));
        assert!(m.bytes() <= 10_000, "after counter {i}: {} bytes", m.bytes());
    }
    assert_eq!(m.generation_bytes(), 20 * gen_cost("g:tag:00"));
    assert!(m.len() < entries, "entries went for the counters");
}

/// The store's debug form shows how many slots it holds.
#[test]
fn a_store_debugs_as_its_slot_count() {
    let m = store(1_000, 1 << 20, 1);
    m.apply(0, &fill_op("a", 1, 2_000, None));
    m.apply(0, &fill_op("b", 1, 2_000, None));
    assert_eq!(format!("{m:?}"), "MemoryStore { len: 2 }");
}

/// Keys spread over the shards, so a sharded store holds its whole budget, not one shard's.
#[test]
fn keys_spread_over_the_shards_and_use_the_whole_budget() {
    // Two shards of 64 KiB each; 1 000 slots of ~150 bytes would fill both.
    let m = store(65_536, 128 << 10, 2);
    for i in 0..1_000 {
        m.apply(0, &fill_op(&format!("k{i}"), 40, 2_000, None));
    }
    assert!(m.bytes() <= 128 << 10);
    assert!(m.bytes() > 100 << 10, "{} bytes: one shard's budget is 64 KiB", m.bytes());
}

/// When the counter map is full, each round of dropping takes about an eighth of the counters,
/// chosen by a salt that changes every round (so a round does not look again at the keys the
/// last one spared), never just one.
#[test]
fn each_round_of_dropping_counters_takes_about_an_eighth_of_them() {
    // max_gens is 1 024 for a small store; 1 MiB leaves the byte share out of the way. A seed
    // with its low bits set: the salt must still differ from round to round.
    let m = MemoryStore::new(MemoryStoreConfig { max_entries: 100, max_bytes: 1 << 20, shards: 1, seed: 0xFF });
    let mut drops = Vec::new();
    let mut i = 0u64;
    while drops.len() < 4 {
        let before = m.generation_count();
        m.apply(0, &StoreOp::Bump { gen_key: format!("g:tag:{i}"), value: i + 1 });
        i += 1;
        let after = m.generation_count();
        if after <= before {
            drops.push(before + 1 - after);
        }
        assert!(i < 10_000);
    }
    assert!(drops.iter().all(|&d| (64..=256).contains(&d)), "counters dropped per round: {drops:?}");
}

/// The fast path's `peek_valid` serves an entry only while it is kept and stamped under exactly
/// the counters asked for: not past `expire_at` (even while a lease keeps the slot), not for a
/// different number of generation keys.
#[test]
fn peek_valid_serves_only_a_kept_entry_under_the_same_counters() {
    let m = store(1_000, 1 << 20, 1);
    assert_eq!(m.apply(0, &fill_op("k", 3, 100, None)), StoreReply::Stored);
    assert!(m.peek_valid(50, "k", &[]).is_some());
    assert!(m.peek_valid(50, "k", &["g:n".into()]).is_none(), "stamped under no counter");
    // A lease taken at 50 keeps the slot past expire_at, but not the entry.
    let StoreReply::Read(r) = m.apply(50, &read_op("k", LeaseMode::Force)) else { panic!() };
    assert!(matches!(r.lease, LeaseOutcome::Granted { .. }));
    assert!(m.inspect(120, "k").is_some(), "the lease keeps the slot");
    assert!(m.peek_valid(120, "k", &[]).is_none(), "the entry is gone at expire_at");
}

/// An entry that costs exactly its shard's byte budget fits (only a heavier one is refused).
#[test]
fn an_entry_exactly_the_size_of_its_shard_is_kept() {
    let op = fill_op("k", 100, 2_000, None);
    let StoreOp::Fill { entry, .. } = &op else { unreachable!() };
    // Key + encoded entry + 96 bytes of bookkeeping.
    let cost = 1 + entry.len() + 96;
    let m = store(10, cost, 1);
    assert_eq!(m.apply(0, &op), StoreReply::Stored);
    assert!(m.peek_valid(0, "k", &[]).is_some());
    assert_eq!(m.bytes(), cost);
    let m = store(10, cost - 1, 1);
    assert_eq!(m.apply(0, &op), StoreReply::Stored);
    assert!(m.peek_valid(0, "k", &[]).is_none());
}

/// Counters may take up to a quarter of their shard's bytes: counters adding up to exactly that
/// are all kept; one heavier than the whole quarter is not, and its bump still orphans what was
/// stamped under it (fail closed).
#[test]
fn a_counter_heavier_than_its_share_is_not_kept_but_still_orphans() {
    use karlton_core::memory::gen_cost;
    let m = store(100, 800, 1);
    for exact in ["g:exactly-12", "g:exactly-34"] {
        assert_eq!(gen_cost(exact), 100);
        assert!(matches!(m.apply(0, &StoreOp::Bump { gen_key: exact.into(), value: 5 }), StoreReply::Bumped { generation: 5 }));
    }
    assert_eq!((m.generation_count(), m.generation_bytes()), (2, 200), "two counters fill the share exactly");
    let one = store(100, 400, 1);
    assert!(matches!(one.apply(0, &StoreOp::Bump { gen_key: "g:exactly-12".into(), value: 5 }), StoreReply::Bumped { generation: 5 }));
    assert_eq!(one.generation_count(), 1, "one counter costing exactly the share is kept");
    // An entry stamped under a never-bumped heavy counter (0)...
    let heavy = &format!("g:{}", "h".repeat(111));
    assert_eq!(gen_cost(heavy), 201);
    let mut fill = fill_op("k", 3, 2_000, None);
    if let StoreOp::Fill { gen_keys, generations, .. } = &mut fill {
        *gen_keys = vec![heavy.into()];
        *generations = Some(vec![0]);
    }
    assert_eq!(m.apply(0, &fill), StoreReply::Stored);
    assert!(m.peek_valid(0, "k", &[heavy.into()]).is_some());
    // ...is orphaned by its bump, though the counter itself is not kept.
    let StoreReply::Bumped { generation } = m.apply(0, &StoreOp::Bump { gen_key: heavy.into(), value: 5 }) else { panic!() };
    assert_eq!((m.generation_count(), m.generation_bytes()), (2, 200));
    assert!(m.peek_valid(0, "k", &[heavy.into()]).is_none());
    // What it reads as is new each time, and never a value a client bumps to (those are < 2^53),
    // so it can never match a stamp from before.
    let mut seen = vec![0, generation];
    for _ in 0..3 {
        let StoreReply::Bumped { generation } = m.apply(0, &StoreOp::Bump { gen_key: heavy.into(), value: 5 }) else { panic!() };
        seen.push(generation);
    }
    assert!(seen[1..].iter().all(|&g| g >= 1 << 53), "{seen:?}");
    let mut distinct = seen.clone();
    distinct.dedup();
    assert_eq!(distinct, seen);
}
