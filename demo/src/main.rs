//! # karlton demo
//!
//! One simulated service, run twice with the same workload: first behind a naive cache-aside
//! cache, then behind karlton. It prints both side by side.
//!
//! The workload:
//! - a slow **source** (a "database"): every load takes 40–60 ms, reads the row's version at the
//!   start of the query (as a real query sees a snapshot), and is counted;
//! - [`CLIENTS`] concurrent **clients** (tokio tasks) reading [`KEYS`] hot keys with a zipf-like
//!   skew, pausing about a millisecond between requests;
//! - a **writer** that updates a row at the source and then deletes its cache entry
//!   ("update the DB, then delete the key" — the textbook cache-aside write). Some updates come
//!   in pairs a few ms apart (a save, then a status change), as real writes often do.
//!
//! The naive side is what most services hand-write: a `Mutex<HashMap>` with a TTL; on a miss the
//! caller loads and sets (no lease, no single-flight, no stale-while-revalidate, no jitter).
//! The karlton side is `karlton::Cache` over the embedded `MemoryStore` with a soft/hard TTL
//! (stale-while-revalidate), leases, jitter and in-process single-flight.
//!
//! "Stale serve" means: the value returned is older than a write that had *fully completed*
//! (source updated and cache invalidated) before the request began. Races with a write still in
//! progress are not counted against either side.

use karlton::{Cache, Key, MemoryStore, Policy, PolicySpec};
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
/// Hot keys.
const KEYS: usize = 20;
/// How long clients and the writer run.
const RUN: Duration = Duration::from_millis(6_000);
/// After the writer stops, clients keep reading this long (every in-flight load lands), then the
/// cache is checked against the source (C1).
const SETTLE: Duration = Duration::from_millis(250);
/// Source load time: uniform in this range, ms.
const LOAD_MS: (u64, u64) = (40, 60);
/// Pause between two writes (or pairs of writes).
const WRITE_EVERY: Duration = Duration::from_millis(150);
/// One write in this many is followed by a second write to the same row.
const PAIR_EVERY: u64 = 2;
/// Gap inside a pair of writes.
const PAIR_GAP: Duration = Duration::from_millis(25);
/// Fresh for this long (naive: the only TTL).
const SOFT_TTL_MS: u64 = 1_000;
/// karlton: servable (stale, while one caller refreshes) until this long.
const HARD_TTL_MS: u64 = 3_000;

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
}

/// Naive cache-aside on a `Mutex<HashMap>`: get; on a miss load and set. One TTL, no jitter.
struct Naive {
    src: Arc<Source>,
    map: Mutex<HashMap<usize, (Product, Instant)>>,
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
}

/// karlton: soft/hard TTL (stale-while-revalidate), leases, jitter, single-flight.
struct Karlton {
    src: Arc<Source>,
    cache: Cache<MemoryStore>,
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

/// Zipf(s = 1) over the hot keys: key 0 gets ~28 % of reads, key 19 ~1.4 %.
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
        self.0.iter().position(|&c| x < c).unwrap_or(KEYS - 1)
    }
}

/// What one run measured.
struct Report {
    requests: u64,
    loads: u64,
    peak_loads: u64,
    outdated_loads: u64,
    writes: u64,
    lat_us: Vec<u32>,
    stale_serves: u64,
    stale_left: usize,
    lease: Option<(u64, u64)>,
    elapsed: Duration,
}

impl Report {
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        let i = ((self.lat_us.len() as f64 * p).ceil() as usize).clamp(1, self.lat_us.len()) - 1;
        self.lat_us[i] as f64 / 1000.0
    }
}

/// Progress on stderr: one line redrawn in place on a terminal, a plain line a second otherwise.
struct Progress {
    tty: bool,
    last_plain: Option<Instant>,
}

