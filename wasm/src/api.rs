//! The JSON dispatcher behind `karlton_call`, and the instance state (handle tables).
//!
//! # Requests and replies
//!
//! A request is `{"op": "<name>", ...fields}`; a reply is `{"ok": <value>}` or
//! `{"error": {"code": "<code>", "message": "<text>"}}`. `u64` fields (marked `u64` below) take
//! a JSON number or a decimal string. Values that cross as JSON use the serde forms of
//! karlton-core's types (`Entry`, `Request`, `Input`, `Step`, `StoreOp`, `StoreReply`, `Stats`,
//! `Write`), so a reply is byte-identical to `serde_json::to_string` of the native result.
//! They are read and written by hand ([`crate::json`], `forms`; policies by core's
//! [`Policy::from_json`]), not through serde's
//! derives: that keeps the module small (see the README's "Size" section).
//!
//! | op | fields | `ok` value |
//! |----|--------|------------|
//! | `version` | | `{"abi": 1, "core": "<crate version>"}` |
//! | `key_build` | `namespace`, `segments?` [str], `params?` any JSON (absent or `null` = none), `version?` u64, `hash_tag?` bool, `max_len?` u64, `tags?` [str] | `{"key", "generation_key", "tag_keys": [..]}` |
//! | `params_hash` | `params` any JSON | `"<32 hex>"` |
//! | `policy` | `policy` (PolicySpec JSON) | the validated policy, every field, hard TTL resolved |
//! | `entry_encode` | `entry` (Entry JSON) | `"<hex>"` |
//! | `entry_decode` | `hex` | Entry JSON, or error `entry_decode` (corrupt bytes = a miss) |
//! | `entry_describe` | `hex`, `now_ms`, `policy?` | `{"freshness", "soft_at", "hard_at", "usable_until", "load_ms", "version", "negative", "codec", "value_len", "generations", "tags"}` (core's `entry::describe`), or error `entry_decode` |
//! | `decide` | `now_ms`, `soft_at`, `hard_at`, `load_ms?` u64, `policy`, `rand` u64 | `"fresh"`, `"refresh_early"`, `"stale"`, `"usable_on_error"` or `"gone"` |
//! | `jittered_ttls` | `policy`, `rand` u64 | `{"soft_ttl_ms", "hard_ttl_ms"}` |
//! | `flow_create` | `request` (Request JSON), `policy`, `seed` u64 | flow handle (number) |
//! | `flow_start` | `flow`, `now_ms`, `store?` | Step JSON |
//! | `flow_handle` | `flow`, `now_ms`, `input` (Input JSON), `store?` | Step JSON |
//! | `flow_stats` | `flow` | Stats JSON |
//! | `flow_drop` | `flow` | Stats JSON (the flow's final counts) |
//! | `store_create` | `max_entries?`, `max_bytes?`, `shards?`, `seed?` u64 | store handle (number) |
//! | `store_stats` | `store` | `{"slots", "bytes", "evictions"}` |
//! | `store_apply` | `store`, `now_ms`, `store_op` (StoreOp JSON) | StoreReply JSON |
//! | `store_drop` | `store` | `true` |
//! | `get_or_load` | `store`, `request`, `policy`, `seed`, `now_ms` | `{"flow": handle or null, "step": Step, "stats": Stats}` |
//! | `set_op` | `write` (Write JSON), `policy`, `store_now`, `rand` u64 | StoreOp JSON |
//! | `invalidate_op` | `key`, `mode?` (`"delete"` / `"mark_stale"`) | StoreOp JSON |
//! | `bump_op` | `gen_key`, `rand` u64 | StoreOp JSON |
//! | `coord_create` | `seed` u64, `fast_read?` bool | coordinator handle (number) |
//! | `coord_get_or_load` | `coord`, `now_ms`, `request`, `policy`, `store?`, `within?` (flights whose loaders the call runs in: their keys answer a `reentrant` error) | Ticket JSON |
//! | `coord_get_or_load_replacing` | `coord`, `now_ms`, `request`, `policy`, `served` (the Served that did not decode), `store?` | Ticket JSON |
//! | `coord_replace_served` | `coord`, `now_ms`, `call` (whose last action was `serve` of a value that did not decode), `store?` | Ticket JSON |
//! | `coord_joined` | `coord`, `now_ms`, `call` u64, `store?` | Ticket JSON |
//! | `coord_handle` | `coord`, `now_ms`, `call`, `input` (Input JSON), `store?` | Action JSON |
//! | `coord_handle_fast_read` | `coord`, `now_ms`, `call`, `replies` ([RedisValue JSON]) or `error` (message), `store?` | Action JSON |
//! | `coord_cancel` | `coord`, `call` | StoreOp JSON to run (a lease release) or `null` |
//! | `coord_op` | `coord`, `now_ms`, `call_op` (Op JSON: get / set / invalidate / bump), `policy`, `store?` | `{"call", "action": Action}` |
//! | `coord_poll_event` | `coord` | Event JSON or `null` |
//! | `coord_events` | `coord` | `[Event, ..]` (drains) |
//! | `coord_stats` | `coord` | Stats JSON |
//! | `coord_pending` | `coord` | `[calls, flights]` |
//! | `coord_report_undecodable` | `coord`, `served` | `null` |
//! | `coord_memory_hit` | `coord`, `store`, `now_ms`, `key`, `gen_keys?`, `policy` | Served JSON (a counted fresh hit) or `null` |
//! | `coord_drop` | `coord` | Stats JSON (the final counts) |
//!
//! `coord_*` is karlton-core's [`Coordinator`] (drive it as its module docs say: take the
//! Ticket/Action, then drain `coord_events`). The module has no randomness: **the host must pass
//! a random `seed`** from its OS/runtime source (`crypto.getRandomValues`), one per coordinator;
//! it feeds lease tokens, jitter and XFetch. With `store` (an in-module memory store), every
//! `store` action runs against it inline and the reply is the first other action. Ticket,
//! Action, Event, Input, Op, Served and Answer cross in their serde forms, so replies compare
//! directly with the conformance vectors (`tests/vectors/coordinator.json`). A coordinator lives
//! until `coord_drop`.
//!
//! With `store` (a handle from `store_create`), `flow_start` and `flow_handle` run every
//! `store` step against that in-module memory store at `now_ms` and return the first step that
//! is not a store op: a fresh hit is one call. `get_or_load` is `flow_create` + `flow_start` with
//! a store in one call; when the step is `done` the flow is dropped at once (`flow` is `null`).
//! Flows otherwise live until `flow_drop`. Handles are numbers, never reused within an instance.
//!
//! Error codes: `bad_input` (pointer/length not inside a live `karlton_alloc` block), `utf8`,
//! `json` (not JSON, or no string `op`), `bad_request` (fields missing or of the wrong type),
//! `unknown_op`, `unknown_handle`, `key`, `policy`, `entry_decode`, `too_many_handles`, `internal`.
//!
//! The policy parsed last is cached by its JSON text, so passing the same policy on every call
//! costs one string comparison.

