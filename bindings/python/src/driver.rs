//! The native half of the Python drivers: one core [`Coordinator`] per `Cache`/`AsyncCache`.
//!
//! Everything that involves several callers in one process — who leads a key's load, who joins
//! it, what a joiner gets, C5 after a write, background refresh after a stale serve, seeds,
//! skew and every counter — is decided by the core's coordinator, exactly as in Rust, Node and
//! WASM. This file translates types, runs memory-store ops in-process, decodes values, and
//! hands a `Call` to the Python driver for what only Python can do: run a loader, sleep, wait
//! for another caller, talk to Redis. A fresh hit is one native call.
//!
//! Locking: one `Mutex` around the coordinator, held only while it decides (pure Rust, the GIL
//! held, never released inside), never across IO, a loader, a decode or a Python callback.

use crate::convert::{is_int, json_to_py, type_err};
use crate::key::PyKey;
use crate::policy::{PyMemoryStore, PyPolicy};
use karlton_core::coordinator::Answer;
use karlton_core::entry::codec;
use karlton_core::flow::Write;
use karlton_core::redis::{RedisCall, RedisValue, decode_reply, encode_op, fast_read_commands};
use karlton_core::{
    Action, CallId, Coordinator, Counters, Event, FlightId, FlowError, Input, InvalidateMode, Loaded,
    MemoryStore, Op, Policy, Reply, Request, Served, Source, StoreFailure, StoreOp, Ticket,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What a `Call` needs from Python next (its `kind`).
/// Run `call` (an `evalsha`) and `feed_reply` / `feed_store_error`.
pub const STORE: u8 = 0;
/// Send `packed` (the Redis fast read) and `feed_fast` the replies.
pub const FAST: u8 = 1;
/// Start the loader, then `feed_loaded` / `feed_load_failed`, or `feed_timeout` after `timeout`.
pub const LOAD: u8 = 2;
/// The loader started earlier still runs: keep awaiting it (as for LOAD).
pub const AWAIT: u8 = 3;
/// Sleep `delay` seconds, then `feed_timeout`.
pub const WAIT: u8 = 4;
/// Another caller loads this key: `wait()` (threads) or `on_wake(cb)` (asyncio), then `joined()`.
pub const JOIN: u8 = 5;
/// Answer the caller with `value()` now, `feed_continue()`, and drive the rest in the background.
pub const SERVE: u8 = 6;
/// The call is over: `outcome()` / `result()`.
pub const ANSWER: u8 = 7;
/// Background work after SERVE ended (`bg_error` says whether it failed).
pub const FINISHED: u8 = 8;

/// Values at least this large are moved through the memory store with the GIL released.
const DETACH_BYTES: usize = 64 * 1024;

/// Wall-clock ms: the drivers' local clock and the memory store's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A seed from the operating system's random source (never the clock or an address: caches
/// built together must not draw the same jitter and XFetch sequence).
fn os_seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(now_ms())
    })
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

fn key_arg<'a, 'py>(key: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyKey>> {
    key.cast::<PyKey>().map_err(|_| type_err("key must be a karlton.Key", key))
}

fn tags_arg(tags: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(t) = tags.filter(|t| !t.is_none()) else { return Ok(Vec::new()) };
    if t.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("tags must be a list of str, not a str"));
    }
    let mut out = Vec::new();
    for (i, item) in t.try_iter().map_err(|_| type_err("tags must be a list of str", t))?.enumerate() {
        let item = item?;
        let Ok(s) = item.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "tags must be a list of str; found {}",
                item.get_type().name()?
            )));
        };
        out.push(crate::convert::utf8(s, &format!("tags[{i}]"))?.to_owned());
    }
    Ok(out)
}

fn gen_keys(key: &PyKey, tags: &[String]) -> Vec<String> {
    let mut g = Vec::with_capacity(1 + tags.len());
    g.extend_from_slice(key.gen_keys());
    g.extend(tags.iter().map(|t| key.inner.tag_key(t)));
    g
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

fn policy_arg<'py>(policy: Option<&Bound<'py, PyAny>>) -> PyResult<Option<Bound<'py, PyPolicy>>> {
    let Some(p) = policy.filter(|p| !p.is_none()) else { return Ok(None) };
    if let Ok(n) = p.cast::<PyPolicy>() {
        return Ok(Some(n.clone()));
    }
    match p.getattr("_native").ok().and_then(|n| n.cast_into::<PyPolicy>().ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(type_err("policy must be a karlton.Policy", p)),
    }
}

/// A flight's wake-up, shared by its joiners: a flag and condvar for threads, callbacks for
/// asyncio, and the leader's loader exception (joiners re-raise the original).
#[derive(Default)]
struct Waiter {
    state: Mutex<WaiterState>,
    cv: Condvar,
}

#[derive(Default)]
struct WaiterState {
    woken: bool,
    callbacks: Vec<Py<PyAny>>,
    exc: Option<Py<PyAny>>,
}

impl Waiter {
    fn lock(&self) -> MutexGuard<'_, WaiterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fire(&self, py: Python<'_>, exc: Option<Py<PyAny>>) {
        let callbacks = {
            let mut s = self.lock();
            s.woken = true;
            if exc.is_some() {
                s.exc = exc;
            }
            std::mem::take(&mut s.callbacks)
        };
        self.cv.notify_all();
        for cb in callbacks {
            if let Err(e) = cb.call0(py) {
                e.write_unraisable(py, Some(cb.bind(py)));
            }
        }
    }
}

