//! The caller-level scenarios of `cache/tests/scenarios` (C5 after invalidate and bump, the
//! stampede's stats, a dropped leader's lease, a panicking loader, undecodable values) on a
//! real redis-server — the same code the memory store runs in `cache/tests/invariants.rs`.

use karlton::{Cache, Key};
use karlton_redis::RedisStore;
use karlton_redis::testing::RedisServer;
use std::sync::Mutex;
use std::time::Duration;

#[path = "../../cache/tests/scenarios/mod.rs"]
mod scenarios;
use scenarios::WriteKind;

async fn cache(server: &RedisServer) -> Cache<RedisStore> {
    cache_with(server, scenarios::policy(60_000, 60_000)).await
}

async fn cache_with(server: &RedisServer, policy: karlton::Policy) -> Cache<RedisStore> {
    let client = redis::Client::open(server.url()).unwrap();
    let store = RedisStore::from_client(client, Duration::from_millis(2_000)).await.unwrap();
    Cache::new(store, policy)
}

fn key(s: &str) -> Key {
    Key::new("callers").unwrap().segment(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5_after_invalidate_returned_no_call_gets_the_older_load() {
    let server = RedisServer::start();
    scenarios::c5_no_call_after_a_write_gets_a_value_loaded_before_it(cache(&server).await, key("c5-inv"), WriteKind::Invalidate)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5_after_bump_returned_no_call_gets_the_older_load() {
    let server = RedisServer::start();
    scenarios::c5_no_call_after_a_write_gets_a_value_loaded_before_it(cache(&server).await, key("c5-bump"), WriteKind::Bump)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_stampede_is_one_load_and_counted_by_the_core_table() {
    let server = RedisServer::start();
    scenarios::c3_stampede_is_one_load_counted_by_the_core_table(cache(&server).await, key("stampede")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l3_dropped_leader_releases_its_lease() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server).await, cache(&server).await);
    let conn = Mutex::new(server.client());
    // The record's lease fields (core/src/redis.rs, `parse_record`); release.lua clears them.
    let held = move |k: &str| -> bool {
        let raw: Option<Vec<u8>> = redis::cmd("GET").arg(k).query(&mut *conn.lock().unwrap()).unwrap();
        raw.is_some_and(|r| karlton_core::redis::parse_record(&r).is_some_and(|rec| rec.lease.is_some()))
    };
    scenarios::dropped_leader_releases_its_lease(a, b, key("dropped"), held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_loader_fails_its_call_and_frees_the_key() {
    let server = RedisServer::start();
    scenarios::panicking_loader_fails_the_call_and_frees_the_key(cache(&server).await, key("panic")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_waits_at_most_lock_wait() {
    let server = RedisServer::start();
    let p = karlton::Policy::new(karlton::PolicySpec { soft_ttl_ms: 60_000, lock_wait_ms: 200, ..Default::default() }).unwrap();
    scenarios::joiner_waits_at_most_lock_wait(cache_with(&server, p).await, key("bounded-joiner")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reentrant_get_or_load_is_an_error_not_a_deadlock() {
    let server = RedisServer::start();
    scenarios::reentrant_get_or_load_is_an_error_not_a_deadlock(cache(&server).await, key("reentrant"), key("reentrant-2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_value_is_counted_and_replaced_by_a_load() {
    let server = RedisServer::start();
    scenarios::undecodable_value_is_counted_and_replaced_by_a_load(cache(&server).await, key("undecodable")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_stale_value_is_replaced_by_a_load() {
    let server = RedisServer::start();
    let cache = cache_with(&server, scenarios::policy(50, 60_000)).await;
    scenarios::undecodable_stale_value_is_replaced_by_a_load(cache, key("undecodable-stale")).await;
}

/// `INFO commandstats` as (command, calls) pairs, the server-side count: a script's own
/// `redis.call`s are counted as commands too.
fn commandstats(server: &RedisServer) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut server.client()).unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_owned(), rest.split(',').next()?.parse().ok()?))
        })
        .filter(|(name, _)| name != "info" && !name.starts_with("config"))
        .collect()
}

/// One stampede on a missing key in a warm process (connection open, scripts loaded, the
/// namespace's counter made by an earlier fill) costs the leader's fast read, one `read` script
/// (the lease) and one `fill` script — and nothing for the 19 joiners, who never touch the store.
/// The count is exact (each command is one the server runs for every miss of a busy key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_on_a_missing_key_costs_ten_redis_commands() {
    let server = RedisServer::start();
    // One cache warms the server up (scripts, the counter); the stampede's cache connects first.
    let warm = cache(&server).await;
    assert_eq!(warm.get_or_load(&key("warm"), || async { Ok::<_, String>(Some(1u32)) }).await.unwrap(), Some(1));
    let c = cache(&server).await;
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut server.client()).unwrap();
    scenarios::c3_stampede_is_one_load_counted_by_the_core_table(c, key("cmds")).await;
    let got = commandstats(&server);
    let want: std::collections::BTreeMap<String, u64> =
        // fast read: TIME, MGET; read: EVALSHA, TIME, MGET, SET; fill: EVALSHA, MGET, TIME, SET
        [("evalsha", 2), ("mget", 3), ("set", 2), ("time", 3)].into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(got, want, "{} commands", got.values().sum::<u64>());
}
