//! The read and write paths as sans-IO state machines.
//!
//! # Driving a [`GetOrLoad`]
//!
//! ```text
//! let mut step = flow.start(now);
//! loop {
//!     step = match step {
//!         Step::Store(op)        => flow.handle(now, store.run(op).map_or_else(Input::StoreFailed, Input::Store)),
//!         Step::Load{timeout_at} => /* start the loader once; await it or timeout_at */
//!                                   flow.handle(now, Input::Loaded(..) | Input::LoadFailed(..) | Input::Timeout),
//!         Step::Wait{until_ms}   => { sleep_until(until_ms); flow.handle(now, Input::Timeout) }
//!         Step::Serve(v)         => { answer_caller(v); flow.handle(now, Input::Continue) } // rest runs in background
//!         Step::Done(r)          => break r,   // answer the caller unless already served
//!     }
//! }
//! ```
//!
//! `now` is the driver's local clock in ms (any epoch, monotonic is best); the store's clock is
//! learned from each read, so entry timestamps are on the store clock and client skew drops out.
//! Inputs the current state does not expect are answered with [`Step::Done`] carrying
//! [`FlowError::Protocol`] — never a panic.
//!
//! Writes (`get`, `set`, `invalidate`, `bump`) are one store op each: pure functions build the
//! op ([`get_op`], [`set_op`], [`invalidate_op`], [`bump_op`]) and interpret the reply.

use crate::entry::Entry;
use crate::freshness::{Decision, decide, jitter_reduction, jittered_ttls};
use crate::policy::{MAX_LEASE_TTL_MS, OnLockTimeout, OnStoreError, Policy};
use crate::rand::SplitMix64;
use crate::stats::Stats;
use crate::store::{
    Bytes, InvalidateMode, LeaseMode, LeaseOutcome, ReadReply, StoreFailure, StoreOp, StoreReply,
    Token,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where a served value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A fresh entry.
    Fresh,
    /// A stale entry, while one caller refreshes.
    Stale,
    /// This caller's load.
    Loaded,
    /// A stale entry because the loader failed (stale-if-error).
    StaleOnError,
    /// A stale entry because the loader or the lock wait was too slow.
    StaleOnTimeout,
}

/// A value for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// Value bytes (empty for a negative).
    #[serde(with = "value_hex")]
    pub value: Bytes,
    /// Codec that encoded `value`.
    pub codec: u8,
    /// A cached or loaded "not found".
    pub negative: bool,
    /// The entry's version, if any.
    pub version: Option<u64>,
    /// Where it came from.
    pub source: Source,
    /// Whether it is (now) in the store.
    pub cached: bool,
}

mod value_hex {
    use crate::store::{Bytes, hex};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map(Into::into).ok_or_else(|| D::Error::custom("invalid hex"))
    }
}

/// Why a flow failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", content = "message", rename_all = "snake_case")]
pub enum FlowError {
    /// The loader failed and no stale value could be served.
    #[error("loader failed: {0}")]
    Load(String),
    /// The loader ran past `load_hard_timeout_ms`.
    #[error("loader timed out after {0} ms")]
    LoadTimeout(u64),
    /// Waited `lock_wait_ms` for another caller's load (`on_lock_timeout = error`).
    #[error("timed out after {0} ms waiting for another caller's load")]
    LockTimeout(u64),
    /// The store failed (`on_store_error = error`).
    #[error("{0}")]
    Store(String),
    /// The driver fed an input the flow did not ask for (a driver bug).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A loader asked for a key its own call chain is loading (`get_or_load` of its own key,
    /// directly or through other keys' loaders): waiting would deadlock. Names the key.
    #[error("re-entrant get_or_load of `{0}`: this call chain is already loading it (waiting would deadlock)")]
    Reentrant(String),
}

impl FlowError {
    /// The error's kind, as its wire form names it (`load`, `load_timeout`, `lock_timeout`,
    /// `store`, `protocol`, `reentrant`): each host maps these to its own error classes.
    pub fn kind(&self) -> &'static str {
        match self {
            FlowError::Load(_) => "load",
            FlowError::LoadTimeout(_) => "load_timeout",
            FlowError::LockTimeout(_) => "lock_timeout",
            FlowError::Store(_) => "store",
            FlowError::Protocol(_) => "protocol",
            FlowError::Reentrant(_) => "reentrant",
        }
    }
}

/// What the loader produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded {
    /// Encoded value (empty for negative).
    #[serde(with = "value_hex")]
    pub value: Bytes,
    /// Codec id of `value`.
    pub codec: u8,
    /// "Not found" (cached for `negative_ttl_ms`).
    pub negative: bool,
    /// Source version, if the source has one.
    pub version: Option<u64>,
}

