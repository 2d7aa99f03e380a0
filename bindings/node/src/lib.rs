//! karlton-node: the native half of the `karlton` npm package.
//!
//! A thin translation layer over `karlton-core` (DESIGN §1: a binding translates types and runs a
//! drive loop; it never re-decides policy). The JavaScript facade (`lib/karlton.cjs`) owns the
//! asynchronous part of the drive loop — promises, timers, single-flight, the user's ioredis
//! client — and calls into this module for every decision:
//!
//! * [`NativeCache::memory_get_or_load`]: the whole MemoryStore hit path in one synchronous call
//!   (`GetOrLoad::start` + `run_store_steps`), answering the value itself on a fresh hit or a
//!   [`NativeFlow`] handle when the flow needs the loader, a wait, or a background refresh.
//! * [`NativeFlow`]: a `GetOrLoad` state machine behind a handle. Every input method returns the
//!   next step's code ([`STEP_STORE`] …); flows over the memory store run their store steps
//!   inside the call, so JavaScript only ever sees load / wait / serve / done. Over Redis the
//!   facade asks [`NativeFlow::redis_call`] for the script invocation (`karlton_core::redis`)
//!   and feeds the raw reply back with [`NativeFlow::feed_redis`].
//! * [`NativeOp`]: the one-op writes and plain reads (`get`, `set`, `invalidate`, `bump`) built by
//!   `karlton_core::flow`'s pure functions, run the same two ways.
//! * The Redis fresh-hit fast path: [`redis_fast_read_commands`] hands the facade the core's
//!   plain commands (`karlton_core::redis::fast_read_commands`), which it sends in one write;
//!   `redisFastRead` (raw N-API, [`redis_fast_read_function`]) or
//!   [`NativeCache::redis_fast_read`] feed the replies to `fast_read_result`: a value on a clean
//!   fresh hit, `undefined` when the facade must run the flow (the `read` script) instead.

#![deny(clippy::all)]
#![allow(missing_docs)] // the public, documented surface is the JavaScript package

use karlton_core::entry::{Entry, codec};
use karlton_core::flow::{self, Write};
use karlton_core::key::Key;
use karlton_core::policy::parse_duration_ms as core_parse_duration;
use karlton_core::redis::{self, RedisValue};
use karlton_core::{
    AtomicStats, FlowError, GetOrLoad, Input, InvalidateMode, Loaded, MemoryStore, MemoryStoreConfig,
    Policy, Request, Served, Stats, Step, StoreFailure, StoreOp, StoreReply,
};
use napi::bindgen_prelude::{ToNapiValue, TypeName};
use napi::bindgen_prelude::JsObjectValue;
use napi::{Either, Error, JsValue, Result, Status, Unknown, ValueType, sys};
use napi_derive::napi;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Step codes returned by every [`NativeFlow`] input method.
pub const STEP_STORE: u32 = 0;
pub const STEP_LOAD: u32 = 1;
pub const STEP_WAIT: u32 = 2;
pub const STEP_SERVE: u32 = 3;
pub const STEP_DONE_OK: u32 = 4;
pub const STEP_DONE_ERR: u32 = 5;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(Status::InvalidArg, msg.into())
}

// ---------------------------------------------------------------------------------------------
// Values handed to JavaScript

/// A value for JavaScript: what the facade decodes into the user's value.
pub enum Out {
    /// JSON text (codec JSON): the facade `JSON.parse`s it.
    Json(Arc<[u8]>),
    /// Raw bytes (codec RAW): handed over as a `Buffer`.
    Raw(Arc<[u8]>),
    /// Any other codec: `{ codec, value }` for the user's codec.
    Coded(u8, Arc<[u8]>),
    /// A cached or loaded "not found".
    Negative,
    /// Nothing (a `get` miss).
    Miss,
    Bool(bool),
    Num(f64),
    /// A flow handle (the hit path needs more than one synchronous call).
    Flow(Box<NativeFlow>),
}

impl Out {
    fn served(s: &Served) -> Out {
        if s.negative {
            return Out::Negative;
        }
        match s.codec {
            codec::JSON => Out::Json(s.value.clone()),
            codec::RAW => Out::Raw(s.value.clone()),
            c => Out::Coded(c, s.value.clone()),
        }
    }
}

unsafe fn buffer_copy(env: sys::napi_env, b: &[u8]) -> Result<sys::napi_value> {
    let mut out = std::ptr::null_mut();
    let mut data = std::ptr::null_mut();
    let status = unsafe { sys::napi_create_buffer_copy(env, b.len(), b.as_ptr().cast(), &mut data, &mut out) };
    if status != sys::Status::napi_ok {
        return Err(Error::new(Status::GenericFailure, "failed to create a Buffer"));
    }
    Ok(out)
}

impl TypeName for Out {
    fn type_name() -> &'static str {
        "unknown"
    }
    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ToNapiValue for Out {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        unsafe {
            match val {
                Out::Json(b) => {
                    let mut out = std::ptr::null_mut();
                    let status = sys::napi_create_string_utf8(env, b.as_ptr().cast(), b.len() as isize, &mut out);
                    if status != sys::Status::napi_ok {
                        return Err(Error::new(Status::GenericFailure, "failed to create a string"));
                    }
                    Ok(out)
                }
                Out::Raw(b) => buffer_copy(env, &b),
                Out::Coded(c, b) => {
                    let value = buffer_copy(env, &b)?;
                    Coded { codec: c as u32, value: Unknown::from_raw_unchecked(env, value) }.into_napi(env)
                }
                Out::Negative => napi::bindgen_prelude::Null::to_napi_value(env, napi::bindgen_prelude::Null),
                Out::Miss => <()>::to_napi_value(env, ()),
                Out::Bool(b) => bool::to_napi_value(env, b),
                Out::Num(n) => f64::to_napi_value(env, n),
                Out::Flow(f) => NativeFlow::to_napi_value(env, *f),
            }
        }
    }
}

struct Coded<'a> {
    codec: u32,
    value: Unknown<'a>,
}

