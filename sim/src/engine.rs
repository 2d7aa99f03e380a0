//! The engine: processes, the shared store, the scheduler, the drive loop and the checkers.
//!
//! # The world
//!
//! - **Clock.** `t` is the store's clock (ms). Process `p` reads `t + BASE + skew[p]`
//!   (constant skew); every input to a coordinator carries that local time, every timer a
//!   coordinator asks for is converted back. The flows learn the store clock from read replies,
//!   as they do against Redis.
//! - **Scheduler.** A min-heap of events ordered by (time, random tie-break): reads arrive as
//!   a Poisson stream over Zipf-ranked keys, each at a random process; writers update the
//!   source of truth, then run `set` / `invalidate` (delete or mark stale) / `invalidate_tag` /
//!   `bump` through their process's coordinator, retrying until the write lands (an outbox:
//!   a writer whose process dies is finished by another). Store ops travel 0–2 ms each way;
//!   loaders take 1–20 ms.
//! - **Faults** ([`crate::Faults`]): an op fails before reaching the store; an op is applied
//!   and its reply lost; an op is delayed 50–300 ms; a loader fails or runs 100–600 ms (past
//!   its lease); a process dies (its calls vanish, its leases are orphaned, it restarts with a
//!   new coordinator); a process is paused for 1.5–3 lease lifetimes (its events wait).
//! - **Source of truth.** Key `k`'s version is `kv[k] + ns_epoch + tag_epoch[tag(k)]`; a
//!   loader snapshots it when it starts. Every loaded or written value is a fresh id (8 bytes)
//!   with a record of where it came from, so any value seen anywhere can be traced.
//!
//! # The checkers (after every step; the first violation ends the run)
//!
//! A *shadow* of each key's lease, version floor and generations is kept from the ops and
//! replies the store actually saw, independently of the store's own state:
//!
//! - **C1** at the end (writers stopped, everything drained): every entry the store would
//!   serve is absent or holds the source's current version (entries marked stale are
//!   invalidated by definition and skipped).
//! - **C2** on every stored fill: a leased fill lands only under the live lease the shadow
//!   says is its own (not revoked, not expired, not granted to another call with the same
//!   token); a fill never lowers the version floor; a loader's fill never lands under moved
//!   generations.
//! - **C3** on every grant and loader start: no lease is granted while another is live under
//!   the same generations (so per key, leased loads per lease window ≤ 1 + expiries: each
//!   grant is a new window only after an expiry, a revocation or the end of the last), and a
//!   call loads at most once per grant. Unleased loads (lock timeouts, store errors) are
//!   counted apart.
//! - **C4** on every answer read from the store: fresh only before `soft_at` and not marked
//!   stale, stale only before `hard_at`, stale-on-error only before `hard_at + stale_if_error`.
//! - **C5** on every `get_or_load` answer: a call that began after a write returned in its
//!   process never gets a value older than that write (component-wise on the source version;
//!   mark-stale invalidations excluded: serving stale is their point).
//! - **J1** (the coordinator's joiner contract, §1b): a joiner never gets a value whose fill
//!   the store refused.
//! - **L2** on every release: only the holder's token releases; a release with another token
//!   leaves the lease in place.
//! - **L3**: the store never reports a lease as held after it expired; a call that waited on a
//!   dead (or reply-lost) holder's lease reads again within ε of its expiry; and at that
//!   lease's end + ε, if nobody took it over while a call told it is held still waits, fail.
//! - **T1** on every answer read from the store: after a `bump` / `invalidate_tag` returned,
//!   no read returns an entry filled before the bump applied.
//! - **Liveness and stats** at the end: every call answered, every live coordinator idle
//!   (`pending() == (0, 0)`), and its `loads` / `coalesced` counters equal what the host saw.
//! - Any [`FlowError::Protocol`] a coordinator answers is a violation (a core or driver bug).

use crate::rng::{Rng, Zipf};
use crate::{Broken, Config};
use karlton_core::coordinator::Answer;
use karlton_core::entry::codec;
use karlton_core::flow::Write;
use karlton_core::{
    Action, CallId, Coordinator, Entry, Event, FlightId, FlowError, Input, InvalidateMode,
    LeaseMode, LeaseOutcome, Loaded, MemoryStore, MemoryStoreConfig, Op, Policy, ReadReply, Reply,
    Request, Served, Source, StoreFailure, StoreOp, StoreReply, Ticket, Token,
};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

/// Local clocks start here (plus skew), so skewed clocks never go below zero.
const BASE: u64 = 10_000_000;
/// The store's clock at the start.
const T0: u64 = 1_000_000;
/// Trace lines kept for a traced key.
const TRACE_KEEP: usize = 400;

/// What went wrong, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name (C1, C2, …).
    pub invariant: &'static str,
    /// The key (rank), if one.
    pub key: Option<usize>,
    /// Store clock at the violation.
    pub t: u64,
    /// Step number.
    pub step: u64,
    /// What happened.
    pub detail: String,
}

/// Counts from one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `get_or_load` calls issued.
    pub calls: u64,
    /// Calls answered (value or error).
    pub answered: u64,
    /// Writes issued (each retried until it landed).
    pub writes: u64,
    /// Answers from a fresh entry (fast path included).
    pub hits_fresh: u64,
    /// Answers from a stale entry (while one refreshes).
    pub hits_stale: u64,
    /// Answers served stale because the loader failed or was slow.
    pub stale_on_error: u64,
    /// Answers from a load (own or a flight's).
    pub loaded: u64,
    /// Answers that were errors.
    pub errors: u64,
    /// Joiners answered by their flight.
    pub coalesced: u64,
    /// Loader calls.
    pub loads: u64,
    /// Loader calls for the 10 hottest keys (where expiry stampedes happen).
    pub hot_loads: u64,
    /// Loader calls under a lease.
    pub leased_loads: u64,
    /// Most loaders running at once, fleet-wide.
    pub peak_loads: u64,
    /// Store ops sent.
    pub store_ops: u64,
    /// Store ops sent by reads (`get_or_load`), excluding the fast path.
    pub read_ops: u64,
    /// Fresh hits answered by the memory fast path (no op).
    pub fast_hits: u64,
    /// Fills the store refused.
    pub fills_rejected: u64,
    /// Leases that ran out before being used up (seen at the next grant).
    pub lease_expiries: u64,
    /// Faults injected: op failures, lost replies, slow ops.
    pub op_faults: u64,
    /// Process deaths.
    pub deaths: u64,
    /// Process pauses.
    pub pauses: u64,
    /// Joiners answered with a value whose fill the store refused while the refusal's reply
    /// was lost (the leader saw a store error).
    pub joiners_of_unheard_refusal: u64,
    /// Stale-on-error answers decided in time but delivered past `hard_at + stale_if_error`
    /// (the flow releases the lease before it answers).
    pub stale_served_late: u64,
    /// Answers a process-local L1 with a 300 ms bound would have given (the process got the
    /// key's value under 300 ms before, with no write to it since): the L1 model.
    pub l1_hits: u64,
    /// Store ops those answers cost (what the L1 would save).
    pub l1_ops_saved: u64,
    /// Call latency (begin to answer), counts per ms (the last bucket holds the rest).
    pub wait_hist: Vec<u64>,
    /// Steps (events) run.
    pub steps: u64,
    /// Virtual ms from the first to the last step.
    pub sim_ms: u64,
}

/// A run's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was counted.
    pub report: Report,
    /// The first violation, if any.
    pub violation: Option<Violation>,
    /// The last trace lines for `Config::trace_key`.
    pub trace: Vec<String>,
}

#[derive(Debug)]
enum Ev {
    NewRead,
    NewWrite,
    StartRead {
        proc: usize,
    },
    Arrive {
        task: u64,
        key: u32,
        op: StoreOp,
        lost: bool,
    },
    Reply {
        task: u64,
        ep: u64,
        r: Result<StoreReply, StoreFailure>,
    },
    LoadDone {
        task: u64,
        uid: u32,
        ok: bool,
    },
    Timer {
        task: u64,
        ep: u64,
    },
    Wake {
        task: u64,
        ep: u64,
    },
    Retry {
        task: u64,
        ep: u64,
    },
    Restart {
        proc: usize,
    },
    /// L3: by now a dead holder's lease on `key` must have been taken over by any waiter.
    Takeover {
        key: u32,
        token: Token,
    },
}

struct Item {
    t: u64,
    tie: u64,
    ev: Ev,
}
impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.tie) == (o.t, o.tie)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.tie).cmp(&(self.t, self.tie))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WKind {
    Invalidate(InvalidateMode),
    Set,
    BumpNs,
    BumpTag(u32),
}