/// Inputs a driver feeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", content = "data", rename_all = "snake_case")]
pub enum Input {
    /// The reply to the last [`Step::Store`].
    Store(StoreReply),
    /// The last [`Step::Store`] failed.
    StoreFailed(StoreFailure),
    /// The loader returned.
    Loaded(Loaded),
    /// The loader raised/rejected (message for humans).
    LoadFailed(String),
    /// A [`Step::Wait`] deadline, or a [`Step::Load`] `timeout_at`, passed.
    Timeout,
    /// Resume after [`Step::Serve`].
    Continue,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", content = "data", rename_all = "snake_case")]
pub enum Step {
    /// Run this op against the store; feed [`Input::Store`] or [`Input::StoreFailed`].
    Store(StoreOp),
    /// Make sure the loader is running (start it the first time), then feed its result — or
    /// [`Input::Timeout`] once the local clock reaches `timeout_at`.
    ///
    /// `timeout_at` is the phase's deadline (soft timeout, then `load_hard_timeout_ms`, which
    /// every load has), or sooner: a load that will fill wakes halfway through its lease to
    /// extend it ([`StoreOp::Extend`], with the loader still running — keep its result for the
    /// next `Load` step), so a load longer than its lease still fills and nobody else loads
    /// the key meanwhile. Extensions stop at the deadline.
    Load {
        /// Local-clock time to feed [`Input::Timeout`] at, if the loader has not answered.
        timeout_at: Option<u64>,
    },
    /// Sleep until the local clock reaches `until_ms`, then feed [`Input::Timeout`].
    Wait {
        /// Local-clock wake-up time.
        until_ms: u64,
    },
    /// Answer the caller now with this value; then feed [`Input::Continue`] and keep driving in
    /// the background (a refresh follows).
    Serve(Served),
    /// Finished. If a value was already served, this result is only for logging/metrics.
    Done(Result<Served, FlowError>),
}

/// Per-call inputs of [`GetOrLoad`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The built entry key ([`crate::key::Key::build`]).
    pub key: String,
    /// Generation counters this entry depends on (namespace, then tags).
    #[serde(default)]
    pub gen_keys: Vec<String>,
    /// Tags recorded in the entry (informational; invalidation goes through `gen_keys`).
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Soft timeout phase: a stale value is at hand.
    Soft,
    Hard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Load,
    TakeLease,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Start,
    Reading { force: bool },
    /// A value was served; on Continue, load (lease held) or try to take the lease.
    AfterServe(After),
    Waiting,
    Loading { phase: Phase, fill: bool },
    /// Extending the lease while the loader keeps running; back to `Loading` on the reply.
    Extending { phase: Phase, fill: bool },
    Filling(Served),
    Releasing(Result<Served, FlowError>),
    Done,
}

/// The read path: fresh hit, stale-while-revalidate, lease + load + fill, wait with backoff,
/// stale-if-error, negative caching, early refresh. See the module docs for the drive loop.
#[derive(Debug, Clone)]
pub struct GetOrLoad {
    req: Request,
    policy: Arc<Policy>,
    rng: SplitMix64,
    state: State,
    stats: Stats,
    started_local: u64,
    /// Store clock at the last read and the local time it was seen, to convert times.
    read_store: Option<u64>,
    read_local: u64,
    /// Local time the read that gave `read_store` was sent: with it, an upper bound on the
    /// store clock (the store stamped its reply after this), which stale-on-error checks need.
    read_sent: u64,
    /// Local time the read in flight was sent (it becomes `read_sent` when its reply arrives;
    /// a read that fails leaves the last estimate alone).
    sending_at: u64,
    generations: Vec<u64>,
    token: Option<Token>,
    /// Best stale value seen (for stale-if-error / timeouts), decoded.
    stale: Option<Entry>,
    /// The value handed out via [`Step::Serve`], if any.
    served: Option<Served>,
    /// Why the store refused this flow's fill, if it did.
    rejected: Option<crate::store::RejectReason>,
    attempt: u32,
    load_started: u64,
    /// The current load phase's deadline (local clock), as last handed out in a `Step::Load`.
    load_deadline: Option<u64>,
    /// When to extend the lease held for a running load (local clock): halfway through the
    /// lease as seen from when the op that granted or last extended it was sent.
    extend_at: Option<u64>,
    /// The last instant an extension may be sent (local clock): a lease never lives longer than
    /// [`MAX_LEASE_TTL_MS`] from the read that took it, so a load that read a generation
    /// counter before a bump can never outlive the bumped counter (kept that long on Redis),
    /// whose expiry would let its pre-bump fill pass.
    extend_until: u64,
    /// The last `Step::Load`'s `timeout_at` is `extend_at` (not the phase deadline): the
    /// `Input::Timeout` that answers it extends the lease instead of ending the phase.
    wake_extends: bool,
    /// Local time the extend in flight was sent.
    extend_sent: u64,
    /// A value the host could not decode: an entry holding it reads as a miss.
    distrusted: Option<Bytes>,
}

impl GetOrLoad {
    /// A new flow. `seed` feeds every random choice (jitter, XFetch); lease tokens come from
    /// the store.
    pub fn new(req: Request, policy: Arc<Policy>, seed: u64) -> GetOrLoad {
        GetOrLoad {
            req,
            policy,
            rng: SplitMix64::new(seed),
            state: State::Start,
            stats: Stats::default(),
            started_local: 0,
            read_store: None,
            read_local: 0,
            read_sent: 0,
            sending_at: 0,
            generations: Vec::new(),
            token: None,
            stale: None,
            served: None,
            rejected: None,
            attempt: 0,
            load_started: 0,
            load_deadline: None,
            extend_at: None,
            extend_until: 0,
            wake_extends: false,
            extend_sent: 0,
            distrusted: None,
        }
    }

