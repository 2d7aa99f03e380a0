//! Faults against a real redis-server: kill + restart, CLIENT PAUSE past the op timeout,
//! SCRIPT FLUSH, FLUSHALL, maxmemory with allkeys-lru, corrupt data; and the Cache over a Cluster.

use karlton::{Cache, Key, Policy, PolicySpec};
use karlton_redis::RedisStore;
use karlton_redis::testing::{RedisCluster, RedisServer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn policy(soft: u64) -> Policy {
    Policy::new(PolicySpec { soft_ttl_ms: soft, hard_ttl_ms: Some(soft * 2), lease_ttl_ms: 2_000, ..Default::default() }).unwrap()
}

async fn cache(server: &RedisServer, timeout_ms: u64) -> Cache<RedisStore> {
    let client = redis::Client::open(server.url()).unwrap();
    let store = RedisStore::from_client(client, Duration::from_millis(timeout_ms)).await.unwrap();
    Cache::new(store, policy(60_000))
}

/// get_or_load with a counting loader that returns `value` (one node or a cluster).
async fn gol<S: karlton::Store>(c: &Cache<S>, key: &Key, value: &str, loads: &Arc<AtomicU64>) -> String {
    let (v, l) = (value.to_string(), loads.clone());
    c.get_or_load(key, move || async move {
        l.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Some(v))
    })
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_server() {
    let mut server = RedisServer::start();
    let c = cache(&server, 200).await;
    let key = Key::new("f").unwrap().segment("k");
    let loads = Arc::new(AtomicU64::new(0));
    assert_eq!(gol(&c, &key, "a", &loads).await, "a");
    assert_eq!(gol(&c, &key, "a", &loads).await, "a");
    assert_eq!(loads.load(Ordering::SeqCst), 1, "second call is a hit");

    server.kill();
    // Down: answers from the loader, with in-process single-flight. The loader holds its flight
    // open until all 20 callers are in the coordinator (an explicit signal: `pending()` counts
    // the calls it holds; joiners wait on the flight without reading the store), so exactly one
    // load runs and 19 callers are answered by it. Without coalescing there are 20 loads.
    let t = Instant::now();
    let coalesced0 = c.stats().coalesced;
    let mut tasks = Vec::new();
    let slow_loads = Arc::new(AtomicU64::new(0));
    for _ in 0..20 {
        let (c, key, l) = (c.clone(), key.clone(), slow_loads.clone());
        tasks.push(tokio::spawn(async move {
            let c2 = c.clone();
            c.get_or_load(&key, move || async move {
                l.fetch_add(1, Ordering::SeqCst);
                let gate = Instant::now();
                while c2.pending().0 < 20 && gate.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok::<_, std::io::Error>(Some("down".to_string()))
            })
            .await
        }));
    }
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(30), t).await.expect("a caller hung while redis is down");
        assert_eq!(r.unwrap().unwrap(), Some("down".to_string()));
    }
    let down = t.elapsed();
    let n = slow_loads.load(Ordering::SeqCst);
    assert_eq!(n, 1, "in-process single-flight while the store is down: {n} loads for 20 callers");
    assert_eq!(c.stats().coalesced - coalesced0, 19, "19 callers joined the one flight");
    // One-sided and generous: the store being down must not make callers wait for it long.
    assert!(down < Duration::from_secs(8), "answers while redis is down took {down:?}");
    assert!(c.stats().store_errors > 0);

    server.restart();
    // Recovers without a new client: within a few seconds a fill lands and then hits.
    let t = Instant::now();
    loop {
        let before = loads.load(Ordering::SeqCst);
        assert_eq!(gol(&c, &key, "b", &loads).await, "b");
        let after_fill = loads.load(Ordering::SeqCst);
        assert_eq!(gol(&c, &key, "b", &loads).await, "b");
        if loads.load(Ordering::SeqCst) == after_fill && after_fill > before {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("kill/restart: 20 callers answered in {down:?} with {n} loads while down; recovered in {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pause_longer_than_timeout() {
    let server = RedisServer::start();
    let c = cache(&server, 100).await;
    let key = Key::new("p").unwrap().segment("k");
    let loads = Arc::new(AtomicU64::new(0));
    assert_eq!(gol(&c, &key, "a", &loads).await, "a");
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("ALL").query(&mut server.client()).unwrap();
    let t = Instant::now();
    let key2 = Key::new("p").unwrap().segment("k2");
    assert_eq!(gol(&c, &key2, "fallback", &loads).await, "fallback");
    let paused = t.elapsed();
    assert!(paused < Duration::from_millis(900), "paused call took {paused:?} (op timeout 100 ms)");
    assert!(c.store().stats().timeouts >= 1, "{:?}", c.store().stats());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let before = loads.load(Ordering::SeqCst);
    assert_eq!(gol(&c, &key, "a", &loads).await, "a");
    assert_eq!(loads.load(Ordering::SeqCst), before, "hit again after the pause");
    eprintln!("CLIENT PAUSE 1500 ms: call answered from the loader in {paused:?}");
}

#[tokio::test]
async fn script_flush_is_transparent() {
    let server = RedisServer::start();
    let c = cache(&server, 500).await;
    let key = Key::new("s").unwrap().segment("k");
    let loads = Arc::new(AtomicU64::new(0));
    assert_eq!(gol(&c, &key, "a", &loads).await, "a");
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut server.client()).unwrap();
    assert_eq!(gol(&c, &key, "a", &loads).await, "a");
    assert_eq!(loads.load(Ordering::SeqCst), 1, "still a hit after SCRIPT FLUSH");
    assert!(c.store().stats().noscript_reloads >= 1);
    assert_eq!(c.stats().store_errors, 0);
}

#[tokio::test]
async fn flushall_reads_as_miss() {
    let server = RedisServer::start();
    let c = cache(&server, 500).await;
    let key = Key::new("x").unwrap().segment("k");
    let loads = Arc::new(AtomicU64::new(0));
    assert_eq!(gol(&c, &key, "a", &loads).await, "a");
    let _: () = redis::cmd("FLUSHALL").query(&mut server.client()).unwrap();
    assert_eq!(gol(&c, &key, "b", &loads).await, "b");
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert_eq!(gol(&c, &key, "c", &loads).await, "b", "refilled");
}

/// Under `allkeys-lru` entries, leases and counters can all be evicted: every read still returns
/// the source's current value (a loss reads as a miss), before and after a namespace bump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxmemory_allkeys_lru_never_serves_wrong_values() {
    let server = RedisServer::start_with(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]);
    let c = cache(&server, 1000).await;
    let pad = "x".repeat(2000);
    let epoch = Arc::new(AtomicU64::new(0));
    let value = |i: u64, e: u64| format!("{i}:{e}:{pad}");
    let loads = Arc::new(AtomicU64::new(0));
    let mut hits = 0;
    for round in 0..3u64 {
        if round > 0 {
            c.bump(&Key::new("lru").unwrap()).await.unwrap();
            epoch.fetch_add(1, Ordering::SeqCst);
        }
        for pass in 0..2 {
            for i in 0..1500u64 {
                let key = Key::new("lru").unwrap().segment(&i.to_string());
                let e = epoch.load(Ordering::SeqCst);
                let want = value(i, e);
                let before = loads.load(Ordering::SeqCst);
                let got = gol(&c, &key, &want, &loads).await;
                assert_eq!(got, want, "round {round} pass {pass} key {i}");
                if loads.load(Ordering::SeqCst) == before {
                    hits += 1;
                }
            }
        }
    }
    let info: String = redis::cmd("INFO").arg("stats").query(&mut server.client()).unwrap();
    let evicted: u64 = info.lines().find_map(|l| l.strip_prefix("evicted_keys:")).unwrap().trim().parse().unwrap();
    assert!(evicted > 1000, "eviction happened ({evicted})");
    eprintln!("allkeys-lru: {evicted} keys evicted, {hits} hits, {} loads, no wrong value", loads.load(Ordering::SeqCst));
}

