//! Core benchmarks (criterion). Figures and how to read them: BENCHMARKS.md, "Core (Rust)".
//!
//! ```sh
//! cargo bench -p karlton --bench core_bench -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Groups:
//! - `decide`: `freshness::decide_raw` on a fresh entry (XFetch off, and on with β = 1).
//! - `key`: build a key with 3 segments; build a key with a canonical params hash.
//! - `entry`: encode + decode an entry holding a 1 KB value.
//! - `get_or_load_hit`: `Cache::get_or_load` answered by a fresh entry in the memory store, on a
//!   tokio current-thread runtime (1 thread), and with 2 OS threads hammering the same `Cache`
//!   (reported as wall time / total ops, i.e. the inverse of aggregate throughput).
//! - `baseline`: the same hit on a plain `Mutex<HashMap<String, Vec<u8>>>` (get + clone, and
//!   get + clone + the same JSON decode), for ratios.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use karlton::core::entry::codec;
use karlton::core::{Entry, decide_raw};
use karlton::{Cache, Key, MemoryStore, Policy, PolicySpec};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The value the get_or_load benches cache: a short string (JSON `"..."`, 34 bytes).
const VALUE: &str = "Ada Lovelace <ada@example.invalid>";

fn decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    let now = 1_700_000_000_000u64;
    let plain = Policy::new(PolicySpec { soft_ttl_ms: 60_000, hard_ttl_ms: Some(300_000), ..Default::default() }).unwrap();
    let xfetch = Policy::new(PolicySpec {
        soft_ttl_ms: 60_000,
        hard_ttl_ms: Some(300_000),
        early_refresh: 1.0,
        ..Default::default()
    })
    .unwrap();
    let mut rand = 0x9E37_79B9_7F4A_7C15u64;
    g.bench_function("fresh", |b| {
        b.iter(|| {
            rand = rand.wrapping_add(0x9E37_79B9_7F4A_7C15);
            decide_raw(black_box(now), black_box(now + 30_000), black_box(now + 270_000), black_box(50), &plain, rand)
        })
    });
    g.bench_function("fresh_xfetch", |b| {
        b.iter(|| {
            rand = rand.wrapping_add(0x9E37_79B9_7F4A_7C15);
            decide_raw(black_box(now), black_box(now + 30_000), black_box(now + 270_000), black_box(50), &xfetch, rand)
        })
    });
    g.finish();
}

fn key(c: &mut Criterion) {
    let mut g = c.benchmark_group("key");
    g.bench_function("3_segments", |b| {
        b.iter(|| {
            Key::new(black_box("user"))
                .unwrap()
                .segment(black_box("42"))
                .segment(black_box("orders"))
                .segment(black_box("2024-06"))
                .build()
        })
    });
    let params = serde_json::json!({
        "q": "caching policy engine",
        "page": 2,
        "filters": {"lang": ["rust", "python"], "min_stars": 100},
        "sort": "relevance"
    });
    g.bench_function("params_hash", |b| {
        b.iter(|| Key::new(black_box("search")).unwrap().params(black_box(&params)).unwrap().build())
    });
    g.finish();
}

fn entry(c: &mut Criterion) {
    let mut g = c.benchmark_group("entry");
    let e = Entry {
        value: (0..1024u32).map(|i| (i * 31 % 251) as u8).collect(),
        codec: codec::JSON,
        version: Some(7),
        generations: vec![0x1234_5678],
        soft_at: 1_700_000_060_000,
        hard_at: 1_700_000_300_000,
        load_ms: 42,
        negative: false,
        tags: Vec::new(),
    };
    g.throughput(Throughput::Bytes(1024));
    g.bench_function("encode_decode_1k", |b| {
        b.iter(|| {
            let bytes = black_box(&e).encode();
            Entry::decode(black_box(&bytes)).unwrap()
        })
    });
    g.finish();
}