impl Coded<'_> {
    unsafe fn into_napi(self, env: sys::napi_env) -> Result<sys::napi_value> {
        unsafe {
            let mut obj = std::ptr::null_mut();
            sys::napi_create_object(env, &mut obj);
            let c = u32::to_napi_value(env, self.codec)?;
            sys::napi_set_named_property(env, obj, c"codec".as_ptr(), c);
            sys::napi_set_named_property(env, obj, c"value".as_ptr(), self.value.raw());
            Ok(obj)
        }
    }
}

/// A value from JavaScript to store: text (UTF-8) or bytes.
fn value_bytes(v: Either<String, &[u8]>) -> Arc<[u8]> {
    match v {
        Either::A(s) => Arc::from(s.into_bytes().into_boxed_slice()),
        Either::B(b) => Arc::from(b),
    }
}

fn codec_id(c: u32) -> Result<u8> {
    u8::try_from(c).map_err(|_| invalid(format!("codec id {c} is not in 0..=255")))
}

fn parse_u64(what: &str, s: &str) -> Result<u64> {
    s.parse::<u64>().map_err(|_| invalid(format!("{what} {s:?} is not an unsigned 64-bit integer")))
}

// ---------------------------------------------------------------------------------------------
// Free functions: keys, durations, scripts, entry codec

/// Parse `"250ms"`, `"5m"`, `"1.5h"` … into milliseconds (core's `parse_duration_ms`).
#[napi]
pub fn parse_duration_ms(text: String) -> Result<f64> {
    core_parse_duration(&text).map(|v| v as f64).map_err(|e| invalid(e.to_string()))
}

