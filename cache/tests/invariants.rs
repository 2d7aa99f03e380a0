//! The invariants of DESIGN.md §2, on the embedded memory store, with real concurrency
//! (tokio tasks on a multi-thread runtime, OS threads, several `Cache`s sharing one store the
//! way several processes share one Redis) and forced interleavings where a race needs it.

use karlton::core::flow::{GetOrLoad, Input, Request, Step};
use karlton::core::store::{LeaseOutcome, StoreReply};
use karlton::{Cache, InvalidateMode, Key, MemoryStore, Options, Policy, PolicySpec, Store, now_ms};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

mod scenarios;
use scenarios::WriteKind;

fn policy(soft: u64, hard: u64) -> Policy {
    Policy::new(PolicySpec {
        soft_ttl_ms: soft,
        hard_ttl_ms: Some(hard),
        lease_ttl_ms: 2_000,
        lock_wait_ms: 5_000,
        ..Default::default()
    })
    .unwrap()
}

fn key(s: &str) -> Key {
    Key::new("inv").unwrap().segment(s)
}

/// C3: one hot key, 4 caches ("processes") over one store × 50 tasks each, plus 4 OS threads
/// with their own runtimes: exactly one loader call for the lease window.
#[test]
fn c3_one_loader_call_per_lease_window_across_tasks_threads_and_caches() {
    let store = MemoryStore::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("hot");
    let load = {
        let calls = calls.clone();
        move || {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, String>(Some(42u32))
            }
        }
    };
    let caches: Vec<_> = (0..4).map(|_| Cache::new(store.clone(), policy(60_000, 60_000))).collect();
    let start = Arc::new(std::sync::Barrier::new(5));
    let mut threads = Vec::new();
    for c in caches.clone() {
        let (k, load, start) = (k.clone(), load.clone(), start.clone());
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            start.wait();
            rt.block_on(async move {
                let tasks: Vec<_> = (0..50)
                    .map(|_| {
                        let (c, k, load) = (c.clone(), k.clone(), load.clone());
                        tokio::spawn(async move { c.get_or_load(&k, load).await })
                    })
                    .collect();
                for t in tasks {
                    assert_eq!(t.await.unwrap().unwrap(), Some(42));
                }
            });
        }));
    }
    start.wait();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "C3: one loader call across 200 callers");
    let waits: u64 = caches.iter().map(|c| c.stats().lease_waits).sum();
    assert!(waits >= 1, "the other caches waited on the lease, not loaded");
}

/// C3 over time: an expiring hot key under constant load gets ≤ 1 load per expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_expiring_hot_key_reloads_once_per_window() {
    let store = MemoryStore::default();
    let caches: Vec<_> = (0..3).map(|_| Cache::new(store.clone(), policy(100, 100))).collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("expiring");
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (c, k, calls) = (caches[i % 3].clone(), k.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            while t0.elapsed() < Duration::from_millis(1_000) {
                let calls = calls.clone();
                let v = c
                    .get_or_load(&k, move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, String>(Some(1u8))
                    })
                    .await
                    .unwrap();
                assert_eq!(v, Some(1));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = calls.load(Ordering::SeqCst);
    // 1 s of traffic over a 100 ms TTL (+20 ms loads): at most one load per window.
    assert!((5..=11).contains(&n), "C3: {n} loads for ~9 windows");
}

/// C2: invalidate while a load is in flight revokes its lease; the fill is rejected, the
/// caller still gets its value, and nothing stale is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2_invalidate_during_load_rejects_the_fill() {
    let store = MemoryStore::default();
    let cache = Cache::new(store.clone(), policy(60_000, 60_000));
    let k = key("c2");
    let (in_load, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let reader = {
        let (cache, k, in_load, go) = (cache.clone(), k.clone(), in_load.clone(), go.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&k, move || async move {
                    in_load.notify_one();
                    go.notified().await;
                    Ok::<_, String>(Some("old".to_string()))
                })
                .await
        })
    };
    in_load.notified().await;
    cache.invalidate(&k).await.unwrap();
    go.notify_one();
    assert_eq!(reader.await.unwrap().unwrap(), Some("old".to_string()), "caller gets its value");
    assert_eq!(cache.get::<String>(&k).await.unwrap(), None, "C2: the revoked fill did not land");
    assert_eq!(cache.stats().fills_rejected, 1);
}