    /// Counters for this call so far (add them to the driver's totals at the end).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The policy this flow runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Treat a cached entry whose value bytes equal `value` as a miss (its value did not
    /// decode in the host): the flow takes the lease, loads and overwrites it. Call before
    /// [`GetOrLoad::start`].
    pub fn distrust(&mut self, value: Bytes) {
        self.distrusted = Some(value);
    }

    /// The value this flow handed out with [`Step::Serve`] did not decode in the host: take it
    /// back. The hit it counted becomes a miss (the caller of this counts the corrupt entry),
    /// the entry holding those bytes reads as a miss from now on, and the caller waits for
    /// this flow's answer again — the refresh it was about to run in the background (the
    /// lease it holds, the loader already running after a soft timeout) now answers the
    /// caller. Returns the next step and the bytes taken back, or `None` when no served value
    /// is pending (the flow is unchanged then).
    pub fn take_back_served(&mut self, now: u64) -> Option<(Step, Bytes)> {
        let after = match &self.state {
            State::AfterServe(a) => Some(*a),
            State::Loading { phase: Phase::Hard, .. } => None,
            _ => return None,
        };
        let bad = self.served.take()?;
        self.stats.sub(&read_counts(&bad));
        self.stats.misses += 1;
        // Never serve those bytes again, not even on error.
        if self.stale.as_ref().is_some_and(|e| e.value[..] == bad.value[..]) {
            self.stale = None;
        }
        self.distrusted = Some(bad.value.clone());
        let step = match after {
            Some(After::Load) => self.load(now, true),
            Some(After::TakeLease) => self.read(now, true),
            // The loader runs (it passed its soft timeout): keep waiting for it.
            None => self.load_step(self.hard_deadline()),
        };
        Some((step, bad.value))
    }

    /// Start as a caller whose `lock_wait` already ran out (an in-process joiner whose flight
    /// did not end in time): count the miss and the timeout, and load without the lease — the
    /// value answers this caller only, nothing is filled.
    pub fn load_unleased(&mut self, now: u64) -> Step {
        self.started_local = now;
        self.stats.misses += 1;
        self.stats.lease_timeouts += 1;
        self.load(now, false)
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.req
    }

    /// Whether a value was already handed out via [`Step::Serve`].
    pub fn served(&self) -> bool {
        self.served.is_some()
    }

    /// Why the store refused this flow's fill, if it did. A driver that shares one flow's
    /// result with other in-process callers must not hand them a refused value (it was
    /// superseded by an invalidation, a newer version or a bump): they re-run instead.
    pub fn fill_rejected(&self) -> Option<crate::store::RejectReason> {
        self.rejected
    }

    /// The lease this flow holds, if any (a driver may `Extend` it during a long load).
    pub fn token(&self) -> Option<Token> {
        self.token
    }

    /// Run [`Step::Store`] steps through a synchronous store (the memory store, or any
    /// blocking client) until the flow asks for something else; returns that step. Drivers
    /// use it for the hit path so a fresh hit is one call with no per-step crossings.
    pub fn run_store_steps(
        &mut self,
        now: u64,
        mut step: Step,
        mut exec: impl FnMut(&StoreOp) -> Result<StoreReply, StoreFailure>,
    ) -> Step {
        while let Step::Store(op) = &step {
            let input = match exec(op) {
                Ok(r) => Input::Store(r),
                Err(e) => Input::StoreFailed(e),
            };
            step = self.handle(now, input);
        }
        step
    }

    /// First step.
    pub fn start(&mut self, now: u64) -> Step {
        self.started_local = now;
        self.read(now, false)
    }

    fn read(&mut self, now: u64, force: bool) -> Step {
        self.state = State::Reading { force };
        self.sending_at = now;
        Step::Store(StoreOp::Read {
            key: self.req.key.clone(),
            gen_keys: self.req.gen_keys.clone(),
            lease: if force { LeaseMode::Force } else { LeaseMode::IfNeeded },
            lease_ttl_ms: self.policy.lease_ttl_ms(),
        })
    }

    /// Store-clock estimate at local time `now`, counted from when the last read's reply
    /// arrived: a lower bound (the store stamped the reply earlier), so a fill's instants never
    /// give an entry more than its TTL.
    fn store_now(&self, now: u64) -> u64 {
        match self.read_store {
            Some(s) => s.saturating_add(now.saturating_sub(self.read_local)),
            None => now,
        }
    }

    /// Store-clock estimate counted from when the last read was sent: an upper bound, for C4
    /// (a stale value is never served on error past `hard_at + stale_if_error`, even when the
    /// read's reply was held up, e.g. by a process pause, before it arrived).
    fn store_now_max(&self, now: u64) -> u64 {
        match self.read_store {
            Some(s) => s.saturating_add(now.saturating_sub(self.read_sent)),
            None => now,
        }
    }

    fn done(&mut self, r: Result<Served, FlowError>) -> Step {
        self.state = State::Done;
        Step::Done(r)
    }

