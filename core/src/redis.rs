//! The Redis implementation of the store protocol, as data: Lua scripts (source + SHA1), how
//! each [`StoreOp`] maps onto a script call ([`encode_op`]) and how the script's reply maps back
//! onto a [`StoreReply`] ([`decode_reply`]). Pure: no IO. The Rust, Python and Node Redis adapters
//! all run exactly this: `let call = encode_op(&op)`, `EVALSHA call.script.sha1() keys args`
//! (on `NOSCRIPT`: `EVAL call.script.source`, or `SCRIPT LOAD` and retry), convert the reply to a
//! [`RedisValue`], `decode_reply(&op, value)`. Every semantic lives in the scripts and these two
//! functions, and equals [`crate::MemoryStore::apply`].
//!
//! ## Key layout (read it with `redis-cli`)
//! - One **string per entry** under the entry key (`ns:seg…`, or `{ns}:seg…` in hash-tag form),
//!   the *record*: `k1|st|x|s|h|v|g|lg|l|lu|` followed by the encoded entry bytes (see
//!   `docs/entry-format.md`); an empty field is "none". [`parse_record`] reads it.
//!
//!   | field | holds |
//!   |-------|-------|
//!   | `st` | `e` an entry, `m` an entry marked stale, `-` no entry (after a delete-invalidation, or while only a lease exists) |
//!   | `x` / `s` / `h` | expire_at / soft_at / hard_at, ms since the epoch, server clock |
//!   | `v` | version floor (highest version stored; kept after a delete until `x`) |
//!   | `g` | generations stamped at fill, comma-separated, in gen-key order |
//!   | `lg` / `l` / `lu` | the generation stamps a lease was granted under / lease token / lease valid until (ms) |
//!
//!   The string's expiry (`SET … PXAT`) is `max(x, lu)`. One string rather than a hash, so that
//!   a script reads an entry and its counters with one `MGET` and writes it, expiry included,
//!   with one `SET`: a stampede on a missing key costs 10 commands server-side, Lua's included.
//! - One **plain string per generation counter** (`ns:!gen`, `ns:!tag:<tag>`;
//!   `<value>:<epoch>:<until>`, entries stamp `<value>:<epoch>`; missing = 0 = never bumped). A
//!   counter's TTL (`until`) is at least that of every entry stamped with it (`fill` creates or
//!   raises it only when it would expire first), and at least [`BUMPED_COUNTER_TTL_MS`] after a
//!   bump; one made before counters had TTLs keeps none.
//!
//! Every key a script touches is passed in `KEYS` (entry key first, then its counters), so with
//! hash-tag keys one call stays in one Cluster slot. `now` comes from `TIME` inside the script, so
//! client clocks drop out; arithmetic is integer-only (values < 2^53; tokens, versions and
//! generations are compared as decimal strings). A value of another type or a string that is not
//! a record under an entry key reads as an *undecodable entry* (the `read` script answers empty
//! entry bytes, which the flow counts in `corrupt_entries` and treats as a miss) and is replaced
//! by the next write; an unreadable counter reads as 0. Works on Redis 7.0 and later.

use crate::store::{LeaseMode, LeaseOutcome, ReadReply, RejectReason, StoreFailure, StoreOp, StoreReply};
use std::sync::OnceLock;

/// One Lua script of the store protocol.
#[derive(Debug)]
pub struct Script {
    /// Short name (`read`, `fill`, `invalidate`, `release`, `extend`, `bump`).
    pub name: &'static str,
    /// Lua source (what `EVAL` / `SCRIPT LOAD` take).
    pub source: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    const fn new(name: &'static str, source: &'static str) -> Script {
        Script { name, source, sha: OnceLock::new() }
    }

    /// SHA1 of the source, lowercase hex (what `EVALSHA` takes). Computed once.
    pub fn sha1(&self) -> String {
        self.sha.get_or_init(|| sha1_smol::Sha1::from(self.source).digest().to_string()).clone()
    }
}

macro_rules! lua {
    ($f:literal) => {
        concat!(include_str!("redis/prelude.lua"), include_str!(concat!("redis/", $f)))
    };
}

