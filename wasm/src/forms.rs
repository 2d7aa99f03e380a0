//! karlton-core's serde forms, read and written by hand (see [`crate::json`]).
//!
//! Each reader accepts what the core type's serde derive accepts as a JSON object; each writer
//! produces the bytes `serde_json::to_writer` produces. Every struct is destructured
//! exhaustively, so a field added in the core fails to compile here instead of drifting; the
//! differential tests and the conformance vectors check the bytes.

use karlton_core::entry::Entry;
use karlton_core::flow::{FlowError, Input, Loaded, Request, Served, Source, Step, Write};
use karlton_core::store::{
    InvalidateMode, LeaseMode, LeaseOutcome, ReadReply, RejectReason, StoreFailure, StoreOp,
    StoreReply,
};
use karlton_core::{Policy, Stats};

use karlton_core::json::Value;

use crate::api::Fail;
use crate::json::{self, O, Obj, bad};

// ---------------------------------------------------------------------------------------------
// Readers

const LEASE_MODES: &[(&str, LeaseMode)] = &[
    ("none", LeaseMode::None),
    ("if_needed", LeaseMode::IfNeeded),
    ("force", LeaseMode::Force),
];
pub(crate) const INVALIDATE_MODES: &[(&str, InvalidateMode)] = &[
    ("delete", InvalidateMode::Delete),
    ("mark_stale", InvalidateMode::MarkStale),
];
const REJECT_REASONS: &[(&str, RejectReason)] = &[
    ("lease_lost", RejectReason::LeaseLost),
    ("version_newer", RejectReason::VersionNewer),
    ("generation_changed", RejectReason::GenerationChanged),
];

