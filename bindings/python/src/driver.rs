//! The native half of the drive loop.
//!
//! `Driver.read` runs a `GetOrLoad` from `start` through every store step it can run in-process
//! (the memory store) and answers the decoded value when the flow is done — a hit is one native
//! call. Anything else comes back as a `Flow` handle: the Python driver loads, sleeps, runs Redis
//! calls and feeds the results back, one `feed_*` call per step. Policy is never decided here:
//! this file only translates types and runs the core's state machines.

use crate::convert::json_to_py;
use crate::key::PyKey;
use crate::policy::{PyMemoryStore, PyPolicy};
use karlton_core::entry::codec;
use karlton_core::flow::{self, Write};
use karlton_core::redis::{RedisCall, RedisValue, decode_reply, encode_op, fast_read_commands, fast_read_result};
use karlton_core::{
    AtomicStats, FlowError, GetOrLoad, Input, InvalidateMode, Loaded, MemoryStore, Policy, Request,
    Served, Source, Stats, Step, StoreFailure, StoreOp, StoreReply,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Step kinds, as the Python driver sees them.
pub const STORE: u8 = 0;
/// Call the loader (or keep waiting for it).
pub const LOAD: u8 = 1;
/// Sleep, then `feed_timeout`.
pub const WAIT: u8 = 2;
/// Answer the caller now; the flow continues in the background.
pub const SERVE: u8 = 3;
/// Finished.
pub const DONE: u8 = 4;

/// Values at least this large are moved through the store with the GIL released.
const DETACH_BYTES: usize = 64 * 1024;

/// Wall-clock ms: the drivers' local clock and the memory store's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) enum Backend {
    Memory(Arc<MemoryStore>),
    /// Ops go back to Python as Redis script calls.
    Redis,
}

pub(crate) struct Shared {
    backend: Backend,
    policy: Arc<Policy>,
    stats: AtomicStats,
    seed: AtomicU64,
    /// store clock − local clock, learned from reads (for writes that do not read first).
    skew: AtomicI64,
    /// A user codec: (id, decode callable).
    codec: Option<(u8, Py<PyAny>)>,
}

impl Shared {
    fn next_seed(&self) -> u64 {
        self.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
    }

    fn learn(&self, r: &StoreReply) {
        if let StoreReply::Read(r) = r {
            self.skew.store(r.now_ms as i64 - now_ms() as i64, Ordering::Relaxed);
        }
    }

    fn decode(&self, py: Python<'_>, s: &Served) -> PyResult<Py<PyAny>> {
        if s.negative {
            return Ok(py.None());
        }
        match s.codec {
            codec::JSON => json_to_py(py, &s.value).map(Bound::unbind).map_err(|e| {
                error(py, "CodecError", format!("cached JSON value does not decode: {e}"))
            }),
            codec::RAW => Ok(PyBytes::new(py, &s.value).into_any().unbind()),
            c => match &self.codec {
                Some((id, dec)) if *id == c => dec.call1(py, (PyBytes::new(py, &s.value),)),
                _ => Err(error(py, "CodecError", format!("cached value has codec id {c}, which this cache does not know"))),
            },
        }
    }
}

/// An exception from `karlton._errors` (defined in Python so they can have several bases).
pub(crate) fn error(py: Python<'_>, name: &str, msg: String) -> PyErr {
    match py.import("karlton._errors").and_then(|m| m.getattr(name)) {
        Ok(cls) => match cls.call1((msg.clone(),)) {
            Ok(inst) => PyErr::from_value(inst),
            Err(e) => e,
        },
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(msg),
    }
}

fn store_failure_error(py: Python<'_>, e: FlowError) -> PyErr {
    error(py, "StoreError", e.to_string())
}

fn key_arg<'a, 'py>(key: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyKey>> {
    key.cast::<PyKey>().map_err(|_| {
        PyTypeError::new_err(format!(
            "key must be a karlton.Key, not {}",
            key.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })
}

fn tags_arg(tags: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(t) = tags.filter(|t| !t.is_none()) else { return Ok(Vec::new()) };
    if t.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("tags must be a list of str, not a str"));
    }
    let mut out = Vec::new();
    for item in t.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "tags must be a list of str, not {}",
            t.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })? {
        let item = item?;
        let Ok(s) = item.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "tags must be a list of str; found {}",
                item.get_type().name()?
            )));
        };
        out.push(s.to_str()?.to_owned());
    }
    Ok(out)
}