#[derive(Debug, Clone)]
struct Intent {
    w: WKind,
    key: u32,
    /// The source component the write made current (kv, ns or tag epoch).
    need: u64,
    /// The value a `set` writes.
    uid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naive {
    Get,
    Load,
    Set,
}

#[derive(Debug, Clone)]
enum Kind {
    Read,
    Naive(Naive),
    Write(Intent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    None,
    Store,
    Load,
    Timer,
    Join(FlightId),
}

#[derive(Debug, Clone)]
enum LoaderState {
    Idle,
    Running(u32),
    Done(Input),
}

#[derive(Debug, Clone, Copy)]
struct ReadSeen {
    t: u64,
    uid: u32,
    soft: u64,
    hard: u64,
    marked: bool,
}

struct Task {
    proc: usize,
    key: u32,
    call: CallId,
    kind: Kind,
    begin_seq: u64,
    ep: u64,
    waiting: Waiting,
    loader: LoaderState,
    lease: Option<Token>,
    leased_loads: u32,
    last_read: Option<ReadSeen>,
    answered: bool,
    joined: bool,
    orphan_wait: Option<u64>,
    /// The orphaned lease this call was last told is held (cleared when it gets a lease).
    waited_on: Option<Token>,
    apply_t: u64,
    /// When it began (store clock), and how many store ops it sent.
    begin_t: u64,
    ops: u64,
    /// When the call last got a loader result or a timeout (where a stale-on-error serve is decided).
    decided_t: u64,
}

struct Proc {
    coord: Coordinator,
    skew: i64,
    alive: bool,
    paused_until: u64,
    last_pause_end: u64,
    fast: bool,
    tasks: HashSet<u64>,
    joiners: HashMap<FlightId, Vec<u64>>,
    /// C5: per key / namespace / tag, (step the write returned, highest component required).
    req_kv: HashMap<u32, Vec<(u64, u64)>>,
    req_ns: Vec<(u64, u64)>,
    req_tag: HashMap<u32, Vec<(u64, u64)>>,
    /// Loader starts and joiner answers the host saw (compared with the coordinator's stats).
    loads: u64,
    joiner_answers: u64,
    /// L1 model: when this process last got each key's value.
    l1: HashMap<u32, u64>,
    /// Leaders' answers by flight (only for the `JoinersTakeRefusedFill` variant).
    flight_values: HashMap<FlightId, Served>,
}

#[derive(Debug, Clone)]
struct ValueInfo {
    key: u32,
    kv: u64,
    ns: u64,
    tg: u64,
    origin: u64,
    fill_t: Option<u64>,
    /// The store refused its fill and the filler heard so.
    rejected: bool,
    /// The store refused its fill but the reply was lost (the filler saw a store error).
    rejected_unheard: bool,
}

impl ValueInfo {
    fn version(&self) -> u64 {
        self.kv + self.ns + self.tg
    }
}

#[derive(Debug, Clone)]
struct ShadowLease {
    token: Token,
    task: u64,
    until: u64,
    gens: Vec<u64>,
}

#[derive(Debug, Clone, Default)]
struct Shadow {
    lease: Option<ShadowLease>,
    floor: Option<u64>,
}

struct Sim {
    cfg: Config,
    rng: Rng,
    zipf: Zipf,
    policy: Arc<Policy>,
    t: u64,
    seq: u64,
    q: BinaryHeap<Item>,
    store: MemoryStore,
    procs: Vec<Proc>,
    tasks: HashMap<u64, Task>,
    next_task: u64,
    keys: Vec<String>,
    gen_keys: Vec<Vec<String>>,
    ns_key: String,
    tag_keys: Vec<String>,
    kv: Vec<u64>,
    ns_epoch: u64,
    tag_epoch: Vec<u64>,
    values: Vec<ValueInfo>,
    shadow: Vec<Shadow>,
    /// Generation values the store returned for each bump (ep key index → value).
    gens_now: Vec<u64>,
    /// Latest bump apply time per ep key index.
    bump_apply: Vec<u64>,
    /// T1: per ep key index, (return time, highest apply time of bumps returned by then).
    bump_hist: Vec<Vec<(u64, u64)>>,
    /// Tokens granted, per key (fencing: unique per key).
    granted: HashMap<(u32, Token), u64>,
    /// Lease tokens whose holders are dead (or never learned they hold it).
    orphans: HashSet<Token>,
    /// Last grant per key, for the `StoreAcceptsExpiredLease` variant.
    last_grant: HashMap<String, (Token, u64)>,
    /// `StoreReusesTokens`: per key, the grants since its last invalidate, and what each token
    /// it handed out stands for in the real store (the latest grant wins).
    reused: HashMap<String, (u64, HashMap<Token, Token>)>,
    /// L1 model: when each key (its namespace, its tag) was last written.
    last_write: Vec<u64>,
    last_bump_ns: u64,
    last_bump_tag: Vec<u64>,
    writes_in_flight: usize,
    pending_writes: Vec<Intent>,
    next_read_us: u64,
    stopping: bool,
    loads_running: u64,
    eps_l3: u64,
    report: Report,
    violation: Option<Violation>,
    trace: Vec<String>,
}

/// Run one simulation.
pub fn run(cfg: &Config) -> Outcome {
    let mut s = Sim::new(cfg.clone());
    s.main();
    Outcome {
        report: s.report,
        violation: s.violation,
        trace: s.trace,
    }
}

fn uid_bytes(uid: u32) -> karlton_core::store::Bytes {
    Arc::from(&uid.to_le_bytes()[..])
}

fn uid_of(b: &[u8]) -> Option<u32> {
    b.try_into().ok().map(u32::from_le_bytes)
}

/// The highest requirement recorded strictly before step `seq`.
fn req_before(v: &[(u64, u64)], seq: u64) -> u64 {
    let i = v.partition_point(|&(s, _)| s < seq);
    if i == 0 { 0 } else { v[i - 1].1 }
}

fn push_req(v: &mut Vec<(u64, u64)>, seq: u64, need: u64) {
    let m = v.last().map_or(0, |l| l.1).max(need);
    v.push((seq, m));
}

impl Sim {
    fn new(cfg: Config) -> Sim {
        let mut rng = Rng::new(cfg.seed);
        let policy = Arc::new(cfg.policy.policy());
        let ns_key = karlton_core::key::generation_key("sim", false);
        let tag_keys: Vec<String> = (0..cfg.tags)
            .map(|i| karlton_core::key::tag_key("sim", false, &format!("t{i}")))
            .collect();
        let keys: Vec<String> = (0..cfg.keys)
            .map(|i| {
                karlton_core::Key::new("sim")
                    .expect("namespace")
                    .segment(&i.to_string())
                    .build()
            })
            .collect();
        let gen_keys = (0..cfg.keys)
            .map(|i| vec![ns_key.clone(), tag_keys[i % cfg.tags].clone()])
            .collect();
        let procs = (0..cfg.procs)
            .map(|_| {
                let seed = rng.next_u64();
                let skew = rng.range(0, 2 * cfg.skew_ms) as i64 - cfg.skew_ms as i64;
                let fast = rng.chance(cfg.fast_path);
                Proc::new(seed, skew, fast)
            })
            .collect();
        let f = cfg.faults;
        // A waiter reads again at most one backoff step after a lease ends, late by at most
        // the ops' travel (the lease end is converted with a skew learned one reply late).
        let max_op = if f.op_slow > 0.0 { 300 } else { 2 };
        let eps_l3 = 10 + 4 * max_op + 4;
        Sim {
            zipf: Zipf::new(cfg.keys, cfg.zipf),
            policy,
            t: T0,
            seq: 0,
            q: BinaryHeap::new(),
            store: MemoryStore::new(MemoryStoreConfig {
                max_entries: 1 << 30,
                max_bytes: 1 << 40,
                shards: 1,
                seed: cfg.seed,
            }),
            procs,
            tasks: HashMap::new(),
            next_task: 0,
            ns_key,
            kv: vec![0; cfg.keys],
            ns_epoch: 0,
            tag_epoch: vec![0; cfg.tags],
            values: Vec::new(),
            shadow: vec![Shadow::default(); cfg.keys],
            gens_now: vec![0; 1 + cfg.tags],
            bump_apply: vec![0; 1 + cfg.tags],
            bump_hist: vec![Vec::new(); 1 + cfg.tags],
            granted: HashMap::new(),
            orphans: HashSet::new(),
            last_grant: HashMap::new(),
            reused: HashMap::new(),
            last_write: vec![0; cfg.keys],
            last_bump_ns: 0,
            last_bump_tag: vec![0; cfg.tags],
            writes_in_flight: 0,
            pending_writes: Vec::new(),
            next_read_us: T0 * 1000,
            stopping: false,
            loads_running: 0,
            eps_l3,
            report: Report::default(),
            violation: None,
            trace: Vec::new(),
            keys,
            gen_keys,
            tag_keys,
            rng,
            cfg,
        }
    }

    // ---------------------------------------------------------------- scheduling

    fn at(&mut self, t: u64, ev: Ev) {
        let tie = self.rng.next_u64();
        self.q.push(Item {
            t: t.max(self.t),
            tie,
            ev,
        });
    }

    fn local(&self, p: usize) -> u64 {
        (self.t + BASE).saturating_add_signed(self.procs[p].skew)
    }