/// `Entry` (`deny_unknown_fields`, every member defaulted).
pub(crate) fn entry(raw: &Value) -> Result<Entry, Fail> {
    let o = Obj::sub(raw, "`entry`")?;
    o.deny_unknown(&[
        "value_hex",
        "codec",
        "version",
        "generations",
        "soft_at",
        "hard_at",
        "load_ms",
        "negative",
        "tags",
    ])?;
    let d = Entry::default();
    let has = |k: &str| o.get(k).map(|r| r.is_some());
    let version = match o.opt("version")? {
        None => {
            o.get("version")?;
            None
        }
        Some(r) => {
            let s = json::string(r, "version")?;
            let canonical = !s.is_empty()
                && s.bytes().all(|c| c.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            if !canonical {
                return Err(bad("version: expected a canonical decimal string"));
            }
            Some(
                s.bytes()
                    .try_fold(0u64, |a, b| {
                        a.checked_mul(10)?.checked_add(u64::from(b - b'0'))
                    })
                    .ok_or_else(|| bad("version: out of range for u64"))?,
            )
        }
    };
    let e = Entry {
        value: if o.keep(has("value_hex")) {
            o.keep(o.hex("value_hex"))
        } else {
            d.value
        },
        codec: if o.keep(has("codec")) {
            o.keep(o.u8("codec"))
        } else {
            d.codec
        },
        version,
        generations: if o.keep(has("generations")) {
            o.keep(o.u64s("generations"))
        } else {
            d.generations
        },
        soft_at: if o.keep(has("soft_at")) {
            o.keep(o.u64("soft_at"))
        } else {
            d.soft_at
        },
        hard_at: if o.keep(has("hard_at")) {
            o.keep(o.u64("hard_at"))
        } else {
            d.hard_at
        },
        load_ms: if o.keep(has("load_ms")) {
            o.keep(o.u64("load_ms"))
        } else {
            d.load_ms
        },
        negative: if o.keep(has("negative")) {
            o.keep(o.bool("negative"))
        } else {
            d.negative
        },
        tags: if o.keep(has("tags")) {
            o.keep(o.strings("tags"))
        } else {
            d.tags
        },
    };
    o.done(e)
}

/// `Request`.
pub(crate) fn request(raw: &Value) -> Result<Request, Fail> {
    let o = Obj::sub(raw, "`request`")?;
    let r = Request {
        key: o.keep(o.string("key")),
        gen_keys: o.keep(o.strings_default("gen_keys")),
        tags: o.keep(o.strings_default("tags")),
    };
    o.done(r)
}

/// `Write`.
pub(crate) fn write(raw: &Value) -> Result<Write, Fail> {
    let o = Obj::sub(raw, "`write`")?;
    let w = Write {
        key: o.keep(o.string("key")),
        gen_keys: o.keep(o.strings_default("gen_keys")),
        tags: o.keep(o.strings_default("tags")),
        value: o.keep(o.hex("value")).into(),
        codec: o.keep(o.u8("codec")),
        version: o.keep(o.u64_opt("version")),
    };
    o.done(w)
}

/// `ReadReply` (its `LeaseOutcome` flattened: tag `lease`).
pub(crate) fn read_reply(o: &Obj<'_>) -> Result<ReadReply, Fail> {
    let entry = match o.opt("entry")? {
        None => {
            o.req("entry")?;
            None
        }
        Some(r) => {
            let s = json::string(r, "entry")?;
            Some(
                karlton_core::store::hex::decode(&s)
                    .ok_or_else(|| bad("invalid hex in `entry`"))?
                    .into(),
            )
        }
    };
    let now_ms = o.keep(o.u64("now_ms"));
    let marked_stale = o.keep(o.bool("marked_stale"));
    let generations = o.keep(o.u64s("generations"));
    let lease = match o.keep(o.string("lease")).as_str() {
        _ if o.failed() => LeaseOutcome::NotRequested,
        "not_requested" => LeaseOutcome::NotRequested,
        "granted" => LeaseOutcome::Granted {
            token: o.keep(o.u64("token")),
        },
        "held" => LeaseOutcome::Held {
            until_ms: o.keep(o.u64("until_ms")),
        },
        other => return Err(bad(format!("unknown variant `{other}` for `lease`"))),
    };
    o.done(ReadReply {
        now_ms,
        entry,
        marked_stale,
        generations,
        lease,
    })
}

/// `StoreReply` (internally tagged: `reply`).
pub(crate) fn store_reply(raw: &Value) -> Result<StoreReply, Fail> {
    let o = Obj::sub(raw, "a store reply")?;
    Ok(match o.string("reply")?.as_str() {
        "read" => StoreReply::Read(read_reply(&o)?),
        "stored" => StoreReply::Stored,
        "rejected" => StoreReply::Rejected {
            reason: o.variant("reason", REJECT_REASONS)?,
        },
        "invalidated" => StoreReply::Invalidated {
            existed: o.bool("existed")?,
        },
        "lease" => StoreReply::Lease { ok: o.bool("ok")? },
        "bumped" => StoreReply::Bumped {
            generation: o.u64("generation")?,
        },
        other => return Err(bad(format!("unknown variant `{other}` for `reply`"))),
    })
}

/// `StoreOp` (internally tagged: `op`).
pub(crate) fn store_op(raw: &Value) -> Result<StoreOp, Fail> {
    let o = Obj::sub(raw, "`store_op`")?;
    let op = match o.string("op")?.as_str() {
        "read" => StoreOp::Read {
            key: o.keep(o.string("key")),
            gen_keys: o.keep(o.strings("gen_keys")),
            lease: o.keep_or(o.variant("lease", LEASE_MODES), LeaseMode::None),
            lease_ttl_ms: o.keep(o.u64("lease_ttl_ms")),
        },
        "fill" => StoreOp::Fill {
            key: o.keep(o.string("key")),
            entry: o.keep(o.hex("entry")).into(),
            soft_at: o.keep(o.u64("soft_at")),
            hard_at: o.keep(o.u64("hard_at")),
            expire_at: o.keep(o.u64("expire_at")),
            version: o.keep(o.u64_opt("version")),
            generations: o.keep(
                o.opt("generations")
                    .and_then(|g| g.map(|r| json::u64s(r, "generations")).transpose()),
            ),
            gen_keys: o.keep(o.strings("gen_keys")),
            token: o.keep(o.u64_opt("token")),
        },
        "invalidate" => StoreOp::Invalidate {
            key: o.keep(o.string("key")),
            mode: o.keep_or(o.variant("mode", INVALIDATE_MODES), InvalidateMode::Delete),
        },
        "release" => StoreOp::Release {
            key: o.keep(o.string("key")),
            token: o.keep(o.u64("token")),
        },
        "extend" => StoreOp::Extend {
            key: o.keep(o.string("key")),
            token: o.keep(o.u64("token")),
            lease_ttl_ms: o.keep(o.u64("lease_ttl_ms")),
        },
        "bump" => StoreOp::Bump {
            gen_key: o.keep(o.string("gen_key")),
            value: o.keep(o.u64("value")),
        },
        other => return Err(bad(format!("unknown variant `{other}` for `op`"))),
    };
    o.done(op)
}

/// `Input` (adjacently tagged: `input` + `data`).
pub(crate) fn input(raw: &Value) -> Result<Input, Fail> {
    let o = Obj::sub(raw, "`input`")?;
    let tag = o.string("input")?;
    let data = || o.req("data");
    Ok(match tag.as_str() {
        "store" => Input::Store(store_reply(data()?)?),
        "store_failed" => {
            let d = Obj::sub(data()?, "`data`")?;
            Input::StoreFailed(StoreFailure {
                message: d.string("message")?,
            })
        }
        "loaded" => {
            let d = Obj::sub(data()?, "`data`")?;
            let l = Loaded {
                value: d.keep(d.hex("value")).into(),
                codec: d.keep(d.u8("codec")),
                negative: d.keep(d.bool("negative")),
                version: d.keep(d.u64_opt("version")),
            };
            Input::Loaded(d.done(l)?)
        }
        "load_failed" => Input::LoadFailed(json::string(data()?, "data")?),
        "timeout" | "continue" => {
            if o.opt("data")?.is_some() {
                return Err(bad("unit variant takes no `data`"));
            }
            if tag == "timeout" {
                Input::Timeout
            } else {
                Input::Continue
            }
        }
        other => return Err(bad(format!("unknown variant `{other}` for `input`"))),
    })
}

// ---------------------------------------------------------------------------------------------
// Writers

/// `entry::describe`'s answer, in the core's serde form (`version` a number or null).
pub(crate) fn write_entry_info(out: &mut Vec<u8>, i: &karlton_core::entry::EntryInfo, freshness: &str) {
    let mut o = O::new(out);
    json::str(o.key("freshness"), freshness);
    o.u64("soft_at", i.soft_at).u64("hard_at", i.hard_at).u64("usable_until", i.usable_until).u64("load_ms", i.load_ms);
    match i.version {
        Some(v) => json::u64(o.key("version"), v),
        None => json::null(o.key("version")),
    }
    o.bool("negative", i.negative)
        .u64("codec", u64::from(i.codec))
        .u64("value_len", i.value_len as u64)
        .u64s("generations", &i.generations)
        .strs("tags", &i.tags)
        .end();
}

pub(crate) fn write_entry(out: &mut Vec<u8>, e: &Entry) {
    let Entry {
        value,
        codec,
        version,
        generations,
        soft_at,
        hard_at,
        load_ms,
        negative,
        tags,
    } = e;
    let mut o = O::new(out);
    o.hex("value_hex", value).u64("codec", u64::from(*codec));
    match version {
        Some(v) => {
            let k = o.key("version");
            k.push(b'"');
            json::u64(k, *v);
            k.push(b'"');
        }
        None => json::null(o.key("version")),
    }
    o.u64s("generations", generations)
        .u64("soft_at", *soft_at)
        .u64("hard_at", *hard_at)
        .u64("load_ms", *load_ms)
        .bool("negative", *negative)
        .strs("tags", tags)
        .end();
}

pub(crate) fn write_stats(out: &mut Vec<u8>, s: &Stats) {
    let mut o = O::new(out);
    for (k, v) in s.fields() {
        o.u64(k, v);
    }
    o.end();
}

fn source(s: Source) -> &'static str {
    match s {
        Source::Fresh => "fresh",
        Source::Stale => "stale",
        Source::Loaded => "loaded",
        Source::StaleOnError => "stale_on_error",
        Source::StaleOnTimeout => "stale_on_timeout",
    }
}

