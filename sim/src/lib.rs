//! # karlton-sim
//!
//! A deterministic simulation of a fleet of karlton processes. Every process runs the real
//! [`karlton_core::Coordinator`] (and through it the real flows); all of them share one
//! [`karlton_core::MemoryStore`] — the reference implementation of the store protocol — as the
//! remote store. One thread, one virtual clock (the store's), a per-process clock skew, and a
//! seeded scheduler that interleaves store-op arrivals, replies, loader completions, timers,
//! joiner wake-ups, writer actions and faults. The simulator decides nothing a host would not:
//! it drives the coordinator exactly as `cache/src/cache.rs` does (poll → do it → feed the
//! result, drain events after every input) and keeps only what a host keeps (its IO, the map
//! from flight to waiting joiners).
//!
//! Invariants from DESIGN.md are checked after every step (see [`engine`]'s docs for each
//! checker); the first violation stops the run and is reported with its seed. The same
//! [`Config`] gives the same run, bit for bit.

#![forbid(unsafe_code)]

pub mod engine;
pub mod rng;

pub use engine::{Outcome, Report, Violation, run};

/// A policy shape the simulator runs (the policies themselves are the core's [`karlton_core::Policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Stale-while-revalidate: soft 200 ms, hard 400 ms, stale-if-error 1 s, load soft/hard
    /// timeouts 50/400 ms, jitter 10 %.
    Swr,
    /// XFetch early refresh (β = 1), no stale window, no load timeouts.
    XFetch,
    /// Stale-while-revalidate with `on_lock_timeout = serve_stale`, `on_store_error = error`
    /// and a short lock wait, so the timeout and error paths run.
    Strict,
    /// Plain TTL (soft = hard = 1 s, no XFetch, no stale window): every hot-key expiry is a
    /// stampede the lease and the flights must absorb. The scale mode runs it.
    Plain,
}

impl PolicyKind {
    /// All of them, in the order seeds rotate through.
    pub const ALL: [PolicyKind; 3] = [PolicyKind::Swr, PolicyKind::XFetch, PolicyKind::Strict];

    /// Parse a name (`swr`, `xfetch`, `strict`).
    pub fn parse(s: &str) -> Option<PolicyKind> {
        match s {
            "swr" => Some(PolicyKind::Swr),
            "xfetch" => Some(PolicyKind::XFetch),
            "strict" => Some(PolicyKind::Strict),
            "plain" => Some(PolicyKind::Plain),
            _ => None,
        }
    }

    /// The core policy.
    pub fn policy(self) -> karlton_core::Policy {
        use karlton_core::{OnLockTimeout, OnStoreError, PolicySpec};
        let base = PolicySpec {
            soft_ttl_ms: 200,
            hard_ttl_ms: Some(400),
            jitter: 0.1,
            stale_if_error_ms: 1_000,
            lease_ttl_ms: 100,
            lock_wait_ms: 300,
            lock_backoff_ms: vec![2, 5, 10],
            ..PolicySpec::default()
        };
        let spec = match self {
            PolicyKind::Swr => PolicySpec {
                load_soft_timeout_ms: Some(50),
                load_hard_timeout_ms: Some(400),
                ..base
            },
            PolicyKind::XFetch => PolicySpec {
                soft_ttl_ms: 300,
                hard_ttl_ms: None,
                early_refresh: 1.0,
                stale_if_error_ms: 0,
                ..base
            },
            PolicyKind::Plain => PolicySpec {
                soft_ttl_ms: 1_000,
                hard_ttl_ms: None,
                stale_if_error_ms: 0,
                ..base
            },
            PolicyKind::Strict => PolicySpec {
                lock_wait_ms: 60,
                on_lock_timeout: OnLockTimeout::ServeStale,
                on_store_error: OnStoreError::Error,
                load_hard_timeout_ms: Some(250),
                ..base
            },
        };
        karlton_core::Policy::new(spec).expect("simulator policies are valid")
    }
}

/// A deliberately broken variant, to show each checker can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// The store ignores the lease token on fill (treats every fill as authoritative).
    StoreIgnoresFillToken,
    /// The store accepts a fill under a lease that has expired (if nobody took it since).
    StoreAcceptsExpiredLease,
    /// The store goes on reporting a lease as held for two lease lifetimes after it expired
    /// (a dead holder's key stays blocked).
    StoreKeepsExpiredLeases,
    /// The store's release ignores the token (releases whoever holds the lease).
    StoreReleaseIgnoresToken,
    /// The store ignores the generations a fill was loaded under.
    StoreIgnoresGenerations,
    /// The driver hands a joiner its leader's value when the coordinator says "run again".
    JoinersTakeRefusedFill,
    /// The store issues tokens from a per-key count that restarts when the key is invalidated,
    /// so a revoked holder and the next one can share a token.
    StoreReusesTokens,
    /// Naive cache-aside: `get`, on a miss load and `set` (no lease, no coalescing).
    NaiveCacheAside,
}