use karlton_core::entry::{DecodeError, Entry};
use karlton_core::flow;
use karlton_core::freshness::{
    Decision, Freshness, decide_raw, freshness, jitter_reduction, jittered_ttls, xfetch,
};
use karlton_core::key::{self, Key, KeyError};
use karlton_core::store::{InvalidateMode, StoreFailure, hex};
use karlton_core::coordinator::{Action, CallId, Coordinator, FlightId, Ticket};
use karlton_core::{GetOrLoad, MemoryStore, MemoryStoreConfig, Policy, PolicyError, Stats, Step};
use std::borrow::Cow;

use crate::forms;
use crate::json::{self, O, Obj, bad};
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

/// Most live handles of one kind (flows, stores, coordinators). A host that never drops its
/// handles gets an error reply (`too_many_handles`) instead of a module that grows until the
/// runtime kills it; the bound also caps the cost of `remove` (a Vec shift).
pub const MAX_HANDLES: usize = 65_536;

/// Most live `karlton_alloc` blocks. A host keeps one request buffer (a few at most); a leak is
/// refused (`karlton_alloc` returns 0) rather than grown, so finding a block stays bounded.
pub const MAX_BLOCKS: usize = 1_024;

impl<T> Table<T> {
    const fn new() -> Self {
        Table(Vec::new())
    }
    fn insert(&mut self, h: u32, v: T) {
        self.0.push((h, v));
    }
    /// `Ok` if one more handle of this kind fits ([`MAX_HANDLES`]).
    fn room(&self, kind: &str) -> Result<(), Fail> {
        if self.0.len() < MAX_HANDLES {
            Ok(())
        } else {
            Err(Fail::new(
                "too_many_handles",
                format!("{MAX_HANDLES} live {kind} handles: drop some (a leak?)"),
            ))
        }
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
    coords: Table<Coordinator>,
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
    coords: Table::new(),
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
            return Err(Fail::new(
                "internal",
                "handle space exhausted; create a new instance",
            ));
        }
        self.next_handle += 1;
        Ok(h)
    }
}