pub(crate) fn write_served(out: &mut Vec<u8>, s: &Served) {
    let Served {
        value,
        codec,
        negative,
        version,
        source: src,
        cached,
    } = s;
    O::new(out)
        .hex("value", value)
        .u64("codec", u64::from(*codec))
        .bool("negative", *negative)
        .opt_u64("version", *version)
        .str("source", source(*src))
        .bool("cached", *cached)
        .end();
}

pub(crate) fn write_opt_served(out: &mut Vec<u8>, s: Option<&Served>) {
    match s {
        Some(s) => write_served(out, s),
        None => json::null(out),
    }
}

/// `FlowError` (adjacently tagged: `error` + `message`).
pub(crate) fn write_flow_error(out: &mut Vec<u8>, e: &FlowError) {
    let mut o = O::new(out);
    match e {
        FlowError::Load(m) => o.str("error", "load").str("message", m),
        FlowError::LoadTimeout(ms) => o.str("error", "load_timeout").u64("message", *ms),
        FlowError::LockTimeout(ms) => o.str("error", "lock_timeout").u64("message", *ms),
        FlowError::Store(m) => o.str("error", "store").str("message", m),
        FlowError::Protocol(m) => o.str("error", "protocol").str("message", m),
        FlowError::Reentrant(k) => o.str("error", "reentrant").str("message", k),
    }
    .end();
}