/// C2: a fill never lowers a version, including after a delete.
#[tokio::test]
async fn c2_versions_never_go_down() {
    let cache = Cache::new(MemoryStore::default(), policy(60_000, 60_000));
    let k = key("ver");
    assert!(cache.set_versioned(&k, &"v5", Some(5)).await.unwrap());
    assert!(!cache.set_versioned(&k, &"v4", Some(4)).await.unwrap());
    assert_eq!(cache.get::<String>(&k).await.unwrap().as_deref(), Some("v5"));
    cache.invalidate(&k).await.unwrap();
    assert!(!cache.set_versioned(&k, &"v3", Some(3)).await.unwrap(), "floor survives delete");
    assert!(cache.set_versioned(&k, &"v6", Some(6)).await.unwrap());
    assert_eq!(cache.get::<String>(&k).await.unwrap().as_deref(), Some("v6"));
}

/// Seed 003's race, forced step by step: reader misses and reads the OLD value from the
/// source; writer updates the source and invalidates; reader fills. Naive cache-aside keeps
/// the old value forever (until TTL); karlton leaves no stale entry (C1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_seed_003_race_leaves_no_stale_entry_unlike_naive_cache_aside() {
    // --- naive cache-aside, same interleaving ---
    let source = Arc::new(Mutex::new("v1".to_string()));
    let naive: Arc<Mutex<HashMap<String, String>>> = Default::default();
    let read_old = naive.lock().unwrap().get("k").cloned().unwrap_or_else(|| source.lock().unwrap().clone()); // T1-T2: miss, read v1
    *source.lock().unwrap() = "v2".into(); // T3: writer updates the source
    naive.lock().unwrap().remove("k"); // T4: writer deletes the key
    naive.lock().unwrap().insert("k".into(), read_old); // T5: reader fills v1
    assert_eq!(naive.lock().unwrap().get("k").map(String::as_str), Some("v1"), "naive: stale entry left behind");

    // --- karlton, same interleaving ---
    *source.lock().unwrap() = "v1".into();
    let cache = Cache::new(MemoryStore::default(), policy(60_000, 60_000));
    let k = key("race");
    let (read_done, writer_done) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let reader = {
        let (cache, k, source, read_done, writer_done) =
            (cache.clone(), k.clone(), source.clone(), read_done.clone(), writer_done.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&k, move || async move {
                    let v = source.lock().unwrap().clone(); // T2: reads v1
                    read_done.notify_one();
                    writer_done.notified().await; // descheduled while the writer runs
                    Ok::<_, String>(Some(v)) // T5: fills v1
                })
                .await
        })
    };
    read_done.notified().await;
    *source.lock().unwrap() = "v2".into(); // T3
    cache.invalidate(&k).await.unwrap(); // T4
    writer_done.notify_one();
    assert_eq!(reader.await.unwrap().unwrap().as_deref(), Some("v1"));
    assert_eq!(cache.get::<String>(&k).await.unwrap(), None, "C1: no stale entry");
    let src = source.clone();
    let v = cache.get_or_load(&k, move || async move { Ok::<_, String>(Some(src.lock().unwrap().clone())) }).await.unwrap();
    assert_eq!(v.as_deref(), Some("v2"), "C1: the next read loads the source");
}

