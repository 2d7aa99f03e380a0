//! Bookkeeping bytes per entry of the memory store (slab node, map slot, policy links, sketch),
//! and the heap a generation counter really takes against what it is charged, for
//! docs/eviction.md: `cargo run --release -p karlton-core --example memory_overhead`.

use karlton_core::memory::{GEN_OVERHEAD, gen_cost};
use karlton_core::store::{StoreOp, StoreReply};
use karlton_core::{Entry, MemoryStore, MemoryStoreConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live heap bytes as requested from the allocator (malloc's own rounding and headers not
/// included).
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: Counting = Counting;

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
    // Generation counters: heap per counter (map slot with growth slack, key allocation) vs
    // what each is charged against max_bytes (key + 8 + GEN_OVERHEAD).
    for n in [1_000usize, 100_000, 1_000_000] {
        let store = MemoryStore::new(MemoryStoreConfig { max_entries: 2 * n, max_bytes: 1 << 40, ..MemoryStoreConfig::default() });
        let keys: Vec<String> = (0..n).map(|i| format!("ns:!tag:{i}")).collect();
        let key_bytes: usize = keys.iter().map(|k| k.len()).sum();
        let before = LIVE.load(Ordering::Relaxed);
        for (i, k) in keys.iter().enumerate() {
            store.apply(1, &StoreOp::Bump { gen_key: k.clone(), value: i as u64 + 1 });
        }
        let heap = LIVE.load(Ordering::Relaxed) - before;
        let charged: usize = keys.iter().map(|k| gen_cost(k)).sum();
        assert_eq!(store.generation_bytes(), charged);
        println!(
            "{n:>7} counters: heap {:.1} bytes/counter besides key + 8 (charged {GEN_OVERHEAD}); all together {:.1} MiB heap, {:.1} MiB charged",
            (heap - key_bytes) as f64 / n as f64 - 8.0,
            heap as f64 / (1 << 20) as f64,
            charged as f64 / (1 << 20) as f64
        );
    }
}
