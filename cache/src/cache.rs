//! [`Cache`]: drives `karlton_core` flows over a [`Store`].

use crate::store::{Store, now_ms};
use karlton_core::entry::codec;
use karlton_core::flow::{self, Write};
use karlton_core::key::KeyError;
use karlton_core::{
    AtomicStats, FlowError, GetOrLoad, Input, InvalidateMode, Key, Loaded, Policy, PolicyError,
    Request, Served, Stats, Step, StoreFailure, StoreOp, StoreReply,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch};

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

type Outcome = Result<Served, FlowError>;

/// What a single-flight leader tells the callers that joined it.
#[derive(Clone)]
enum Flight {
    /// The shared answer.
    Value(Outcome),
    /// The leader's fill was refused (invalidated, bumped or superseded while it loaded): its
    /// value may be older than what a joiner is entitled to, so joiners run their own flow.
    Retry,
}
type BoxLoad = Pin<Box<dyn Future<Output = Result<Loaded, String>> + Send>>;

struct Inner<S> {
    store: S,
    policy: Arc<Policy>,
    stats: AtomicStats,
    /// In-process single-flight: one driver per key; others wait on its result.
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Flight>>>>,
    seed: AtomicU64,
    /// store clock − local clock, learned from reads (for writes that do not read first).
    skew: AtomicI64,
    on_background_error: Mutex<Option<Arc<dyn Fn(&str, &FlowError) + Send + Sync>>>,
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

/// Removes this driver's single-flight entry when the driver ends, however it ends — but only
/// if the entry is still its own (a newer leader may have replaced it).
struct FlightGuard<S: Store> {
    inner: Arc<Inner<S>>,
    key: String,
    own: watch::Receiver<Option<Flight>>,
    armed: bool,
}

impl<S: Store> FlightGuard<S> {
    fn disarm(&mut self) {
        if self.armed {
            self.armed = false;
            let mut map = self.inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&self.key).is_some_and(|rx| rx.same_channel(&self.own)) {
                map.remove(&self.key);
            }
        }
    }
}

