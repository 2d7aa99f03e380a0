//! The per-process half of the engine: one [`Coordinator`] per cache, above the flows.
//!
//! A [`GetOrLoad`] decides one call's life against the store. The coordinator decides
//! everything that involves *several* calls in one process — quinn-proto's `Endpoint` to the
//! flow's `Connection`. It performs no IO, reads no clock, starts no thread and takes no lock:
//! the host feeds it inputs and does what its outputs say.
//!
//! # What it owns
//!
//! - **The flight table**, keyed by built key. A new `get_or_load` gets a [`Ticket`]: *lead*
//!   (this call drives a flow; the flight is registered before any store IO, so a lease holder
//!   always leads and joiners never touch the store) or *join* (wait for that flight).
//! - **What a joiner gets** when its flight ends ([`Coordinator::joined`]): the leader's answer,
//!   or a fresh ticket (*run again*) when the leader's fill was refused, the leader was
//!   cancelled, or a write returned after the flight began (invariant C5).
//! - **C5**: when a write (`set`, `invalidate`, `bump`, `invalidate_tag`) returns, every flight
//!   it may affect is detached from the table — a call that begins afterwards leads a new flight
//!   — and marked revoked, so its joiners run again rather than take a value loaded before the
//!   write. The leader's own caller still gets its load (its call began before the write).
//! - **The fast-path order**: memory stores answer a fresh hit with [`Counters::memory_hit`]
//!   before [`Coordinator::get_or_load`] (lock-free); a store with a fast read (Redis) gets
//!   [`Action::FastRead`] as the flight's first step, and a failed fast read is handed to the
//!   flow, so a down store costs one failure, not two.
//! - **Background continuation** after [`Action::Serve`], with [`Event::BackgroundError`] when
//!   it fails; **cancellation** of a call whose caller went away ([`Coordinator::cancel`]);
//!   **skew** (store clock − local clock) learned from reads, used by `set`; **seeds** (one OS
//!   random seed per coordinator, mixed per call); and **every stats counter** (the table is in
//!   [`Counters`]'s docs).
//!
//! # Driving it
//!
//! ```text
//! // memory store only, outside any lock:
//! if let Some(v) = counters.memory_hit(store, now, key, gen_keys, policy) { return v }
//! let mut ticket = coord.get_or_load(now, request, policy);        // + make a waker for Join
//! 'outer: loop {
//!     match ticket {
//!         Ticket::Answer(r) => return r,   // a value that does not decode: get_or_load_replacing
//!         Ticket::Join { call, flight, until_ms } => { wait_for_wake(flight, until_ms); ticket = coord.joined(now, call) }
//!         Ticket::Lead { call, mut action } => loop {
//!             let input = match action {
//!                 Action::Store(op)               => run(op),              // Input::Store | StoreFailed
//!                 Action::FastRead { key, gen_keys } => { action = coord.handle_fast_read(now, call, pipeline(..)); continue }
//!                 Action::StartLoad { timeout_at } => { start_loader(); await_until(timeout_at) } // Loaded | LoadFailed | Timeout
//!                 Action::AwaitLoad { timeout_at } => await_until(timeout_at),   // the loader already runs
//!                 Action::Wait { until_ms }       => { sleep_until(until_ms); Input::Timeout }
//!                 Action::Serve(v) if !decodes(v) => { ticket = coord.replace_served(now, call); continue 'outer }
//!                 Action::Serve(v)                => { answer(Ok(v)); Input::Continue } // the rest runs in the background
//!                 Action::Answer(r)               => { answer(r); break }
//!                 Action::Finished                => break,
//!             };
//!             action = coord.handle(now, call, input);
//!             while let Some(e) = coord.poll_event() { /* Wake(f): wake f's joiners; BackgroundError */ }
//!         },
//!     }
//! }
//! ```
//!
//! Order after each input: take the returned [`Action`] (or [`Ticket`]), then drain
//! [`Coordinator::poll_event`] until `None` — a `Wake` is produced by the input that ended a
//! flight, so a threaded host wakes joiners right after the decision, before any IO. Threaded
//! hosts hold their lock only while the coordinator decides, never across IO, and create the
//! waker for a `Join` ticket under the same lock (a `Wake` can follow as soon as it is released).
//! One-op calls (`get`, `set`, `invalidate`, `bump`) start with [`Coordinator::op`] and end with
//! [`Action::Answer`] after one store reply (two for `get` on a store with a fast read).
//!
//! Inputs a call does not expect end it with [`FlowError::Protocol`] — never a panic.

use crate::flow::{self, FlowError, GetOrLoad, Input, Request, Served, Step, Write};
use crate::policy::Policy;
use crate::rand::SplitMix64;
use crate::redis::RedisValue;
use crate::stats::{AtomicStats, Stats};
use crate::store::{InvalidateMode, StoreFailure, StoreOp, StoreReply};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One call (a `get_or_load`, a joiner, or a one-op call) in a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub u64);

/// One flight: the single `get_or_load` flow a key has in this process, and its joiners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlightId(pub u64);

/// What a call answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "data", rename_all = "snake_case")]
pub enum Reply {
    /// A value (`get_or_load`, or a `get` hit).
    Value(Served),
    /// A `get` found nothing usable.
    Missing,
    /// A `set`: whether the store took it.
    Stored(bool),
    /// An `invalidate`: whether an entry was there.
    Invalidated(bool),
    /// A `bump` / `invalidate_tag`: the new generation.
    Bumped(u64),
}

/// What a call's answer is: a [`Reply`], or why there is none.
pub type Answer = Result<Reply, FlowError>;

/// What a new or woken call does next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ticket", rename_all = "snake_case")]
pub enum Ticket {
    /// Answer the caller now; the call is over.
    Answer {
        /// The answer.
        answer: Answer,
    },
    /// This call leads a flight: do `action`, feed the result to [`Coordinator::handle`].
    Lead {
        /// The call to feed.
        call: CallId,
        /// Its first action.
        action: Action,
    },
    /// Wait until [`Event::Wake`] for `flight` — but no later than `until_ms` (local clock:
    /// the joiner's `lock_wait`) — then ask [`Coordinator::joined`].
    Join {
        /// The waiting call.
        call: CallId,
        /// The flight it waits for.
        flight: FlightId,
        /// When to stop waiting and ask anyway (then `on_lock_timeout` applies).
        until_ms: u64,
    },
}