struct State {
    coord: Coordinator,
    /// One per flight that has joiners; removed when its `Wake` is fired.
    waiters: HashMap<FlightId, Arc<Waiter>>,
}

/// One cache's native state.
pub(crate) struct Host {
    memory: Option<Arc<MemoryStore>>,
    policy: Arc<Policy>,
    counters: Arc<Counters>,
    state: Mutex<State>,
    /// A user codec: (id, decode callable).
    codec: Option<(u8, Py<PyAny>)>,
}

/// What a decision left to do once the lock is released.
#[derive(Default)]
struct Fired {
    wake: Vec<(FlightId, Arc<Waiter>)>,
    bg: Option<FlowError>,
}

impl Host {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the coordinator under the lock; drain the events it produced.
    fn decide<R>(&self, f: impl FnOnce(&mut State) -> R) -> (R, Fired) {
        let mut st = self.lock();
        let r = f(&mut st);
        let mut fired = Fired::default();
        while let Some(e) = st.coord.poll_event() {
            match e {
                Event::Wake { flight } => {
                    if let Some(w) = st.waiters.remove(&flight) {
                        fired.wake.push((flight, w));
                    }
                }
                Event::BackgroundError { error, .. } => fired.bg = Some(error),
            }
        }
        (r, fired)
    }

    /// The value of `s` for one caller (a fresh object each time), or the decode error.
    fn decode(&self, py: Python<'_>, s: &Served) -> PyResult<Py<PyAny>> {
        if s.negative {
            return Ok(py.None());
        }
        match s.codec {
            codec::JSON => json_to_py(py, &s.value)
                .map(Bound::unbind)
                .map_err(|e| error(py, "CodecError", format!("cached JSON value does not decode: {e}"))),
            codec::RAW => Ok(PyBytes::new(py, &s.value).into_any().unbind()),
            c => match &self.codec {
                Some((id, dec)) if *id == c => dec.call1(py, (PyBytes::new(py, &s.value),)),
                _ => Err(error(py, "CodecError", format!("cached value has codec id {c}, which this cache does not know"))),
            },
        }
    }

    /// The memory store's fresh hit (lock-free, counted by the core) as this caller's own
    /// object: a JSON or raw value is decoded once per stored entry and kept with it
    /// ([`Decoded`]); each caller gets [`own_copy`] of it. `Err`: the value does not decode.
    fn memory_hit(&self, py: Python<'_>, key: &str, gk: &[String], policy: &Policy) -> PyResult<Option<Result<Py<PyAny>, Served>>> {
        let Some(m) = &self.memory else { return Ok(None) };
        let Some(hit) = self.counters.memory_hit_memo(m, now_ms(), key, gk, policy) else { return Ok(None) };
        if let Some(d) = hit.memo.as_deref().and_then(|m| m.downcast_ref::<Decoded>()) {
            return Ok(Some(Ok(d.own_copy(py)?.unbind())));
        }
        let s = hit.served();
        let Ok(v) = self.decode(py, &s) else { return Ok(Some(Err(s))) };
        if s.negative || !matches!(s.codec, codec::JSON | codec::RAW) {
            return Ok(Some(Ok(v))); // a user codec's objects are its own: decoded per hit
        }
        let d = Decoded::new(v.into_bound(py));
        let mine = d.own_copy(py)?.unbind();
        m.attach_memo(key, &hit.entry, Arc::new(d));
        Ok(Some(Ok(mine)))
    }

    /// Run a memory-store op (outside the coordinator's lock; big values without the GIL).
    fn apply(&self, py: Python<'_>, m: &MemoryStore, op: &StoreOp) -> karlton_core::StoreReply {
        let big = matches!(op, StoreOp::Fill { entry, .. } if entry.len() >= DETACH_BYTES);
        if big { py.detach(|| m.apply(now_ms(), op)) } else { m.apply(now_ms(), op) }
    }
}

/// A cached value decoded once, kept with its memory-store entry (the core's `Memo`: it goes
/// when the entry is replaced, deleted or evicted). Never handed out itself: each caller gets
/// [`Decoded::own_copy`]. `inner` lists the dicts and lists inside a dict or a list, so a copy
/// touches only those, not every leaf.
struct Decoded {
    value: Py<PyAny>,
    inner: Inner,
}

enum Inner {
    Leaf,
    Dict(Vec<(Py<PyAny>, Decoded)>),
    List(Vec<(usize, Decoded)>),
}

impl Decoded {
    fn new(v: Bound<'_, PyAny>) -> Decoded {
        let nested = |x: &Bound<'_, PyAny>| x.is_exact_instance_of::<PyDict>() || x.is_exact_instance_of::<PyList>();
        let inner = if let Ok(d) = v.cast_exact::<PyDict>() {
            Inner::Dict(d.iter().filter(|(_, x)| nested(x)).map(|(k, x)| (k.unbind(), Decoded::new(x))).collect())
        } else if let Ok(l) = v.cast_exact::<PyList>() {
            Inner::List(l.iter().enumerate().filter(|(_, x)| nested(x)).map(|(i, x)| (i, Decoded::new(x))).collect())
        } else {
            Inner::Leaf
        };
        Decoded { value: v.unbind(), inner }
    }

