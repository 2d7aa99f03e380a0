//! Issue 11, item 4: the memory store's generation (namespace and tag) counters count in
//! `max_bytes`. Entries make room for counters up to `1 / GEN_SHARE` of each shard's bytes;
//! past that, counters are dropped, and a dropped counter fails closed (docs/eviction.md).

use karlton_core::entry::Entry;
use karlton_core::memory::{GEN_OVERHEAD, GEN_SHARE, MemoryStore, MemoryStoreConfig, gen_cost};
use karlton_core::store::{LeaseMode, StoreOp, StoreReply};

const NOW: u64 = 0;

fn store(max_entries: usize, max_bytes: usize, shards: usize) -> MemoryStore {
    MemoryStore::new(MemoryStoreConfig { max_entries, max_bytes, shards, seed: 1 })
}

/// Fill `key` with `len` value bytes, stamped with the generations `gen_keys` have now.
fn fill(m: &MemoryStore, key: &str, len: usize, gen_keys: &[&str]) {
    let gen_keys: Vec<String> = gen_keys.iter().map(|k| k.to_string()).collect();
    let StoreReply::Read(r) =
        m.apply(NOW, &StoreOp::Read { key: key.into(), gen_keys: gen_keys.clone(), lease: LeaseMode::None, lease_ttl_ms: 1 })
    else {
        panic!("read")
    };
    let e = Entry { value: vec![b'v'; len], soft_at: 1_000, hard_at: 2_000, generations: r.generations.clone(), ..Entry::default() };
    let op = StoreOp::Fill {
        key: key.into(),
        entry: e.encode().into(),
        soft_at: 1_000,
        hard_at: 2_000,
        expire_at: 2_000,
        version: None,
        generations: Some(r.generations),
        gen_keys,
        token: None,
    };
    assert_eq!(m.apply(NOW, &op), StoreReply::Stored);
}

fn bump(m: &MemoryStore, gen_key: &str, value: u64) -> u64 {
    match m.apply(NOW, &StoreOp::Bump { gen_key: gen_key.into(), value }) {
        StoreReply::Bumped { generation } => generation,
        r => panic!("bump answered {r:?}"),
    }
}

fn valid(m: &MemoryStore, key: &str, gen_keys: &[&str]) -> bool {
    let gen_keys: Vec<String> = gen_keys.iter().map(|k| k.to_string()).collect();
    m.peek_valid(NOW, key, &gen_keys).is_some()
}

#[test]
fn a_counter_is_charged_its_key_value_and_overhead_in_bytes() {
    let m = store(1_000, 1 << 20, 1);
    fill(&m, "ns:a", 10, &[]);
    let entries = m.bytes();
    assert_eq!(m.generation_bytes(), 0, "no counter before the first bump");
    bump(&m, "ns:!tag:t1", 5);
    assert_eq!(gen_cost("ns:!tag:t1"), "ns:!tag:t1".len() + 8 + GEN_OVERHEAD);
    assert_eq!(m.generation_bytes(), gen_cost("ns:!tag:t1"));
    assert_eq!(m.bytes(), entries + gen_cost("ns:!tag:t1"), "bytes() includes the counters");
    bump(&m, "ns:!tag:t1", 6);
    assert_eq!(m.generation_bytes(), gen_cost("ns:!tag:t1"), "a second bump of one counter costs nothing more");
    bump(&m, "ns:!gen", 7);
    assert_eq!(m.generation_bytes(), gen_cost("ns:!tag:t1") + gen_cost("ns:!gen"));
    assert_eq!(m.generation_count(), 2);
}

