//! # karlton demo
//!
//! One simulated service, run twice with the same workload: first behind a naive cache-aside
//! cache, then behind karlton. It prints both side by side.
//!
//! The workload:
//! - a slow **source** (a "database"): every load takes 40–60 ms, reads the row's version at the
//!   start of the query (as a real query sees a snapshot), and is counted;
//! - [`CLIENTS`] concurrent **clients** (tokio tasks) reading [`KEYS`] keys with a zipf skew (the
//!   top 20 get 60 % of reads and expire under load), pausing about a millisecond between requests;
//! - a **writer** that updates a row at the source and then deletes its cache entry
//!   ("update the DB, then delete the key" — the textbook cache-aside write). Half the updates
//!   are followed 20–80 ms later by a second one to the same row (a save, then a status change).
//!
//! karlton's store is wrapped in a tap ([`TappedStore`]) that checks every stored fill against
//! the source, so "stale fills cached" is measured on both sides, not assumed.
//!
//! The naive side is what most services hand-write: a `Mutex<HashMap>` with a TTL; on a miss the
//! caller loads and sets (no lease, no single-flight, no stale-while-revalidate, no jitter).
//! The karlton side is `karlton::Cache` over the embedded `MemoryStore` with a soft/hard TTL
//! (stale-while-revalidate), leases, jitter and in-process single-flight.
//!
//! "Stale serve" means: the value returned is older than a write that had *fully completed*
//! (source updated and cache invalidated) before the request began. Races with a write still in
//! progress are not counted against either side.

use karlton::core::Entry;
use karlton::{Cache, Key, MemoryStore, Policy, PolicySpec, Store, StoreFailure, StoreOp, StoreReply};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent clients.
const CLIENTS: usize = 200;
/// Keys (zipf: the top 20 get over half the reads; the tail is read a few dozen times a second).
const KEYS: usize = 100;
/// How long clients and the writer run.
const RUN: Duration = Duration::from_millis(6_000);
/// Source load time: uniform in this range, ms.
const LOAD_MS: (u64, u64) = (40, 60);
/// Pause between two writes (or pairs of writes).
const WRITE_EVERY: Duration = Duration::from_millis(150);
/// One write in this many is followed by a second write to the same row.
const PAIR_EVERY: u64 = 2;
/// Gap inside a pair of writes: uniform in this range, ms.
const PAIR_GAP_MS: (u64, u64) = (20, 80);
/// Fresh for this long (naive: the only TTL).
const SOFT_TTL_MS: u64 = 1_000;
/// karlton: servable (stale, while one caller refreshes) until this long.
const HARD_TTL_MS: u64 = 4_000;

/// A row of the source, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: usize,
    version: u64,
    name: String,
    price_cents: u64,
}

/// The slow source of truth.
struct Source {
    /// What the database holds now.
    versions: Vec<AtomicU64>,
    /// Versions whose write has completed (source updated and cache invalidated).
    published: Vec<AtomicU64>,
    calls: AtomicU64,
    inflight: AtomicU64,
    peak_inflight: AtomicU64,
    /// Loads whose result was already outdated when they returned.
    outdated: AtomicU64,
}

impl Source {
    fn new() -> Source {
        let zeros = || (0..KEYS).map(|_| AtomicU64::new(1)).collect();
        Source {
            versions: zeros(),
            published: zeros(),
            calls: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            peak_inflight: AtomicU64::new(0),
            outdated: AtomicU64::new(0),
        }
    }

    async fn load(&self, id: usize, rand: u64) -> Product {
        self.calls.fetch_add(1, Relaxed);
        let now = self.inflight.fetch_add(1, Relaxed) + 1;
        self.peak_inflight.fetch_max(now, Relaxed);
        let version = self.versions[id].load(Relaxed); // the query's snapshot
        let ms = LOAD_MS.0 + rand % (LOAD_MS.1 - LOAD_MS.0 + 1);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.inflight.fetch_sub(1, Relaxed);
        if self.versions[id].load(Relaxed) > version {
            self.outdated.fetch_add(1, Relaxed);
        }
        Product { id, version, name: format!("product #{id}"), price_cents: 1_000 + version }
    }
}