    /// A caller's own copy: new dicts and lists all the way down, sharing only the immutable
    /// leaves (str, int, float, bool, None; raw bytes). So every caller gets an object it may
    /// change, as from a fresh decode (or from Redis), for a fraction of the cost.
    fn own_copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = self.value.bind(py);
        match &self.inner {
            Inner::Leaf => Ok(v.clone()),
            Inner::Dict(inner) => {
                let out = v.cast::<PyDict>()?.copy()?;
                for (k, x) in inner {
                    out.set_item(k, x.own_copy(py)?)?;
                }
                Ok(out.into_any())
            }
            Inner::List(inner) => {
                let l = v.cast::<PyList>()?;
                let out = l.get_slice(0, l.len());
                for (i, x) in inner {
                    out.set_item(*i, x.own_copy(py)?)?;
                }
                Ok(out.into_any())
            }
        }
    }
}

/// Which one-op call a `Call` is (how its answer reads in Python).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    GetOrLoad,
    Get,
    Write,
}

enum St {
    /// Redis: run `call`, feed its reply.
    Store { op: StoreOp, call: RedisCall },
    /// Redis: a cancelled lead's lease goes back (reply ignored).
    Release { call: RedisCall },
    Fast { key: String, gen_keys: Vec<String> },
    Load(Option<u64>),
    Await(Option<u64>),
    Wait(u64),
    /// Waiting for a flight, until this local time at most (lock_wait).
    Join(u64),
    Serve(Py<PyAny>),
    Value(Py<PyAny>),
    Missing,
    Failed(FlowError),
    /// A value that was loaded (not cached) and does not decode: raised, not replaced.
    Raise(PyErr),
    Finished,
}

/// One call (`get_or_load`, `get`, a write) in the cache's coordinator. See the module docs.
#[pyclass(module = "karlton._karlton", name = "Call")]
pub struct PyCall {
    host: Arc<Host>,
    id: CallId,
    /// The coordinator still knows this call (it must be cancelled if dropped).
    live: bool,
    kind: Kind,
    req: Request,
    policy: Arc<Policy>,
    st: St,
    /// The flight this call leads (for handing its loader exception to the joiners).
    leads: Option<FlightId>,
    /// The loader exception this call's own loader raised.
    exc: Option<Py<PyAny>>,
    /// The flight this call waits for / waited for.
    waiter: Option<Arc<Waiter>>,
    bg_error: Option<FlowError>,
}

impl PyCall {
    fn new(host: Arc<Host>, kind: Kind, req: Request, policy: Arc<Policy>) -> PyCall {
        PyCall {
            host,
            id: CallId(0),
            live: false,
            kind,
            req,
            policy,
            st: St::Finished,
            leads: None,
            exc: None,
            waiter: None,
            bg_error: None,
        }
    }

    fn code(&self) -> u8 {
        match self.st {
            St::Store { .. } | St::Release { .. } => STORE,
            St::Fast { .. } => FAST,
            St::Load(_) => LOAD,
            St::Await(_) => AWAIT,
            St::Wait(_) => WAIT,
            St::Join(_) => JOIN,
            St::Serve(_) => SERVE,
            St::Value(_) | St::Missing | St::Failed(_) | St::Raise(_) => ANSWER,
            St::Finished => FINISHED,
        }
    }

    /// Fire what a decision produced (outside the lock).
    fn fire(&mut self, py: Python<'_>, fired: Fired) {
        if let Some(e) = fired.bg {
            self.bg_error = Some(e);
        }
        for (flight, w) in fired.wake {
            let exc = (self.leads == Some(flight)).then(|| self.exc.as_ref().map(|e| e.clone_ref(py))).flatten();
            w.fire(py, exc);
        }
    }

    /// Get a ticket from the coordinator (`f`, under the lock, where a `Join`'s waiter is made
    /// too, so it exists before any `Wake`), fire what the decision woke, and take the ticket.
    fn ticket(&mut self, py: Python<'_>, f: impl FnOnce(&mut Coordinator, u64) -> Ticket) {
        let host = self.host.clone();
        let ((t, waiter), fired) = host.decide(|st| {
            let t = f(&mut st.coord, now_ms());
            let w = match &t {
                Ticket::Join { flight, .. } => Some(st.waiters.entry(*flight).or_default().clone()),
                _ => None,
            };
            (t, w)
        });
        self.fire(py, fired);
        match t {
            Ticket::Answer { answer } => self.act(py, Action::Answer(answer)),
            Ticket::Lead { call, action } => {
                self.id = call;
                self.live = true;
                // A flight is named by the call that leads it.
                self.leads = Some(FlightId(call.0));
                self.act(py, action);
            }
            Ticket::Join { call, until_ms, .. } => {
                self.id = call;
                self.live = true;
                self.leads = None;
                self.waiter = waiter;
                self.st = St::Join(until_ms);
            }
        }
    }

    /// Start a `get_or_load` (after the memory fast hit missed); with `bad`, a value that did
    /// not decode: count it, and run with that entry as a miss.
    fn start(&mut self, py: Python<'_>, bad: Option<Served>) {
        let req = self.req.clone();
        let policy = self.policy.clone();
        let within = if bad.is_none() { loading_within(py, &self.host) } else { Vec::new() };
        self.ticket(py, |c, now| match bad {
            None => c.get_or_load_within(now, req, policy, &within),
            Some(bad) => c.get_or_load_replacing(now, req, policy, bad),
        });
    }

