//! karlton-node: the native half of the `karlton` npm package.
//!
//! A thin host of the core's per-process [`Coordinator`] (DESIGN §1b): one coordinator per
//! `Cache`, seeded from the OS. Every decision — who leads a key and who joins, what a joiner
//! gets, C5 after a write, the fast-path order, background refresh, every counter — is the
//! coordinator's. This module translates: it runs the memory store's ops inline (they are
//! synchronous), hands every other action to JavaScript in a compact form (small arrays of
//! numbers and strings, see [`encode`]), and feeds back what JavaScript did (a Redis reply, the
//! loader's value, a timeout). The JavaScript facade (`lib/karlton.cjs`) owns the asynchronous
//! IO: the ioredis client, the loader call, timers, and one Promise per flight its joiners await.
//!
//! Hot paths are raw N-API functions ([`get_or_load_function`], [`get_function`]) over two
//! externals (the cache and a built key): napi-rs's class-argument machinery costs more than
//! the core's whole memory hit.

#![deny(clippy::all)]
#![allow(missing_docs)] // the public, documented surface is the JavaScript package

use karlton_core::coordinator::Answer;
use karlton_core::entry::{Entry, codec};
use karlton_core::flow::Write;
use karlton_core::key::{Key, KeyError};
use karlton_core::policy::parse_duration_ms as core_parse_duration;
use karlton_core::redis::{self, RedisValue};
use karlton_core::{
    Action, CallId, Coordinator, Counters, Event, FlightId, Input, InvalidateMode, Loaded, MemoryStore,
    MemoryStoreConfig, Op, Policy, Reply, Request, Served, Stats, StoreFailure, StoreOp, Ticket,
};
use napi::bindgen_prelude::{ToNapiValue, TypeName};
use napi::{Either, Error, JsValue, Result, Status, Unknown, ValueType, sys};
use napi_derive::napi;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(Status::InvalidArg, msg.into())
}

/// A core key error as a RangeError naming the argument it is about (`n`: `Key#maxLen`'s).
fn key_err(e: KeyError) -> Error {
    let arg = match e {
        KeyError::EmptyNamespace | KeyError::NamespaceTooLong { .. } => "namespace",
        KeyError::Params(_) | KeyError::InvalidJson(_) => "params",
        KeyError::MaxLenTooSmall { .. } => "n",
    };
    invalid(format!("`{arg}`: {e}"))
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
    Str(String),
    /// An action or event list (see [`encode`]).
    List(Vec<Out>),
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
                Out::Str(s) => String::to_napi_value(env, s),
                Out::List(items) => {
                    let mut arr = std::ptr::null_mut();
                    if sys::napi_create_array_with_length(env, items.len(), &mut arr) != sys::Status::napi_ok {
                        return Err(Error::new(Status::GenericFailure, "failed to create an array"));
                    }
                    for (i, item) in items.into_iter().enumerate() {
                        let v = Out::to_napi_value(env, item)?;
                        sys::napi_set_element(env, arr, i as u32, v);
                    }
                    Ok(arr)
                }
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

/// The served value a host could not decode, as the coordinator's undecodable rule takes it.
fn undecodable(value: Arc<[u8]>, source: Option<String>) -> Result<Served> {
    let source = match source.as_deref() {
        None => karlton_core::Source::Fresh,
        Some(s) => serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| invalid(format!("unknown source {s:?}")))?,
    };
    Ok(Served { value: value.into(), codec: codec::JSON, negative: false, version: None, source, cached: true })
}

fn codec_id(c: u32) -> Result<u8> {
    u8::try_from(c).map_err(|_| invalid(format!("codec id {c} is not in 0..=255")))
}

fn parse_u64(what: &str, s: &str) -> Result<u64> {
    s.parse::<u64>().map_err(|_| invalid(format!("{what} {s:?} is not an unsigned 64-bit integer")))
}

// ---------------------------------------------------------------------------------------------
// Free functions: keys, durations, scripts, entry codec

/// Whether JSON text nests at most the core's limit (128), the depth every reader takes.
#[napi]
pub fn json_nesting_ok(text: String) -> bool {
    karlton_core::json::nesting_within_limit(text.as_bytes())
}

/// Canonical params hash (RFC 8785 JSON, SHA-256, 32 hex) of JSON text: the hash `Key#params`
/// puts in a key (Python's `params_hash`).
#[napi]
pub fn params_hash(params_json: String) -> Result<String> {
    let v = karlton_core::json::parse(&params_json).map_err(|e| key_err(KeyError::InvalidJson(e.to_string())))?;
    karlton_core::key::params_hash_value(&v).map_err(key_err)
}

/// A duration in units of `unit_ms` ms as whole ms by the core's one rounding rule (half away
/// from zero); `null` if it is not a finite number >= 0 (above 2^40 ms the policy refuses it).
#[napi]
pub fn duration_ms(value: f64, unit_ms: f64) -> Option<f64> {
    karlton_core::policy::duration_ms(value, unit_ms).map(|v| v as f64)
}

/// Parse `"250ms"`, `"5m"`, `"1.5h"` … into milliseconds (core's `parse_duration_ms`).
#[napi]
pub fn parse_duration_ms(text: String) -> Result<f64> {
    core_parse_duration(&text).map(|v| v as f64).map_err(|e| invalid(e.to_string()))
}

/// A `maxLen` from JavaScript, exactly: a non-negative safe integer (never wrapped to 32 bits
/// nor rounded; values beyond the address space saturate, which means "never truncate").
fn max_len_arg(n: f64) -> Result<usize> {
    if !(n >= 0.0 && n < 9_007_199_254_740_992.0 && n.fract() == 0.0) {
        return Err(invalid(format!("`n` must be a non-negative safe integer, got {n}")));
    }
    Ok(usize::try_from(n as u64).unwrap_or(usize::MAX))
}