#[tokio::test]
async fn corrupt_data_is_a_counted_miss_and_overwritten() {
    let server = RedisServer::start();
    let c = cache(&server, 500).await;
    let mut r = server.client();
    let loads = Arc::new(AtomicU64::new(0));
    // Wrong type under the key: counted, a miss, overwritten.
    let k1 = Key::new("bad").unwrap().segment("list");
    let _: () = redis::cmd("RPUSH").arg(k1.build()).arg("junk").query(&mut r).unwrap();
    assert_eq!(gol(&c, &k1, "ok1", &loads).await, "ok1");
    assert_eq!(c.stats().corrupt_entries, 1, "garbage of another type is a corrupt entry");
    assert_eq!(gol(&c, &k1, "no", &loads).await, "ok1", "overwritten, then a hit");
    // A well-formed record whose entry bytes are garbage: the flow counts it and refills.
    let k2 = Key::new("bad").unwrap().segment("bytes");
    assert_eq!(gol(&c, &k2, "ok2", &loads).await, "ok2");
    let raw: Vec<u8> = redis::cmd("GET").arg(k2.build()).query(&mut r).unwrap();
    let n = karlton_core::redis::parse_record(&raw).and_then(|rec| rec.entry).unwrap().len();
    let mut bad = raw[..raw.len() - n].to_vec();
    bad.extend_from_slice(b"garbage bytes");
    let _: () = redis::cmd("SET").arg(k2.build()).arg(bad).arg("KEEPTTL").query(&mut r).unwrap();
    let before = c.stats().corrupt_entries;
    assert_eq!(gol(&c, &k2, "ok2b", &loads).await, "ok2b");
    assert!(c.stats().corrupt_entries > before, "corrupt entry counted");
    assert_eq!(gol(&c, &k2, "no", &loads).await, "ok2b", "overwritten, then a hit");
    // A string under the key that is not a record.
    let k3 = Key::new("bad").unwrap().segment("str");
    let _: () = redis::cmd("SET").arg(k3.build()).arg("\u{0}\u{1}binary").query(&mut r).unwrap();
    assert_eq!(gol(&c, &k3, "ok3", &loads).await, "ok3");
    let raw: Vec<u8> = redis::cmd("GET").arg(k3.build()).query(&mut r).unwrap();
    assert!(karlton_core::redis::parse_record(&raw).and_then(|rec| rec.entry).is_some(), "a record now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_over_cluster() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(|s| s.as_str()).collect();
    let mut store = None;
    for _ in 0..20 {
        if let Ok(s) = RedisStore::cluster(&nodes).await {
            store = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let c = Cache::new(store.unwrap(), policy(60_000));
    let loads = Arc::new(AtomicU64::new(0));
    for ns in ["alpha", "beta", "gamma", "delta"] {
        let key = Key::new(ns).unwrap().hash_tag(true).segment("k");
        let (l, v) = (loads.clone(), format!("{ns}-1"));
        let got: Option<String> = c
            .get_or_load_with(&key, &karlton::Options { tags: vec!["t".into()], policy: None }, move || async move {
                l.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(Some(v))
            })
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some(format!("{ns}-1").as_str()));
        c.bump(&key).await.unwrap();
        let got2 = c.get::<String>(&key).await.unwrap();
        assert_eq!(got2, None, "bump orphans on the cluster");
    }
    assert_eq!(c.stats().store_errors, 0, "no CROSSSLOT with hash-tag keys");
}

/// T1 under eviction: a bumped namespace whose counter is then lost (evicted, deleted) must not
/// revive the entries filled before the bump — every counter incarnation is unique, so a lost
/// counter matches nothing (reads as a miss) until a fill creates a new one.
#[tokio::test]
async fn lost_generation_counter_never_revives_pre_bump_entries() {
    let server = RedisServer::start();
    let c = cache(&server, 500).await;
    let mut r = server.client();
    let loads = Arc::new(AtomicU64::new(0));
    let key = Key::new("evict").unwrap().segment("k");
    assert_eq!(gol(&c, &key, "before-bump", &loads).await, "before-bump"); // stamped with the first incarnation
    c.bump(&key).await.unwrap();
    let _: () = redis::cmd("DEL").arg(key.generation_key()).query(&mut r).unwrap(); // "evicted"
    assert_eq!(c.get::<String>(&key).await.unwrap(), None, "T1: the pre-bump entry stays orphaned");
    assert_eq!(gol(&c, &key, "after", &loads).await, "after");
    assert_eq!(gol(&c, &key, "no", &loads).await, "after", "a new incarnation is created and hits again");
    let raw: String = redis::cmd("GET").arg(key.generation_key()).query(&mut r).unwrap();
    assert!(raw.starts_with("0:"), "counter recreated as value 0, new epoch: {raw}");
}

/// A master of a 3+3 cluster is SIGKILLed while 8 tasks hammer 4 hot keys of its slot; its
/// replica is promoted. Every call is answered (during the outage from the loader: the policy's
/// `on_store_error`), loads stay within 1 per key + 1 per store error (docs/redis.md "Failover"),
/// the replicated entries are hits on the promoted replica, and a new key's stampede loads once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_master_killed_mid_stampede_callers_answered() {
    let mut cluster = RedisCluster::start_with(3, 1, 1000);
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(|s| s.as_str()).collect();
    let store = RedisStore::cluster(&nodes).await.unwrap();
    let c = Arc::new(Cache::new(store, policy(60_000)));
    let keys: Vec<Key> = (0..4).map(|i| Key::new("failover").unwrap().hash_tag(true).segment(&i.to_string())).collect();
    let loads = Arc::new(AtomicU64::new(0));
    for k in &keys {
        assert_eq!(gol(&c, k, &format!("value-of-{}", k.build()), &loads).await, format!("value-of-{}", k.build()));
    }
    let victim = cluster.master_of(&keys[0].build());
    let replica = cluster.replicas_of(victim)[0];
    let start = Instant::now();
    loop {
        let mut r = cluster.nodes[replica].client();
        let _: () = redis::cmd("READONLY").query(&mut r).unwrap();
        let n: usize = keys.iter().map(|k| redis::cmd("EXISTS").arg(k.build()).query::<usize>(&mut r).unwrap()).sum();
        if n == keys.len() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the replica never got the entries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (c, keys, loads, stop, answers) = (c.clone(), keys.clone(), loads.clone(), stop.clone(), answers.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let k = &keys[(w + n) % keys.len()];
                    n += 1;
                    let want = format!("value-of-{}", k.build());
                    assert_eq!(gol(&c, k, &want, &loads).await, want);
                    answers.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.nodes[victim].kill();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_ok(Duration::from_secs(30));
        cluster
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("every call answered with its value");
    }
    let st = c.stats();
    let total = loads.load(Ordering::SeqCst);
    eprintln!("failover: {} answers, loads {total}, store_errors {}", answers.load(Ordering::SeqCst), st.store_errors);
    assert!(answers.load(Ordering::SeqCst) > 0);
    assert!(total <= keys.len() as u64 + st.store_errors, "loads {total}, stats {st:?}");
    assert_eq!(cluster.master_of(&keys[0].build()), replica);
    let before = loads.load(Ordering::SeqCst);
    for k in &keys {
        let want = format!("value-of-{}", k.build());
        assert_eq!(gol(&c, k, &want, &loads).await, want);
    }
    assert_eq!(loads.load(Ordering::SeqCst), before, "the promoted replica serves the replicated entries");
    let fresh = Key::new("failover").unwrap().hash_tag(true).segment("new");
    let fresh_loads = Arc::new(AtomicU64::new(0));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (c, k, l) = (c.clone(), fresh.clone(), fresh_loads.clone());
            tokio::spawn(async move { gol(&c, &k, "new", &l).await })
        })
        .collect();
    for t in calls {
        assert_eq!(t.await.unwrap(), "new");
    }
    assert_eq!(fresh_loads.load(Ordering::SeqCst), 1, "one load for a new key on the promoted master");
}

