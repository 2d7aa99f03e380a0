//! Hit ratio of karlton's memory store (adaptive W-TinyLFU) against moka (W-TinyLFU, Rust port
//! of Caffeine's design) and plain LRU, on the same seeded traces, in one run.
//!
//! ```text
//! ./scripts/hit-ratio.sh                 # every trace, capacities 1k/10k/100k, 1.5 M requests
//! ./scripts/hit-ratio.sh --requests 500000 --capacities 1000,10000 --trace zipf-0.99
//! ```
//!
//! karlton is driven as its Cache drives the store: `peek_valid` (the fresh-hit fast path), and
//! on a miss `read` with a lease then `fill` with that token. moka is used as a user would:
//! `get`, then `insert` on a miss; `moka-synced` also runs `run_pending_tasks()` after each
//! insert (its buffers drained: its best case).

use karlton_core::store::{Bytes, LeaseMode, LeaseOutcome, StoreOp, StoreReply};
use karlton_core::{MemoryStore, MemoryStoreConfig};
use std::num::NonZeroUsize;
use std::time::Instant;

/// SplitMix64: the traces' only randomness (seeded, so every run sees the same requests).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf over ranks 0..n by inverse CDF (precomputed, binary search).
struct Zipf(Vec<f64>);
impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for r in 1..=n {
            acc += 1.0 / (r as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf(cdf)
    }
    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u) as u64
    }
}