fn make_key(namespace: &str, segments: &[String], params_json: Option<&str>, version: Option<&str>, hash_tag: bool, max_len: Option<f64>) -> Result<Key> {
    let mut k = Key::new(namespace).map_err(key_err)?.segments(segments).hash_tag(hash_tag);
    if let Some(p) = params_json {
        k = k.params_json(p).map_err(key_err)?;
    }
    if let Some(v) = version {
        k = k.version(parse_u64("version", v)?);
    }
    if let Some(n) = max_len {
        k = k.max_len(max_len_arg(n)?).map_err(key_err)?;
    }
    Ok(k)
}

/// Build a key: `[entryKey, namespaceGenerationKey]`.
#[napi]
pub fn build_key(namespace: String, segments: Vec<String>, params_json: Option<String>, version: Option<String>, hash_tag: bool, max_len: Option<f64>) -> Result<Vec<String>> {
    let k = make_key(&namespace, &segments, params_json.as_deref(), version.as_deref(), hash_tag, max_len)?;
    Ok(vec![k.build(), k.generation_key()])
}

/// The generation-counter key of `tag` in a namespace (same form as the namespace's keys).
#[napi]
pub fn tag_key(env: &napi::Env, namespace: String, hash_tag: bool, max_len: Option<f64>, tag: Unknown) -> Result<String> {
    // the tag read strictly: a lone surrogate is refused, never replaced
    let tag = unsafe { strict_string(env.raw(), tag.raw()) }.map_err(|e| strict_error("tag", e))?;
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

/// Where stored entry bytes stand at `now_ms` (default: now) under `policy`, as JSON text
/// (core's `entry::describe`); throws on corrupt bytes.
#[napi]
pub fn describe_entry(bytes: &[u8], now_ms: Option<String>, policy: &NativePolicy) -> Result<String> {
    // A u64 as decimal text: the facade accepts a safe integer or a bigint.
    let now = match now_ms {
        None => self::now_ms(),
        Some(t) => t.parse::<u64>().map_err(|_| invalid(format!("`options.nowMs` must be a u64, got {t}")))?,
    };
    let i = karlton_core::entry::describe(bytes, now, &policy.inner).map_err(|e| invalid(e.to_string()))?;
    serde_json::to_string(&i).map_err(|e| invalid(e.to_string()))
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

    /// This policy as an opaque handle for the raw hot-path functions (a per-call policy).
    #[napi(ts_return_type = "object")]
    pub fn handle<'env>(&self, env: &'env napi::Env) -> Result<Unknown<'env>> {
        let data = PolicyData { magic: POLICY_MAGIC, policy: self.inner.clone() };
        unsafe { Ok(Unknown::from_raw_unchecked(env.raw(), make_external(env.raw(), data)?)) }
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


const KEY_MAGIC: u64 = 0x6b61_726c_746f_6e4b; // "karltonK"
const CACHE_MAGIC: u64 = 0x6b61_726c_746f_6e43; // "karltonC"

const POLICY_MAGIC: u64 = 0x6b61_726c_746f_6e50; // "karltonP"

/// A built key (rendered once, on first use: `as_str` and `generation_keys` borrow its cache).
#[repr(C)]
struct KeyData {
    magic: u64,
    key: Key,
}

#[repr(C)]
struct CacheData {
    magic: u64,
    host: Arc<Host>,
}

#[repr(C)]
struct PolicyData {
    magic: u64,
    policy: Arc<Policy>,
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


// ---------------------------------------------------------------------------------------------
// Key handles

/// A built key as an opaque handle (the hot paths read it without a string crossing).
#[napi(ts_return_type = "object")]
pub fn key_handle<'env>(env: &'env napi::Env, namespace: String, segments: Vec<String>, params_json: Option<String>, version: Option<String>, hash_tag: bool, max_len: Option<f64>) -> Result<Unknown<'env>> {
    let key = make_key(&namespace, &segments, params_json.as_deref(), version.as_deref(), hash_tag, max_len)?;
    unsafe { Ok(Unknown::from_raw_unchecked(env.raw(), make_external(env.raw(), KeyData { magic: KEY_MAGIC, key })?)) }
}

/// Why a JavaScript string could not be read.
enum StrError {
    NotString,
    /// A lone surrogate at this UTF-16 index: not a Unicode scalar value sequence, so it has no
    /// UTF-8 form; replacing it (U+FFFD) would let distinct inputs build one key.
    LoneSurrogate(usize),
}

/// A JavaScript string as UTF-8, strictly: a lone surrogate is an error, never replaced.
unsafe fn strict_string(env: sys::napi_env, v: sys::napi_value) -> std::result::Result<String, StrError> {
    const OK: sys::napi_status = sys::Status::napi_ok;
    unsafe {
        let mut stack = [0u16; 128];
        let mut len = 0usize;
        // One call when it fits the stack buffer (the usual key segment); a second one for the
        // rest. `napi_get_value_string_utf16` copies the code units unchanged.
        if sys::napi_get_value_string_utf16(env, v, stack.as_mut_ptr(), stack.len(), &mut len) != OK {
            return Err(StrError::NotString);
        }
        let heap;
        let units: &[u16] = if len + 1 < stack.len() {
            &stack[..len]
        } else {
            let mut total = 0usize;
            if sys::napi_get_value_string_utf16(env, v, std::ptr::null_mut(), 0, &mut total) != OK {
                return Err(StrError::NotString);
            }
            let mut buf = vec![0u16; total + 1];
            if sys::napi_get_value_string_utf16(env, v, buf.as_mut_ptr(), total + 1, &mut len) != OK {
                return Err(StrError::NotString);
            }
            buf.truncate(len);
            heap = buf;
            &heap
        };
        if units.iter().all(|&u| u < 0x80) {
            return Ok(units.iter().map(|&u| u as u8 as char).collect());
        }
        let mut out = String::with_capacity(units.len() + units.len() / 2);
        for (i, c) in char::decode_utf16(units.iter().copied()).enumerate() {
            match c {
                Ok(c) => out.push(c),
                Err(_) => {
                    // the index in code units: count what came before
                    let at = char::decode_utf16(units.iter().copied()).take(i).map(|c| c.map_or(1, char::len_utf16)).sum();
                    return Err(StrError::LoneSurrogate(at));
                }
            }
        }
        Ok(out)
    }
}

