//! The JSON dispatcher behind `karlton_call`, and the instance state (handle tables).
//!
//! # Requests and replies
//!
//! A request is `{"op": "<name>", ...fields}`; a reply is `{"ok": <value>}` or
//! `{"error": {"code": "<code>", "message": "<text>"}}`. `u64` fields (marked `u64` below) take
//! a JSON number or a decimal string. Values that cross as JSON use the serde forms of
//! karlton-core's types (`Entry`, `Request`, `Input`, `Step`, `StoreOp`, `StoreReply`, `Stats`,
//! `Write`), so a reply is byte-identical to `serde_json::to_string` of the native result.
//!
//! | op | fields | `ok` value |
//! |----|--------|------------|
//! | `version` | | `{"abi": 1, "core": "<crate version>"}` |
//! | `key_build` | `namespace`, `segments?` [str], `params?` any JSON (absent or `null` = none), `version?` u64, `hash_tag?` bool, `max_len?` u64, `tags?` [str] | `{"key", "generation_key", "tag_keys": [..]}` |
//! | `params_hash` | `params` any JSON | `"<32 hex>"` |
//! | `policy` | `policy` (PolicySpec JSON) | the validated policy, every field, hard TTL resolved |
//! | `entry_encode` | `entry` (Entry JSON) | `"<hex>"` |
//! | `entry_decode` | `hex` | Entry JSON, or error `entry_decode` (corrupt bytes = a miss) |
//! | `decide` | `now_ms`, `soft_at`, `hard_at`, `load_ms?` u64, `policy`, `rand` u64 | `"fresh"`, `"refresh_early"`, `"stale"`, `"usable_on_error"` or `"gone"` |
//! | `jittered_ttls` | `policy`, `rand` u64 | `{"soft_ttl_ms", "hard_ttl_ms"}` |
//! | `flow_create` | `request` (Request JSON), `policy`, `seed` u64 | flow handle (number) |
//! | `flow_start` | `flow`, `now_ms`, `store?` | Step JSON |
//! | `flow_handle` | `flow`, `now_ms`, `input` (Input JSON), `store?` | Step JSON |
//! | `flow_stats` | `flow` | Stats JSON |
//! | `flow_drop` | `flow` | Stats JSON (the flow's final counts) |
//! | `store_create` | `max_entries?`, `max_bytes?`, `shards?` u64 | store handle (number) |
//! | `store_apply` | `store`, `now_ms`, `store_op` (StoreOp JSON) | StoreReply JSON |
//! | `store_drop` | `store` | `true` |
//! | `get_or_load` | `store`, `request`, `policy`, `seed`, `now_ms` | `{"flow": handle or null, "step": Step, "stats": Stats}` |
//! | `set_op` | `write` (Write JSON), `policy`, `store_now`, `rand` u64 | StoreOp JSON |
//! | `invalidate_op` | `key`, `mode?` (`"delete"` / `"mark_stale"`) | StoreOp JSON |
//! | `bump_op` | `gen_key`, `rand` u64 | StoreOp JSON |
//!
//! With `store` (a handle from `store_create`), `flow_start` and `flow_handle` run every
//! `store` step against that in-module memory store at `now_ms` and return the first step that
//! is not a store op: a fresh hit is one call. `get_or_load` is `flow_create` + `flow_start` with
//! a store in one call; when the step is `done` the flow is dropped at once (`flow` is `null`).
//! Flows otherwise live until `flow_drop`. Handles are numbers, never reused within an instance.
//!
//! Error codes: `bad_input` (pointer/length not inside a live `karlton_alloc` block), `utf8`,
//! `json` (not JSON, or no string `op`), `bad_request` (fields missing or of the wrong type),
//! `unknown_op`, `unknown_handle`, `key`, `policy`, `entry_decode`, `internal`.
//!
//! The policy parsed last is cached by its JSON text, so passing the same policy on every call
//! costs one string comparison.

