//! `karlton._karlton`: the native module under the `karlton` Python package.
//!
//! A thin translation layer over `karlton-core`: `Key`, `PolicyCore`, `MemoryStore`, and the
//! `Driver` (a core `Coordinator`) and the `Call` handles the Python drivers (`karlton.Cache`,
//! `karlton.AsyncCache`) step through. No policy is decided here.

mod convert;
mod driver;
mod key;
mod policy;

use karlton_core::Entry;
use std::sync::Arc;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

/// Decode raw entry bytes (as a store holds them) with the core's entry codec, for inspection
/// and cross-runtime checks. Raises `ValueError` on corrupt bytes.
#[pyfunction]
fn decode_entry<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let e = Entry::decode(data).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let d = PyDict::new(py);
    d.set_item("value", PyBytes::new(py, &e.value))?;
    d.set_item("codec", e.codec)?;
    d.set_item("version", e.version)?;
    d.set_item("generations", PyList::new(py, &e.generations)?)?;
    d.set_item("soft_at", e.soft_at)?;
    d.set_item("hard_at", e.hard_at)?;
    d.set_item("load_ms", e.load_ms)?;
    d.set_item("negative", e.negative)?;
    d.set_item("tags", PyList::new(py, &e.tags)?)?;
    Ok(d)
}

/// The Redis scripts of the store protocol: `[(name, sha1, source), …]`.
#[pyfunction]
fn redis_scripts<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
    let items = karlton_core::redis::scripts()
        .iter()
        .map(|s| PyTuple::new(py, [s.name.to_string(), s.sha1(), s.source.to_string()]))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// The Redis Cluster slot every key of one call hashes to (core's `keys_slot`: the rule
/// `CLUSTER KEYSLOT` uses, hash tags included); `None` for no keys. Raises `ValueError` when
/// they hash to different slots (Redis would answer `CROSSSLOT`), naming the keys and the fix.
#[pyfunction]
fn keys_slot(keys: Vec<String>) -> PyResult<Option<u16>> {
    karlton_core::redis::keys_slot(&keys).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// The keys a packed fast read (`Call.packed`: RESP commands in one buffer) reads: the
/// arguments of its `MGET`.
fn packed_keys(mut b: &[u8]) -> Option<Vec<String>> {
    fn line<'a>(b: &mut &'a [u8], tag: u8) -> Option<usize> {
        let end = b.windows(2).position(|w| w == b"\r\n")?;
        let (head, rest) = (&b[..end], &b[end + 2..]);
        let (&t, digits) = head.split_first()?;
        if t != tag {
            return None;
        }
        *b = rest;
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
    while !b.is_empty() {
        let n = line(&mut b, b'*')?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let len = line(&mut b, b'$')?;
            let arg = b.get(..len)?;
            args.push(arg);
            b = b.get(len + 2..)?;
        }
        if args.first() == Some(&&b"MGET"[..]) {
            return args[1..].iter().map(|a| String::from_utf8(a.to_vec()).ok()).collect();
        }
    }
    None
}

/// `keys_slot` of a packed fast read's keys (`Call.packed[0]`), to route it on a cluster.
#[pyfunction]
fn fast_read_slot(packed: &[u8]) -> PyResult<Option<u16>> {
    let keys = packed_keys(packed)
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("fast_read_slot(): not a packed fast read"))?;
    keys_slot(keys)
}

/// Canonical params hash (RFC 8785 JSON, SHA-256, 32 hex) of a JSON-like value.
#[pyfunction]
fn params_hash(params: &Bound<'_, PyAny>) -> PyResult<String> {
    let v = convert::to_json(params, "params")?;
    karlton_core::key::params_hash(&v).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

#[cfg(feature = "vectors")]
#[path = "../../../core/tests/vectors/eval.rs"]
#[allow(dead_code, missing_docs, clippy::all)]
mod eval;

/// Evaluate one conformance-vector case (`kind`, `input` as JSON text) with the core's
/// evaluator; returns the result as JSON text (compare with the case's `expect`).
#[cfg(feature = "vectors")]
#[pyfunction]
fn vector_eval(kind: &str, input: &str) -> PyResult<String> {
    let v: serde_json::Value =
        serde_json::from_str(input).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    Ok(eval::eval(kind, &v).to_string())
}

/// A value as JSON bytes by karlton's value model (refuses what would come back changed).
#[pyfunction]
fn encode_json<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    convert::encode_value(value).map(|b| pyo3::types::PyBytes::new(py, &b))
}

/// Whether JSON text nests at most the core's limit (128), the depth every reader takes.
#[pyfunction]
fn json_nesting_ok(data: &[u8]) -> bool {
    karlton_core::json::nesting_within_limit(data)
}