    fn serve_entry(e: &Entry, source: Source) -> Served {
        Served {
            value: e.value.as_slice().into(),
            codec: e.codec,
            negative: e.negative,
            version: e.version,
            source,
            cached: true,
        }
    }

    /// Feed an input; get the next step.
    pub fn handle(&mut self, now: u64, input: Input) -> Step {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, input) {
            (State::Reading { force }, Input::Store(StoreReply::Read(r))) => {
                self.on_read(now, force, r)
            }
            (State::Reading { .. }, Input::StoreFailed(_)) if self.served.is_some() => {
                // Background refresh could not reach the store: the caller has its value.
                self.stats.store_errors += 1;
                self.done_background()
            }
            (State::Reading { .. }, Input::StoreFailed(e)) => {
                self.stats.store_errors += 1;
                match self.policy.on_store_error() {
                    OnStoreError::Error => self.done(Err(FlowError::Store(e.message))),
                    OnStoreError::Load => self.load(now, false),
                }
            }
            (State::AfterServe(After::Load), Input::Continue) => self.load(now, true),
            (State::AfterServe(After::TakeLease), Input::Continue) => self.read(now, true),
            (State::Waiting, Input::Timeout) => self.read(now, false),
            (State::Loading { fill, .. }, Input::Loaded(l)) => self.on_loaded(now, fill, l),
            (State::Loading { .. }, Input::LoadFailed(msg)) => {
                self.on_load_failed(now, FlowError::Load(msg))
            }
            // A wake-up for the lease, unless the driver woke so late that the phase deadline
            // passed too: then the deadline's rule applies.
            (State::Loading { phase, fill }, Input::Timeout)
                if self.wake_extends && self.load_deadline.is_none_or(|d| now < d) =>
            {
                self.wake_extends = false;
                self.state = State::Loading { phase, fill };
                // (`wake_extends` is set only for a load that fills under a lease.)
                match self.token {
                    Some(token) => {
                        self.state = State::Extending { phase, fill };
                        self.extend_sent = now;
                        Step::Store(StoreOp::Extend {
                            key: self.req.key.clone(),
                            token,
                            lease_ttl_ms: self.policy.lease_ttl_ms(),
                        })
                    }
                    _ => self.load_step(self.load_deadline),
                }
            }
            (State::Extending { phase, fill }, Input::Store(StoreReply::Lease { ok })) => {
                // Lost (revoked or run out and taken): stop extending; the fill will be refused
                // and handled as any refused fill.
                self.extend_at = ok.then(|| self.extend_sent.saturating_add(self.half_lease()));
                if ok {
                    self.stats.lease_extensions += 1;
                }
                self.state = State::Loading { phase, fill };
                self.load_step(self.load_deadline)
            }
            (State::Extending { phase, fill }, Input::StoreFailed(_)) => {
                // Try again sooner: the lease may run out before the next regular extension.
                self.stats.store_errors += 1;
                self.extend_at = Some(now.saturating_add((self.half_lease() / 2).max(1)));
                self.state = State::Loading { phase, fill };
                self.load_step(self.load_deadline)
            }
            (State::Loading { phase: Phase::Soft, fill }, Input::Timeout) => {
                // Slow loader with a stale value at hand: serve it, keep loading.
                let usable = self.stale_usable(now);
                match self.stale.clone() {
                    Some(e) if usable && self.served.is_none() => {
                        self.stats.stale_if_error += 1;
                        self.state = State::Loading { phase: Phase::Hard, fill };
                        self.serve(Self::serve_entry(&e, Source::StaleOnTimeout))
                    }
                    _ => {
                        self.state = State::Loading { phase: Phase::Hard, fill };
                        self.load_step(self.hard_deadline())
                    }
                }
            }
            (State::Loading { phase: Phase::Soft, fill }, Input::Continue) => {
                self.state = State::Loading { phase: Phase::Hard, fill };
                self.load_step(self.hard_deadline())
            }
            (State::Loading { phase: Phase::Hard, fill }, Input::Continue) => {
                self.state = State::Loading { phase: Phase::Hard, fill };
                self.load_step(self.hard_deadline())
            }
            (State::Loading { phase: Phase::Hard, .. }, Input::Timeout) => {
                let t = self.policy.load_hard_timeout_ms();
                self.on_load_failed(now, FlowError::LoadTimeout(t))
            }
            (State::Filling(served), Input::Store(reply)) => {
                match reply {
                    StoreReply::Stored => {
                        self.token = None; // the fill consumed the lease
                        self.done(Ok(Served { cached: true, ..served }))
                    }
                    StoreReply::Rejected { reason } => {
                        self.stats.fills_rejected += 1;
                        self.rejected = Some(reason);
                        if reason == crate::store::RejectReason::LeaseLost {
                            self.token = None; // nothing of ours left to release
                        }
                        // Generation moved or a newer version is there: our lease is still
                        // live, so give it back now rather than make others wait it out.
                        self.release_then(Ok(Served { cached: false, ..served }))
                    }
                    _ => self.done(Err(FlowError::Protocol("fill got a non-fill reply".into()))),
                }
            }
            (State::Filling(served), Input::StoreFailed(_)) => {
                self.stats.store_errors += 1;
                self.done(Ok(Served { cached: false, ..served }))
            }
            (State::Releasing(r), Input::Store(_)) => {
                self.token = None;
                self.done(r)
            }
            (State::Releasing(r), Input::StoreFailed(_)) => {
                self.stats.store_errors += 1;
                self.token = None;
                self.done(r)
            }
            (state, input) => {
                self.state = State::Done;
                // The names are plain identifiers: quoting them by hand gives the bytes `{:?}`
                // would, without pulling `str`'s Debug (escape tables) into the wasm module.
                Step::Done(Err(FlowError::Protocol(format!(
                    "unexpected input \"{}\" in state \"{}\"",
                    input_name(&input),
                    state_name(&state)
                ))))
            }
        }
    }

    fn hard_deadline(&self) -> Option<u64> {
        Some(self.load_started.saturating_add(self.policy.load_hard_timeout_ms()))
    }

    fn half_lease(&self) -> u64 {
        (self.policy.lease_ttl_ms() / 2).max(1)
    }

    /// The `Step::Load` for the current `Loading` state and phase `deadline`: wake at the
    /// deadline, or sooner to extend the lease when the load will fill. Extensions stop at the
    /// deadline, so a hung loader holds its key for at most `load_hard_timeout_ms` (+ one
    /// lease), not for good.
    fn load_step(&mut self, deadline: Option<u64>) -> Step {
        self.load_deadline = deadline;
        // (A load fills exactly when it holds a lease, so either half alone would do; both are
        // checked so that a broken pairing can never wake for an extension it cannot send.)
        let fills = matches!(self.state, State::Loading { fill: true, .. }) && self.token.is_some();
        let extend = self
            .extend_at
            .filter(|e| fills && deadline.is_none_or(|d| *e < d) && *e <= self.extend_until);
        self.wake_extends = extend.is_some();
        Step::Load { timeout_at: extend.or(deadline) }
    }

    fn on_read(&mut self, now: u64, force: bool, r: ReadReply) -> Step {
        self.read_store = Some(r.now_ms);
        self.read_local = now;
        self.read_sent = self.sending_at;
        self.generations = r.generations;
        let store_now = r.now_ms;
        let mut entry = match r.entry.as_deref().map(Entry::decode) {
            // Counted by whoever reported it (the coordinator), once.
            Some(Ok(e)) if self.distrusted.as_deref() == Some(&e.value[..]) => None,
            Some(Ok(e)) => Some(e),
            Some(Err(_)) => {
                // Counted once per call (a forced re-read sees the same bytes).
                if !force {
                    self.stats.corrupt_entries += 1;
                }
                None
            }
            None => None,
        };
        if r.marked_stale {
            if let Some(e) = entry.as_mut() {
                e.soft_at = e.soft_at.min(store_now);
            }
        }
        let decision = match &entry {
            Some(e) => decide(store_now, e, &self.policy, self.rng.next()),
            None => Decision::Gone,
        };
        let granted = match r.lease {
            LeaseOutcome::Granted { token } => {
                self.token = Some(token);
                // The store started the lease after this read was sent: halfway from then is
                // early enough whatever the reply's delay.
                self.extend_at = Some(self.read_sent.saturating_add(self.half_lease()));
                // An extension sent at t ends the lease near t + lease_ttl.
                self.extend_until = self
                    .read_sent
                    .saturating_add(MAX_LEASE_TTL_MS)
                    .saturating_sub(self.policy.lease_ttl_ms());
                true
            }
            _ => false,
        };
        if force {
            // Early refresh (value already served) or a forced lease after a corrupt entry.
            return match r.lease {
                LeaseOutcome::Granted { .. } => self.load(now, true),
                LeaseOutcome::Held { until_ms } if self.served.is_none() => self.wait(now, until_ms),
                _ if self.served.is_some() => self.done_background(),
                _ => self.read(now, true),
            };
        }
        // Only `Gone` comes without an entry (`decide` ran on it otherwise).
        match (decision, entry) {
            (Decision::Fresh, Some(e)) => {
                self.hit(&e, Source::Fresh);
                if granted {
                    // The store granted a lease the flow does not need (its clock disagreed by
                    // a hair at the boundary): give it back rather than block others.
                    let s = Self::serve_entry(&e, Source::Fresh);
                    return self.release_then(Ok(s));
                }
                let s = Self::serve_entry(&e, Source::Fresh);
                self.done(Ok(s))
            }
            (Decision::RefreshEarly, Some(e)) => {
                self.hit(&e, Source::Fresh);
                self.stats.early_refreshes += 1;
                let s = Self::serve_entry(&e, Source::Fresh);
                self.state =
                    State::AfterServe(if granted { After::Load } else { After::TakeLease });
                self.serve(s)
            }
            (Decision::Stale, Some(e)) => {
                self.hit(&e, Source::Stale);
                let s = Self::serve_entry(&e, Source::Stale);
                if granted {
                    // Serve now; this caller refreshes in the background.
                    self.stale = Some(e);
                    self.state = State::AfterServe(After::Load);
                    self.serve(s)
                } else {
                    self.done(Ok(s))
                }
            }
            (Decision::UsableOnError | Decision::Gone, entry) => {
                if decision == Decision::UsableOnError {
                    self.stale = entry;
                }
                if self.attempt == 0 {
                    self.stats.misses += 1;
                }
                match r.lease {
                    LeaseOutcome::Granted { .. } => self.load(now, true),
                    LeaseOutcome::Held { until_ms } => self.wait(now, until_ms),
                    // The store saw a valid entry that this flow could not use (corrupt
                    // bytes, or a clock hair at the boundary): take the lease by force.
                    LeaseOutcome::NotRequested => self.read(now, true),
                }
            }
            (Decision::Fresh | Decision::RefreshEarly | Decision::Stale, None) => {
                self.done(Err(FlowError::Protocol("a hit decision without an entry".into())))
            }
        }
    }

    fn hit(&mut self, e: &Entry, source: Source) {
        if e.negative {
            self.stats.negative_hits += 1;
        } else if source == Source::Fresh {
            self.stats.hits_fresh += 1;
        } else {
            self.stats.hits_stale += 1;
        }
    }

    /// Hand a value to the caller now; the flow continues in the background.
    fn serve(&mut self, s: Served) -> Step {
        self.served = Some(s.clone());
        Step::Serve(s)
    }

    /// Background work found nothing to do (another caller holds the refresh lease).
    fn done_background(&mut self) -> Step {
        match self.served.clone() {
            Some(s) => self.done(Ok(s)),
            None => self.done(Err(FlowError::Protocol("background end before a serve".into()))),
        }
    }

    /// Wait for another caller's lease: poll on the backoff schedule, but never past the
    /// lease's end (`held_until_store`, store clock) — a lease that runs out sooner (an
    /// abandoned load) is taken over at once rather than after a full backoff step.
    fn wait(&mut self, now: u64, held_until_store: u64) -> Step {
        let deadline = self.started_local.saturating_add(self.policy.lock_wait_ms());
        if now >= deadline {
            return self.lock_timeout(now);
        }
        if self.attempt == 0 {
            self.stats.lease_waits += 1;
        }
        let lease_end = held_until_store.saturating_add_signed(offset(now, self.store_now(now)));
        let until = now
            .saturating_add(self.policy.backoff_ms(self.attempt))
            .min(lease_end.max(now.saturating_add(1)))
            .min(deadline);
        self.attempt += 1;
        self.state = State::Waiting;
        Step::Wait { until_ms: until }
    }

    fn lock_timeout(&mut self, now: u64) -> Step {
        self.stats.lease_timeouts += 1;
        match self.policy.on_lock_timeout() {
            OnLockTimeout::Error => {
                self.done(Err(FlowError::LockTimeout(now.saturating_sub(self.started_local))))
            }
            OnLockTimeout::ServeStale if self.stale_usable(now) => match self.stale.take() {
                Some(e) => {
                    self.stats.stale_if_error += 1;
                    let s = Self::serve_entry(&e, Source::StaleOnTimeout);
                    self.done(Ok(s))
                }
                None => self.load(now, false),
            },
            // Load without the lease; the holder fills, this caller only answers.
            _ => self.load(now, false),
        }
    }

    /// The remembered stale value may still be served (C4: never past hard + stale_if_error).
    fn stale_usable(&self, now: u64) -> bool {
        self.stale.as_ref().is_some_and(|e| {
            self.store_now_max(now) < e.hard_at.saturating_add(self.policy.stale_if_error_ms())
        })
    }

    fn load(&mut self, now: u64, fill: bool) -> Step {
        self.stats.loads += 1;
        self.load_started = now;
        let stale_usable = self.stale_usable(now);
        let (phase, timeout_at) = match self.policy.load_soft_timeout_ms() {
            Some(soft) if stale_usable && self.served.is_none() => (Phase::Soft, Some(now.saturating_add(soft))),
            _ => (Phase::Hard, self.hard_deadline()),
        };
        self.state = State::Loading { phase, fill };
        self.load_step(timeout_at)
    }

    fn on_loaded(&mut self, now: u64, fill: bool, l: Loaded) -> Step {
        let served = Served {
            value: l.value.clone(),
            codec: l.codec,
            negative: l.negative,
            version: l.version,
            source: Source::Loaded,
            cached: false,
        };
        let ttls = if l.negative {
            let n = self.policy.negative_ttl_ms();
            let cut = jitter_reduction(n, self.policy.jitter_ppm(), self.rng.next());
            (n.saturating_sub(cut), n.saturating_sub(cut), 0)
        } else {
            let (s, h) = jittered_ttls(&self.policy, self.rng.next());
            (s, h, self.policy.stale_if_error_ms())
        };
        let Some(token) = self.token.filter(|_| fill) else {
            return self.done(Ok(served));
        };
        if l.value.len() as u64 > self.policy.max_value_bytes() {
            // Too big to cache: the caller (and its joiners) get it; the lease goes back.
            self.stats.values_too_large += 1;
            return self.release_then(Ok(served));
        }
        if ttls.0 == 0 {
            // Negative caching off: give the lease back so the next caller loads at once.
            return self.release_then(Ok(served));
        }
        let t = self.store_now(now);
        let entry = Entry {
            value: l.value.to_vec(),
            codec: l.codec,
            version: l.version,
            generations: self.generations.clone(),
            soft_at: t.saturating_add(ttls.0),
            hard_at: t.saturating_add(ttls.1),
            load_ms: now.saturating_sub(self.load_started),
            negative: l.negative,
            tags: self.req.tags.clone(),
        };
        let op = StoreOp::Fill {
            key: self.req.key.clone(),
            soft_at: entry.soft_at,
            hard_at: entry.hard_at,
            expire_at: entry.hard_at.saturating_add(ttls.2),
            version: entry.version,
            entry: entry.encode().into(),
            generations: Some(self.generations.clone()),
            gen_keys: self.req.gen_keys.clone(),
            token: Some(token),
        };
        self.state = State::Filling(served);
        Step::Store(op)
    }

    fn on_load_failed(&mut self, now: u64, err: FlowError) -> Step {
        self.stats.load_errors += 1;
        if self.served.is_some() {
            return self.release_then(Err(err));
        }
        let usable = self.stale.take().filter(|e| {
            self.store_now_max(now) < e.hard_at.saturating_add(self.policy.stale_if_error_ms())
        });
        match usable {
            Some(e) => {
                self.stats.stale_if_error += 1;
                let s = Self::serve_entry(&e, Source::StaleOnError);
                self.release_then(Ok(s))
            }
            None => self.release_then(Err(err)),
        }
    }

    fn release_then(&mut self, r: Result<Served, FlowError>) -> Step {
        match self.token.take() {
            Some(token) => {
                self.state = State::Releasing(r);
                Step::Store(StoreOp::Release { key: self.req.key.clone(), token })
            }
            None => self.done(r),
        }
    }
}

