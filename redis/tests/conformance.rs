//! One semantics, two backends: the same op sequences against `MemoryStore::apply` and a real
//! Redis (single node and Cluster) give the same replies.
//!
//! Time: the memory store runs on a virtual clock `base + tick * T`; the test sleeps until the
//! wall clock reaches that instant before sending the op to Redis (same machine, same clock).
//! Every absolute time in the ops (soft/hard/expire, lease ends) lies half a tick off the tick
//! grid, so Redis being a few ms late never crosses a boundary. `now_ms` is normalized away;
//! a held lease's `until_ms` is compared in ticks.

use karlton::Store;
use karlton_core::redis::{RedisValue, decode_reply, encode_op};
use karlton_core::store::{Bytes, LeaseOutcome, ReadReply, StoreOp, StoreReply};
use karlton_core::{InvalidateMode, LeaseMode, MemoryStore};
use karlton_redis::RedisStore;
use karlton_redis::testing::{RedisCluster, RedisServer};
use std::time::Duration;

const TICK: u64 = 120;
const HALF: u64 = TICK / 2;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

fn wall_ms() -> u64 {
    karlton::now_ms()
}

async fn sleep_until(t: u64) {
    let now = wall_ms();
    if t > now {
        tokio::time::sleep(Duration::from_millis(t - now)).await;
    }
}

/// Replace what legitimately differs (the clock) by something comparable.
fn normalize(r: StoreReply, base: u64) -> StoreReply {
    match r {
        StoreReply::Read(mut rr) => {
            rr.now_ms = 0;
            if let LeaseOutcome::Held { until_ms } = rr.lease {
                rr.lease = LeaseOutcome::Held { until_ms: (until_ms - base) / TICK };
            }
            StoreReply::Read(rr)
        }
        r => r,
    }
}

/// Tokens are issued by each store (memory: a count; Redis: the server clock in µs), so ops are
/// written in the memory store's tokens and `to_redis` maps each to the token Redis issued for
/// the same grant. A token no grant issued (a deliberately wrong one) passes unchanged: neither
/// store ever issued it.
#[derive(Default)]
struct Tokens(std::collections::HashMap<u64, u64>);

impl Tokens {
    /// `op` as Redis must see it.
    fn to_redis(&self, op: &StoreOp) -> StoreOp {
        let mut op = op.clone();
        if let Some(t) = op.token_mut() {
            *t = self.0.get(t).copied().unwrap_or(*t);
        }
        op
    }

    /// Pair the two stores' grants, and answer Redis's reply in the memory store's tokens.
    fn pair(&mut self, want: &StoreReply, got: StoreReply) -> StoreReply {
        match (want, got) {
            (StoreReply::Read(w), StoreReply::Read(mut g)) => {
                if let (LeaseOutcome::Granted { token: m }, LeaseOutcome::Granted { token: r }) = (w.lease, g.lease) {
                    assert!(!self.0.values().any(|&t| t == r), "redis issued token {r} twice");
                    self.0.insert(m, r);
                    g.lease = LeaseOutcome::Granted { token: m };
                }
                StoreReply::Read(g)
            }
            (_, g) => g,
        }
    }
}