fn make_key(namespace: &str, segments: &[String], params_json: Option<&str>, version: Option<&str>, hash_tag: bool, max_len: Option<u32>) -> Result<Key> {
    let mut k = Key::new(namespace).map_err(|e| invalid(e.to_string()))?.segments(segments).hash_tag(hash_tag);
    if let Some(p) = params_json {
        k = k.params_json(p).map_err(|e| invalid(e.to_string()))?;
    }
    if let Some(v) = version {
        k = k.version(parse_u64("version", v)?);
    }
    if let Some(n) = max_len {
        k = k.max_len(n as usize).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(k)
}

/// Build a key: `[entryKey, namespaceGenerationKey]`.
#[napi]
pub fn build_key(namespace: String, segments: Vec<String>, params_json: Option<String>, version: Option<String>, hash_tag: bool, max_len: Option<u32>) -> Result<Vec<String>> {
    let k = make_key(&namespace, &segments, params_json.as_deref(), version.as_deref(), hash_tag, max_len)?;
    Ok(vec![k.build(), k.generation_key()])
}

/// The generation-counter key of `tag` in a namespace (same form as the namespace's keys).
#[napi]
pub fn tag_key(namespace: String, hash_tag: bool, max_len: Option<u32>, tag: String) -> Result<String> {
    Ok(make_key(&namespace, &[], None, None, hash_tag, max_len)?.tag_key(&tag))
}

#[napi(object)]
pub struct ScriptInfo {
    pub name: String,
    pub sha: String,
    pub source: String,
}

/// The store protocol's Lua scripts (from `karlton_core::redis`), in call-index order.
#[napi]
pub fn redis_scripts() -> Vec<ScriptInfo> {
    redis::scripts()
        .iter()
        .map(|s| ScriptInfo { name: s.name.to_string(), sha: s.sha1(), source: s.source.to_string() })
        .collect()
}

/// The Redis fresh-hit fast path, first half: the plain commands (each `[name, ...args]`) to
/// send as one pipeline for `key` and its generation-counter keys
/// (`karlton_core::redis::fast_read_commands`). Feed the replies to
/// [`NativeCache::redis_fast_read`]. Not for Cluster (`TIME` has no key).
#[napi]
pub fn redis_fast_read_commands(key: String, gen_keys: Vec<String>) -> Vec<Vec<String>> {
    redis::fast_read_commands(&key, &gen_keys)
        .into_iter()
        .map(|c| c.into_iter().map(|a| String::from_utf8_lossy(&a).into_owned()).collect())
        .collect()
}

/// Encode an entry given as the core's JSON form (`value_hex`, `version` as a string…) into
/// its stored bytes (no consistency check: encoding is total). For tests and tools that plant
/// entries.
#[napi]
pub fn encode_entry(entry_json: String) -> Result<napi::bindgen_prelude::Buffer> {
    let e: Entry = serde_json::from_str(&entry_json).map_err(|err| invalid(err.to_string()))?;
    Ok(e.encode().into())
}

/// Decode stored entry bytes into the core's JSON form; throws on corrupt bytes.
#[napi]
pub fn decode_entry(bytes: &[u8]) -> Result<String> {
    let e = Entry::decode(bytes).map_err(|err| invalid(err.to_string()))?;
    serde_json::to_string(&e).map_err(|err| invalid(err.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Policy and stores

/// A validated policy (built from the core's JSON spec; the facade translates camelCase and
/// duration strings first).
#[napi]
pub struct NativePolicy {
    inner: Arc<Policy>,
}

#[napi]
impl NativePolicy {
    #[napi(constructor)]
    pub fn new(spec_json: String) -> Result<NativePolicy> {
        Policy::from_json(&spec_json)
            .map(|p| NativePolicy { inner: Arc::new(p) })
            .map_err(|e| invalid(e.to_string()))
    }

    /// The policy as the core's JSON spec (every field, hard TTL resolved).
    #[napi]
    pub fn to_json(&self) -> String {
        self.inner.to_json()
    }
}

/// The embedded store (bounded, W-TinyLFU eviction), shared by every cache built on it.
#[napi]
pub struct NativeMemoryStore {
    inner: Arc<MemoryStore>,
}

#[napi]
impl NativeMemoryStore {
    /// `shards` defaults to the core's; `seed` (a u64 as a decimal string) keys placement and
    /// admission (the JS layer passes OS randomness; vectors pass theirs).
    #[napi(constructor)]
    pub fn new(max_entries: f64, max_bytes: f64, shards: Option<f64>, seed: Option<String>) -> Result<NativeMemoryStore> {
        let d = MemoryStoreConfig::default();
        let seed = match seed {
            None => d.seed,
            Some(s) => s.parse::<u64>().map_err(|_| Error::new(Status::InvalidArg, format!("seed: not a u64: {s:?}")))?,
        };
        let config = MemoryStoreConfig {
            max_entries: max_entries as usize,
            max_bytes: max_bytes as usize,
            shards: shards.map_or(d.shards, |n| n as usize),
            seed,
        };
        Ok(NativeMemoryStore { inner: Arc::new(MemoryStore::new(config)) })
    }

    /// Slots held (entries, live leases, version floors).
    #[napi(getter)]
    pub fn size(&self) -> u32 {
        self.inner.len() as u32
    }

    /// Bytes charged against `maxBytes`.
    #[napi(getter)]
    pub fn bytes(&self) -> f64 {
        self.inner.bytes() as f64
    }

    /// Entries evicted for space so far.
    #[napi(getter)]
    pub fn evictions(&self) -> f64 {
        self.inner.evictions() as f64
    }

    /// Conformance vectors: run one op (serde `StoreOp`) at store time `now`; the serde reply.
    #[napi]
    pub fn apply_json(&self, now: f64, op_json: String) -> Result<String> {
        let op: StoreOp = serde_json::from_str(&op_json).map_err(|e| invalid(e.to_string()))?;
        serde_json::to_string(&self.inner.apply(now as u64, &op)).map_err(|e| invalid(e.to_string()))
    }

    /// The stored entry bytes under `key` (no LRU touch), for tests and tools.
    #[napi]
    pub fn raw_entry(&self, key: String) -> Option<napi::bindgen_prelude::Buffer> {
        self.inner.inspect(now_ms(), &key).and_then(|s| s.entry).map(|e| e.to_vec().into())
    }
}

// ---------------------------------------------------------------------------------------------
// The cache

struct Inner {
    policy: Arc<Policy>,
    memory: Option<Arc<MemoryStore>>,
    stats: AtomicStats,
    seed: AtomicU64,
    /// store clock − local clock, learned from Redis reads (for writes that do not read first).
    skew: AtomicI64,
}

impl Inner {
    fn next_seed(&self) -> u64 {
        self.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
    }
    fn learn(&self, r: &StoreReply) {
        if let StoreReply::Read(r) = r {
            self.skew.store(r.now_ms as i64 - now_ms() as i64, Ordering::Relaxed);
        }
    }
    fn store_now(&self) -> u64 {
        now_ms().saturating_add_signed(self.skew.load(Ordering::Relaxed))
    }
}

/// The native state of one `Cache`: default policy, counters, seed, and the memory store (if the
/// cache runs on one).
#[napi]
pub struct NativeCache {
    inner: Arc<Inner>,
}

fn gen_keys(gen_key: String, extra: Option<Vec<String>>) -> Vec<String> {
    match extra {
        None => vec![gen_key],
        Some(mut x) => {
            x.insert(0, gen_key);
            x
        }
    }
}

#[napi]
impl NativeCache {
    #[napi(constructor)]
    pub fn new(policy: &NativePolicy, store: Option<&NativeMemoryStore>) -> NativeCache {
        let seed = now_ms().rotate_left(17) ^ (policy as *const NativePolicy as u64).rotate_left(40);
        NativeCache {
            inner: Arc::new(Inner {
                policy: policy.inner.clone(),
                memory: store.map(|s| s.inner.clone()),
                stats: AtomicStats::default(),
                seed: AtomicU64::new(seed),
                skew: AtomicI64::new(0),
            }),
        }
    }

    fn flow(&self, key: String, gen_key: String, extra: Option<Vec<String>>, tags: Option<Vec<String>>, policy: Option<&NativePolicy>) -> GetOrLoad {
        let req = Request { key, gen_keys: gen_keys(gen_key, extra), tags: tags.unwrap_or_default() };
        let policy = policy.map_or_else(|| self.inner.policy.clone(), |p| p.inner.clone());
        GetOrLoad::new(req, policy, self.inner.next_seed())
    }

    /// The MemoryStore read path in one call: the value on a fresh hit (JSON text, a Buffer,
    /// `null` for a cached "not found", `{codec, value}` for another codec), otherwise a
    /// [`NativeFlow`] to drive.
    #[napi(ts_return_type = "string | Buffer | null | { codec: number, value: Buffer } | NativeFlow")]
    pub fn memory_get_or_load(&self, key: String, gen_key: String, extra_gen_keys: Option<Vec<String>>, tags: Option<Vec<String>>, policy: Option<&NativePolicy>) -> Result<Out> {
        let Some(store) = self.inner.memory.as_ref() else {
            return Err(invalid("this cache has no memory store"));
        };
        let now = now_ms();
        {
            let gk = gen_keys(gen_key.clone(), extra_gen_keys.clone());
            let p = policy.map_or_else(|| self.inner.policy.clone(), |p| p.inner.clone());
            if let Some(s) = flow::fast_hit(store, now, &key, &gk, &p, self.inner.next_seed(), &self.inner.stats) {
                return Ok(Out::served(&s));
            }
        }
        let mut flow = self.flow(key, gen_key, extra_gen_keys, tags, policy);
        let first = flow.start(now);
        let step = flow.run_store_steps(now, first, |op| Ok(store.apply(now, op)));
        if let Step::Done(Ok(s)) = &step {
            self.inner.stats.add(flow.stats());
            return Ok(Out::served(s));
        }
        Ok(Out::Flow(Box::new(NativeFlow::new(flow, step, self.inner.clone()))))
    }

    /// This cache's state as an opaque handle for the raw `memoryHit` function.
    #[napi(ts_return_type = "object")]
    pub fn handle<'env>(&self, env: &'env napi::Env) -> Result<Unknown<'env>> {
        let data = CacheData { magic: CACHE_MAGIC, inner: self.inner.clone() };
        unsafe { Ok(Unknown::from_raw_unchecked(env.raw(), make_external(env.raw(), data)?)) }
    }

    /// A flow at its first step (a store read), for caches over Redis.
    #[napi]
    pub fn start(&self, key: String, gen_key: String, extra_gen_keys: Option<Vec<String>>, tags: Option<Vec<String>>, policy: Option<&NativePolicy>) -> NativeFlow {
        let mut flow = self.flow(key, gen_key, extra_gen_keys, tags, policy);
        let step = flow.start(now_ms());
        NativeFlow::new(flow, step, self.inner.clone())
    }

    /// Conformance vectors: a flow for `request_json` (serde `Request`) started at local time
    /// `now` with this seed; store steps are left to the caller.
    #[napi]
    pub fn vector_flow(&self, request_json: String, policy: &NativePolicy, seed: String, now: f64) -> Result<NativeFlow> {
        let req: Request = serde_json::from_str(&request_json).map_err(|e| invalid(e.to_string()))?;
        let mut flow = GetOrLoad::new(req, policy.inner.clone(), parse_u64("seed", &seed)?);
        let step = flow.start(now as u64);
        let inner = Arc::new(Inner {
            policy: policy.inner.clone(),
            memory: None,
            stats: AtomicStats::default(),
            seed: AtomicU64::new(0),
            skew: AtomicI64::new(0),
        });
        Ok(NativeFlow { flow, step, inner, stats_added: false })
    }

    /// The Redis fresh-hit fast path, second half: the replies to [`redis_fast_read_commands`]
    /// (in order, as ioredis `callBuffer` answers them) interpreted by the core
    /// (`karlton_core::redis::fast_read_result`). The value (as
    /// [`NativeCache::memory_get_or_load`] answers it) on a clean fresh hit, counted in the
    /// stats; `undefined` for anything else (a miss, stale, marked, orphaned, garbage, an early
    /// refresh, a reply of an unexpected shape): then the caller runs the normal flow.
    #[napi(ts_return_type = "string | Buffer | null | { codec: number, value: Buffer } | undefined")]
    pub fn redis_fast_read(&self, replies: Vec<Unknown>, policy: Option<&NativePolicy>) -> Out {
        let Ok(values) = replies.iter().map(|r| to_redis(r, 0)).collect::<Result<Vec<RedisValue>>>() else {
            return Out::Miss;
        };
        let p = policy.map_or(&self.inner.policy, |p| &p.inner);
        match redis::fast_read_result(&values, p, self.inner.next_seed(), &self.inner.stats) {
            Some(s) => Out::served(&s),
            None => Out::Miss,
        }
    }

    /// A plain read (no lease, no load).
    #[napi]
    pub fn get_op(&self, key: String, gen_key: String, extra_gen_keys: Option<Vec<String>>, policy: Option<&NativePolicy>) -> NativeOp {
        let op = flow::get_op(&key, &gen_keys(gen_key, extra_gen_keys));
        self.op(op, OpKind::Get(policy.map_or_else(|| self.inner.policy.clone(), |p| p.inner.clone())))
    }

    /// A write-through `set` (authoritative fill; never lowers a version).
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn set_op(&self, key: String, gen_key: String, extra_gen_keys: Option<Vec<String>>, tags: Option<Vec<String>>, value: Either<String, &[u8]>, codec: u32, version: Option<String>, policy: Option<&NativePolicy>) -> Result<NativeOp> {
        let w = Write {
            key,
            gen_keys: gen_keys(gen_key, extra_gen_keys),
            tags: tags.unwrap_or_default(),
            value: value_bytes(value),
            codec: codec_id(codec)?,
            version: version.as_deref().map(|v| parse_u64("version", v)).transpose()?,
        };
        let policy = policy.map_or_else(|| self.inner.policy.clone(), |p| p.inner.clone());
        let store_now = if self.inner.memory.is_some() { now_ms() } else { self.inner.store_now() };
        let op = flow::set_op(&w, &policy, store_now, self.inner.next_seed());
        Ok(self.op(op, OpKind::Set))
    }

    /// Delete (`markStale` = false) or mark stale; revokes the lease.
    #[napi]
    pub fn invalidate_op(&self, key: String, mark_stale: bool) -> NativeOp {
        let mode = if mark_stale { InvalidateMode::MarkStale } else { InvalidateMode::Delete };
        self.op(flow::invalidate_op(&key, mode), OpKind::Invalidate)
    }

    /// Move a generation counter (namespace or tag) to a new value.
    #[napi]
    pub fn bump_op(&self, gen_key: String) -> NativeOp {
        self.op(flow::bump_op(&gen_key, self.inner.next_seed()), OpKind::Bump)
    }

    fn op(&self, op: StoreOp, kind: OpKind) -> NativeOp {
        NativeOp { op, kind, inner: self.inner.clone(), error: None }
    }

    /// Counter values in [`stats_fields`] order.
    #[napi]
    pub fn stats(&self) -> Vec<f64> {
        let mut s = self.inner.stats.snapshot();
        if let Some(m) = &self.inner.memory {
            s.evictions = m.evictions();
        }
        s.fields().iter().map(|(_, v)| *v as f64).collect()
    }
}

/// Counter names (snake_case, core order) matching [`NativeCache::stats`].
#[napi]
pub fn stats_fields() -> Vec<String> {
    Stats::default().fields().iter().map(|(n, _)| n.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// The hit path without napi-rs's per-call machinery
//
// napi-rs 3 guards every `&Class` argument with a borrow registry and a type-tag check, which
// costs more than the whole core hit. The MemoryStore hit path therefore uses two plain
// externals (the cache's state and a built key) and one raw N-API function: one `get_cb_info`,
// two `get_value_external`, the core call, one string for the answer.

const KEY_MAGIC: u64 = 0x6b61_726c_746f_6e4b; // "karltonK"
const CACHE_MAGIC: u64 = 0x6b61_726c_746f_6e43; // "karltonC"

#[repr(C)]
struct KeyData {
    magic: u64,
    key: String,
    /// The namespace's generation-counter key (one element: the hit path borrows it as a slice).
    gen_keys: Vec<String>,
}

#[repr(C)]
struct CacheData {
    magic: u64,
    inner: Arc<Inner>,
}

unsafe extern "C" fn drop_box<T>(_env: sys::napi_env, data: *mut std::ffi::c_void, _hint: *mut std::ffi::c_void) {
    drop(unsafe { Box::from_raw(data.cast::<T>()) });
}

unsafe fn make_external<T>(env: sys::napi_env, value: T) -> Result<sys::napi_value> {
    let data = Box::into_raw(Box::new(value));
    let mut out = std::ptr::null_mut();
    let status = unsafe { sys::napi_create_external(env, data.cast(), Some(drop_box::<T>), std::ptr::null_mut(), &mut out) };
    if status != sys::Status::napi_ok {
        drop(unsafe { Box::from_raw(data) });
        return Err(Error::new(Status::GenericFailure, "failed to create an external"));
    }
    Ok(out)
}

/// The data behind an external made by [`make_external`] with this magic (the facade passes
/// only its own handles; the magic catches a mix-up rather than trusting it).
unsafe fn external_ref<'a, T>(env: sys::napi_env, v: sys::napi_value, magic: u64) -> Option<&'a T> {
    let mut t = 0;
    if unsafe { sys::napi_typeof(env, v, &mut t) } != sys::Status::napi_ok || t != sys::ValueType::napi_external {
        return None;
    }
    let mut data = std::ptr::null_mut();
    if unsafe { sys::napi_get_value_external(env, v, &mut data) } != sys::Status::napi_ok || data.is_null() {
        return None;
    }
    // SAFETY: every external this module hands out starts with a u64 magic (#[repr(C)]).
    if unsafe { *data.cast::<u64>() } != magic {
        return None;
    }
    Some(unsafe { &*data.cast::<T>() })
}

/// A built key as an opaque handle (for the hit path).
#[napi(ts_return_type = "object")]
pub fn key_handle<'env>(env: &'env napi::Env, namespace: String, segments: Vec<String>, params_json: Option<String>, version: Option<String>, hash_tag: bool, max_len: Option<u32>) -> Result<Unknown<'env>> {
    let k = make_key(&namespace, &segments, params_json.as_deref(), version.as_deref(), hash_tag, max_len)?;
    let data = KeyData { magic: KEY_MAGIC, key: k.build(), gen_keys: vec![k.generation_key()] };
    unsafe { Ok(Unknown::from_raw_unchecked(env.raw(), make_external(env.raw(), data)?)) }
}

/// `[entryKey, generationKey]` of a key handle.
#[napi]
pub fn key_strings(env: &napi::Env, handle: Unknown) -> Result<Vec<String>> {
    let k: &KeyData = unsafe { external_ref(env.raw(), handle.raw(), KEY_MAGIC) }.ok_or_else(|| invalid("not a key handle"))?;
    Ok(vec![k.key.clone(), k.gen_keys[0].clone()])
}

/// `memoryHit(cacheHandle, keyHandle)`: [`NativeCache::memory_get_or_load`] for the common
/// call (no tags, the cache's policy) as one raw N-API function.
#[napi(ts_return_type = "(cache: object, key: object) => string | Buffer | null | { codec: number, value: Buffer } | NativeFlow")]
pub fn memory_hit_function<'env>(env: &'env napi::Env) -> Result<Unknown<'env>> {
    let mut f = std::ptr::null_mut();
    let status = unsafe { sys::napi_create_function(env.raw(), c"memoryHit".as_ptr(), 9, Some(memory_hit_raw), std::ptr::null_mut(), &mut f) };
    if status != sys::Status::napi_ok {
        return Err(Error::new(Status::GenericFailure, "failed to create memoryHit"));
    }
    unsafe { Ok(Unknown::from_raw_unchecked(env.raw(), f)) }
}

