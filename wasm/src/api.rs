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

use karlton_core::entry::Entry;
use karlton_core::flow::{self, Request, Write};
use karlton_core::freshness::{
    Freshness, decide_raw, freshness, jitter_reduction, jittered_ttls, xfetch,
};
use karlton_core::key::{self, Key};
use karlton_core::store::{InvalidateMode, StoreOp, hex};
use karlton_core::{GetOrLoad, Input, MemoryStore, MemoryStoreConfig, Policy, Step};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
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

struct State {
    next_handle: u32,
    flows: BTreeMap<u32, GetOrLoad>,
    stores: BTreeMap<u32, MemoryStore>,
    /// The policy parsed last, by its JSON text.
    policy: Option<(String, Arc<Policy>)>,
    /// Live `karlton_alloc` blocks: start -> length.
    blocks: BTreeMap<usize, usize>,
    /// The reply of the last `karlton_call` (valid until the next one).
    reply: Vec<u8>,
}

static STATE: Mutex<State> = Mutex::new(State {
    next_handle: 1,
    flows: BTreeMap::new(),
    stores: BTreeMap::new(),
    policy: None,
    blocks: BTreeMap::new(),
    reply: Vec::new(),
});

fn state() -> MutexGuard<'static, State> {
    // Nothing here panics while holding the lock (and the wasm build aborts on panic), but a
    // poisoned lock would still hold consistent tables: keep going.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn handle(&mut self) -> u32 {
        let h = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        h
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
    state().blocks.insert(p as usize, len);
    p as usize
}

/// Free a block from [`alloc`] (`karlton_free`). A pair that is not a live block is ignored.
pub fn free(ptr: usize, len: usize) -> bool {
    let mut st = state();
    if st.blocks.get(&ptr) != Some(&len) {
        return false;
    }
    st.blocks.remove(&ptr);
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
    let inside = st
        .blocks
        .range(..=ptr)
        .next_back()
        .is_some_and(|(&start, &n)| ptr.checked_add(len).is_some_and(|end| end <= start + n));
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
}

impl Fail {
    fn new(code: &'static str, message: impl Into<String>) -> Fail {
        Fail { code, message: message.into() }
    }
}

type Res = Result<(), Fail>;

fn error(out: &mut Vec<u8>, f: &Fail) {
    #[derive(Serialize)]
    struct E<'a> {
        code: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct R<'a> {
        error: E<'a>,
    }
    out.clear();
    // Serializing two strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &R { error: E { code: f.code, message: &f.message } });
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
            put(out, &params_hash(r.params.get())?)
        }
        "policy" => {
            let r: PolicyReq = parse(text)?;
            put(out, &*policy(st, r.policy)?)
        }
        "entry_encode" => {
            let r: EntryEncode = parse(text)?;
            put(out, &hex::encode(&r.entry.encode()))
        }
        "entry_decode" => {
            let r: EntryDecode = parse(text)?;
            let bytes = hex::decode(&r.hex).ok_or_else(|| Fail::new("bad_request", "`hex` is not hex"))?;
            let e = Entry::decode(&bytes).map_err(|e| Fail::new("entry_decode", e.to_string()))?;
            put(out, &e)
        }
        "decide" => {
            let r: DecideReq = parse(text)?;
            let p = policy(st, r.policy)?;
            let load = r.load_ms.map_or(0, |x| x.0);
            put(out, &decide_raw(r.now_ms.0, r.soft_at.0, r.hard_at.0, load, &p, r.rand.0))
        }
        "jittered_ttls" => {
            let r: JitterReq = parse(text)?;
            let (soft_ttl_ms, hard_ttl_ms) = jittered_ttls(&*policy(st, r.policy)?, r.rand.0);
            put(out, &Ttls { soft_ttl_ms, hard_ttl_ms })
        }
        "flow_create" => {
            let r: FlowCreate = parse(text)?;
            let p = policy(st, r.policy)?;
            let h = st.handle();
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
            let h = st.handle();
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
            let p = policy(st, r.policy)?;
            let now = r.now_ms.0;
            let store = st.stores.get(&r.store).ok_or_else(|| unknown("store", r.store))?;
            let mut f = GetOrLoad::new(r.request, p, r.seed.0);
            let first = f.start(now);
            let step = f.run_store_steps(now, first, |op| Ok(store.apply(now, op)));
            let stats = *f.stats();
            let flow = match step {
                Step::Done(_) => None,
                _ => {
                    let h = st.handle();
                    st.flows.insert(h, f);
                    Some(h)
                }
            };
            put(out, &GetOrLoadReply { flow, step: &step, stats: &stats })
        }
        "set_op" => {
            let r: SetOpReq = parse(text)?;
            let p = policy(st, r.policy)?;
            put(out, &flow::set_op(&r.write, &p, r.store_now.0, r.rand.0))
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
fn policy(st: &mut State, raw: &RawValue) -> Result<Arc<Policy>, Fail> {
    let text = raw.get();
    if let Some((t, p)) = &st.policy {
        if t == text {
            return Ok(p.clone());
        }
    }
    let p = Arc::new(Policy::from_json(text).map_err(|e| Fail::new("policy", e.to_string()))?);
    st.policy = Some((text.to_owned(), p.clone()));
    Ok(p)
}

/// `params_hash` on JSON text, with the same integer-literal check as `Key::params_json`.
fn params_hash(json: &str) -> Result<String, Fail> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Fail::new("key", e.to_string()))?;
    key::check_integer_literals(json).map_err(|e| Fail::new("key", e.to_string()))?;
    key::params_hash(&v).map_err(|e| Fail::new("key", e.to_string()))
}

fn key_build(r: KeyBuild, out: &mut Vec<u8>) -> Res {
    let kerr = |e: key::KeyError| Fail::new("key", e.to_string());
    let mut k = Key::new(&r.namespace).map_err(kerr)?.segments(&r.segments).hash_tag(r.hash_tag);
    if let Some(p) = r.params {
        k = k.params_json(p.get()).map_err(kerr)?;
    }
    if let Some(v) = r.version {
        k = k.version(v.0);
    }
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
    #[serde(borrow)]
    params: &'a RawValue,
}

#[derive(Deserialize)]
struct PolicyReq<'a> {
    #[serde(borrow)]
    policy: &'a RawValue,
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
