//! Benchmarks on loopback against a redis-server this binary starts:
//! fresh-hit throughput and latency vs a raw `GET` on the same connection setup, and a stampede
//! (200 callers in one process; 4 processes × 50) on an expired hot key with a 50 ms loader,
//! karlton vs naive cache-aside.
//!
//! `cargo run --release -p karlton-redis --features testing --bin karlton-redis-bench`

use karlton::{Cache, Key, Policy, PolicySpec};
use karlton_redis::RedisStore;
use karlton_redis::testing::RedisServer;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const LOAD_MS: u64 = 50;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn store(url: &str) -> RedisStore {
    RedisStore::from_client(redis::Client::open(url).unwrap(), Duration::from_secs(2)).await.unwrap()
}

async fn raw(url: &str) -> ConnectionManager {
    redis::Client::open(url).unwrap().get_connection_manager().await.unwrap()
}

fn policy() -> Policy {
    Policy::new(PolicySpec { soft_ttl_ms: 60_000, lease_ttl_ms: 5_000, ..Default::default() }).unwrap()
}

fn commands(url: &str) -> (u64, String) {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut c).unwrap();
    let mut total = 0;
    let mut parts = Vec::new();
    for l in info.lines() {
        if let Some(rest) = l.strip_prefix("cmdstat_") {
            let name = rest.split(':').next().unwrap();
            // Not the cache's: the bench's own INFO / CONFIG RESETSTAT, connection set-up.
            if matches!(name.split('|').next().unwrap(), "info" | "config" | "hello" | "client" | "ping" | "script") {
                continue;
            }
            let calls: u64 = rest.split("calls=").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
            total += calls;
            parts.push(format!("{name}={calls}"));
        }
    }
    (total, parts.join(" "))
}

fn reset_stats(url: &str) {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
}