/// A random op at virtual time `t` (ms since base), for keys under `ns`.
fn random_op(rng: &mut Rng, ns: &str, t: u64, base: u64, mem: &MemoryStore, tokens: &[u64; 2]) -> StoreOp {
    let keys = [format!("{{{ns}}}:a"), format!("{{{ns}}}:b")];
    let g1 = format!("{{{ns}}}:!gen");
    let g2 = format!("{{{ns}}}:!tag:t");
    let gsets: [Vec<String>; 3] = [vec![], vec![g1.clone()], vec![g1.clone(), g2.clone()]];
    // Mostly one key with its own gen keys (so fills land and entries get served), sometimes not.
    let ki = if rng.below(4) == 0 { 1 } else { 0 };
    let key = keys[ki].clone();
    let gen_keys = if rng.below(5) == 0 { rng.pick(&gsets).clone() } else { gsets[ki + 1].clone() };
    let last_token = &tokens[ki];
    let at = |k: u64| base + t + k * TICK + HALF;
    let token_of = |rng: &mut Rng, last: u64| if rng.below(5) == 0 { 1 + rng.below(4) } else { last.max(1) };
    match rng.below(14) {
        0..=3 => {
            let lease = *rng.pick(&[LeaseMode::None, LeaseMode::IfNeeded, LeaseMode::IfNeeded, LeaseMode::Force]);
            StoreOp::Read { key, gen_keys, lease, lease_ttl_ms: rng.below(4) * TICK + HALF }
        }
        4..=7 => {
            let soft = rng.below(3);
            let hard = soft + rng.below(3);
            let expire = hard + rng.below(3);
            let expire_at = if rng.below(8) == 0 { base + t.saturating_sub(HALF) } else { at(expire) };
            let cur = mem.apply(base + t, &StoreOp::Read {
                key: "{x}:probe".into(),
                gen_keys: gen_keys.clone(),
                lease: LeaseMode::None,
                lease_ttl_ms: 0,
            });
            let StoreReply::Read(cur) = cur else { unreachable!() };
            let generations = match rng.below(4) {
                0 => None,
                1 if rng.below(2) == 0 => Some(cur.generations.iter().map(|g| g ^ 1).collect()),
                _ => Some(cur.generations),
            };
            let len = rng.below(40) as usize;
            let entry: Bytes = (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>().into();
            StoreOp::Fill {
                key,
                entry,
                soft_at: at(soft),
                hard_at: at(hard),
                expire_at,
                version: if rng.below(2) == 0 { None } else { Some(1 + rng.below(3)) },
                generations,
                gen_keys,
                token: if rng.below(4) == 0 { None } else { Some(token_of(rng, *last_token)) },
            }
        }
        8 | 9 => StoreOp::Invalidate {
            key,
            mode: if rng.below(2) == 0 { InvalidateMode::Delete } else { InvalidateMode::MarkStale },
        },
        10 => StoreOp::Release { key, token: token_of(rng, *last_token) },
        11 => StoreOp::Extend { key, token: token_of(rng, *last_token), lease_ttl_ms: rng.below(3) * TICK + HALF },
        _ => StoreOp::Bump { gen_key: rng.pick(&[g1, g2]).clone(), value: 5 + rng.below(3) },
    }
}

/// Runs one random sequence; retries it (in a fresh namespace) when the machine was too
/// loaded to keep the replies on the tick grid, which says nothing about semantics.
/// The kinds of replies one seed's sequence produced (coarse: what branch of the protocol ran).
async fn run_seed<S: Store>(store: &S, seed: u64, ops: usize) -> std::collections::BTreeSet<String> {
    for attempt in 0..4 {
        match run_seed_once(store, seed, ops, attempt).await {
            Ok(kinds) => return kinds,
            Err(e) => eprintln!("{e} (attempt {attempt})"),
        }
    }
    panic!("seed {seed}: redis never kept up with the tick grid in 4 attempts");
}

async fn run_seed_once<S: Store>(store: &S, seed: u64, ops: usize, attempt: u32) -> Result<std::collections::BTreeSet<String>, String> {
    let mem = MemoryStore::default();
    let ns = format!("c{seed}a{attempt}");
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let base = wall_ms() + 20;
    let mut t = 0;
    // The last token granted on each key (memory-store terms): what most lease ops use.
    let mut tokens = [1u64; 2];
    let mut map = Tokens::default();
    let mut branches = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..ops {
        if rng.below(3) == 0 {
            t += TICK * (1 + rng.below(2));
        }
        let op = random_op(&mut rng, &ns, t, base, &mem, &tokens);
        sleep_until(base + t).await;
        let want = mem.apply(base + t, &op);
        let got = store.execute(map.to_redis(&op)).await.unwrap_or_else(|e| panic!("seed {seed} op {i} {op:?}: {e}"));
        if wall_ms() >= base + t + HALF {
            return Err(format!("seed {seed} op {i}: redis too slow for the tick grid"));
        }
        let got = map.pair(&want, got);
        if let StoreReply::Read(ReadReply { lease: LeaseOutcome::Granted { token }, .. }) = &want {
            tokens[usize::from(op.key().ends_with(":b"))] = *token;
        }
        let label = match &want {
            StoreReply::Read(r) => {
                let lease = match r.lease {
                    LeaseOutcome::NotRequested => "not_requested",
                    LeaseOutcome::Granted { .. } => "granted",
                    LeaseOutcome::Held { .. } => "held",
                };
                format!("read entry={} marked={} lease={lease}", r.entry.is_some(), r.marked_stale)
            }
            StoreReply::Bumped { .. } => "bumped".to_owned(),
            r => format!("{r:?}"),
        };
        *branches.entry(label).or_default() += 1;
        assert_eq!(normalize(got, base), normalize(want, base), "seed {seed} op {i}: {op:?}");
    }
    eprintln!("seed {seed}: {} distinct reply kinds: {branches:?}", branches.len());
    Ok(branches.keys().cloned().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_and_redis_agree_on_random_sequences() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).await.unwrap().with_timeout(Duration::from_secs(2));
    let mut tasks = Vec::new();
    for seed in 1..=8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { run_seed(&store, seed, 120).await }));
    }
    let mut kinds = std::collections::BTreeSet::new();
    for t in tasks {
        kinds.extend(t.await.unwrap());
    }
    // The sequences are deterministic (seeded, on a virtual clock): they must keep reaching every
    // branch of the protocol, or "memory and redis agree" says little.
    let required = [
        "read entry=false marked=false lease=granted",
        "read entry=false marked=false lease=held",
        "read entry=false marked=false lease=not_requested",
        "read entry=true marked=false lease=not_requested",
        "read entry=true marked=true lease=granted",
        "Stored",
        "Rejected { reason: LeaseLost }",
        "Rejected { reason: VersionNewer }",
        "Rejected { reason: GenerationChanged }",
        "Invalidated { existed: true }",
        "Invalidated { existed: false }",
        "Lease { ok: true }",
        "Lease { ok: false }",
        "bumped",
    ];
    let missing: Vec<&str> = required.iter().copied().filter(|k| !kinds.contains(*k)).collect();
    assert!(missing.is_empty(), "reply kinds never reached by the random sequences: {missing:?} (reached: {kinds:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_and_redis_cluster_agree() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(|s| s.as_str()).collect();
    let mut store = None;
    for _ in 0..20 {
        match RedisStore::cluster(&nodes).await {
            Ok(s) => {
                store = Some(s);
                break;
            }
            Err(e) => {
                eprintln!("cluster connect: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let store = store.expect("cluster connect").with_timeout(Duration::from_secs(2));
    let mut tasks = Vec::new();
    for seed in 101..=106u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { run_seed(&store, seed, 80).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Garbage under a karlton key — another type, a string that is not a record, a record with
/// invalid fields — reads as an undecodable entry (empty bytes: the flow counts it in
/// `corrupt_entries` and treats it as a miss), never blocks the lease, and the next fill wins.
#[tokio::test]
async fn corrupt_data_reads_as_undecodable_and_is_overwritten() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).await.unwrap();
    let mut c = server.client();
    let _: () = redis::cmd("SET").arg("{g}:str").arg("garbage").query(&mut c).unwrap();
    let _: () = redis::cmd("RPUSH").arg("{g}:list").arg("x").query(&mut c).unwrap();
    let _: () = redis::cmd("HSET").arg("{g}:hash").arg("foo").arg("bar").query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("{g}:badx").arg("k1|e|soon|1|2||||||zz").query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("{g}:nos").arg("k1|e|99999999999999||2||||||zz").query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("{g}:!gen").arg("not-a-number").query(&mut c).unwrap();
    for k in ["{g}:str", "{g}:list", "{g}:hash", "{g}:badx", "{g}:nos"] {
        let r = store
            .execute(StoreOp::Read { key: k.into(), gen_keys: vec!["{g}:!gen".into()], lease: LeaseMode::IfNeeded, lease_ttl_ms: 5000 })
            .await
            .unwrap();
        let StoreReply::Read(r) = r else { panic!() };
        assert_eq!(r.entry.as_deref(), Some(&b""[..]), "{k}: an entry that does not decode");
        assert_eq!(r.generations, vec![0], "unreadable counter reads as 0");
        let LeaseOutcome::Granted { token } = r.lease else { panic!("{k}: {:?}", r.lease) };
        let now = r.now_ms;
        let fill = StoreOp::Fill {
            key: k.into(),
            entry: b"fresh".to_vec().into(),
            soft_at: now + 10_000,
            hard_at: now + 20_000,
            expire_at: now + 20_000,
            version: None,
            generations: Some(vec![0]),
            gen_keys: vec!["{g}:!gen".into()],
            token: Some(token),
        };
        assert_eq!(store.execute(fill).await.unwrap(), StoreReply::Stored, "{k}");
        let raw: Vec<u8> = redis::cmd("GET").arg(k).query(&mut c).unwrap();
        let rec = karlton_core::redis::parse_record(&raw).expect("a record");
        assert_eq!(rec.entry, Some(&b"fresh"[..]));
    }
    // A plain read (no lease) of a value of another type reports it too, and deletes it.
    let _: () = redis::cmd("SADD").arg("{g}:set").arg("x").query(&mut c).unwrap();
    let r = store
        .execute(StoreOp::Read { key: "{g}:set".into(), gen_keys: vec![], lease: LeaseMode::None, lease_ttl_ms: 5000 })
        .await
        .unwrap();
    let StoreReply::Read(r) = r else { panic!() };
    assert_eq!((r.entry.as_deref(), r.lease), (Some(&b""[..]), LeaseOutcome::NotRequested));
    let exists: i64 = redis::cmd("EXISTS").arg("{g}:set").query(&mut c).unwrap();
    assert_eq!(exists, 0);
    // A bump over an unreadable counter replaces it.
    let b = store.execute(StoreOp::Bump { gen_key: "{g}:!gen".into(), value: 77 }).await.unwrap();
    assert_eq!(b, StoreReply::Bumped { generation: 77 });
}

/// The raw path a binding takes (encode → EVALSHA/EVAL → RedisValue → decode) needs nothing
/// from this crate but the script data: check it with a plain `redis` connection and EVAL.
#[tokio::test]
async fn binding_path_with_plain_eval() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let op = StoreOp::Bump { gen_key: "ns:!gen".into(), value: 3 };
    let call = encode_op(&op);
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(call.script.sha1()).arg(call.keys.len()).arg(&call.keys).arg(&call.args);
    let err = cmd.query_async::<redis::Value>(&mut conn).await.unwrap_err();
    assert_eq!(err.code(), Some("NOSCRIPT"));
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(call.script.source).arg(call.keys.len()).arg(&call.keys).arg(&call.args);
    let v = karlton_redis::to_value(cmd.query_async(&mut conn).await.unwrap());
    assert_eq!(v, RedisValue::Bulk(b"3".to_vec()));
    assert_eq!(decode_reply(&op, v).unwrap(), StoreReply::Bumped { generation: 3 });
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(call.script.source).query_async(&mut conn).await.unwrap();
    assert_eq!(sha, call.script.sha1());
}

/// `tests/vectors/store.json` (the shared conformance vectors) against Redis: every case's ops,
/// with the vector clock stretched ×`K` onto the real one, must give the replies the memory store
/// gives (and, for cases not marked `pending`, the expected replies).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_vectors_against_redis() {
    const K: u64 = 20;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/store.json");
    // A missing file is a failure, never a skip; so is a file below its floor in floors.txt.
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floors_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/floors.txt");
    let floors = std::fs::read_to_string(floors_path).unwrap_or_else(|e| panic!("{floors_path}: {e}"));
    let floor: usize = floors
        .lines()
        .find_map(|l| l.strip_prefix("store.json").map(|n| n.trim().parse().expect("floors.txt: store.json floor")))
        .expect("floors.txt lists store.json");
    let cases = doc["cases"].as_array().expect("store.json: cases").len();
    assert!(cases >= floor, "store.json: {cases} cases, fewer than its floor {floor}");
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).await.unwrap().with_timeout(Duration::from_secs(2));
    store.load_scripts().await.unwrap();
    let mut tasks = Vec::new();
    for (ci, case) in doc["cases"].as_array().unwrap().iter().cloned().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let name = case["name"].as_str().unwrap().to_string();
            let pending = case.get("pending").is_some();
            let ops: Vec<(u64, StoreOp)> = case["input"]["ops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| (o["now"].as_u64().unwrap(), serde_json::from_value(o["op"].clone()).unwrap()))
                .collect();
            // The vectors' tokens are the memory store's (it counts from 1 in each case).
            let mem = MemoryStore::default();
            let want: Vec<StoreReply> = ops.iter().map(|(now, op)| mem.apply(*now, op)).collect();
            if !pending {
                let expect: Vec<StoreReply> = serde_json::from_value(case["expect"]["replies"].clone()).unwrap();
                assert_eq!(want, expect, "{name}: memory store vs vector");
            }
            // Each op runs `offset` ms into its K-ms slot. A lease's end is the server's `now`
            // at grant + ttl, so a later op at exactly that vector instant must run at least as
            // far into its slot as the grant did: the offset ratchets up past every grant's drift.
            'attempt: for attempt in 0..6 {
                let n0 = ops[0].0;
                let base = wall_ms() + 30 + (ci as u64 % 16) * 3;
                let at = |x: u64| (base as i128 + (x as i128 - n0 as i128) * K as i128).max(0) as u64;
                let pre = format!("v{ci}.{attempt}:");
                let mut offset = 1;
                let mut map = Tokens::default();
                for (i, (now, op)) in ops.iter().enumerate() {
                    let mut op = map.to_redis(op);
                    match &mut op {
                        StoreOp::Read { key, gen_keys, lease_ttl_ms, .. } => {
                            *key = format!("{pre}{key}");
                            gen_keys.iter_mut().for_each(|g| *g = format!("{pre}{g}"));
                            *lease_ttl_ms *= K;
                        }
                        StoreOp::Fill { key, gen_keys, soft_at, hard_at, expire_at, .. } => {
                            *key = format!("{pre}{key}");
                            gen_keys.iter_mut().for_each(|g| *g = format!("{pre}{g}"));
                            *soft_at = at(*soft_at);
                            *hard_at = at(*hard_at);
                            *expire_at = at(*expire_at);
                        }
                        StoreOp::Invalidate { key, .. } | StoreOp::Release { key, .. } => *key = format!("{pre}{key}"),
                        StoreOp::Extend { key, lease_ttl_ms, .. } => {
                            *key = format!("{pre}{key}");
                            *lease_ttl_ms *= K;
                        }
                        StoreOp::Bump { gen_key, .. } => *gen_key = format!("{pre}{gen_key}"),
                    }
                    let slot = at(*now);
                    sleep_until(slot + offset).await;
                    let got = store.execute(op.clone()).await.unwrap();
                    let done = wall_ms();
                    if done >= slot + K - 1 {
                        eprintln!("{name}: late at op {i}, retrying");
                        continue 'attempt;
                    }
                    let back = |t: u64| n0 + (t - base) / K;
                    let got = match got {
                        StoreReply::Read(mut r) => {
                            if let LeaseOutcome::Granted { .. } = r.lease {
                                offset = offset.max(r.now_ms.saturating_sub(slot) + 1);
                            }
                            r.now_ms = back(r.now_ms);
                            if let LeaseOutcome::Held { until_ms } = r.lease {
                                r.lease = LeaseOutcome::Held { until_ms: back(until_ms) };
                            }
                            StoreReply::Read(r)
                        }
                        StoreReply::Lease { ok: true } if matches!(op, StoreOp::Extend { .. }) => {
                            offset = offset.max(done - slot + 1);
                            StoreReply::Lease { ok: true }
                        }
                        r => r,
                    };
                    let got = map.pair(&want[i], got);
                    assert_eq!(got, want[i], "{name} op {i}: redis vs memory ({op:?})");
                }
                return ops.len();
            }
            panic!("{name}: too late 6 times in a row");
        }));
    }
    let (mut n, mut ops) = (0, 0);
    for t in tasks {
        ops += t.await.unwrap();
        n += 1;
    }
    eprintln!("store.json: {n} cases ({ops} ops) agree on redis");
    assert_eq!(n, cases, "store.json: ran {n} of its {cases} cases");
    assert!(ops >= cases, "store.json: only {ops} ops ran over {cases} cases");
}