fn strict_error(what: &str, e: StrError) -> Error {
    match e {
        StrError::NotString => Error::new(Status::StringExpected, format!("`{what}` must be a string")),
        StrError::LoneSurrogate(at) => invalid(format!("`{what}` is not valid Unicode: a lone surrogate at index {at} (it has no UTF-8 form)")),
    }
}

/// Throw `e` as a RangeError (InvalidArg) or TypeError (anything else), `karlton: ` prefixed.
unsafe fn throw(env: sys::napi_env, e: &Error) {
    let msg = std::ffi::CString::new(format!("karlton: {}", e.reason).replace('\0', " ")).unwrap_or_default();
    unsafe {
        if e.status == Status::InvalidArg {
            sys::napi_throw_range_error(env, std::ptr::null(), msg.as_ptr());
        } else {
            sys::napi_throw_type_error(env, std::ptr::null(), msg.as_ptr());
        }
    }
}

/// `buildKey(namespace, segments)`: the built key string of
/// `Key::new(namespace).segments(segments)` (each segment a string; the facade turns numbers and
/// bigints into their decimal text). One raw N-API call per key — no napi-rs argument
/// conversion, no native object to track — with the strings read strictly (a lone surrogate is a
/// RangeError naming the argument).
unsafe extern "C" fn build_key_raw(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 2usize;
    let mut argv = [std::ptr::null_mut(); 2];
    unsafe {
        sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut());
        let r = (|| -> Result<sys::napi_value> {
            if argc < 2 {
                return Err(Error::new(Status::InvalidArg, "buildKey(namespace, segments)".to_string()));
            }
            let ns = strict_string(env, argv[0]).map_err(|e| strict_error("namespace", e))?;
            let mut n = 0u32;
            if sys::napi_get_array_length(env, argv[1], &mut n) != sys::Status::napi_ok {
                return Err(Error::new(Status::ArrayExpected, "`segments` must be an array".to_string()));
            }
            let mut key = Key::new(&ns).map_err(key_err)?;
            for i in 0..n {
                let mut item = std::ptr::null_mut();
                sys::napi_get_element(env, argv[1], i, &mut item);
                let seg = strict_string(env, item).map_err(|e| strict_error(&format!("segments[{i}]"), e))?;
                key = key.segment(&seg);
            }
            let k = key.as_str();
            let mut out = std::ptr::null_mut();
            if sys::napi_create_string_utf8(env, k.as_ptr().cast(), k.len() as isize, &mut out) != sys::Status::napi_ok {
                return Err(Error::new(Status::GenericFailure, "failed to create a string".to_string()));
            }
            Ok(out)
        })();
        match r {
            Ok(v) => v,
            Err(e) => {
                throw(env, &e);
                std::ptr::null_mut()
            }
        }
    }
}

/// The raw `buildKey(namespace, segments)` function (see [`build_key_raw`]).
#[napi(ts_return_type = "(namespace: string, segments: string[]) => string")]
pub fn build_key_function<'env>(env: &'env napi::Env) -> Result<Unknown<'env>> {
    raw_function(env, c"buildKey", Some(build_key_raw))
}

fn key_of<'a>(env: &napi::Env, handle: &Unknown) -> Result<&'a Key> {
    unsafe { external_ref::<KeyData>(env.raw(), handle.raw(), KEY_MAGIC) }.map(|k| &k.key).ok_or_else(|| invalid("not a key handle"))
}

fn policy_of(env: &napi::Env, handle: Option<&Unknown>) -> Option<Arc<Policy>> {
    let h = handle?;
    unsafe { external_ref::<PolicyData>(env.raw(), h.raw(), POLICY_MAGIC) }.map(|p| p.policy.clone())
}

/// `[entryKey, generationKey]` of a key handle.
#[napi]
pub fn key_strings(env: &napi::Env, handle: Unknown) -> Result<Vec<String>> {
    let k = key_of(env, &handle)?;
    Ok(vec![k.as_str().to_owned(), k.generation_keys()[0].clone()])
}

/// Generation keys of a read or write: the namespace counter, then one per tag.
fn gen_keys_of(key: &Key, tags: &[String]) -> Vec<String> {
    let mut g = Vec::with_capacity(1 + tags.len());
    g.push(key.generation_keys()[0].clone());
    g.extend(tags.iter().map(|t| key.tag_key(t)));
    g
}

// ---------------------------------------------------------------------------------------------
// The host of one coordinator

/// Action codes: element 0 of every array [`encode`] hands JavaScript.
pub const A_STORE: u32 = 0; // [0, call, script index, [keys, args]]  run it, feedRedis / feedStoreError
pub const A_FAST_READ: u32 = 1; // [1, call, commands]               pipeline them, fastRead / fastReadFailed
pub const A_START_LOAD: u32 = 2; // [2, call, timeoutAt | -1]          start the loader, loaded / loadFailed / timeout
pub const A_AWAIT_LOAD: u32 = 3; // [3, call, timeoutAt | -1]          keep awaiting it
pub const A_WAIT: u32 = 4; // [4, call, untilMs]                        sleep, then timeout
pub const A_SERVE: u32 = 5; // [5, call, value]                          answer the caller, then resume
pub const A_ANSWER: u32 = 6; // [6, call, value]                         answer; the call is over
pub const A_ERROR: u32 = 7; // [7, call, kind, message]                 reject; the call is over
pub const A_FINISHED: u32 = 8; // [8, call]                              background work ended
pub const A_JOIN: u32 = 9; // [9, call, flight]                          await flight's wake, then joined
// Element 4, when present: the events of this decision — a number (a flight to wake) or
// `[key, kind, message]` (a background refresh failed). A final answer with no events is handed
// over as the bare value instead of an array.