static SCRIPTS: [Script; 6] = [
    Script::new("read", lua!("read.lua")),
    Script::new("fill", lua!("fill.lua")),
    Script::new("invalidate", lua!("invalidate.lua")),
    Script::new("release", lua!("release.lua")),
    Script::new("extend", lua!("extend.lua")),
    Script::new("bump", lua!("bump.lua")),
];
const READ: usize = 0;
const FILL: usize = 1;
const INVALIDATE: usize = 2;
const RELEASE: usize = 3;
const EXTEND: usize = 4;
const BUMP: usize = 5;

/// Every script of the protocol (e.g. to `SCRIPT LOAD` them all up front).
pub fn scripts() -> &'static [Script] {
    &SCRIPTS
}

/// The script named `name`, if any.
pub fn script(name: &str) -> Option<&'static Script> {
    SCRIPTS.iter().find(|s| s.name == name)
}

/// A Redis reply, as a binding hands it over (RESP2 shapes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RedisValue {
    /// Nil bulk / nil array.
    Nil,
    /// Integer reply.
    Int(i64),
    /// Bulk string.
    Bulk(Vec<u8>),
    /// Simple string (`+OK`).
    Status(String),
    /// Array.
    Array(Vec<RedisValue>),
    /// Error reply (`-ERR …`).
    Error(String),
}

/// One script invocation: `EVALSHA script.sha1() keys.len() keys… args…`.
#[derive(Debug, Clone)]
pub struct RedisCall {
    /// Which script.
    pub script: &'static Script,
    /// `KEYS` (entry key first, then generation counters).
    pub keys: Vec<String>,
    /// `ARGV`.
    pub args: Vec<Vec<u8>>,
}

fn num(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn csv(g: &[u64]) -> Vec<u8> {
    g.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",").into_bytes()
}

fn with_gens(key: &str, gen_keys: &[String]) -> Vec<String> {
    let mut keys = Vec::with_capacity(1 + gen_keys.len());
    keys.push(key.to_string());
    keys.extend(gen_keys.iter().cloned());
    keys
}

/// How long a bumped counter lives at least after its bump (the longest lease,
/// [`crate::policy::MAX_LEASE_TTL_MS`]): a load that read the counter before the bump finishes
/// within its lease, and until then the counter reads as the bumped value, never as absent (0),
/// so that load's fill is refused (docs/redis.md, "Counter TTLs").
pub const BUMPED_COUNTER_TTL_MS: u64 = crate::policy::MAX_LEASE_TTL_MS;

/// The largest lease token: tokens stay below 2^53, so JS numbers and Lua doubles hold them.
pub const MAX_TOKEN: u64 = (1 << 53) - 1;

/// Which script runs `op`, with which `KEYS` and `ARGV`.
pub fn encode_op(op: &StoreOp) -> RedisCall {
    let (i, keys, args) = match op {
        StoreOp::Read { key, gen_keys, lease, lease_ttl_ms } => {
            let mode: &[u8] = match lease {
                LeaseMode::None => b"0",
                LeaseMode::IfNeeded => b"1",
                LeaseMode::Force => b"2",
            };
            (READ, with_gens(key, gen_keys), vec![mode.to_vec(), num(*lease_ttl_ms)])
        }
        StoreOp::Fill { key, entry, soft_at, hard_at, expire_at, version, generations, gen_keys, token } => (
            FILL,
            with_gens(key, gen_keys),
            vec![
                entry.to_vec(),
                num(*soft_at),
                num(*hard_at),
                num(*expire_at),
                version.map(num).unwrap_or_default(),
                if generations.is_some() { b"1".to_vec() } else { b"0".to_vec() },
                generations.as_deref().map(csv).unwrap_or_default(),
                token.map(num).unwrap_or_default(),
            ],
        ),
        StoreOp::Invalidate { key, mode } => {
            let m: &[u8] = match mode {
                crate::store::InvalidateMode::Delete => b"0",
                crate::store::InvalidateMode::MarkStale => b"1",
            };
            (INVALIDATE, vec![key.clone()], vec![m.to_vec()])
        }
        StoreOp::Release { key, token } => (RELEASE, vec![key.clone()], vec![num(*token)]),
        StoreOp::Extend { key, token, lease_ttl_ms } => {
            (EXTEND, vec![key.clone()], vec![num(*token), num(*lease_ttl_ms)])
        }
        StoreOp::Bump { gen_key, value } => (
            BUMP,
            vec![gen_key.clone()],
            vec![num(*value), num(value.wrapping_add(1).max(1)), num(BUMPED_COUNTER_TTL_MS)],
        ),
    };
    RedisCall { script: &SCRIPTS[i], keys, args }
}