    fn global(&self, p: usize, local: u64) -> u64 {
        local
            .saturating_add_signed(-self.procs[p].skew)
            .saturating_sub(BASE)
            .max(self.t)
    }

    fn latency(&mut self) -> u64 {
        if self.rng.chance(self.cfg.faults.op_slow) {
            self.report.op_faults += 1;
            self.rng.range(50, 300)
        } else {
            self.rng.range(0, 2)
        }
    }

    fn fail(&mut self, invariant: &'static str, key: Option<u32>, detail: String) {
        let always = matches!(invariant, "driver" | "protocol" | "liveness" | "stats");
        if self.violation.is_none()
            && (always || !self.cfg.unchecked && !self.cfg.skip.contains(&invariant))
        {
            self.violation = Some(Violation {
                invariant,
                key: key.map(|k| k as usize),
                t: self.t,
                step: self.seq,
                detail,
            });
        }
    }

    fn traced(&self, key: u32) -> bool {
        self.cfg.trace_key == Some(key as usize)
    }

    /// Trace a write: a bump is traced for every key that depends on its generation.
    fn tr_write(&mut self, w: WKind, key: u32, line: impl FnOnce() -> String) {
        let dep = match (w, self.cfg.trace_key) {
            (WKind::BumpNs, Some(k)) => Some(k as u32),
            (WKind::BumpTag(g), Some(k)) if k % self.cfg.tags == g as usize => Some(k as u32),
            _ => None,
        };
        self.tr(dep.unwrap_or(key), line);
    }

    fn tr(&mut self, key: u32, line: impl FnOnce() -> String) {
        if self.traced(key) {
            let l = format!("t={} step={} {}", self.t, self.seq, line());
            self.trace.push(l);
            if self.trace.len() > 2 * TRACE_KEEP {
                self.trace.drain(..TRACE_KEEP);
            }
        }
    }

    fn main(&mut self) {
        self.at(T0, Ev::NewRead);
        self.at(T0, Ev::NewWrite);
        while let Some(Item { t, ev, .. }) = self.q.pop() {
            self.t = t;
            self.seq += 1;
            self.step(ev);
            if self.violation.is_some() {
                break;
            }
        }
        self.report.steps = self.seq;
        self.report.sim_ms = self.t - T0;
        if self.violation.is_none() {
            self.end_checks();
        }
        if self.trace.len() > TRACE_KEEP {
            let n = self.trace.len() - TRACE_KEEP;
            self.trace.drain(..n);
        }
    }

    /// The process an event for `task` belongs to, if it must wait for a pause to end.
    fn paused(&self, task: u64) -> Option<u64> {
        let p = self.tasks.get(&task)?.proc;
        let u = self.procs[p].paused_until;
        (u > self.t).then_some(u)
    }

    fn step(&mut self, ev: Ev) {
        // Events a paused process would act on wait for the pause to end.
        let owner = match &ev {
            Ev::Reply { task, .. }
            | Ev::LoadDone { task, .. }
            | Ev::Timer { task, .. }
            | Ev::Wake { task, .. }
            | Ev::Retry { task, .. } => Some(*task),
            _ => None,
        };
        if let Some(u) = owner.and_then(|t| self.paused(t)) {
            self.at(u, ev);
            return;
        }
        match ev {
            Ev::NewRead => self.new_read(),
            Ev::NewWrite => self.new_write(),
            Ev::StartRead { proc } => self.start_read(proc),
            Ev::Arrive {
                task,
                key,
                op,
                lost,
            } => self.arrive(task, key, op, lost),
            Ev::Reply { task, ep, r } => self.on_reply(task, ep, r),
            Ev::LoadDone { task, uid, ok } => self.load_done(task, uid, ok),
            Ev::Timer { task, ep } | Ev::Wake { task, ep } => self.on_timer(task, ep),
            Ev::Retry { task, ep } => {
                if self.tasks.get(&task).is_some_and(|x| x.ep == ep) {
                    self.issue_write(task);
                }
            }
            Ev::Restart { proc } => self.restart(proc),
            Ev::Takeover { key, token } => self.check_takeover(key, token),
        }
    }

    // ---------------------------------------------------------------- workload

    fn new_read(&mut self) {
        if self.stopping {
            return;
        }
        self.report.calls += 1;
        if self.report.calls >= self.cfg.calls {
            self.stopping = true;
        } else {
            self.next_read_us += self.rng.exp(self.cfg.read_gap_us as f64).max(1);
            self.at(self.next_read_us / 1000, Ev::NewRead);
        }
        let f = self.cfg.faults;
        if self.rng.chance(f.die) {
            let p = self.rng.below(self.procs.len() as u64) as usize;
            self.die(p);
        }
        if self.rng.chance(f.pause) {
            let p = self.rng.below(self.procs.len() as u64) as usize;
            if self.procs[p].alive && self.procs[p].paused_until <= self.t {
                let lt = self.policy.lease_ttl_ms();
                let d = self.rng.range(lt * 3 / 2, lt * 3);
                self.procs[p].paused_until = self.t + d;
                self.procs[p].last_pause_end = self.t + d;
                self.report.pauses += 1;
                if let Some(k) = self.cfg.trace_key {
                    self.tr(k as u32, || format!("p{p} paused for {d} ms"));
                }
            }
        }
        let n = self.procs.len();
        let mut p = self.rng.below(n as u64) as usize;
        for _ in 0..n {
            if self.procs[p].alive {
                break;
            }
            p = (p + 1) % n;
        }
        if !self.procs[p].alive {
            self.report.answered += 1; // nobody to ask: the caller gets nothing, counted answered
            return;
        }
        if self.procs[p].paused_until > self.t {
            let u = self.procs[p].paused_until;
            self.at(u, Ev::StartRead { proc: p });
        } else {
            self.start_read(p);
        }
    }

    fn spawn(&mut self, proc: usize, key: u32, kind: Kind) -> u64 {
        self.next_task += 1;
        let id = self.next_task;
        self.tasks.insert(
            id,
            Task {
                proc,
                key,
                call: CallId(0),
                kind,
                begin_seq: self.seq,
                ep: 0,
                waiting: Waiting::None,
                loader: LoaderState::Idle,
                lease: None,
                leased_loads: 0,
                last_read: None,
                answered: false,
                joined: false,
                orphan_wait: None,
                waited_on: None,
                apply_t: 0,
                decided_t: 0,
                begin_t: self.t,
                ops: 0,
            },
        );
        self.procs[proc].tasks.insert(id);
        id
    }

    fn finish(&mut self, tid: u64) {
        if let Some(t) = self.tasks.remove(&tid) {
            self.procs[t.proc].tasks.remove(&tid);
        }
    }

    fn request(&self, key: u32) -> Request {
        Request {
            key: self.keys[key as usize].clone(),
            gen_keys: self.gen_keys[key as usize].clone(),
            tags: vec![],
        }
    }

    fn start_read(&mut self, p: usize) {
        if !self.procs[p].alive {
            self.report.answered += 1;
            return;
        }
        let key = self.zipf.sample(&mut self.rng) as u32;
        if self.cfg.broken == Some(Broken::NaiveCacheAside) {
            let tid = self.spawn(p, key, Kind::Naive(Naive::Get));
            let op = Op::Get {
                key: self.keys[key as usize].clone(),
                gen_keys: self.gen_keys[key as usize].clone(),
            };
            let now = self.local(p);
            let (call, a) = self.procs[p].coord.op(now, op, self.policy.clone());
            self.drain(p);
            self.tasks.get_mut(&tid).expect("task").call = call;
            self.drive(tid, a);
            return;
        }
        let tid = self.spawn(p, key, Kind::Read);
        if self.procs[p].fast {
            // A host co-located with the store tries the lock-free fresh hit first, on the
            // store's clock (for an in-process store the host's clock is the store's).
            let k = &self.keys[key as usize];
            let g = &self.gen_keys[key as usize];
            let counters = self.procs[p].coord.counters().clone();
            if let Some(s) = counters.memory_hit(&self.store, self.t, k, g, &self.policy) {
                self.report.fast_hits += 1;
                self.tr(key, || {
                    format!("p{p} task{tid} memory_hit {:?}", uid_of(&s.value))
                });
                self.record(tid, &Ok(Reply::Value(s)), false, true);
                self.finish(tid);
                return;
            }
        }
        let now = self.local(p);
        let req = self.request(key);
        let ticket = self.procs[p]
            .coord
            .get_or_load(now, req, self.policy.clone());
        self.drain(p);
        self.on_ticket(tid, ticket, None);
    }

    fn source(&self, key: u32) -> (u64, u64, u64) {
        (
            self.kv[key as usize],
            self.ns_epoch,
            self.tag_epoch[key as usize % self.cfg.tags],
        )
    }

    fn new_value(&mut self, key: u32, loaded: bool) -> u32 {
        let (kv, ns, tg) = self.source(key);
        let _ = loaded;
        self.values.push(ValueInfo {
            key,
            kv,
            ns,
            tg,
            origin: self.t,
            fill_t: None,
            rejected: false,
            rejected_unheard: false,
        });
        (self.values.len() - 1) as u32
    }