impl Broken {
    /// Every variant.
    pub const ALL: [Broken; 8] = [
        Broken::StoreIgnoresFillToken,
        Broken::StoreAcceptsExpiredLease,
        Broken::StoreKeepsExpiredLeases,
        Broken::StoreReleaseIgnoresToken,
        Broken::StoreIgnoresGenerations,
        Broken::JoinersTakeRefusedFill,
        Broken::StoreReusesTokens,
        Broken::NaiveCacheAside,
    ];

    /// Its flag name.
    pub fn name(self) -> &'static str {
        match self {
            Broken::StoreIgnoresFillToken => "store-ignores-fill-token",
            Broken::StoreAcceptsExpiredLease => "store-accepts-expired-lease",
            Broken::StoreKeepsExpiredLeases => "store-keeps-expired-leases",
            Broken::StoreReleaseIgnoresToken => "store-release-ignores-token",
            Broken::StoreIgnoresGenerations => "store-ignores-generations",
            Broken::JoinersTakeRefusedFill => "joiners-take-refused-fill",
            Broken::StoreReusesTokens => "store-reuses-tokens",
            Broken::NaiveCacheAside => "naive-cache-aside",
        }
    }

    /// Parse a flag name.
    pub fn parse(s: &str) -> Option<Broken> {
        Broken::ALL.into_iter().find(|b| b.name() == s)
    }
}

/// Fault rates (probabilities per op / per read arrival).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// A store op fails before it reaches the store.
    pub op_fail: f64,
    /// A store op is applied but its reply is lost (the host sees a failure).
    pub reply_lost: f64,
    /// A store op is delayed 50–300 ms on its way to the store.
    pub op_slow: f64,
    /// A process dies (all its calls vanish, its leases are orphaned); it restarts later.
    pub die: f64,
    /// A process is paused for 1.5–3 lease lifetimes.
    pub pause: f64,
    /// A loader fails.
    pub load_fail: f64,
    /// A loader is slow (100–600 ms, past the lease).
    pub load_slow: f64,
}

impl Faults {
    /// No faults at all (loaders always fast and successful).
    pub const NONE: Faults = Faults {
        op_fail: 0.0,
        reply_lost: 0.0,
        op_slow: 0.0,
        die: 0.0,
        pause: 0.0,
        load_fail: 0.0,
        load_slow: 0.0,
    };
    /// The default mix for the CI seed set.
    pub const DEFAULT: Faults = Faults {
        op_fail: 0.002,
        reply_lost: 0.002,
        op_slow: 0.002,
        die: 0.0003,
        pause: 0.0003,
        load_fail: 0.03,
        load_slow: 0.03,
    };
}

impl Faults {
    /// Every rate multiplied by `x` (capped at 0.5).
    pub fn scaled(self, x: f64) -> Faults {
        let f = |r: f64| (r * x).min(0.5);
        Faults {
            op_fail: f(self.op_fail),
            reply_lost: f(self.reply_lost),
            op_slow: f(self.op_slow),
            die: f(self.die),
            pause: f(self.pause),
            load_fail: f(self.load_fail),
            load_slow: f(self.load_slow),
        }
    }
}

/// One simulation run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed: everything random in the run comes from it.
    pub seed: u64,
    /// Simulated processes.
    pub procs: usize,
    /// Keys (Zipf-ranked).
    pub keys: usize,
    /// Zipf exponent.
    pub zipf: f64,
    /// `get_or_load` calls to issue (then writers stop and everything drains).
    pub calls: u64,
    /// Mean gap between reads across the fleet, in µs of virtual time.
    pub read_gap_us: u64,
    /// One write per this many reads (on average).
    pub reads_per_write: u64,
    /// At most this many writes in flight at once (1 = one writer at a time, fleet-wide).
    pub writers: usize,
    /// Tags (each key belongs to one: `key % tags`).
    pub tags: usize,
    /// The policy.
    pub policy: PolicyKind,
    /// Fault rates.
    pub faults: Faults,
    /// A broken variant, if any.
    pub broken: Option<Broken>,
    /// Fraction of processes that use the memory store's lock-free fresh hit
    /// (`Counters::memory_hit`, as a host co-located with the store would).
    pub fast_path: f64,
    /// Per-process clock skew bound (ms, either way).
    pub skew_ms: u64,
    /// Collect a trace of the steps touching this key (by rank).
    pub trace_key: Option<usize>,
    /// Skip the per-step checkers (the scale mode measures, it does not check).
    pub unchecked: bool,
    /// Invariants not to report (to look past a known finding to the next one).
    pub skip: Vec<&'static str>,
}