/// C1 under concurrent writers, invalidations and readers: once writers stop and their
/// invalidations land, every entry equals the source. The readers read every key once more after
/// the writers are done (an explicit signal, not a time), so every entry is present at the end:
/// the check cannot pass because nothing was cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_after_writers_stop_every_entry_matches_the_source() {
    use std::sync::atomic::AtomicBool;
    let store = MemoryStore::default();
    let caches: Vec<_> = (0..2).map(|_| Cache::new(store.clone(), policy(60_000, 60_000))).collect();
    let source: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
    let writers_done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let read = |c: &Cache<MemoryStore>, source: &Arc<Vec<AtomicU64>>, idx: usize| {
        let (c, s) = (c.clone(), source.clone());
        async move {
            c.get_or_load(&key(&format!("c1-{idx}")), move || async move {
                let v = s[idx].load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis((v % 3) + 1)).await; // widen the race
                Ok::<_, String>(Some(v))
            })
            .await
            .unwrap()
        }
    };
    let mut readers = Vec::new();
    for r in 0..16 {
        let (c, source, done) = (caches[r % 2].clone(), source.clone(), writers_done.clone());
        readers.push(tokio::spawn(async move {
            let mut i = r;
            while !done.load(Ordering::SeqCst) {
                read(&c, &source, i % 8).await;
                i += 1;
                // A memory-store hit never yields: without this, 16 readers spinning on hits
                // starve the writers (and the signal) of the 2 worker threads.
                tokio::task::yield_now().await;
            }
            for idx in 0..8 {
                read(&c, &source, idx).await;
            }
        }));
    }
    let mut writers = Vec::new();
    for w in 0..2 {
        let (c, source) = (caches[w].clone(), source.clone());
        writers.push(tokio::spawn(async move {
            let mut i = w;
            while t0.elapsed() < Duration::from_millis(500) {
                let idx = i % 8;
                source[idx].fetch_add(1, Ordering::SeqCst); // update the source, then invalidate
                c.invalidate(&key(&format!("c1-{idx}"))).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                i += 1;
            }
        }));
    }
    for t in writers {
        t.await.unwrap();
    }
    writers_done.store(true, Ordering::SeqCst);
    for t in readers {
        t.await.unwrap();
    }
    for idx in 0..8 {
        let cached: Option<u64> = caches[0].get(&key(&format!("c1-{idx}"))).await.unwrap();
        assert_eq!(cached, Some(source[idx].load(Ordering::SeqCst)), "C1 for key {idx}: present and equal to the source");
    }
}

/// C4: nothing is served past hard expiry; stale only inside [soft, hard); past hard only as
/// stale-if-error when the loader fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_never_served_past_hard_expiry() {
    let mut spec = PolicySpec { soft_ttl_ms: 40, hard_ttl_ms: Some(80), ..Default::default() };
    let cache = Cache::new(MemoryStore::default(), Policy::new(spec.clone()).unwrap());
    let k = key("c4");
    let v = cache.get_or_load(&k, || async { Ok::<_, String>(Some(1u8)) }).await.unwrap();
    assert_eq!(v, Some(1));
    let filled = now_ms();
    tokio::time::sleep(Duration::from_millis(100)).await; // past hard
    let r = cache.get_or_load(&k, || async { Err::<Option<u8>, _>("source down") }).await;
    assert!(r.is_err(), "C4: past hard expiry with no stale_if_error → error, not the old value");
    assert!(now_ms() >= filled + 80);

    spec.stale_if_error_ms = 60_000;
    let cache = Cache::new(MemoryStore::default(), Policy::new(spec).unwrap());
    cache.get_or_load(&k, || async { Ok::<_, String>(Some(2u8)) }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = cache.get_or_load(&k, || async { Err::<Option<u8>, _>("source down") }).await.unwrap();
    assert_eq!(r, Some(2), "stale-if-error serves past hard only because the loader failed");
    assert_eq!(cache.stats().stale_if_error, 1);
    // A plain get never returns it: it's past hard.
    assert_eq!(cache.get::<u8>(&k).await.unwrap(), None);
}

/// Stale-while-revalidate: the caller gets the stale value at once; one background refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_without_waiting_for_the_loader() {
    let cache = Cache::new(MemoryStore::default(), policy(30, 60_000));
    let k = key("swr");
    cache.get_or_load(&k, || async { Ok::<_, String>(Some(1u8)) }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut results = Vec::new();
    for _ in 0..20 {
        let calls = calls.clone();
        results.push(
            cache
                .get_or_load(&k, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, String>(Some(2u8))
                })
                .await
                .unwrap(),
        );
    }
    assert!(results.iter().all(|v| *v == Some(1)), "all served stale immediately");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one background refresh");
    assert_eq!(cache.stats().hits_stale, 20);
    assert_eq!(cache.get::<u8>(&k).await.unwrap(), Some(2));
}

