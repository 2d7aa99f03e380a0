//! Issue 11, item 4 on Redis: generation counters carry TTLs (so a million distinct tags are not
//! a million permanent keys) without ever making an invalidated entry valid again. Against a
//! real redis-server; no timing assertions (waits are on server state, bounds are one-sided).

use karlton::Store;
use karlton_core::redis::BUMPED_COUNTER_TTL_MS;
use karlton_core::store::{Bytes, LeaseMode, LeaseOutcome, ReadReply, RejectReason, StoreOp, StoreReply};
use karlton_redis::RedisStore;
use karlton_redis::testing::RedisServer;
use std::time::{Duration, Instant};

const GEN: &str = "{ns}:!gen";
const TAG: &str = "{ns}:!tag:t";

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::from_client(redis::Client::open(server.url()).unwrap(), Duration::from_secs(5)).await.unwrap()
}

fn server_ms(r: &mut redis::Connection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(r).unwrap();
    s * 1000 + us / 1000
}

/// When `key` expires (ms since the epoch, server clock); -1 without a TTL, -2 if absent.
fn expires_at(r: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME").arg(key).query(r).unwrap()
}

fn gen_keys(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

async fn read(s: &RedisStore, key: &str, gks: &[&str], lease: LeaseMode) -> ReadReply {
    let op = StoreOp::Read { key: key.into(), gen_keys: gen_keys(gks), lease, lease_ttl_ms: 2_000 };
    match s.execute(op).await.unwrap() {
        StoreReply::Read(r) => r,
        r => panic!("read answered {r:?}"),
    }
}

/// A loader's fill: take the lease, then fill under the generations that read gave, kept
/// until `expire_at`.
async fn lease_and_fill(s: &RedisStore, key: &str, gks: &[&str], expire_at: u64) -> StoreReply {
    let r = read(s, key, gks, LeaseMode::Force).await;
    let LeaseOutcome::Granted { token } = r.lease else { panic!("no lease: {:?}", r.lease) };
    fill(s, key, gks, Some(r.generations), Some(token), expire_at).await
}

async fn fill(s: &RedisStore, key: &str, gks: &[&str], generations: Option<Vec<u64>>, token: Option<u64>, expire_at: u64) -> StoreReply {
    let entry: Bytes = b"entry".to_vec().into();
    let op = StoreOp::Fill {
        key: key.into(),
        entry,
        soft_at: expire_at - 1,
        hard_at: expire_at - 1,
        expire_at,
        version: None,
        generations,
        gen_keys: gen_keys(gks),
        token,
    };
    s.execute(op).await.unwrap()
}

async fn bump(s: &RedisStore, gen_key: &str, value: u64) {
    let r = s.execute(StoreOp::Bump { gen_key: gen_key.into(), value }).await.unwrap();
    assert!(matches!(r, StoreReply::Bumped { .. }), "{r:?}");
}

/// Wait (on the server's clock, bounded so a bug cannot hang the suite) until `t` has passed.
fn wait_past(r: &mut redis::Connection, t: u64) {
    let guard = Instant::now();
    while server_ms(r) <= t {
        assert!(guard.elapsed() < Duration::from_secs(30), "hang guard");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_counter_gets_a_ttl_at_least_every_entry_stamped_with_it() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut r = server.client();
    let now = server_ms(&mut r);
    assert_eq!(lease_and_fill(&s, "{ns}:a", &[GEN, TAG], now + 60_000).await, StoreReply::Stored);
    let a = expires_at(&mut r, "{ns}:a");
    assert!(a >= (now + 60_000) as i64);
    for c in [GEN, TAG] {
        assert!(expires_at(&mut r, c) >= a, "{c} expires before the entry stamped with it");
    }
    // A longer-lived entry raises the counters' TTL; a shorter one never lowers it (GT).
    assert_eq!(lease_and_fill(&s, "{ns}:b", &[GEN, TAG], now + 120_000).await, StoreReply::Stored);
    let b = expires_at(&mut r, "{ns}:b");
    assert_eq!(fill(&s, "{ns}:c", &[GEN], None, None, now + 30_000).await, StoreReply::Stored);
    for c in [GEN, TAG] {
        assert!(expires_at(&mut r, c) >= b, "{c}: lowered below the longest entry");
    }
    // A counter made before counters had TTLs (or by hand) stays without one, and still counts.
    let _: () = redis::cmd("SET").arg("{ns}:!tag:old").arg("5:1").query(&mut r).unwrap();
    assert_eq!(lease_and_fill(&s, "{ns}:d", &[GEN, "{ns}:!tag:old"], now + 60_000).await, StoreReply::Stored);
    assert_eq!(expires_at(&mut r, "{ns}:!tag:old"), -1);
    let d = read(&s, "{ns}:d", &[GEN, "{ns}:!tag:old"], LeaseMode::None).await;
    assert!(d.entry.is_some());
    assert_eq!(d.generations[1], 5);
}

#[tokio::test]
async fn a_bumped_counter_outlives_every_lease_that_read_it_before() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut r = server.client();
    // Absent counter (never used) and one that exists with a TTL shorter than the bump's.
    let now = server_ms(&mut r);
    assert_eq!(lease_and_fill(&s, "{ns}:a", &[GEN], now + 5_000).await, StoreReply::Stored);
    let before = read(&s, "{ns}:x", &[GEN, TAG], LeaseMode::Force).await; // a load starts
    assert_eq!(before.generations, vec![0, 0]);
    let t = server_ms(&mut r);
    bump(&s, GEN, 7).await;
    bump(&s, TAG, 8).await;
    for c in [GEN, TAG] {
        let at = expires_at(&mut r, c);
        assert!(at >= (t + BUMPED_COUNTER_TTL_MS) as i64, "{c} after a bump expires at {at}, before now + {BUMPED_COUNTER_TTL_MS}");
    }
    // So the load that read 0 before the bump can never fill: the counters read as the bumped
    // values (never absent = 0) for as long as its lease can last.
    assert_eq!(
        fill(&s, "{ns}:x", &[GEN, TAG], Some(before.generations), Some(21), now + 5_000).await,
        StoreReply::Rejected { reason: RejectReason::GenerationChanged }
    );
    // Fills under the new value extend it again (GT); a counter made without a TTL gets one
    // at its next bump.
    let far = server_ms(&mut r) + 2 * BUMPED_COUNTER_TTL_MS;
    assert_eq!(lease_and_fill(&s, "{ns}:far", &[GEN], far).await, StoreReply::Stored);
    assert!(expires_at(&mut r, GEN) >= far as i64);
    assert!(read(&s, "{ns}:far", &[GEN], LeaseMode::None).await.entry.is_some());
    let _: () = redis::cmd("SET").arg("{ns}:!tag:old").arg("5:1").query(&mut r).unwrap();
    let t = server_ms(&mut r);
    bump(&s, "{ns}:!tag:old", 6).await;
    assert!(expires_at(&mut r, "{ns}:!tag:old") >= (t + BUMPED_COUNTER_TTL_MS) as i64);
}

#[tokio::test]
async fn no_counter_is_left_once_every_entry_has_expired() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut r = server.client();
    let now = server_ms(&mut r);
    for (i, key) in ["{ns}:a", "{ns}:b", "{ns}:c"].iter().enumerate() {
        let tag = format!("{{ns}}:!tag:t{i}");
        let gks = [GEN, TAG, tag.as_str()];
        assert_eq!(lease_and_fill(&s, key, &gks, now + 300 + 100 * i as u64).await, StoreReply::Stored);
    }
    assert_eq!(fill(&s, "{other}:k", &["{other}:!gen"], None, None, now + 200).await, StoreReply::Stored);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut r).unwrap();
    assert_eq!(keys.len(), 3 + 5 + 2, "entries and counters: {keys:?}");
    let mut last = 0;
    for k in &keys {
        let at = expires_at(&mut r, k);
        assert!(at > 0, "{k} has no TTL");
        last = last.max(at as u64);
    }
    wait_past(&mut r, last);
    let left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut r).unwrap();
    assert!(left.is_empty(), "left after every entry expired: {left:?}");
}