    /// Decide this call's next step (`f`, under the lock) and fire what that woke.
    fn next(&mut self, py: Python<'_>, f: impl FnOnce(&mut Coordinator, CallId) -> Action) -> Action {
        let host = self.host.clone();
        let id = self.id;
        let (a, fired) = host.decide(|st| f(&mut st.coord, id));
        self.fire(py, fired);
        a
    }

    /// Feed an input to the coordinator and act on what it says.
    fn feed(&mut self, py: Python<'_>, input: Input) {
        let a = self.next(py, |c, id| c.handle(now_ms(), id, input));
        self.act(py, a);
    }

    /// Go as far as possible without Python: memory ops in-process, values decoded.
    fn act(&mut self, py: Python<'_>, mut action: Action) {
        loop {
            match action {
                Action::Store(op) => match self.host.memory.clone() {
                    Some(m) => {
                        let r = self.host.apply(py, &m, &op);
                        action = self.next(py, |c, id| c.handle(now_ms(), id, Input::Store(r)));
                    }
                    None => {
                        let call = encode_op(&op);
                        self.st = St::Store { op, call };
                        return;
                    }
                },
                Action::FastRead { key, gen_keys } => {
                    self.st = St::Fast { key, gen_keys };
                    return;
                }
                Action::StartLoad { timeout_at } => {
                    self.st = St::Load(timeout_at);
                    return;
                }
                Action::AwaitLoad { timeout_at } => {
                    self.st = St::Await(timeout_at);
                    return;
                }
                Action::Wait { until_ms } => {
                    self.st = St::Wait(until_ms);
                    return;
                }
                Action::Serve(s) => match self.host.decode(py, &s) {
                    Ok(v) => {
                        self.st = St::Serve(v);
                        return;
                    }
                    Err(_) => {
                        // A stale value that does not decode: the core takes it back and this
                        // call leads on (same lease, same loader) to answer from its refresh.
                        let id = self.id;
                        return self.ticket(py, |c, now| c.replace_served(now, id));
                    }
                },
                Action::Answer(a) => {
                    self.live = false;
                    self.answer(py, a);
                    return;
                }
                Action::Finished => {
                    self.live = false;
                    self.st = St::Finished;
                    return;
                }
            }
        }
    }

    fn answer(&mut self, py: Python<'_>, a: Answer) {
        self.st = match a {
            Ok(Reply::Value(s)) => match self.host.decode(py, &s) {
                Ok(v) => St::Value(v),
                Err(e) => match self.kind {
                    Kind::GetOrLoad if s.source != Source::Loaded => return self.start(py, Some(s)),
                    Kind::Get => {
                        self.host.counters.report_undecodable(&s);
                        St::Missing
                    }
                    _ => St::Raise(e),
                },
            },
            Ok(Reply::Missing) => St::Missing,
            Ok(Reply::Stored(b)) | Ok(Reply::Invalidated(b)) => St::Value(PyBool::new(py, b).to_owned().into_any().unbind()),
            Ok(Reply::Bumped(g)) => St::Value(g.into_pyobject(py).map(|n| n.into_any().unbind()).unwrap_or_else(|e| match e {})),
            Err(e) => St::Failed(e),
        };
    }

    /// Cancel this call in the coordinator; its lease (if any) goes back.
    fn abandon(&mut self, py: Python<'_>) {
        let release = if self.live {
            self.live = false;
            let host = self.host.clone();
            let id = self.id;
            let (op, fired) = host.decide(|st| st.coord.cancel(id));
            self.fire(py, fired);
            op
        } else {
            None
        };
        if let (Some(op), None) = (&release, &self.host.memory) {
            self.st = St::Release { call: encode_op(op) };
            return;
        }
        if let (Some(op), Some(m)) = (&release, self.host.memory.clone()) {
            self.host.apply(py, &m, op);
        }
        self.st = St::Finished;
    }

    /// Send the fast read with the installed sync sender while the call is at FAST.
    fn run_fast(&mut self, py: Python<'_>, fast: &Py<PyAny>) -> PyResult<()> {
        while let St::Fast { key, gen_keys } = &self.st {
            let (packed, n) = fast_packed(py, key, gen_keys);
            let reply = fast.bind(py).call1((packed, n))?;
            self.feed_fast(py, &reply)?;
        }
        Ok(())
    }

    fn expect(&self, codes: &[u8], what: &str) -> PyResult<()> {
        if codes.contains(&self.code()) {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err(format!("{what}: the call is not at that step (kind {})", self.code())))
        }
    }

    fn raise(&self, py: Python<'_>, e: &FlowError, own: Option<&Bound<'_, PyAny>>) -> PyErr {
        if let FlowError::Load(_) = e {
            // The loader's own exception: this caller's, or its flight leader's.
            let theirs = self.waiter.as_ref().and_then(|w| w.lock().exc.as_ref().map(|x| x.clone_ref(py)));
            if let Some(x) = own.filter(|o| !o.is_none()).map(|o| o.clone().unbind()).or(theirs) {
                return PyErr::from_value(x.into_bound(py));
            }
        }
        flow_error(py, e)
    }
}