fn gen_keys(key: &PyKey, tags: &[String]) -> Vec<String> {
    let mut g = Vec::with_capacity(1 + tags.len());
    g.push(key.gen_key.clone());
    g.extend(tags.iter().map(|t| key.tag_key_str(t)));
    g
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Fresh => "fresh",
        Source::Stale => "stale",
        Source::Loaded => "loaded",
        Source::StaleOnError => "stale_on_error",
        Source::StaleOnTimeout => "stale_on_timeout",
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

/// A Python reply (redis-py, RESP2 shapes) as the core's `RedisValue`.
fn redis_value(v: &Bound<'_, PyAny>, depth: usize) -> RedisValue {
    if v.is_none() {
        RedisValue::Nil
    } else if let Ok(b) = v.cast::<PyBytes>() {
        RedisValue::Bulk(b.as_bytes().to_vec())
    } else if v.is_instance_of::<PyBool>() {
        RedisValue::Int(i64::from(v.is_truthy().unwrap_or(false)))
    } else if v.is_instance_of::<PyInt>() {
        v.extract::<i64>().map(RedisValue::Int).unwrap_or_else(|_| RedisValue::Error("integer reply out of range".into()))
    } else if let Ok(l) = v.cast::<PyList>() {
        if depth > 8 {
            return RedisValue::Error("reply nested too deep".into());
        }
        RedisValue::Array(l.iter().map(|x| redis_value(&x, depth + 1)).collect())
    } else if let Ok(t) = v.cast::<PyTuple>() {
        RedisValue::Array(t.iter().map(|x| redis_value(&x, depth + 1)).collect())
    } else if let Ok(s) = v.cast::<PyString>() {
        RedisValue::Status(s.to_string())
    } else if let Ok(b) = v.cast::<PyByteArray>() {
        RedisValue::Bulk(b.to_vec())
    } else if v.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        RedisValue::Error(v.str().map(|s| s.to_string()).unwrap_or_default())
    } else {
        RedisValue::Error(format!(
            "unexpected reply type {}",
            v.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    }
}

/// The fresh-hit fast read of `key` (core's `fast_read_commands`) as one RESP buffer, ready for
/// a connection's `send_packed_command`, and how many replies to read back.
fn fast_packed<'py>(py: Python<'py>, key: &str, gen_keys: &[String]) -> (Bound<'py, PyBytes>, usize) {
    let cmds = fast_read_commands(key, gen_keys);
    let mut out = Vec::with_capacity(96 + key.len() + gen_keys.iter().map(|g| g.len() + 16).sum::<usize>());
    for c in &cmds {
        out.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
        for a in c {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }
    (PyBytes::new(py, &out), cmds.len())
}

/// What the Python sender answered for a fast read: the replies (a list; error replies as
/// exceptions), or a `str` saying why the server could not be reached.
enum FastReply {
    Replies(Vec<RedisValue>),
    Failed(StoreFailure),
}

fn fast_reply(reply: &Bound<'_, PyAny>) -> PyResult<FastReply> {
    if let Ok(l) = reply.cast::<PyList>() {
        Ok(FastReply::Replies(l.iter().map(|x| redis_value(&x, 0)).collect()))
    } else if let Ok(s) = reply.cast::<PyString>() {
        Ok(FastReply::Failed(StoreFailure { message: s.to_str()?.to_owned() }))
    } else {
        Err(PyTypeError::new_err(format!(
            "fast read: expected a list of replies or a str, not {}",
            reply.get_type().name()?
        )))
    }
}

/// `(sha, numkeys, *keys, *args)`: ready for `client.evalsha(*call)`.
fn call_tuple<'py>(py: Python<'py>, c: &RedisCall) -> PyResult<Bound<'py, PyTuple>> {
    let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(2 + c.keys.len() + c.args.len());
    items.push(PyString::new(py, &c.script.sha1()).into_any());
    items.push(c.keys.len().into_pyobject(py)?.into_any());
    for k in &c.keys {
        items.push(PyString::new(py, k).into_any());
    }
    for a in &c.args {
        items.push(PyBytes::new(py, a).into_any());
    }
    PyTuple::new(py, items)
}

/// The native driver of one `Cache`/`AsyncCache`: backend, default policy, counters, codec.
#[pyclass(module = "karlton._karlton", name = "Driver", frozen)]
pub struct PyDriver {
    shared: Arc<Shared>,
    /// The Python driver's `_slow(flow, loader, key, tags, policy)`, for `get_or_load`.
    slow: std::sync::OnceLock<Py<PyAny>>,
    /// The sync Redis fast-read sender `(packed, n) -> replies | str`, for `get_or_load`.
    fast: std::sync::OnceLock<Py<PyAny>>,
}

