//! [`Cache`]: a drive loop over the core's [`Coordinator`] and a [`Store`].
//!
//! Every decision — who leads a key and who joins, what a joiner gets, C5 after a write, the
//! fast-path order, background refresh, stats — is the coordinator's. This file keeps what a
//! host must: tokio IO (store calls, the loader as a task, sleeps), a map from flight to the
//! waking primitive of its joiners, and the translation to typed values.

use crate::store::{Store, now_ms};
use karlton_core::coordinator::Answer;
use karlton_core::entry::codec;
use karlton_core::flow::Write;
use karlton_core::key::KeyError;
use karlton_core::{
    Action, CallId, Coordinator, Counters, Event, FlightId, FlowError, Input, InvalidateMode, Key,
    Loaded, Op, Policy, PolicyError, Reply, Request, Served, Source, Stats, StoreFailure, StoreOp,
    StoreReply, Ticket,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::task::JoinHandle;

tokio::task_local! {
    /// The flights whose loaders this task runs inside, with the cache each belongs to (its
    /// `Inner`'s address): a `get_or_load` for a key one of them is loading would wait for
    /// itself, so the coordinator refuses it (`FlowError::Reentrant`). A loader that spawns
    /// tasks of its own leaves this behind (task-locals do not follow `tokio::spawn`).
    static LOADING: Vec<(usize, FlightId)>;
}

/// What can go wrong in a cache call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The flow failed: loader error, lock timeout, store error (when configured to surface).
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// The cached bytes or the loaded value could not be (de)serialized as JSON.
    #[error("value codec: {0}")]
    Codec(String),
    /// A key could not be built.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A policy was invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Tags: `invalidate_tag(key, tag)` orphans every entry filled with that tag.
    pub tags: Vec<String>,
    /// A policy for this call instead of the cache's.
    pub policy: Option<Arc<Policy>>,
}

type BoxLoad = Pin<Box<dyn Future<Output = Result<Loaded, String>> + Send>>;
type Loader = Box<dyn FnOnce() -> BoxLoad + Send>;
type OnError = Arc<dyn Fn(&str, &FlowError) + Send + Sync>;

/// The coordinator and, per flight with joiners, the channel that wakes them.
struct State {
    coord: Coordinator,
    wakers: HashMap<FlightId, watch::Sender<bool>>,
}

struct Inner<S> {
    store: S,
    policy: Arc<Policy>,
    /// The coordinator's lock-free half: counters, seeds, the memory fresh hit.
    counters: Arc<Counters>,
    /// Held only while the coordinator decides — never across IO.
    state: Mutex<State>,
    on_background_error: Mutex<Option<OnError>>,
    /// The process that seeded the coordinator: a forked child re-seeds (see `lock`).
    pid: std::sync::atomic::AtomicU32,
}

impl<S: Store> Inner<S> {
    /// The coordinator's lock. In a process forked from the one that seeded it, first draw a
    /// new OS seed: the child copied the random stream, and would draw the parent's lease
    /// tokens and jitter.
    fn lock(&self) -> MutexGuard<'_, State> {
        use std::sync::atomic::Ordering::Relaxed;
        let pid = std::process::id();
        if self.pid.load(Relaxed) != pid {
            self.pid.store(pid, Relaxed);
            self.counters.reseed(os_seed());
        }
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Let the coordinator decide, then act on its events (the order its contract fixes):
    /// wakes happen under the lock, background errors are reported after it.
    fn decide<R>(&self, f: impl FnOnce(&mut Coordinator) -> R) -> R {
        let mut errors = Vec::new();
        let r = {
            let mut st = self.lock();
            let r = f(&mut st.coord);
            drain(&mut st, &mut errors);
            r
        };
        self.report(errors);
        r
    }

    /// [`Inner::decide`] for a ticket: a joiner's wake-up receiver is made under the same lock,
    /// so a wake that follows as soon as the lock is released is not lost.
    fn ticket(&self, f: impl FnOnce(&mut Coordinator) -> Ticket) -> (Ticket, Option<watch::Receiver<bool>>) {
        let mut errors = Vec::new();
        let r = {
            let mut st = self.lock();
            let t = f(&mut st.coord);
            drain(&mut st, &mut errors);
            let rx = match &t {
                Ticket::Join { flight, .. } => {
                    Some(st.wakers.entry(*flight).or_insert_with(|| watch::channel(false).0).subscribe())
                }
                _ => None,
            };
            (t, rx)
        };
        self.report(errors);
        r
    }