/// `karlton._base.LOADING`, the context variable the drive loops set around each loader.
static LOADING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The flights of `host` whose loaders the calling context runs in (`LOADING` holds
/// `(host, flight)` pairs, from [`PyCall::loading`]), for `get_or_load_within`.
fn loading_within(py: Python<'_>, host: &Arc<Host>) -> Vec<FlightId> {
    let var = LOADING.get_or_try_init(py, || py.import("karlton._base")?.getattr("LOADING").map(Bound::unbind));
    let Ok(chain) = var.and_then(|v| v.bind(py).call_method0("get")) else { return Vec::new() };
    let me = Arc::as_ptr(host) as usize;
    let Ok(chain) = chain.cast_into::<PyTuple>() else { return Vec::new() };
    chain
        .iter()
        .filter_map(|p| p.extract::<(usize, u64)>().ok())
        .filter(|(h, _)| *h == me)
        .map(|(_, f)| FlightId(f))
        .collect()
}

fn flow_error(py: Python<'_>, e: &FlowError) -> PyErr {
    let made = py
        .import("karlton._errors")
        .and_then(|m| m.getattr("flow_error"))
        .and_then(|f| f.call1((e.kind(), e.to_string())));
    match made {
        Ok(inst) => PyErr::from_value(inst),
        Err(err) => err,
    }
}

impl Drop for PyCall {
    fn drop(&mut self) {
        if self.live {
            // A call nobody drives any more (an exception escaped the driver): leave the
            // coordinator consistent. A Redis lease it held expires by itself.
            Python::attach(|py| self.abandon(py));
        }
    }
}

#[pymethods]
impl PyCall {
    /// STORE, FAST, LOAD, AWAIT, WAIT, JOIN, SERVE, ANSWER or FINISHED.
    #[getter]
    fn kind(&self) -> u8 {
        self.code()
    }

    /// The built entry key (empty for writes of generation counters).
    #[getter]
    fn key(&self) -> &str {
        &self.req.key
    }

    /// STORE (Redis): `(sha, numkeys, *keys, *args)` for `evalsha`.
    #[getter]
    fn call<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        match &self.st {
            St::Store { call, .. } | St::Release { call, .. } => call_tuple(py, call).map(Some),
            _ => Ok(None),
        }
    }

    /// STORE (Redis): the Lua source of the script `call` names (for the NOSCRIPT fallback).
    #[getter]
    fn source(&self) -> Option<&'static str> {
        match &self.st {
            St::Store { call, .. } | St::Release { call, .. } => Some(call.script.source),
            _ => None,
        }
    }

    /// FAST: `(packed, n)`: the RESP buffer to send in one write, and how many replies to read.
    #[getter]
    fn packed<'py>(&self, py: Python<'py>) -> Option<(Bound<'py, PyBytes>, usize)> {
        match &self.st {
            St::Fast { key, gen_keys } => Some(fast_packed(py, key, gen_keys)),
            _ => None,
        }
    }

    /// LOAD / AWAIT: seconds until the load deadline (`None` = no deadline).
    #[getter]
    fn timeout(&self) -> Option<f64> {
        match self.st {
            St::Load(Some(t)) | St::Await(Some(t)) => Some(t.saturating_sub(now_ms()) as f64 / 1000.0),
            _ => None,
        }
    }

    /// LOAD: the loader may run on the calling thread (threads driver): the policy sets no soft
    /// timeout (which would answer the caller with a stale value while the load runs on) and
    /// no hard timeout of its own (which asks for the caller back at that deadline). The load
    /// still has the default deadline and its lease is still extended: the host's keeper feeds
    /// `feed_timeout` at `timeout` while the loader runs.
    #[getter]
    fn inline(&self) -> bool {
        !self.policy.load_timeouts_given()
    }

    /// WAIT: seconds to sleep before `feed_timeout`.
    #[getter]
    fn delay(&self) -> f64 {
        match self.st {
            St::Wait(until) | St::Join(until) => until.saturating_sub(now_ms()) as f64 / 1000.0,
            _ => 0.0,
        }
    }

    /// Feed the store's reply (Redis: the raw `evalsha` result, or the error-reply exception).
    fn feed_reply(&mut self, py: Python<'_>, reply: &Bound<'_, PyAny>) -> PyResult<()> {
        self.expect(&[STORE], "feed_reply")?;
        match std::mem::replace(&mut self.st, St::Finished) {
            St::Store { op, .. } => {
                let input = match decode_reply(&op, redis_value(reply, 0)) {
                    Ok(r) => Input::Store(r),
                    Err(e) => Input::StoreFailed(e),
                };
                self.feed(py, input);
            }
            St::Release { .. } => self.st = St::Finished,
            _ => unreachable!("checked by expect"),
        }
        Ok(())
    }

    /// Feed a store failure (connection lost, timeout…).
    fn feed_store_error(&mut self, py: Python<'_>, message: String) -> PyResult<()> {
        self.expect(&[STORE], "feed_store_error")?;
        match std::mem::replace(&mut self.st, St::Finished) {
            St::Store { .. } => self.feed(py, Input::StoreFailed(StoreFailure { message })),
            _ => {}
        }
        Ok(())
    }

    /// FAST: the replies (a list, error replies as exceptions), or a `str` when the server
    /// could not be reached.
    fn feed_fast(&mut self, py: Python<'_>, reply: &Bound<'_, PyAny>) -> PyResult<()> {
        self.expect(&[FAST], "feed_fast")?;
        // The replies (error replies as exceptions), or a str: the server could not be reached.
        let replies = if let Ok(l) = reply.cast::<PyList>() {
            Ok(l.iter().map(|x| redis_value(&x, 0)).collect())
        } else if let Ok(s) = reply.cast::<PyString>() {
            Err(StoreFailure { message: s.to_str()?.to_owned() })
        } else {
            return Err(type_err("fast read: expected a list of replies or a str", reply));
        };
        let a = self.next(py, |c, id| c.handle_fast_read(now_ms(), id, replies));
        self.act(py, a);
        Ok(())
    }

    /// LOAD / AWAIT: the loader's encoded result.
    #[pyo3(signature = (value, codec_id, negative = false))]
    fn feed_loaded(&mut self, py: Python<'_>, value: &[u8], codec_id: u8, negative: bool) -> PyResult<()> {
        self.expect(&[LOAD, AWAIT], "feed_loaded")?;
        let l = Loaded { value: value.into(), codec: codec_id, negative, version: None };
        self.feed(py, Input::Loaded(l));
        Ok(())
    }

    /// LOAD / AWAIT: the loader failed. `exc` is re-raised to this caller and its joiners.
    #[pyo3(signature = (message, exc = None))]
    fn feed_load_failed(&mut self, py: Python<'_>, message: String, exc: Option<Py<PyAny>>) -> PyResult<()> {
        self.expect(&[LOAD, AWAIT], "feed_load_failed")?;
        if exc.is_some() {
            self.exc = exc;
        }
        self.feed(py, Input::LoadFailed(message));
        Ok(())
    }

    /// WAIT: the deadline passed; LOAD / AWAIT: the load deadline passed.
    fn feed_timeout(&mut self, py: Python<'_>) -> PyResult<()> {
        self.expect(&[WAIT, LOAD, AWAIT], "feed_timeout")?;
        self.feed(py, Input::Timeout);
        Ok(())
    }

    /// SERVE: the caller has its value; the call goes on (drive it in the background).
    fn feed_continue(&mut self, py: Python<'_>) -> PyResult<()> {
        self.expect(&[SERVE], "feed_continue")?;
        self.feed(py, Input::Continue);
        Ok(())
    }

    /// JOIN (threads): block (GIL released) until the flight ends or `timeout` seconds pass;
    /// whether it ended. Signals (Ctrl-C) are handled while waiting.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.expect(&[JOIN], "wait")?;
        let w = self.waiter.clone().ok_or_else(|| PyRuntimeError::new_err("wait(): no waiter"))?;
        let deadline = timeout.map(|t| std::time::Instant::now() + std::time::Duration::from_secs_f64(t.max(0.0)));
        loop {
            let left = deadline.map_or(std::time::Duration::from_millis(100), |d| d.saturating_duration_since(std::time::Instant::now()));
            let slice = left.min(std::time::Duration::from_millis(100));
            let woken = py.detach(|| {
                let g = w.lock();
                let (g, _) = w.cv.wait_timeout_while(g, slice, |s| !s.woken).unwrap_or_else(|p| p.into_inner());
                g.woken
            });
            if woken {
                return Ok(true);
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// JOIN (asyncio): call `callback()` (from whichever thread ends the flight) when it ends.
    /// False if it has already ended (call `joined()` now; the callback is not kept).
    fn on_wake(&self, callback: Py<PyAny>) -> PyResult<bool> {
        self.expect(&[JOIN], "on_wake")?;
        let w = self.waiter.as_ref().ok_or_else(|| PyRuntimeError::new_err("on_wake(): no waiter"))?;
        let mut s = w.lock();
        if s.woken {
            return Ok(false);
        }
        s.callbacks.push(callback);
        Ok(true)
    }

    /// JOIN: after the wake-up — the flight's answer, or this call runs again (it may lead).
    fn joined(&mut self, py: Python<'_>) -> PyResult<()> {
        self.expect(&[JOIN], "joined")?;
        let id = self.id;
        // An answer keeps this call's waiter (a failed load re-raises the leader's exception).
        self.ticket(py, |c, now| c.joined(now, id));
        Ok(())
    }

    /// SERVE / ANSWER(value): the decoded value (this caller's own object).
    fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.st {
            St::Serve(v) | St::Value(v) => Ok(v.clone_ref(py)),
            _ => Err(PyRuntimeError::new_err("value(): no value at this step")),
        }
    }

    /// ANSWER of a `get_or_load`: the value, or raise — the loader's own exception (`exc`, this
    /// caller's; or the leader's, for a joiner) when the load failed, else a `KarltonError`.
    #[pyo3(signature = (exc = None))]
    fn outcome(&self, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        match &self.st {
            St::Value(v) => Ok(v.clone_ref(py)),
            St::Missing => Ok(py.None()),
            St::Failed(e) => Err(self.raise(py, e, exc)),
            St::Raise(e) => Err(e.clone_ref(py)),
            _ => Err(PyRuntimeError::new_err(format!("outcome(): the call is not answered (kind {})", self.code()))),
        }
    }

    /// ANSWER of a one-op call: `get` → the value or `default`; `set` → stored?;
    /// `invalidate` → existed?; `bump` → the new generation. Store failures raise.
    #[pyo3(signature = (default = None))]
    fn result(&self, py: Python<'_>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        match &self.st {
            St::Missing => Ok(default.unwrap_or_else(|| py.None())),
            _ => self.outcome(py, None),
        }
    }

    /// ANSWER: whether the value was served from a stale entry because the load failed or
    /// timed out (the error is reported, not raised).
    #[getter]
    fn bg_error(&self) -> Option<(&'static str, String)> {
        self.bg_error.as_ref().map(|e| (e.kind(), e.to_string()))
    }

    /// LOAD: `(cache, flight)` for `karlton._base.LOADING` while this call's loader runs.
    #[getter]
    fn loading(&self) -> (usize, u64) {
        (Arc::as_ptr(&self.host) as usize, self.leads.map_or(0, |f| f.0))
    }

    /// The caller went away (an exception, a cancelled task): leave the coordinator; a lease
    /// this call holds goes back (on Redis the call is then at STORE: run it, or drop it).
    fn cancel(&mut self, py: Python<'_>) {
        if matches!(self.st, St::Release { .. }) {
            return;
        }
        self.abandon(py);
    }
}