/// Ranks are scrambled into key ids so popularity is not correlated with the id.
fn scramble(rank: u64, salt: u64) -> u64 {
    (rank ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 8
}

/// One request: a read of `key` (counted), or a write of a new key (not counted).
#[derive(Clone, Copy)]
enum Req {
    Read(u64),
    Write(u64),
}

const KEYS: usize = 1_000_000;

/// The traces. Each models a known access pattern:
/// - `zipf-S`: independent requests, Zipf(S) popularity over 1 M keys (web/object caches);
/// - `zipf-scan`: Zipf 0.99 plus, every 100 k requests, a scan of 50 k never-seen keys (a batch
///   job or crawler walking the keyspace);
/// - `loop-1.2x`, `loop-2x`: a loop over 1.2× / 2× the capacity (a periodic job; LRU's worst case);
/// - `shifting`: Zipf 0.99 whose hot set moves to fresh key ids every 250 k requests;
/// - `ycsb-d`: YCSB workload D ("read latest", Cooper et al., SoCC 2010; CoreWorkload
///   `requestdistribution=latest`): 95 % reads, 5 % inserts of new records; a read picks the
///   record `newest − Zipf(0.99)`, so recent inserts are the hottest. Inserts are cache writes.
fn trace(name: &str, cap: usize, n: usize, zipfs: &mut Vec<(u64, Zipf)>) -> Vec<Req> {
    let mut zipf = |s: f64| -> usize {
        let k = s.to_bits();
        if let Some(i) = zipfs.iter().position(|(b, _)| *b == k) {
            return i;
        }
        zipfs.push((k, Zipf::new(KEYS, s)));
        zipfs.len() - 1
    };
    let mut rng = Rng(0x6b61_726c_746f_6e00 ^ name.len() as u64);
    let mut out = Vec::with_capacity(n);
    match name {
        "zipf-0.8" | "zipf-0.99" | "zipf-1.2" => {
            let z = zipf(name[5..].parse().unwrap());
            for _ in 0..n {
                out.push(Req::Read(scramble(zipfs[z].1.sample(&mut rng), 0)));
            }
        }
        "zipf-scan" => {
            let z = zipf(0.99);
            let mut cold = 1u64 << 50;
            while out.len() < n {
                if out.len() % 100_000 == 0 && !out.is_empty() {
                    for _ in 0..50_000 {
                        cold += 1;
                        out.push(Req::Read(cold));
                    }
                }
                out.push(Req::Read(scramble(zipfs[z].1.sample(&mut rng), 0)));
            }
            out.truncate(n);
        }
        "loop-1.2x" | "loop-2x" => {
            let len = if name == "loop-2x" { cap * 2 } else { cap * 12 / 10 } as u64;
            for i in 0..n as u64 {
                out.push(Req::Read(scramble(i % len, 7)));
            }
        }
        "shifting" => {
            let z = zipf(0.99);
            for i in 0..n {
                let salt = (i / 250_000) as u64 * 0x1234_5678_9abc;
                out.push(Req::Read(scramble(zipfs[z].1.sample(&mut rng), salt)));
            }
        }
        "ycsb-d" => {
            let z = zipf(0.99);
            let mut newest = KEYS as u64;
            for _ in 0..n {
                if rng.unit() < 0.05 {
                    newest += 1;
                    out.push(Req::Write(scramble(newest, 3)));
                } else {
                    let back = zipfs[z].1.sample(&mut rng).min(newest);
                    out.push(Req::Read(scramble(newest - back, 3)));
                }
            }
        }
        other => panic!("unknown trace {other}"),
    }
    out
}

const TRACES: &[&str] = &["zipf-0.8", "zipf-0.99", "zipf-1.2", "zipf-scan", "loop-1.2x", "loop-2x", "shifting", "ycsb-d"];

trait Sim {
    /// A read: true on a hit (a miss loads and stores the value).
    fn read(&mut self, key: u64) -> bool;
    fn write(&mut self, key: u64);
}

struct Karlton {
    store: MemoryStore,
    now: u64,
    token: u64,
    value: Bytes,
}
impl Karlton {
    fn new(cap: usize) -> Karlton {
        let store = MemoryStore::new(MemoryStoreConfig { max_entries: cap, max_bytes: 1 << 40, seed: 1, ..MemoryStoreConfig::default() });
        Karlton { store, now: 1_000, token: 0, value: vec![b'v'; 16].into() }
    }
    fn fill(&mut self, key: String, token: Option<u64>) {
        let far = u64::MAX / 4;
        let op = StoreOp::Fill { key, entry: self.value.clone(), soft_at: far, hard_at: far, expire_at: far, version: None, generations: None, gen_keys: vec![], token };
        self.store.apply(self.now, &op);
    }
}
impl Sim for Karlton {
    fn read(&mut self, key: u64) -> bool {
        self.now += 1;
        let k = format!("bench:{key}");
        if self.store.peek_valid(self.now, &k, &[]).is_some() {
            return true;
        }
        self.token += 1;
        let t = self.token;
        let op = StoreOp::Read { key: k.clone(), gen_keys: vec![], lease: LeaseMode::IfNeeded, lease_ttl_ms: 60_000, token: t };
        if let StoreReply::Read(r) = self.store.apply(self.now, &op)
            && r.lease == (LeaseOutcome::Granted { token: t })
        {
            self.fill(k, Some(t));
        }
        false
    }
    fn write(&mut self, key: u64) {
        self.now += 1;
        self.fill(format!("bench:{key}"), None);
    }
}

struct Moka(moka::sync::Cache<String, u64>, bool);
impl Sim for Moka {
    fn read(&mut self, key: u64) -> bool {
        let k = format!("bench:{key}");
        if self.0.get(&k).is_some() {
            return true;
        }
        self.0.insert(k, key);
        if self.1 {
            self.0.run_pending_tasks();
        }
        false
    }
    fn write(&mut self, key: u64) {
        self.0.insert(format!("bench:{key}"), key);
        if self.1 {
            self.0.run_pending_tasks();
        }
    }
}

struct Lru(lru::LruCache<String, u64>);
impl Sim for Lru {
    fn read(&mut self, key: u64) -> bool {
        let k = format!("bench:{key}");
        if self.0.get(&k).is_some() {
            return true;
        }
        self.0.put(k, key);
        false
    }
    fn write(&mut self, key: u64) {
        self.0.put(format!("bench:{key}"), key);
    }
}

fn run(sim: &mut dyn Sim, reqs: &[Req]) -> (f64, f64) {
    let t = Instant::now();
    let (mut hits, mut reads) = (0u64, 0u64);
    for r in reqs {
        match *r {
            Req::Read(k) => {
                reads += 1;
                hits += u64::from(sim.read(k));
            }
            Req::Write(k) => sim.write(k),
        }
    }
    (100.0 * hits as f64 / reads.max(1) as f64, t.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let mut n: usize = arg("--requests").map_or(1_500_000, |s| s.parse().expect("--requests N"));
    if args.iter().any(|a| a == "--quick") {
        n = 200_000;
    }
    let caps: Vec<usize> = arg("--capacities").map_or(vec![1_000, 10_000, 100_000], |s| s.split(',').map(|c| c.parse().expect("--capacities")).collect());
    let only = arg("--trace");
    let skip_synced = args.iter().any(|a| a == "--no-synced");
    println!("# hit ratio, {n} requests per trace (reads only; ycsb-d writes are not counted)\n");
    println!("| trace | capacity | karlton | moka | moka-synced | lru | karlton − moka | karlton − moka-synced |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut zipfs = Vec::new();
    let mut worst = (f64::MAX, String::new());
    let mut times = Vec::new();
    for &name in TRACES.iter().filter(|t| only.as_deref().is_none_or(|o| o == **t)) {
        for &cap in &caps {
            let reqs = trace(name, cap, n, &mut zipfs);
            let (k, tk) = run(&mut Karlton::new(cap), &reqs);
            let (m, tm) = run(&mut Moka(moka::sync::Cache::new(cap as u64), false), &reqs);
            let (ms, tms) = if skip_synced { (f64::NAN, 0.0) } else { run(&mut Moka(moka::sync::Cache::new(cap as u64), true), &reqs) };
            let (l, tl) = run(&mut Lru(lru::LruCache::new(NonZeroUsize::new(cap).unwrap())), &reqs);
            println!("| {name} | {cap} | {k:.2} % | {m:.2} % | {ms:.2} % | {l:.2} % | {:+.2} | {:+.2} |", k - m, k - ms);
            if k - m < worst.0 {
                worst = (k - m, format!("{name}, {cap}"));
            }
            times.push(format!("{name}/{cap}: karlton {tk:.2} s, moka {tm:.2} s, moka-synced {tms:.2} s, lru {tl:.2} s"));
        }
    }
    println!("\nworst karlton − moka: {:+.2} points ({})", worst.0, worst.1);
    println!("\nwall time per cache (secondary; the machine is shared):");
    for t in times {
        println!("  {t}");
    }
}