/// Where stored entry bytes stand at `now_ms` (default: now) under `policy` (default:
/// `Policy()`, for its `stale_if_error`): core's `entry::describe`, without the value. Raises
/// `ValueError` naming the defect on corrupt bytes.
#[pyfunction]
#[pyo3(signature = (data, *, now_ms = None, policy = None))]
fn describe_entry<'py>(
    py: Python<'py>,
    data: &[u8],
    now_ms: Option<&Bound<'py, PyAny>>,
    policy: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let now_ms = match now_ms.filter(|n| !n.is_none()) {
        Some(n) => Some(key::non_negative(n, "describe_entry(): `now_ms`")?),
        None => None,
    };
    let policy = match policy.filter(|p| !p.is_none()) {
        None => Arc::new(karlton_core::Policy::default()),
        Some(p) => {
            let native = p.getattr("_native").map_err(|_| convert::type_err("describe_entry(): policy must be a karlton.Policy", p))?;
            native.cast::<policy::PyPolicy>().map_err(|_| convert::type_err("describe_entry(): policy must be a karlton.Policy", p))?.get().inner.clone()
        }
    };
    let now = now_ms.unwrap_or_else(driver::now_ms);
    let i = karlton_core::entry::describe(data, now, &policy)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("describe_entry(): {e}")))?;
    let d = PyDict::new(py);
    d.set_item("freshness", i.freshness.name())?;
    d.set_item("soft_at", i.soft_at)?;
    d.set_item("hard_at", i.hard_at)?;
    d.set_item("usable_until", i.usable_until)?;
    d.set_item("load_ms", i.load_ms)?;
    d.set_item("version", i.version)?;
    d.set_item("negative", i.negative)?;
    d.set_item("codec", i.codec)?;
    d.set_item("value_len", i.value_len)?;
    d.set_item("generations", PyList::new(py, &i.generations)?)?;
    d.set_item("tags", PyList::new(py, &i.tags)?)?;
    Ok(d)
}

/// A duration in units of `unit_ms` ms as whole ms by the core's one rounding rule (half away
/// from zero); `None` if it is not a finite number >= 0 (above 2^40 ms the policy refuses it).
#[pyfunction]
fn duration_ms(value: f64, unit_ms: f64) -> Option<u64> {
    karlton_core::policy::duration_ms(value, unit_ms)
}

/// Wall-clock milliseconds (the drivers' clock).
#[pyfunction]
fn now_ms() -> u64 {
    driver::now_ms()
}

/// A store op (its vector JSON) as the script call the Redis adapters run: `((sha, numkeys,
/// *keys, *args), source)`, ready for `client.evalsha(*call)` (test support: store vectors on
/// a real Redis through redis-py).
#[cfg(feature = "vectors")]
#[pyfunction]
fn store_vector_call<'py>(py: Python<'py>, op: &str) -> PyResult<(Bound<'py, PyTuple>, &'static str)> {
    let op: karlton_core::store::StoreOp =
        serde_json::from_str(op).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let c = karlton_core::redis::encode_op(&op);
    let mut items: Vec<Bound<'py, PyAny>> = vec![
        pyo3::types::PyString::new(py, &c.script.sha1()).into_any(),
        c.keys.len().into_pyobject(py)?.into_any(),
    ];
    items.extend(c.keys.iter().map(|k| pyo3::types::PyString::new(py, k).into_any()));
    items.extend(c.args.iter().map(|a| PyBytes::new(py, a).into_any()));
    Ok((PyTuple::new(py, items)?, c.script.source))
}

/// The store reply (vector JSON) a script reply means for `op`: `reply` is the `RedisValue`
/// as serde JSON (`"Nil"`, `{"Int": n}`, `{"Bulk": [bytes]}`, `{"Array": [...]}`, ...).
#[cfg(feature = "vectors")]
#[pyfunction]
fn store_vector_reply(op: &str, reply: &str) -> PyResult<String> {
    let bad = |e: serde_json::Error| pyo3::exceptions::PyValueError::new_err(e.to_string());
    let op: karlton_core::store::StoreOp = serde_json::from_str(op).map_err(bad)?;
    let v: karlton_core::redis::RedisValue = serde_json::from_str(reply).map_err(bad)?;
    let r = karlton_core::redis::decode_reply(&op, v)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.message))?;
    serde_json::to_string(&r).map_err(bad)
}

#[pymodule]
fn _karlton(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<key::PyKey>()?;
    m.add_class::<policy::PyPolicy>()?;
    m.add_class::<policy::PyMemoryStore>()?;
    m.add_class::<driver::PyDriver>()?;
    m.add_class::<driver::PyCall>()?;
    m.add_function(wrap_pyfunction!(decode_entry, m)?)?;
    m.add_function(wrap_pyfunction!(redis_scripts, m)?)?;
    m.add_function(wrap_pyfunction!(params_hash, m)?)?;
    m.add_function(wrap_pyfunction!(duration_ms, m)?)?;
    m.add_function(wrap_pyfunction!(describe_entry, m)?)?;
    m.add_function(wrap_pyfunction!(encode_json, m)?)?;
    m.add_function(wrap_pyfunction!(keys_slot, m)?)?;
    m.add_function(wrap_pyfunction!(fast_read_slot, m)?)?;
    m.add_function(wrap_pyfunction!(now_ms, m)?)?;
    m.add_function(wrap_pyfunction!(json_nesting_ok, m)?)?;
    #[cfg(feature = "vectors")]
    m.add_function(wrap_pyfunction!(vector_eval, m)?)?;
    for (name, v) in [
        ("STORE", driver::STORE),
        ("FAST", driver::FAST),
        ("LOAD", driver::LOAD),
        ("AWAIT", driver::AWAIT),
        ("WAIT", driver::WAIT),
        ("JOIN", driver::JOIN),
        ("SERVE", driver::SERVE),
        ("ANSWER", driver::ANSWER),
        ("FINISHED", driver::FINISHED),
    ] {
        m.add(name, v)?;
    }
    #[cfg(feature = "vectors")]
    m.add_function(wrap_pyfunction!(store_vector_call, m)?)?;
    #[cfg(feature = "vectors")]
    m.add_function(wrap_pyfunction!(store_vector_reply, m)?)?;
    m.add("CODEC_RAW", karlton_core::entry::codec::RAW)?;
    m.add("CODEC_JSON", karlton_core::entry::codec::JSON)?;
    Ok(())
}