fn input_name(i: &Input) -> &'static str {
    match i {
        Input::Store(_) => "store",
        Input::StoreFailed(_) => "store_failed",
        Input::Loaded(_) => "loaded",
        Input::LoadFailed(_) => "load_failed",
        Input::Timeout => "timeout",
        Input::Continue => "continue",
    }
}

fn state_name(s: &State) -> &'static str {
    match s {
        State::Start => "start",
        State::Reading { .. } => "reading",
        State::AfterServe(_) => "after_serve",
        State::Waiting => "waiting",
        State::Loading { .. } => "loading",
        State::Extending { .. } => "extending",
        State::Filling(_) => "filling",
        State::Releasing(_) => "releasing",
        State::Done => "done",
    }
}

/// The counter a read that answered `s` incremented: a fresh or stale hit, a negative hit, a
/// stale-if-error serve — nothing for a loaded value. (What is taken back when the host could
/// not decode `s`.)
pub(crate) fn read_counts(s: &Served) -> Stats {
    let mut st = Stats::default();
    match s.source {
        _ if s.negative && s.cached => st.negative_hits = 1,
        Source::Fresh => st.hits_fresh = 1,
        Source::Stale => st.hits_stale = 1,
        Source::Loaded => {}
        Source::StaleOnError | Source::StaleOnTimeout => st.stale_if_error = 1,
    }
    st
}