unsafe extern "C" fn memory_hit_raw(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 2usize;
    let mut argv = [std::ptr::null_mut(); 2];
    unsafe {
        sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut());
        let cache: Option<&CacheData> = if argc >= 1 { external_ref(env, argv[0], CACHE_MAGIC) } else { None };
        let key: Option<&KeyData> = if argc >= 2 { external_ref(env, argv[1], KEY_MAGIC) } else { None };
        let (Some(cache), Some(key)) = (cache, key) else {
            sys::napi_throw_type_error(env, std::ptr::null(), c"memoryHit(cacheHandle, keyHandle)".as_ptr());
            return std::ptr::null_mut();
        };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hit(&cache.inner, &key.key, &key.gen_keys)));
        let result = match out {
            Ok(Ok(o)) => Out::to_napi_value(env, o),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::new(Status::GenericFailure, "panic in memoryHit")),
        };
        match result {
            Ok(v) => v,
            Err(e) => {
                let msg = std::ffi::CString::new(e.reason.replace('\0', " ")).unwrap_or_default();
                sys::napi_throw_error(env, std::ptr::null(), msg.as_ptr());
                std::ptr::null_mut()
            }
        }
    }
}

/// `redisFastRead(cacheHandle, replies)`: [`NativeCache::redis_fast_read`] with the cache's
/// policy as one raw N-API function (the Redis hit path's only native call).
#[napi(ts_return_type = "(cache: object, replies: unknown[]) => string | Buffer | null | { codec: number, value: Buffer } | undefined")]
pub fn redis_fast_read_function<'env>(env: &'env napi::Env) -> Result<Unknown<'env>> {
    let mut f = std::ptr::null_mut();
    let status = unsafe { sys::napi_create_function(env.raw(), c"redisFastRead".as_ptr(), 13, Some(redis_fast_read_raw), std::ptr::null_mut(), &mut f) };
    if status != sys::Status::napi_ok {
        return Err(Error::new(Status::GenericFailure, "failed to create redisFastRead"));
    }
    unsafe { Ok(Unknown::from_raw_unchecked(env.raw(), f)) }
}