/// C2: Redis issues lease tokens itself (`read.lua`), never a client: the server clock in µs and
/// above the record's previous token, which a lease that ends — revoked by a delete or a
/// mark-stale, released, or consumed by a fill — leaves behind as the floor. So on one key every
/// grant's token is larger than every earlier one's, and no client state can repeat one.
#[tokio::test]
async fn redis_issues_lease_tokens_that_only_grow_on_a_key() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).await.unwrap();
    let mut c = server.client();
    let k = "{t}:k";
    let force = StoreOp::Read { key: k.into(), gen_keys: vec![], lease: LeaseMode::Force, lease_ttl_ms: 60_000 };
    let grant = |r: StoreReply| match r {
        StoreReply::Read(ReadReply { lease: LeaseOutcome::Granted { token }, now_ms, .. }) => (token, now_ms),
        r => panic!("no grant: {r:?}"),
    };
    let record_token = |c: &mut redis::Connection| -> u64 {
        let raw: Vec<u8> = redis::cmd("GET").arg(k).query(c).unwrap();
        let rec = karlton_core::redis::parse_record(&raw).expect("the record stays, with its last token");
        rec.lease.expect("the ended lease's token is kept").0
    };
    let mut last = 0;
    for round in 0..40u64 {
        let (token, now_ms) = grant(store.execute(force.clone()).await.unwrap());
        assert!(token > last, "round {round}: token {token} after {last}");
        assert!(token / 1000 >= now_ms && token / 1000 < now_ms + 1_000, "the server clock in µs: {token} at {now_ms} ms");
        let end = match round % 4 {
            0 => StoreOp::Invalidate { key: k.into(), mode: InvalidateMode::Delete },
            1 => StoreOp::Invalidate { key: k.into(), mode: InvalidateMode::MarkStale },
            2 => StoreOp::Release { key: k.into(), token },
            _ => StoreOp::Fill {
                key: k.into(),
                entry: b"e".to_vec().into(),
                soft_at: now_ms + 60_000,
                hard_at: now_ms + 60_000,
                expire_at: now_ms + 60_000,
                version: None,
                generations: None,
                gen_keys: vec![],
                token: Some(token),
            },
        };
        store.execute(end).await.unwrap();
        assert_eq!(record_token(&mut c), token, "round {round}: the floor after the lease ended");
        last = token;
    }
    // A floor above the clock (a clock stepped back, or a grant within the same µs) wins.
    let far = last + 1_000_000_000;
    let (_, now) = grant(store.execute(force.clone()).await.unwrap());
    let rec = format!("k1|-|{}||||||{far}|{now}|", now + 60_000);
    let _: () = redis::cmd("SET").arg(k).arg(rec).arg("PX").arg(60_000).query(&mut c).unwrap();
    let (token, _) = grant(store.execute(force).await.unwrap());
    assert_eq!(token, far + 1);
}