/// L2: release and extend never touch a lease whose token differs; extend cannot revive an
/// expired lease.
#[test]
fn l2_release_and_extend_need_the_holding_token() {
    use karlton::core::store::StoreOp;
    let s = karlton::core::MemoryStore::default();
    let read = StoreOp::Read {
        key: "k".into(),
        gen_keys: vec![],
        lease: karlton::core::LeaseMode::IfNeeded,
        lease_ttl_ms: 100,
    };
    let StoreReply::Read(r) = s.apply(1_000, &read) else { panic!() };
    let LeaseOutcome::Granted { token: t } = r.lease else { panic!("{:?}", r.lease) };
    let rel = |token| StoreOp::Release { key: "k".into(), token };
    let ext = |token| StoreOp::Extend { key: "k".into(), token, lease_ttl_ms: 500 };
    assert_eq!(s.apply(1_010, &rel(t + 1)), StoreReply::Lease { ok: false });
    assert_eq!(s.apply(1_010, &ext(t + 1)), StoreReply::Lease { ok: false });
    let StoreReply::Read(r) = s.apply(1_020, &read) else { panic!() };
    assert_eq!(r.lease, LeaseOutcome::Held { until_ms: 1_100 }, "still the first holder's");
    assert_eq!(s.apply(1_020, &ext(t)), StoreReply::Lease { ok: true });
    let StoreReply::Read(r) = s.apply(1_200, &read) else { panic!() };
    assert_eq!(r.lease, LeaseOutcome::Held { until_ms: 1_520 }, "extended by its holder");
    assert_eq!(s.apply(1_600, &ext(t)), StoreReply::Lease { ok: false }, "expired: no revival");
    assert_eq!(s.apply(1_600, &rel(t)), StoreReply::Lease { ok: false });
}

/// L3: a holder that crashes mid-load (its flow is simply dropped) is taken over within
/// lease_ttl + ε, by a cache that was waiting on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l3_crashed_holder_is_taken_over_within_lease_ttl() {
    let store = MemoryStore::default();
    let lease_ttl = 300;
    let p = Policy::new(PolicySpec { lease_ttl_ms: lease_ttl, lock_wait_ms: 10_000, ..Default::default() }).unwrap();
    let k = key("l3");
    // The "crashed process": takes the lease, then dies without filling or releasing.
    let mut crashed = GetOrLoad::new(Request { key: k.build(), gen_keys: vec![k.generation_key()], tags: vec![] }, Arc::new(p.clone()), 1);
    let t = now_ms();
    let step = crashed.start(t);
    let step = crashed.run_store_steps(t, step, |op| store.execute_now(op).unwrap());
    assert!(matches!(step, Step::Load { .. }), "crashed holder got the lease: {step:?}");
    drop(crashed);
    let crashed_at = Instant::now();

    let cache = Cache::new(store.clone(), p);
    let v = cache.get_or_load(&k, || async { Ok::<_, String>(Some("taken over".to_string())) }).await.unwrap();
    let took = crashed_at.elapsed();
    assert_eq!(v.as_deref(), Some("taken over"));
    assert!(took >= Duration::from_millis(lease_ttl - 20), "waited for the lease: {took:?}");
    assert!(took <= Duration::from_millis(lease_ttl + 500), "L3: took over in {took:?}");
    assert_eq!(cache.stats().lease_waits, 1);
    let _ = Input::Continue;
}

