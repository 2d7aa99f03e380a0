//! Many OS processes, one key, one real redis-server. The test binary re-executes itself as a
//! child (`KARLTON_CHILD=<role>`, running only the `child` test) so every child is a separate
//! process with its own Cache, connection and in-process single-flight.
//!
//! - C3: 4 processes × 25 tasks on one hot expiring key → at most one load per lease window.
//! - C1: concurrent writers (update source + invalidate) and readers across 3 processes → after
//!   they stop, the entry is absent or equals the source.
//! - L3: SIGKILL the process holding the lease mid-load → another process takes over within
//!   lease_ttl + ε.
//! - seed 003: the reader/writer race forced across two processes → no stale entry.

use karlton::{Cache, Key, Policy, PolicySpec};
use karlton_redis::RedisStore;
use karlton_redis::testing::RedisServer;
use redis::AsyncCommands;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn key() -> Key {
    Key::new("hot").unwrap().segment("k")
}

fn spawn(role: &str, url: &str, extra: &[(&str, String)]) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1"]).env("KARLTON_CHILD", role).env("KARLTON_URL", url);
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn wait_all(children: Vec<Child>) {
    for mut c in children {
        assert!(c.wait().unwrap().success(), "child failed");
    }
}

fn ms() -> u64 {
    karlton::now_ms()
}

async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn cache(url: &str, spec: PolicySpec) -> Cache<RedisStore> {
    let store = RedisStore::from_client(redis::Client::open(url).unwrap(), Duration::from_secs(2)).await.unwrap();
    Cache::new(store, Policy::new(spec).unwrap())
}

async fn wait_flag(c: &mut redis::aio::MultiplexedConnection, flag: &str) {
    let t = Instant::now();
    while c.get::<_, Option<String>>(flag).await.unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(20), "flag {flag} never set");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const C3_SOFT: u64 = 300;