/// An ioredis reply as a [`RedisValue`] through plain N-API calls (what [`to_redis`] does with
/// napi-rs's wrappers); `None` for anything unexpected.
unsafe fn raw_redis(env: sys::napi_env, v: sys::napi_value, depth: u32) -> Option<RedisValue> {
    const OK: sys::napi_status = sys::Status::napi_ok;
    if depth > 8 {
        return None;
    }
    unsafe {
        let mut t = 0;
        if sys::napi_typeof(env, v, &mut t) != OK {
            return None;
        }
        match t {
            sys::ValueType::napi_null | sys::ValueType::napi_undefined => Some(RedisValue::Nil),
            sys::ValueType::napi_number => {
                let mut n = 0f64;
                (sys::napi_get_value_double(env, v, &mut n) == OK).then_some(RedisValue::Int(n as i64))
            }
            sys::ValueType::napi_boolean => {
                let mut b = false;
                (sys::napi_get_value_bool(env, v, &mut b) == OK).then_some(if b { RedisValue::Int(1) } else { RedisValue::Nil })
            }
            sys::ValueType::napi_string => raw_string(env, v).map(RedisValue::Status),
            sys::ValueType::napi_object => {
                let mut yes = false;
                if sys::napi_is_buffer(env, v, &mut yes) == OK && yes {
                    let mut data = std::ptr::null_mut();
                    let mut len = 0usize;
                    if sys::napi_get_buffer_info(env, v, &mut data, &mut len) != OK {
                        return None;
                    }
                    let bytes = if len == 0 { Vec::new() } else { std::slice::from_raw_parts(data.cast::<u8>(), len).to_vec() };
                    return Some(RedisValue::Bulk(bytes));
                }
                if sys::napi_is_array(env, v, &mut yes) == OK && yes {
                    let mut n = 0u32;
                    if sys::napi_get_array_length(env, v, &mut n) != OK {
                        return None;
                    }
                    let mut items = Vec::with_capacity(n as usize);
                    for i in 0..n {
                        let mut item = std::ptr::null_mut();
                        if sys::napi_get_element(env, v, i, &mut item) != OK {
                            return None;
                        }
                        items.push(raw_redis(env, item, depth + 1)?);
                    }
                    return Some(RedisValue::Array(items));
                }
                if sys::napi_is_error(env, v, &mut yes) == OK && yes {
                    let mut m = std::ptr::null_mut();
                    let msg = if sys::napi_get_named_property(env, v, c"message".as_ptr(), &mut m) == OK { raw_string(env, m) } else { None };
                    return Some(RedisValue::Error(msg.unwrap_or_else(|| "ERR".into())));
                }
                None
            }
            _ => None,
        }
    }
}