    fn new_write(&mut self) {
        if self.stopping {
            return;
        }
        let gap = self.cfg.read_gap_us * self.cfg.reads_per_write;
        let next = self.t * 1000 + self.rng.exp(gap as f64).max(1);
        self.at(next / 1000, Ev::NewWrite);
        if self.writes_in_flight >= self.cfg.writers {
            return;
        }
        let Some(p) = self.live_proc() else { return };
        let key = self.zipf.sample(&mut self.rng) as u32;
        let r = self.rng.unit();
        let w = if r < 0.35 {
            WKind::Invalidate(InvalidateMode::Delete)
        } else if r < 0.45 {
            WKind::Invalidate(InvalidateMode::MarkStale)
        } else if r < 0.80 {
            WKind::Set
        } else if r < 0.95 {
            WKind::BumpTag(key % self.cfg.tags as u32)
        } else {
            WKind::BumpNs
        };
        // The source of truth changes first; the cache op follows.
        let need = match w {
            WKind::Invalidate(_) | WKind::Set => {
                self.kv[key as usize] += 1;
                self.kv[key as usize]
            }
            WKind::BumpNs => {
                self.ns_epoch += 1;
                self.ns_epoch
            }
            WKind::BumpTag(g) => {
                self.tag_epoch[g as usize] += 1;
                self.tag_epoch[g as usize]
            }
        };
        match w {
            WKind::BumpNs => self.last_bump_ns = self.t,
            WKind::BumpTag(g) => self.last_bump_tag[g as usize] = self.t,
            _ => self.last_write[key as usize] = self.t,
        }
        let uid = if w == WKind::Set {
            self.new_value(key, false)
        } else {
            0
        };
        self.report.writes += 1;
        self.writes_in_flight += 1;
        let intent = Intent { w, key, need, uid };
        self.tr_write(w, key, || {
            format!("p{p} write begins {w:?} need={need} uid={uid}")
        });
        let tid = self.spawn(p, key, Kind::Write(intent));
        self.issue_write(tid);
    }

    fn live_proc(&mut self) -> Option<usize> {
        let n = self.procs.len();
        let start = self.rng.below(n as u64) as usize;
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&p| self.procs[p].alive && self.procs[p].paused_until <= self.t)
    }

    fn issue_write(&mut self, tid: u64) {
        let (p, intent) = match self.tasks.get(&tid) {
            Some(Task {
                proc,
                kind: Kind::Write(i),
                ..
            }) => (*proc, i.clone()),
            _ => return,
        };
        let k = intent.key as usize;
        let op = match intent.w {
            WKind::Invalidate(mode) => Op::Invalidate {
                key: self.keys[k].clone(),
                mode,
            },
            WKind::Set => {
                let v = &self.values[intent.uid as usize];
                Op::Set {
                    write: Write {
                        key: self.keys[k].clone(),
                        gen_keys: self.gen_keys[k].clone(),
                        tags: vec![],
                        value: uid_bytes(intent.uid),
                        codec: codec::RAW,
                        version: Some(v.version()),
                    },
                }
            }
            WKind::BumpNs => Op::Bump {
                gen_key: self.ns_key.clone(),
            },
            WKind::BumpTag(g) => Op::Bump {
                gen_key: self.tag_keys[g as usize].clone(),
            },
        };
        let now = self.local(p);
        let (call, a) = self.procs[p].coord.op(now, op, self.policy.clone());
        self.drain(p);
        self.tasks.get_mut(&tid).expect("task").call = call;
        self.drive(tid, a);
    }

    fn writer_done(&mut self, tid: u64, a: Answer) {
        let Some(task) = self.tasks.get(&tid) else {
            return;
        };
        let Kind::Write(intent) = task.kind.clone() else {
            return;
        };
        let (p, apply_t) = (task.proc, task.apply_t);
        match a {
            Ok(_) => {
                let seq = self.seq;
                let pr = &mut self.procs[p];
                match intent.w {
                    WKind::Invalidate(InvalidateMode::MarkStale) => {}
                    WKind::Invalidate(_) | WKind::Set => {
                        push_req(pr.req_kv.entry(intent.key).or_default(), seq, intent.need)
                    }
                    WKind::BumpNs => push_req(&mut pr.req_ns, seq, intent.need),
                    WKind::BumpTag(g) => {
                        push_req(pr.req_tag.entry(g).or_default(), seq, intent.need)
                    }
                }
                let gi = match intent.w {
                    WKind::BumpNs => Some(0),
                    WKind::BumpTag(g) => Some(1 + g as usize),
                    _ => None,
                };
                if let Some(gi) = gi {
                    let h = &mut self.bump_hist[gi];
                    let m = h.last().map_or(0, |l| l.1).max(apply_t);
                    h.push((self.t, m));
                }
                self.tr_write(intent.w, intent.key, || {
                    format!(
                        "p{p} task{tid} write returns {:?} (applied at {apply_t})",
                        intent.w
                    )
                });
                self.writes_in_flight -= 1;
                self.finish(tid);
            }
            Err(e) => {
                if let FlowError::Protocol(m) = &e {
                    self.fail(
                        "protocol",
                        Some(intent.key),
                        format!("write {:?} answered {m}", intent.w),
                    );
                }
                // Retry until it lands (an outbox).
                let d = self.rng.range(5, 20);
                let task = self.tasks.get_mut(&tid).expect("task");
                task.ep += 1;
                let ep = task.ep;
                self.at(self.t + d, Ev::Retry { task: tid, ep });
            }
        }
    }

    // ---------------------------------------------------------------- faults: death

    fn die(&mut self, p: usize) {
        if !self.procs[p].alive {
            return;
        }
        self.report.deaths += 1;
        let tids: Vec<u64> = self.procs[p].tasks.iter().copied().collect();
        let mut tids = tids;
        tids.sort_unstable();
        for tid in tids {
            let task = self.tasks.remove(&tid).expect("task");
            if let Some(tok) = task.lease {
                self.orphans.insert(tok);
                let sh = &self.shadow[task.key as usize];
                if let Some(l) = sh
                    .lease
                    .as_ref()
                    .filter(|l| l.token == tok && l.until > self.t)
                {
                    let at = l.until + self.eps_l3;
                    self.at(
                        at,
                        Ev::Takeover {
                            key: task.key,
                            token: tok,
                        },
                    );
                }
            }
            self.tr(task.key, || {
                format!("p{p} dies with task{tid} (lease {:?})", task.lease)
            });
            if let Kind::Write(i) = task.kind {
                self.pending_writes.push(i);
            }
        }
        let pr = &mut self.procs[p];
        pr.tasks.clear();
        pr.alive = false;
        let d = self.rng.range(50, 500);
        self.at(self.t + d, Ev::Restart { proc: p });
        self.reissue_writes();
    }

    fn restart(&mut self, p: usize) {
        let seed = self.rng.next_u64();
        let (skew, fast) = (self.procs[p].skew, self.procs[p].fast);
        self.procs[p] = Proc::new(seed, skew, fast);
        self.reissue_writes();
    }

    fn reissue_writes(&mut self) {
        while let Some(i) = self.pending_writes.pop() {
            let Some(p) = self.live_proc() else {
                self.pending_writes.push(i);
                return;
            };
            let key = i.key;
            let tid = self.spawn(p, key, Kind::Write(i));
            self.issue_write(tid);
        }
    }

    // ---------------------------------------------------------------- the drive loop

    fn drain(&mut self, p: usize) {
        while let Some(e) = self.procs[p].coord.poll_event() {
            match e {
                Event::Wake { flight } => {
                    for tid in self.procs[p].joiners.remove(&flight).unwrap_or_default() {
                        if let Some(t) = self.tasks.get(&tid) {
                            if t.waiting == Waiting::Join(flight) {
                                let ep = t.ep;
                                self.at(self.t, Ev::Wake { task: tid, ep });
                            }
                        }
                    }
                }
                Event::BackgroundError { error, key } => {
                    if let FlowError::Protocol(m) = error {
                        self.fail(
                            "protocol",
                            None,
                            format!("background refresh of {key}: {m}"),
                        );
                    }
                }
            }
        }
    }

    fn handle(&mut self, tid: u64, input: Input) -> Action {
        if matches!(
            input,
            Input::Loaded(_) | Input::LoadFailed(_) | Input::Timeout
        ) {
            let now = self.t;
            self.tasks.get_mut(&tid).expect("task").decided_t = now;
        }
        let t = &self.tasks[&tid];
        let (p, call) = (t.proc, t.call);
        let now = self.local(p);
        let a = self.procs[p].coord.handle(now, call, input);
        self.drain(p);
        a
    }