impl PyDriver {
    /// Run the flow as far as it goes in-process: `Ok(value)` when done, else the flow.
    fn read_inner(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        tags: Option<&Bound<'_, PyAny>>,
        policy: Option<&PyPolicy>,
    ) -> PyResult<Result<Py<PyAny>, PyFlow>> {
        let key = key_arg(key)?.get();
        let policy_ref = policy.map_or(&self.shared.policy, |p| &p.inner);
        if let (Backend::Memory(m), None) = (&self.shared.backend, tags.filter(|t| !t.is_none())) {
            // Fresh hit: decided by the core without building a flow (one allocation).
            let gk = std::slice::from_ref(&key.gen_key);
            let hit = flow::fast_hit(m, now_ms(), &key.built, gk, policy_ref, self.shared.next_seed(), &self.shared.stats);
            if let Some(s) = hit {
                return self.shared.decode(py, &s).map(Ok);
            }
        }
        let req = request(key, tags)?;
        let policy = policy.map_or_else(|| self.shared.policy.clone(), |p| p.inner.clone());
        start_flow(&self.shared, py, req, policy, None)
    }

    /// The sync Redis `get_or_load` start: the fast read through the installed sender, then
    /// (not a clean fresh hit) the flow.
    fn read_fast(
        &self,
        py: Python<'_>,
        fast: &Py<PyAny>,
        key: &Bound<'_, PyAny>,
        tags: Option<&Bound<'_, PyAny>>,
        policy: Option<&PyPolicy>,
    ) -> PyResult<Result<Py<PyAny>, PyFlow>> {
        let req = request(key_arg(key)?.get(), tags)?;
        let (packed, n) = fast_packed(py, &req.key, &req.gen_keys);
        let reply = fast.bind(py).call1((packed, n))?;
        let policy = policy.map_or(&self.shared.policy, |p| &p.inner);
        finish_fast(&self.shared, py, req, policy, &reply)
    }
}

fn request(key: &PyKey, tags: Option<&Bound<'_, PyAny>>) -> PyResult<Request> {
    Ok(match tags.filter(|t| !t.is_none()) {
        None => Request { key: key.built.clone(), gen_keys: vec![key.gen_key.clone()], tags: Vec::new() },
        Some(t) => {
            let tags = tags_arg(Some(t))?;
            Request { key: key.built.clone(), gen_keys: gen_keys(key, &tags), tags }
        }
    })
}

/// Start a `GetOrLoad`, run it as far as it goes in-process: `Ok(value)` when done, else the
/// flow. `failed`: the fast read could not reach the store — handed to the flow's first read
/// instead of trying again, so a down store costs one timeout, not two.
fn start_flow(
    shared: &Arc<Shared>,
    py: Python<'_>,
    req: Request,
    policy: Arc<Policy>,
    failed: Option<StoreFailure>,
) -> PyResult<Result<Py<PyAny>, PyFlow>> {
    let mut flow = GetOrLoad::new(req, policy, shared.next_seed());
    let now = now_ms();
    let mut step = flow.start(now);
    if let Some(e) = failed {
        step = flow.handle(now, Input::StoreFailed(e));
    }
    if let Backend::Memory(m) = &shared.backend {
        step = flow.run_store_steps(now, step, |op| Ok(m.apply(now, op)));
    }
    if let Step::Done(Ok(s)) = &step {
        shared.stats.add(flow.stats());
        return shared.decode(py, s).map(Ok);
    }
    Ok(Err(PyFlow::new(shared.clone(), flow, step)))
}

/// Interpret a fast read's replies (the core decides): the value on a clean fresh hit, else the
/// flow (the `read` script), told about the failure if the store could not be reached.
fn finish_fast(
    shared: &Arc<Shared>,
    py: Python<'_>,
    req: Request,
    policy: &Arc<Policy>,
    reply: &Bound<'_, PyAny>,
) -> PyResult<Result<Py<PyAny>, PyFlow>> {
    match fast_reply(reply)? {
        FastReply::Replies(v) => match fast_read_result(&v, policy, shared.next_seed(), &shared.stats) {
            Some(s) => shared.decode(py, &s).map(Ok),
            None => start_flow(shared, py, req, policy.clone(), None),
        },
        FastReply::Failed(e) => start_flow(shared, py, req, policy.clone(), Some(e)),
    }
}

fn policy_arg<'py>(policy: Option<&Bound<'py, PyAny>>) -> PyResult<Option<Bound<'py, PyPolicy>>> {
    let Some(p) = policy.filter(|p| !p.is_none()) else { return Ok(None) };
    if let Ok(n) = p.cast::<PyPolicy>() {
        return Ok(Some(n.clone()));
    }
    match p.getattr("_native").ok().and_then(|n| n.cast_into::<PyPolicy>().ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(PyTypeError::new_err(format!(
            "policy must be a karlton.Policy, not {}",
            p.get_type().name()?
        ))),
    }
}