/// What the host does next for a call it drives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", content = "data", rename_all = "snake_case")]
pub enum Action {
    /// Run this op against the store; feed [`Input::Store`] or [`Input::StoreFailed`].
    Store(StoreOp),
    /// Run the store's fast read (Redis: [`crate::redis::fast_read_commands`] as one
    /// pipeline); feed the replies to [`Coordinator::handle_fast_read`].
    FastRead {
        /// The entry key.
        key: String,
        /// Its generation keys.
        gen_keys: Vec<String>,
    },
    /// Start the loader (once per call), then feed its result — or [`Input::Timeout`] once
    /// the local clock reaches `timeout_at`.
    StartLoad {
        /// Local-clock deadline for this phase of the load.
        timeout_at: Option<u64>,
    },
    /// The loader started earlier still runs: keep awaiting it, as for `StartLoad`.
    AwaitLoad {
        /// Local-clock deadline for this phase of the load.
        timeout_at: Option<u64>,
    },
    /// Sleep until the local clock reaches `until_ms`, then feed [`Input::Timeout`].
    Wait {
        /// Local-clock wake-up time.
        until_ms: u64,
    },
    /// Answer the caller with this value now, then feed [`Input::Continue`]: the call goes on
    /// in the background (a refresh).
    Serve(Served),
    /// Answer the caller; the call is over.
    Answer(Answer),
    /// Background work after a [`Action::Serve`] ended; the call is over.
    Finished,
}

/// Something the host must act on that is not the answer to the input it fed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The flight ended: wake its joiners (each then calls [`Coordinator::joined`]).
    Wake {
        /// The flight.
        flight: FlightId,
    },
    /// A refresh running in the background after a stale serve failed (nobody is waiting for
    /// it, so the host reports it: a callback, a log line).
    BackgroundError {
        /// The entry key.
        key: String,
        /// What went wrong.
        error: FlowError,
    },
}

/// A one-op call for [`Coordinator::op`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The cached value if fresh or stale; no load, no lease.
    Get {
        /// The entry key.
        key: String,
        /// Its generation keys.
        #[serde(default)]
        gen_keys: Vec<String>,
    },
    /// Write-through: an authoritative fill (revokes leases; never lowers a version).
    Set {
        /// What to write.
        write: Write,
    },
    /// Delete or mark stale, revoking leases.
    Invalidate {
        /// The entry key.
        key: String,
        /// Delete, or mark stale.
        mode: InvalidateMode,
    },
    /// Move a namespace or tag generation: orphans every entry that depends on it.
    Bump {
        /// The generation key.
        gen_key: String,
    },
}

/// The counters and the seed a host may use without the coordinator's lock: the memory
/// store's fresh hit runs on them from any thread.
///
/// # What each call counts (identical in every runtime and store)
///
/// | call | counts |
/// |---|---|
/// | fresh hit on the fast path (memory hit, Redis fast read) | `hits_fresh` (or `negative_hits`) |
/// | leader | what its flow counted (`GetOrLoad::stats`: hit kind or `misses`, `loads`, `lease_waits`, …), added when the flow ends |
/// | joiner answered by its flight | `coalesced`, plus what it got: `hits_fresh` / `hits_stale` / `negative_hits` for a cached value, `stale_if_error` for a stale value served on error or timeout, `misses` for a load or an error |
/// | joiner that runs again | nothing until its own answer |
/// | undecodable cached value reported | `corrupt_entries`, and the hit it was counted as is taken back (a `get` counts `misses` instead; a `get_or_load` retry counts as a leader) |
/// | `get` | `hits_fresh` / `hits_stale` / `negative_hits`, or `misses` |
/// | `set` refused | `fills_rejected` |
/// | any op whose store call failed | `store_errors` |
#[derive(Debug, Default)]
pub struct Counters {
    stats: AtomicStats,
    seed: AtomicU64,
}

impl Counters {
    /// A snapshot (the host fills in `evictions` from its store).
    pub fn snapshot(&self) -> Stats {
        self.stats.snapshot()
    }

    /// Add counts.
    pub fn add(&self, s: &Stats) {
        self.stats.add(s);
    }

    /// A well-mixed 64-bit value for one decision. Consecutive calls are not related by a
    /// constant step (each is a SplitMix64 output, not its state), so no two calls' random
    /// streams overlap.
    pub fn next_seed(&self) -> u64 {
        let state = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        SplitMix64::new(state).next()
    }

    /// Start the random stream again from `seed` (from the OS). A host calls it in a process
    /// forked from the one that created the coordinator: the child copied the stream's state,
    /// so parent and children would draw the same jitter and XFetch sequence.
    pub fn reseed(&self, seed: u64) {
        self.seed.store(seed, Ordering::Relaxed);
    }

    /// A value a `get` answered did not decode (bad JSON, an unknown codec): the host answers
    /// "missing", so the hit the read counted becomes a miss, plus one `corrupt_entries`.
    /// (`get_or_load` reports it with [`Coordinator::get_or_load_replacing`] instead, which
    /// also replaces the entry.)
    pub fn report_undecodable(&self, served: &Served) {
        self.undecodable(served);
        self.stats.add(&Stats {
            misses: 1,
            ..Stats::default()
        });
    }

    /// Count a corrupt entry and take back the hit `served` was counted as.
    fn undecodable(&self, served: &Served) {
        self.stats.sub(&flow::read_counts(served));
        self.stats.add(&Stats {
            corrupt_entries: 1,
            ..Stats::default()
        });
    }

    /// The memory store's fresh hit, to try before [`Coordinator::get_or_load`] (and before
    /// an [`Op::Get`]): `Some` for a valid, fresh entry — counted — and `None` for everything
    /// else (run the call). It takes no lock and decides nothing the flow would decide
    /// differently.
    pub fn memory_hit(
        &self,
        store: &crate::memory::MemoryStore,
        now: u64,
        key: &str,
        gen_keys: &[String],
        policy: &Policy,
    ) -> Option<Served> {
        self.memory_hit_memo(store, now, key, gen_keys, policy).map(|h| h.served())
    }

    /// [`Counters::memory_hit`] as a [`flow::MemoryHit`] (the entry and the host's memo on it).
    pub fn memory_hit_memo(
        &self,
        store: &crate::memory::MemoryStore,
        now: u64,
        key: &str,
        gen_keys: &[String],
        policy: &Policy,
    ) -> Option<flow::MemoryHit> {
        let h = flow::memory_fresh_hit_memo(store, now, key, gen_keys, policy, self.next_seed())?;
        self.stats.add(&hit_stats(h.negative));
        Some(h)
    }
}

fn hit_stats(negative: bool) -> Stats {
    let mut st = Stats::default();
    if negative {
        st.negative_hits = 1;
    } else {
        st.hits_fresh = 1;
    }
    st
}