/// A cache in front of the source, as the service uses it.
trait Service: Send + Sync + 'static {
    /// Read-through.
    fn read(&self, id: usize, rand: u64) -> impl Future<Output = Product> + Send;
    /// Called by the writer right after it updated the source.
    fn invalidate(&self, id: usize) -> impl Future<Output = ()> + Send;
    /// The version each key's cache entry holds now (`None` = absent), without loading.
    fn cached(&self) -> impl Future<Output = Vec<Option<u64>>> + Send;
    /// (lease waits, fills refused) — karlton only.
    fn lease_stats(&self) -> Option<(u64, u64)>;
    /// Fills that stored a value older than a write that had already completed.
    fn stale_fills(&self) -> u64;
}

/// Naive cache-aside on a `Mutex<HashMap>`: get; on a miss load and set. One TTL, no jitter.
struct Naive {
    src: Arc<Source>,
    map: Mutex<HashMap<usize, (Product, Instant)>>,
    /// Sets that stored a value older than a write that had already completed.
    stale_fills: AtomicU64,
}

impl Service for Naive {
    async fn read(&self, id: usize, rand: u64) -> Product {
        if let Some((p, exp)) = self.map.lock().unwrap().get(&id)
            && *exp > Instant::now()
        {
            return p.clone();
        }
        let p = self.src.load(id, rand).await;
        let exp = Instant::now() + Duration::from_millis(SOFT_TTL_MS);
        if p.version < self.src.published[id].load(Relaxed) {
            self.stale_fills.fetch_add(1, Relaxed);
        }
        self.map.lock().unwrap().insert(id, (p.clone(), exp));
        p
    }
    async fn invalidate(&self, id: usize) {
        self.map.lock().unwrap().remove(&id);
    }
    async fn cached(&self) -> Vec<Option<u64>> {
        let m = self.map.lock().unwrap();
        let now = Instant::now();
        (0..KEYS).map(|id| m.get(&id).filter(|(_, exp)| *exp > now).map(|(p, _)| p.version)).collect()
    }
    fn lease_stats(&self) -> Option<(u64, u64)> {
        None
    }
    fn stale_fills(&self) -> u64 {
        self.stale_fills.load(Relaxed)
    }
}

/// karlton: soft/hard TTL (stale-while-revalidate), leases, jitter, single-flight.
struct Karlton {
    src: Arc<Source>,
    cache: Cache<TappedStore>,
    keys: Vec<Key>,
}

impl Service for Karlton {
    async fn read(&self, id: usize, rand: u64) -> Product {
        let src = self.src.clone();
        let loader = move || async move { Ok::<_, Infallible>(Some(src.load(id, rand).await)) };
        match self.cache.get_or_load(&self.keys[id], loader).await {
            Ok(Some(p)) => p,
            Ok(None) => unreachable!("the loader never says not-found"),
            Err(e) => panic!("karlton get_or_load failed: {e}"),
        }
    }
    async fn invalidate(&self, id: usize) {
        self.cache.invalidate(&self.keys[id]).await.expect("memory store never fails");
    }
    async fn cached(&self) -> Vec<Option<u64>> {
        let mut out = Vec::with_capacity(KEYS);
        for k in &self.keys {
            let p: Option<Product> = self.cache.get(k).await.expect("memory store never fails");
            out.push(p.map(|p| p.version));
        }
        out
    }
    fn lease_stats(&self) -> Option<(u64, u64)> {
        let s = self.cache.stats();
        Some((s.lease_waits, s.fills_rejected))
    }
    fn stale_fills(&self) -> u64 {
        self.cache.store().stale_fills.load(Relaxed)
    }
}

/// The embedded memory store with a tap on fills, so the demo can count stale fills that karlton
/// let through (there should be none): it decodes each stored entry and compares its version
/// with the source's completed writes. Reads pass straight through.
struct TappedStore {
    inner: MemoryStore,
    src: Arc<Source>,
    ids: HashMap<String, usize>,
    stale_fills: AtomicU64,
}