impl<S: Store> Drop for FlightGuard<S> {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl<S: Store> Cache<S> {
    /// A cache over `store` with a default `policy`.
    pub fn new(store: S, policy: Policy) -> Cache<S> {
        let seed = now_ms() ^ (&policy as *const Policy as u64).rotate_left(32);
        Cache {
            inner: Arc::new(Inner {
                store,
                policy: Arc::new(policy),
                stats: AtomicStats::default(),
                inflight: Mutex::new(HashMap::new()),
                seed: AtomicU64::new(seed),
                skew: AtomicI64::new(0),
                on_background_error: Mutex::new(None),
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

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.inner.stats.snapshot();
        s.evictions = self.inner.store.evictions();
        s
    }

    fn next_seed(&self) -> u64 {
        self.inner.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
    }

    fn gen_keys(key: &Key, tags: &[String]) -> Vec<String> {
        let mut g = Vec::with_capacity(1 + tags.len());
        g.push(key.generation_key());
        g.extend(tags.iter().map(|t| key.tag_key(t)));
        g
    }

    /// Typed read-through: the cached value, or `loader`'s (JSON-encoded, cached for the policy's
    /// TTLs). `Ok(None)` from the loader is a "not found", cached for `negative_ttl_ms`.
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
        let served = self.get_or_load_raw(key, opts, load).await?;
        decode_json(&served)
    }

    /// Byte-level read-through: the loader returns encoded bytes; the result says where the
    /// value came from. Bindings and custom codecs use this.
    pub async fn get_or_load_raw<F, Fut>(&self, key: &Key, opts: &Options, loader: F) -> Result<Served, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded, String>> + Send + 'static,
    {
        let k = key.as_str();
        let policy = opts.policy.clone().unwrap_or_else(|| self.inner.policy.clone());
        let tagged;
        let gen_keys: &[String] = if opts.tags.is_empty() {
            key.generation_keys()
        } else {
            tagged = Self::gen_keys(key, &opts.tags);
            &tagged
        };
        // A store failure seen by the fast read is handed to the flow's first read, so a
        // down store costs one timeout, not two.
        let mut failed_read: Option<StoreFailure> = None;
        if let Some(mem) = self.inner.store.memory() {
            let hit = flow::fast_hit(mem, now_ms(), k, gen_keys, &policy, self.next_seed(), &self.inner.stats);
            if let Some(s) = hit {
                return Ok(s);
            }
        } else if self.inner.store.has_fast_read()
            // A flow for this key is already running here: skip straight to joining it.
            && !self.inner.inflight.lock().unwrap_or_else(|p| p.into_inner()).contains_key(k)
        {
            let r = self.inner.store.fast_read(k, gen_keys, &policy, self.next_seed(), &self.inner.stats).await;
            match r {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => {}
                Err(e) => failed_read = Some(e),
            }
        }
        let req = Request { key: k.to_owned(), gen_keys: gen_keys.to_vec(), tags: opts.tags.clone() };
        let mut loader: Option<Box<dyn FnOnce() -> BoxLoad + Send>> =
            Some(Box::new(move || Box::pin(loader()) as BoxLoad));
        // Past the fast path: one flow per key per process (single-flight). Every other caller
        // for the key joins it without touching the store, so a stampede costs the store a
        // small constant per process, not per caller.
        loop {
            let joined = {
                let mut map = self.inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
                match map.get(&req.key) {
                    Some(rx) => Ok(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        map.insert(req.key.clone(), rx.clone());
                        Err((tx, rx))
                    }
                }
            };
            match joined {
                Ok(mut rx) => {
                    let shared = rx.wait_for(|v| v.is_some()).await.map(|v| v.clone());
                    match shared {
                        Ok(Some(Flight::Value(v))) => {
                            self.inner.stats.add(&joined_stats(&v));
                            return v.map_err(Error::from);
                        }
                        // The leader's fill was refused (its value may predate an invalidation
                        // this caller must see), or the leader vanished: run again.
                        _ => continue,
                    }
                }
                Err((tx, own)) => {
                    let guard = FlightGuard { inner: self.inner.clone(), key: req.key.clone(), own, armed: true };
                    let mut flow = GetOrLoad::new(req, policy, self.next_seed());
                    let now = now_ms();
                    let mut first = flow.start(now);
                    if let Some(e) = failed_read.take() {
                        first = flow.handle(now, Input::StoreFailed(e));
                    }
                    let (caller_tx, caller_rx) = oneshot::channel();
                    let l = loader.take().expect("loader used once");
                    // Spawned, so a cancelled caller cannot strand the callers that joined.
                    tokio::spawn(drive(self.inner.clone(), flow, first, Some(l), Some(caller_tx), Some((tx, guard))));
                    return match caller_rx.await {
                        Ok(r) => r.map_err(Error::from),
                        Err(_) => Err(Error::Flow(FlowError::Protocol("driver ended without a result".into()))),
                    };
                }
            }
        }
    }

    /// The cached value if fresh or stale (never past hard expiry); no load.
    pub async fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>, Error> {
        match self.get_raw(key, &[]).await? {
            Some(s) => decode_json(&s),
            None => Ok(None),
        }
    }

    /// Byte-level [`Cache::get`].
    pub async fn get_raw(&self, key: &Key, tags: &[String]) -> Result<Option<Served>, Error> {
        let (k, gen_keys) = (key.build(), Self::gen_keys(key, tags));
        if let Some(mem) = self.inner.store.memory() {
            if let Some(s) = flow::fast_hit(mem, now_ms(), &k, &gen_keys, &self.inner.policy, self.next_seed(), &self.inner.stats) {
                return Ok(Some(s));
            }
        } else if self.inner.store.has_fast_read() {
            let r = self.inner.store.fast_read(&k, &gen_keys, &self.inner.policy, self.next_seed(), &self.inner.stats).await;
            match r {
                Ok(Some(s)) => return Ok(Some(s)),
                Ok(None) => {}
                Err(e) => {
                    let mut stats = Stats::default();
                    let r = flow::get_on_store_error(&self.inner.policy, e, &mut stats).map_err(Error::from);
                    self.inner.stats.add(&stats);
                    return r;
                }
            }
        }
        let op = flow::get_op(&k, &gen_keys);
        let mut stats = Stats::default();
        let r = match self.exec(op).await {
            Ok(StoreReply::Read(r)) => Ok(flow::get_result(&r, &self.inner.policy, &mut stats)),
            Ok(other) => Err(FlowError::Protocol(format!("read got {other:?}")).into()),
            Err(e) => flow::get_on_store_error(&self.inner.policy, e, &mut stats).map_err(Error::from),
        };
        self.inner.stats.add(&stats);
        r
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
        let store_now = now_ms().saturating_add_signed(self.inner.skew.load(Ordering::Relaxed));
        let op = flow::set_op(w, policy.unwrap_or(&self.inner.policy), store_now, self.next_seed());
        match self.exec(op).await {
            Ok(StoreReply::Stored) => Ok(true),
            Ok(StoreReply::Rejected { .. }) => {
                self.inner.stats.add(&Stats { fills_rejected: 1, ..Default::default() });
                Ok(false)
            }
            Ok(other) => Err(FlowError::Protocol(format!("fill got {other:?}")).into()),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// Delete the entry and revoke its lease: the next reader loads, and a load already in
    /// flight cannot fill (C2). Returns whether an entry was there.
    pub async fn invalidate(&self, key: &Key) -> Result<bool, Error> {
        self.invalidate_with(key, InvalidateMode::Delete).await
    }

    /// [`Cache::invalidate`] choosing delete or mark-stale.
    pub async fn invalidate_with(&self, key: &Key, mode: InvalidateMode) -> Result<bool, Error> {
        match self.exec(flow::invalidate_op(&key.build(), mode)).await {
            Ok(StoreReply::Invalidated { existed }) => Ok(existed),
            Ok(other) => Err(FlowError::Protocol(format!("invalidate got {other:?}")).into()),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// Orphan every entry of `key`'s namespace (T1): one counter moves; no scan.
    pub async fn bump(&self, key: &Key) -> Result<u64, Error> {
        self.bump_key(&key.generation_key()).await
    }

    /// Orphan every entry filled with `tag` in `key`'s namespace (T1).
    pub async fn invalidate_tag(&self, key: &Key, tag: &str) -> Result<u64, Error> {
        self.bump_key(&key.tag_key(tag)).await
    }

    async fn bump_key(&self, gen_key: &str) -> Result<u64, Error> {
        match self.exec(flow::bump_op(gen_key, self.next_seed())).await {
            Ok(StoreReply::Bumped { generation }) => Ok(generation),
            Ok(other) => Err(FlowError::Protocol(format!("bump got {other:?}")).into()),
            Err(e) => Err(self.store_error(e)),
        }
    }

    async fn exec(&self, op: StoreOp) -> Result<StoreReply, StoreFailure> {
        let r = match self.inner.store.execute_now(&op) {
            Some(r) => r,
            None => self.inner.store.execute(op).await,
        };
        learn_skew(&self.inner.skew, &r);
        r
    }

    fn store_error(&self, e: StoreFailure) -> Error {
        self.inner.stats.add(&Stats { store_errors: 1, ..Default::default() });
        Error::Flow(FlowError::Store(e.message))
    }
}

/// What a caller that joined another caller's flow counts: the same kind of answer.
fn joined_stats(v: &Outcome) -> Stats {
    let mut s = Stats::default();
    match v {
        Ok(x) if x.negative && x.cached => s.negative_hits = 1,
        Ok(x) => match x.source {
            karlton_core::Source::Fresh => s.hits_fresh = 1,
            karlton_core::Source::Stale => s.hits_stale = 1,
            karlton_core::Source::Loaded => s.misses = 1,
            karlton_core::Source::StaleOnError | karlton_core::Source::StaleOnTimeout => s.stale_if_error = 1,
        },
        Err(_) => s.misses = 1,
    }
    s
}

fn into_input(r: Result<StoreReply, StoreFailure>) -> Input {
    match r {
        Ok(r) => Input::Store(r),
        Err(e) => Input::StoreFailed(e),
    }
}

fn learn_skew(skew: &AtomicI64, r: &Result<StoreReply, StoreFailure>) {
    if let Ok(StoreReply::Read(r)) = r {
        skew.store(r.now_ms as i64 - now_ms() as i64, Ordering::Relaxed);
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

/// Drive a flow to the end. Sends the first answer (Serve or Done) to `flight` and removes the
/// single-flight entry at that moment; any rest (background fill) continues after.
async fn drive<S: Store>(
    inner: Arc<Inner<S>>,
    mut flow: GetOrLoad,
    mut step: Step,
    mut loader: Option<Box<dyn FnOnce() -> BoxLoad + Send>>,
    mut caller: Option<oneshot::Sender<Outcome>>,
    mut flight: Option<(watch::Sender<Option<Flight>>, FlightGuard<S>)>,
) {
    let mut running: Option<BoxLoad> = None;
    let result = loop {
        step = match step {
            Step::Store(op) => {
                let r = inner.store.execute(op).await;
                learn_skew(&inner.skew, &r);
                flow.handle(now_ms(), into_input(r))
            }
            Step::Load { timeout_at } => {
                if running.is_none() {
                    match loader.take() {
                        Some(l) => running = Some(l()),
                        None => break Err(FlowError::Protocol("loader requested twice".into())),
                    }
                }
                let fut = running.as_mut().expect("set above");
                let input = match timeout_at {
                    None => load_input(fut.await),
                    Some(t) => {
                        let wait = std::time::Duration::from_millis(t.saturating_sub(now_ms()));
                        match tokio::time::timeout(wait, fut).await {
                            Ok(r) => load_input(r),
                            Err(_) => Input::Timeout,
                        }
                    }
                };
                if !matches!(input, Input::Timeout) {
                    running = None;
                }
                flow.handle(now_ms(), input)
            }
            Step::Wait { until_ms } => {
                let wait = until_ms.saturating_sub(now_ms());
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                flow.handle(now_ms(), Input::Timeout)
            }
            Step::Serve(v) => {
                if let Some((tx, mut guard)) = flight.take() {
                    guard.disarm();
                    let _ = tx.send(Some(Flight::Value(Ok(v.clone()))));
                }
                if let Some(c) = caller.take() {
                    let _ = c.send(Ok(v));
                }
                flow.handle(now_ms(), Input::Continue)
            }
            Step::Done(r) => break r,
        };
    };
    inner.stats.add(flow.stats());
    if let Some((tx, mut guard)) = flight.take() {
        guard.disarm();
        let shared = if flow.fill_rejected().is_some() { Flight::Retry } else { Flight::Value(result.clone()) };
        let _ = tx.send(Some(shared));
    }
    if let Some(c) = caller.take() {
        // The leader's own caller gets its load even if the fill was refused (DESIGN §1).
        let _ = c.send(result);
    } else if let Err(e) = &result {
        if flow.served() {
            let cb = inner.on_background_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(cb) = cb {
                cb(&flow.request().key, e);
            }
        }
    }
}

fn load_input(r: Result<Loaded, String>) -> Input {
    match r {
        Ok(l) => Input::Loaded(l),
        Err(e) => Input::LoadFailed(e),
    }
}