impl Progress {
    fn draw(&mut self, label: &str, elapsed: Duration, requests: u64, loads: u64) {
        let total = (RUN + SETTLE).as_secs_f64();
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
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
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
                if rng.next() % PAIR_EVERY == 0 {
                    tokio::time::sleep(PAIR_GAP).await;
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
            stop_writer.store(true, Relaxed);
        }
        if elapsed >= RUN + SETTLE {
            stop_readers.store(true, Relaxed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes = writer.await.expect("writer");
    let mut lat_us = Vec::new();
    let mut stale_serves = 0;
    for r in readers {
        let (l, s) = r.await.expect("client");
        lat_us.extend(l);
        stale_serves += s;
    }
    let elapsed = start.elapsed();
    progress.done();
    lat_us.sort_unstable();
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
        lat_us,
        stale_serves,
        stale_left,
        lease,
        elapsed,
    }
}

/// 1234567 -> "1,234,567".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(x: f64) -> String {
    if x < 1.0 { format!("{x:.2} ms") } else { format!("{x:.1} ms") }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let seed = std::env::var("KARLTON_DEMO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_CAFE_F00D_u64);
    let mut progress = Progress { tty: std::io::stderr().is_terminal(), last_plain: None };

    println!("karlton demo: {CLIENTS} clients, {KEYS} hot keys (zipf), a source that takes {}-{} ms per load,", LOAD_MS.0, LOAD_MS.1);
    println!(
        "a writer updating the source and deleting the cache key ~{}x/s; TTL {:.0} s; {:.1} s per run.\n",
        (1000.0 / WRITE_EVERY.as_millis() as f64 * (1.0 + 1.0 / PAIR_EVERY as f64)).round(),
        SOFT_TTL_MS as f64 / 1000.0,
        (RUN + SETTLE).as_secs_f64()
    );

    let src = Arc::new(Source::new());
    let naive = Arc::new(Naive { src: src.clone(), map: Mutex::new(HashMap::new()) });
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
    let cache = Cache::new(MemoryStore::default(), policy);
    let keys = (0..KEYS).map(|i| Key::new("product").expect("namespace").segment(&i.to_string())).collect();
    let karlton = Arc::new(Karlton { src: src.clone(), cache, keys });
    let b = run("karlton", karlton, src, &mut progress, seed).await;

    print_table(&a, &b);
}

fn print_table(a: &Report, b: &Report) {
    let rate = |r: &Report| r.requests as f64 / r.elapsed.as_secs_f64();
    let pct = |n: u64, of: u64| if of == 0 { String::new() } else { format!(" ({:.2}%)", n as f64 * 100.0 / of as f64) };
    let rows: Vec<(&str, String, String)> = vec![
        ("requests served", group(a.requests), group(b.requests)),
        ("throughput", format!("{}/s", group(rate(a) as u64)), format!("{}/s", group(rate(b) as u64))),
        ("source loads (50 ms each)", group(a.loads), group(b.loads)),
        ("peak concurrent loads", group(a.peak_loads), group(b.peak_loads)),
        ("latency p50", ms(a.pct(0.50)), ms(b.pct(0.50))),
        ("latency p99", ms(a.pct(0.99)), ms(b.pct(0.99))),
        ("latency p99.9", ms(a.pct(0.999)), ms(b.pct(0.999))),
        ("latency max", ms(a.pct(1.0)), ms(b.pct(1.0))),
        ("writes (update + delete)", group(a.writes), group(b.writes)),
        ("stale serves", format!("{}{}", group(a.stale_serves), pct(a.stale_serves, a.requests)), format!("{}{}", group(b.stale_serves), pct(b.stale_serves, b.requests))),
        ("outdated loads (race)", group(a.outdated_loads), group(b.outdated_loads)),
        ("  ...refused by the store", "0 (no leases)".into(), b.lease.map_or("-".into(), |l| group(l.1))),
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
    println!();
    println!(
        "Same clients, same source, same writes. Naive cache-aside let every client that missed hit the source ({}x the loads,",
        if b.loads > 0 { format!("{:.0}", a.loads as f64 / b.loads as f64) } else { "∞".into() }
    );
    println!("up to {} at once) and cached values the writer had already replaced (seed 003's race), serving them until the TTL ran out.", a.peak_loads);
    println!("karlton loads each key once per expiry (a lease), serves the old value while one caller refreshes, and refuses fills whose lease an invalidation revoked.");
}