impl Config {
    /// The CI shape for `seed`: 8 processes, 200 keys, 5,000 calls, the policy by `seed % 3`.
    pub fn ci(seed: u64) -> Config {
        Config {
            seed,
            procs: 8,
            keys: 200,
            zipf: 1.0,
            calls: 5_000,
            read_gap_us: 500,
            reads_per_write: 40,
            writers: 1,
            tags: 16,
            policy: PolicyKind::ALL[(seed % 3) as usize],
            faults: Faults::DEFAULT,
            broken: None,
            fast_path: 0.25,
            skew_ms: 2_000,
            trace_key: None,
            unchecked: false,
            skip: Vec::new(),
        }
    }
}

/// The seeds of the CI set: 1..=`n`.
pub fn ci_seeds(n: u64) -> impl Iterator<Item = u64> {
    1..=n
}

/// Seeds that once failed, from `sim/regressions.txt` (one per line: `seed [variant]`, `#`
/// comments). The CI set runs each with its variant (or none).
pub fn regressions() -> Vec<(u64, Option<Broken>)> {
    parse_regressions(include_str!("../regressions.txt"))
}

/// Parse the regression file's text.
pub fn parse_regressions(text: &str) -> Vec<(u64, Option<Broken>)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let seed = it.next()?.parse().ok()?;
            Some((seed, it.next().and_then(Broken::parse)))
        })
        .collect()
}

/// A smaller configuration that fails the same invariant, if one is found: fewer calls, then
/// fewer processes, then fewer keys (each halved while the run still fails that way).
pub fn shrink(cfg: &Config, invariant: &str) -> Config {
    let fails = |c: &Config| run(c).violation.is_some_and(|v| v.invariant == invariant);
    let mut best = cfg.clone();
    loop {
        let mut better = None;
        let mut tries = Vec::new();
        if best.calls > 10 {
            tries.push(Config {
                calls: best.calls / 2,
                ..best.clone()
            });
            tries.push(Config {
                calls: best.calls * 3 / 4,
                ..best.clone()
            });
        }
        if best.procs > 1 {
            tries.push(Config {
                procs: best.procs / 2,
                ..best.clone()
            });
            tries.push(Config {
                procs: best.procs - 1,
                ..best.clone()
            });
        }
        if best.keys > 1 {
            tries.push(Config {
                keys: best.keys / 2,
                tags: best.tags.min(best.keys / 2).max(1),
                ..best.clone()
            });
        }
        for c in tries {
            if fails(&c) {
                better = Some(c);
                break;
            }
        }
        match better {
            Some(c) => best = c,
            None => return best,
        }
    }
}

/// Run `cfg`; on a violation shrink it, re-run the shrunk configuration tracing the key, and
/// describe it all (seed, configuration, the last steps touching the key).
pub fn explain(cfg: &Config, steps: usize) -> Option<String> {
    use std::fmt::Write as _;
    let v = run(cfg).violation?;
    let small = shrink(cfg, v.invariant);
    let sv = run(&small).violation.unwrap_or(v.clone());
    let traced = Config {
        trace_key: sv.key,
        ..small.clone()
    };
    let out = run(&traced);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "VIOLATION {} seed={} policy={:?} broken={:?}",
        v.invariant,
        cfg.seed,
        cfg.policy,
        cfg.broken.map(Broken::name)
    );
    let _ = writeln!(
        s,
        "  {} (key {:?}, t={}, step {})",
        v.detail, v.key, v.t, v.step
    );
    let _ = writeln!(
        s,
        "  shrunk: procs={} keys={} calls={} -> {} (key {:?}, step {})",
        small.procs, small.keys, small.calls, sv.detail, sv.key, sv.step
    );
    let _ = writeln!(
        s,
        "  reproduce: cargo run -p karlton-sim --release -- --seed {} --procs {} --keys {} --calls {} --policy {} --writers {}{}{}{}",
        cfg.seed,
        small.procs,
        small.keys,
        small.calls,
        format!("{:?}", cfg.policy).to_lowercase(),
        cfg.writers,
        cfg.broken
            .map(|b| format!(" --broken {}", b.name()))
            .unwrap_or_default(),
        if cfg.faults == Faults::NONE {
            " --faults off"
        } else {
            ""
        },
        if cfg.skip.is_empty() {
            String::new()
        } else {
            format!(" --skip {}", cfg.skip.join(","))
        },
    );
    let n = out.trace.len().saturating_sub(steps);
    let _ = writeln!(s, "  last {} steps touching the key:", out.trace.len() - n);
    for l in &out.trace[n..] {
        let _ = writeln!(s, "    {l}");
    }
    Some(s)
}

/// Seeds in the CI set (each `Config::ci`: 5,000 calls).
pub const CI_SEEDS: u64 = 200;
pub mod scale;