    fn on_ticket(&mut self, tid: u64, ticket: Ticket, from: Option<FlightId>) {
        let p = self.tasks[&tid].proc;
        match ticket {
            Ticket::Answer { answer } => {
                if from.is_some() {
                    self.procs[p].joiner_answers += 1;
                }
                self.record(tid, &answer, from.is_some(), false);
                self.finish(tid);
            }
            Ticket::Lead { call, action } => {
                if let (Some(f), Some(Broken::JoinersTakeRefusedFill)) = (from, self.cfg.broken) {
                    if let Some(v) = self.procs[p].flight_values.get(&f).cloned() {
                        // Broken: take the leader's value instead of running again.
                        let _ = self.procs[p].coord.cancel(call);
                        self.drain(p);
                        self.record(tid, &Ok(Reply::Value(v)), true, false);
                        self.finish(tid);
                        return;
                    }
                }
                let t = self.tasks.get_mut(&tid).expect("task");
                t.call = call;
                t.joined = false;
                self.drive(tid, action);
            }
            Ticket::Join {
                call,
                flight,
                until_ms,
            } => {
                let t = self.tasks.get_mut(&tid).expect("task");
                t.call = call;
                t.joined = true;
                t.ep += 1;
                t.waiting = Waiting::Join(flight);
                let ep = t.ep;
                self.procs[p].joiners.entry(flight).or_default().push(tid);
                let at = self.global(p, until_ms);
                self.at(at, Ev::Timer { task: tid, ep });
            }
        }
    }

    fn drive(&mut self, tid: u64, mut action: Action) {
        loop {
            if self.violation.is_some() || !self.tasks.contains_key(&tid) {
                return;
            }
            action = match action {
                Action::Store(op) => {
                    self.send(tid, op);
                    return;
                }
                Action::FastRead { .. } => {
                    self.fail(
                        "driver",
                        None,
                        "a memory store was asked for a fast read".into(),
                    );
                    return;
                }
                Action::StartLoad { timeout_at } => {
                    self.start_loader(tid);
                    match self.await_load(tid, timeout_at) {
                        Some(i) => self.handle(tid, i),
                        None => return,
                    }
                }
                Action::AwaitLoad { timeout_at } => match self.await_load(tid, timeout_at) {
                    Some(i) => self.handle(tid, i),
                    None => return,
                },
                Action::Wait { until_ms } => {
                    let p = self.tasks[&tid].proc;
                    let at = self.global(p, until_ms);
                    let t = self.tasks.get_mut(&tid).expect("task");
                    t.ep += 1;
                    t.waiting = Waiting::Timer;
                    let ep = t.ep;
                    self.at(at, Ev::Timer { task: tid, ep });
                    return;
                }
                Action::Serve(v) => {
                    self.record(tid, &Ok(Reply::Value(v)), false, false);
                    // The rest runs in the background, as cache.rs spawns it.
                    self.handle(tid, Input::Continue)
                }
                Action::Answer(a) => {
                    self.on_answer(tid, a);
                    return;
                }
                Action::Finished => {
                    self.finish(tid);
                    return;
                }
            };
        }
    }

    fn on_answer(&mut self, tid: u64, a: Answer) {
        let (kind, p, call) = {
            let t = &self.tasks[&tid];
            (t.kind.clone(), t.proc, t.call)
        };
        match kind {
            Kind::Read => {
                if self.cfg.broken == Some(Broken::JoinersTakeRefusedFill) {
                    if let Ok(Reply::Value(v)) = &a {
                        self.procs[p]
                            .flight_values
                            .insert(FlightId(call.0), v.clone());
                    }
                }
                self.record(tid, &a, false, false);
                self.finish(tid);
            }
            Kind::Write(_) => self.writer_done(tid, a),
            Kind::Naive(Naive::Get) => match a {
                Ok(Reply::Missing) => {
                    self.tasks.get_mut(&tid).expect("task").kind = Kind::Naive(Naive::Load);
                    self.start_loader(tid);
                    let t = self.tasks.get_mut(&tid).expect("task");
                    t.ep += 1;
                    t.waiting = Waiting::Load;
                }
                a => {
                    self.record(tid, &a, false, false);
                    self.finish(tid);
                }
            },
            Kind::Naive(_) => self.finish(tid),
        }
    }

    fn naive_loaded(&mut self, tid: u64, input: Input) {
        let (p, key) = (self.tasks[&tid].proc, self.tasks[&tid].key);
        match input {
            Input::Loaded(l) => {
                let served = Served {
                    value: l.value.clone(),
                    codec: l.codec,
                    negative: false,
                    version: l.version,
                    source: Source::Loaded,
                    cached: false,
                };
                self.record(tid, &Ok(Reply::Value(served)), false, false);
                // Classic cache-aside: write what was loaded (no version, no lease).
                let w = Write {
                    key: self.keys[key as usize].clone(),
                    gen_keys: self.gen_keys[key as usize].clone(),
                    tags: vec![],
                    value: l.value,
                    codec: codec::RAW,
                    version: None,
                };
                let now = self.local(p);
                let (call, a) =
                    self.procs[p]
                        .coord
                        .op(now, Op::Set { write: w }, self.policy.clone());
                self.drain(p);
                let t = self.tasks.get_mut(&tid).expect("task");
                t.call = call;
                t.kind = Kind::Naive(Naive::Set);
                self.drive(tid, a);
            }
            _ => {
                self.record(
                    tid,
                    &Err(FlowError::Load("naive loader failed".into())),
                    false,
                    false,
                );
                self.finish(tid);
            }
        }
    }

    fn start_loader(&mut self, tid: u64) {
        let (key, p, lease) = {
            let t = &self.tasks[&tid];
            (t.key, t.proc, t.lease)
        };
        let uid = self.new_value(key, true);
        let f = self.cfg.faults;
        let ok = !self.rng.chance(f.load_fail);
        let d = if self.rng.chance(f.load_slow) {
            self.rng.range(100, 600)
        } else {
            self.rng.range(1, 20)
        };
        self.at(self.t + d, Ev::LoadDone { task: tid, uid, ok });
        self.loads_running += 1;
        self.report.peak_loads = self.report.peak_loads.max(self.loads_running);
        self.report.loads += 1;
        if key < 10 {
            self.report.hot_loads += 1;
        }
        self.procs[p].loads += 1;
        let t = self.tasks.get_mut(&tid).expect("task");
        t.loader = LoaderState::Running(uid);
        t.waited_on = None; // it stopped waiting: it loads (with a lease, or without after a lock timeout)
        if lease.is_some() {
            t.leased_loads += 1;
            self.report.leased_loads += 1;
            if t.leased_loads > 1 {
                self.fail(
                    "C3",
                    Some(key),
                    format!("task{tid} started a second load under lease {lease:?}"),
                );
            }
        }
        self.tr(key, || {
            format!("p{p} task{tid} loader starts uid={uid} lease={lease:?} ok={ok} for {d}ms")
        });
    }

    fn await_load(&mut self, tid: u64, timeout_at: Option<u64>) -> Option<Input> {
        let p = self.tasks[&tid].proc;
        let at = timeout_at.map(|l| self.global(p, l));
        let t = self.tasks.get_mut(&tid).expect("task");
        match std::mem::replace(&mut t.loader, LoaderState::Idle) {
            LoaderState::Done(i) => Some(i),
            LoaderState::Idle => Some(Input::LoadFailed("no loader running".into())),
            LoaderState::Running(uid) => {
                t.loader = LoaderState::Running(uid);
                t.ep += 1;
                t.waiting = Waiting::Load;
                let ep = t.ep;
                if let Some(at) = at {
                    self.at(at, Ev::Timer { task: tid, ep });
                }
                None
            }
        }
    }

    fn load_done(&mut self, tid: u64, uid: u32, ok: bool) {
        self.loads_running -= 1;
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        if !matches!(t.loader, LoaderState::Running(u) if u == uid) {
            return;
        }
        let v = &self.values[uid as usize];
        let input = if ok {
            Input::Loaded(Loaded {
                value: uid_bytes(uid),
                codec: codec::RAW,
                negative: false,
                version: Some(v.version()),
            })
        } else {
            Input::LoadFailed("injected loader failure".into())
        };
        let key = t.key;
        self.tr(key, || format!("task{tid} loader done uid={uid} ok={ok}"));
        let t = self.tasks.get_mut(&tid).expect("task");
        if t.waiting == Waiting::Load {
            t.waiting = Waiting::None;
            t.ep += 1;
            t.loader = LoaderState::Idle;
            if matches!(t.kind, Kind::Naive(_)) {
                self.naive_loaded(tid, input);
                return;
            }
            let a = self.handle(tid, input);
            self.drive(tid, a);
        } else {
            t.loader = LoaderState::Done(input);
        }
    }

    fn on_timer(&mut self, tid: u64, ep: u64) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        if t.ep != ep {
            return;
        }
        let w = t.waiting;
        t.waiting = Waiting::None;
        t.ep += 1;
        match w {
            Waiting::Load | Waiting::Timer => {
                let a = self.handle(tid, Input::Timeout);
                self.drive(tid, a);
            }
            Waiting::Join(f) => {
                let (p, call) = (t.proc, t.call);
                let now = self.local(p);
                let ticket = self.procs[p].coord.joined(now, call);
                self.drain(p);
                self.on_ticket(tid, ticket, Some(f));
            }
            Waiting::None | Waiting::Store => {}
        }
    }