use karlton_core::entry::{DecodeError, Entry};
use karlton_core::flow::{self, Request, Write};
use karlton_core::freshness::{
    Freshness, decide_raw, freshness, jitter_reduction, jittered_ttls, xfetch,
};
use karlton_core::key::{self, Key, KeyError};
use karlton_core::store::{InvalidateMode, ReadReply, StoreFailure, StoreOp, hex};
use karlton_core::{GetOrLoad, Input, MemoryStore, MemoryStoreConfig, Policy, PolicyError, Stats, Step};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};

// ---------------------------------------------------------------------------------------------
// Scalar fast paths

/// `karlton_decide`: [`decide_raw`] on raw numbers, as a code (`crate::DECIDE_*`).
///
/// Same logic as `decide_raw` with a policy whose `early_refresh` is `beta` and whose
/// `stale_if_error_ms` is `stale_if_error_ms` (the differential tests check this), without
/// building a policy.
#[inline]
pub fn decide_code(
    now_ms: u64,
    soft_at: u64,
    hard_at: u64,
    load_ms: u64,
    beta: f64,
    stale_if_error_ms: u64,
    rand: u64,
) -> u32 {
    if !(beta.is_finite() && (0.0..=100.0).contains(&beta)) {
        return crate::DECIDE_INVALID;
    }
    match freshness(now_ms, soft_at, hard_at, stale_if_error_ms) {
        Freshness::Fresh if xfetch(now_ms, soft_at, load_ms, beta, rand) => {
            crate::DECIDE_REFRESH_EARLY
        }
        Freshness::Fresh => crate::DECIDE_FRESH,
        Freshness::Stale => crate::DECIDE_STALE,
        Freshness::UsableOnError => crate::DECIDE_USABLE_ON_ERROR,
        Freshness::Gone => crate::DECIDE_GONE,
    }
}

/// `karlton_jitter`: the TTL after jitter (`jitter_ppm` is capped at 999_999 as a policy caps it).
#[inline]
pub fn jitter(ttl_ms: u64, jitter_ppm: u64, rand: u64) -> u64 {
    ttl_ms - jitter_reduction(ttl_ms, jitter_ppm.min(999_999), rand)
}

// ---------------------------------------------------------------------------------------------
// Instance state

/// A handle table: (handle, value) in handle order (handles only grow), so lookups are a binary
/// search. A Vec rather than a map keeps the module small (each map type costs kilobytes).
struct Table<T>(Vec<(u32, T)>);

impl<T> Table<T> {
    const fn new() -> Self {
        Table(Vec::new())
    }
    fn insert(&mut self, h: u32, v: T) {
        self.0.push((h, v));
    }
    fn pos(&self, h: u32) -> Option<usize> {
        self.0.binary_search_by_key(&h, |e| e.0).ok()
    }
    fn get(&self, h: &u32) -> Option<&T> {
        self.pos(*h).map(|i| &self.0[i].1)
    }
    fn get_mut(&mut self, h: &u32) -> Option<&mut T> {
        self.pos(*h).map(|i| &mut self.0[i].1)
    }
    fn remove(&mut self, h: &u32) -> Option<T> {
        self.pos(*h).map(|i| self.0.remove(i).1)
    }
}

struct State {
    next_handle: u32,
    flows: Table<GetOrLoad>,
    stores: Table<MemoryStore>,
    /// The policy parsed last, by its JSON text.
    policy: Option<(String, Arc<Policy>)>,
    /// Live `karlton_alloc` blocks: (start, length), few (a host keeps one request buffer).
    blocks: Vec<(usize, usize)>,
    /// The reply of the last `karlton_call` (valid until the next one).
    reply: Vec<u8>,
}

static STATE: Mutex<State> = Mutex::new(State {
    next_handle: 1,
    flows: Table::new(),
    stores: Table::new(),
    policy: None,
    blocks: Vec::new(),
    reply: Vec::new(),
});