const ALIGN: usize = 8;

/// Allocate a tracked block (`karlton_alloc`). Returns 0 for `len == 0`, when out of memory,
/// and when [`MAX_BLOCKS`] blocks are live.
pub fn alloc(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let Ok(layout) = std::alloc::Layout::from_size_align(len, ALIGN) else {
        return 0;
    };
    let mut st = state();
    if st.blocks.len() >= MAX_BLOCKS {
        return 0;
    }
    // SAFETY: `layout` has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        return 0;
    }
    st.blocks.push((p as usize, len));
    p as usize
}

/// Free a block from [`alloc`] (`karlton_free`). A pair that is not a live block is ignored.
pub fn free(ptr: usize, len: usize) -> bool {
    let mut st = state();
    let Some(i) = st.blocks.iter().position(|&b| b == (ptr, len)) else {
        return false;
    };
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
        st.blocks
            .iter()
            .any(|&(start, n)| start <= ptr && end <= start + n)
    });
    if inside {
        // SAFETY: the range lies inside a live block allocated by `alloc` (checked above). The
        // dispatcher only reads it, and frees blocks only through `karlton_free`, which cannot
        // run during this call.
        let input = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        dispatch(&mut st, input, &mut out);
    } else {
        error(
            &mut out,
            &Fail::new("bad_input", "request is not inside a karlton_alloc block"),
        );
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

/// An error reply. Boxed: results stay one word wide, which keeps every `?` in the dispatcher
/// cheap (moving 32-byte errors around cost kilobytes of code).
pub(crate) struct Fail(Box<FailData>);

struct FailData {
    code: &'static str,
    message: String,
    /// A stable, structured description (`{"kind": ...}`) for errors callers branch on: the
    /// same objects the conformance vectors expect, as JSON text (members in key order, as a
    /// `serde_json::Value` object writes them).
    detail: Option<Vec<u8>>,
}

/// A member of an error's `detail` object.
#[derive(Clone, Copy)]
enum M<'a> {
    U(u64),
    S(&'a str),
    Null,
}

/// `{"kind": kind}` plus `members` (given in key order): one non-generic writer, the members
/// that sort before `kind` first (a closure pair per call site cost ≈ 1.5 KB of module).
#[inline(never)]
fn detail(kind: &str, members: &[(&str, M<'_>)]) -> Option<Vec<u8>> {
    let mut d = Vec::new();
    let mut o = O::new(&mut d);
    let write = |o: &mut O<'_>, k: &str, v: M<'_>| match v {
        M::U(n) => {
            o.u64(k, n);
        }
        M::S(t) => {
            o.str(k, t);
        }
        M::Null => json::null(o.key(k)),
    };
    let at = members.iter().take_while(|(k, _)| *k < "kind").count();
    for &(k, v) in &members[..at] {
        write(&mut o, k, v);
    }
    o.str("kind", kind);
    for &(k, v) in &members[at..] {
        write(&mut o, k, v);
    }
    o.end();
    Some(d)
}

impl Fail {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Fail {
        Fail::with(code, message.into(), None)
    }
    #[inline(never)]
    fn with(code: &'static str, message: String, detail: Option<Vec<u8>>) -> Fail {
        Fail(Box::new(FailData {
            code,
            message,
            detail,
        }))
    }
    fn key(e: KeyError) -> Fail {
        let detail = match &e {
            KeyError::EmptyNamespace => detail("empty_namespace", &[]),
            KeyError::NamespaceTooLong { len, max } => detail(
                "namespace_too_long",
                &[("len", M::U(*len as u64)), ("max", M::U(*max as u64))],
            ),
            KeyError::Params(_) => detail("params", &[]),
            KeyError::InvalidJson(_) => detail("invalid_json", &[]),
            KeyError::MaxLenTooSmall { len, min } => detail(
                "max_len_too_small",
                &[("len", M::U(*len as u64)), ("min", M::U(*min as u64))],
            ),
        };
        Fail::with("key", e.to_string(), detail)
    }
    fn policy(e: PolicyError) -> Fail {
        let field = e.field().map_or(M::Null, M::S);
        let detail = detail(e.kind(), &[("field", field)]);
        Fail::with("policy", e.to_string(), detail)
    }
    fn decode(e: DecodeError) -> Fail {
        let message;
        let (kind, members): (&str, &[(&str, M<'_>)]) = match &e {
            DecodeError::TooShort => ("too_short", &[]),
            DecodeError::BadMagic => ("bad_magic", &[]),
            DecodeError::UnsupportedFormat(f) => {
                ("unsupported_format", &[("format", M::U(u64::from(*f)))])
            }
            DecodeError::UnknownFlags(f) => ("unknown_flags", &[("flags", M::U(u64::from(*f)))]),
            DecodeError::Truncated(field) => ("truncated", &[("field", M::S(field))]),
            DecodeError::InvalidVarint(field) => ("invalid_varint", &[("field", M::S(field))]),
            DecodeError::InvalidUtf8 => ("invalid_utf8", &[]),
            DecodeError::TrailingBytes(n) => ("trailing_bytes", &[("count", M::U(*n as u64))]),
            DecodeError::TooLarge(field, found, max) => (
                "too_large",
                &[("field", M::S(field)), ("found", M::U(*found)), ("max", M::U(*max))],
            ),
            DecodeError::Inconsistent(why) => ("inconsistent", &[("reason", M::S(why))]),
            other => {
                message = other.to_string();
                ("unknown", &[("message", M::S(&message))])
            }
        };
        Fail::with("entry_decode", e.to_string(), detail(kind, members))
    }
}

type Res = Result<(), Fail>;

fn error(out: &mut Vec<u8>, f: &Fail) {
    out.clear();
    out.extend_from_slice(b"{\"error\":");
    let mut o = O::new(out);
    o.str("code", f.0.code).str("message", &f.0.message);
    if let Some(d) = &f.0.detail {
        o.key("detail").extend_from_slice(d);
    }
    o.end();
    out.push(b'}');
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

fn run(st: &mut State, text: &str, out: &mut Vec<u8>) -> Res {
    let (doc, raw) = json::parse(text)?;
    let r = Obj::top(&doc, &raw).ok_or_else(|| Fail::new("json", "a request must be a JSON object"))?;
    let op = match r.get("op") {
        Ok(Some(raw)) => {
            json::string(raw, "op").map_err(|_| Fail::new("json", "`op` must be a string"))?
        }
        Ok(None) => return Err(Fail::new("json", "missing field `op`")),
        Err(_) => return Err(Fail::new("json", "duplicate field `op`")),
    };
    match op.as_str() {
        "version" => {
            O::new(out)
                .u64("abi", u64::from(crate::ABI_VERSION))
                .str("core", env!("CARGO_PKG_VERSION"))
                .end();
        }
        "key_build" => key_build(&r, out)?,
        "params_hash" => {
            // A pure hash of any JSON value, `null` included (only keys read null as "none").
            let text = match params_text(&r)? {
                Some(t) => t,
                None if r.has("params")? => Cow::Borrowed("null"),
                None => return Err(bad("`params` or `params_json` is required")),
            };
            let (hash, canonical) = params_hash(&text)?;
            O::new(out)
                .str("hash", &hash)
                .str("canonical", &canonical)
                .end();
        }
        "policy" => {
            let raw = r.raw_opt("policy")?;
            let pj = r.string_opt("policy_json")?;
            let p = match (raw, pj.as_deref()) {
                (Some(raw), None) => policy(st, raw)?,
                (None, Some(t)) => policy(st, t)?,
                _ => return Err(bad("give one of `policy` and `policy_json`")),
            };
            forms::write_policy(out, &p);
        }
        "entry_encode" => {
            let e = forms::entry(r.req("entry")?)?;
            json::hex(out, &e.encode());
        }
        "entry_decode" => {
            let h = r.string("hex")?;
            let bytes = hex::decode(&h).ok_or_else(|| bad("`hex` is not hex"))?;
            let e = Entry::decode(&bytes).map_err(Fail::decode)?;
            forms::write_entry(out, &e);
        }
        "entry_describe" => {
            // The policy first, then the moment, then the bytes (docs/value-model.md: in
            // Python and Node a policy is an object built before the call).
            let p = match r.raw_opt("policy")? {
                Some(raw) => policy(st, raw)?,
                // (not Policy::default(): its expect() would pull float Debug formatting in)
                None => policy(st, "{}")?,
            };
            let h = r.string("hex")?;
            let now = r.arg("now_ms")?;
            let bytes = hex::decode(&h).ok_or_else(|| bad("`hex` is not hex"))?;
            let i = karlton_core::entry::describe(&bytes, now, &p).map_err(Fail::decode)?;
            forms::write_entry_info(out, &i, i.freshness.name());
        }
        "decide" => {
            let (now, soft, hard) = (r.arg("now_ms")?, r.arg("soft_at")?, r.arg("hard_at")?);
            let load = r.arg_opt("load_ms")?.unwrap_or(0);
            let raw = r.raw_req("policy")?;
            let rand = r.arg("rand")?;
            let p = policy(st, raw)?;
            json::str(out, decision(decide_raw(now, soft, hard, load, &p, rand)));
        }
        "freshness" => {
            let (now, soft, hard) = (r.arg("now_ms")?, r.arg("soft_at")?, r.arg("hard_at")?);
            let sie = r.arg_opt("stale_if_error_ms")?.unwrap_or(0);
            json::str(out, freshness(now, soft, hard, sie).name());
        }
        "xfetch" => {
            let (now, soft, load) = (r.arg("now_ms")?, r.arg("soft_at")?, r.arg("load_ms")?);
            let beta = r.f64("beta")?;
            let rand = r.arg("rand")?;
            json::bool_(out, xfetch(now, soft, load, beta, rand));
        }
        "jitter_reduction" => {
            let (ttl, ppm, rand) = (r.arg("ttl_ms")?, r.arg("jitter_ppm")?, r.arg("rand")?);
            json::u64(out, jitter_reduction(ttl, ppm, rand));
        }
        "jittered_ttls" => {
            let raw = r.raw_req("policy")?;
            let rand = r.arg("rand")?;
            let p = policy(st, raw)?;
            let (soft, hard) = jittered_ttls(&p, rand);
            O::new(out)
                .u64("jitter_ppm", p.jitter_ppm())
                .u64("soft_ttl_ms", soft)
                .u64("hard_ttl_ms", hard)
                .end();
        }
        "flow_create" => {
            let req = forms::request(r.req("request")?)?;
            let raw = r.raw_req("policy")?;
            let seed = r.arg("seed")?;
            let p = policy(st, raw)?;
            st.flows.room("flow")?;
            let h = st.handle()?;
            st.flows.insert(h, GetOrLoad::new(req, p, seed));
            json::u64(out, u64::from(h));
        }
        "flow_start" => {
            let (flow, now, store) = (r.u32("flow")?, r.arg("now_ms")?, r.u32_opt("store")?);
            forms::write_step(out, &drive(st, flow, store, now, |f| f.start(now))?);
        }
        "flow_handle" => {
            let (flow, now) = (r.u32("flow")?, r.arg("now_ms")?);
            let input = forms::input(r.req("input")?)?;
            let store = r.u32_opt("store")?;
            forms::write_step(out, &drive(st, flow, store, now, |f| f.handle(now, input))?);
        }
        "flow_stats" | "flow_drop" => {
            let flow = r.u32("flow")?;
            let stats = if op == "flow_stats" {
                *st.flows
                    .get(&flow)
                    .ok_or_else(|| unknown("flow", flow))?
                    .stats()
            } else {
                *st.flows
                    .remove(&flow)
                    .ok_or_else(|| unknown("flow", flow))?
                    .stats()
            };
            forms::write_stats(out, &stats);
        }
        "store_create" => {
            let d = MemoryStoreConfig::default();
            let size = |k: &str, d: usize| -> Result<usize, Fail> {
                Ok(r.arg_opt(k)?
                    .map_or(d, |x| usize::try_from(x).unwrap_or(usize::MAX)))
            };
            let cfg = MemoryStoreConfig {
                max_entries: size("max_entries", d.max_entries)?,
                max_bytes: size("max_bytes", d.max_bytes)?,
                shards: size("shards", d.shards)?.min(1024),
                seed: r.arg_opt("seed")?.unwrap_or(d.seed),
            };
            st.stores.room("store")?;
            let h = st.handle()?;
            st.stores.insert(h, MemoryStore::new(cfg));
            json::u64(out, u64::from(h));
        }
        "store_apply" => {
            let (store, now) = (r.u32("store")?, r.arg("now_ms")?);
            let op = forms::store_op(r.req("store_op")?)?;
            let s = st
                .stores
                .get(&store)
                .ok_or_else(|| unknown("store", store))?;
            forms::write_store_reply(out, &s.apply(now, &op));
        }
        "store_stats" => {
            let store = r.u32("store")?;
            let s = st.stores.get(&store).ok_or_else(|| unknown("store", store))?;
            let mut o = O::new(out);
            o.u64("slots", s.len() as u64);
            o.u64("bytes", s.bytes() as u64);
            o.u64("evictions", s.evictions());
            o.end();
        }
        "store_drop" => {
            let store = r.u32("store")?;
            st.stores
                .remove(&store)
                .ok_or_else(|| unknown("store", store))?;
            json::bool_(out, true);
        }
        "get_or_load" => {
            let store = r.u32("store")?;
            let req = forms::request(r.req("request")?)?;
            let raw = r.raw_req("policy")?;
            let (seed, now) = (r.arg("seed")?, r.arg("now_ms")?);
            let p = policy(st, raw)?;
            let store = st
                .stores
                .get(&store)
                .ok_or_else(|| unknown("store", store))?;
            let mut f = GetOrLoad::new(req, p, seed);
            let first = f.start(now);
            let step = f.run_store_steps(now, first, |op| Ok(store.apply(now, op)));
            let stats = *f.stats();
            let flow = match step {
                Step::Done(_) => None,
                _ => {
                    st.flows.room("flow")?;
                    let h = st.handle()?;
                    st.flows.insert(h, f);
                    Some(h)
                }
            };
            let mut o = O::new(out);
            o.opt_u64("flow", flow.map(u64::from));
            forms::write_step(o.key("step"), &step);
            forms::write_stats(o.key("stats"), &stats);
            o.end();
        }
        "set_op" => {
            let w = forms::write(r.req("write")?)?;
            let raw = r.raw_req("policy")?;
            let (store_now, rand) = (r.arg("store_now")?, r.arg("rand")?);
            let p = policy(st, raw)?;
            forms::write_store_op(out, &flow::set_op(&w, &p, store_now, rand));
        }
        "get_op" => {
            let key = r.string("key")?;
            let gen_keys = r.strings_default("gen_keys")?;
            forms::write_store_op(out, &flow::get_op(&key, &gen_keys));
        }
        "get_result" => {
            let reply = forms::read_reply(&Obj::sub(r.req("reply")?, "`reply`")?)?;
            // A get's answer depends on the reply alone; a policy, if sent, is still validated.
            if let Some(raw) = r.raw_opt("policy")? {
                policy(st, raw)?;
            }
            let mut stats = Stats::default();
            let served = flow::get_result(&reply, &mut stats);
            got(out, served.as_ref(), &stats);
        }
        "get_on_store_error" => {
            let raw = r.raw_req("policy")?;
            let message = r.string("message")?;
            let p = policy(st, raw)?;
            let mut stats = Stats::default();
            match flow::get_on_store_error(&p, StoreFailure { message }, &mut stats) {
                Ok(served) => got(out, served.as_ref(), &stats),
                Err(e) => {
                    // `{"error", "message"}`: declaration order is key order.
                    let mut d = Vec::new();
                    forms::write_flow_error(&mut d, &e);
                    return Err(Fail::with("flow", e.to_string(), Some(d)));
                }
            }
        }
        "invalidate_op" => {
            let key = r.string("key")?;
            let mode = match r.get("mode")? {
                None => InvalidateMode::default(),
                Some(raw) => json::variant(raw, "mode", forms::INVALIDATE_MODES)?,
            };
            forms::write_store_op(out, &flow::invalidate_op(&key, mode));
        }
        "bump_op" => {
            let gen_key = r.string("gen_key")?;
            let rand = r.arg("rand")?;
            forms::write_store_op(out, &flow::bump_op(&gen_key, rand));
        }
        c if c.starts_with("coord_") => coord(st, &r, c.get(6..).unwrap_or_default(), out)?,
        other => return Err(Fail::new("unknown_op", format!("unknown op `{other}`"))),
    }
    Ok(())
}

/// The `coord_*` ops (see the module docs): `name` is the op without its prefix.
fn coord(st: &mut State, r: &Obj<'_>, name: &str, out: &mut Vec<u8>) -> Res {
    const OPS: &[&str] = &[
        "create", "drop", "get_or_load", "get_or_load_replacing", "replace_served", "joined", "handle",
        "handle_fast_read", "cancel", "op", "poll_event", "events", "stats", "pending",
        "report_undecodable", "memory_hit",
    ];
    if !OPS.contains(&name) {
        return Err(Fail::new("unknown_op", format!("unknown op `coord_{name}`")));
    }
    if name == "create" {
        let seed = r.arg("seed")?;
        let fast = match r.get("fast_read")? {
            None => false,
            Some(_) => r.bool("fast_read")?,
        };
        st.coords.room("coordinator")?;
        let h = st.handle()?;
        st.coords.insert(h, Coordinator::new(seed, fast));
        json::u64(out, u64::from(h));
        return Ok(());
    }
    let h = r.u32("coord")?;
    if name == "drop" {
        let c = st.coords.remove(&h).ok_or_else(|| unknown("coordinator", h))?;
        forms::write_stats(out, &c.stats());
        return Ok(());
    }
    // Arguments first (a policy may need parsing), then the coordinator and the store.
    let now = || r.arg("now_ms");
    let call = || r.arg("call").map(CallId);
    let request = || forms::request(r.req("request")?);
    let pol = match name {
        "get_or_load" | "get_or_load_replacing" | "op" | "memory_hit" => {
            let raw = r.raw_req("policy")?;
            Some(policy(st, raw)?)
        }
        _ => None,
    };
    let pol = move || pol.clone().ok_or_else(|| Fail::new("internal", "no policy"));
    let store = r.u32_opt("store")?;
    let State { coords, stores, .. } = st;
    let c = coords.get_mut(&h).ok_or_else(|| unknown("coordinator", h))?;
    let store = match store {
        Some(s) => Some(stores.get(&s).ok_or_else(|| unknown("store", s))?),
        None => None,
    };
    match name {
        "get_or_load" => {
            let (now, req) = (now()?, request()?);
            let within = match r.get("within")? {
                Some(_) => r.u64s("within")?.into_iter().map(FlightId).collect(),
                None => Vec::new(),
            };
            let t = c.get_or_load_within(now, req, pol()?, &within);
            forms::write_ticket(out, &inline_ticket(c, store, now, t));
        }
        "get_or_load_replacing" => {
            let (now, req) = (now()?, request()?);
            let bad = forms::served(r.req("served")?)?;
            let t = c.get_or_load_replacing(now, req, pol()?, bad);
            forms::write_ticket(out, &inline_ticket(c, store, now, t));
        }
        "replace_served" => {
            let (now, call) = (now()?, call()?);
            let t = c.replace_served(now, call);
            forms::write_ticket(out, &inline_ticket(c, store, now, t));
        }
        "joined" => {
            let (now, call) = (now()?, call()?);
            let t = c.joined(now, call);
            forms::write_ticket(out, &inline_ticket(c, store, now, t));
        }
        "handle" => {
            let (now, call) = (now()?, call()?);
            let input = forms::input(r.req("input")?)?;
            let a = c.handle(now, call, input);
            forms::write_action(out, &inline(c, store, now, call, a));
        }
        "handle_fast_read" => {
            let (now, call) = (now()?, call()?);
            let replies = match (r.opt("replies")?, r.string_opt("error")?) {
                (Some(raw), None) => Ok(forms::redis_values(raw)?),
                (None, Some(message)) => Err(StoreFailure { message }),
                _ => return Err(bad("give one of `replies` and `error`")),
            };
            let a = c.handle_fast_read(now, call, replies);
            forms::write_action(out, &inline(c, store, now, call, a));
        }
        "cancel" => match c.cancel(call()?) {
            Some(op) => forms::write_store_op(out, &op),
            None => json::null(out),
        },
        "op" => {
            let now = now()?;
            let op = forms::op(r.req("call_op")?)?;
            let (call, a) = c.op(now, op, pol()?);
            let mut o = O::new(out);
            o.u64("call", call.0);
            forms::write_action(o.key("action"), &inline(c, store, now, call, a));
            o.end();
        }
        "poll_event" => match c.poll_event() {
            Some(e) => forms::write_event(out, &e),
            None => json::null(out),
        },
        "events" => {
            out.push(b'[');
            let mut first = true;
            while let Some(e) = c.poll_event() {
                if !first {
                    out.push(b',');
                }
                first = false;
                forms::write_event(out, &e);
            }
            out.push(b']');
        }
        "stats" => forms::write_stats(out, &c.stats()),
        "pending" => {
            let (calls, flights) = c.pending();
            out.push(b'[');
            json::u64(out, calls as u64);
            out.push(b',');
            json::u64(out, flights as u64);
            out.push(b']');
        }
        "report_undecodable" => {
            let bad = forms::served(r.req("served")?)?;
            c.counters().report_undecodable(&bad);
            json::null(out);
        }
        "memory_hit" => {
            let now = now()?;
            let key = r.string("key")?;
            let gen_keys = r.strings_default("gen_keys")?;
            let s = store.ok_or_else(|| bad("`store` is required"))?;
            let hit = c.counters().memory_hit(s, now, &key, &gen_keys, &*pol()?);
            forms::write_opt_served(out, hit.as_ref());
        }
        _ => return Err(Fail::new("unknown_op", "unknown coord op")),
    }
    Ok(())
}

/// With an in-module store, run a call's store actions against it until it asks for
/// something else.
fn inline(
    c: &mut Coordinator,
    store: Option<&MemoryStore>,
    now: u64,
    call: CallId,
    mut a: Action,
) -> Action {
    if let Some(s) = store {
        while let Action::Store(op) = &a {
            let reply = s.apply(now, op);
            a = c.handle(now, call, karlton_core::Input::Store(reply));
        }
    }
    a
}

fn inline_ticket(c: &mut Coordinator, store: Option<&MemoryStore>, now: u64, t: Ticket) -> Ticket {
    match t {
        Ticket::Lead { call, action } => Ticket::Lead {
            call,
            action: inline(c, store, now, call, action),
        },
        t => t,
    }
}

fn got(out: &mut Vec<u8>, served: Option<&karlton_core::Served>, stats: &Stats) {
    let mut o = O::new(out);
    forms::write_opt_served(o.key("served"), served);
    forms::write_stats(o.key("stats"), stats);
    o.end();
}

fn decision(d: Decision) -> &'static str {
    match d {
        Decision::Fresh => "fresh",
        Decision::RefreshEarly => "refresh_early",
        Decision::Stale => "stale",
        Decision::UsableOnError => "usable_on_error",
        Decision::Gone => "gone",
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
fn params_text<'a>(r: &Obj<'a>) -> Result<Option<Cow<'a, str>>, Fail> {
    let raw = r.raw_opt("params")?;
    let text = r.string_opt("params_json")?;
    match (raw, text) {
        (Some(_), Some(_)) => Err(bad("give at most one of `params` and `params_json`")),
        (Some(r), None) => Ok(Some(Cow::Borrowed(r))),
        (None, t) => Ok(t.map(Cow::Owned)),
    }
}

/// Params hash and canonical form of JSON text, with the same checks, in the same order, as
/// `Key::params_json`.
fn params_hash(json: &str) -> Result<(String, String), Fail> {
    let v = karlton_core::json::parse(json)
        .map_err(|e| Fail::key(KeyError::InvalidJson(e.to_string())))?;
    key::check_integer_literals(json).map_err(|e| Fail::key(KeyError::Params(e.to_string())))?;
    let hash = key::params_hash_value(&v).map_err(Fail::key)?;
    let canonical =
        key::canonicalize_value(&v).map_err(|e| Fail::key(KeyError::Params(e.to_string())))?;
    Ok((hash, canonical))
}

/// Each argument is read and checked at its turn, in the one order of docs/value-model.md (the
/// core's: namespace, segments, params, version, hash_tag, max_len, tags), so that of several
/// bad arguments the first is reported, as in every runtime.
fn key_build(r: &Obj<'_>, out: &mut Vec<u8>) -> Res {
    let kerr = Fail::key;
    let mut k = Key::new(&r.string("namespace")?).map_err(kerr)?;
    k = k.segments(&r.strings_default("segments")?);
    if let Some(p) = params_text(r)? {
        k = k.params_json(&p).map_err(kerr)?;
    }
    if let Some(v) = r.arg_opt("version")? {
        k = k.version(v);
    }
    if r.get("hash_tag")?.is_some() {
        k = k.hash_tag(r.bool("hash_tag")?);
    }
    if let Some(n) = r.arg_opt("max_len")? {
        k = k
            .max_len(usize::try_from(n).unwrap_or(usize::MAX))
            .map_err(kerr)?;
    }
    let tags = r.strings_default("tags")?;
    let tag_keys: Vec<String> = tags.iter().map(|t| k.tag_key(t)).collect();
    O::new(out)
        .str("key", &k.build())
        .str("generation_key", &k.generation_key())
        .strs("tag_keys", &tag_keys)
        .end();
    Ok(())
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