/// The child side: one role per process. Ignored in a normal run (it is not a test on its own: the
/// tests below spawn it with `--ignored` and a role); run without a role it fails.
#[test]
#[ignore = "a child process role, spawned by the other tests in this file"]
fn child() {
    let role = std::env::var("KARLTON_CHILD").expect("`child` runs only as a spawned child (KARLTON_CHILD=<role>)");
    let url = std::env::var("KARLTON_URL").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        match role.as_str() {
            "hammer" => {
                let spec = PolicySpec { soft_ttl_ms: C3_SOFT, hard_ttl_ms: Some(C3_SOFT * 3), lease_ttl_ms: 2_000, ..Default::default() };
                let c = cache(&url, spec).await;
                let until: u64 = std::env::var("UNTIL").unwrap().parse().unwrap();
                let mut tasks = Vec::new();
                for _ in 0..25 {
                    let (c, url) = (c.clone(), url.clone());
                    tasks.push(tokio::spawn(async move {
                        let r = conn(&url).await;
                        while ms() < until {
                            let mut r = r.clone();
                            let v: Option<u64> = c
                                .get_or_load(&key(), move || async move {
                                    let n: u64 = r.incr("test:loads", 1).await.map_err(|e| e.to_string())?;
                                    let _: () = r.rpush("test:load_starts", ms()).await.map_err(|e| e.to_string())?;
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    Ok::<_, String>(Some(n))
                                })
                                .await
                                .unwrap();
                            assert!(v.is_some());
                            tokio::time::sleep(Duration::from_millis(3)).await;
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            }
            "churn" => {
                // A long hard TTL: a stale fill that slipped past an invalidation would still be
                // there at the end, and the last reader's fill is there for the parent to check.
                let c = cache(&url, PolicySpec { soft_ttl_ms: 200, hard_ttl_ms: Some(60_000), lease_ttl_ms: 1_000, ..Default::default() }).await;
                let writers_until: u64 = std::env::var("UNTIL").unwrap().parse().unwrap();
                // Readers go on after the writers stop, so the last write is always loaded.
                let readers_until: u64 = std::env::var("READ_UNTIL").unwrap().parse().unwrap();
                let mut tasks = Vec::new();
                for w in 0..12 {
                    let (c, url) = (c.clone(), url.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut r = conn(&url).await;
                        let mut i = 0u64;
                        let until = if w < 2 { writers_until } else { readers_until };
                        while ms() < until {
                            i += 1;
                            if w < 2 {
                                let _: u64 = r.incr("test:source", 1).await.unwrap();
                                c.invalidate(&key()).await.unwrap();
                                tokio::time::sleep(Duration::from_millis(7)).await;
                            } else {
                                let r2 = r.clone();
                                let _: Option<u64> = c
                                    .get_or_load(&key(), move || async move {
                                        let mut r2 = r2;
                                        let v: Option<u64> = r2.get("test:source").await.map_err(|e| e.to_string())?;
                                        // Hold the read value a while so writers overtake it.
                                        tokio::time::sleep(Duration::from_millis(1 + (i % 15))).await;
                                        Ok::<_, String>(Some(v.unwrap_or(0)))
                                    })
                                    .await
                                    .unwrap();
                            }
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            }
            "holder" => {
                let c = cache(&url, PolicySpec { soft_ttl_ms: 60_000, lease_ttl_ms: 1_500, ..Default::default() }).await;
                let r = conn(&url).await;
                let _: Option<String> = c
                    .get_or_load(&key(), move || async move {
                        let mut r = r;
                        let _: () = r.set("test:holder_loading", ms()).await.unwrap();
                        tokio::time::sleep(Duration::from_secs(60)).await; // killed before this ends
                        Ok::<_, String>(Some("never".to_string()))
                    })
                    .await
                    .unwrap();
                unreachable!("the holder is killed mid-load");
            }
            "reader" => {
                let c = cache(&url, PolicySpec { soft_ttl_ms: 60_000, lease_ttl_ms: 10_000, ..Default::default() }).await;
                let r = conn(&url).await;
                let got: Option<String> = c
                    .get_or_load(&key(), move || async move {
                        let mut r = r;
                        let v: String = r.get("test:db").await.unwrap();
                        let _: () = r.set("test:reader_read", 1).await.unwrap();
                        wait_flag(&mut r, "test:writer_done").await;
                        Ok::<_, String>(Some(v)) // the old value, loaded before the write
                    })
                    .await
                    .unwrap();
                assert_eq!(got.as_deref(), Some("v1"), "the reader still returns what it loaded");
                let rejected = c.stats().fills_rejected;
                assert_eq!(rejected, 1, "its fill was refused");
            }
            "writer" => {
                let c = cache(&url, PolicySpec { soft_ttl_ms: 60_000, ..Default::default() }).await;
                let mut r = conn(&url).await;
                wait_flag(&mut r, "test:reader_read").await;
                let _: () = r.set("test:db", "v2").await.unwrap();
                c.invalidate(&key()).await.unwrap();
                let _: () = r.set("test:writer_done", 1).await.unwrap();
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn c3_one_load_per_lease_window_across_processes() {
    if std::env::var("KARLTON_CHILD").is_ok() {
        return;
    }
    let server = RedisServer::start();
    let dur = 3_000;
    let until = ms() + 500 + dur;
    let kids: Vec<Child> = (0..4).map(|_| spawn("hammer", &server.url(), &[("UNTIL", until.to_string())])).collect();
    wait_all(kids);
    let mut r = server.client();
    let loads: u64 = redis::cmd("GET").arg("test:loads").query(&mut r).unwrap();
    let starts: Vec<u64> = redis::cmd("LRANGE").arg("test:load_starts").arg(0).arg(-1).query(&mut r).unwrap();
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let min_gap = gaps.iter().copied().min().unwrap_or(u64::MAX);
    eprintln!("C3: 4 processes x 25 tasks for {dur} ms, soft_ttl {C3_SOFT} ms: {loads} loads, gaps {gaps:?}");
    // One load per refresh window: a fill makes the entry fresh for soft_ttl, so consecutive loads
    // start at least soft_ttl apart; no window ever sees two.
    assert!(min_gap >= C3_SOFT, "two loads within one window: {gaps:?}");
    assert!(loads <= dur / C3_SOFT + 3, "{loads} loads");
}

#[test]
fn c1_converges_after_writers_and_invalidations() {
    if std::env::var("KARLTON_CHILD").is_ok() {
        return;
    }
    let server = RedisServer::start();
    let until = ms() + 500 + 2_000;
    let extra = [("UNTIL", until.to_string()), ("READ_UNTIL", (until + 500).to_string())];
    let kids: Vec<Child> = (0..3).map(|_| spawn("churn", &server.url(), &extra)).collect();
    wait_all(kids);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = cache(&server.url(), PolicySpec { soft_ttl_ms: 200, hard_ttl_ms: Some(400), ..Default::default() }).await;
        let mut r = conn(&server.url()).await;
        let source: u64 = r.get("test:source").await.unwrap();
        let cached: Option<u64> = c.get(&key()).await.unwrap();
        eprintln!("C1: source {source}, cached {cached:?}");
        assert!(source > 50, "writers ran");
        // Readers kept loading for 500 ms after the last write and the entry lives 60 s: it must
        // be there and be the source (absent would mean nothing was checked).
        assert_eq!(cached, Some(source), "after the writers stopped the entry is the source");
    });
}

#[test]
fn l3_crashed_holder_is_taken_over() {
    if std::env::var("KARLTON_CHILD").is_ok() {
        return;
    }
    let server = RedisServer::start();
    let mut holder = spawn("holder", &server.url(), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut r = conn(&server.url()).await;
        wait_flag(&mut r, "test:holder_loading").await;
        let granted_before: u64 = r.get("test:holder_loading").await.unwrap();
        holder.kill().unwrap(); // SIGKILL
        holder.wait().unwrap();
        let killed = Instant::now();
        let spec = PolicySpec {
            soft_ttl_ms: 60_000,
            lease_ttl_ms: 1_500,
            lock_wait_ms: 5_000,
            on_lock_timeout: karlton::core::OnLockTimeout::Error,
            ..Default::default()
        };
        let c = cache(&server.url(), spec).await;
        let v: Option<String> = c.get_or_load(&key(), || async { Ok::<_, String>(Some("taken over".to_string())) }).await.unwrap();
        let took = killed.elapsed();
        assert_eq!(v.as_deref(), Some("taken over"));
        let since_grant = ms() - granted_before;
        eprintln!("L3: taken over {took:?} after SIGKILL ({since_grant} ms after the crashed holder's grant; lease_ttl 1500 ms)");
        assert!(since_grant <= 1_500 + 300, "takeover {since_grant} ms after grant");
        assert_eq!(c.get::<String>(&key()).await.unwrap().as_deref(), Some("taken over"), "the new holder filled");
    });
}

#[test]
fn seed_003_race_across_processes_leaves_no_stale_entry() {
    if std::env::var("KARLTON_CHILD").is_ok() {
        return;
    }
    let server = RedisServer::start();
    let _: () = redis::cmd("SET").arg("test:db").arg("v1").query(&mut server.client()).unwrap();
    let reader = spawn("reader", &server.url(), &[]);
    let writer = spawn("writer", &server.url(), &[]);
    wait_all(vec![reader, writer]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = cache(&server.url(), PolicySpec { soft_ttl_ms: 60_000, ..Default::default() }).await;
        let cached: Option<String> = c.get(&key()).await.unwrap();
        assert_eq!(cached, None, "the reader's old value was not cached");
        let v: Option<String> = c
            .get_or_load(&key(), || async { Ok::<_, String>(Some("v2".to_string())) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("v2"));
    });
}