fn state() -> MutexGuard<'static, State> {
    // Nothing here panics while holding the lock (and the wasm build aborts on panic), but a
    // poisoned lock would still hold consistent tables: keep going.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// A fresh handle. After 2^32 - 1 handles the counter would wrap and break the table's
    /// order: the instance then refuses new handles (an error reply) instead.
    fn handle(&mut self) -> Result<u32, Fail> {
        let h = self.next_handle;
        if h == u32::MAX {
            return Err(Fail::new("internal", "handle space exhausted; create a new instance"));
        }
        self.next_handle += 1;
        Ok(h)
    }
}

const ALIGN: usize = 8;

/// Allocate a tracked block (`karlton_alloc`). Returns 0 for `len == 0` or when out of memory.
pub fn alloc(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let Ok(layout) = std::alloc::Layout::from_size_align(len, ALIGN) else { return 0 };
    // SAFETY: `layout` has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        return 0;
    }
    state().blocks.push((p as usize, len));
    p as usize
}

/// Free a block from [`alloc`] (`karlton_free`). A pair that is not a live block is ignored.
pub fn free(ptr: usize, len: usize) -> bool {
    let mut st = state();
    let Some(i) = st.blocks.iter().position(|&b| b == (ptr, len)) else { return false };
    st.blocks.swap_remove(i);
    // SAFETY: `ptr` came from `alloc` with this exact length (checked above) and is freed once
    // (removed from the table).
    unsafe {
        std::alloc::dealloc(
            ptr as *mut u8,
            std::alloc::Layout::from_size_align_unchecked(len, ALIGN),
        )
    };
    true
}

/// `karlton_call` on raw memory: validates `ptr..ptr+len` against the live blocks, dispatches,
/// keeps the reply in the instance and returns where it is.
pub fn call_raw(ptr: usize, len: usize) -> (usize, usize) {
    let mut st = state();
    let mut out = std::mem::take(&mut st.reply);
    out.clear();
    let inside = ptr.checked_add(len).is_some_and(|end| {
        st.blocks.iter().any(|&(start, n)| start <= ptr && end <= start + n)
    });
    if inside {
        // SAFETY: the range lies inside a live block allocated by `alloc` (checked above). The
        // dispatcher only reads it, and frees blocks only through `karlton_free`, which cannot
        // run during this call.
        let input = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        dispatch(&mut st, input, &mut out);
    } else {
        error(&mut out, &Fail::new("bad_input", "request is not inside a karlton_alloc block"));
    }
    st.reply = out;
    (st.reply.as_ptr() as usize, st.reply.len())
}

/// The dispatcher on a byte slice (the native twin of `karlton_call`): one JSON request in,
/// one JSON reply out, against this process's instance state.
pub fn call(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    dispatch(&mut state(), input, &mut out);
    out
}

/// [`call`] on a string.
pub fn call_str(input: &str) -> String {
    String::from_utf8(call(input.as_bytes())).expect("replies are UTF-8 JSON")
}

// ---------------------------------------------------------------------------------------------
// Dispatch

struct Fail {
    code: &'static str,
    message: String,
    /// A stable, structured description (`{"kind": ...}`) for errors callers branch on: the
    /// same objects the conformance vectors expect.
    detail: Option<Value>,
}