/// A bump, then the counter expires or is lost (forced with PEXPIRE): the entry the bump
/// invalidated stays invalid, also once a new incarnation of the counter exists.
#[tokio::test]
async fn a_bumped_then_expired_counter_never_serves_the_invalidated_entry() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut r = server.client();
    let now = server_ms(&mut r);
    assert_eq!(lease_and_fill(&s, "{ns}:e", &[GEN], now + 60_000).await, StoreReply::Stored);
    assert!(read(&s, "{ns}:e", &[GEN], LeaseMode::None).await.entry.is_some());
    bump(&s, GEN, 7).await;
    assert!(read(&s, "{ns}:e", &[GEN], LeaseMode::None).await.entry.is_none(), "orphaned by the bump");
    // The counter expires early (as if evicted).
    let _: () = redis::cmd("PEXPIRE").arg(GEN).arg(1).query(&mut r).unwrap();
    let guard = Instant::now();
    while redis::cmd("EXISTS").arg(GEN).query::<i64>(&mut r).unwrap() == 1 {
        assert!(guard.elapsed() < Duration::from_secs(30), "hang guard");
        std::thread::sleep(Duration::from_millis(5));
    }
    let e = read(&s, "{ns}:e", &[GEN], LeaseMode::None).await;
    assert_eq!(e.generations, vec![0], "an absent counter reads as 0");
    assert!(e.entry.is_none(), "an absent counter matches no entry");
    // Another fill creates a new incarnation with value 0 again: still no match.
    assert_eq!(lease_and_fill(&s, "{ns}:g", &[GEN], now + 60_000).await, StoreReply::Stored);
    let e = read(&s, "{ns}:e", &[GEN], LeaseMode::None).await;
    assert_eq!(e.generations, vec![0]);
    assert!(e.entry.is_none(), "the pre-bump entry came back under a new incarnation");
    assert!(read(&s, "{ns}:g", &[GEN], LeaseMode::None).await.entry.is_some(), "the new fill is served");
    let raw: String = redis::cmd("GET").arg(GEN).query(&mut r).unwrap();
    assert!(raw.starts_with("0:"), "{raw}");
    assert!(expires_at(&mut r, GEN) >= (now + 60_000) as i64);
}

