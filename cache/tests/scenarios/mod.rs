//! Caller-level scenarios every store must pass the same way: written once, generic over the
//! store, run on the memory store by `cache/tests/invariants.rs` and on a real redis-server by
//! `redis/tests/faults.rs` (which includes this file by path).

#![allow(dead_code)] // each including test file uses the scenarios it needs

use karlton::core::flow::Write;
use karlton::{Cache, Key, Policy, PolicySpec, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Soft/hard TTLs as given; a lease and a lock wait far longer than any step of a scenario.
pub fn policy(soft: u64, hard: u64) -> Policy {
    Policy::new(PolicySpec {
        soft_ttl_ms: soft,
        hard_ttl_ms: Some(hard),
        lease_ttl_ms: 10_000,
        lock_wait_ms: 10_000,
        ..Default::default()
    })
    .unwrap()
}

/// The write a C5 scenario issues while a load is in flight.
#[derive(Debug, Clone, Copy)]
pub enum WriteKind {
    /// `invalidate(key)`
    Invalidate,
    /// `bump(key)` (the key's namespace generation)
    Bump,
}

/// A loader that counts its calls, says when it started, and waits for `go` before answering
/// `value`.
fn gated(
    value: &'static str,
    calls: Arc<AtomicUsize>,
    started: Arc<Notify>,
    go: Arc<Notify>,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send>> + Send + 'static
{
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            started.notify_one();
            go.notified().await;
            Ok(Some(value.to_string()))
        })
    }
}

/// C5, issue 10's script: caller A's loader reads the old source value and is slow; the source
/// is updated and the write returns; caller B starts (it leads a new load and reads "new");
/// caller C starts 50 ms later. A's call began before the write, so A may get "old" — after
/// `invalidate` its own load, after `bump` whatever its refused fill leaves it — but B and C
/// began after the write returned and must get "new", and the store must end up holding "new".
pub async fn c5_no_call_after_a_write_gets_a_value_loaded_before_it<S: Store>(
    cache: Cache<S>,
    key: Key,
    write: WriteKind,
) {
    let (a_calls, a_started, a_go) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()), Arc::new(Notify::new()));
    let a = tokio::spawn({
        let (c, k, load) = (cache.clone(), key.clone(), gated("old", a_calls.clone(), a_started.clone(), a_go.clone()));
        async move { c.get_or_load::<String, _, _, _>(&k, load).await }
    });
    a_started.notified().await; // A's loader has read "old" and is slow
    match write {
        WriteKind::Invalidate => {
            cache.invalidate(&key).await.unwrap();
        }
        WriteKind::Bump => {
            cache.bump(&key).await.unwrap();
        }
    }
    let (n_calls, n_started, n_go) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()), Arc::new(Notify::new()));
    let caller = || {
        let (c, k, load) = (cache.clone(), key.clone(), gated("new", n_calls.clone(), n_started.clone(), n_go.clone()));
        tokio::spawn(async move { c.get_or_load::<String, _, _, _>(&k, load).await })
    };
    let b = caller();
    n_started.notified().await; // B leads the load after the write
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = caller();
    // A finishes first, while B's load is still running: a C that had joined A's flight would
    // get "old" now.
    a_go.notify_one();
    let a_got = a.await.unwrap().unwrap();
    assert!(a_got.as_deref() == Some("old"), "{write:?}: A's call began before the write: {a_got:?}");
    n_go.notify_one();
    assert_eq!(b.await.unwrap().unwrap().as_deref(), Some("new"), "{write:?}: B began after the write");
    assert_eq!(c.await.unwrap().unwrap().as_deref(), Some("new"), "{write:?}: C began after the write");
    assert_eq!((a_calls.load(Ordering::SeqCst), n_calls.load(Ordering::SeqCst)), (1, 1), "{write:?}: loads");
    assert_eq!(cache.get::<String>(&key).await.unwrap().as_deref(), Some("new"), "{write:?}: what is stored");
    // The write freed the key: B got a lease at once instead of waiting out A's (after a bump,
    // A's lease was granted under the old generation).
    assert_eq!(cache.stats().lease_waits, 0, "{write:?}: {:?}", cache.stats());
    assert_eq!(cache.pending(), (0, 0));
}