impl Fail {
    fn new(code: &'static str, message: impl Into<String>) -> Fail {
        Fail { code, message: message.into(), detail: None }
    }
    fn key(e: KeyError) -> Fail {
        let detail = match &e {
            KeyError::EmptyNamespace => json!({ "kind": "empty_namespace" }),
            KeyError::NamespaceTooLong { len, max } => {
                json!({ "kind": "namespace_too_long", "len": len, "max": max })
            }
            KeyError::Params(_) => json!({ "kind": "params" }),
            KeyError::InvalidJson(_) => json!({ "kind": "invalid_json" }),
            KeyError::MaxLenTooSmall { len, min } => {
                json!({ "kind": "max_len_too_small", "len": len, "min": min })
            }
        };
        Fail { code: "key", message: e.to_string(), detail: Some(detail) }
    }
    fn policy(e: PolicyError) -> Fail {
        let (kind, field) = match &e {
            PolicyError::Zero { field } => ("zero", Some(*field)),
            PolicyError::HardBeforeSoft { .. } => ("hard_before_soft", Some("hard_ttl_ms")),
            PolicyError::OutOfRange { field, .. } => ("out_of_range", Some(*field)),
            PolicyError::TooLong { field, .. } => ("too_long", Some(*field)),
            PolicyError::LoadTimeouts { .. } => ("load_timeouts", Some("load_soft_timeout_ms")),
            // serde names the field only for unknown and duplicate fields.
            PolicyError::Json(msg) => (
                "json",
                ["unknown field `", "duplicate field `"]
                    .iter()
                    .find_map(|p| msg.strip_prefix(p))
                    .and_then(|rest| rest.split('`').next()),
            ),
        };
        let detail = json!({ "kind": kind, "field": field });
        Fail { code: "policy", message: e.to_string(), detail: Some(detail) }
    }
    fn decode(e: DecodeError) -> Fail {
        let detail = match &e {
            DecodeError::TooShort => json!({ "kind": "too_short" }),
            DecodeError::BadMagic => json!({ "kind": "bad_magic" }),
            DecodeError::UnsupportedFormat(f) => json!({ "kind": "unsupported_format", "format": f }),
            DecodeError::UnknownFlags(f) => json!({ "kind": "unknown_flags", "flags": f }),
            DecodeError::Truncated(field) => json!({ "kind": "truncated", "field": field }),
            DecodeError::InvalidVarint(field) => json!({ "kind": "invalid_varint", "field": field }),
            DecodeError::InvalidUtf8 => json!({ "kind": "invalid_utf8" }),
            DecodeError::TrailingBytes(n) => json!({ "kind": "trailing_bytes", "count": n }),
            DecodeError::TooLarge(field, found, max) => {
                json!({ "kind": "too_large", "field": field, "found": found, "max": max })
            }
            DecodeError::Inconsistent(why) => json!({ "kind": "inconsistent", "reason": why }),
            other => json!({ "kind": "unknown", "message": other.to_string() }),
        };
        Fail { code: "entry_decode", message: e.to_string(), detail: Some(detail) }
    }
}

type Res = Result<(), Fail>;

fn error(out: &mut Vec<u8>, f: &Fail) {
    #[derive(Serialize)]
    struct E<'a> {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'a Value>,
    }
    #[derive(Serialize)]
    struct R<'a> {
        error: E<'a>,
    }
    out.clear();
    // Serializing two strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &R { error: E { code: f.code, message: &f.message, detail: f.detail.as_ref() } });
}

fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Res {
    serde_json::to_writer(out, v).map_err(|e| Fail::new("internal", e.to_string()))
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, Fail> {
    serde_json::from_str(text).map_err(|e| {
        let code = if e.is_data() { "bad_request" } else { "json" };
        Fail::new(code, e.to_string())
    })
}

fn dispatch(st: &mut State, input: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"ok\":");
    let r = std::str::from_utf8(input)
        .map_err(|e| Fail::new("utf8", e.to_string()))
        .and_then(|text| run(st, text, out));
    match r {
        Ok(()) => out.push(b'}'),
        Err(f) => error(out, &f),
    }
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
}