/// The fresh-hit fast path for the in-process memory store: if `key` holds a valid, fresh
/// entry (not marked stale, not due for an XFetch early refresh), the value, with no op built
/// and one allocation. `None` means "run [`GetOrLoad`]": this decides nothing the flow would
/// decide differently, it only skips the machinery. Counting is the caller's (the
/// coordinator's [`crate::coordinator::Counters::memory_hit`]).
pub fn memory_fresh_hit(
    store: &crate::memory::MemoryStore,
    now: u64,
    key: &str,
    gen_keys: &[String],
    policy: &Policy,
    rand: u64,
) -> Option<Served> {
    memory_fresh_hit_memo(store, now, key, gen_keys, policy, rand).map(|h| h.served())
}

/// A fresh memory-store hit ([`memory_fresh_hit_memo`]): the entry it came from and the host's
/// memo on it ([`crate::memory::MemoryStore::attach_memo`]); the value is copied out only when
/// asked for ([`MemoryHit::served`]), so a host whose memo answers copies nothing.
#[derive(Debug, Clone)]
pub struct MemoryHit {
    /// The stored entry's bytes (their identity names the entry).
    pub entry: Bytes,
    /// The host's memo on the entry, if any.
    pub memo: Option<crate::memory::Memo>,
    /// A cached "not found".
    pub negative: bool,
    codec: u8,
    version: Option<u64>,
    value_at: usize,
}

