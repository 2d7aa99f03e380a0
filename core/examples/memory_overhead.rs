//! Bookkeeping bytes per entry of the memory store (slab node, map slot, policy links, sketch),
//! for docs/eviction.md: `cargo run --release -p karlton-core --example memory_overhead`.

use karlton_core::store::{StoreOp, StoreReply};
use karlton_core::{Entry, MemoryStore, MemoryStoreConfig};

fn main() {
    for n in [1_000usize, 10_000, 100_000] {
        let store = MemoryStore::new(MemoryStoreConfig { max_entries: n, max_bytes: 1 << 40, ..MemoryStoreConfig::default() });
        let e = Entry { value: b"1".to_vec(), codec: 1, version: None, generations: vec![], soft_at: 1 << 40, hard_at: 1 << 40, load_ms: 1, negative: false, tags: vec![] };
        let bytes: karlton_core::store::Bytes = e.encode().into();
        for i in 0..n {
            let op = StoreOp::Fill {
                key: format!("bench:{i}"),
                entry: bytes.clone(),
                soft_at: 1 << 40,
                hard_at: 1 << 40,
                expire_at: 1 << 40,
                version: None,
                generations: None,
                gen_keys: vec![],
                token: None,
            };
            assert_eq!(store.apply(1, &op), StoreReply::Stored);
        }
        let over = store.overhead_bytes();
        println!(
            "{n:>7} entries, {} shards: bookkeeping {:.1} bytes/entry (besides key and entry bytes; charged flat {} bytes/entry against max_bytes)",
            store.shard_count(),
            over as f64 / store.len() as f64,
            96
        );
    }
}