/// A counter carries its own expiry (`<value>:<epoch>:<until>`, written with the same `SET …
/// PXAT until`), so a fill whose entry it already outlives writes nothing to it — a busy key's
/// fills cost no counter command (`a_stampede_on_a_missing_key_costs_ten_redis_commands`) — and
/// one that needs more raises it past twice its own entry's lifetime, keeping the incarnation.
#[tokio::test]
async fn a_fill_writes_a_counter_only_when_the_counter_would_expire_first() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut r = server.client();
    let get = |r: &mut redis::Connection| -> String { redis::cmd("GET").arg(GEN).query(r).unwrap() };
    let now = server_ms(&mut r);
    assert_eq!(lease_and_fill(&s, "{ns}:a", &[GEN], now + 60_000).await, StoreReply::Stored);
    let (raw, at) = (get(&mut r), expires_at(&mut r, GEN));
    assert!(raw.starts_with("0:") && raw.ends_with(&format!(":{at}")), "{raw} expiring at {at}");
    assert!(at >= (now + 60_000 + 50_000) as i64, "created for about two lifetimes of its entry: {at}");
    let stamp = raw.rsplit_once(':').unwrap().0.to_owned();

    // An entry the counter outlives: the counter is not touched (same value, same expiry) —
    // also one expiring exactly with it (served only before its x, so the counter suffices).
    assert_eq!(lease_and_fill(&s, "{ns}:b", &[GEN], now + 90_000).await, StoreReply::Stored);
    assert_eq!((get(&mut r), expires_at(&mut r, GEN)), (raw.clone(), at));
    assert_eq!(lease_and_fill(&s, "{ns}:b2", &[GEN], at as u64).await, StoreReply::Stored);
    assert_eq!((get(&mut r), expires_at(&mut r, GEN)), (raw.clone(), at));

    // One that would outlive it: raised to at least that entry's expiry, same incarnation, and
    // the entries stamped with it stay valid.
    let x = at as u64 + 10_000;
    assert_eq!(lease_and_fill(&s, "{ns}:c", &[GEN], x).await, StoreReply::Stored);
    let (raw2, at2) = (get(&mut r), expires_at(&mut r, GEN));
    assert!(at2 >= x as i64, "{at2} < {x}");
    assert_eq!(raw2, format!("{stamp}:{at2}"));
    for k in ["{ns}:a", "{ns}:b", "{ns}:b2", "{ns}:c"] {
        assert!(read(&s, k, &[GEN], LeaseMode::None).await.entry.is_some(), "{k} lost its counter");
    }

    // A bump starts a new incarnation with its own expiry (the bumped-counter TTL).
    let t = server_ms(&mut r);
    bump(&s, GEN, 3).await;
    let (raw3, at3) = (get(&mut r), expires_at(&mut r, GEN));
    assert!(raw3.starts_with("3:") && raw3.ends_with(&format!(":{at3}")), "{raw3} expiring at {at3}");
    assert!(at3 >= (t + BUMPED_COUNTER_TTL_MS) as i64);
    assert!(read(&s, "{ns}:a", &[GEN], LeaseMode::None).await.entry.is_none(), "the bump orphans what was stamped before");
}

/// A counter whose value or expiry has more than 16 digits is unreadable (Lua's numbers are
/// doubles: past 2^53 they lose digits), as the fast read's `counter_stamp` has it: the scripts
/// read it as absent — value 0, no stamp, so nothing stamped matches it — and the next fill puts
/// a new incarnation over it.
#[tokio::test]
async fn a_counter_with_more_than_16_digits_reads_as_absent() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut r = server.client();
    // 16 digits are still read (the bound, not below it).
    let _: () = redis::cmd("SET").arg(GEN).arg("1234567890123456:1:1234567890123456").query(&mut r).unwrap();
    assert_eq!(read(&s, "{ns}:k", &[GEN], LeaseMode::None).await.generations, vec![1_234_567_890_123_456]);
    for raw in ["12345678901234567:1:2", "1:2:12345678901234567", "12345678901234567:1"] {
        let _: () = redis::cmd("SET").arg(GEN).arg(raw).query(&mut r).unwrap();
        assert_eq!(read(&s, "{ns}:k", &[GEN], LeaseMode::None).await.generations, vec![0], "{raw}");
        let now = server_ms(&mut r);
        assert_eq!(lease_and_fill(&s, "{ns}:k", &[GEN], now + 60_000).await, StoreReply::Stored);
        let after: String = redis::cmd("GET").arg(GEN).query(&mut r).unwrap();
        assert!(after.starts_with("0:") && after != raw, "{raw}: not replaced by a new incarnation: {after}");
    }
}