#[pymethods]
impl PyDriver {
    /// `store` is a `MemoryStore`, or `None` for Redis (ops come back as script calls).
    #[new]
    #[pyo3(signature = (store, policy, codec_id = None, codec_decode = None))]
    fn new(
        store: Option<PyRef<'_, PyMemoryStore>>,
        policy: PyRef<'_, PyPolicy>,
        codec_id: Option<u8>,
        codec_decode: Option<Py<PyAny>>,
    ) -> PyResult<PyDriver> {
        let backend = match store {
            Some(s) => Backend::Memory(s.inner.clone()),
            None => Backend::Redis,
        };
        let codec = match (codec_id, codec_decode) {
            (Some(id), Some(d)) => {
                if id < codec::USER_START {
                    return Err(PyValueError::new_err(format!(
                        "codec id must be in {}..=255 (user range), got {id}",
                        codec::USER_START
                    )));
                }
                Some((id, d))
            }
            _ => None,
        };
        let seed = now_ms().rotate_left(20)
            ^ u64::from(std::process::id()).rotate_left(44)
            ^ (Arc::as_ptr(&policy.inner) as u64);
        Ok(PyDriver {
            shared: Arc::new(Shared {
                backend,
                policy: policy.inner.clone(),
                stats: AtomicStats::default(),
                seed: AtomicU64::new(seed),
                skew: AtomicI64::new(0),
                codec,
            }),
            slow: std::sync::OnceLock::new(),
            fast: std::sync::OnceLock::new(),
        })
    }

    /// Start `get_or_load`: the decoded value if the flow finished in-process (a hit), else a
    /// `Flow` to drive.
    #[pyo3(signature = (key, tags = None, policy = None))]
    fn read(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        tags: Option<&Bound<'_, PyAny>>,
        policy: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let policy = policy_arg(policy)?;
        match self.read_inner(py, key, tags, policy.as_ref().map(|p| p.get()))? {
            Ok(v) => Ok(v),
            Err(f) => Ok(Py::new(py, f)?.into_any()),
        }
    }