fn lease_mode(m: LeaseMode) -> &'static str {
    match m {
        LeaseMode::None => "none",
        LeaseMode::IfNeeded => "if_needed",
        LeaseMode::Force => "force",
    }
}

pub(crate) fn invalidate_mode(m: InvalidateMode) -> &'static str {
    match m {
        InvalidateMode::Delete => "delete",
        InvalidateMode::MarkStale => "mark_stale",
    }
}

/// `StoreOp` (internally tagged: `op`).
pub(crate) fn write_store_op(out: &mut Vec<u8>, op: &StoreOp) {
    let mut o = O::new(out);
    match op {
        StoreOp::Read {
            key,
            gen_keys,
            lease,
            lease_ttl_ms,
        } => {
            o.str("op", "read")
                .str("key", key)
                .strs("gen_keys", gen_keys)
                .str("lease", lease_mode(*lease))
                .u64("lease_ttl_ms", *lease_ttl_ms);
        }
        StoreOp::Fill {
            key,
            entry,
            soft_at,
            hard_at,
            expire_at,
            version,
            generations,
            gen_keys,
            token,
        } => {
            o.str("op", "fill")
                .str("key", key)
                .hex("entry", entry)
                .u64("soft_at", *soft_at)
                .u64("hard_at", *hard_at)
                .u64("expire_at", *expire_at)
                .opt_u64("version", *version);
            match generations {
                Some(g) => o.u64s("generations", g),
                None => {
                    json::null(o.key("generations"));
                    &mut o
                }
            }
            .strs("gen_keys", gen_keys)
            .opt_u64("token", *token);
        }
        StoreOp::Invalidate { key, mode } => {
            o.str("op", "invalidate")
                .str("key", key)
                .str("mode", invalidate_mode(*mode));
        }
        StoreOp::Release { key, token } => {
            o.str("op", "release").str("key", key).u64("token", *token);
        }
        StoreOp::Extend {
            key,
            token,
            lease_ttl_ms,
        } => {
            o.str("op", "extend")
                .str("key", key)
                .u64("token", *token)
                .u64("lease_ttl_ms", *lease_ttl_ms);
        }
        StoreOp::Bump { gen_key, value } => {
            o.str("op", "bump")
                .str("gen_key", gen_key)
                .u64("value", *value);
        }
    }
    o.end();
}