    fn report(&self, errors: Vec<(String, FlowError)>) {
        if errors.is_empty() {
            return;
        }
        let cb = self.on_background_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(cb) = cb {
            for (k, e) in &errors {
                cb(k, e);
            }
        }
    }

    async fn exec(&self, op: StoreOp) -> Result<StoreReply, StoreFailure> {
        match self.store.execute_now(&op) {
            Some(r) => r,
            None => self.store.execute(op).await,
        }
    }

    /// A call went away: tell the coordinator; return the lease it held, if any.
    fn cancel(self: &Arc<Self>, call: CallId) {
        let Some(op) = self.decide(|c| c.cancel(call)) else { return };
        if self.store.execute_now(&op).is_some() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = self.clone();
            rt.spawn(async move {
                let _ = inner.store.execute(op).await;
            });
        }
    }
}

fn drain(st: &mut State, errors: &mut Vec<(String, FlowError)>) {
    while let Some(e) = st.coord.poll_event() {
        match e {
            Event::Wake { flight } => {
                if let Some(tx) = st.wakers.remove(&flight) {
                    let _ = tx.send(true);
                }
            }
            Event::BackgroundError { key, error } => errors.push((key, error)),
        }
    }
}

/// An async cache over a store. Clone it freely: clones share everything.
pub struct Cache<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Cache<S> {
    fn clone(&self) -> Self {
        Cache { inner: self.inner.clone() }
    }
}

/// A seed from the operating system's random source (never the clock or an address: caches
/// started together, or forked, must not draw the same jitter and lease tokens).
fn os_seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        // No OS randomness at all (an exotic target): std's per-process random hash keys.
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(now_ms())
    })
}

impl<S: Store> Cache<S> {
    /// A cache over `store` with a default `policy`.
    pub fn new(store: S, policy: Policy) -> Cache<S> {
        let coord = Coordinator::new(os_seed(), store.has_fast_read());
        Cache {
            inner: Arc::new(Inner {
                store,
                policy: Arc::new(policy),
                counters: coord.counters().clone(),
                state: Mutex::new(State { coord, wakers: HashMap::new() }),
                on_background_error: Mutex::new(None),
                pid: std::sync::atomic::AtomicU32::new(std::process::id()),
            }),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The cache's default policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Called with (key, error) when a background refresh fails (the caller already has its
    /// value, so there is nobody else to tell).
    pub fn on_background_error(&self, f: impl Fn(&str, &FlowError) + Send + Sync + 'static) {
        *self.inner.on_background_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(f));
    }

    /// A snapshot of the counters (the coordinator's table; `evictions` from the store).
    pub fn stats(&self) -> Stats {
        let mut s = self.inner.counters.snapshot();
        s.evictions = self.inner.store.evictions();
        s
    }

    /// Calls and flights the coordinator holds now (both 0 when the cache is idle; a leak
    /// shows here).
    pub fn pending(&self) -> (usize, usize) {
        self.inner.lock().coord.pending()
    }

    fn gen_keys(key: &Key, tags: &[String]) -> Vec<String> {
        let mut g = Vec::with_capacity(1 + tags.len());
        g.push(key.generation_key());
        g.extend(tags.iter().map(|t| key.tag_key(t)));
        g
    }

    /// Typed read-through: the cached value, or `loader`'s (JSON-encoded, cached for the policy's
    /// TTLs). `Ok(None)` from the loader is a "not found", cached for `negative_ttl_ms`. A cached
    /// value that does not decode as `T` is a corrupt entry: counted, and replaced by a load.
    pub async fn get_or_load<T, F, Fut, E>(&self, key: &Key, loader: F) -> Result<Option<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<T>, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.get_or_load_with(key, &Options::default(), loader).await
    }