fn run(st: &mut State, text: &str, out: &mut Vec<u8>) -> Res {
    let head: Head = serde_json::from_str(text).map_err(|e| Fail::new("json", e.to_string()))?;
    match &*head.op {
        "version" => put(out, &Version { abi: crate::ABI_VERSION, core: env!("CARGO_PKG_VERSION") }),
        "key_build" => key_build(parse(text)?, out),
        "params_hash" => {
            let r: ParamsReq = parse(text)?;
            let text = params_text(r.params, r.params_json.as_deref())?
                .ok_or_else(|| Fail::new("bad_request", "`params` or `params_json` is required"))?;
            put(out, &params_hash(text)?)
        }
        "policy" => {
            let r: PolicyReq = parse(text)?;
            let p = match (r.policy, r.policy_json.as_deref()) {
                (Some(raw), None) => policy(st, raw.get())?,
                (None, Some(t)) => policy(st, t)?,
                _ => return Err(Fail::new("bad_request", "give one of `policy` and `policy_json`")),
            };
            put(out, &*p)
        }
        "entry_encode" => {
            let r: EntryEncode = parse(text)?;
            put(out, &hex::encode(&r.entry.encode()))
        }
        "entry_decode" => {
            let r: EntryDecode = parse(text)?;
            let bytes = hex::decode(&r.hex).ok_or_else(|| Fail::new("bad_request", "`hex` is not hex"))?;
            let e = Entry::decode(&bytes).map_err(Fail::decode)?;
            put(out, &e)
        }
        "decide" => {
            let r: DecideReq = parse(text)?;
            let p = policy(st, r.policy.get())?;
            let load = r.load_ms.map_or(0, |x| x.0);
            put(out, &decide_raw(r.now_ms.0, r.soft_at.0, r.hard_at.0, load, &p, r.rand.0))
        }
        "freshness" => {
            let r: FreshnessReq = parse(text)?;
            let sie = r.stale_if_error_ms.map_or(0, |x| x.0);
            put(out, &freshness(r.now_ms.0, r.soft_at.0, r.hard_at.0, sie))
        }
        "xfetch" => {
            let r: XfetchReq = parse(text)?;
            put(out, &xfetch(r.now_ms.0, r.soft_at.0, r.load_ms.0, r.beta, r.rand.0))
        }
        "jitter_reduction" => {
            let r: JitterReductionReq = parse(text)?;
            put(out, &jitter_reduction(r.ttl_ms.0, r.jitter_ppm.0, r.rand.0))
        }
        "jittered_ttls" => {
            let r: JitterReq = parse(text)?;
            let p = policy(st, r.policy.get())?;
            let (soft_ttl_ms, hard_ttl_ms) = jittered_ttls(&p, r.rand.0);
            put(out, &Ttls { jitter_ppm: p.jitter_ppm(), soft_ttl_ms, hard_ttl_ms })
        }
        "flow_create" => {
            let r: FlowCreate = parse(text)?;
            let p = policy(st, r.policy.get())?;
            let h = st.handle()?;
            st.flows.insert(h, GetOrLoad::new(r.request, p, r.seed.0));
            put(out, &h)
        }
        "flow_start" => {
            let r: FlowStart = parse(text)?;
            let now = r.now_ms.0;
            put(out, &drive(st, r.flow, r.store, now, |f| f.start(now))?)
        }
        "flow_handle" => {
            let r: FlowHandle = parse(text)?;
            let now = r.now_ms.0;
            put(out, &drive(st, r.flow, r.store, now, |f| f.handle(now, r.input))?)
        }
        "flow_stats" => {
            let r: FlowRef = parse(text)?;
            put(out, st.flows.get(&r.flow).ok_or_else(|| unknown("flow", r.flow))?.stats())
        }
        "flow_drop" => {
            let r: FlowRef = parse(text)?;
            put(out, st.flows.remove(&r.flow).ok_or_else(|| unknown("flow", r.flow))?.stats())
        }
        "store_create" => {
            let r: StoreCreate = parse(text)?;
            let d = MemoryStoreConfig::default();
            let size = |x: Option<U64>, d: usize| x.map_or(d, |x| usize::try_from(x.0).unwrap_or(usize::MAX));
            let cfg = MemoryStoreConfig {
                max_entries: size(r.max_entries, d.max_entries),
                max_bytes: size(r.max_bytes, d.max_bytes),
                shards: size(r.shards, d.shards).min(1024),
            };
            let h = st.handle()?;
            st.stores.insert(h, MemoryStore::new(cfg));
            put(out, &h)
        }
        "store_apply" => {
            let r: StoreApply = parse(text)?;
            let s = st.stores.get(&r.store).ok_or_else(|| unknown("store", r.store))?;
            put(out, &s.apply(r.now_ms.0, &r.store_op))
        }
        "store_drop" => {
            let r: StoreRef = parse(text)?;
            st.stores.remove(&r.store).ok_or_else(|| unknown("store", r.store))?;
            put(out, &true)
        }
        "get_or_load" => {
            let r: GetOrLoadReq = parse(text)?;
            let p = policy(st, r.policy.get())?;
            let now = r.now_ms.0;
            let store = st.stores.get(&r.store).ok_or_else(|| unknown("store", r.store))?;
            let mut f = GetOrLoad::new(r.request, p, r.seed.0);
            let first = f.start(now);
            let step = f.run_store_steps(now, first, |op| Ok(store.apply(now, op)));
            let stats = *f.stats();
            let flow = match step {
                Step::Done(_) => None,
                _ => {
                    let h = st.handle()?;
                    st.flows.insert(h, f);
                    Some(h)
                }
            };
            put(out, &GetOrLoadReply { flow, step: &step, stats: &stats })
        }
        "set_op" => {
            let r: SetOpReq = parse(text)?;
            let p = policy(st, r.policy.get())?;
            put(out, &flow::set_op(&r.write, &p, r.store_now.0, r.rand.0))
        }
        "get_op" => {
            let r: GetOpReq = parse(text)?;
            put(out, &flow::get_op(&r.key, &r.gen_keys))
        }
        "get_result" => {
            let r: GetResultReq = parse(text)?;
            let p = policy(st, r.policy.get())?;
            let mut stats = Stats::default();
            let served = flow::get_result(&r.reply, &p, &mut stats);
            put(out, &Got { served, stats })
        }
        "get_on_store_error" => {
            let r: GetOnStoreErrorReq = parse(text)?;
            let p = policy(st, r.policy.get())?;
            let mut stats = Stats::default();
            let failure = StoreFailure { message: r.message };
            match flow::get_on_store_error(&p, failure, &mut stats) {
                Ok(served) => put(out, &Got { served, stats }),
                Err(e) => Err(Fail {
                    code: "flow",
                    message: e.to_string(),
                    detail: Some(serde_json::to_value(&e).map_err(|e| Fail::new("internal", e.to_string()))?),
                }),
            }
        }
        "invalidate_op" => {
            let r: InvalidateReq = parse(text)?;
            put(out, &flow::invalidate_op(&r.key, r.mode))
        }
        "bump_op" => {
            let r: BumpReq = parse(text)?;
            put(out, &flow::bump_op(&r.gen_key, r.rand.0))
        }
        other => Err(Fail::new("unknown_op", format!("unknown op `{other}`"))),
    }
}