fn reject_reason(r: RejectReason) -> &'static str {
    match r {
        RejectReason::LeaseLost => "lease_lost",
        RejectReason::VersionNewer => "version_newer",
        RejectReason::GenerationChanged => "generation_changed",
    }
}

/// `StoreReply` (internally tagged: `reply`; a read's lease outcome flattened, tag `lease`).
pub(crate) fn write_store_reply(out: &mut Vec<u8>, r: &StoreReply) {
    let mut o = O::new(out);
    match r {
        StoreReply::Read(ReadReply {
            now_ms,
            entry,
            marked_stale,
            generations,
            lease,
        }) => {
            o.str("reply", "read").u64("now_ms", *now_ms);
            match entry {
                Some(e) => o.hex("entry", e),
                None => {
                    json::null(o.key("entry"));
                    &mut o
                }
            }
            .bool("marked_stale", *marked_stale)
            .u64s("generations", generations);
            match lease {
                LeaseOutcome::NotRequested => o.str("lease", "not_requested"),
                LeaseOutcome::Granted { token } => o.str("lease", "granted").u64("token", *token),
                LeaseOutcome::Held { until_ms } => {
                    o.str("lease", "held").u64("until_ms", *until_ms)
                }
            };
        }
        StoreReply::Stored => {
            o.str("reply", "stored");
        }
        StoreReply::Rejected { reason } => {
            o.str("reply", "rejected")
                .str("reason", reject_reason(*reason));
        }
        StoreReply::Invalidated { existed } => {
            o.str("reply", "invalidated").bool("existed", *existed);
        }
        StoreReply::Lease { ok } => {
            o.str("reply", "lease").bool("ok", *ok);
        }
        StoreReply::Bumped { generation } => {
            o.str("reply", "bumped").u64("generation", *generation);
        }
    }
    o.end();
}

/// `Step` (adjacently tagged: `step` + `data`).
pub(crate) fn write_step(out: &mut Vec<u8>, s: &Step) {
    let mut o = O::new(out);
    match s {
        Step::Store(op) => {
            o.str("step", "store");
            write_store_op(o.key("data"), op);
        }
        Step::Load { timeout_at } => {
            o.str("step", "load");
            O::new(o.key("data"))
                .opt_u64("timeout_at", *timeout_at)
                .end();
        }
        Step::Wait { until_ms } => {
            o.str("step", "wait");
            O::new(o.key("data")).u64("until_ms", *until_ms).end();
        }
        Step::Serve(served) => {
            o.str("step", "serve");
            write_served(o.key("data"), served);
        }
        Step::Done(r) => {
            o.str("step", "done");
            let mut d = O::new(o.key("data"));
            match r {
                Ok(served) => write_served(d.key("Ok"), served),
                Err(e) => write_flow_error(d.key("Err"), e),
            }
            d.end();
        }
    }
    o.end();
}

/// `Policy` (as its `PolicySpec`, hard TTL resolved).
pub(crate) fn write_policy(out: &mut Vec<u8>, p: &Policy) {
    let karlton_core::PolicySpec {
        soft_ttl_ms,
        hard_ttl_ms,
        jitter,
        early_refresh,
        negative_ttl_ms,
        stale_if_error_ms,
        lease_ttl_ms,
        lock_wait_ms,
        lock_backoff_ms,
        on_lock_timeout,
        load_soft_timeout_ms,
        load_hard_timeout_ms,
        on_store_error,
        max_value_bytes,
    } = p.spec();
    let mut o = O::new(out);
    o.u64("soft_ttl_ms", soft_ttl_ms)
        .opt_u64("hard_ttl_ms", hard_ttl_ms);
    json::f64(o.key("jitter"), jitter);
    json::f64(o.key("early_refresh"), early_refresh);
    o.u64("negative_ttl_ms", negative_ttl_ms)
        .u64("stale_if_error_ms", stale_if_error_ms)
        .u64("lease_ttl_ms", lease_ttl_ms)
        .u64("lock_wait_ms", lock_wait_ms)
        .u64s("lock_backoff_ms", &lock_backoff_ms)
        .str(
            "on_lock_timeout",
            match on_lock_timeout {
                karlton_core::OnLockTimeout::Load => "load",
                karlton_core::OnLockTimeout::ServeStale => "serve_stale",
                karlton_core::OnLockTimeout::Error => "error",
            },
        )
        .opt_u64("load_soft_timeout_ms", load_soft_timeout_ms)
        .opt_u64("load_hard_timeout_ms", load_hard_timeout_ms)
        .str(
            "on_store_error",
            match on_store_error {
                karlton_core::OnStoreError::Load => "load",
                karlton_core::OnStoreError::Error => "error",
            },
        )
        .u64("max_value_bytes", max_value_bytes)
        .end();
}