    // ---------------------------------------------------------------- the store

    fn send(&mut self, tid: u64, op: StoreOp) {
        let t = self.tasks.get_mut(&tid).expect("task");
        t.ep += 1;
        t.waiting = Waiting::Store;
        t.ops += 1;
        let (ep, key, is_read) = (t.ep, t.key, !matches!(t.kind, Kind::Write(_)));
        self.report.store_ops += 1;
        if is_read {
            self.report.read_ops += 1;
        }
        let f = self.cfg.faults;
        if self.rng.chance(f.op_fail) {
            self.report.op_faults += 1;
            let d = self.rng.range(0, 2);
            self.tr(key, || {
                format!("task{tid} op {} fails before the store", op.name())
            });
            let r = Err(StoreFailure {
                message: "injected: connection reset".into(),
            });
            self.at(self.t + d, Ev::Reply { task: tid, ep, r });
            return;
        }
        let lost = self.rng.chance(f.reply_lost);
        if lost {
            self.report.op_faults += 1;
        }
        let d = self.latency();
        self.at(
            self.t + d,
            Ev::Arrive {
                task: tid,
                key,
                op,
                lost,
            },
        );
    }

    /// The store, as the broken variant (if any) behaves.
    fn apply(&mut self, op: &StoreOp) -> StoreReply {
        let now = self.t;
        if self.cfg.broken == Some(Broken::StoreReusesTokens) {
            return self.apply_reusing_tokens(op);
        }
        match (self.cfg.broken, op) {
            (Some(Broken::StoreIgnoresFillToken), StoreOp::Fill { token: Some(_), .. }) => {
                let mut op = op.clone();
                if let StoreOp::Fill { token, .. } = &mut op {
                    *token = None;
                }
                self.store.apply(now, &op)
            }
            (
                Some(Broken::StoreIgnoresGenerations),
                StoreOp::Fill {
                    generations: Some(_),
                    ..
                },
            ) => {
                let mut op = op.clone();
                if let StoreOp::Fill { generations, .. } = &mut op {
                    *generations = None;
                }
                self.store.apply(now, &op)
            }
            (
                Some(Broken::StoreAcceptsExpiredLease),
                StoreOp::Fill {
                    key,
                    token: Some(tok),
                    ..
                },
            ) => {
                match self.last_grant.get(key) {
                    // The lease ran out and nobody took it: the broken store still honours it.
                    Some(&(g, until)) if g == *tok && until <= now => {
                        self.store.apply(until - 1, op)
                    }
                    _ => self.store.apply(now, op),
                }
            }
            (
                Some(Broken::StoreKeepsExpiredLeases),
                StoreOp::Read {
                    key,
                    gen_keys,
                    lease,
                    ..
                },
            ) if *lease != LeaseMode::None
                && self.last_grant.get(key).is_some_and(|&(_, u)| {
                    u <= now && now < u + 2 * self.policy.lease_ttl_ms()
                }) =>
            {
                let until = self.last_grant[key].1 + 2 * self.policy.lease_ttl_ms();
                let plain = karlton_core::flow::get_op(key, gen_keys);
                match self.store.apply(now, &plain) {
                    StoreReply::Read(mut rr) => {
                        rr.lease = LeaseOutcome::Held { until_ms: until };
                        StoreReply::Read(rr)
                    }
                    other => other,
                }
            }
            (Some(Broken::StoreReleaseIgnoresToken), StoreOp::Release { key, .. }) => {
                match self.store.inspect(now, key).and_then(|s| s.lease) {
                    Some((holder, _)) => self.store.apply(
                        now,
                        &StoreOp::Release {
                            key: key.clone(),
                            token: holder,
                        },
                    ),
                    None => self.store.apply(now, op),
                }
            }
            _ => {
                let r = self.store.apply(now, op);
                if let (
                    StoreOp::Read {
                        key, lease_ttl_ms, ..
                    },
                    StoreReply::Read(rr),
                ) = (op, &r)
                {
                    if let LeaseOutcome::Granted { token } = rr.lease {
                        if matches!(
                            self.cfg.broken,
                            Some(
                                Broken::StoreAcceptsExpiredLease | Broken::StoreKeepsExpiredLeases
                            )
                        ) {
                            self.last_grant
                                .insert(key.clone(), (token, now + lease_ttl_ms));
                        }
                    }
                }
                r
            }
        }
    }

    /// `StoreReusesTokens`: the real store underneath, its tokens renamed to a per-key count
    /// that restarts on invalidate (a token the store hands out maps to its latest real grant).
    fn apply_reusing_tokens(&mut self, op: &StoreOp) -> StoreReply {
        let now = self.t;
        let mut op = op.clone();
        let key = op.key().to_owned();
        if let StoreOp::Invalidate { .. } = op {
            if let Some((n, _)) = self.reused.get_mut(&key) {
                *n = 0;
            }
        }
        if let Some(t) = op.token_mut() {
            if let Some(real) = self.reused.get(&key).and_then(|(_, m)| m.get(t)) {
                *t = *real;
            }
        }
        let mut r = self.store.apply(now, &op);
        if let (StoreOp::Read { key, .. }, StoreReply::Read(rr)) = (&op, &mut r) {
            if let LeaseOutcome::Granted { token } = &mut rr.lease {
                let (n, m) = self.reused.entry(key.clone()).or_default();
                *n += 1;
                m.insert(*n, *token);
                *token = *n;
            }
        }
        r
    }