/// A full store, then a flood of distinct tag bumps: `bytes <= max_bytes` after every op, entries
/// give way to counters until counters hold their share, then counters are dropped.
#[test]
fn bytes_stay_within_max_bytes_under_a_flood_of_distinct_tags() {
    for shards in [1, 4] {
        let max_bytes = 256 << 10;
        let m = store(200_000, max_bytes, shards);
        let mut i = 0;
        while m.evictions() == 0 {
            fill(&m, &format!("ns:e{i}"), 200, &[]);
            assert!(m.bytes() <= max_bytes);
            i += 1;
        }
        let before = m.len();
        for t in 0..200_000u64 {
            bump(&m, &format!("ns:!tag:{t}"), t + 1);
            if t % 997 == 0 {
                assert!(m.bytes() <= max_bytes, "{shards} shards, tag {t}: {} bytes over {max_bytes}", m.bytes());
                assert!(m.generation_bytes() <= max_bytes / GEN_SHARE, "counters stay within their share");
            }
            if t % 20_000 == 0 {
                // Entries keep coming in between bumps.
                fill(&m, &format!("ns:late{t}"), 200, &[]);
            }
        }
        assert!(m.bytes() <= max_bytes);
        assert!(m.len() < before, "entries made room for the counters");
        assert!(m.len() > 0, "but not all of them: counters hold at most 1/{GEN_SHARE}");
        assert!(m.generation_count() < 200_000 / 10, "counters were dropped: {}", m.generation_count());
        assert!(m.generation_bytes() > max_bytes / GEN_SHARE / 2, "and the share is used");
    }
}

/// A counter dropped for bytes never reads as a value an entry was stamped with: neither its
/// bumped value nor the "never bumped" value of entries filled before its first bump.
#[test]
fn a_counter_dropped_for_bytes_never_revalidates_an_entry() {
    // max_entries high so the count bound (max_gens) is far away: bytes force the drops.
    let max_bytes = 64 << 10;
    let m = store(1_000_000, max_bytes, 1);
    fill(&m, "ns:before", 10, &["ns:!tag:old"]);
    bump(&m, "ns:!tag:old", 42);
    assert!(!valid(&m, "ns:before", &["ns:!tag:old"]), "orphaned by the bump");
    bump(&m, "ns:!tag:kept", 7);
    fill(&m, "ns:after", 10, &["ns:!tag:kept"]);
    assert!(valid(&m, "ns:after", &["ns:!tag:kept"]));
    let mut t = 0u64;
    while valid(&m, "ns:after", &["ns:!tag:kept"]) {
        bump(&m, &format!("ns:!tag:{t}"), t + 1);
        assert!(m.bytes() <= max_bytes);
        assert!(!valid(&m, "ns:before", &["ns:!tag:old"]), "tag {t}: a pre-bump entry came back");
        t += 1;
        assert!(t < 100_000, "the counter is dropped at some point");
    }
    assert!(m.generation_count() < t as usize, "counters were dropped for bytes, not count");
    assert!(m.inspect(NOW, "ns:after").is_some(), "the entry is still held: orphaned by the drop, not evicted");
    // More drops never bring either entry back.
    for u in t..t + 5_000 {
        bump(&m, &format!("ns:!tag:{u}"), u + 1);
        assert!(!valid(&m, "ns:before", &["ns:!tag:old"]));
        assert!(!valid(&m, "ns:after", &["ns:!tag:kept"]));
    }
    // A fill under the counter's current value is valid again.
    fill(&m, "ns:after", 10, &["ns:!tag:kept"]);
    assert!(valid(&m, "ns:after", &["ns:!tag:kept"]));
}

/// A counter too large for its whole share is not kept, and the bump still orphans what was
/// stamped under the counter (fail closed).
#[test]
fn a_counter_larger_than_its_share_is_not_kept_but_still_orphans() {
    let m = store(1_000, 4_096, 1);
    let key = format!("ns:!tag:{}", "x".repeat(4_096 / GEN_SHARE));
    fill(&m, "ns:a", 10, &[key.as_str()]);
    assert!(valid(&m, "ns:a", &[key.as_str()]));
    bump(&m, &key, 9);
    assert_eq!(m.generation_count(), 0);
    assert_eq!(m.generation_bytes(), 0);
    assert!(m.bytes() <= 4_096);
    assert!(!valid(&m, "ns:a", &[key.as_str()]), "the bump still orphans its entries");
}