struct State {
    coord: Coordinator,
    /// The store op each Redis call is running (to decode its reply).
    running: HashMap<CallId, StoreOp>,
}

struct Host {
    policy: Arc<Policy>,
    memory: Option<Arc<MemoryStore>>,
    counters: Arc<Counters>,
    state: Mutex<State>,
}

/// A seed from the operating system's random source (never the clock or an address: caches
/// started together must not draw the same jitter and XFetch sequence).
fn os_seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(now_ms())
    })
}


fn reply_out(r: Reply) -> Out {
    match r {
        Reply::Value(s) => Out::served(&s),
        Reply::Missing => Out::Miss,
        Reply::Stored(b) | Reply::Invalidated(b) => Out::Bool(b),
        Reply::Bumped(g) => Out::Num(g as f64),
    }
}

fn redis_call_out(op: &StoreOp) -> (Out, Out) {
    let call = redis::encode_op(op);
    let script = redis::scripts().iter().position(|s| std::ptr::eq(s, call.script)).unwrap_or(0);
    // UTF-8 arguments as strings (ioredis then writes the whole command in one chunk), binary
    // ones (entry bytes) as Buffers.
    let args = call
        .args
        .into_iter()
        .map(|a| match String::from_utf8(a) {
            Ok(text) => Out::Str(text),
            Err(e) => Out::Raw(Arc::from(e.into_bytes().into_boxed_slice())),
        })
        .collect();
    let keys = call.keys.into_iter().map(Out::Str).collect();
    (Out::Num(script as f64), Out::List(vec![Out::List(keys), Out::List(args)]))
}

impl Host {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `action` of `call` as far as it goes without JavaScript (memory store ops inline),
    /// then hand the rest over, with the events of the decision.
    fn drive(&self, st: &mut State, call: CallId, mut action: Action) -> Out {
        if let Some(mem) = &self.memory {
            while let Action::Store(op) = &action {
                let now = now_ms();
                let r = mem.apply(now, op);
                action = st.coord.handle(now, call, Input::Store(r));
            }
        }
        let (code, a, b) = match action {
            Action::Store(op) => {
                let (s, kv) = redis_call_out(&op);
                st.running.insert(call, op);
                (A_STORE, s, kv)
            }
            Action::FastRead { key, gen_keys } => {
                let cmds = redis::fast_read_commands(&key, &gen_keys)
                    .into_iter()
                    .map(|c| Out::List(c.into_iter().map(|a| Out::Str(String::from_utf8_lossy(&a).into_owned())).collect()))
                    .collect();
                (A_FAST_READ, Out::List(cmds), Out::Miss)
            }
            Action::StartLoad { timeout_at } => (A_START_LOAD, Out::Num(timeout_at.map_or(-1.0, |t| t as f64)), Out::Miss),
            Action::AwaitLoad { timeout_at } => (A_AWAIT_LOAD, Out::Num(timeout_at.map_or(-1.0, |t| t as f64)), Out::Miss),
            Action::Wait { until_ms } => (A_WAIT, Out::Num(until_ms as f64), Out::Miss),
            Action::Serve(s) => (A_SERVE, Out::served(&s), Out::Miss),
            Action::Answer(a) => return self.answer(st, call, a),
            Action::Finished => (A_FINISHED, Out::Miss, Out::Miss),
        };
        let events = self.events(st);
        Out::List(vec![Out::Num(code as f64), Out::Num(call.0 as f64), a, b, events])
    }

    fn answer(&self, st: &mut State, call: CallId, a: Answer) -> Out {
        let events = self.events(st);
        match a {
            Ok(r) if matches!(events, Out::Miss) => reply_out(r),
            Ok(r) => Out::List(vec![Out::Num(A_ANSWER as f64), Out::Num(call.0 as f64), reply_out(r), Out::Miss, events]),
            Err(e) => Out::List(vec![
                Out::Num(A_ERROR as f64),
                Out::Num(call.0 as f64),
                Out::Str(e.kind().into()),
                Out::Str(e.to_string()),
                events,
            ]),
        }
    }

    fn ticket(&self, st: &mut State, t: Ticket) -> Out {
        match t {
            Ticket::Answer { answer } => self.answer(st, CallId(0), answer),
            Ticket::Lead { call, action } => self.drive(st, call, action),
            Ticket::Join { call, flight, until_ms } => {
                let events = self.events(st);
                Out::List(vec![Out::Num(A_JOIN as f64), Out::Num(call.0 as f64), Out::Num(flight.0 as f64), Out::Num(until_ms as f64), events])
            }
        }
    }

    fn events(&self, st: &mut State) -> Out {
        let mut out = Vec::new();
        while let Some(e) = st.coord.poll_event() {
            out.push(match e {
                Event::Wake { flight } => Out::Num(flight.0 as f64),
                Event::BackgroundError { key, error } => {
                    Out::List(vec![Out::Str(key), Out::Str(error.kind().into()), Out::Str(error.to_string())])
                }
            });
        }
        if out.is_empty() { Out::Miss } else { Out::List(out) }
    }

    fn feed(&self, call: CallId, input: Input) -> Out {
        let mut st = self.lock();
        let a = st.coord.handle(now_ms(), call, input);
        self.drive(&mut st, call, a)
    }

    /// The memory store's fresh hit (lock-free, counted by the core), as the hit's `Out`.
    fn memory_hit(&self, key: &str, gen_keys: &[String], policy: &Policy) -> Option<Out> {
        let mem = self.memory.as_ref()?;
        self.counters.memory_hit(mem, now_ms(), key, gen_keys, policy).map(|s| Out::served(&s))
    }

    /// A new `getOrLoad` call's ticket.
    fn start(&self, req: Request, policy: Arc<Policy>) -> Out {
        let mut st = self.lock();
        let t = st.coord.get_or_load(now_ms(), req, policy);
        self.ticket(&mut st, t)
    }