fn hit_cache() -> (Cache<MemoryStore>, Key) {
    let policy = Policy::new(PolicySpec { soft_ttl_ms: 3_600_000, hard_ttl_ms: Some(7_200_000), ..Default::default() }).unwrap();
    let cache = Cache::new(MemoryStore::default(), policy);
    let key = Key::new("user").unwrap().segment("42");
    (cache, key)
}

async fn hit(cache: &Cache<MemoryStore>, key: &Key) -> String {
    cache
        .get_or_load(key, || async { Ok::<_, Infallible>(Some(VALUE.to_string())) })
        .await
        .unwrap()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// `iters` operations split over `threads` OS threads (each with its own current-thread
/// runtime), all on one shared value; returns the wall time from a common start.
fn on_threads<T: Clone + Send + 'static>(
    threads: usize,
    iters: u64,
    shared: &T,
    op: impl Fn(&T) + Send + Sync + Copy,
) -> Duration {
    let per = iters.div_ceil(threads as u64);
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (shared, barrier) = (shared.clone(), &barrier);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..per {
                    op(&shared);
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed()
}

fn get_or_load_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("get_or_load_hit");
    let rt = current_thread();
    let (cache, key) = hit_cache();
    assert_eq!(rt.block_on(hit(&cache, &key)), VALUE); // fill once: every later call is a hit
    g.bench_function("memory_1_thread", |b| b.to_async(&rt).iter(|| hit(&cache, &key)));

    let shared = (cache.clone(), key.clone());
    g.bench_with_input(BenchmarkId::new("memory_threads", 2), &2usize, |b, &threads| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(threads as u64);
            let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (cache, key) = shared.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        let rt = current_thread();
                        rt.block_on(async {
                            barrier.wait();
                            for _ in 0..per {
                                black_box(hit(&cache, &key).await);
                            }
                        })
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            for h in handles {
                h.join().unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    let map: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::new(Mutex::new(HashMap::new()));
    let json = serde_json::to_vec(VALUE).unwrap();
    map.lock().unwrap().insert("user:42".to_string(), json);
    g.bench_function("mutex_hashmap_get_clone", |b| {
        b.iter(|| map.lock().unwrap().get(black_box("user:42")).cloned())
    });
    g.bench_function("mutex_hashmap_get_clone_json", |b| {
        b.iter(|| {
            let bytes = map.lock().unwrap().get(black_box("user:42")).cloned().unwrap();
            serde_json::from_slice::<String>(&bytes).unwrap()
        })
    });
    g.bench_with_input(BenchmarkId::new("mutex_hashmap_get_clone_threads", 2), &2usize, |b, &threads| {
        b.iter_custom(|iters| {
            on_threads(threads, iters, &map, |m| {
                black_box(m.lock().unwrap().get(black_box("user:42")).cloned());
            })
        })
    });
    g.finish();
}

/// Where a `get_or_load` hit's time goes: the clock read, the core's lock-free memory hit
/// (peek + entry view + freshness + count), and the JSON decode of the value.
fn hit_parts(c: &mut Criterion) {
    use karlton::Store;
    let mut g = c.benchmark_group("hit_parts");
    let rt = current_thread();
    let (cache, key) = hit_cache();
    assert_eq!(rt.block_on(hit(&cache, &key)), VALUE);
    let mem = cache.store().memory().unwrap();
    let coord = karlton::core::Coordinator::new(7, false);
    let (k, gen_keys, policy) = (key.build(), key.generation_keys().to_vec(), cache.policy().clone());
    g.bench_function("now_ms", |b| b.iter(karlton::now_ms));
    g.bench_function("core_memory_hit", |b| {
        b.iter(|| coord.counters().memory_hit(mem, karlton::now_ms(), &k, &gen_keys, &policy).unwrap())
    });
    let bytes = serde_json::to_vec(VALUE).unwrap();
    g.bench_function("json_decode_string", |b| b.iter(|| serde_json::from_slice::<String>(black_box(&bytes)).unwrap()));
    g.finish();
}

criterion_group!(benches, decide, key, entry, get_or_load_hit, hit_parts, baseline);
criterion_main!(benches);