unsafe fn raw_string(env: sys::napi_env, v: sys::napi_value) -> Option<String> {
    unsafe {
        let mut len = 0usize;
        if sys::napi_get_value_string_utf8(env, v, std::ptr::null_mut(), 0, &mut len) != sys::Status::napi_ok {
            return None;
        }
        let mut buf = vec![0u8; len + 1];
        let mut written = 0usize;
        if sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast(), len + 1, &mut written) != sys::Status::napi_ok {
            return None;
        }
        buf.truncate(written);
        String::from_utf8(buf).ok()
    }
}

unsafe extern "C" fn redis_fast_read_raw(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 2usize;
    let mut argv = [std::ptr::null_mut(); 2];
    unsafe {
        sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut());
        let cache: Option<&CacheData> = if argc >= 1 { external_ref(env, argv[0], CACHE_MAGIC) } else { None };
        let Some(cache) = cache else {
            sys::napi_throw_type_error(env, std::ptr::null(), c"redisFastRead(cacheHandle, replies)".as_ptr());
            return std::ptr::null_mut();
        };
        let replies = if argc >= 2 { raw_redis(env, argv[1], 0) } else { None };
        let inner = &cache.inner;
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match replies {
            Some(RedisValue::Array(v)) => match redis::fast_read_result(&v, &inner.policy, inner.next_seed(), &inner.stats) {
                Some(s) => Out::served(&s),
                None => Out::Miss,
            },
            _ => Out::Miss,
        }))
        .unwrap_or(Out::Miss);
        match Out::to_napi_value(env, out) {
            Ok(v) => v,
            Err(e) => {
                let msg = std::ffi::CString::new(e.reason.replace('\0', " ")).unwrap_or_default();
                sys::napi_throw_error(env, std::ptr::null(), msg.as_ptr());
                std::ptr::null_mut()
            }
        }
    }
}

fn hit(inner: &Arc<Inner>, key: &str, gen_keys: &[String]) -> Result<Out> {
    let Some(store) = inner.memory.as_ref() else {
        return Err(invalid("this cache has no memory store"));
    };
    let now = now_ms();
    // The core's allocation-light fresh-hit path; `None` = run the flow.
    if let Some(s) = flow::fast_hit(store, now, key, gen_keys, &inner.policy, inner.next_seed(), &inner.stats) {
        return Ok(Out::served(&s));
    }
    let req = Request { key: key.to_string(), gen_keys: gen_keys.to_vec(), tags: Vec::new() };
    let mut flow = GetOrLoad::new(req, inner.policy.clone(), inner.next_seed());
    let first = flow.start(now);
    let step = flow.run_store_steps(now, first, |op| Ok(store.apply(now, op)));
    if let Step::Done(Ok(s)) = &step {
        inner.stats.add(flow.stats());
        return Ok(Out::served(s));
    }
    Ok(Out::Flow(Box::new(NativeFlow::new(flow, step, inner.clone()))))
}

// ---------------------------------------------------------------------------------------------
// Redis replies

/// The script call for a store op, ready for `evalshaBuffer(scripts[script].sha, keys.length,
/// ...keys, ...args)`.
#[napi(object)]
pub struct RedisCallJs {
    /// Index into [`redis_scripts`].
    pub script: u32,
    pub keys: Vec<String>,
    /// UTF-8 arguments as strings (ioredis then writes the whole command in one chunk; a Buffer
    /// argument makes it write one chunk per argument), binary ones (entry bytes) as Buffers.
    pub args: Vec<Either<String, napi::bindgen_prelude::Buffer>>,
}

fn redis_call(op: &StoreOp) -> RedisCallJs {
    let call = redis::encode_op(op);
    let script = redis::scripts().iter().position(|s| std::ptr::eq(s, call.script)).unwrap_or(0) as u32;
    let args = call
        .args
        .into_iter()
        .map(|a| match String::from_utf8(a) {
            Ok(text) => Either::A(text),
            Err(e) => Either::B(e.into_bytes().into()),
        })
        .collect();
    RedisCallJs { script, keys: call.keys, args }
}