    /// L3 at a dead holder's lease end + ε: if the lease was not taken over (no grant, fill or
    /// invalidation since) while a live call that was told it is held still waits, fail.
    fn check_takeover(&mut self, key: u32, token: Token) {
        let same = self.shadow[key as usize]
            .lease
            .as_ref()
            .is_some_and(|l| l.token == token);
        if !same {
            return;
        }
        let until = self.shadow[key as usize]
            .lease
            .as_ref()
            .map_or(0, |l| l.until);
        let mut waiting: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.key == key && t.waited_on == Some(token))
            .filter(|(_, t)| self.procs[t.proc].last_pause_end < until)
            .map(|(id, _)| *id)
            .collect();
        waiting.sort_unstable();
        if let Some(w) = waiting.first() {
            self.fail("L3", Some(key), format!(
                "the dead holder's lease {token} ended at {until}; at {} (ε = {} ms) it was not taken over and task{w} still waits",
                self.t, self.eps_l3));
        }
    }

    fn arrive(&mut self, tid: u64, key: u32, op: StoreOp, lost: bool) {
        let r = self.apply(&op);
        if !self.cfg.unchecked {
            self.check_op(tid, key, &op, &r, lost);
        } else if let StoreReply::Rejected { .. } = r {
            self.report.fills_rejected += 1;
        }
        self.tr(key, || {
            format!(
                "task{tid} store {} -> {}{}",
                op_desc(&op),
                reply_desc(&r),
                if lost { " (reply lost)" } else { "" }
            )
        });
        if let (true, StoreReply::Read(rr)) = (lost, &r) {
            if let LeaseOutcome::Granted { token } = rr.lease {
                self.orphans.insert(token); // nobody knows they hold it
                let at = self.t + self.policy.lease_ttl_ms() + self.eps_l3;
                self.at(at, Ev::Takeover { key, token });
            }
        }
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.apply_t = self.t;
            if let StoreReply::Read(rr) = &r {
                t.last_read = rr
                    .entry
                    .as_deref()
                    .and_then(|b| Entry::decode(b).ok())
                    .and_then(|e| {
                        Some(ReadSeen {
                            t: self.t,
                            uid: uid_of(&e.value)?,
                            soft: e.soft_at,
                            hard: e.hard_at,
                            marked: rr.marked_stale,
                        })
                    });
            }
        } else if matches!(op, StoreOp::Read { .. }) {
            if let StoreReply::Read(ReadReply {
                lease: LeaseOutcome::Granted { token },
                ..
            }) = &r
            {
                self.orphans.insert(*token); // its caller is gone
            }
        }
        let ep = self.tasks.get(&tid).map_or(0, |t| t.ep);
        let d = self.rng.range(0, 2);
        let r = if lost {
            Err(StoreFailure {
                message: "injected: reply lost".into(),
            })
        } else {
            Ok(r)
        };
        self.at(self.t + d, Ev::Reply { task: tid, ep, r });
    }

    fn on_reply(&mut self, tid: u64, ep: u64, r: Result<StoreReply, StoreFailure>) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        if t.ep != ep || t.waiting != Waiting::Store {
            return;
        }
        t.waiting = Waiting::None;
        match &r {
            Ok(StoreReply::Read(rr)) => {
                t.lease = match rr.lease {
                    LeaseOutcome::Granted { token } => {
                        t.leased_loads = 0;
                        Some(token)
                    }
                    _ => None,
                }
            }
            Ok(StoreReply::Stored | StoreReply::Rejected { .. } | StoreReply::Lease { .. }) => {
                t.lease = None
            }
            Err(_) => {
                // The outcome is unknown to the call: it will not use that lease again (the
                // flow loads unleased or ends), so for L3 its holder is gone.
                if let Some(tok) = t.lease.take() {
                    self.orphans.insert(tok);
                }
            }
            _ => {}
        }
        let input = match r {
            Ok(r) => Input::Store(r),
            Err(e) => Input::StoreFailed(e),
        };
        let a = self.handle(tid, input);
        self.drive(tid, a);
    }

    // ---------------------------------------------------------------- checkers

    fn gen_index(&self, gen_key: &str) -> Option<usize> {
        if gen_key == self.ns_key {
            return Some(0);
        }
        self.tag_keys
            .iter()
            .position(|k| k == gen_key)
            .map(|i| i + 1)
    }

    fn key_gens(&self, key: u32) -> [usize; 2] {
        [0, 1 + key as usize % self.cfg.tags]
    }

    fn check_op(&mut self, tid: u64, key: u32, op: &StoreOp, r: &StoreReply, lost: bool) {
        let t = self.t;
        match (op, r) {
            (StoreOp::Read { .. }, StoreReply::Read(rr)) => {
                // L3: a call that waited on a dead holder's lease reads again soon after it ends.
                let (p, ow) = match self.tasks.get_mut(&tid) {
                    Some(task) => (Some(task.proc), task.orphan_wait.take()),
                    None => (None, None),
                };
                if let (Some(u), Some(p)) = (ow, p) {
                    if t > u + self.eps_l3 && self.procs[p].last_pause_end < u {
                        self.fail("L3", Some(key), format!(
                            "task{tid} waited on an orphaned lease that ended at {u}; it read again only at {t} (ε = {} ms)", self.eps_l3));
                        return;
                    }
                }
                let sh = &self.shadow[key as usize];
                match rr.lease {
                    LeaseOutcome::Granted { token } => {
                        if let Some(task) = self.tasks.get_mut(&tid) {
                            task.waited_on = None;
                        }
                        let sh = &self.shadow[key as usize];
                        if let Some(l) = &sh.lease {
                            if l.until > t && l.gens == rr.generations {
                                let d = format!("granted token {token} to task{tid} while token {} (task{}) is live until {}", l.token, l.task, l.until);
                                self.fail("C3", Some(key), d);
                                return;
                            }
                            if l.until <= t {
                                self.report.lease_expiries += 1;
                            }
                        }
                        if let Some(other) = self.granted.insert((key, token), tid) {
                            if other != tid {
                                self.fail("C2", Some(key), format!(
                                    "token {token} granted twice on one key (task{other}, then task{tid}): fencing tokens must be unique"));
                                return;
                            }
                        }
                        self.shadow[key as usize].lease = Some(ShadowLease {
                            token,
                            task: tid,
                            until: t + self.policy.lease_ttl_ms(),
                            gens: rr.generations.clone(),
                        });
                    }
                    LeaseOutcome::Held { until_ms } => match &sh.lease {
                        Some(l) if l.until > t => {
                            if self.orphans.contains(&l.token) {
                                if let Some(task) = self.tasks.get_mut(&tid) {
                                    task.orphan_wait = Some(l.until);
                                    task.waited_on = Some(l.token);
                                }
                            }
                        }
                        _ => self.fail("L3", Some(key), format!("the store says the lease is held until {until_ms}, but no lease is live")),
                    },
                    LeaseOutcome::NotRequested => {}
                }
            }
            (
                StoreOp::Fill {
                    entry,
                    token,
                    version,
                    generations,
                    gen_keys,
                    ..
                },
                StoreReply::Stored,
            ) => {
                let uid = Entry::decode(entry).ok().and_then(|e| uid_of(&e.value));
                let sh = &self.shadow[key as usize];
                if let Some(tok) = token {
                    let ok = sh
                        .lease
                        .as_ref()
                        .is_some_and(|l| l.token == *tok && l.until > t && l.task == tid);
                    if !ok {
                        let d = format!(
                            "task{tid}'s fill under token {tok} was stored, but the live lease is {:?}",
                            sh.lease
                        );
                        self.fail("C2", Some(key), d);
                        return;
                    }
                }
                if let (Some(v), Some(f)) = (version, sh.floor) {
                    if *v < f {
                        self.fail(
                            "C2",
                            Some(key),
                            format!("a fill of version {v} was stored over version floor {f}"),
                        );
                        return;
                    }
                }
                if let Some(g) = generations {
                    let current: Vec<u64> = gen_keys
                        .iter()
                        .map(|k| self.gen_index(k).map_or(0, |i| self.gens_now[i]))
                        .collect();
                    if *g != current {
                        self.fail(
                            "C2",
                            Some(key),
                            format!(
                                "a fill loaded under generations {g:?} was stored under {current:?}"
                            ),
                        );
                        return;
                    }
                    if let Some(uid) = uid {
                        let origin = self.values[uid as usize].origin;
                        for gi in self.key_gens(key) {
                            if self.bump_apply[gi] > origin {
                                self.fail("T1", Some(key), format!(
                                    "value {uid} loaded at {origin} was filled after a bump applied at {}", self.bump_apply[gi]));
                                return;
                            }
                        }
                    }
                }
                let sh = &mut self.shadow[key as usize];
                sh.lease = None;
                if let Some(v) = version {
                    sh.floor = Some(sh.floor.map_or(*v, |f| f.max(*v)));
                }
                if let Some(uid) = uid {
                    self.values[uid as usize].fill_t = Some(t);
                }
            }
            (StoreOp::Fill { entry, .. }, StoreReply::Rejected { .. }) => {
                self.report.fills_rejected += 1;
                if let Some(uid) = Entry::decode(entry).ok().and_then(|e| uid_of(&e.value)) {
                    let v = &mut self.values[uid as usize];
                    if lost {
                        v.rejected_unheard = true
                    } else {
                        v.rejected = true
                    }
                }
            }
            (StoreOp::Invalidate { .. }, StoreReply::Invalidated { .. }) => {
                self.shadow[key as usize].lease = None;
            }
            (StoreOp::Release { token, key: k }, StoreReply::Lease { ok }) => {
                let sh = &self.shadow[key as usize];
                let live = sh.lease.as_ref().filter(|l| l.until > t).map(|l| l.token);
                if *ok {
                    if live != Some(*token) {
                        self.fail("L2", Some(key), format!("a release with token {token} succeeded, but the live lease is {live:?}"));
                        return;
                    }
                    self.shadow[key as usize].lease = None;
                } else if let Some(holder) = live {
                    let now_held = self.store.inspect(t, k).and_then(|s| s.lease).map(|l| l.0);
                    if now_held != Some(holder) {
                        self.fail("L2", Some(key), format!(
                            "a refused release with token {token} changed the lease of {holder} to {now_held:?}"));
                    }
                }
            }
            (StoreOp::Extend { token, lease_ttl_ms, .. }, StoreReply::Lease { ok }) => {
                let sh = &mut self.shadow[key as usize];
                let live = sh.lease.as_mut().filter(|l| l.until > t);
                match live {
                    Some(l) if l.token == *token && *ok => l.until = t.saturating_add(*lease_ttl_ms),
                    Some(l) if l.token == *token => {
                        let d = format!("an extend by the live holder {token} was refused");
                        self.fail("L2", Some(key), d);
                    }
                    l if *ok => {
                        let d = format!("an extend with token {token} succeeded, but the live lease is {:?}", l.map(|l| l.token));
                        self.fail("L2", Some(key), d);
                    }
                    _ => {}
                }
            }
            (StoreOp::Bump { gen_key, .. }, StoreReply::Bumped { generation }) => {
                if let Some(gi) = self.gen_index(gen_key) {
                    self.gens_now[gi] = *generation;
                    self.bump_apply[gi] = t;
                }
            }
            _ => {}
        }
    }

    /// An answer reached a caller: count it and check C4, C5, T1, J1.
    fn record(&mut self, tid: u64, a: &Answer, via_join: bool, mem_hit: bool) {
        let Some(task) = self.tasks.get_mut(&tid) else {
            return;
        };
        if task.answered {
            return;
        }
        task.answered = true;
        let (p, key, begin, last_read, decided) = (
            task.proc,
            task.key,
            task.begin_seq,
            task.last_read,
            task.decided_t,
        );
        let (begin_t, ops) = (task.begin_t, task.ops);
        self.report.answered += 1;
        let h = &mut self.report.wait_hist;
        if h.is_empty() {
            h.resize(2_001, 0);
        }
        h[((self.t - begin_t) as usize).min(2_000)] += 1;
        if a.is_ok() {
            let written = self.last_write[key as usize]
                .max(self.last_bump_ns)
                .max(self.last_bump_tag[key as usize % self.cfg.tags]);
            let t = self.t;
            if let Some(prev) = self.procs[p].l1.insert(key, t) {
                if t - prev <= 300 && prev > written {
                    self.report.l1_hits += 1;
                    self.report.l1_ops_saved += ops;
                }
            }
        }
        let s = match a {
            Ok(Reply::Value(s)) => s,
            Ok(other) => {
                self.fail(
                    "protocol",
                    Some(key),
                    format!("get_or_load answered {other:?}"),
                );
                return;
            }
            Err(e) => {
                self.report.errors += 1;
                if let FlowError::Protocol(m) = e {
                    self.fail("protocol", Some(key), format!("task{tid}: {m}"));
                }
                self.tr(key, || format!("p{p} task{tid} answered error {e}"));
                return;
            }
        };
        match s.source {
            Source::Fresh => self.report.hits_fresh += 1,
            Source::Stale => self.report.hits_stale += 1,
            Source::StaleOnError | Source::StaleOnTimeout => self.report.stale_on_error += 1,
            Source::Loaded => self.report.loaded += 1,
        }
        if via_join {
            self.report.coalesced += 1;
        }
        let Some(uid) = uid_of(&s.value) else {
            self.fail(
                "driver",
                Some(key),
                format!("a value that is not a simulator value: {:?}", s.value),
            );
            return;
        };
        self.tr(key, || {
            format!(
                "p{p} task{tid} answered uid={uid} {:?}{}",
                s.source,
                if via_join { " (joiner)" } else { "" }
            )
        });
        if self.cfg.unchecked {
            return;
        }
        let info = self.values[uid as usize].clone();
        if info.key != key {
            self.fail(
                "driver",
                Some(key),
                format!("value {uid} of key {} answered for key {key}", info.key),
            );
            return;
        }
        // J1: joiners never take a refused fill.
        if via_join && s.source == Source::Loaded && info.rejected {
            self.fail(
                "J1",
                Some(key),
                format!("joiner task{tid} got value {uid}, whose fill the store refused"),
            );
            return;
        }
        if via_join && s.source == Source::Loaded && info.rejected_unheard {
            // The leader saw a store error, not the refusal: the coordinator cannot know, and
            // shares the value (counted, not a violation; see docs/simulation.md).
            self.report.joiners_of_unheard_refusal += 1;
        }
        // C4 and T1, for values this call read from the store.
        let read = if mem_hit {
            Some(ReadSeen {
                t: self.t,
                uid,
                soft: u64::MAX,
                hard: u64::MAX,
                marked: false,
            })
        } else {
            last_read.filter(|r| r.uid == uid)
        };
        if !via_join {
            if let Some(r) = read {
                let c4 = match s.source {
                    Source::Fresh => (r.marked || r.t >= r.soft).then(|| {
                        format!(
                            "fresh at {} but soft_at {} marked {}",
                            r.t, r.soft, r.marked
                        )
                    }),
                    Source::Stale => {
                        (r.t >= r.hard).then(|| format!("stale at {} but hard_at {}", r.t, r.hard))
                    }
                    Source::StaleOnError | Source::StaleOnTimeout => {
                        // Checked where the flow decides it (the loader's failure or timeout):
                        // the answer itself may come later, after the lease's release round
                        // trip (counted apart). The flow estimates the store clock from its last
                        // read, late by that reply's travel (≤ 2 ms here): allow that much.
                        let lim = r.hard.saturating_add(self.policy.stale_if_error_ms());
                        if self.t >= lim {
                            self.report.stale_served_late += 1;
                        }
                        (decided >= lim + 2).then(|| format!("stale-on-error decided at {decided} past hard_at + stale_if_error = {lim}"))
                    }
                    Source::Loaded => None,
                };
                if let Some(d) = c4 {
                    self.fail("C4", Some(key), format!("task{tid} value {uid}: {d}"));
                    return;
                }
                if matches!(s.source, Source::Fresh | Source::Stale) {
                    let filled = info.fill_t.unwrap_or(0);
                    for gi in self.key_gens(key) {
                        let applied = req_before(&self.bump_hist[gi], r.t);
                        if filled < applied {
                            self.fail("T1", Some(key), format!(
                                "task{tid} read value {uid} (filled at {filled}) at {} after a bump applied at {applied} returned", r.t));
                            return;
                        }
                    }
                }
            }
        }
        // C5: nothing older than a write that returned in this process before the call began.
        let pr = &self.procs[p];
        let need_kv = pr.req_kv.get(&key).map_or(0, |v| req_before(v, begin));
        let need_ns = req_before(&pr.req_ns, begin);
        let tag = (key as usize % self.cfg.tags) as u32;
        let need_tg = pr.req_tag.get(&tag).map_or(0, |v| req_before(v, begin));
        if info.kv < need_kv || info.ns < need_ns || info.tg < need_tg {
            self.fail("C5", Some(key), format!(
                "task{tid} (p{p}) got value {uid} = (kv {}, ns {}, tag {}) {:?}, but a write in its process returned before it began requiring (kv {need_kv}, ns {need_ns}, tag {need_tg})",
                info.kv, info.ns, info.tg, s.source));
        }
    }

    fn end_checks(&mut self) {
        if !self.tasks.is_empty() {
            let mut ids: Vec<_> = self.tasks.keys().copied().collect();
            ids.sort_unstable();
            let t = &self.tasks[&ids[0]];
            let d = format!(
                "{} calls never ended (first: task{} key {} waiting {:?})",
                ids.len(),
                ids[0],
                t.key,
                t.waiting
            );
            let k = t.key;
            self.fail("liveness", Some(k), d);
            return;
        }
        let naive = self.cfg.broken == Some(Broken::NaiveCacheAside);
        for (i, p) in self.procs.iter().enumerate() {
            if !p.alive {
                continue;
            }
            let pending = p.coord.pending();
            let st = p.coord.stats();
            if pending != (0, 0) {
                let d = format!("p{i}: coordinator not idle after the drain: {pending:?}");
                self.fail("liveness", None, d);
                return;
            }
            if !naive && (st.loads != p.loads || st.coalesced != p.joiner_answers) {
                let d = format!(
                    "p{i}: coordinator counted loads {} coalesced {}, the host saw {} and {}",
                    st.loads, st.coalesced, p.loads, p.joiner_answers
                );
                self.fail("stats", None, d);
                return;
            }
        }
        if self.cfg.unchecked {
            return;
        }
        // C1: every entry the store would serve equals the source.
        for k in 0..self.cfg.keys {
            let op = karlton_core::flow::get_op(&self.keys[k], &self.gen_keys[k]);
            let StoreReply::Read(rr) = self.store.apply(self.t, &op) else {
                continue;
            };
            let Some(bytes) = rr.entry else { continue };
            if rr.marked_stale {
                continue;
            }
            let Some(uid) = Entry::decode(&bytes).ok().and_then(|e| uid_of(&e.value)) else {
                continue;
            };
            let v = self.values[uid as usize].version();
            let (kv, ns, tg) = self.source(k as u32);
            if v != kv + ns + tg {
                let d = format!(
                    "after the drain the store holds value {uid} (version {v}) but the source is at {}",
                    kv + ns + tg
                );
                self.fail("C1", Some(k as u32), d);
                return;
            }
        }
    }
}