    /// `getOrLoad`: the memory store's fresh hit first (lock-free, counted by the core), then a
    /// ticket.
    fn get_or_load(self: &Arc<Host>, kd: &KeyData, tags: Vec<String>, policy: Option<Arc<Policy>>) -> Out {
        let key = &kd.key;
        let policy = policy.unwrap_or_else(|| self.policy.clone());
        let gk;
        let gen_keys: &[String] = if tags.is_empty() {
            key.generation_keys()
        } else {
            gk = gen_keys_of(key, &tags);
            &gk
        };
        if let Some(hit) = self.memory_hit(key.as_str(), gen_keys, &policy) {
            return hit;
        }
        self.start(Request { key: key.as_str().to_owned(), gen_keys: gen_keys.to_vec(), tags }, policy)
    }

    /// `get`: the memory fresh hit first, then the one-op read.
    fn get(self: &Arc<Host>, kd: &KeyData, tags: Vec<String>, policy: Option<Arc<Policy>>) -> Out {
        let key = &kd.key;
        let policy = policy.unwrap_or_else(|| self.policy.clone());
        let gk;
        let gen_keys: &[String] = if tags.is_empty() {
            key.generation_keys()
        } else {
            gk = gen_keys_of(key, &tags);
            &gk
        };
        if let Some(hit) = self.memory_hit(key.as_str(), gen_keys, &policy) {
            return hit;
        }
        self.op(Op::Get { key: key.as_str().to_owned(), gen_keys: gen_keys.to_vec() }, policy)
    }

    /// [`Host::get_or_load`] for an untagged call given the key's strings.
    fn get_or_load_str(&self, key: &str, gen_key: &str, policy: Option<Arc<Policy>>) -> Out {
        let policy = policy.unwrap_or_else(|| self.policy.clone());
        let gen_keys = [gen_key.to_owned()];
        if let Some(hit) = self.memory_hit(key, &gen_keys, &policy) {
            return hit;
        }
        let [gen_key] = gen_keys;
        self.start(Request { key: key.to_owned(), gen_keys: vec![gen_key], tags: Vec::new() }, policy)
    }

    /// [`Host::get`] for an untagged call given the key's strings.
    fn get_str(&self, key: &str, gen_key: &str, policy: Option<Arc<Policy>>) -> Out {
        let policy = policy.unwrap_or_else(|| self.policy.clone());
        let gen_keys = [gen_key.to_owned()];
        if let Some(hit) = self.memory_hit(key, &gen_keys, &policy) {
            return hit;
        }
        let [gen_key] = gen_keys;
        self.op(Op::Get { key: key.to_owned(), gen_keys: vec![gen_key] }, policy)
    }

    fn op(&self, op: Op, policy: Arc<Policy>) -> Out {
        let mut st = self.lock();
        let (call, a) = st.coord.op(now_ms(), op, policy);
        self.drive(&mut st, call, a)
    }
}

/// The native state of one `Cache`: its coordinator (seeded from the OS), default policy and,
/// on a memory store, the store.
#[napi]
pub struct NativeCache {
    host: Arc<Host>,
}

fn call_id(call: f64) -> CallId {
    CallId(call as u64)
}

fn read_tags(tags: Option<Vec<String>>) -> Vec<String> {
    tags.unwrap_or_default()
}

#[napi]
impl NativeCache {
    /// `fastRead`: the store has the Redis fast read (standalone Redis, `fastReads` on).
    #[napi(constructor)]
    pub fn new(policy: &NativePolicy, store: Option<&NativeMemoryStore>, fast_read: bool) -> NativeCache {
        let memory = store.map(|s| s.inner.clone());
        let coord = Coordinator::new(os_seed(), fast_read && memory.is_none());
        let host = Host {
            policy: policy.inner.clone(),
            memory,
            counters: coord.counters().clone(),
            state: Mutex::new(State { coord, running: HashMap::new() }),
        };
        NativeCache { host: Arc::new(host) }
    }