/// An ioredis reply (with the `…Buffer` commands: Buffers, numbers, null, arrays, errors) as a
/// [`RedisValue`].
fn to_redis(v: &Unknown<'_>, depth: u32) -> Result<RedisValue> {
    if depth > 8 {
        return Err(invalid("redis reply nested too deeply"));
    }
    Ok(match v.get_type()? {
        ValueType::Null | ValueType::Undefined => RedisValue::Nil,
        ValueType::Number => {
            let n: f64 = unsafe { v.cast()? };
            RedisValue::Int(n as i64)
        }
        ValueType::BigInt => {
            let n: napi::bindgen_prelude::BigInt = unsafe { v.cast()? };
            RedisValue::Int(n.get_i64().0)
        }
        ValueType::String => RedisValue::Status(unsafe { v.cast::<String>()? }),
        ValueType::Boolean => {
            if unsafe { v.cast::<bool>()? } { RedisValue::Int(1) } else { RedisValue::Nil }
        }
        ValueType::Object => {
            if v.is_buffer()? {
                let b: napi::bindgen_prelude::BufferSlice = unsafe { v.cast()? };
                RedisValue::Bulk(b.to_vec())
            } else if v.is_array()? {
                let items: Vec<Unknown> = unsafe { v.cast()? };
                RedisValue::Array(items.iter().map(|i| to_redis(i, depth + 1)).collect::<Result<_>>()?)
            } else if v.is_error()? {
                let o: napi::bindgen_prelude::Object = unsafe { v.cast()? };
                let msg: Option<String> = o.get_named_property("message").ok();
                RedisValue::Error(msg.unwrap_or_else(|| "ERR".into()))
            } else {
                return Err(invalid("unexpected object in a redis reply"));
            }
        }
        other => return Err(invalid(format!("unexpected {other:?} in a redis reply"))),
    })
}

fn store_failure(message: String) -> StoreFailure {
    StoreFailure { message }
}

// ---------------------------------------------------------------------------------------------
// Flows

/// A `GetOrLoad` in progress. Input methods return the next step code; getters describe it.
#[napi]
pub struct NativeFlow {
    flow: GetOrLoad,
    step: Step,
    inner: Arc<Inner>,
    stats_added: bool,
}

impl NativeFlow {
    fn new(flow: GetOrLoad, step: Step, inner: Arc<Inner>) -> NativeFlow {
        let mut f = NativeFlow { flow, step, inner, stats_added: false };
        f.settle();
        f
    }

    /// Run memory store steps inline; count stats once the flow is done.
    fn settle(&mut self) {
        if let (Step::Store(_), Some(store)) = (&self.step, self.inner.memory.as_ref()) {
            let now = now_ms();
            let step = std::mem::replace(&mut self.step, Step::Done(Err(FlowError::Protocol("moved".into()))));
            self.step = self.flow.run_store_steps(now, step, |op| Ok(store.apply(now, op)));
        }
        if matches!(self.step, Step::Done(_)) {
            self.add_stats();
        }
    }

    fn add_stats(&mut self) {
        if !self.stats_added {
            self.stats_added = true;
            self.inner.stats.add(self.flow.stats());
        }
    }

    fn feed(&mut self, input: Input) -> u32 {
        if matches!(self.step, Step::Done(_)) {
            return self.kind();
        }
        self.step = self.flow.handle(now_ms(), input);
        self.settle();
        self.kind()
    }
}

impl Drop for NativeFlow {
    fn drop(&mut self) {
        self.add_stats();
    }
}

fn flow_error_kind(e: &FlowError) -> &'static str {
    match e {
        FlowError::Load(_) => "load",
        FlowError::LoadTimeout(_) => "load_timeout",
        FlowError::LockTimeout(_) => "lock_timeout",
        FlowError::Store(_) => "store",
        FlowError::Protocol(_) => "protocol",
    }
}

#[napi]
impl NativeFlow {
    /// The current step: 0 store, 1 load, 2 wait, 3 serve, 4 done (ok), 5 done (error).
    #[napi(getter)]
    pub fn kind(&self) -> u32 {
        match &self.step {
            Step::Store(_) => STEP_STORE,
            Step::Load { .. } => STEP_LOAD,
            Step::Wait { .. } => STEP_WAIT,
            Step::Serve(_) => STEP_SERVE,
            Step::Done(Ok(_)) => STEP_DONE_OK,
            Step::Done(Err(_)) => STEP_DONE_ERR,
        }
    }

    /// Load step: the local-clock deadline (ms since the epoch), or null.
    #[napi(getter)]
    pub fn timeout_at(&self) -> Option<f64> {
        match &self.step {
            Step::Load { timeout_at } => timeout_at.map(|t| t as f64),
            _ => None,
        }
    }

    /// Wait step: when to wake up (ms since the epoch).
    #[napi(getter)]
    pub fn until_ms(&self) -> f64 {
        match &self.step {
            Step::Wait { until_ms } => *until_ms as f64,
            _ => 0.0,
        }
    }

    /// Whether this flow holds the key's lease (it will fill).
    #[napi(getter)]
    pub fn has_lease(&self) -> bool {
        self.flow.token().is_some()
    }

    /// The entry key.
    #[napi(getter)]
    pub fn key(&self) -> String {
        self.flow.request().key.clone()
    }

    /// Serve / done-ok: the value (as [`NativeCache::memory_get_or_load`] answers it).
    #[napi(ts_return_type = "string | Buffer | null | { codec: number, value: Buffer } | undefined")]
    pub fn value(&self) -> Out {
        match &self.step {
            Step::Serve(s) | Step::Done(Ok(s)) => Out::served(s),
            _ => Out::Miss,
        }
    }