/// C3 and the core's stats table: 20 callers on one missing key are one leader (a miss and a
/// load) and 19 joiners, each counted as coalesced and as a miss — never as lease waits — in
/// every store; nothing is left pending.
pub async fn c3_stampede_is_one_load_counted_by_the_core_table<S: Store>(cache: Cache<S>, key: Key) {
    let (calls, started, go) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()), Arc::new(Notify::new()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (c, k) = (cache.clone(), key.clone());
        let (calls, st, go) = (calls.clone(), started.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            c.get_or_load(&k, move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                st.notify_one();
                go.notified().await;
                Ok::<_, String>(Some(7u32))
            })
            .await
        }));
        if i == 0 {
            started.notified().await; // the first caller leads and its loader runs
        }
    }
    while cache.pending().0 < 20 {
        tokio::task::yield_now().await; // every joiner has registered before the load ends
    }
    go.notify_one();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Some(7));
    }
    let s = cache.stats();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!((s.misses, s.loads, s.coalesced, s.lease_waits), (20, 1, 19, 0), "{s:?}");
    assert_eq!(cache.pending(), (0, 0));
}

/// A cached value whose entry is valid but whose bytes do not decode (here: not JSON) is a
/// corrupt entry: `get` counts it and answers missing; `get_or_load` counts it, runs the
/// loader, answers the loaded value and its fill replaces the bytes.
pub async fn undecodable_value_is_counted_and_replaced_by_a_load<S: Store>(cache: Cache<S>, key: Key) {
    let w = Write {
        key: key.build(),
        gen_keys: key.generation_keys().to_vec(),
        tags: vec![],
        value: Arc::from(&b"{not json"[..]),
        codec: 1, // JSON
        version: None,
    };
    assert!(cache.set_raw(&w, None).await.unwrap());
    let raw = cache.get_raw(&key, &[]).await.unwrap().expect("the planted entry is served raw");
    assert_eq!(&raw.value[..], b"{not json");

    assert_eq!(cache.get::<String>(&key).await.unwrap(), None, "get reads it as missing");
    let s = cache.stats();
    // get_raw's read is a hit; get's is a miss and a corrupt entry, not also a hit.
    assert_eq!((s.hits_fresh, s.misses, s.corrupt_entries), (1, 1, 1), "{s:?}");

    let calls = Arc::new(AtomicUsize::new(0));
    let l = calls.clone();
    let got = cache
        .get_or_load(&key, move || async move {
            l.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Some("loaded".to_string()))
        })
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("loaded"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the loader ran");
    let s = cache.stats();
    assert_eq!((s.hits_fresh, s.misses, s.corrupt_entries, s.loads), (1, 2, 2, 1), "{s:?}");
    assert_eq!(cache.get::<String>(&key).await.unwrap().as_deref(), Some("loaded"), "the fill replaced it");
    assert_eq!(cache.pending(), (0, 0));
}

/// A leader whose caller goes away (its future dropped) releases its lease: another process
/// (`other`, a second cache over the same store) then leads at once instead of waiting out the
/// lease. `lease_held(built_key)` asks the store whether a lease is live.
pub async fn dropped_leader_releases_its_lease<S: Store>(
    cache: Cache<S>,
    other: Cache<S>,
    key: Key,
    lease_held: impl Fn(&str) -> bool,
) {
    let (calls, started, never) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()), Arc::new(Notify::new()));
    let leader = tokio::spawn({
        let (c, k, load) = (cache.clone(), key.clone(), gated("never", calls.clone(), started.clone(), never.clone()));
        async move { c.get_or_load::<String, _, _, _>(&k, load).await }
    });
    started.notified().await;
    assert!(lease_held(&key.build()), "the leader holds the lease while it loads");
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    // The release runs right after the drop (spawned on the runtime for a remote store): poll
    // for it, bounded well under the lease TTL so an expiry cannot pass for a release.
    let mut polls = 0;
    while lease_held(&key.build()) {
        polls += 1;
        assert!(polls < 2_000, "the lease was not released");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(cache.pending(), (0, 0), "the cancelled call left nothing behind");
    let got = other
        .get_or_load(&key, || async { Ok::<_, String>(Some("other".to_string())) })
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("other"));
    let s = other.stats();
    assert_eq!((s.loads, s.lease_waits), (1, 0), "the other process led at once: {s:?}");
}

/// A loader that panics fails its call (an error, not a hung or aborted caller), leaves nothing
/// pending, and the next call leads a fresh load.
pub async fn panicking_loader_fails_the_call_and_frees_the_key<S: Store>(cache: Cache<S>, key: Key) {
    let r = cache
        .get_or_load::<String, _, _, _>(&key, || async {
            if true {
                panic!("loader bug");
            }
            Ok::<_, String>(None)
        })
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(cache.pending(), (0, 0));
    let got = cache
        .get_or_load(&key, || async { Ok::<_, String>(Some("after".to_string())) })
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("after"));
    assert_eq!(cache.stats().lease_waits, 0, "the panicked load's lease was released");
}