    /// [`Cache::get_or_load`] with per-call options (tags, policy).
    pub async fn get_or_load_with<T, F, Fut, E>(
        &self,
        key: &Key,
        opts: &Options,
        loader: F,
    ) -> Result<Option<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<T>, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let load = move || async move {
            match loader().await {
                Ok(Some(v)) => serde_json::to_vec(&v)
                    .map(|b| Loaded { value: b.into(), codec: codec::JSON, negative: false, version: None })
                    .map_err(|e| format!("value codec: {e}")),
                Ok(None) => Ok(Loaded { value: Arc::from(&[][..]), codec: codec::JSON, negative: true, version: None }),
                Err(e) => Err(e.to_string()),
            }
        };
        self.get_or_load_decoded(key, opts, load, decode_json).await
    }

    /// Byte-level read-through: the loader returns encoded bytes; the result says where the
    /// value came from. Bindings and custom codecs use this (and [`Cache::get_or_load_decoded`]
    /// to have undecodable entries replaced).
    pub async fn get_or_load_raw<F, Fut>(&self, key: &Key, opts: &Options, loader: F) -> Result<Served, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded, String>> + Send + 'static,
    {
        self.get_or_load_decoded(key, opts, loader, |s| Ok(s.clone())).await
    }

    /// Read-through with a custom decoder: a cached value `decode` refuses with
    /// [`Error::Codec`] is reported to the coordinator as a corrupt entry, and the call runs
    /// again treating it as a miss (the loader runs; its fill replaces the bytes).
    pub async fn get_or_load_decoded<T, F, Fut>(
        &self,
        key: &Key,
        opts: &Options,
        loader: F,
        decode: impl Fn(&Served) -> Result<T, Error>,
    ) -> Result<T, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded, String>> + Send + 'static,
    {
        let inner = &self.inner;
        let policy = opts.policy.clone().unwrap_or_else(|| inner.policy.clone());
        let tagged;
        let gen_keys: &[String] = if opts.tags.is_empty() {
            key.generation_keys()
        } else {
            tagged = Self::gen_keys(key, &opts.tags);
            &tagged
        };
        let k = key.as_str();
        // The memory store's fresh hit: no lock, no allocation beyond the value.
        let mut bad = None;
        if let Some(mem) = inner.store.memory() {
            if let Some(s) = inner.counters.memory_hit(mem, now_ms(), k, gen_keys, &policy) {
                match decode(&s) {
                    Err(Error::Codec(_)) => bad = Some(s),
                    r => return r,
                }
            }
        }
        let req = Request { key: k.to_owned(), gen_keys: gen_keys.to_vec(), tags: opts.tags.clone() };
        let mut loader: Option<Loader> = Some(Box::new(move || Box::pin(loader()) as BoxLoad));
        let (mut ticket, mut rx) = match bad.take() {
            None => {
                let me = Arc::as_ptr(inner) as *const () as usize;
                let within: Vec<FlightId> = LOADING
                    .try_with(|v| v.iter().filter(|(c, _)| *c == me).map(|(_, f)| *f).collect())
                    .unwrap_or_default();
                inner.ticket(|c| c.get_or_load_within(now_ms(), req.clone(), policy.clone(), &within))
            }
            Some(b) => inner.ticket(|c| c.get_or_load_replacing(now_ms(), req.clone(), policy.clone(), b)),
        };
        // A lead whose served value did not decode: it leads on (same loader task, same lease).
        let mut again: Option<Lead<S>> = None;
        loop {
            let answer = match ticket {
                Ticket::Answer { answer } => answer,
                Ticket::Join { call, until_ms, .. } => {
                    let guard = CallGuard { inner: inner.clone(), call: Some(call) };
                    if let Some(mut r) = rx.take() {
                        // At most until `until_ms` (lock_wait): then the coordinator decides.
                        let wait = std::time::Duration::from_millis(until_ms.saturating_sub(now_ms()));
                        // Err only if the flight's channel went away unsent or the wait ran
                        // out: ask again either way.
                        let _ = tokio::time::timeout(wait, r.wait_for(|woken| *woken)).await;
                    }
                    guard.disarm();
                    (ticket, rx) = inner.ticket(|c| c.joined(now_ms(), call));
                    continue;
                }
                Ticket::Lead { call, action } => {
                    let lead = match again.take() {
                        Some(mut l) => {
                            l.call = call;
                            l
                        }
                        None => Lead::new(inner.clone(), call, loader.take()),
                    };
                    match lead.run(action).await {
                        // A leader that answered from the store (a fast read, a hit) never started
                        // the loader: it comes back, so an undecodable hit can still be replaced.
                        Ran::Answer(a, unused) => {
                            loader = unused;
                            a
                        }
                        // A stale value served while a refresh goes on: decoded before the refresh
                        // is let go; one this reader cannot decode is taken back and the refresh
                        // (this lead, its lease, its loader) answers instead.
                        Ran::Serve(v, mut lead) => match decode(&v) {
                            Err(Error::Codec(_)) => {
                                let call = lead.call;
                                (ticket, rx) = inner.ticket(|c| c.replace_served(now_ms(), call));
                                // Anything but a new lead means the coordinator ended the call.
                                lead.live = matches!(ticket, Ticket::Lead { .. });
                                again = Some(lead);
                                continue;
                            }
                            r => {
                                lead.background();
                                return r;
                            }
                        },
                    }
                }
            };
            let served = match answer {
                Ok(Reply::Value(s)) => s,
                Ok(other) => return Err(FlowError::Protocol(format!("get_or_load answered {other:?}")).into()),
                Err(e) => return Err(e.into()),
            };
            match decode(&served) {
                // A cached value this reader cannot decode: corrupt, replace it by a load.
                Err(Error::Codec(_)) if served.source != Source::Loaded && loader.is_some() => {
                    (ticket, rx) = inner
                        .ticket(|c| c.get_or_load_replacing(now_ms(), req.clone(), policy.clone(), served));
                }
                r => return r,
            }
        }
    }

    /// The cached value if fresh or stale (never past hard expiry); no load. A value that does
    /// not decode as `T` is counted as a corrupt entry and read as missing.
    pub async fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>, Error> {
        match self.get_raw(key, &[]).await? {
            Some(s) => match decode_json(&s) {
                Err(Error::Codec(_)) => {
                    self.inner.counters.report_undecodable(&s);
                    Ok(None)
                }
                r => r,
            },
            None => Ok(None),
        }
    }

    /// Byte-level [`Cache::get`].
    pub async fn get_raw(&self, key: &Key, tags: &[String]) -> Result<Option<Served>, Error> {
        let (k, gen_keys) = (key.build(), Self::gen_keys(key, tags));
        let policy = self.inner.policy.clone();
        if let Some(mem) = self.inner.store.memory() {
            if let Some(s) = self.inner.counters.memory_hit(mem, now_ms(), &k, &gen_keys, &policy) {
                return Ok(Some(s));
            }
        }
        match self.op(Op::Get { key: k, gen_keys }, policy).await? {
            Reply::Value(s) => Ok(Some(s)),
            Reply::Missing => Ok(None),
            other => Err(FlowError::Protocol(format!("get answered {other:?}")).into()),
        }
    }

    /// Write-through: store `value` now (JSON). Revokes outstanding leases, so a reader still
    /// loading an older value cannot overwrite it. Returns whether it was stored.
    pub async fn set<T: Serialize>(&self, key: &Key, value: &T) -> Result<bool, Error> {
        self.set_versioned(key, value, None).await
    }

    /// [`Cache::set`] with a monotonic version: refused (returns `false`) if a newer version is
    /// stored or was stored before an invalidation.
    pub async fn set_versioned<T: Serialize>(&self, key: &Key, value: &T, version: Option<u64>) -> Result<bool, Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Codec(e.to_string()))?;
        let w = Write {
            key: key.build(),
            gen_keys: Self::gen_keys(key, &[]),
            tags: Vec::new(),
            value: bytes.into(),
            codec: codec::JSON,
            version,
        };
        self.set_raw(&w, None).await
    }

    /// Byte-level [`Cache::set`].
    pub async fn set_raw(&self, w: &Write, policy: Option<&Policy>) -> Result<bool, Error> {
        let policy = policy.map_or_else(|| self.inner.policy.clone(), |p| Arc::new(p.clone()));
        match self.op(Op::Set { write: w.clone() }, policy).await? {
            Reply::Stored(b) => Ok(b),
            other => Err(FlowError::Protocol(format!("set answered {other:?}")).into()),
        }
    }

    /// Delete the entry and revoke its lease: the next reader loads, and a load already in
    /// flight cannot fill (C2); no call that begins after this returns gets a value loaded
    /// before it (C5). Returns whether an entry was there.
    pub async fn invalidate(&self, key: &Key) -> Result<bool, Error> {
        self.invalidate_with(key, InvalidateMode::Delete).await
    }

    /// [`Cache::invalidate`] choosing delete or mark-stale.
    pub async fn invalidate_with(&self, key: &Key, mode: InvalidateMode) -> Result<bool, Error> {
        match self.op(Op::Invalidate { key: key.build(), mode }, self.inner.policy.clone()).await? {
            Reply::Invalidated(b) => Ok(b),
            other => Err(FlowError::Protocol(format!("invalidate answered {other:?}")).into()),
        }
    }

    /// Orphan every entry of `key`'s namespace (T1): one counter moves; no scan.
    pub async fn bump(&self, key: &Key) -> Result<u64, Error> {
        self.bump_key(key.generation_key()).await
    }

    /// Orphan every entry filled with `tag` in `key`'s namespace (T1).
    pub async fn invalidate_tag(&self, key: &Key, tag: &str) -> Result<u64, Error> {
        self.bump_key(key.tag_key(tag)).await
    }

    async fn bump_key(&self, gen_key: String) -> Result<u64, Error> {
        match self.op(Op::Bump { gen_key }, self.inner.policy.clone()).await? {
            Reply::Bumped(g) => Ok(g),
            other => Err(FlowError::Protocol(format!("bump answered {other:?}")).into()),
        }
    }

    /// Drive a one-op call: one store reply (two for a `get` on a store with a fast read).
    async fn op(&self, op: Op, policy: Arc<Policy>) -> Result<Reply, Error> {
        let inner = &self.inner;
        let (call, mut action) = inner.decide(|c| c.op(now_ms(), op, policy));
        let guard = CallGuard { inner: inner.clone(), call: Some(call) };
        let answer = loop {
            action = match action {
                Action::Store(op) => {
                    let input = into_input(inner.exec(op).await);
                    inner.decide(|c| c.handle(now_ms(), call, input))
                }
                Action::FastRead { key, gen_keys } => {
                    let r = inner.store.fast_read(&key, &gen_keys).await;
                    inner.decide(|c| c.handle_fast_read(now_ms(), call, r))
                }
                Action::Answer(a) => break a,
                other => break Err(FlowError::Protocol(format!("one-op call got {other:?}"))),
            };
        };
        guard.disarm();
        answer.map_err(Error::from)
    }
}