/// C3 with a load longer than its lease: the holder extends its lease while it loads, so a
/// caller in another "process" that arrives after the first lease would have run out waits for
/// that load instead of starting a second one, and the long load's value fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_a_load_longer_than_its_lease_keeps_its_key() {
    let store = MemoryStore::default();
    let lease_ttl = 1_000;
    let p = Policy::new(PolicySpec { lease_ttl_ms: lease_ttl, lock_wait_ms: 10_000, ..Default::default() }).unwrap();
    let k = key("long");
    let (a, b) = (Cache::new(store.clone(), p.clone()), Cache::new(store.clone(), p));
    let started = Arc::new(Notify::new());
    let long = {
        let (a, k, started) = (a.clone(), k.clone(), started.clone());
        tokio::spawn(async move {
            a.get_or_load(&k, || async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                Ok::<_, String>(Some("long".to_string()))
            })
            .await
        })
    };
    started.notified().await;
    // Past the first lease's end (the loader started after the lease was granted).
    tokio::time::sleep(Duration::from_millis(lease_ttl + 500)).await;
    let second = Arc::new(AtomicUsize::new(0));
    let v = {
        let second = second.clone();
        b.get_or_load(&k, || async move {
            second.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Some("second".to_string()))
        })
        .await
        .unwrap()
    };
    assert_eq!(long.await.unwrap().unwrap().as_deref(), Some("long"));
    assert_eq!(second.load(Ordering::SeqCst), 0, "a second load started while the first held its key");
    assert_eq!(v.as_deref(), Some("long"), "the waiter got the long load's value");
    assert!(a.stats().lease_extensions >= 2, "{:?}", a.stats());
    assert_eq!((a.stats().fills_rejected, b.stats().lease_waits), (0, 1));
}

/// T1: once `bump` / `invalidate_tag` returns, no read returns an entry filled before it —
/// even with readers filling old values concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_no_read_after_bump_returns_an_entry_filled_before_it() {
    let store = MemoryStore::default();
    let cache = Cache::new(store.clone(), policy(60_000, 60_000));
    let epoch = Arc::new(AtomicU64::new(0));
    let k = key("t1");
    let opts = Options { tags: vec!["team-7".into()], policy: None };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut bg = Vec::new();
    for _ in 0..8 {
        let (c, k, e, o, stop) = (Cache::new(store.clone(), policy(60_000, 60_000)), k.clone(), epoch.clone(), opts.clone(), stop.clone());
        bg.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let e = e.clone();
                c.get_or_load_with(&k, &o, move || async move {
                    let v = e.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(3)).await; // load straddles bumps
                    Ok::<_, String>(Some(v))
                })
                .await
                .unwrap();
                // A memory-store hit completes without awaiting anything: yield so these
                // loops share the runtime with the bumping task, as IO-bound callers would.
                tokio::task::yield_now().await;
            }
        }));
    }
    for round in 1..=40u64 {
        epoch.store(round, Ordering::SeqCst);
        if round % 2 == 0 { cache.bump(&k).await.unwrap(); } else { cache.invalidate_tag(&k, "team-7").await.unwrap(); }
        let e = epoch.clone();
        let v: Option<u64> = cache
            .get_or_load_with(&k, &opts, move || async move { Ok::<_, String>(Some(e.load(Ordering::SeqCst))) })
            .await
            .unwrap();
        assert_eq!(v, Some(round), "T1: read after bump #{round} returned an entry filled before it");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in bg {
        t.await.unwrap();
    }
}

/// Negative caching: `None` from the loader is cached for negative_ttl; with 0 it is not.
#[tokio::test]
async fn negative_results_are_cached_for_negative_ttl() {
    let p = Policy::new(PolicySpec { negative_ttl_ms: 60_000, ..Default::default() }).unwrap();
    let cache = Cache::new(MemoryStore::default(), p);
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let c = calls.clone();
        let v: Option<u8> = cache.get_or_load(&key("missing"), move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(None)
        }).await.unwrap();
        assert_eq!(v, None);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().negative_hits, 2);

    let cache = Cache::new(MemoryStore::default(), Policy::default());
    for _ in 0..2 {
        let c = calls.clone();
        let _: Option<u8> = cache.get_or_load(&key("missing"), move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(None)
        }).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "negative_ttl 0: not cached");
}