fn request(key: &PyKey, tags: Vec<String>) -> Request {
    Request { key: key.built().to_owned(), gen_keys: gen_keys(key, &tags), tags }
}

/// The native driver of one `Cache`/`AsyncCache`: its coordinator, store, policy and codec.
#[pyclass(module = "karlton._karlton", name = "Driver", frozen, weakref)]
pub struct PyDriver {
    host: Arc<Host>,
    /// The sync driver's `(_slow(call, loader), _op(call, default))`, for what `get_or_load`
    /// and the one-op calls cannot finish natively (Redis, a load, a wait).
    slow: std::sync::OnceLock<(Py<PyAny>, Py<PyAny>)>,
    /// The sync Redis fast-read sender `(packed, n) -> replies | str`.
    fast: std::sync::OnceLock<Py<PyAny>>,
}

impl PyDriver {
    fn policy_of(&self, policy: Option<&Bound<'_, PyAny>>) -> PyResult<Arc<Policy>> {
        Ok(policy_arg(policy)?.map_or_else(|| self.host.policy.clone(), |p| p.get().inner.clone()))
    }

    /// Run a one-op call as far as it goes natively: the answer, or the `Call` for Python.
    fn op(&self, py: Python<'_>, op: Op, kind: Kind, key: String, policy: Arc<Policy>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let mut c = PyCall::new(self.host.clone(), kind, Request { key, gen_keys: Vec::new(), tags: Vec::new() }, policy.clone());
        let ((id, a), fired) = self.host.decide(|st| st.coord.op(now_ms(), op, policy));
        c.id = id;
        c.live = true;
        c.fire(py, fired);
        c.act(py, a);
        if let Some(fast) = self.fast.get() {
            c.run_fast(py, fast)?;
        }
        if c.code() == ANSWER {
            return c.result(py, default);
        }
        let call = Py::new(py, c)?.into_any();
        match self.slow.get() {
            Some((_, op)) => op.call1(py, (call, default)),
            None => Ok(call),
        }
    }
}