    /// Install the Python slow path used by `get_or_load` (once).
    fn set_slow(&self, slow: Py<PyAny>) -> PyResult<()> {
        self.slow.set(slow).map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("set_slow(): already set"))
    }

    /// The whole sync `get_or_load` hit in one native call; anything else goes to the slow path
    /// installed with `set_slow`.
    #[pyo3(signature = (key, loader, *, tags = None, policy = None))]
    fn get_or_load(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        loader: &Bound<'_, PyAny>,
        tags: Option<&Bound<'_, PyAny>>,
        policy: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let policy = policy_arg(policy)?;
        let pol = policy.as_ref().map(|p| p.get());
        let r = match self.fast.get() {
            Some(fast) => self.read_fast(py, fast, key, tags, pol)?,
            None => self.read_inner(py, key, tags, pol)?,
        };
        match r {
            Ok(v) => Ok(v),
            Err(f) => {
                let slow = self.slow.get().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no slow path installed"))?;
                let f = Py::new(py, f)?;
                let tags = tags.map_or_else(|| py.None(), |t| t.clone().unbind());
                let pn = policy.map_or_else(|| py.None(), |p| p.into_any().unbind());
                slow.call1(py, (f, loader, key, tags, pn))
            }
        }
    }

    /// Install the sync Redis fast-read sender used by `get_or_load` (once):
    /// `fast(packed, n)` sends the RESP buffer, reads `n` replies and answers them as a list
    /// (error replies as exceptions), or a `str` if the server could not be reached.
    fn set_fast(&self, fast: Py<PyAny>) -> PyResult<()> {
        if matches!(self.shared.backend, Backend::Memory(_)) {
            return Err(PyValueError::new_err("set_fast(): the memory store has no fast read"));
        }
        self.fast.set(fast).map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("set_fast(): already set"))
    }

    /// Start `get_or_load` on Redis with the fast read: a `FastRead` whose `packed` buffer the
    /// caller sends (reading `n` replies) and whose `finish` answers like `read`.
    #[pyo3(signature = (key, tags = None, policy = None))]
    fn fast_read(
        &self,
        key: &Bound<'_, PyAny>,
        tags: Option<&Bound<'_, PyAny>>,
        policy: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyFastRead> {
        if matches!(self.shared.backend, Backend::Memory(_)) {
            return Err(PyValueError::new_err("fast_read(): the memory store has no fast read"));
        }
        let policy = policy_arg(policy)?.map_or_else(|| self.shared.policy.clone(), |p| p.get().inner.clone());
        let req = request(key_arg(key)?.get(), tags)?;
        Ok(PyFastRead { shared: self.shared.clone(), req: Some(req), policy })
    }

    /// A plain read (no lease, no load). The `Op`'s result is the value or `default`.
    #[pyo3(signature = (key, tags = None))]
    fn get(&self, py: Python<'_>, key: &Bound<'_, PyAny>, tags: Option<&Bound<'_, PyAny>>) -> PyResult<PyOp> {
        let key = key_arg(key)?.get();
        let tags = tags_arg(tags)?;
        let op = flow::get_op(&key.built, &gen_keys(key, &tags));
        PyOp::start(py, self.shared.clone(), op, OpKind::Get)
    }

    /// Write-through: an authoritative fill that never lowers a version.
    #[pyo3(signature = (key, value, codec_id, version = None, tags = None, policy = None))]
    #[allow(clippy::too_many_arguments)]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &[u8],
        codec_id: u8,
        version: Option<&Bound<'_, PyAny>>,
        tags: Option<&Bound<'_, PyAny>>,
        policy: Option<PyRef<'_, PyPolicy>>,
    ) -> PyResult<PyOp> {
        let key = key_arg(key)?.get();
        let tags = tags_arg(tags)?;
        let version = match version.filter(|v| !v.is_none()) {
            None => None,
            Some(v) if v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>() => Some(
                v.extract::<u64>()
                    .ok()
                    .filter(|&n| n < (1 << 53))
                    .ok_or_else(|| PyValueError::new_err(format!("version must be an int in 0..2**53, got {v}")))?,
            ),
            Some(v) => {
                return Err(PyTypeError::new_err(format!("version must be an int, not {}", v.get_type().name()?)));
            }
        };
        let w = Write {
            key: key.built.clone(),
            gen_keys: gen_keys(key, &tags),
            tags,
            value: value.into(),
            codec: codec_id,
            version,
        };
        let policy = policy.map_or_else(|| self.shared.policy.clone(), |p| p.inner.clone());
        let store_now = now_ms().saturating_add_signed(self.shared.skew.load(Ordering::Relaxed));
        let op = flow::set_op(&w, &policy, store_now, self.shared.next_seed());
        PyOp::start(py, self.shared.clone(), op, OpKind::Set)
    }

    /// Delete (`mode="delete"`) or mark stale (`mode="stale"`); revokes the lease.
    #[pyo3(signature = (key, mode = "delete"))]
    fn invalidate(&self, py: Python<'_>, key: &Bound<'_, PyAny>, mode: &str) -> PyResult<PyOp> {
        let key = key_arg(key)?.get();
        let mode = match mode {
            "delete" => InvalidateMode::Delete,
            "stale" => InvalidateMode::MarkStale,
            m => return Err(PyValueError::new_err(format!("mode must be \"delete\" or \"stale\", got {m:?}"))),
        };
        PyOp::start(py, self.shared.clone(), flow::invalidate_op(&key.built, mode), OpKind::Invalidate)
    }

    /// Move a generation counter (namespace or tag) to a new value.
    fn bump(&self, py: Python<'_>, gen_key: &str) -> PyResult<PyOp> {
        let op = flow::bump_op(gen_key, self.shared.next_seed());
        PyOp::start(py, self.shared.clone(), op, OpKind::Bump)
    }

    /// A snapshot of the counters as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut s = self.shared.stats.snapshot();
        if let Backend::Memory(m) = &self.shared.backend {
            s.evictions = m.evictions();
        }
        let d = PyDict::new(py);
        for (k, v) in s.fields() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Add counts the Python driver observed itself (e.g. `store_errors`).
    fn count(&self, field: &str, n: u64) -> PyResult<()> {
        let mut s = Stats::default();
        match field {
            "store_errors" => s.store_errors = n,
            "load_errors" => s.load_errors = n,
            "fills_rejected" => s.fills_rejected = n,
            f => return Err(PyValueError::new_err(format!("unknown counter {f:?}"))),
        }
        self.shared.stats.add(&s);
        Ok(())
    }
}

/// One `get_or_load` in progress. See the module docs of `karlton._karlton`.
#[pyclass(module = "karlton._karlton", name = "Flow")]
pub struct PyFlow {
    shared: Arc<Shared>,
    flow: GetOrLoad,
    step: Step,
    call: Option<RedisCall>,
    counted: bool,
}

impl PyFlow {
    fn new(shared: Arc<Shared>, flow: GetOrLoad, step: Step) -> PyFlow {
        let mut f = PyFlow { shared, flow, step: Step::Done(Err(FlowError::Protocol("unset".into()))), call: None, counted: false };
        f.set_step(step);
        f
    }