/// Tells the coordinator a call went away if its future is dropped before it ends.
struct CallGuard<S: Store> {
    inner: Arc<Inner<S>>,
    call: Option<CallId>,
}

impl<S: Store> CallGuard<S> {
    fn disarm(mut self) {
        self.call = None;
    }
}

impl<S: Store> Drop for CallGuard<S> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            self.inner.cancel(call);
        }
    }
}

/// A leading call: runs the coordinator's actions. Dropped before its call ended (the caller's
/// future was dropped), it cancels the call — joiners run again, the lease is released — and
/// aborts the loader task.
struct Lead<S: Store> {
    inner: Arc<Inner<S>>,
    call: CallId,
    loader: Option<Loader>,
    running: Option<JoinHandle<Result<Loaded, String>>>,
    live: bool,
}

enum Driven {
    Answer(Answer),
    Serve(Served),
}

/// How [`Lead::run`] ended for its caller.
enum Ran<S: Store> {
    Answer(Answer, Option<Loader>),
    Serve(Served, Lead<S>),
}

impl<S: Store> Lead<S> {
    fn new(inner: Arc<Inner<S>>, call: CallId, loader: Option<Loader>) -> Lead<S> {
        Lead { inner, call, loader, running: None, live: true }
    }

    /// Drive to the caller's answer. The loader comes back if it was never started; a stale
    /// serve comes back with the call, for [`Lead::background`] or `replace_served`.
    async fn run(mut self, action: Action) -> Ran<S> {
        match self.drive(action).await {
            Driven::Answer(a) => Ran::Answer(a, self.loader.take()),
            Driven::Serve(v) => Ran::Serve(v, self),
        }
    }