fn unknown(kind: &str, h: u32) -> Fail {
    Fail::new("unknown_handle", format!("no {kind} with handle {h}"))
}

/// The validated policy for this JSON text (cached by text).
fn policy(st: &mut State, text: &str) -> Result<Arc<Policy>, Fail> {
    if let Some((t, p)) = &st.policy {
        if t == text {
            return Ok(p.clone());
        }
    }
    let p = Arc::new(Policy::from_json(text).map_err(Fail::policy)?);
    st.policy = Some((text.to_owned(), p.clone()));
    Ok(p)
}

/// The params text of a request: `params` (any JSON; `null` = none) or `params_json` (a string
/// holding JSON text, checked by the key code, so invalid text is a `key` error).
fn params_text<'a>(raw: Option<&'a RawValue>, text: Option<&'a str>) -> Result<Option<&'a str>, Fail> {
    match (raw, text) {
        (Some(_), Some(_)) => Err(Fail::new("bad_request", "give at most one of `params` and `params_json`")),
        (Some(r), None) => Ok(Some(r.get())),
        (None, t) => Ok(t),
    }
}

/// Params hash and canonical form of JSON text, with the same checks, in the same order, as
/// `Key::params_json`.
fn params_hash(json: &str) -> Result<ParamsHash, Fail> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| Fail::key(KeyError::InvalidJson(e.to_string())))?;
    key::check_integer_literals(json).map_err(|e| Fail::key(KeyError::Params(e.to_string())))?;
    let hash = key::params_hash(&v).map_err(Fail::key)?;
    let canonical =
        key::canonicalize(&v).map_err(|e| Fail::key(KeyError::Params(e.to_string())))?;
    Ok(ParamsHash { hash, canonical })
}