#[pymethods]
impl PyDriver {
    /// `store` is a `MemoryStore`, or `None` for Redis (store ops come back as script calls);
    /// `fast_read`: the Redis store has the fast read.
    #[new]
    #[pyo3(signature = (store, policy, codec_id = None, codec_decode = None, fast_read = false))]
    fn new(
        store: Option<PyRef<'_, PyMemoryStore>>,
        policy: PyRef<'_, PyPolicy>,
        codec_id: Option<u8>,
        codec_decode: Option<Py<PyAny>>,
        fast_read: bool,
    ) -> PyResult<PyDriver> {
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
        let memory = store.map(|s| s.inner.clone());
        let coord = Coordinator::new(os_seed(), fast_read && memory.is_none());
        let counters = coord.counters().clone();
        Ok(PyDriver {
            host: Arc::new(Host {
                memory,
                policy: policy.inner.clone(),
                counters,
                state: Mutex::new(State { coord, waiters: HashMap::new() }),
                codec,
            }),
            slow: std::sync::OnceLock::new(),
            fast: std::sync::OnceLock::new(),
        })
    }

    /// Install the sync driver's slow paths (once): `slow(call, loader)` for `get_or_load`,
    /// `op(call, default)` for `get` and the writes. Without them those return a `Call`.
    fn set_slow(&self, slow: Py<PyAny>, op: Py<PyAny>) -> PyResult<()> {
        self.slow.set((slow, op)).map_err(|_| PyRuntimeError::new_err("set_slow(): already set"))
    }

    /// Install the sync Redis fast-read sender (once): `fast(packed, n)` sends the RESP
    /// buffer, reads `n` replies and answers them as a list (error replies as exceptions), or a
    /// `str` if the server could not be reached.
    fn set_fast(&self, fast: Py<PyAny>) -> PyResult<()> {
        if self.host.memory.is_some() {
            return Err(PyValueError::new_err("set_fast(): the memory store has no fast read"));
        }
        self.fast.set(fast).map_err(|_| PyRuntimeError::new_err("set_fast(): already set"))
    }