/// A stale value (served while a refresh would run) that does not decode: the caller gets a
/// load, not a codec error, and the load replaces the entry. `cache`'s policy must have a
/// soft TTL of at most 50 ms and a hard TTL well past it.
pub async fn undecodable_stale_value_is_replaced_by_a_load<S: Store>(cache: Cache<S>, key: Key) {
    let w = Write {
        key: key.build(),
        gen_keys: key.generation_keys().to_vec(),
        tags: vec![],
        value: Arc::from(&b"{not json"[..]),
        codec: 1,
        version: None,
    };
    assert!(cache.set_raw(&w, None).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    let raw = cache.get_raw(&key, &[]).await.unwrap().expect("still inside the hard TTL");
    assert_eq!(raw.source, karlton_core::Source::Stale, "the planted entry is stale now");

    let got = cache
        .get_or_load(&key, || async { Ok::<_, String>(Some("loaded".to_string())) })
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("loaded"));
    let s = cache.stats();
    assert_eq!((s.loads, s.corrupt_entries, s.misses, s.hits_stale), (1, 1, 1, 1), "{s:?}");
    assert_eq!(cache.get::<String>(&key).await.unwrap().as_deref(), Some("loaded"), "the fill replaced it");
    assert_eq!(cache.pending(), (0, 0));
}

/// Issue 11: a loader that calls `get_or_load` on the key it is loading — directly, or through
/// another key's loader — gets `FlowError::Reentrant` at once instead of waiting for itself.
/// (Before, the inner call joined its own flight and the outer call never ended.) The timeout
/// makes a regression fail instead of hang.
pub async fn reentrant_get_or_load_is_an_error_not_a_deadlock<S: Store>(cache: Cache<S>, key: Key, other: Key) {
    use karlton::Error;
    use karlton::core::FlowError;
    let c = cache.clone();
    let k = key.clone();
    let direct = cache.get_or_load(&key, move || async move {
        let inner = c.get_or_load(&k, || async { Ok::<_, String>(Some(0u32)) }).await;
        assert!(matches!(inner, Err(Error::Flow(FlowError::Reentrant(_)))), "inner call: {inner:?}");
        Ok::<_, String>(Some(1u32))
    });
    let got = tokio::time::timeout(Duration::from_secs(5), direct).await.expect("no deadlock");
    assert_eq!(got.unwrap(), Some(1), "the outer call still answers from its own loader");

    // key -> other -> key.
    cache.invalidate(&key).await.unwrap();
    let (c1, k1, o1) = (cache.clone(), key.clone(), other.clone());
    let cycle = cache.get_or_load(&key, move || async move {
        let c2 = c1.clone();
        let k2 = k1.clone();
        let mid = c1
            .get_or_load(&o1, move || async move {
                let inner = c2.get_or_load(&k2, || async { Ok::<_, String>(Some(0u32)) }).await;
                Ok::<_, String>(Some(if matches!(inner, Err(Error::Flow(FlowError::Reentrant(_)))) { 20 } else { 99 }))
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(mid)
    });
    let got = tokio::time::timeout(Duration::from_secs(5), cycle).await.expect("no deadlock through another key");
    assert_eq!(got.unwrap(), Some(20), "the innermost call was refused as re-entrant");
    assert_eq!(cache.pending(), (0, 0));
}

/// Issue 11: an in-process joiner waits at most `lock_wait` for its flight; then (here
/// `on_lock_timeout = load`) it runs its own loader and answers from it. The leader's loader
/// is held until the joiner has its answer, so an unbounded joiner fails by timeout.
pub async fn joiner_waits_at_most_lock_wait<S: Store>(cache: Cache<S>, key: Key) {
    let go = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let leader = tokio::spawn({
        let (c, k, go, started) = (cache.clone(), key.clone(), go.clone(), started.clone());
        async move {
            c.get_or_load(&k, move || async move {
                started.notify_one();
                go.notified().await;
                Ok::<_, String>(Some("leader".to_string()))
            })
            .await
        }
    });
    started.notified().await;
    let joiner = cache.get_or_load(&key, || async { Ok::<_, String>(Some("joiner".to_string())) });
    let got = tokio::time::timeout(Duration::from_secs(10), joiner).await.expect("the joiner is bounded by lock_wait");
    assert_eq!(got.unwrap().as_deref(), Some("joiner"), "past lock_wait it answers from its own loader");
    go.notify_one();
    assert_eq!(leader.await.unwrap().unwrap().as_deref(), Some("leader"));
    assert_eq!(cache.get::<String>(&key).await.unwrap().as_deref(), Some("leader"), "only the lease holder filled");
    let s = cache.stats();
    assert_eq!((s.lease_timeouts, s.loads), (1, 2), "{s:?}");
    assert_eq!(cache.pending(), (0, 0));
}