    /// Where the served value came from (`fresh`, `stale`, `loaded`, `stale_on_error`,
    /// `stale_on_timeout`), or null.
    #[napi(getter)]
    pub fn source(&self) -> Option<&'static str> {
        use karlton_core::Source::*;
        match &self.step {
            Step::Serve(s) | Step::Done(Ok(s)) => Some(match s.source {
                Fresh => "fresh",
                Stale => "stale",
                Loaded => "loaded",
                StaleOnError => "stale_on_error",
                StaleOnTimeout => "stale_on_timeout",
            }),
            _ => None,
        }
    }

    /// Done-error: `[kind, message]` (kind: load, load_timeout, lock_timeout, store, protocol).
    #[napi]
    pub fn error(&self) -> Option<Vec<String>> {
        match &self.step {
            Step::Done(Err(e)) => Some(vec![flow_error_kind(e).to_string(), e.to_string()]),
            _ => None,
        }
    }

    /// The loader answered: encoded value (text or bytes), codec id, "not found", version.
    #[napi]
    pub fn loaded(&mut self, value: Either<String, &[u8]>, codec: u32, negative: bool, version: Option<String>) -> Result<u32> {
        let loaded = Loaded {
            value: if negative { Arc::from(&[][..]) } else { value_bytes(value) },
            codec: codec_id(codec)?,
            negative,
            version: version.as_deref().map(|v| parse_u64("version", v)).transpose()?,
        };
        Ok(self.feed(Input::Loaded(loaded)))
    }

    /// The loader failed (message for humans; the facade keeps the original error).
    #[napi]
    pub fn load_failed(&mut self, message: String) -> u32 {
        self.feed(Input::LoadFailed(message))
    }

    /// A wait's deadline or a load's timeout passed.
    #[napi]
    pub fn timeout(&mut self) -> u32 {
        self.feed(Input::Timeout)
    }

    /// Continue after a serve (the rest runs in the background).
    #[napi]
    pub fn resume(&mut self) -> u32 {
        self.feed(Input::Continue)
    }

    /// Store step over Redis: the script call to run.
    #[napi]
    pub fn redis_call(&self) -> Result<RedisCallJs> {
        match &self.step {
            Step::Store(op) => Ok(redis_call(op)),
            _ => Err(invalid("the flow is not at a store step")),
        }
    }

    /// Store step over Redis: the script's reply.
    #[napi]
    pub fn feed_redis(&mut self, reply: Unknown) -> Result<u32> {
        let Step::Store(op) = &self.step else { return Err(invalid("the flow is not at a store step")) };
        let r = to_redis(&reply, 0).map(|v| redis::decode_reply(op, v));
        let input = match r {
            Ok(Ok(r)) => {
                self.inner.learn(&r);
                Input::Store(r)
            }
            Ok(Err(e)) => Input::StoreFailed(e),
            Err(e) => Input::StoreFailed(store_failure(format!("redis reply: {e}"))),
        };
        Ok(self.feed(input))
    }

    /// Store step: the store failed (down, timeout…).
    #[napi]
    pub fn feed_store_error(&mut self, message: String) -> u32 {
        self.feed(Input::StoreFailed(store_failure(message)))
    }

    /// Conformance vectors: feed the serde form of an `Input` at local time `now`.
    #[napi]
    pub fn feed_json(&mut self, now: f64, input_json: String) -> Result<u32> {
        let input: Input = serde_json::from_str(&input_json).map_err(|e| invalid(e.to_string()))?;
        self.step = self.flow.handle(now as u64, input);
        Ok(self.kind())
    }

    /// Conformance vectors: the current step in its serde form.
    #[napi]
    pub fn step_json(&self) -> Result<String> {
        serde_json::to_string(&self.step).map_err(|e| invalid(e.to_string()))
    }

    /// Conformance vectors: the flow's own counters in their serde form.
    #[napi]
    pub fn stats_json(&self) -> Result<String> {
        serde_json::to_string(self.flow.stats()).map_err(|e| invalid(e.to_string()))
    }

    /// Stop driving (a single-flight follower): count what the flow did so far.
    #[napi]
    pub fn abandon(&mut self) {
        self.add_stats();
    }
}

// ---------------------------------------------------------------------------------------------
// One-op reads and writes

enum OpKind {
    Get(Arc<Policy>),
    Set,
    Invalidate,
    Bump,
}

/// One store op (`get`, `set`, `invalidate`, `bump`) and the interpretation of its reply.
#[napi]
pub struct NativeOp {
    op: StoreOp,
    kind: OpKind,
    inner: Arc<Inner>,
    error: Option<(String, String)>,
}

impl NativeOp {
    fn finish(&mut self, r: std::result::Result<StoreReply, StoreFailure>) -> Out {
        let mut stats = Stats::default();
        let out = match (&self.kind, r) {
            (OpKind::Get(_), Ok(StoreReply::Read(r))) => {
                self.inner.learn(&StoreReply::Read(r.clone()));
                match flow::get_result(&r, &self.inner.policy, &mut stats) {
                    Some(s) => Out::served(&s),
                    None => Out::Miss,
                }
            }
            (OpKind::Get(policy), Err(e)) => match flow::get_on_store_error(policy, e, &mut stats) {
                Ok(_) => Out::Miss,
                Err(e) => self.fail(flow_error_kind(&e), e.to_string()),
            },
            (OpKind::Set, Ok(StoreReply::Stored)) => Out::Bool(true),
            (OpKind::Set, Ok(StoreReply::Rejected { .. })) => {
                stats.fills_rejected += 1;
                Out::Bool(false)
            }
            (OpKind::Invalidate, Ok(StoreReply::Invalidated { existed })) => Out::Bool(existed),
            (OpKind::Bump, Ok(StoreReply::Bumped { generation })) => Out::Num(generation as f64),
            (_, Err(e)) => {
                stats.store_errors += 1;
                self.fail("store", e.to_string())
            }
            (_, Ok(other)) => self.fail("protocol", format!("unexpected reply {other:?}")),
        };
        self.inner.stats.add(&stats);
        out
    }

    fn fail(&mut self, kind: &str, msg: String) -> Out {
        self.error = Some((kind.to_string(), msg));
        Out::Miss
    }
}

#[napi]
impl NativeOp {
    /// Run on the cache's memory store (synchronously).
    #[napi(ts_return_type = "unknown")]
    pub fn run_memory(&mut self) -> Result<Out> {
        let Some(store) = self.inner.memory.clone() else { return Err(invalid("this cache has no memory store")) };
        let r = store.apply(now_ms(), &self.op);
        Ok(self.finish(Ok(r)))
    }

    #[napi]
    pub fn redis_call(&self) -> RedisCallJs {
        redis_call(&self.op)
    }

    #[napi(ts_return_type = "unknown")]
    pub fn feed_redis(&mut self, reply: Unknown) -> Out {
        let r = match to_redis(&reply, 0) {
            Ok(v) => redis::decode_reply(&self.op, v),
            Err(e) => Err(store_failure(format!("redis reply: {e}"))),
        };
        self.finish(r)
    }

    #[napi(ts_return_type = "unknown")]
    pub fn feed_store_error(&mut self, message: String) -> Out {
        self.finish(Err(store_failure(message)))
    }

    /// After a feed: `[kind, message]` if the op failed.
    #[napi]
    pub fn error(&self) -> Option<Vec<String>> {
        self.error.as_ref().map(|(k, m)| vec![k.clone(), m.clone()])
    }
}