    fn set_step(&mut self, step: Step) {
        self.call = match (&step, &self.shared.backend) {
            (Step::Store(op), Backend::Redis) => Some(encode_op(op)),
            _ => None,
        };
        if matches!(step, Step::Done(_)) {
            self.count();
        }
        self.step = step;
    }

    fn count(&mut self) {
        if !self.counted {
            self.counted = true;
            self.shared.stats.add(self.flow.stats());
        }
    }

    fn advance(&mut self, py: Python<'_>, input: Input, big: bool) {
        let shared = self.shared.clone();
        let flow = &mut self.flow;
        let run = move || {
            let now = now_ms();
            let step = flow.handle(now, input);
            match &shared.backend {
                Backend::Memory(m) => flow.run_store_steps(now, step, |op| Ok(m.apply(now, op))),
                Backend::Redis => step,
            }
        };
        let step = if big { py.detach(run) } else { run() };
        self.set_step(step);
    }

    fn expect(&self, kinds: &[u8], what: &str) -> PyResult<()> {
        if kinds.contains(&self.kind()) {
            Ok(())
        } else {
            Err(pyo3::exceptions::PyRuntimeError::new_err(format!("{what}: the flow is not at that step (kind {})", self.kind())))
        }
    }
}

impl Drop for PyFlow {
    fn drop(&mut self) {
        self.count();
    }
}

#[pymethods]
impl PyFlow {
    /// STORE, LOAD, WAIT, SERVE or DONE.
    #[getter]
    fn kind(&self) -> u8 {
        match self.step {
            Step::Store(_) => STORE,
            Step::Load { .. } => LOAD,
            Step::Wait { .. } => WAIT,
            Step::Serve(_) => SERVE,
            Step::Done(_) => DONE,
        }
    }

    /// The built entry key.
    #[getter]
    fn key(&self) -> &str {
        &self.flow.request().key
    }

    /// Whether this flow holds the key's lease.
    #[getter]
    fn has_lease(&self) -> bool {
        self.flow.token().is_some()
    }

    /// LOAD: seconds until the load deadline (`None` = no deadline).
    #[getter]
    fn timeout(&self) -> Option<f64> {
        match self.step {
            Step::Load { timeout_at: Some(t) } => Some(t.saturating_sub(now_ms()) as f64 / 1000.0),
            _ => None,
        }
    }

    /// WAIT: seconds to sleep before `feed_timeout`.
    #[getter]
    fn delay(&self) -> f64 {
        match self.step {
            Step::Wait { until_ms } => until_ms.saturating_sub(now_ms()) as f64 / 1000.0,
            _ => 0.0,
        }
    }