impl TappedStore {
    fn run(&self, op: &StoreOp) -> Result<StoreReply, StoreFailure> {
        let StoreOp::Fill { key, entry, .. } = op else {
            return self.inner.execute_now(op).expect("the memory store is synchronous");
        };
        let done_before = self.ids.get(key).map(|&id| self.src.published[id].load(Relaxed));
        let r = self.inner.execute_now(op).expect("the memory store is synchronous");
        if let (Ok(StoreReply::Stored), Some(done_before)) = (&r, done_before)
            && let Ok(e) = Entry::decode(entry)
            && let Ok(p) = serde_json::from_slice::<Product>(&e.value)
            && p.version < done_before
        {
            self.stale_fills.fetch_add(1, Relaxed);
        }
        r
    }
}

impl Store for TappedStore {
    fn execute(&self, op: StoreOp) -> impl Future<Output = Result<StoreReply, StoreFailure>> + Send {
        std::future::ready(self.run(&op))
    }
    fn execute_now(&self, op: &StoreOp) -> Option<Result<StoreReply, StoreFailure>> {
        Some(self.run(op))
    }
}

/// xorshift64*: each task has its own, so no shared RNG.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Zipf(s = 1) over the keys: key 0 gets ~17 % of reads, the top 20 ~61 %, key 199 ~0.09 %.
struct Zipf(Vec<u64>);
impl Zipf {
    fn new() -> Zipf {
        let w: Vec<f64> = (1..=KEYS).map(|i| 1.0 / i as f64).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        Zipf(w.iter().map(|x| {
            acc += x / total;
            (acc * u32::MAX as f64) as u64
        }).collect())
    }
    fn pick(&self, r: u64) -> usize {
        let x = r >> 32;
        self.0.partition_point(|&c| c <= x).min(KEYS - 1)
    }
}

/// What one run measured.
struct Report {
    requests: u64,
    loads: u64,
    peak_loads: u64,
    outdated_loads: u64,
    writes: u64,
    lat_ns: Vec<u64>,
    stale_serves: u64,
    stale_left: usize,
    stale_fills: u64,
    lease: Option<(u64, u64)>,
}

impl Report {
    fn slow(&self) -> u64 {
        (self.lat_ns.len() - self.lat_ns.partition_point(|&ns| ns <= 10_000_000)) as u64
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat_ns.is_empty() {
            return 0.0;
        }
        let i = ((self.lat_ns.len() as f64 * p).ceil() as usize).clamp(1, self.lat_ns.len()) - 1;
        self.lat_ns[i] as f64 / 1e6
    }
}

/// Progress on stderr: one line redrawn in place on a terminal, a plain line a second otherwise.
struct Progress {
    tty: bool,
    last_plain: Option<Instant>,
}

impl Progress {
    fn draw(&mut self, label: &str, elapsed: Duration, requests: u64, loads: u64) {
        let total = RUN.as_secs_f64();
        let frac = (elapsed.as_secs_f64() / total).min(1.0);
        let mut err = std::io::stderr().lock();
        if self.tty {
            const W: usize = 30;
            let full = (frac * W as f64).round() as usize;
            let _ = write!(
                err,
                "\r\x1b[2K  {label:<18} [{}{}] {:>4.1}/{:.1} s  {:>9} requests  {:>6} source loads",
                "#".repeat(full),
                ".".repeat(W - full),
                elapsed.as_secs_f64().min(total),
                total,
                group(requests),
                group(loads),
            );
            let _ = err.flush();
        } else if self.last_plain.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.last_plain = Some(Instant::now());
            let _ = writeln!(
                err,
                "  {label}: {:>3.0}%  {} requests, {} source loads",
                frac * 100.0,
                group(requests),
                group(loads)
            );
        }
    }
    fn done(&mut self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
        self.last_plain = None;
    }
}