fn fail(op: &StoreOp, what: &str, v: &RedisValue) -> StoreFailure {
    let name = op.name();
    let mut shown = format!("{v:?}");
    if shown.len() > 200 {
        let mut cut = 200;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    StoreFailure { message: format!("redis {name}: unexpected reply ({what}): {shown}") }
}


/// An unsigned integer from an integer reply or a decimal string (some clients hand strings).
fn as_u64(v: &RedisValue) -> Option<u64> {
    match v {
        RedisValue::Int(i) => u64::try_from(*i).ok(),
        RedisValue::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        RedisValue::Status(s) => s.parse().ok(),
        _ => None,
    }
}

/// Decode the script's reply to `op` into the protocol reply. Never panics: an error reply or a
/// reply of the wrong shape is a [`StoreFailure`].
pub fn decode_reply(op: &StoreOp, reply: RedisValue) -> Result<StoreReply, StoreFailure> {
    if let RedisValue::Error(e) = &reply {
        return Err(StoreFailure { message: format!("redis {}: {e}", op.name()) });
    }
    match op {
        StoreOp::Read { gen_keys, .. } => {
            let RedisValue::Array(a) = &reply else { return Err(fail(op, "not an array", &reply)) };
            if a.len() != 6 {
                return Err(fail(op, "expected 6 elements", &reply));
            }
            let now_ms = as_u64(&a[0]).ok_or_else(|| fail(op, "now", &reply))?;
            let entry = match &a[1] {
                RedisValue::Nil => None,
                RedisValue::Bulk(b) => Some(b.as_slice().into()),
                RedisValue::Status(s) => Some(s.as_bytes().into()),
                _ => return Err(fail(op, "entry", &reply)),
            };
            let marked_stale = match as_u64(&a[2]) {
                Some(0) => false,
                Some(1) => true,
                _ => return Err(fail(op, "marked", &reply)),
            };
            let generations = match &a[3] {
                RedisValue::Array(g) => g.iter().map(as_u64).collect::<Option<Vec<u64>>>(),
                // An empty Lua table comes back as an empty array, but some clients say nil.
                RedisValue::Nil => Some(Vec::new()),
                _ => None,
            }
            .filter(|g| g.len() == gen_keys.len())
            .ok_or_else(|| fail(op, "generations", &reply))?;
            let lease = match (as_u64(&a[4]), as_u64(&a[5])) {
                (Some(0), Some(_)) => LeaseOutcome::NotRequested,
                // The script issued the token (non-zero, < 2^53 like every token).
                (Some(1), Some(token @ 1..=MAX_TOKEN)) => LeaseOutcome::Granted { token },
                (Some(2), Some(until_ms)) => LeaseOutcome::Held { until_ms },
                _ => return Err(fail(op, "lease", &reply)),
            };
            Ok(StoreReply::Read(ReadReply { now_ms, entry, marked_stale, generations, lease }))
        }
        StoreOp::Fill { .. } => match as_u64(&reply) {
            Some(0) => Ok(StoreReply::Stored),
            Some(1) => Ok(StoreReply::Rejected { reason: RejectReason::LeaseLost }),
            Some(2) => Ok(StoreReply::Rejected { reason: RejectReason::VersionNewer }),
            Some(3) => Ok(StoreReply::Rejected { reason: RejectReason::GenerationChanged }),
            _ => Err(fail(op, "fill code", &reply)),
        },
        StoreOp::Invalidate { .. } => match as_u64(&reply) {
            Some(n @ (0 | 1)) => Ok(StoreReply::Invalidated { existed: n == 1 }),
            _ => Err(fail(op, "0 or 1", &reply)),
        },
        StoreOp::Release { .. } | StoreOp::Extend { .. } => match as_u64(&reply) {
            Some(n @ (0 | 1)) => Ok(StoreReply::Lease { ok: n == 1 }),
            _ => Err(fail(op, "0 or 1", &reply)),
        },
        StoreOp::Bump { .. } => match as_u64(&reply) {
            Some(generation) => Ok(StoreReply::Bumped { generation }),
            None => Err(fail(op, "generation", &reply)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InvalidateMode;

    #[test]
    fn scripts_have_stable_distinct_shas() {
        let shas: Vec<String> = scripts().iter().map(|s| s.sha1()).collect();
        for (i, s) in shas.iter().enumerate() {
            assert_eq!(s.len(), 40);
            assert!(s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(!shas[..i].contains(s));
        }
        assert_eq!(scripts()[0].sha1(), shas[0]);
        assert!(script("fill").is_some() && script("nope").is_none());
    }

    #[test]
    fn encodes_keys_then_gen_keys() {
        let op = StoreOp::Read {
            key: "{ns}:a".into(),
            gen_keys: vec!["{ns}:!gen".into()],
            lease: LeaseMode::IfNeeded,
            lease_ttl_ms: 500,
        };
        let c = encode_op(&op);
        assert_eq!(c.script.name, "read");
        assert_eq!(c.keys, vec!["{ns}:a", "{ns}:!gen"]);
        assert_eq!(c.args, vec![b"1".to_vec(), b"500".to_vec()]);
        let b = encode_op(&StoreOp::Bump { gen_key: "g".into(), value: 7 });
        assert_eq!(b.args, vec![b"7".to_vec(), b"8".to_vec(), b"3600000".to_vec()]);
    }

    #[test]
    fn decodes_replies_and_rejects_wrong_shapes() {
        use RedisValue::*;
        let op = StoreOp::Read {
            key: "k".into(),
            gen_keys: vec!["g".into()],
            lease: LeaseMode::IfNeeded,
            lease_ttl_ms: 500,
        };
        let ok = Array(vec![Int(1000), Bulk(b"x".to_vec()), Int(0), Array(vec![Bulk(b"7".to_vec())]), Int(1), Int(42)]);
        let StoreReply::Read(r) = decode_reply(&op, ok).unwrap() else { panic!() };
        assert_eq!(r.now_ms, 1000);
        assert_eq!(r.entry.as_deref(), Some(&b"x"[..]));
        assert_eq!(r.generations, vec![7]);
        assert_eq!(r.lease, LeaseOutcome::Granted { token: 42 });
        let lease = |kind: i64, t: i64| {
            let reply = Array(vec![Int(1000), Nil, Int(0), Array(vec![Int(0)]), Int(kind), Int(t)]);
            decode_reply(&op, reply).map(|r| match r {
                StoreReply::Read(r) => r.lease,
                r => panic!("{r:?}"),
            })
        };
        assert_eq!(lease(0, 0), Ok(LeaseOutcome::NotRequested));
        assert_eq!(lease(1, 1), Ok(LeaseOutcome::Granted { token: 1 }));
        assert_eq!(lease(1, (1 << 53) - 1), Ok(LeaseOutcome::Granted { token: MAX_TOKEN }));
        assert_eq!(lease(2, 1500), Ok(LeaseOutcome::Held { until_ms: 1500 }));
        let granted = |t: i64| Array(vec![Int(1000), Nil, Int(0), Array(vec![Int(0)]), Int(1), Int(t)]);
        for bad in [Nil, Int(3), Array(vec![]), Error("ERR x".into()), Array(vec![Int(-1), Nil, Int(0), Array(vec![]), Int(0), Int(0)]), granted(0), granted(1 << 53)] {
            assert!(decode_reply(&op, bad).is_err());
        }
        let inv = StoreOp::Invalidate { key: "k".into(), mode: InvalidateMode::Delete };
        assert_eq!(decode_reply(&inv, Int(1)).unwrap(), StoreReply::Invalidated { existed: true });
        assert!(decode_reply(&inv, Int(2)).is_err());
        let bump = StoreOp::Bump { gen_key: "g".into(), value: 5 };
        assert_eq!(decode_reply(&bump, Bulk(b"6".to_vec())).unwrap(), StoreReply::Bumped { generation: 6 });
    }
}

/// The fresh-hit fast path on Redis: two plain commands sent as one pipeline (one round trip,
/// no Lua): `TIME` and `MGET key <gen keys>`. Redis runs plain commands several times faster
/// than a script call, and a fresh hit needs no atomicity: it changes nothing, and a generation
/// bump racing the pipeline either shows (mismatch → slow path) or was concurrent with this read.
/// Anything but a clean fresh hit — a miss, stale, marked, orphaned, garbage, an XFetch early
/// refresh — answers `None`, and the driver runs the [`crate::GetOrLoad`] flow (the `read`
/// script) as usual. Not for Cluster: `TIME` has no key.
pub fn fast_read_commands(key: &str, gen_keys: &[String]) -> Vec<Vec<Vec<u8>>> {
    let mut mget = Vec::with_capacity(2 + gen_keys.len());
    mget.push(b"MGET".to_vec());
    mget.push(key.as_bytes().to_vec());
    mget.extend(gen_keys.iter().map(|k| k.as_bytes().to_vec()));
    vec![vec![b"TIME".to_vec()], mget]
}

/// The Redis Cluster hash slot of `key` (0..16384): CRC16-XMODEM of the key, or of its hash tag
/// — the bytes between the first `{` and the first `}` after it, when there is at least one —
/// modulo 16384. The rule Redis uses (`CLUSTER KEYSLOT`), so a binding can route a call to the
/// node that owns it, and refuse one whose keys Redis would refuse (`CROSSSLOT`) before any IO.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&c| c == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc & 0x3FFF
}

/// Keys of one script call (or one fast read) that Redis Cluster would refuse with `CROSSSLOT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "on Redis Cluster all keys of one call must share a slot, but {first:?} is in slot {first_slot} and \
     {other:?} in slot {other_slot}; build the key in hash-tag form (Key::hash_tag(true), Python \
     Key(..., hash_tag=True), Node new Key(ns).hashTag()) so an entry and its counters share \
     its namespace's slot"
)]
pub struct CrossSlot {
    /// The first key (the entry key of a call).
    pub first: String,
    /// Its slot.
    pub first_slot: u16,
    /// The first key in another slot.
    pub other: String,
    /// That key's slot.
    pub other_slot: u16,
}

/// The one slot all `keys` hash to (see [`key_slot`]), or why Redis Cluster would refuse them
/// together. `None` for no keys (a call with no keys may run on any node).
pub fn keys_slot<K: AsRef<str>>(keys: &[K]) -> Result<Option<u16>, CrossSlot> {
    let Some(first) = keys.first() else { return Ok(None) };
    let slot = key_slot(first.as_ref().as_bytes());
    for k in &keys[1..] {
        let s = key_slot(k.as_ref().as_bytes());
        if s != slot {
            return Err(CrossSlot {
                first: first.as_ref().to_string(),
                first_slot: slot,
                other: k.as_ref().to_string(),
                other_slot: s,
            });
        }
    }
    Ok(Some(slot))
}

/// An entry key's record, as [`parse_record`] reads it (fields borrowed from the raw string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The encoded entry, if the record holds one.
    pub entry: Option<&'a [u8]>,
    /// Marked stale by an invalidation (served stale while one caller refreshes).
    pub marked: bool,
    /// expire_at: kept until (ms, server clock).
    pub expire_at: u64,
    /// soft_at / hard_at (present with an entry).
    pub soft_at: Option<u64>,
    /// See `soft_at`.
    pub hard_at: Option<u64>,
    /// Version floor, as the canonical decimal the scripts compare.
    pub version_floor: Option<&'a [u8]>,
    /// Generation stamps of the entry, comma-separated.
    pub generations: &'a [u8],
    /// The lease: token, valid until (ms), and the generation stamps it was granted under.
    pub lease: Option<(u64, u64, &'a [u8])>,
}

fn digits_upto(b: &[u8], max: usize) -> Option<u64> {
    if b.is_empty() || b.len() > max || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Read an entry key's record, by exactly the rules of the scripts' `load` (the prelude): `None`
/// for anything that is not a record (garbage). Whether it is still alive (`now` against
/// `max(expire_at, lease)`) is the caller's question.
pub fn parse_record(raw: &[u8]) -> Option<Record<'_>> {
    let rest = raw.strip_prefix(b"k1|")?;
    let mut f: [&[u8]; 9] = [&[]; 9];
    let mut at = 0;
    for slot in f.iter_mut() {
        let n = rest[at..].iter().position(|&c| c == b'|')?;
        *slot = &rest[at..at + n];
        at += n + 1;
    }
    let [st, x, s, h, v, g, lg, l, lu] = f;
    let stamps = |b: &[u8]| b.iter().all(|&c| c.is_ascii_digit() || c == b',' || c == b':');
    if !stamps(g) || !stamps(lg) || ![s, h, v, l, lu].iter().all(|b| b.iter().all(u8::is_ascii_digit)) {
        return None;
    }
    let expire_at = digits_upto(x, 16)?;
    let (entry, marked, soft_at, hard_at) = match st {
        b"-" => (None, false, None, None),
        b"e" | b"m" => (Some(&rest[at..]), st == b"m", Some(digits_upto(s, 16)?), Some(digits_upto(h, 16)?)),
        _ => return None,
    };
    let version_floor = match v {
        b"" => None,
        v if v.len() <= 20 => Some(v),
        _ => return None,
    };
    let lease = match l {
        b"" => None,
        l => Some((digits_upto(l, 16)?, digits_upto(lu, 16)?, lg)),
    };
    Some(Record { entry, marked, expire_at, soft_at, hard_at, version_floor, generations: g, lease })
}

fn bulk_str(v: &RedisValue) -> Option<&[u8]> {
    match v {
        RedisValue::Bulk(b) => Some(b),
        RedisValue::Status(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A counter as the scripts stamp it (`parse_counter` in the prelude): `<value>:<epoch>` of a
/// `<value>:<epoch>:<until>` counter, a `<value>:<epoch>` or plain decimal counter as is;
/// missing or unreadable has no stamp.
fn counter_stamp(v: &RedisValue) -> Option<&[u8]> {
    let b = bulk_str(v)?;
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let mut parts = b.split(|&c| c == b':');
    let value = parts.next()?;
    if value.len() > 16 || !digits(value) {
        return None;
    }
    match (parts.next(), parts.next(), parts.next()) {
        (None, ..) => Some(b),
        (Some(e), None, _) if digits(e) => Some(b),
        (Some(e), Some(u), None) if digits(e) && u.len() <= 16 && digits(u) => Some(&b[..value.len() + 1 + e.len()]),
        _ => None,
    }
}

/// Interpret the replies to [`fast_read_commands`] (in order). `Some` only for a clean fresh
/// hit, counted in `stats`; see [`fast_read_commands`].
pub fn fast_read_result(
    replies: &[RedisValue],
    policy: &crate::Policy,
    rand: u64,
    stats: &crate::stats::AtomicStats,
) -> Option<crate::Served> {
    let s = fast_read_hit(replies, policy, rand)?;
    let mut c = crate::Stats::default();
    if s.negative {
        c.negative_hits = 1;
    } else {
        c.hits_fresh = 1;
    }
    stats.add(&c);
    Some(s)
}

/// [`fast_read_result`] without counting (the coordinator counts).
pub fn fast_read_hit(
    replies: &[RedisValue],
    policy: &crate::Policy,
    rand: u64,
) -> Option<crate::Served> {
    let [RedisValue::Array(t), RedisValue::Array(vals)] = replies else { return None };
    let secs: u64 = std::str::from_utf8(bulk_str(t.first()?)?).ok()?.parse().ok()?;
    let micros: u64 = std::str::from_utf8(bulk_str(t.get(1)?)?).ok()?.parse().ok()?;
    let now = secs.checked_mul(1000)?.checked_add(micros / 1000)?;
    let [rec, current @ ..] = vals.as_slice() else { return None };
    let r = parse_record(bulk_str(rec)?)?;
    let entry = r.entry?;
    if r.marked || now >= r.expire_at.max(r.lease.map_or(0, |l| l.1)) {
        return None;
    }
    // Stamped generations must equal the current ones, compared as the scripts compare them.
    let stamped = r.generations;
    let mut parts = stamped.split(|&c| c == b',');
    if current.is_empty() {
        if !stamped.is_empty() {
            return None;
        }
    } else {
        for c in current {
            if parts.next()? != counter_stamp(c)? {
                return None;
            }
        }
        if parts.next().is_some() {
            return None;
        }
    }
    let (h, value) = crate::entry::decode_view(entry).ok()?;
    if crate::freshness::decide_raw(now, h.soft_at, h.hard_at, h.load_ms, policy, rand)
        != crate::Decision::Fresh
    {
        return None;
    }
    Some(crate::Served {
        value: value.into(),
        codec: h.codec,
        negative: h.negative,
        version: h.version,
        source: crate::Source::Fresh,
        cached: true,
    })
}

#[cfg(test)]
mod fast_read_tests {
    #[test]
    fn key_slot_is_redis_cluster_keyslot() {
        // Values from the Redis Cluster spec and `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}")); // empty tag: whole key
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b""), 0);
        let k = crate::Key::new("user").unwrap().hash_tag(true).segment("42");
        assert_eq!(keys_slot(&[k.as_str(), &k.generation_key(), &k.tag_key("t")]), Ok(Some(key_slot(b"user"))));
        let plain = crate::Key::new("user").unwrap().segment("42");
        let e = keys_slot(&[plain.as_str(), &plain.generation_key()]).unwrap_err();
        assert_eq!((e.first.as_str(), e.other.as_str()), ("user:42", "user:!gen"));
        assert!(e.to_string().contains("hash-tag"), "{e}");
        assert_eq!(keys_slot::<&str>(&[]), Ok(None));
    }

    use super::*;
    use crate::entry::Entry;
    use crate::stats::AtomicStats;

    /// A record as the scripts write it (`save` in the prelude).
    fn record(entry: Option<&[u8]>, stamped: &str, marked: bool, expire_at: u64) -> Vec<u8> {
        let st = match (entry, marked) {
            (None, _) => "-",
            (Some(_), false) => "e",
            (Some(_), true) => "m",
        };
        let sh = if entry.is_some() { "2000|3000" } else { "|" };
        let mut r = format!("k1|{st}|{expire_at}|{sh}||{stamped}||||").into_bytes();
        r.extend_from_slice(entry.unwrap_or_default());
        r
    }

    fn replies(entry: Option<Vec<u8>>, stamped: &str, marked: bool, current: &[&str], now_ms: u64) -> Vec<RedisValue> {
        let b = |s: &str| RedisValue::Bulk(s.as_bytes().to_vec());
        let mut vals = vec![RedisValue::Bulk(record(entry.as_deref(), stamped, marked, 9_999))];
        vals.extend(current.iter().map(|c| if c.is_empty() { RedisValue::Nil } else { b(c) }));
        vec![
            RedisValue::Array(vec![b(&(now_ms / 1000).to_string()), b(&((now_ms % 1000) * 1000 + 7).to_string())]),
            RedisValue::Array(vals),
        ]
    }

    #[test]
    fn records_parse_by_the_scripts_rules() {
        let r = record(Some(b"a|b\n"), "5:77,0:12", true, 9_999);
        let p = parse_record(&r).unwrap();
        assert_eq!(p.entry, Some(&b"a|b\n"[..]), "entry bytes may hold anything, '|' included");
        assert!(p.marked);
        assert_eq!((p.expire_at, p.soft_at, p.hard_at), (9_999, Some(2_000), Some(3_000)));
        assert_eq!(p.generations, b"5:77,0:12");
        assert_eq!(p.lease, None);
        let lease = parse_record(b"k1|-|0|||||1:2|42|1500|").unwrap();
        assert_eq!((lease.entry, lease.lease), (None, Some((42, 1_500, &b"1:2"[..]))));
        assert_eq!(parse_record(b"k1|-|0||||||||").unwrap().version_floor, None);
        assert_eq!(parse_record(b"k1|-|7|||18446744073709551615|||||").unwrap().version_floor, Some(&b"18446744073709551615"[..]));
        for bad in [
            &b""[..], b"garbage", b"k2|e|1|2|3||||||x", b"k1|e|1|2|3|||||x", b"k1|x|1|2|3||||||x",
            b"k1|e||2|3||||||x", b"k1|e|1||3||||||x", b"k1|e|1|2|3||a||||x",
            b"k1|-|1||||||7||", b"k1|e|12345678901234567|2|3||||||x", b"k1|-|1|||123456789012345678901|||||",
        ] {
            assert_eq!(parse_record(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn only_a_clean_fresh_hit_takes_the_fast_path() {
        let p = crate::Policy::default();
        let st = AtomicStats::default();
        let e = Entry { value: b"42".to_vec(), codec: 1, soft_at: 2_000, hard_at: 3_000, ..Default::default() }.encode();
        let hit = fast_read_result(&replies(Some(e.clone()), "5:77,0:12", false, &["5:77", "0:12"], 1_500), &p, 0, &st).unwrap();
        assert_eq!(&*hit.value, b"42");
        assert_eq!(st.snapshot().hits_fresh, 1);
        // a plain decimal counter (hand-written, INCR) is its own stamp
        assert!(fast_read_result(&replies(Some(e.clone()), "5,0:12", false, &["5", "0:12"], 1_500), &p, 0, &st).is_some());
        // a counter that carries its expiry stamps as `<value>:<epoch>` (the scripts' parse_counter)
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77,0:12", false, &["5:77:9999", "0:12:123"], 1_500), &p, 0, &st).is_some());
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77:9999,0:12", false, &["5:77:9999", "0:12"], 1_500), &p, 0, &st).is_none());
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77,0:12", false, &["5:77:", "0:12"], 1_500), &p, 0, &st).is_none());
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77,0:12", false, &["5:77:1:2", "0:12"], 1_500), &p, 0, &st).is_none());
        // ≤ 16 digits of value and of until, as the scripts read them (more is unreadable = absent)
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77,0:12", false, &["5:77:1234567890123456", "0:12"], 1_500), &p, 0, &st).is_some());
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77,0:12", false, &["5:77:12345678901234567", "0:12"], 1_500), &p, 0, &st).is_none());
        // a counter lost to eviction matches nothing, not even an entry stamped before any bump
        assert!(fast_read_result(&replies(Some(e.clone()), "0:12", false, &[""], 1_500), &p, 0, &st).is_none());
        // the same value in a new incarnation is a different counter
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77,0:12", false, &["5:78", "0:12"], 1_500), &p, 0, &st).is_none());
        // stale (exactly at soft_at), bumped, marked, missing, corrupt: all go to the flow
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77,0:12", false, &["5:77", "0:12"], 2_000), &p, 0, &st).is_none());
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77,0:12", false, &["6:80", "0:12"], 1_500), &p, 0, &st).is_none());
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77", false, &["5:77", "0:12"], 1_500), &p, 0, &st).is_none());
        assert!(fast_read_result(&replies(Some(e.clone()), "5:77,0:12", true, &["5:77", "0:12"], 1_500), &p, 0, &st).is_none());
        assert!(fast_read_result(&replies(None, "", false, &["5:77", "0:12"], 1_500), &p, 0, &st).is_none());
        assert!(fast_read_result(&replies(Some(b"garbage".to_vec()), "5:77,0:12", false, &["5:77", "0:12"], 1_500), &p, 0, &st).is_none());
        assert!(fast_read_result(&[RedisValue::Error("LOADING".into())], &p, 0, &st).is_none());
        assert_eq!(st.snapshot().hits_fresh, 4);
        // no generation keys: stamped must be empty
        assert!(fast_read_result(&replies(Some(e.clone()), "", false, &[], 1_500), &p, 0, &st).is_some());
        assert_eq!(fast_read_commands("k", &[]).len(), 2);
    }
}