    /// STORE (Redis): `(sha, numkeys, *keys, *args)` for `evalsha`.
    #[getter]
    fn call<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.call.as_ref().map(|c| call_tuple(py, c)).transpose()
    }

    /// STORE (Redis): the Lua source of the script `call` names (for the NOSCRIPT fallback).
    #[getter]
    fn source(&self) -> Option<&'static str> {
        self.call.as_ref().map(|c| c.script.source)
    }

    /// Feed the store's reply (Redis: the raw `evalsha` result, or the error-reply exception).
    fn feed_reply(&mut self, py: Python<'_>, reply: &Bound<'_, PyAny>) -> PyResult<()> {
        self.expect(&[STORE], "feed_reply")?;
        let Step::Store(op) = &self.step else { unreachable!() };
        let input = match decode_reply(op, redis_value(reply, 0)) {
            Ok(r) => {
                self.shared.learn(&r);
                Input::Store(r)
            }
            Err(e) => Input::StoreFailed(e),
        };
        self.advance(py, input, false);
        Ok(())
    }

    /// Feed a store failure (connection lost, timeout…).
    fn feed_store_error(&mut self, py: Python<'_>, message: String) -> PyResult<()> {
        self.expect(&[STORE], "feed_store_error")?;
        self.advance(py, Input::StoreFailed(StoreFailure { message }), false);
        Ok(())
    }

    /// Feed the loader's encoded result.
    #[pyo3(signature = (value, codec_id, negative = false, version = None))]
    fn feed_loaded(&mut self, py: Python<'_>, value: &[u8], codec_id: u8, negative: bool, version: Option<u64>) -> PyResult<()> {
        self.expect(&[LOAD], "feed_loaded")?;
        let big = value.len() >= DETACH_BYTES;
        let l = Loaded { value: value.into(), codec: codec_id, negative, version };
        self.advance(py, Input::Loaded(l), big);
        Ok(())
    }

    /// Feed a loader failure (message for humans).
    fn feed_load_failed(&mut self, py: Python<'_>, message: String) -> PyResult<()> {
        self.expect(&[LOAD], "feed_load_failed")?;
        self.advance(py, Input::LoadFailed(message), false);
        Ok(())
    }

    /// A WAIT deadline or a LOAD timeout passed.
    fn feed_timeout(&mut self, py: Python<'_>) -> PyResult<()> {
        self.expect(&[WAIT, LOAD], "feed_timeout")?;
        self.advance(py, Input::Timeout, false);
        Ok(())
    }

    /// Resume after SERVE.
    fn feed_continue(&mut self, py: Python<'_>) -> PyResult<()> {
        self.expect(&[SERVE], "feed_continue")?;
        self.advance(py, Input::Continue, false);
        Ok(())
    }

    /// SERVE / DONE(ok): the decoded value.
    fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.step {
            Step::Serve(s) | Step::Done(Ok(s)) => self.shared.decode(py, s),
            _ => Err(pyo3::exceptions::PyRuntimeError::new_err("value(): no value at this step")),
        }
    }

    /// SERVE / DONE(ok): the value as a handle that decodes a fresh copy on each `value()` (for
    /// single-flight followers: every caller gets its own object).
    fn served(&self) -> PyResult<PyServed> {
        match &self.step {
            Step::Serve(s) | Step::Done(Ok(s)) => Ok(PyServed { shared: self.shared.clone(), served: s.clone() }),
            _ => Err(pyo3::exceptions::PyRuntimeError::new_err("served(): no value at this step")),
        }
    }

    /// SERVE / DONE(ok): where the value came from (`fresh`, `stale`, `loaded`, …).
    #[getter]
    fn source_kind(&self) -> Option<&'static str> {
        match &self.step {
            Step::Serve(s) | Step::Done(Ok(s)) => Some(source_name(s.source)),
            _ => None,
        }
    }

    /// DONE(err): `(kind, message)`; kind is load, load_timeout, lock_timeout, store, protocol.
    #[getter]
    fn error(&self) -> Option<(&'static str, String)> {
        match &self.step {
            Step::Done(Err(e)) => Some((flow_error_kind(e), e.to_string())),
            _ => None,
        }
    }

    /// Stop here (a follower of another caller's load): count what this flow saw.
    fn abandon(&mut self) {
        self.count();
    }
}

/// A served value, decoded anew by each `value()` call.
#[pyclass(module = "karlton._karlton", name = "Served", frozen)]
pub struct PyServed {
    shared: Arc<Shared>,
    served: Served,
}

#[pymethods]
impl PyServed {
    /// A freshly decoded copy of the value (`None` for a cached "not found").
    fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.shared.decode(py, &self.served)
    }

    /// Where the value came from.
    #[getter]
    fn source_kind(&self) -> &'static str {
        source_name(self.served.source)
    }

    /// Whether the value is (now) in the store.
    #[getter]
    fn cached(&self) -> bool {
        self.served.cached
    }
}

/// A `get_or_load` started with the Redis fast read (for drivers that send it themselves, e.g.
/// asyncio): send `command`, then `finish` with the replies.
#[pyclass(module = "karlton._karlton", name = "FastRead")]
pub struct PyFastRead {
    shared: Arc<Shared>,
    req: Option<Request>,
    policy: Arc<Policy>,
}

#[pymethods]
impl PyFastRead {
    /// `(packed, n)`: the RESP buffer to send in one write, and how many replies to read.
    #[getter]
    fn command<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        let req = self.req.as_ref().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("command: already finished"))?;
        Ok(fast_packed(py, &req.key, &req.gen_keys))
    }

    /// Feed the replies (a list, error replies as exceptions) or a `str` (the server could not
    /// be reached): the decoded value on a clean fresh hit, else a `Flow` to drive (already
    /// told about the failure). Once.
    fn finish(&mut self, py: Python<'_>, reply: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let req = self.req.take().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("finish(): already finished"))?;
        match finish_fast(&self.shared, py, req, &self.policy, reply)? {
            Ok(v) => Ok(v),
            Err(f) => Ok(Py::new(py, f)?.into_any()),
        }
    }
}

enum OpKind {
    Get,
    Set,
    Invalidate,
    Bump,
}

/// One write-path op (`get`, `set`, `invalidate`, `bump`): done at once on the memory store,
/// or a Redis call for Python to run.
#[pyclass(module = "karlton._karlton", name = "Op")]
pub struct PyOp {
    shared: Arc<Shared>,
    op: StoreOp,
    kind: OpKind,
    call: Option<RedisCall>,
    reply: Option<Result<StoreReply, StoreFailure>>,
    /// A `get` answered by the fast read (already counted).
    served: Option<Served>,
}