async fn run<S: Service>(label: &str, svc: Arc<S>, src: Arc<Source>, progress: &mut Progress, seed: u64) -> Report {
    let zipf = Arc::new(Zipf::new());
    let stop_writer = Arc::new(AtomicBool::new(false));
    let stop_readers = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let start = Instant::now();

    let mut readers = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let (svc, src, zipf, stop, requests) = (svc.clone(), src.clone(), zipf.clone(), stop_readers.clone(), requests.clone());
        let mut rng = Rng(seed ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(8_192);
            let mut stale = 0u64;
            // Spread the clients' first requests over a few ms, as real traffic would be.
            tokio::time::sleep(Duration::from_micros(rng.next() % 5_000)).await;
            while !stop.load(Relaxed) {
                let id = zipf.pick(rng.next());
                let done_before = src.published[id].load(Relaxed);
                let t = Instant::now();
                let p = svc.read(id, rng.next()).await;
                lat.push(t.elapsed().as_nanos() as u64);
                if p.version < done_before {
                    stale += 1;
                }
                requests.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (lat, stale)
        }));
    }

    let writer = {
        let (svc, src, stop) = (svc.clone(), src.clone(), stop_writer.clone());
        let mut rng = Rng(seed ^ 0xD1B5_4A32_D192_ED03);
        tokio::spawn(async move {
            let mut writes = 0u64;
            let write = async |id: usize| {
                let v = src.versions[id].fetch_add(1, Relaxed) + 1; // UPDATE ... (the source)
                svc.invalidate(id).await; // then delete the cache entry
                src.published[id].fetch_max(v, Relaxed);
            };
            while !stop.load(Relaxed) {
                tokio::time::sleep(WRITE_EVERY).await;
                let id = (rng.next() % KEYS as u64) as usize;
                write(id).await;
                writes += 1;
                if rng.next().is_multiple_of(PAIR_EVERY) {
                    let gap = PAIR_GAP_MS.0 + rng.next() % (PAIR_GAP_MS.1 - PAIR_GAP_MS.0 + 1);
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                    write(id).await;
                    writes += 1;
                }
            }
            writes
        })
    };

    loop {
        let elapsed = start.elapsed();
        progress.draw(label, elapsed, requests.load(Relaxed), src.calls.load(Relaxed));
        if elapsed >= RUN {
            // Writer and clients stop together; every in-flight load then lands and the cache is
            // checked against the source (C1).
            stop_writer.store(true, Relaxed);
            stop_readers.store(true, Relaxed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes = writer.await.expect("writer");
    let mut lat_ns = Vec::new();
    let mut stale_serves = 0;
    for r in readers {
        let (l, s) = r.await.expect("client");
        lat_ns.extend(l);
        stale_serves += s;
    }
    progress.done();
    lat_ns.sort_unstable();
    // Background refreshes are not awaited by any client: give them time to land.
    tokio::time::sleep(Duration::from_millis(LOAD_MS.1 + 40)).await;
    let lease = svc.lease_stats();
    // C1: writers stopped and every load landed; the cache must hold nothing older than the source.
    let stale_left = svc
        .cached()
        .await
        .iter()
        .enumerate()
        .filter(|(id, v)| v.is_some_and(|v| v != src.versions[*id].load(Relaxed)))
        .count();
    Report {
        requests: requests.load(Relaxed),
        loads: src.calls.load(Relaxed),
        peak_loads: src.peak_inflight.load(Relaxed),
        outdated_loads: src.outdated.load(Relaxed),
        writes,
        lat_ns,
        stale_serves,
        stale_left,
        stale_fills: svc.stale_fills(),
        lease,
    }
}

/// 1234567 -> "1,234,567".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(x: f64) -> String {
    if x < 0.01 {
        format!("{:.1} µs", x * 1000.0)
    } else if x < 1.0 {
        format!("{:.0} µs", x * 1000.0)
    } else {
        format!("{x:.1} ms")
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let seed = std::env::var("KARLTON_DEMO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_CAFE_F00D_u64);
    let mut progress = Progress { tty: std::io::stderr().is_terminal(), last_plain: None };

    println!("karlton demo: {CLIENTS} clients, {KEYS} keys (zipf: the top 20 get 60% of reads), a source that takes {}-{} ms per load,", LOAD_MS.0, LOAD_MS.1);
    println!(
        "a writer updating the source then deleting the cache key ~{:.0}x/s; TTL {:.0} s; {:.1} s per run.\n",
        (1.0 + 1.0 / PAIR_EVERY as f64)
            / (WRITE_EVERY.as_secs_f64() + (PAIR_GAP_MS.0 + PAIR_GAP_MS.1) as f64 / 2000.0 / PAIR_EVERY as f64),
        SOFT_TTL_MS as f64 / 1000.0,
        RUN.as_secs_f64()
    );

    let src = Arc::new(Source::new());
    let naive = Arc::new(Naive { src: src.clone(), map: Mutex::new(HashMap::new()), stale_fills: AtomicU64::new(0) });
    let a = run("naive cache-aside", naive, src, &mut progress, seed).await;

    let src = Arc::new(Source::new());
    let policy = Policy::new(PolicySpec {
        soft_ttl_ms: SOFT_TTL_MS,
        hard_ttl_ms: Some(HARD_TTL_MS),
        jitter: 0.2,
        lease_ttl_ms: 2_000,
        lock_wait_ms: 2_000,
        ..Default::default()
    })
    .expect("valid policy");
    let keys: Vec<Key> = (0..KEYS).map(|i| Key::new("product").expect("namespace").segment(&i.to_string())).collect();
    let ids = keys.iter().enumerate().map(|(i, k)| (k.build(), i)).collect();
    let store = TappedStore { inner: MemoryStore::default(), src: src.clone(), ids, stale_fills: AtomicU64::new(0) };
    let cache = Cache::new(store, policy);
    let karlton = Arc::new(Karlton { src: src.clone(), cache, keys });
    let b = run("karlton", karlton, src, &mut progress, seed).await;

    print_table(&a, &b);
}

fn print_table(a: &Report, b: &Report) {
    let pct = |n: u64, of: u64| if of == 0 { String::new() } else { format!(" ({:.2}%)", n as f64 * 100.0 / of as f64) };
    let rows: Vec<(&str, String, String)> = vec![
        ("requests served", group(a.requests), group(b.requests)),
        ("source loads (~50 ms each)", group(a.loads), group(b.loads)),
        ("peak concurrent loads", group(a.peak_loads), group(b.peak_loads)),
        ("latency p50", ms(a.pct(0.50)), ms(b.pct(0.50))),
        ("latency p99", ms(a.pct(0.99)), ms(b.pct(0.99))),
        ("latency p99.9", ms(a.pct(0.999)), ms(b.pct(0.999))),
        ("latency max", ms(a.pct(1.0)), ms(b.pct(1.0))),
        ("requests slower than 10 ms", format!("{}{}", group(a.slow()), pct(a.slow(), a.requests)), format!("{}{}", group(b.slow()), pct(b.slow(), b.requests))),
        ("writes (update + delete)", group(a.writes), group(b.writes)),
        ("stale serves", format!("{}{}", group(a.stale_serves), pct(a.stale_serves, a.requests)), format!("{}{}", group(b.stale_serves), pct(b.stale_serves, b.requests))),
        ("loads outdated by a write (race)", group(a.outdated_loads), group(b.outdated_loads)),
        ("  ...cached after the delete", group(a.stale_fills), group(b.stale_fills)),
        ("  ...refused by the store", "- (no leases)".into(), b.lease.map_or("-".into(), |l| group(l.1))),
        ("stale entries left (C1)", format!("{} of {KEYS}", a.stale_left), format!("{} of {KEYS}", b.stale_left)),
        ("lease waits", "- (no leases)".into(), b.lease.map_or("-".into(), |l| group(l.0))),
    ];
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max("naive cache-aside".len());
    println!("{:<w0$}   {:>w1$}   {:>12}", "", "naive cache-aside", "karlton");
    println!("{}", "-".repeat(w0 + w1 + 18));
    for (name, x, y) in &rows {
        println!("{name:<w0$}   {x:>w1$}   {y:>12}");
    }
    let times = |x: u64, y: u64| if y == 0 { "far".to_string() } else { format!("{:.0}x", x as f64 / y as f64) };
    println!();
    println!(
        "What it means: naive cache-aside let every client that missed query the source itself ({} the loads, up to {} at once),",
        times(a.loads, b.loads),
        a.peak_loads
    );
    println!(
        "so {:.1}% of requests waited a full load; and it cached {} values a writer had already replaced (seed 003's race), served stale {} times.",
        a.slow() as f64 * 100.0 / a.requests.max(1) as f64,
        group(a.stale_fills),
        group(a.stale_serves)
    );
    println!(
        "karlton let one caller per key load (a lease) while the rest got the previous value, and its store refused the {} fills an invalidation had made stale: {} stale serves.",
        b.lease.map_or(0, |l| l.1),
        group(b.stale_serves)
    );
}