    /// This cache as an opaque handle for the raw hot-path functions.
    #[napi(ts_return_type = "object")]
    pub fn handle<'env>(&self, env: &'env napi::Env) -> Result<Unknown<'env>> {
        let data = CacheData { magic: CACHE_MAGIC, host: self.host.clone() };
        unsafe { Ok(Unknown::from_raw_unchecked(env.raw(), make_external(env.raw(), data)?)) }
    }

    /// A `getOrLoad` whose answer did not decode: count it, run again treating the entry as a
    /// miss (the loader runs, its fill replaces the bytes).
    #[napi(ts_return_type = "unknown")]
    pub fn replacing(&self, env: &napi::Env, key: Unknown, tags: Option<Vec<String>>, policy: Option<Unknown>, bad: Either<String, &[u8]>, source: Option<String>) -> Result<Out> {
        let bad = undecodable(value_bytes(bad), source)?;
        let key = key_of(env, &key)?;
        let tags = read_tags(tags);
        let policy = policy_of(env, policy.as_ref()).unwrap_or_else(|| self.host.policy.clone());
        let req = Request { key: key.as_str().to_owned(), gen_keys: gen_keys_of(key, &tags), tags };
        let mut st = self.host.lock();
        let t = st.coord.get_or_load_replacing(now_ms(), req, policy, bad);
        Ok(self.host.ticket(&mut st, t))
    }

    /// A `get` answered a value that did not decode: its hit becomes a miss and a corrupt
    /// entry. `source` is what the read said it was (`fresh` unless told).
    #[napi]
    pub fn report_undecodable(&self, source: Option<String>) -> Result<()> {
        self.host.counters.report_undecodable(&undecodable(Arc::from(&[][..]), source)?);
        Ok(())
    }

    /// A joiner's flight woke it: its answer, or a new ticket (run again).
    #[napi(ts_return_type = "unknown")]
    pub fn joined(&self, call: f64) -> Out {
        let mut st = self.host.lock();
        let t = st.coord.joined(now_ms(), call_id(call));
        self.host.ticket(&mut st, t)
    }

    /// The Redis reply to the call's store op.
    #[napi(ts_return_type = "unknown")]
    pub fn feed_redis(&self, env: &napi::Env, call: f64, reply: Unknown) -> Out {
        let call = call_id(call);
        let op = self.host.lock().running.remove(&call);
        let input = match (op, unsafe { raw_redis(env.raw(), reply.raw(), 0) }) {
            (Some(op), Some(v)) => match redis::decode_reply(&op, v) {
                Ok(r) => Input::Store(r),
                Err(e) => Input::StoreFailed(e),
            },
            (Some(_), None) => Input::StoreFailed(StoreFailure { message: "redis reply of an unexpected shape".into() }),
            (None, _) => Input::StoreFailed(StoreFailure { message: "no store op running for this call".into() }),
        };
        self.host.feed(call, input)
    }

    /// The store op failed (down, timeout, …).
    #[napi(ts_return_type = "unknown")]
    pub fn feed_store_error(&self, call: f64, message: String) -> Out {
        let call = call_id(call);
        self.host.lock().running.remove(&call);
        self.host.feed(call, Input::StoreFailed(StoreFailure { message }))
    }

    /// The fast read's replies (in command order).
    #[napi(ts_return_type = "unknown")]
    pub fn fast_read(&self, env: &napi::Env, call: f64, replies: Unknown) -> Out {
        let r = match unsafe { raw_redis(env.raw(), replies.raw(), 0) } {
            Some(RedisValue::Array(v)) => Ok(v),
            _ => Err(StoreFailure { message: "fast read replies of an unexpected shape".into() }),
        };
        let call = call_id(call);
        let mut st = self.host.lock();
        let a = st.coord.handle_fast_read(now_ms(), call, r);
        self.host.drive(&mut st, call, a)
    }

    /// The fast read failed: `reply` = an error reply (garbage under the key: not a hit, no
    /// store failure), otherwise a store failure.
    #[napi(ts_return_type = "unknown")]
    pub fn fast_read_failed(&self, call: f64, message: String, reply: bool) -> Out {
        let call = call_id(call);
        let r = if reply { Ok(vec![RedisValue::Error(message)]) } else { Err(StoreFailure { message }) };
        let mut st = self.host.lock();
        let a = st.coord.handle_fast_read(now_ms(), call, r);
        self.host.drive(&mut st, call, a)
    }

    /// The loader answered: encoded value (text or bytes), codec id, "not found".
    #[napi(ts_return_type = "unknown")]
    pub fn loaded(&self, call: f64, value: Either<String, &[u8]>, codec: u32, negative: bool) -> Result<Out> {
        let loaded = Loaded {
            value: if negative { Arc::from(&[][..]) } else { value_bytes(value) },
            codec: codec_id(codec)?,
            negative,
            version: None,
        };
        Ok(self.host.feed(call_id(call), Input::Loaded(loaded)))
    }

    /// The loader threw or rejected (the facade keeps the error object).
    #[napi(ts_return_type = "unknown")]
    pub fn load_failed(&self, call: f64, message: String) -> Out {
        self.host.feed(call_id(call), Input::LoadFailed(message))
    }

    /// A wait's deadline or a load's timeout passed.
    #[napi(ts_return_type = "unknown")]
    pub fn timeout(&self, call: f64) -> Out {
        self.host.feed(call_id(call), Input::Timeout)
    }

    /// Go on after a serve (the rest runs in the background).
    #[napi(ts_return_type = "unknown")]
    pub fn resume(&self, call: f64) -> Out {
        self.host.feed(call_id(call), Input::Continue)
    }

    /// Before a `getOrLoad` made inside loaders (`flights`: the ones this call chain runs in):
    /// the re-entrance error's message if `key` is one of theirs (it would wait for itself).
    #[napi]
    pub fn reentrant(&self, key: String, flights: Vec<f64>) -> Option<String> {
        let within: Vec<FlightId> = flights.into_iter().map(|f| FlightId(f as u64)).collect();
        self.host.lock().coord.reentrant(&key, &within).map(|e| e.to_string())
    }

    /// Instead of `resume`: the served value did not decode. The core takes it back and the
    /// call leads on under a new id (its lease, its running loader) to answer from the refresh.
    #[napi(ts_return_type = "unknown")]
    pub fn replace_served(&self, call: f64) -> Out {
        let mut st = self.host.lock();
        let t = st.coord.replace_served(now_ms(), call_id(call));
        self.host.ticket(&mut st, t)
    }

    /// The call went away (a bug, a throw after its lease was taken): its flight ends (joiners
    /// run again), and the lease it held is returned — inline on the memory store; on Redis as
    /// `[script, [keys, args]]` to run (reply ignored). Also hands over the decision's events.
    #[napi(ts_return_type = "[unknown, unknown]")]
    pub fn cancel(&self, call: f64) -> Vec<Out> {
        let call = call_id(call);
        let mut st = self.host.lock();
        st.running.remove(&call);
        let release = match (st.coord.cancel(call), &self.host.memory) {
            (Some(op), Some(mem)) => {
                mem.apply(now_ms(), &op);
                Out::Miss
            }
            (Some(op), None) => {
                let (s, kv) = redis_call_out(&op);
                Out::List(vec![s, kv])
            }
            (None, _) => Out::Miss,
        };
        let events = self.host.events(&mut st);
        vec![release, events]
    }

    /// Write-through `set` (authoritative fill; never lowers a version).
    #[napi(ts_return_type = "unknown")]
    #[allow(clippy::too_many_arguments)]
    pub fn set(&self, env: &napi::Env, key: Unknown, tags: Option<Vec<String>>, value: Either<String, &[u8]>, codec: u32, version: Option<String>, policy: Option<Unknown>) -> Result<Out> {
        let key = key_of(env, &key)?;
        let tags = read_tags(tags);
        let w = Write {
            key: key.as_str().to_owned(),
            gen_keys: gen_keys_of(key, &tags),
            tags,
            value: value_bytes(value),
            codec: codec_id(codec)?,
            version: version.as_deref().map(|v| parse_u64("version", v)).transpose()?,
        };
        let policy = policy_of(env, policy.as_ref()).unwrap_or_else(|| self.host.policy.clone());
        Ok(self.host.op(Op::Set { write: w }, policy))
    }

    /// Delete (`markStale` false) or mark stale; revokes the lease.
    #[napi(ts_return_type = "unknown")]
    pub fn invalidate(&self, env: &napi::Env, key: Unknown, mark_stale: bool) -> Result<Out> {
        let key = key_of(env, &key)?;
        let mode = if mark_stale { InvalidateMode::MarkStale } else { InvalidateMode::Delete };
        Ok(self.host.op(Op::Invalidate { key: key.as_str().to_owned(), mode }, self.host.policy.clone()))
    }

    /// Move a generation counter: the key's namespace (`tag` absent) or one of its tags.
    #[napi(ts_return_type = "unknown")]
    pub fn bump(&self, env: &napi::Env, key: Unknown, tag: Option<String>) -> Result<Out> {
        let key = key_of(env, &key)?;
        let gen_key = match tag {
            None => key.generation_keys()[0].clone(),
            Some(t) => key.tag_key(&t),
        };
        Ok(self.host.op(Op::Bump { gen_key }, self.host.policy.clone()))
    }

    /// Counter values in [`stats_fields`] order (the coordinator's table; evictions from the
    /// memory store).
    #[napi]
    pub fn stats(&self) -> Vec<f64> {
        let mut s = self.host.counters.snapshot();
        if let Some(m) = &self.host.memory {
            s.evictions = m.evictions();
        }
        s.fields().iter().map(|(_, v)| *v as f64).collect()
    }

    /// `[calls, flights]` the coordinator holds (both 0 when the cache is idle).
    #[napi]
    pub fn pending(&self) -> Vec<u32> {
        let (c, f) = self.host.lock().coord.pending();
        vec![c as u32, f as u32]
    }
}