    /// Start a `get_or_load`: the value when it finished natively (a hit), else a `Call`.
    #[pyo3(signature = (key, tags = None, policy = None))]
    fn start(&self, py: Python<'_>, key: &Bound<'_, PyAny>, tags: Option<&Bound<'_, PyAny>>, policy: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let custom = policy_arg(policy)?;
        let policy = custom.as_ref().map_or(&self.host.policy, |p| &p.get().inner);
        let key = key_arg(key)?.get();
        let tags = tags_arg(tags)?;
        let bad = if tags.is_empty() {
            match self.host.memory_hit(py, key.built(), key.gen_keys(), policy)? {
                Some(Ok(v)) => return Ok(v),
                Some(Err(s)) => Some(s),
                None => None,
            }
        } else {
            None
        };
        let mut c = PyCall::new(self.host.clone(), Kind::GetOrLoad, request(key, tags), policy.clone());
        c.start(py, bad);
        if c.code() == ANSWER {
            if let St::Value(v) = &c.st {
                return Ok(v.clone_ref(py));
            }
        }
        Ok(Py::new(py, c)?.into_any())
    }

    /// The whole sync `get_or_load` hit in one native call (the Redis fast read through the
    /// installed sender); anything else goes to the slow path installed with `set_slow`.
    #[pyo3(signature = (key, loader, *, tags = None, policy = None))]
    fn get_or_load(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        loader: &Bound<'_, PyAny>,
        tags: Option<&Bound<'_, PyAny>>,
        policy: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let r = self.start(py, key, tags, policy)?;
        let Ok(call) = r.bind(py).cast::<PyCall>() else { return Ok(r) };
        if let Some(fast) = self.fast.get() {
            let mut c = call.borrow_mut();
            c.run_fast(py, fast)?;
            if let St::Value(v) = &c.st {
                return Ok(v.clone_ref(py));
            }
        }
        let (slow, _) = self.slow.get().ok_or_else(|| PyRuntimeError::new_err("no slow path installed"))?;
        slow.call1(py, (call, loader))
    }

    /// A plain read (no lease, no load): the value or `default` (or, with no slow path
    /// installed, a `Call` for Python).
    #[pyo3(signature = (key, default = None, *, tags = None))]
    fn get(&self, py: Python<'_>, key: &Bound<'_, PyAny>, default: Option<Py<PyAny>>, tags: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let key = key_arg(key)?.get();
        let tags = tags_arg(tags)?;
        let with_tags;
        let gk = if tags.is_empty() {
            key.gen_keys()
        } else {
            with_tags = gen_keys(key, &tags);
            &with_tags
        };
        let policy = &self.host.policy;
        match self.host.memory_hit(py, key.built(), gk, policy)? {
            Some(Ok(v)) => return Ok(v),
            Some(Err(s)) => {
                self.host.counters.report_undecodable(&s);
                return Ok(default.unwrap_or_else(|| py.None()));
            }
            None => {}
        }
        let op = Op::Get { key: key.built().to_owned(), gen_keys: gk.to_vec() };
        self.op(py, op, Kind::Get, key.built().to_owned(), policy.clone(), default)
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
        policy: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let key = key_arg(key)?.get();
        let tags = tags_arg(tags)?;
        let version = match version.filter(|v| !v.is_none()) {
            None => None,
            Some(v) if is_int(v) => Some(
                // The full u64 range every runtime takes (Node as a BigInt): a Node service using
                // nanosecond or snowflake versions must not lock Python writers out.
                v.extract::<u64>()
                    .map_err(|_| PyValueError::new_err(format!("version must be an int in 0..2**64, got {v}")))?,
            ),
            Some(v) => return Err(type_err("version must be an int", v)),
        };
        let write = Write {
            key: key.built().to_owned(),
            gen_keys: gen_keys(key, &tags),
            tags,
            value: value.into(),
            codec: codec_id,
            version,
        };
        let policy = self.policy_of(policy)?;
        self.op(py, Op::Set { write }, Kind::Write, key.built().to_owned(), policy, None)
    }

    /// Delete (`mode="delete"`) or mark stale (`mode="stale"`); revokes the lease.
    #[pyo3(signature = (key, mode = "delete"))]
    fn invalidate(&self, py: Python<'_>, key: &Bound<'_, PyAny>, mode: &str) -> PyResult<Py<PyAny>> {
        let key = key_arg(key)?.get();
        let mode = match mode {
            "delete" => InvalidateMode::Delete,
            "stale" => InvalidateMode::MarkStale,
            m => return Err(PyValueError::new_err(format!("mode must be \"delete\" or \"stale\", got {m:?}"))),
        };
        let op = Op::Invalidate { key: key.built().to_owned(), mode };
        self.op(py, op, Kind::Write, key.built().to_owned(), self.host.policy.clone(), None)
    }

    /// Move a generation counter (namespace or tag) to a new value.
    fn bump(&self, py: Python<'_>, gen_key: &str) -> PyResult<Py<PyAny>> {
        let op = Op::Bump { gen_key: gen_key.to_owned() };
        self.op(py, op, Kind::Write, String::new(), self.host.policy.clone(), None)
    }

    /// A snapshot of the counters as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut s = self.host.counters.snapshot();
        if let Some(m) = &self.host.memory {
            s.evictions = m.evictions();
        }
        let d = PyDict::new(py);
        for (k, v) in s.fields() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// In a forked child: draw a new seed from the OS (the child copied the parent's random
    /// stream, so it would draw the parent's jitter and XFetch sequence).
    fn after_fork(&self) {
        self.host.counters.reseed(os_seed());
    }

    /// `(calls, flights)` alive in the coordinator (0, 0 when idle: nothing leaked).
    fn pending(&self) -> (usize, usize) {
        self.host.lock().coord.pending()
    }
}