    /// The caller has its stale value: the rest of the call (the refresh) runs in a task.
    fn background(mut self) {
        tokio::spawn(async move {
            let call = self.call;
            let next = self.inner.decide(|c| c.handle(now_ms(), call, Input::Continue));
            // Its end (and any error, as an event) is the coordinator's to report.
            let _ = self.drive(next).await;
        });
    }

    async fn drive(&mut self, mut action: Action) -> Driven {
        let call = self.call;
        loop {
            let input = match action {
                Action::Store(op) => into_input(self.inner.exec(op).await),
                Action::FastRead { key, gen_keys } => {
                    let r = self.inner.store.fast_read(&key, &gen_keys).await;
                    action = self.inner.decide(|c| c.handle_fast_read(now_ms(), call, r));
                    continue;
                }
                Action::StartLoad { timeout_at } => {
                    match self.loader.take() {
                        // A task, so a panicking loader is a failed load, not a stranded key.
                        Some(l) => {
                            // The loader's task knows which flight it loads (re-entrance check).
                            let mut chain = LOADING.try_with(Vec::clone).unwrap_or_default();
                            chain.push((Arc::as_ptr(&self.inner) as *const () as usize, FlightId(call.0)));
                            self.running = Some(tokio::spawn(LOADING.scope(chain, l())));
                        }
                        None => {
                            action = self.inner.decide(|c| {
                                c.handle(now_ms(), call, Input::LoadFailed("the loader was already used".into()))
                            });
                            continue;
                        }
                    }
                    self.await_load(timeout_at).await
                }
                Action::AwaitLoad { timeout_at } => self.await_load(timeout_at).await,
                Action::Wait { until_ms } => {
                    tokio::time::sleep(std::time::Duration::from_millis(until_ms.saturating_sub(now_ms()))).await;
                    Input::Timeout
                }
                Action::Serve(v) => return Driven::Serve(v),
                Action::Answer(a) => {
                    self.live = false;
                    return Driven::Answer(a);
                }
                Action::Finished => {
                    self.live = false;
                    return Driven::Answer(Err(FlowError::Protocol("finished without an answer".into())));
                }
            };
            action = self.inner.decide(|c| c.handle(now_ms(), call, input));
        }
    }