/// Mark-stale invalidation serves the old value while exactly one caller refreshes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_stale_serves_old_value_while_one_refreshes() {
    let cache = Cache::new(MemoryStore::default(), policy(60_000, 120_000));
    let k = key("mark");
    cache.set(&k, &1u8).await.unwrap();
    cache.invalidate_with(&k, InvalidateMode::MarkStale).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let c = calls.clone();
        let v = cache.get_or_load(&k, move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, String>(Some(2u8))
        }).await.unwrap();
        assert_eq!(v, Some(1));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get::<u8>(&k).await.unwrap(), Some(2));
}

/// Memory store bounds: the entry count holds, evictions are counted in stats, and what is
/// read again outlives what was written once (W-TinyLFU admission: a new key that is no more
/// popular than the store's victim is not admitted).
#[tokio::test]
async fn memory_store_bound_keeps_the_frequently_read() {
    use karlton::core::MemoryStoreConfig;
    let store = MemoryStore::new(MemoryStoreConfig { max_entries: 4, max_bytes: 1 << 20, shards: 1, seed: 0 });
    let cache = Cache::new(store.clone(), policy(60_000, 60_000));
    for i in 0..4 {
        cache.set(&key(&format!("e{i}")), &i).await.unwrap();
    }
    for _ in 0..3 {
        let _: Option<i32> = cache.get(&key("e0")).await.unwrap(); // e0 is read again and again
    }
    for i in 4..20 {
        cache.set(&key(&format!("e{i}")), &i).await.unwrap(); // 16 keys written once each
    }
    assert_eq!(cache.get::<i32>(&key("e0")).await.unwrap(), Some(0), "the hot key survives");
    assert_eq!(cache.stats().evictions, 16);
    assert_eq!(store.core().len(), 4);
}

/// C1 inside one process: callers that joined a load whose lease was revoked (by an
/// invalidation) never get that load's old value — they run again and share the next load.
/// The revoked loader's own caller still gets its value (DESIGN §1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_joiners_never_get_a_revoked_loads_value() {
    // A joiner that took the refused fill would leave nobody to re-run, and the wait for the
    // re-run would hang: the timeout turns that into a failure.
    tokio::time::timeout(Duration::from_secs(30), c1_joiners_body()).await.expect("hung: no joiner re-ran after the refused fill");
}