/// What a joiner counts for the answer its flight gave: coalesced, and the hit kind of the
/// value it got — a miss for a loaded value or an error.
fn joined_stats(a: &Answer) -> Stats {
    let mut s = match a {
        Ok(Reply::Value(x)) => flow::read_counts(x),
        _ => Stats::default(),
    };
    if s == Stats::default() {
        s.misses = 1;
    }
    s.coalesced = 1;
    s
}

/// How a flight ended, for its joiners.
#[derive(Debug, Clone)]
enum Outcome {
    Shared(Answer),
    /// Refused fill, revoked by a write, or the leader was cancelled: run again.
    Again,
}

#[derive(Debug)]
struct Flight {
    key: String,
    gen_keys: Vec<String>,
    /// Callers waiting on it.
    joiners: usize,
    /// A write returned while it ran: its value may predate the write.
    revoked: bool,
    outcome: Option<Outcome>,
    /// The value it replaces ([`Coordinator::get_or_load_replacing`]): callers reporting the
    /// same bytes join it rather than lead a load each.
    replaces: Option<crate::store::Bytes>,
}

#[derive(Debug)]
enum Call {
    Lead {
        flow: Box<GetOrLoad>,
        flight: Option<FlightId>,
        /// The loader was started and has not reported yet.
        loading: bool,
        /// Waiting for the fast read's replies.
        fast: bool,
    },
    Join {
        flight: FlightId,
        req: Request,
        policy: Arc<Policy>,
        /// When it stops waiting (`lock_wait` after it joined).
        until: u64,
    },
    Op {
        op: Op,
        policy: Arc<Policy>,
        /// `Get` waiting for its fast read.
        fast: bool,
    },
}

/// The coordinator's maps' hasher. Natively std's keyed SipHash (keys are cache keys, which a
/// client may choose). On wasm32-unknown-unknown std has no random source, so its keys are fixed
/// anyway: there the fixed-key hasher the memory store's maps use, so the module carries one
/// hasher, not a second one with its key set-up (≈ 1–2 KB; wasm/README.md, "Size").
#[cfg(not(target_arch = "wasm32"))]
type MapHasher = std::collections::hash_map::RandomState;
#[cfg(target_arch = "wasm32")]
type MapHasher = std::hash::BuildHasherDefault<std::hash::DefaultHasher>;
type Map<K, V> = HashMap<K, V, MapHasher>;

/// The per-process machine. See the module docs for the contract.
#[derive(Debug)]
pub struct Coordinator {
    counters: Arc<Counters>,
    fast_read: bool,
    /// key → the flight a new caller joins.
    table: Map<String, FlightId>,
    flights: Map<FlightId, Flight>,
    calls: Map<CallId, Call>,
    next_id: u64,
    events: VecDeque<Event>,
    /// Store clock − local clock, from the last read reply.
    skew: i64,
}

impl Coordinator {
    /// A coordinator. `seed` must come from the OS random source (it feeds jitter and
    /// XFetch; lease tokens come from the store); `fast_read` says the store has a fast read ([`Action::FastRead`]).
    pub fn new(seed: u64, fast_read: bool) -> Coordinator {
        let counters = Counters {
            stats: AtomicStats::default(),
            seed: AtomicU64::new(seed),
        };
        Coordinator {
            counters: Arc::new(counters),
            fast_read,
            table: Map::default(),
            flights: Map::default(),
            calls: Map::default(),
            next_id: 0,
            events: VecDeque::new(),
            skew: 0,
        }
    }

    /// The lock-free half (counters, seed, the memory fresh hit).
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Calls and flights alive (a host that leaks calls shows here; 0 when idle).
    pub fn pending(&self) -> (usize, usize) {
        (self.calls.len(), self.flights.len())
    }