    async fn await_load(&mut self, timeout_at: Option<u64>) -> Input {
        let Some(task) = self.running.as_mut() else {
            return Input::LoadFailed("no loader running".into());
        };
        let r = match timeout_at {
            None => task.await,
            Some(t) => {
                let wait = std::time::Duration::from_millis(t.saturating_sub(now_ms()));
                match tokio::time::timeout(wait, task).await {
                    Ok(r) => r,
                    Err(_) => return Input::Timeout,
                }
            }
        };
        self.running = None;
        match r {
            Ok(Ok(l)) => Input::Loaded(l),
            Ok(Err(e)) => Input::LoadFailed(e),
            Err(e) if e.is_panic() => Input::LoadFailed(format!("loader panicked: {}", panic_message(e))),
            Err(e) => Input::LoadFailed(format!("loader task ended: {e}")),
        }
    }
}

impl<S: Store> Drop for Lead<S> {
    fn drop(&mut self) {
        if let Some(t) = self.running.take() {
            t.abort();
        }
        if self.live {
            self.inner.cancel(self.call);
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let p = e.into_panic();
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string payload".into())
}

fn into_input(r: Result<StoreReply, StoreFailure>) -> Input {
    match r {
        Ok(r) => Input::Store(r),
        Err(e) => Input::StoreFailed(e),
    }
}

fn decode_json<T: DeserializeOwned>(s: &Served) -> Result<Option<T>, Error> {
    if s.negative {
        return Ok(None);
    }
    if s.codec != codec::JSON {
        return Err(Error::Codec(format!("entry has codec {}, expected JSON", s.codec)));
    }
    serde_json::from_slice(&s.value).map(Some).map_err(|e| Error::Codec(e.to_string()))
}