/// Counter names (snake_case, core order) matching [`NativeCache::stats`].
#[napi]
pub fn stats_fields() -> Vec<String> {
    Stats::default().fields().iter().map(|(n, _)| n.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// The hot paths as raw N-API functions: one get_cb_info, two externals, the core call.

/// The `tags` argument of a hot call: an array of strings (read strictly), or nothing.
unsafe fn strings_arg(env: sys::napi_env, v: sys::napi_value) -> Result<Vec<String>> {
    unsafe {
        let mut t = 0;
        if sys::napi_typeof(env, v, &mut t) != sys::Status::napi_ok || t == sys::ValueType::napi_undefined || t == sys::ValueType::napi_null {
            return Ok(Vec::new());
        }
        let mut n = 0u32;
        if t != sys::ValueType::napi_object || sys::napi_get_array_length(env, v, &mut n) != sys::Status::napi_ok {
            return Err(Error::new(Status::ArrayExpected, "`options.tags` must be an array of strings".to_string()));
        }
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let mut item = std::ptr::null_mut();
            sys::napi_get_element(env, v, i, &mut item);
            out.push(strict_string(env, item).map_err(|e| strict_error(&format!("options.tags[{i}]"), e))?);
        }
        Ok(out)
    }
}

type HotFn = fn(&Arc<Host>, &KeyData, Vec<String>, Option<Arc<Policy>>) -> Out;

/// `(cache, key, tags?, policy?)` → [`Host::get_or_load`] / [`Host::get`].
unsafe fn hot(env: sys::napi_env, info: sys::napi_callback_info, f: HotFn, usage: &std::ffi::CStr) -> sys::napi_value {
    let mut argc = 4usize;
    let mut argv = [std::ptr::null_mut(); 4];
    unsafe {
        sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut());
        let cache: Option<&CacheData> = if argc >= 1 { external_ref(env, argv[0], CACHE_MAGIC) } else { None };
        let key: Option<&KeyData> = if argc >= 2 { external_ref(env, argv[1], KEY_MAGIC) } else { None };
        let (Some(cache), Some(key)) = (cache, key) else {
            sys::napi_throw_type_error(env, std::ptr::null(), usage.as_ptr());
            return std::ptr::null_mut();
        };
        let tags = if argc >= 3 {
            match strings_arg(env, argv[2]) {
                Ok(t) => t,
                Err(e) => {
                    throw(env, &e);
                    return std::ptr::null_mut();
                }
            }
        } else {
            Vec::new()
        };
        let policy = if argc >= 4 { external_ref::<PolicyData>(env, argv[3], POLICY_MAGIC).map(|p| p.policy.clone()) } else { None };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&cache.host, key, tags, policy)));
        answer(env, out)
    }
}

/// A built key string from JavaScript (the facade passes only strings the core built) into
/// `buf` when it fits, without an allocation.
unsafe fn key_str<'b>(env: sys::napi_env, v: sys::napi_value, buf: &'b mut [std::mem::MaybeUninit<u8>; 512], heap: &'b mut Vec<u8>) -> Option<&'b str> {
    unsafe {
        let mut len = 0usize;
        if sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast(), buf.len(), &mut len) != sys::Status::napi_ok {
            return None;
        }
        if len + 1 < buf.len() {
            // SAFETY: napi wrote `len` bytes (plus a NUL) into the buffer.
            let bytes = std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len);
            return std::str::from_utf8(bytes).ok();
        }
        *heap = raw_string(env, v)?.into_bytes();
        std::str::from_utf8(heap).ok()
    }
}