impl MemoryHit {
    /// The value served.
    pub fn served(&self) -> Served {
        Served {
            value: self.entry[self.value_at..].into(),
            codec: self.codec,
            negative: self.negative,
            version: self.version,
            source: Source::Fresh,
            cached: true,
        }
    }
}

/// [`memory_fresh_hit`], as a [`MemoryHit`].
pub fn memory_fresh_hit_memo(
    store: &crate::memory::MemoryStore,
    now: u64,
    key: &str,
    gen_keys: &[String],
    policy: &Policy,
    rand: u64,
) -> Option<MemoryHit> {
    let (bytes, marked, memo) = store.peek_valid(now, key, gen_keys)?;
    if marked {
        return None;
    }
    let (h, value) = crate::entry::decode_view(&bytes).ok()?;
    if crate::freshness::decide_raw(now, h.soft_at, h.hard_at, h.load_ms, policy, rand)
        != Decision::Fresh
    {
        return None;
    }
    // The value is the entry's tail (`decode_view` checks there are no trailing bytes).
    let value_at = bytes.len() - value.len();
    Some(MemoryHit { negative: h.negative, codec: h.codec, version: h.version, value_at, entry: bytes, memo })
}

/// [`memory_fresh_hit`], counted into `stats`.
pub fn fast_hit(
    store: &crate::memory::MemoryStore,
    now: u64,
    key: &str,
    gen_keys: &[String],
    policy: &Policy,
    rand: u64,
    stats: &crate::stats::AtomicStats,
) -> Option<Served> {
    let s = memory_fresh_hit(store, now, key, gen_keys, policy, rand)?;
    let mut c = Stats::default();
    if s.negative {
        c.negative_hits = 1;
    } else {
        c.hits_fresh = 1;
    }
    stats.add(&c);
    Some(s)
}