/// On a cluster connection a fresh hit is the fast read too: `TIME` + `MGET` on the node that
/// owns the key's slot (the redis crate routes the pipeline by its one keyed command), no Lua.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_hits_are_fast_reads_on_the_owning_node() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(|s| s.as_str()).collect();
    let c = Cache::new(RedisStore::cluster(&nodes).await.unwrap(), policy(60_000));
    let keys: Vec<Key> = (0..20).map(|i| Key::new(&format!("fr{i}")).unwrap().hash_tag(true).segment("k")).collect();
    let owners: std::collections::HashSet<usize> = keys.iter().map(|k| cluster.master_of(&k.build())).collect();
    assert_eq!(owners.len(), 3, "the keys spread over every master");
    let loads = Arc::new(AtomicU64::new(0));
    for k in &keys {
        gol(&c, k, &k.build(), &loads).await;
    }
    let stats = |name: &str| -> u64 {
        cluster
            .nodes
            .iter()
            .map(|s| {
                let info: String = redis::cmd("INFO").arg("commandstats").query(&mut s.client()).unwrap();
                info.lines()
                    .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
                    .and_then(|r| r.split(',').next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let before = (stats("evalsha"), stats("mget"), stats("time"));
    for _ in 0..3 {
        for k in &keys {
            assert_eq!(gol(&c, k, "not loaded", &loads).await, k.build());
        }
    }
    let after = (stats("evalsha"), stats("mget"), stats("time"));
    assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (0, 60, 60));
    assert_eq!(loads.load(Ordering::SeqCst), 20);
    assert_eq!(c.stats().store_errors, 0);
    assert_eq!(c.stats().hits_fresh, 60);
}