/// What a raw hot-path entry point hands back to JavaScript: the answer converted, or a thrown
/// error (a panic in the core included) and null.
unsafe fn answer(env: sys::napi_env, out: std::thread::Result<Out>) -> sys::napi_value {
    let result = match out {
        Ok(o) => unsafe { Out::to_napi_value(env, o) },
        Err(_) => Err(Error::new(Status::GenericFailure, "panic in karlton")),
    };
    match result {
        Ok(v) => v,
        Err(e) => {
            let msg = std::ffi::CString::new(e.reason.replace('\0', " ")).unwrap_or_default();
            unsafe { sys::napi_throw_error(env, std::ptr::null(), msg.as_ptr()) };
            std::ptr::null_mut()
        }
    }
}

type StrHotFn = fn(&Host, &str, &str, Option<Arc<Policy>>) -> Out;

/// `(cache, key, generationKey, policy?)` → [`Host::get_or_load_str`] / [`Host::get_str`]: the
/// untagged hot path over the key's strings (no native key object per `Key`).
unsafe fn hot_str(env: sys::napi_env, info: sys::napi_callback_info, f: StrHotFn, usage: &std::ffi::CStr) -> sys::napi_value {
    let mut argc = 4usize;
    let mut argv = [std::ptr::null_mut(); 4];
    unsafe {
        sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut());
        let cache: Option<&CacheData> = if argc >= 3 { external_ref(env, argv[0], CACHE_MAGIC) } else { None };
        let (mut kb, mut gb) = ([std::mem::MaybeUninit::<u8>::uninit(); 512], [std::mem::MaybeUninit::<u8>::uninit(); 512]);
        let (mut kh, mut gh) = (Vec::new(), Vec::new());
        let key = if argc >= 3 { key_str(env, argv[1], &mut kb, &mut kh) } else { None };
        let gen_key = if argc >= 3 { key_str(env, argv[2], &mut gb, &mut gh) } else { None };
        let (Some(cache), Some(key), Some(gen_key)) = (cache, key, gen_key) else {
            sys::napi_throw_type_error(env, std::ptr::null(), usage.as_ptr());
            return std::ptr::null_mut();
        };
        let policy = if argc >= 4 { external_ref::<PolicyData>(env, argv[3], POLICY_MAGIC).map(|p| p.policy.clone()) } else { None };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&cache.host, key, gen_key, policy)));
        answer(env, out)
    }
}

unsafe extern "C" fn get_or_load_key_raw(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe { hot_str(env, info, Host::get_or_load_str, c"getOrLoadKey(cacheHandle, key, generationKey, policyHandle?)") }
}

unsafe extern "C" fn get_key_raw(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe { hot_str(env, info, Host::get_str, c"getKey(cacheHandle, key, generationKey, policyHandle?)") }
}

/// `getOrLoadKey(cache, key, generationKey, policy?)`: [`get_or_load_function`] for an
/// untagged call, over the key's built strings.
#[napi(ts_return_type = "(cache: object, key: string, generationKey: string, policy?: object) => unknown")]
pub fn get_or_load_key_function<'env>(env: &'env napi::Env) -> Result<Unknown<'env>> {
    raw_function(env, c"getOrLoadKey", Some(get_or_load_key_raw))
}

/// `getKey(cache, key, generationKey, policy?)`: [`get_function`] for an untagged call.
#[napi(ts_return_type = "(cache: object, key: string, generationKey: string, policy?: object) => unknown")]
pub fn get_key_function<'env>(env: &'env napi::Env) -> Result<Unknown<'env>> {
    raw_function(env, c"getKey", Some(get_key_raw))
}

unsafe extern "C" fn get_or_load_raw(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe { hot(env, info, Host::get_or_load, c"getOrLoad(cacheHandle, keyHandle, tags?, policyHandle?)") }
}

unsafe extern "C" fn get_raw(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe { hot(env, info, Host::get, c"get(cacheHandle, keyHandle, tags?, policyHandle?)") }
}

fn raw_function<'env>(env: &'env napi::Env, name: &std::ffi::CStr, cb: sys::napi_callback) -> Result<Unknown<'env>> {
    let mut f = std::ptr::null_mut();
    let status = unsafe { sys::napi_create_function(env.raw(), name.as_ptr(), name.count_bytes() as isize, cb, std::ptr::null_mut(), &mut f) };
    if status != sys::Status::napi_ok {
        return Err(Error::new(Status::GenericFailure, "failed to create a function"));
    }
    unsafe { Ok(Unknown::from_raw_unchecked(env.raw(), f)) }
}

/// `getOrLoad(cache, key, tags?, policy?)`: the memory fresh hit's value, or a ticket (see
/// [`encode`]'s codes).
#[napi(ts_return_type = "(cache: object, key: object, tags?: string[], policy?: object) => unknown")]
pub fn get_or_load_function<'env>(env: &'env napi::Env) -> Result<Unknown<'env>> {
    raw_function(env, c"getOrLoad", Some(get_or_load_raw))
}

/// `get(cache, key, tags?, policy?)`: the memory fresh hit's value, or the one-op read.
#[napi(ts_return_type = "(cache: object, key: object, tags?: string[], policy?: object) => unknown")]
pub fn get_function<'env>(env: &'env napi::Env) -> Result<Unknown<'env>> {
    raw_function(env, c"get", Some(get_raw))
}

// ---------------------------------------------------------------------------------------------
// Conformance vectors through the shipped binary

#[cfg(feature = "vectors")]
#[path = "../../../core/tests/vectors/eval.rs"]
#[allow(dead_code, missing_docs, clippy::all)]
mod eval;

/// Evaluate one conformance-vector case (`kind`, `input` as JSON text) with the core's own
/// evaluator; the result as JSON text (compare with the case's `expect`).
#[cfg(feature = "vectors")]
#[napi]
pub fn vector_eval(kind: String, input_json: String) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(&input_json).map_err(|e| invalid(e.to_string()))?;
    std::panic::catch_unwind(|| eval::eval(&kind, &v).to_string()).map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        Error::new(Status::GenericFailure, format!("vector evaluator panicked: {msg}"))
    })
}