fn key_build(r: KeyBuild, out: &mut Vec<u8>) -> Res {
    let kerr = Fail::key;
    let params = params_text(r.params, r.params_json.as_deref())?;
    let mut k = Key::new(&r.namespace).map_err(kerr)?.segments(&r.segments);
    if let Some(p) = params {
        k = k.params_json(p).map_err(kerr)?;
    }
    if let Some(v) = r.version {
        k = k.version(v.0);
    }
    k = k.hash_tag(r.hash_tag);
    if let Some(n) = r.max_len {
        k = k.max_len(usize::try_from(n.0).unwrap_or(usize::MAX)).map_err(kerr)?;
    }
    let tag_keys: Vec<String> = r.tags.iter().map(|t| k.tag_key(t)).collect();
    put(out, &KeyReply { key: k.build(), generation_key: k.generation_key(), tag_keys })
}

fn drive(
    st: &mut State,
    flow: u32,
    store: Option<u32>,
    now: u64,
    f: impl FnOnce(&mut GetOrLoad) -> Step,
) -> Result<Step, Fail> {
    let State { flows, stores, .. } = st;
    let fl = flows.get_mut(&flow).ok_or_else(|| unknown("flow", flow))?;
    let store = match store {
        Some(s) => Some(stores.get(&s).ok_or_else(|| unknown("store", s))?),
        None => None,
    };
    let step = f(fl);
    Ok(match store {
        Some(s) => fl.run_store_steps(now, step, |op| Ok(s.apply(now, op))),
        None => step,
    })
}

// ---------------------------------------------------------------------------------------------
// Message shapes