impl Proc {
    fn new(seed: u64, skew: i64, fast: bool) -> Proc {
        Proc {
            coord: Coordinator::new(seed, false),
            skew,
            alive: true,
            paused_until: 0,
            last_pause_end: 0,
            fast,
            tasks: HashSet::new(),
            joiners: HashMap::new(),
            req_kv: HashMap::new(),
            req_ns: Vec::new(),
            req_tag: HashMap::new(),
            loads: 0,
            joiner_answers: 0,
            flight_values: HashMap::new(),
            l1: HashMap::new(),
        }
    }
}


fn op_desc(op: &StoreOp) -> String {
    let mut s = String::new();
    match op {
        StoreOp::Read { lease, .. } => {
            let _ = write!(s, "read(lease {lease:?})");
        }
        StoreOp::Fill {
            entry,
            token,
            version,
            soft_at,
            hard_at,
            ..
        } => {
            let uid = Entry::decode(entry).ok().and_then(|e| uid_of(&e.value));
            let _ = write!(
                s,
                "fill(uid {uid:?}, token {token:?}, version {version:?}, soft {soft_at}, hard {hard_at})"
            );
        }
        StoreOp::Invalidate { mode, .. } => {
            let _ = write!(s, "invalidate({mode:?})");
        }
        StoreOp::Release { token, .. } => {
            let _ = write!(s, "release({token})");
        }
        StoreOp::Extend { token, .. } => {
            let _ = write!(s, "extend({token})");
        }
        StoreOp::Bump { gen_key, .. } => {
            let _ = write!(s, "bump({gen_key})");
        }
    }
    s
}

fn reply_desc(r: &StoreReply) -> String {
    match r {
        StoreReply::Read(rr) => {
            let uid = rr
                .entry
                .as_deref()
                .and_then(|b| Entry::decode(b).ok())
                .and_then(|e| uid_of(&e.value));
            format!(
                "read(uid {uid:?}, marked {}, {:?})",
                rr.marked_stale, rr.lease
            )
        }
        other => format!("{other:?}"),
    }
}