// ---------------------------------------------------------------------------------------------
// The coordinator's forms (karlton_core::coordinator)

use karlton_core::coordinator::{Action, Answer, Event, Op, Reply, Ticket};
use karlton_core::redis::RedisValue;

const SOURCES: &[(&str, Source)] = &[
    ("fresh", Source::Fresh),
    ("stale", Source::Stale),
    ("loaded", Source::Loaded),
    ("stale_on_error", Source::StaleOnError),
    ("stale_on_timeout", Source::StaleOnTimeout),
];

/// `Served` (what `get_or_load_replacing` and `report_undecodable` take back).
pub(crate) fn served(raw: &Value) -> Result<Served, Fail> {
    let o = Obj::sub(raw, "`served`")?;
    let s = Served {
        value: o.keep(o.hex("value")).into(),
        codec: o.keep(o.u8("codec")),
        negative: o.keep(o.bool("negative")),
        version: o.keep(o.u64_opt("version")),
        source: o.keep_or(o.variant("source", SOURCES), Source::Fresh),
        cached: o.keep(o.bool("cached")),
    };
    o.done(s)
}

/// `Op` (internally tagged: `op`).
pub(crate) fn op(raw: &Value) -> Result<Op, Fail> {
    let o = Obj::sub(raw, "`op`")?;
    Ok(match o.string("op")?.as_str() {
        "get" => Op::Get {
            key: o.string("key")?,
            gen_keys: o.strings_default("gen_keys")?,
        },
        "set" => Op::Set {
            write: write(o.req("write")?)?,
        },
        "invalidate" => Op::Invalidate {
            key: o.string("key")?,
            mode: o.variant("mode", INVALIDATE_MODES)?,
        },
        "bump" => Op::Bump {
            gen_key: o.string("gen_key")?,
        },
        other => return Err(bad(format!("unknown variant `{other}` for `op`"))),
    })
}

/// `Vec<RedisValue>` (externally tagged: `"Nil"`, `{"Int": n}`, `{"Bulk": [bytes]}`,
/// `{"Status": s}`, `{"Array": [..]}`, `{"Error": s}`).
pub(crate) fn redis_values(raw: &Value) -> Result<Vec<RedisValue>, Fail> {
    match raw {
        Value::Array(a) => redis_array(a),
        _ => Err(bad("`replies` must be an array of Redis values")),
    }
}

fn redis_array(a: &[Value]) -> Result<Vec<RedisValue>, Fail> {
    let mut out = Vec::with_capacity(a.len());
    for v in a {
        out.push(redis_value(v)?);
    }
    Ok(out)
}

fn redis_value(v: &Value) -> Result<RedisValue, Fail> {
    let e = || bad("invalid Redis value in `replies`");
    let (tag, data) = match v {
        Value::String(s) => (s.as_str(), &Value::Null),
        Value::Object(m) if m.len() == 1 => {
            let (k, d) = m.first().ok_or_else(e)?;
            (k.as_str(), d)
        }
        _ => return Err(e()),
    };
    Ok(match (tag, data) {
        ("Nil", Value::Null) => RedisValue::Nil,
        ("Int", Value::Number(n)) => RedisValue::Int(n.as_i64().ok_or_else(e)?),
        ("Bulk", Value::Array(b)) => {
            let mut bytes = Vec::with_capacity(b.len());
            for x in b {
                let byte = match x {
                    Value::Number(n) => n.as_u64().and_then(|x| u8::try_from(x).ok()),
                    _ => None,
                };
                bytes.push(byte.ok_or_else(e)?);
            }
            RedisValue::Bulk(bytes)
        }
        ("Status", Value::String(s)) => RedisValue::Status(s.clone()),
        ("Error", Value::String(s)) => RedisValue::Error(s.clone()),
        ("Array", Value::Array(a)) => {
            RedisValue::Array(redis_array(a)?)
        }
        _ => return Err(e()),
    })
}