impl PyOp {
    fn start(py: Python<'_>, shared: Arc<Shared>, op: StoreOp, kind: OpKind) -> PyResult<PyOp> {
        let (call, reply) = match &shared.backend {
            Backend::Memory(m) => {
                let big = matches!(&op, StoreOp::Fill { entry, .. } if entry.len() >= DETACH_BYTES);
                let run = || m.apply(now_ms(), &op);
                (None, Some(Ok(if big { py.detach(run) } else { run() })))
            }
            Backend::Redis => (Some(encode_op(&op)), None),
        };
        Ok(PyOp { shared, op, kind, call, reply, served: None })
    }
}

#[pymethods]
impl PyOp {
    /// Whether the op still needs a store reply.
    #[getter]
    fn pending(&self) -> bool {
        self.reply.is_none() && self.served.is_none()
    }

    /// A pending Redis `get`: `(packed, n)` of the fast read to try first (`feed_fast`), else
    /// `None`.
    #[getter]
    fn fast<'py>(&self, py: Python<'py>) -> Option<(Bound<'py, PyBytes>, usize)> {
        match (&self.kind, &self.op, &self.call, self.pending()) {
            (OpKind::Get, StoreOp::Read { key, gen_keys, .. }, Some(_), true) => Some(fast_packed(py, key, gen_keys)),
            _ => None,
        }
    }

    /// Feed the fast read's replies (or a `str`: the server could not be reached). A clean
    /// fresh hit, or the failure, completes the op; otherwise it stays `pending` (run `call`).
    fn feed_fast(&mut self, reply: &Bound<'_, PyAny>) -> PyResult<()> {
        match fast_reply(reply)? {
            FastReply::Replies(v) => {
                self.served = fast_read_result(&v, &self.shared.policy, self.shared.next_seed(), &self.shared.stats);
            }
            FastReply::Failed(e) => self.reply = Some(Err(e)),
        }
        Ok(())
    }

    /// `(sha, numkeys, *keys, *args)` for `evalsha`.
    #[getter]
    fn call<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.call.as_ref().map(|c| call_tuple(py, c)).transpose()
    }

    /// The Lua source of the script `call` names.
    #[getter]
    fn source(&self) -> Option<&'static str> {
        self.call.as_ref().map(|c| c.script.source)
    }

    /// Feed the raw reply.
    fn feed_reply(&mut self, reply: &Bound<'_, PyAny>) {
        let r = decode_reply(&self.op, redis_value(reply, 0));
        if let Ok(r) = &r {
            self.shared.learn(r);
        }
        self.reply = Some(r);
    }

    /// Feed a store failure.
    fn feed_store_error(&mut self, message: String) {
        self.reply = Some(Err(StoreFailure { message }));
    }

    /// The result: `get` → value or `default`; `set` → stored?; `invalidate` → existed?;
    /// `bump` → new generation. Store failures raise `StoreError` (a `get` answers `default`
    /// unless the policy says `on_store_error="error"`).
    #[pyo3(signature = (default = None))]
    fn result(&mut self, py: Python<'_>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let default = default.unwrap_or_else(|| py.None());
        if let Some(s) = &self.served {
            return self.shared.decode(py, s);
        }
        let Some(reply) = self.reply.clone() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("result(): no reply yet"));
        };
        let mut stats = Stats::default();
        let out = match (&self.kind, reply) {
            (OpKind::Get, Ok(StoreReply::Read(r))) => match flow::get_result(&r, &mut stats) {
                Some(s) => self.shared.decode(py, &s),
                None => Ok(default),
            },
            (OpKind::Get, Err(e)) => match flow::get_on_store_error(&self.shared.policy, e, &mut stats) {
                Ok(_) => Ok(default),
                Err(e) => Err(store_failure_error(py, e)),
            },
            (OpKind::Set, Ok(StoreReply::Stored)) => Ok(PyBool::new(py, true).to_owned().into_any().unbind()),
            (OpKind::Set, Ok(StoreReply::Rejected { .. })) => {
                stats.fills_rejected += 1;
                Ok(PyBool::new(py, false).to_owned().into_any().unbind())
            }
            (OpKind::Invalidate, Ok(StoreReply::Invalidated { existed })) => {
                Ok(PyBool::new(py, existed).to_owned().into_any().unbind())
            }
            (OpKind::Bump, Ok(StoreReply::Bumped { generation })) => Ok(generation.into_pyobject(py)?.into_any().unbind()),
            (_, Err(e)) => {
                stats.store_errors += 1;
                Err(store_failure_error(py, FlowError::Store(e.message)))
            }
            (_, Ok(other)) => Err(error(py, "KarltonError", format!("unexpected store reply {other:?}"))),
        };
        self.shared.stats.add(&stats);
        out
    }
}