/// A `u64` given as a JSON number or a decimal string.
#[derive(Debug, Clone, Copy)]
struct U64(u64);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<U64, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = U64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative integer (number or decimal string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<U64, E> {
                Ok(U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<U64, E> {
                u64::try_from(v).map(U64).map_err(|_| E::custom("negative integer"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<U64, E> {
                // JSON from JavaScript may write a large integer as a float (1e21); accept
                // only exact integers below 2^53.
                if v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_992.0 {
                    Ok(U64(v as u64))
                } else {
                    Err(E::custom("not a non-negative integer below 2^53"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<U64, E> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom("not a decimal integer string"));
                }
                v.parse().map(U64).map_err(|_| E::custom("integer string out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Serialize)]
struct Version {
    abi: u32,
    core: &'static str,
}

#[derive(Deserialize)]
struct KeyBuild<'a> {
    namespace: String,
    #[serde(default)]
    segments: Vec<String>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
    params_json: Option<String>,
    version: Option<U64>,
    #[serde(default)]
    hash_tag: bool,
    max_len: Option<U64>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Serialize)]
struct KeyReply {
    key: String,
    generation_key: String,
    tag_keys: Vec<String>,
}

#[derive(Deserialize)]
struct ParamsReq<'a> {
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
    params_json: Option<String>,
}

#[derive(Serialize)]
struct ParamsHash {
    hash: String,
    canonical: String,
}

#[derive(Deserialize)]
struct PolicyReq<'a> {
    #[serde(default, borrow)]
    policy: Option<&'a RawValue>,
    policy_json: Option<String>,
}

#[derive(Deserialize)]
struct FreshnessReq {
    now_ms: U64,
    soft_at: U64,
    hard_at: U64,
    stale_if_error_ms: Option<U64>,
}

#[derive(Deserialize)]
struct XfetchReq {
    now_ms: U64,
    soft_at: U64,
    load_ms: U64,
    beta: f64,
    rand: U64,
}

#[derive(Deserialize)]
struct JitterReductionReq {
    ttl_ms: U64,
    jitter_ppm: U64,
    rand: U64,
}

#[derive(Deserialize)]
struct GetOpReq {
    key: String,
    #[serde(default)]
    gen_keys: Vec<String>,
}

#[derive(Deserialize)]
struct GetResultReq<'a> {
    reply: ReadReply,
    #[serde(borrow)]
    policy: &'a RawValue,
}

#[derive(Deserialize)]
struct GetOnStoreErrorReq<'a> {
    #[serde(borrow)]
    policy: &'a RawValue,
    message: String,
}

#[derive(Serialize)]
struct Got {
    served: Option<karlton_core::Served>,
    stats: Stats,
}

#[derive(Deserialize)]
struct EntryEncode {
    entry: Entry,
}

#[derive(Deserialize)]
struct EntryDecode {
    hex: String,
}

#[derive(Deserialize)]
struct DecideReq<'a> {
    now_ms: U64,
    soft_at: U64,
    hard_at: U64,
    load_ms: Option<U64>,
    #[serde(borrow)]
    policy: &'a RawValue,
    rand: U64,
}

#[derive(Deserialize)]
struct JitterReq<'a> {
    #[serde(borrow)]
    policy: &'a RawValue,
    rand: U64,
}

#[derive(Serialize)]
struct Ttls {
    jitter_ppm: u64,
    soft_ttl_ms: u64,
    hard_ttl_ms: u64,
}

#[derive(Deserialize)]
struct FlowCreate<'a> {
    request: Request,
    #[serde(borrow)]
    policy: &'a RawValue,
    seed: U64,
}

#[derive(Deserialize)]
struct FlowStart {
    flow: u32,
    now_ms: U64,
    store: Option<u32>,
}

#[derive(Deserialize)]
struct FlowHandle {
    flow: u32,
    now_ms: U64,
    input: Input,
    store: Option<u32>,
}

#[derive(Deserialize)]
struct FlowRef {
    flow: u32,
}

#[derive(Deserialize)]
struct StoreCreate {
    max_entries: Option<U64>,
    max_bytes: Option<U64>,
    shards: Option<U64>,
}

#[derive(Deserialize)]
struct StoreApply {
    store: u32,
    now_ms: U64,
    store_op: StoreOp,
}

#[derive(Deserialize)]
struct StoreRef {
    store: u32,
}

#[derive(Deserialize)]
struct GetOrLoadReq<'a> {
    store: u32,
    request: Request,
    #[serde(borrow)]
    policy: &'a RawValue,
    seed: U64,
    now_ms: U64,
}

#[derive(Serialize)]
struct GetOrLoadReply<'a> {
    flow: Option<u32>,
    step: &'a Step,
    stats: &'a karlton_core::Stats,
}

#[derive(Deserialize)]
struct SetOpReq<'a> {
    write: Write,
    #[serde(borrow)]
    policy: &'a RawValue,
    store_now: U64,
    rand: U64,
}

#[derive(Deserialize)]
struct InvalidateReq {
    key: String,
    #[serde(default)]
    mode: InvalidateMode,
}

#[derive(Deserialize)]
struct BumpReq {
    gen_key: String,
    rand: U64,
}