/// `Reply` (adjacently tagged: `reply` + `data`).
fn write_reply(out: &mut Vec<u8>, r: &Reply) {
    let mut o = O::new(out);
    match r {
        Reply::Value(s) => {
            o.str("reply", "value");
            write_served(o.key("data"), s);
        }
        Reply::Missing => {
            o.str("reply", "missing");
        }
        Reply::Stored(b) => {
            o.str("reply", "stored").bool("data", *b);
        }
        Reply::Invalidated(b) => {
            o.str("reply", "invalidated").bool("data", *b);
        }
        Reply::Bumped(g) => {
            o.str("reply", "bumped").u64("data", *g);
        }
    }
    o.end();
}

/// `Answer` = `Result<Reply, FlowError>` (`{"Ok": ..}` / `{"Err": ..}`).
pub(crate) fn write_answer(out: &mut Vec<u8>, a: &Answer) {
    let mut o = O::new(out);
    match a {
        Ok(r) => write_reply(o.key("Ok"), r),
        Err(e) => write_flow_error(o.key("Err"), e),
    }
    o.end();
}

/// `Action` (adjacently tagged: `action` + `data`).
pub(crate) fn write_action(out: &mut Vec<u8>, a: &Action) {
    let mut o = O::new(out);
    match a {
        Action::Store(op) => {
            o.str("action", "store");
            write_store_op(o.key("data"), op);
        }
        Action::FastRead { key, gen_keys } => {
            o.str("action", "fast_read");
            O::new(o.key("data"))
                .str("key", key)
                .strs("gen_keys", gen_keys)
                .end();
        }
        Action::StartLoad { timeout_at } | Action::AwaitLoad { timeout_at } => {
            let name = if matches!(a, Action::StartLoad { .. }) {
                "start_load"
            } else {
                "await_load"
            };
            o.str("action", name);
            O::new(o.key("data"))
                .opt_u64("timeout_at", *timeout_at)
                .end();
        }
        Action::Wait { until_ms } => {
            o.str("action", "wait");
            O::new(o.key("data")).u64("until_ms", *until_ms).end();
        }
        Action::Serve(s) => {
            o.str("action", "serve");
            write_served(o.key("data"), s);
        }
        Action::Answer(r) => {
            o.str("action", "answer");
            write_answer(o.key("data"), r);
        }
        Action::Finished => {
            o.str("action", "finished");
        }
    }
    o.end();
}

/// `Ticket` (internally tagged: `ticket`).
pub(crate) fn write_ticket(out: &mut Vec<u8>, t: &Ticket) {
    let mut o = O::new(out);
    match t {
        Ticket::Answer { answer } => {
            o.str("ticket", "answer");
            write_answer(o.key("answer"), answer);
        }
        Ticket::Lead { call, action } => {
            o.str("ticket", "lead").u64("call", call.0);
            write_action(o.key("action"), action);
        }
        Ticket::Join { call, flight, until_ms } => {
            o.str("ticket", "join")
                .u64("call", call.0)
                .u64("flight", flight.0)
                .u64("until_ms", *until_ms);
        }
    }
    o.end();
}

/// `Event` (internally tagged: `event`).
pub(crate) fn write_event(out: &mut Vec<u8>, e: &Event) {
    let mut o = O::new(out);
    match e {
        Event::Wake { flight } => {
            o.str("event", "wake").u64("flight", flight.0);
        }
        Event::BackgroundError { key, error } => {
            o.str("event", "background_error").str("key", key);
            write_flow_error(o.key("error"), error);
        }
    }
    o.end();
}