    /// The store clock as last learned, at local time `now`.
    pub fn store_now(&self, now: u64) -> u64 {
        now.saturating_add_signed(self.skew)
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A new read-through call (after the memory fast hit missed, on a memory store).
    pub fn get_or_load(&mut self, now: u64, req: Request, policy: Arc<Policy>) -> Ticket {
        if let Some(&flight) = self.table.get(&req.key) {
            return self.join(now, flight, req, policy);
        }
        self.lead(now, req, policy, None)
    }

    /// [`Coordinator::get_or_load`] from inside loaders: `within` are the flights whose loaders
    /// the calling chain runs in (the host tracks them: a task-local, a context variable,
    /// `AsyncLocalStorage`). A call for a key one of them is loading would wait for itself, so
    /// it is answered [`FlowError::Reentrant`] at once — in every runtime, not a hang.
    pub fn get_or_load_within(
        &mut self,
        now: u64,
        req: Request,
        policy: Arc<Policy>,
        within: &[FlightId],
    ) -> Ticket {
        if let Some(e) = self.reentrant(&req.key, within) {
            return Ticket::Answer { answer: Err(e) };
        }
        self.get_or_load(now, req, policy)
    }

    /// The check [`Coordinator::get_or_load_within`] makes, for a host that asks before its
    /// call (the flights in `within` cannot end meanwhile: their loaders are still running).
    pub fn reentrant(&self, key: &str, within: &[FlightId]) -> Option<FlowError> {
        within
            .iter()
            .any(|f| self.flights.get(f).is_some_and(|f| f.key == key))
            .then(|| FlowError::Reentrant(key.to_owned()))
    }

    /// The value `get_or_load` answered did not decode (bad JSON, an unknown codec): count it
    /// as a corrupt entry (taking back the hit it was counted as) and run again treating that
    /// entry as a miss, so the loader runs and its fill replaces the bytes. `bad` is the
    /// answer that did not decode.
    pub fn get_or_load_replacing(
        &mut self,
        now: u64,
        req: Request,
        policy: Arc<Policy>,
        bad: Served,
    ) -> Ticket {
        // Several callers got the same undecodable answer (a flight's joiners): the first one
        // replaces it, the others join that replacement and count as its joiners.
        let same = self.table.get(&req.key).copied().filter(|f| {
            self.flights
                .get(f)
                .and_then(|f| f.replaces.as_ref())
                .is_some_and(|b| **b == *bad.value)
        });
        if let Some(flight) = same {
            self.counters.stats.sub(&flow::read_counts(&bad));
            return self.join(now, flight, req, policy);
        }
        self.counters.undecodable(&bad);
        self.detach(|f| f.key == req.key);
        self.lead(now, req, policy, Some(bad.value))
    }

    /// The value [`Action::Serve`] handed `call`'s caller did not decode (bad JSON, an unknown
    /// codec): call this instead of feeding [`Input::Continue`]. The call leads again, under
    /// the new id of the [`Ticket::Lead`] it answers: the hit becomes a corrupt entry and a
    /// miss, the entry holding those bytes reads as a miss, and the refresh the call was about
    /// to run in the background — with the lease it holds, or the loader already running after
    /// a soft timeout — answers the caller instead, so no lease is given back and taken again.
    /// Callers reporting the same bytes ([`Coordinator::get_or_load_replacing`]) join it. Any
    /// other call gets a protocol error (and is ended).
    pub fn replace_served(&mut self, now: u64, call: CallId) -> Ticket {
        let step = match self.calls.get_mut(&call) {
            Some(Call::Lead {
                flow, fast: false, ..
            }) => flow.take_back_served(now),
            _ => None,
        };
        let Some((step, bad)) = step else {
            // Not a leader with a served value pending: end it (its joiners run again).
            return Ticket::Answer {
                answer: Err(self.protocol_error(call, "replace_served")),
            };
        };
        let Some(Call::Lead { flow, loading, .. }) = self.calls.remove(&call) else {
            return Ticket::Answer {
                answer: Err(FlowError::Protocol("replace_served: no such call".into())),
            };
        };
        let key = flow.request().key.clone();
        let same = self.table.get(&key).is_some_and(|f| {
            self.flights
                .get(f)
                .and_then(|f| f.replaces.as_ref())
                .is_some_and(|b| *b == bad)
        });
        // Another caller already reported these bytes and leads their replacement: it will
        // read this call's fill (this call holds the lease); only one corrupt entry counts.
        let id = CallId(self.id());
        let flight = if same {
            None
        } else {
            self.counters.stats.add(&Stats {
                corrupt_entries: 1,
                ..Stats::default()
            });
            self.detach(|f| f.key == key);
            let f = FlightId(id.0);
            self.table.insert(key.clone(), f);
            self.flights.insert(
                f,
                Flight {
                    key,
                    gen_keys: flow.request().gen_keys.clone(),
                    joiners: 0,
                    revoked: false,
                    outcome: None,
                    replaces: Some(bad),
                },
            );
            Some(f)
        };
        self.calls.insert(
            id,
            Call::Lead {
                flow,
                flight,
                loading,
                fast: false,
            },
        );
        let action = self.step(id, step);
        Ticket::Lead { call: id, action }
    }

    fn join(&mut self, now: u64, flight: FlightId, req: Request, policy: Arc<Policy>) -> Ticket {
        let until = now.saturating_add(policy.lock_wait_ms());
        if until <= now {
            // `lock_wait` 0: never wait.
            return self.join_timed_out(now, req, policy);
        }
        let call = CallId(self.id());
        if let Some(f) = self.flights.get_mut(&flight) {
            f.joiners += 1;
        }
        self.calls.insert(
            call,
            Call::Join {
                flight,
                req,
                policy,
                until,
            },
        );
        Ticket::Join {
            call,
            flight,
            until_ms: until,
        }
    }

    /// A joiner waited its `lock_wait` for a flight that has not ended: `on_lock_timeout`, as a
    /// lease wait would — an error, or its own loader run without the lease (no fill; there is
    /// no stale value a joiner has read, so `serve_stale` loads too).
    fn join_timed_out(&mut self, now: u64, req: Request, policy: Arc<Policy>) -> Ticket {
        if policy.on_lock_timeout() == crate::policy::OnLockTimeout::Error {
            self.counters.add(&Stats {
                misses: 1,
                lease_timeouts: 1,
                ..Stats::default()
            });
            return Ticket::Answer {
                answer: Err(FlowError::LockTimeout(policy.lock_wait_ms())),
            };
        }
        let call = CallId(self.id());
        let mut flow = GetOrLoad::new(req, policy, self.counters.next_seed());
        let step = flow.load_unleased(now);
        self.calls.insert(
            call,
            Call::Lead {
                flow: Box::new(flow),
                flight: None,
                loading: false,
                fast: false,
            },
        );
        Ticket::Lead {
            call,
            action: self.step(call, step),
        }
    }

    fn lead(
        &mut self,
        now: u64,
        req: Request,
        policy: Arc<Policy>,
        bad: Option<crate::store::Bytes>,
    ) -> Ticket {
        let call = CallId(self.id());
        let flight = FlightId(call.0);
        self.table.insert(req.key.clone(), flight);
        self.flights.insert(
            flight,
            Flight {
                key: req.key.clone(),
                gen_keys: req.gen_keys.clone(),
                joiners: 0,
                revoked: false,
                outcome: None,
                replaces: bad.clone(),
            },
        );
        let fast = self.fast_read && bad.is_none();
        let (key, gen_keys) = (req.key.clone(), req.gen_keys.clone());
        let mut flow = GetOrLoad::new(req, policy, self.counters.next_seed());
        if let Some(b) = bad {
            flow.distrust(b);
        }
        let action = if fast {
            Action::FastRead { key, gen_keys }
        } else {
            let step = flow.start(now);
            self.calls.insert(
                call,
                Call::Lead {
                    flow: Box::new(flow),
                    flight: Some(flight),
                    loading: false,
                    fast,
                },
            );
            return Ticket::Lead {
                call,
                action: self.step(call, step),
            };
        };
        self.calls.insert(
            call,
            Call::Lead {
                flow: Box::new(flow),
                flight: Some(flight),
                loading: false,
                fast,
            },
        );
        Ticket::Lead { call, action }
    }

    /// The replies to an [`Action::FastRead`] (in command order), or why the pipeline failed.
    pub fn handle_fast_read(
        &mut self,
        now: u64,
        call: CallId,
        replies: Result<Vec<RedisValue>, StoreFailure>,
    ) -> Action {
        match self.calls.get_mut(&call) {
            Some(Call::Lead { flow, fast, .. }) if *fast => {
                *fast = false;
                let hit = match &replies {
                    Ok(r) => {
                        crate::redis::fast_read_hit(r, flow.policy(), self.counters.next_seed())
                    }
                    Err(_) => None,
                };
                if let Some(s) = hit {
                    self.counters.add(&hit_stats(s.negative));
                    return self.end(call, Ok(Reply::Value(s)), false);
                }
                let mut step = flow.start(now);
                if let Err(e) = replies {
                    step = flow.handle(now, Input::StoreFailed(e));
                }
                self.step(call, step)
            }
            Some(Call::Op {
                op: Op::Get { key, gen_keys },
                policy,
                fast,
            }) if *fast => {
                *fast = false;
                match replies {
                    Ok(r) => {
                        match crate::redis::fast_read_hit(&r, policy, self.counters.next_seed()) {
                            Some(s) => {
                                self.counters.add(&hit_stats(s.negative));
                                self.calls.remove(&call);
                                Action::Answer(Ok(Reply::Value(s)))
                            }
                            None => Action::Store(flow::get_op(key, gen_keys)),
                        }
                    }
                    Err(e) => {
                        let policy = policy.clone();
                        self.calls.remove(&call);
                        let mut st = Stats::default();
                        let r = flow::get_on_store_error(&policy, e, &mut st);
                        self.counters.add(&st);
                        Action::Answer(r.map(|o| o.map_or(Reply::Missing, Reply::Value)))
                    }
                }
            }
            _ => self.protocol(call, "fast_read"),
        }
    }

    /// Feed the result of the last action of `call`; get its next action.
    pub fn handle(&mut self, now: u64, call: CallId, input: Input) -> Action {
        if let Input::Store(StoreReply::Read(r)) = &input {
            self.skew = crate::flow::offset(r.now_ms, now);
        }
        match self.calls.get_mut(&call) {
            Some(Call::Lead {
                flow,
                loading,
                fast: false,
                ..
            }) => {
                if matches!(input, Input::Loaded(_) | Input::LoadFailed(_)) {
                    *loading = false;
                }
                let step = flow.handle(now, input);
                self.step(call, step)
            }
            Some(Call::Op { fast: false, .. }) => self.finish_op(call, input),
            _ => self.protocol(call, input_name(&input)),
        }
    }

    /// Turn a flow step of a leading call into an action, ending the flight at the first
    /// answer.
    fn step(&mut self, call: CallId, step: Step) -> Action {
        let Some(Call::Lead {
            flow,
            flight,
            loading,
            ..
        }) = self.calls.get_mut(&call)
        else {
            return Action::Answer(Err(FlowError::Protocol("no such call".into())));
        };
        match step {
            Step::Store(op) => Action::Store(op),
            Step::Load { timeout_at } if *loading => Action::AwaitLoad { timeout_at },
            Step::Load { timeout_at } => {
                *loading = true;
                Action::StartLoad { timeout_at }
            }
            Step::Wait { until_ms } => Action::Wait { until_ms },
            Step::Serve(s) => {
                if let Some(f) = flight.take() {
                    self.settle(f, Outcome::Shared(Ok(Reply::Value(s.clone()))));
                }
                Action::Serve(s)
            }
            Step::Done(r) => {
                let rejected = flow.fill_rejected().is_some();
                let served = flow.served();
                let r = r.map(Reply::Value);
                if served {
                    if let Err(e) = &r {
                        let key = flow.request().key.clone();
                        self.events.push_back(Event::BackgroundError {
                            key,
                            error: e.clone(),
                        });
                    }
                    self.end(call, r, rejected);
                    Action::Finished
                } else {
                    self.end(call, r, rejected)
                }
            }
        }
    }

    /// A leading call is over: count its flow, settle its flight (if still open).
    fn end(&mut self, call: CallId, r: Answer, rejected: bool) -> Action {
        if let Some(Call::Lead { flow, flight, .. }) = self.calls.remove(&call) {
            self.counters.add(flow.stats());
            if let Some(f) = flight {
                let out = if rejected {
                    Outcome::Again
                } else {
                    Outcome::Shared(r.clone())
                };
                self.settle(f, out);
            }
        }
        Action::Answer(r)
    }

    /// A flight has its outcome: unregister it, wake its joiners (or forget it if none).
    fn settle(&mut self, id: FlightId, out: Outcome) {
        let Some(f) = self.flights.get_mut(&id) else {
            return;
        };
        if self.table.get(&f.key) == Some(&id) {
            self.table.remove(&f.key);
        }
        f.outcome = Some(if f.revoked { Outcome::Again } else { out });
        if f.joiners == 0 {
            self.flights.remove(&id);
        } else {
            self.events.push_back(Event::Wake { flight: id });
        }
    }

    /// A joiner was woken (or asks after a spurious wake-up): its answer, a new ticket to run
    /// again, or `Join` again if its flight has not ended.
    pub fn joined(&mut self, now: u64, call: CallId) -> Ticket {
        let Some(&Call::Join { flight, until, .. }) = self.calls.get(&call) else {
            return Ticket::Answer {
                answer: Err(FlowError::Protocol("joined: not a joiner".into())),
            };
        };
        let outcome = match self.flights.get(&flight) {
            Some(f) => match &f.outcome {
                None if now < until => {
                    return Ticket::Join {
                        call,
                        flight,
                        until_ms: until,
                    };
                }
                None => None,
                Some(o) => Some(o.clone()),
            },
            None => Some(Outcome::Again),
        };
        let Some(Call::Join { req, policy, .. }) = self.calls.remove(&call) else {
            return Ticket::Answer {
                answer: Err(FlowError::Protocol("joined: not a joiner".into())),
            };
        };
        self.leave(flight);
        let Some(outcome) = outcome else {
            return self.join_timed_out(now, req, policy);
        };
        match outcome {
            Outcome::Shared(a) => {
                self.counters.add(&joined_stats(&a));
                Ticket::Answer { answer: a }
            }
            Outcome::Again => self.get_or_load(now, req, policy),
        }
    }

    fn leave(&mut self, flight: FlightId) {
        if let Some(f) = self.flights.get_mut(&flight) {
            f.joiners = f.joiners.saturating_sub(1);
            if f.joiners == 0 && f.outcome.is_some() {
                self.flights.remove(&flight);
            }
        }
    }

    /// The caller of `call` went away (a cancelled task, an interrupt, a dropped future). A
    /// leader's flight ends and its joiners run again; the lease it held is returned by the op
    /// this answers (run it, ignore the reply). Unknown calls are ignored.
    pub fn cancel(&mut self, call: CallId) -> Option<StoreOp> {
        match self.calls.remove(&call)? {
            Call::Lead { flow, flight, .. } => {
                self.counters.add(flow.stats());
                if let Some(f) = flight {
                    self.settle(f, Outcome::Again);
                }
                let token = flow.token()?;
                Some(StoreOp::Release {
                    key: flow.request().key.clone(),
                    token,
                })
            }
            Call::Join { flight, .. } => {
                self.leave(flight);
                None
            }
            Call::Op { .. } => None,
        }
    }

    /// The next event, if any. Drain after every input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A one-op call: its id and first action (a store op, or the fast read for a `get`).
    pub fn op(&mut self, now: u64, op: Op, policy: Arc<Policy>) -> (CallId, Action) {
        let call = CallId(self.id());
        let action = match &op {
            Op::Get { key, gen_keys } if self.fast_read => Action::FastRead {
                key: key.clone(),
                gen_keys: gen_keys.clone(),
            },
            Op::Get { key, gen_keys } => Action::Store(flow::get_op(key, gen_keys)),
            // Too big to cache: remove the key rather than leave the value this write replaces.
            Op::Set { write } if write.value.len() as u64 > policy.max_value_bytes() => {
                Action::Store(flow::invalidate_op(&write.key, InvalidateMode::Delete))
            }
            Op::Set { write } => Action::Store(flow::set_op(
                write,
                &policy,
                self.store_now(now),
                self.counters.next_seed(),
            )),
            Op::Invalidate { key, mode } => Action::Store(flow::invalidate_op(key, *mode)),
            Op::Bump { gen_key } => {
                Action::Store(flow::bump_op(gen_key, self.counters.next_seed()))
            }
        };
        let fast = matches!(action, Action::FastRead { .. });
        self.calls.insert(call, Call::Op { op, policy, fast });
        (call, action)
    }

    fn finish_op(&mut self, call: CallId, input: Input) -> Action {
        let Some(Call::Op { op, policy, .. }) = self.calls.remove(&call) else {
            return self.protocol(call, input_name(&input));
        };
        let mut st = Stats::default();
        let reply = match input {
            Input::Store(r) => r,
            Input::StoreFailed(e) => {
                let answer = match &op {
                    Op::Get { .. } => flow::get_on_store_error(&policy, e, &mut st)
                        .map(|o| o.map_or(Reply::Missing, Reply::Value)),
                    _ => {
                        st.store_errors += 1;
                        Err(FlowError::Store(e.message))
                    }
                };
                self.counters.add(&st);
                self.revoke_for(&op);
                return Action::Answer(answer);
            }
            other => {
                return Action::Answer(Err(FlowError::Protocol(format!(
                    "unexpected input \"{}\" for a one-op call",
                    input_name(&other)
                ))));
            }
        };
        let answer = match (&op, reply) {
            (Op::Get { .. }, StoreReply::Read(r)) => {
                Ok(flow::get_result(&r, &mut st).map_or(Reply::Missing, Reply::Value))
            }
            (Op::Set { .. }, StoreReply::Stored) => Ok(Reply::Stored(true)),
            (Op::Set { .. }, StoreReply::Rejected { .. }) => {
                st.fills_rejected += 1;
                Ok(Reply::Stored(false))
            }
            // A value over `max_value_bytes`: the key was removed instead (see `op`).
            (Op::Set { .. }, StoreReply::Invalidated { .. }) => {
                st.values_too_large += 1;
                Ok(Reply::Stored(false))
            }
            (Op::Invalidate { .. }, StoreReply::Invalidated { existed }) => {
                Ok(Reply::Invalidated(existed))
            }
            (Op::Bump { .. }, StoreReply::Bumped { generation }) => Ok(Reply::Bumped(generation)),
            (_, other) => Err(FlowError::Protocol(format!(
                "{} got {}",
                op_name(&op),
                reply_name(&other)
            ))),
        };
        self.counters.add(&st);
        self.revoke_for(&op);
        Action::Answer(answer)
    }

    /// C5: a write returned — every flight it may affect stops taking joiners, and its
    /// joiners run again when it ends.
    fn revoke_for(&mut self, op: &Op) {
        match op {
            Op::Get { .. } => {}
            Op::Set { write } => {
                let k = write.key.clone();
                self.detach(|f| f.key == k)
            }
            Op::Invalidate { key, .. } => {
                let k = key.clone();
                self.detach(|f| f.key == k)
            }
            Op::Bump { gen_key } => {
                let g = gen_key.clone();
                self.detach(|f| f.gen_keys.contains(&g))
            }
        }
    }

    fn detach(&mut self, hit: impl Fn(&Flight) -> bool) {
        let flights = &mut self.flights;
        self.table.retain(|_, id| match flights.get_mut(id) {
            Some(f) if hit(f) => {
                f.revoked = true;
                false
            }
            _ => true,
        });
    }

    fn protocol(&mut self, call: CallId, what: &str) -> Action {
        Action::Answer(Err(self.protocol_error(call, what)))
    }

    /// End `call` (if known) because of an input it did not expect, and say so.
    fn protocol_error(&mut self, call: CallId, what: &str) -> FlowError {
        let known = self.calls.contains_key(&call);
        let msg = if known {
            format!("unexpected input \"{what}\" for call {}", call.0)
        } else {
            format!("input \"{what}\" for unknown call {}", call.0)
        };
        if known {
            // End it cleanly: its flight (if any) must not strand joiners.
            let _ = self.cancel(call);
        }
        FlowError::Protocol(msg)
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

fn op_name(o: &Op) -> &'static str {
    match o {
        Op::Get { .. } => "get",
        Op::Set { .. } => "set",
        Op::Invalidate { .. } => "invalidate",
        Op::Bump { .. } => "bump",
    }
}

fn reply_name(r: &StoreReply) -> &'static str {
    match r {
        StoreReply::Read(_) => "read",
        StoreReply::Stored => "stored",
        StoreReply::Rejected { .. } => "rejected",
        StoreReply::Invalidated { .. } => "invalidated",
        StoreReply::Lease { .. } => "lease",
        StoreReply::Bumped { .. } => "bumped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Loaded, Source};
    use crate::memory::{MemoryStore, MemoryStoreConfig};
    use crate::policy::PolicySpec;

    fn policy() -> Arc<Policy> {
        Arc::new(
            Policy::new(PolicySpec {
                soft_ttl_ms: 1_000,
                jitter: 0.0,
                ..PolicySpec::default()
            })
            .unwrap(),
        )
    }

    fn req(key: &str) -> Request {
        Request {
            key: key.into(),
            gen_keys: vec!["g:ns".into()],
            tags: vec![],
        }
    }

    fn loaded(v: &str) -> Input {
        Input::Loaded(Loaded {
            value: v.as_bytes().to_vec().into(),
            codec: 1,
            negative: false,
            version: None,
        })
    }

    fn value(a: &Answer) -> String {
        match a {
            Ok(Reply::Value(s)) => String::from_utf8(s.value.to_vec()).unwrap(),
            other => panic!("not a value: {other:?}"),
        }
    }

    /// Run store ops of `call` until it asks for something else.
    fn run_store(
        c: &mut Coordinator,
        s: &MemoryStore,
        now: u64,
        call: CallId,
        mut a: Action,
    ) -> Action {
        while let Action::Store(op) = &a {
            let r = s.apply(now, op);
            a = c.handle(now, call, Input::Store(r));
        }
        a
    }

    fn events(c: &mut Coordinator) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn lead(t: Ticket) -> (CallId, Action) {
        match t {
            Ticket::Lead { call, action } => (call, action),
            other => panic!("expected lead, got {other:?}"),
        }
    }

    fn join(t: Ticket) -> (CallId, FlightId) {
        match t {
            Ticket::Join { call, flight, .. } => (call, flight),
            other => panic!("expected join, got {other:?}"),
        }
    }

    /// C3 in one process: a stampede is one lead and joiners that never touch the store; each
    /// joiner is counted as coalesced and by what it got.
    #[test]
    fn stampede_is_one_leader_and_counted_joiners() {
        let (mut c, s, p) = (
            Coordinator::new(7, false),
            MemoryStore::new(MemoryStoreConfig::default()),
            policy(),
        );
        let (leader, a) = lead(c.get_or_load(0, req("k"), p.clone()));
        let a = run_store(&mut c, &s, 0, leader, a);
        assert!(matches!(a, Action::StartLoad { .. }), "{a:?}");
        let joiners: Vec<_> = (0..19)
            .map(|_| join(c.get_or_load(1, req("k"), p.clone())))
            .collect();
        assert!(events(&mut c).is_empty());
        let a = c.handle(5, leader, loaded("v1"));
        let a = run_store(&mut c, &s, 5, leader, a);
        assert_eq!(
            value(&match a {
                Action::Answer(r) => r,
                o => panic!("{o:?}"),
            }),
            "v1"
        );
        let ev = events(&mut c);
        assert_eq!(
            ev,
            vec![Event::Wake {
                flight: joiners[0].1
            }]
        );
        for (j, _) in &joiners {
            match c.joined(6, *j) {
                Ticket::Answer { answer } => assert_eq!(value(&answer), "v1"),
                o => panic!("{o:?}"),
            }
        }
        let st = c.stats();
        assert_eq!(
            (st.misses, st.loads, st.coalesced, st.lease_waits),
            (20, 1, 19, 0)
        );
        assert_eq!(c.pending(), (0, 0));
    }

    /// C5: a call that begins after `invalidate` returned never joins a flight that began before.
    #[test]
    fn c5_invalidate_detaches_the_flight_and_its_joiners_run_again() {
        let (mut c, s, p) = (
            Coordinator::new(7, false),
            MemoryStore::new(MemoryStoreConfig::default()),
            policy(),
        );
        let (a_call, a) = lead(c.get_or_load(0, req("k"), p.clone()));
        let a = run_store(&mut c, &s, 0, a_call, a);
        assert!(matches!(a, Action::StartLoad { .. }));
        let (j_before, _) = join(c.get_or_load(1, req("k"), p.clone()));
        // The source changes; invalidate runs and returns while A still loads "old".
        let (inv, op) = c.op(
            2,
            Op::Invalidate {
                key: "k".into(),
                mode: InvalidateMode::Delete,
            },
            p.clone(),
        );
        let Action::Store(op) = op else { panic!() };
        let r = c.handle(2, inv, Input::Store(s.apply(2, &op)));
        assert!(matches!(r, Action::Answer(Ok(Reply::Invalidated(_)))));
        // B begins after: it leads its own flight (the store grants it a new lease).
        let (b_call, b) = lead(c.get_or_load(3, req("k"), p.clone()));
        let b = run_store(&mut c, &s, 3, b_call, b);
        assert!(matches!(b, Action::StartLoad { .. }), "{b:?}");
        // A's loader returns "old": its fill is refused, A's own caller still gets it (it began
        // before the write), and the joiner from before runs again rather than take it.
        let a = c.handle(4, a_call, loaded("old"));
        let a = run_store(&mut c, &s, 4, a_call, a);
        assert!(matches!(&a, Action::Answer(r) if value(r) == "old"));
        assert_eq!(events(&mut c).len(), 1);
        let (j_again, _) = join(c.joined(4, j_before));
        let b = c.handle(5, b_call, loaded("new"));
        let b = run_store(&mut c, &s, 5, b_call, b);
        assert!(matches!(&b, Action::Answer(r) if value(r) == "new"));
        events(&mut c);
        match c.joined(5, j_again) {
            Ticket::Answer { answer } => assert_eq!(value(&answer), "new"),
            o => panic!("{o:?}"),
        }
        assert_eq!(c.stats().fills_rejected, 1);
        assert_eq!(c.pending(), (0, 0));
    }

    /// C5 for `bump`: every flight depending on the generation is detached, even though the
    /// store lease is untouched (the entry key is not).
    #[test]
    fn c5_bump_detaches_flights_that_depend_on_the_generation() {
        let (mut c, s, p) = (
            Coordinator::new(7, false),
            MemoryStore::new(MemoryStoreConfig::default()),
            policy(),
        );
        let (a_call, a) = lead(c.get_or_load(0, req("k"), p.clone()));
        run_store(&mut c, &s, 0, a_call, a);
        let other = Request {
            key: "other".into(),
            gen_keys: vec!["g:x".into()],
            tags: vec![],
        };
        let (o_call, o) = lead(c.get_or_load(0, other.clone(), p.clone()));
        run_store(&mut c, &s, 0, o_call, o);
        let (bump, op) = c.op(
            1,
            Op::Bump {
                gen_key: "g:ns".into(),
            },
            p.clone(),
        );
        let Action::Store(op) = op else { panic!() };
        assert!(matches!(
            c.handle(1, bump, Input::Store(s.apply(1, &op))),
            Action::Answer(Ok(Reply::Bumped(_)))
        ));
        lead(c.get_or_load(2, req("k"), p.clone()));
        join(c.get_or_load(2, other, p.clone()));
    }

    /// A refused fill is not shared: joiners run again (and find the winner's entry).
    #[test]
    fn joiners_of_a_refused_fill_run_again() {
        let (mut c, s, p) = (
            Coordinator::new(7, false),
            MemoryStore::new(MemoryStoreConfig::default()),
            policy(),
        );
        let (a_call, a) = lead(c.get_or_load(0, req("k"), p.clone()));
        run_store(&mut c, &s, 0, a_call, a);
        let (j, _) = join(c.get_or_load(1, req("k"), p.clone()));
        // Another process writes through (revokes A's lease) — not a write of this process.
        let w = Write {
            key: "k".into(),
            gen_keys: vec!["g:ns".into()],
            tags: vec![],
            value: b"w".to_vec().into(),
            codec: 1,
            version: None,
        };
        s.apply(2, &flow::set_op(&w, &p, 2, 1));
        let a = c.handle(3, a_call, loaded("a"));
        run_store(&mut c, &s, 3, a_call, a);
        events(&mut c);
        let (j2, a) = lead(c.joined(3, j));
        match run_store(&mut c, &s, 3, j2, a) {
            Action::Answer(r) => assert_eq!(value(&r), "w"),
            o => panic!("{o:?}"),
        }
        assert_eq!(
            c.stats().coalesced,
            0,
            "a joiner that runs again is not coalesced"
        );
    }

    /// A cancelled leader returns its lease and its joiners run again (L3 in one process).
    #[test]
    fn cancelled_leader_releases_and_joiners_take_over() {
        let (mut c, s, p) = (
            Coordinator::new(7, false),
            MemoryStore::new(MemoryStoreConfig::default()),
            policy(),
        );
        let (a_call, a) = lead(c.get_or_load(0, req("k"), p.clone()));
        run_store(&mut c, &s, 0, a_call, a);
        let (j, _) = join(c.get_or_load(1, req("k"), p.clone()));
        let release = c.cancel(a_call).expect("the leader held a lease");
        assert_eq!(s.apply(2, &release), StoreReply::Lease { ok: true });
        assert_eq!(events(&mut c).len(), 1);
        let (j2, a) = lead(c.joined(2, j));
        assert!(
            matches!(run_store(&mut c, &s, 2, j2, a), Action::StartLoad { .. }),
            "the new leader gets the lease at once"
        );
        assert_eq!(c.cancel(CallId(999)), None);
    }

    /// A value the host could not decode is counted and replaced: the retry loads.
    #[test]
    fn undecodable_value_is_counted_and_replaced() {
        let (mut c, s, p) = (
            Coordinator::new(7, false),
            MemoryStore::new(MemoryStoreConfig::default()),
            policy(),
        );
        let w = Write {
            key: "k".into(),
            gen_keys: vec!["g:ns".into()],
            tags: vec![],
            value: b"\xff".to_vec().into(),
            codec: 1,
            version: None,
        };
        s.apply(0, &flow::set_op(&w, &p, 0, 1));
        let (call, a) = lead(c.get_or_load(1, req("k"), p.clone()));
        let bad = match run_store(&mut c, &s, 1, call, a) {
            Action::Answer(Ok(Reply::Value(v))) => v,
            o => panic!("{o:?}"),
        };
        assert_eq!(c.stats().hits_fresh, 1, "the first answer was counted as a hit");
        let (call, a) = lead(c.get_or_load_replacing(1, req("k"), p.clone(), bad));
        assert!(matches!(
            run_store(&mut c, &s, 1, call, a),
            Action::StartLoad { .. }
        ));
        let a = c.handle(2, call, loaded("good"));
        assert!(
            matches!(run_store(&mut c, &s, 2, call, a), Action::Answer(r) if value(&r) == "good")
        );
        let st = c.stats();
        assert_eq!(
            (st.corrupt_entries, st.loads, st.misses, st.hits_fresh),
            (1, 1, 1, 0),
            "one call: one corrupt entry and one miss, not also a hit"
        );
    }

    /// A `get` whose value does not decode counts one miss and one corrupt entry, not a hit.
    #[test]
    fn undecodable_get_is_a_miss_not_a_hit() {
        let c = Coordinator::new(7, false);
        let served = Served {
            value: b"{not json".to_vec().into(),
            codec: 1,
            negative: false,
            version: None,
            source: flow::Source::Stale,
            cached: true,
        };
        c.counters().add(&Stats { hits_stale: 1, ..Stats::default() });
        c.counters().report_undecodable(&served);
        let st = c.stats();
        assert_eq!((st.hits_stale, st.misses, st.corrupt_entries), (0, 1, 1));
    }

    /// Inputs a call does not expect are protocol errors, never panics, and strand no joiner.
    #[test]
    fn unexpected_inputs_are_protocol_errors() {
        let (mut c, s, p) = (
            Coordinator::new(7, false),
            MemoryStore::new(MemoryStoreConfig::default()),
            policy(),
        );
        assert!(matches!(
            c.handle(0, CallId(42), Input::Timeout),
            Action::Answer(Err(FlowError::Protocol(_)))
        ));
        let (a_call, a) = lead(c.get_or_load(0, req("k"), p.clone()));
        run_store(&mut c, &s, 0, a_call, a);
        let (j, _) = join(c.get_or_load(0, req("k"), p.clone()));
        assert!(matches!(
            c.handle_fast_read(0, a_call, Ok(vec![])),
            Action::Answer(Err(FlowError::Protocol(_)))
        ));
        assert_eq!(events(&mut c).len(), 1);
        lead(c.joined(0, j));
        assert!(matches!(
            c.joined(0, CallId(77)),
            Ticket::Answer {
                answer: Err(FlowError::Protocol(_))
            }
        ));
    }

    /// Stale-while-revalidate: joiners of a flight that served stale get the stale value at
    /// once; the refresh runs on in the background and its failure is an event, not an answer.
    #[test]
    fn stale_serve_shares_and_background_errors_are_events() {
        let p = Arc::new(
            Policy::new(PolicySpec {
                soft_ttl_ms: 10,
                hard_ttl_ms: Some(1_000),
                jitter: 0.0,
                ..PolicySpec::default()
            })
            .unwrap(),
        );
        let (mut c, s) = (
            Coordinator::new(7, false),
            MemoryStore::new(MemoryStoreConfig::default()),
        );
        let w = Write {
            key: "k".into(),
            gen_keys: vec!["g:ns".into()],
            tags: vec![],
            value: b"old".to_vec().into(),
            codec: 1,
            version: None,
        };
        s.apply(0, &flow::set_op(&w, &p, 0, 1));
        let (call, a) = lead(c.get_or_load(50, req("k"), p.clone()));
        let (j, _) = join(c.get_or_load(50, req("k"), p.clone()));
        let Action::Serve(v) = run_store(&mut c, &s, 50, call, a) else {
            panic!()
        };
        assert_eq!(v.source, Source::Stale);
        events(&mut c);
        match c.joined(50, j) {
            Ticket::Answer { answer } => assert_eq!(value(&answer), "old"),
            o => panic!("{o:?}"),
        }
        let a = c.handle(50, call, Input::Continue);
        let a = run_store(&mut c, &s, 50, call, a);
        assert!(matches!(a, Action::StartLoad { .. }), "{a:?}");
        let a = c.handle(51, call, Input::LoadFailed("db down".into()));
        assert_eq!(
            run_store(&mut c, &s, 51, call, a),
            Action::Finished,
            "the lease is released first"
        );
        assert!(matches!(
            events(&mut c)[..],
            [Event::BackgroundError { .. }]
        ));
        let st = c.stats();
        assert_eq!((st.hits_stale, st.coalesced), (2, 1));
    }
}
