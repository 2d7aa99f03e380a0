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