/// One process's share of a stampede: `n` concurrent callers on `key`; returns latencies (ms).
async fn stampede(url: &str, naive: bool, n: usize, key: &str, start_at: u64) -> Vec<f64> {
    let cache = Cache::new(store(url).await, policy());
    let conn = raw(url).await;
    let wait = start_at.saturating_sub(karlton::now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (cache, mut conn, key, url) = (cache.clone(), conn.clone(), key.to_string(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let load = {
                let mut c = conn.clone();
                move || async move {
                    let _: u64 = c.incr("bench:loads", 1).await.map_err(|e| e.to_string())?;
                    tokio::time::sleep(Duration::from_millis(LOAD_MS)).await;
                    Ok::<_, String>(Some("the value".to_string()))
                }
            };
            if naive {
                let v: Option<String> = conn.get(&key).await.unwrap();
                if v.is_none() {
                    let v = load().await.unwrap().unwrap();
                    let _: () = conn.set_ex(&key, v, 60).await.unwrap();
                }
            } else {
                let k = Key::new("bench").unwrap().segment(&key);
                let v: Option<String> = cache.get_or_load(&k, load).await.unwrap();
                assert!(v.is_some());
            }
            let _ = url;
            t.elapsed().as_secs_f64() * 1e3
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn child_main(role: &str) {
    let url = std::env::var("BENCH_URL").unwrap();
    let key = std::env::var("BENCH_KEY").unwrap();
    let start: u64 = std::env::var("BENCH_START").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let lat = rt.block_on(stampede(&url, role == "naive", 50, &key, start));
    println!("{}", lat.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(","));
}

fn multi(url: &str, naive: bool, key: &str) -> Vec<f64> {
    let start = karlton::now_ms() + 800;
    let kids: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .env("BENCH_CHILD", if naive { "naive" } else { "karlton" })
                .env("BENCH_URL", url)
                .env("BENCH_KEY", key)
                .env("BENCH_START", start.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut all = Vec::new();
    for k in kids {
        let out = k.wait_with_output().unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        all.extend(s.trim().split(',').map(|x| x.parse::<f64>().unwrap()));
    }
    all
}

fn main() {
    if let Ok(role) = std::env::var("BENCH_CHILD") {
        return child_main(&role);
    }
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut report = String::new();
    rt.block_on(async {
        // ---- fresh hits ----
        let cache = Cache::new(store(&url).await, policy());
        let key = Key::new("bench").unwrap().segment("hit");
        let value = "v".repeat(100);
        let v2 = value.clone();
        let _: Option<String> = cache.get_or_load(&key, move || async move { Ok::<_, String>(Some(v2)) }).await.unwrap();
        let mut conn = raw(&url).await;
        let entry: Vec<u8> = {
            let mut c = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
            let raw: Vec<u8> = redis::cmd("GET").arg(key.build()).query(&mut c).unwrap();
            karlton_core::redis::parse_record(&raw).and_then(|r| r.entry).expect("a record with an entry").to_vec()
        };
        let _: () = conn.set("bench:raw", entry.as_slice()).await.unwrap();
        let n = 20_000;
        // Sequential latency.
        let (mut lk, mut lr) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n * 2 {
            let t = Instant::now();
            if i % 2 == 0 {
                let v: Option<String> = cache.get(&key).await.unwrap();
                assert!(v.is_some());
                lk.push(t.elapsed().as_secs_f64() * 1e6);
            } else {
                let v: Vec<u8> = conn.get("bench:raw").await.unwrap();
                assert!(!v.is_empty());
                lr.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        let (k50, k99, r50, r99) = (pct(&mut lk, 0.5), pct(&mut lk, 0.99), pct(&mut lr, 0.5), pct(&mut lr, 0.99));
        // Throughput: 64 concurrent callers on the multiplexed connection.
        let tput = |karlton: bool| {
            let (cache, conn, key) = (cache.clone(), conn.clone(), key.clone());
            async move {
                let done = Arc::new(AtomicU64::new(0));
                let t = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..64 {
                    let (cache, mut conn, key, done) = (cache.clone(), conn.clone(), key.clone(), done.clone());
                    tasks.push(tokio::spawn(async move {
                        while t.elapsed() < Duration::from_secs(3) {
                            if karlton {
                                let v: Option<String> = cache.get(&key).await.unwrap();
                                assert!(v.is_some());
                            } else {
                                let v: Vec<u8> = conn.get("bench:raw").await.unwrap();
                                assert!(!v.is_empty());
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
            }
        };
        reset_stats(&url);
        let tk = tput(true).await;
        let (hit_cmds, hit_parts) = commands(&url);
        let tr = tput(false).await;
        report += "### Fresh hits (one process, one multiplexed connection, loopback)\n\n";
        report += "| | karlton `get` (fast read: one TIME+MGET pipeline) | raw `GET` | ratio |\n|---|---|---|---|\n";
        report += &format!("| sequential p50 | {k50:.0} µs | {r50:.0} µs | {:.2}× |\n", r50 / k50);
        report += &format!("| sequential p99 | {k99:.0} µs | {r99:.0} µs | {:.2}× |\n", r99 / k99);
        report += &format!("| throughput, 64 concurrent callers | {tk:.0} ops/s | {tr:.0} ops/s | {:.2}× |\n", tk / tr);
        report += &format!("\nRedis commands during the karlton throughput run: {hit_parts} ({:.2} per hit).\n\n", hit_cmds as f64 / (tk * 3.0));

        // ---- stampede, one process ----
        report += &format!("### Stampede: expired hot key, {LOAD_MS} ms loader\n\n");
        report += "| scenario | loader calls | caller p50 | caller p99 | p99 / loader | Redis commands |\n|---|---|---|---|---|---|\n";
        for naive in [false, true] {
            let name = if naive { "naive cache-aside" } else { "karlton" };
            let mut c = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
            let _: () = redis::cmd("DEL").arg("bench:loads").query(&mut c).unwrap();
            reset_stats(&url);
            let key = format!("s1-{naive}");
            let mut lat = stampede(&url, naive, 200, &key, 0).await;
            let (cmds, parts) = commands(&url); // before the GET below, which is not the cache's
            let loads: u64 = redis::cmd("GET").arg("bench:loads").query(&mut c).unwrap();
            let cmds = cmds - loads; // minus the loader's own INCR
            let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
            report += &format!(
                "| {name}, 200 callers in 1 process | {loads} | {p50:.1} ms | {p99:.1} ms | {:.2}× | {cmds} ({parts}) |\n",
                p99 / LOAD_MS as f64
            );
        }
        for naive in [false, true] {
            let name = if naive { "naive cache-aside" } else { "karlton" };
            let mut c = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
            let _: () = redis::cmd("DEL").arg("bench:loads").query(&mut c).unwrap();
            reset_stats(&url);
            let key = format!("s4-{naive}");
            let url2 = url.clone();
            let mut lat = tokio::task::spawn_blocking(move || multi(&url2, naive, &key)).await.unwrap();
            let (cmds, parts) = commands(&url); // before the GET below, which is not the cache's
            let loads: u64 = redis::cmd("GET").arg("bench:loads").query(&mut c).unwrap();
            let cmds = cmds - loads;
            let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
            report += &format!(
                "| {name}, 4 processes × 50 | {loads} | {p50:.1} ms | {p99:.1} ms | {:.2}× | {cmds} ({parts}) |\n",
                p99 / LOAD_MS as f64
            );
        }
    });
    println!("{report}");
}