/// Calls the coordinator holds reach `n` (an explicit signal that callers have joined).
async fn wait_pending(cache: &Cache<MemoryStore>, n: usize) {
    let t = Instant::now();
    while cache.pending().0 < n {
        assert!(t.elapsed() < Duration::from_secs(10), "only {:?} calls pending, want {n}", cache.pending());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn c1_joiners_body() {
    let cache = Cache::new(MemoryStore::default(), policy(60_000, 60_000));
    let k = key("joiners");
    let (l_started, l_go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let leader = tokio::spawn({
        let (c, k, started, go) = (cache.clone(), k.clone(), l_started.clone(), l_go.clone());
        async move {
            c.get_or_load(&k, move || async move {
                started.notify_one();
                go.notified().await;
                Ok::<_, String>(Some("old".to_string()))
            })
            .await
        }
    });
    l_started.notified().await;
    // Loads after the invalidation see the new source value.
    let calls = Arc::new(AtomicUsize::new(0));
    let (n_started, n_go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let caller = |c: Cache<MemoryStore>| {
        let (k, calls, started, go) = (k.clone(), calls.clone(), n_started.clone(), n_go.clone());
        tokio::spawn(async move {
            c.get_or_load(&k, move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                started.notify_one();
                go.notified().await;
                Ok::<_, String>(Some("new".to_string()))
            })
            .await
        })
    };
    let early = caller(cache.clone()); // joins L before the invalidation
    wait_pending(&cache, 2).await;
    cache.invalidate(&k).await.unwrap(); // the writer: the source now says "new"
    let after = caller(cache.clone()); // joins L after the invalidation returned
    wait_pending(&cache, 3).await;
    l_go.notify_one(); // L finishes; its fill is refused
    assert_eq!(leader.await.unwrap().unwrap().as_deref(), Some("old"), "L's caller gets its own load");
    n_started.notified().await; // one of the joiners re-ran and now leads the new load
    let late = caller(cache.clone());
    wait_pending(&cache, 3).await; // early, after (one leads the re-run) and late
    n_go.notify_one();
    for (name, t) in [("early", early), ("after", after), ("late", late)] {
        assert_eq!(t.await.unwrap().unwrap().as_deref(), Some("new"), "{name} got a revoked load's value");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the re-run is single-flight too");
    assert_eq!(cache.get::<String>(&k).await.unwrap().as_deref(), Some("new"));
}

/// Stats come from the core's table (the scenario is shared with the Redis tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_stampede_is_one_load_and_counted_by_the_core_table() {
    let cache = Cache::new(MemoryStore::default(), scenarios::policy(60_000, 60_000));
    scenarios::c3_stampede_is_one_load_counted_by_the_core_table(cache, key("stampede")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5_after_invalidate_returned_no_call_gets_the_older_load() {
    let cache = Cache::new(MemoryStore::default(), scenarios::policy(60_000, 60_000));
    scenarios::c5_no_call_after_a_write_gets_a_value_loaded_before_it(cache, key("c5-inv"), WriteKind::Invalidate)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5_after_bump_returned_no_call_gets_the_older_load() {
    let cache = Cache::new(MemoryStore::default(), scenarios::policy(60_000, 60_000));
    scenarios::c5_no_call_after_a_write_gets_a_value_loaded_before_it(cache, key("c5-bump"), WriteKind::Bump).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_value_is_a_corrupt_entry_replaced_by_a_load() {
    let cache = Cache::new(MemoryStore::default(), scenarios::policy(60_000, 60_000));
    scenarios::undecodable_value_is_counted_and_replaced_by_a_load(cache, key("undecodable")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_stale_value_is_replaced_by_a_load() {
    let cache = Cache::new(MemoryStore::default(), scenarios::policy(50, 60_000));
    scenarios::undecodable_stale_value_is_replaced_by_a_load(cache, key("undecodable-stale")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l3_dropped_leader_releases_its_lease() {
    let store = MemoryStore::default();
    let p = scenarios::policy(60_000, 60_000);
    let (cache, other) = (Cache::new(store.clone(), p.clone()), Cache::new(store.clone(), p));
    let held = move |k: &str| store.inspect(k).is_some_and(|s| s.lease.is_some());
    scenarios::dropped_leader_releases_its_lease(cache, other, key("dropped"), held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_waits_at_most_lock_wait() {
    let p = Policy::new(PolicySpec { soft_ttl_ms: 60_000, lock_wait_ms: 200, ..Default::default() }).unwrap();
    scenarios::joiner_waits_at_most_lock_wait(Cache::new(MemoryStore::default(), p), key("bounded-joiner")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reentrant_get_or_load_is_an_error_not_a_deadlock() {
    let cache = Cache::new(MemoryStore::default(), scenarios::policy(60_000, 60_000));
    scenarios::reentrant_get_or_load_is_an_error_not_a_deadlock(cache, key("reentrant"), key("reentrant-2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_loader_fails_its_call_and_frees_the_key() {
    let cache = Cache::new(MemoryStore::default(), scenarios::policy(60_000, 60_000));
    scenarios::panicking_loader_fails_the_call_and_frees_the_key(cache, key("panic")).await;
}

/// Seeds come from the OS: caches created together (a fleet restarting at once) draw
/// different jitter for the same key and policy.
#[tokio::test]
async fn caches_created_together_draw_different_jitter() {
    let p = Policy::new(PolicySpec {
        soft_ttl_ms: 600_000,
        hard_ttl_ms: Some(1_200_000),
        jitter: 0.5,
        ..Default::default()
    })
    .unwrap();
    let k = key("jitter");
    let mut soft = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let store = MemoryStore::default();
        let c = Cache::new(store.clone(), p.clone());
        c.get_or_load(&k, || async { Ok::<_, String>(Some(1u8)) }).await.unwrap();
        soft.insert(store.inspect(&k.build()).unwrap().soft_at / 1_000); // seconds: the same clock tick cannot hide a tie
    }
    // 8 draws over a 300 s range in whole seconds: all equal only if the seeds are shared.
    assert!(soft.len() >= 4, "jitter draws of 8 caches: {soft:?}");
}