/// The op for a plain `get` (no lease).
pub fn get_op(key: &str, gen_keys: &[String]) -> StoreOp {
    StoreOp::Read {
        key: key.to_string(),
        gen_keys: gen_keys.to_vec(),
        lease: LeaseMode::None,
        lease_ttl_ms: 0,
    }
}

/// Interpret a `get` reply: the value if fresh or stale (never past hard expiry), else `None`.
/// Counts into `stats`.
pub fn get_result(reply: &ReadReply, stats: &mut Stats) -> Option<Served> {
    let e = match reply.entry.as_deref().map(Entry::decode) {
        Some(Ok(e)) => e,
        Some(Err(_)) => {
            stats.corrupt_entries += 1;
            stats.misses += 1;
            return None;
        }
        None => {
            stats.misses += 1;
            return None;
        }
    };
    let now = reply.now_ms;
    let soft = if reply.marked_stale { e.soft_at.min(now) } else { e.soft_at };
    let source = if now < soft {
        Source::Fresh
    } else if now < e.hard_at {
        Source::Stale
    } else {
        stats.misses += 1;
        return None;
    };
    if e.negative {
        stats.negative_hits += 1;
    } else if source == Source::Fresh {
        stats.hits_fresh += 1;
    } else {
        stats.hits_stale += 1;
    }
    Some(GetOrLoad::serve_entry(&e, source))
}

/// What a `get` answers when the store failed: a miss, or the error if the policy says so.
pub fn get_on_store_error(
    policy: &Policy,
    err: StoreFailure,
    stats: &mut Stats,
) -> Result<Option<Served>, FlowError> {
    stats.store_errors += 1;
    match policy.on_store_error() {
        OnStoreError::Load => Ok(None),
        OnStoreError::Error => Err(FlowError::Store(err.message)),
    }
}

/// A value to write with [`set_op`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// The built entry key.
    pub key: String,
    /// Generation counters the entry depends on.
    #[serde(default)]
    pub gen_keys: Vec<String>,
    /// Tags recorded in the entry.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The value, encoded.
    #[serde(with = "value_hex")]
    pub value: Bytes,
    /// Codec id.
    pub codec: u8,
    /// Monotonic version: the store refuses to replace a newer one.
    pub version: Option<u64>,
}

/// The op for a write-through `set`: an authoritative fill (revokes any lease, so a reader
/// loading an older value cannot overwrite this one) that never lowers a version.
/// `store_now` is the driver's estimate of the store clock.
pub fn set_op(w: &Write, policy: &Policy, store_now: u64, rand: u64) -> StoreOp {
    let (s, h) = jittered_ttls(policy, rand);
    let entry = Entry {
        value: w.value.to_vec(),
        codec: w.codec,
        version: w.version,
        generations: Vec::new(),
        soft_at: store_now.saturating_add(s),
        hard_at: store_now.saturating_add(h),
        load_ms: 0,
        negative: false,
        tags: w.tags.clone(),
    };
    StoreOp::Fill {
        key: w.key.clone(),
        soft_at: entry.soft_at,
        hard_at: entry.hard_at,
        expire_at: entry.hard_at.saturating_add(policy.stale_if_error_ms()),
        version: w.version,
        entry: entry.encode().into(),
        generations: None,
        gen_keys: w.gen_keys.clone(),
        token: None,
    }
}

/// `a - b` as a signed offset between two clocks, saturated to `i64` (both are u64 ms, so the
/// exact difference may not fit).
pub(crate) fn offset(a: u64, b: u64) -> i64 {
    (i128::from(a) - i128::from(b)).clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

/// The op for `invalidate`.
pub fn invalidate_op(key: &str, mode: InvalidateMode) -> StoreOp {
    StoreOp::Invalidate { key: key.to_string(), mode }
}

/// The op for `bump` (a namespace or tag generation). `rand` picks the new value.
pub fn bump_op(gen_key: &str, rand: u64) -> StoreOp {
    StoreOp::Bump { gen_key: gen_key.to_string(), value: (rand >> 11).max(1) }
}
