//! Counters every runtime exposes as a snapshot. Flows count into a plain [`Stats`]; drivers
//! add each finished flow into a shared [`AtomicStats`].

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! stats {
    ($($(#[doc = $d:literal])* $f:ident),* $(,)?) => {
        /// A snapshot of cache counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Stats { $($(#[doc = $d])* pub $f: u64,)* }

        impl Stats {
            /// Add another set of counts into this one.
            pub fn add(&mut self, o: &Stats) { $(self.$f += o.$f;)* }
            /// Take counts back out of this one (never below 0).
            pub fn sub(&mut self, o: &Stats) { $(self.$f = self.$f.saturating_sub(o.$f);)* }
            /// Field names and values, in declaration order (for bindings' dict/object views).
            pub fn fields(&self) -> [(&'static str, u64); [$(stringify!($f)),*].len()] {
                [$((stringify!($f), self.$f)),*]
            }
        }

        /// Lock-free counters shared by a driver's threads.
        #[derive(Debug, Default)]
        pub struct AtomicStats { $($f: AtomicU64,)* }

        impl AtomicStats {
            /// Add a flow's counts.
            pub fn add(&self, s: &Stats) { $(if s.$f != 0 { self.$f.fetch_add(s.$f, Relaxed); })* }
            /// Take counts back (a hit a host found undecodable becomes a miss); never below 0.
            pub fn sub(&self, s: &Stats) { $(saturating_sub(&self.$f, s.$f);)* }
            /// Read every counter.
            pub fn snapshot(&self) -> Stats { Stats { $($f: self.$f.load(Relaxed),)* } }
        }
    };
}

/// `a -= v`, never below 0. One out-of-line copy for every counter of [`AtomicStats::sub`] (an
/// inlined compare-exchange loop per counter cost the wasm module a kilobyte; `sub` is off the
/// hot path: a host takes back a hit it could not decode).
#[inline(never)]
fn saturating_sub(a: &AtomicU64, v: u64) {
    if v != 0 {
        let _ = a.fetch_update(Relaxed, Relaxed, |x| Some(x.saturating_sub(v)));
    }
}

stats! {
    /// Reads answered by a fresh entry.
    hits_fresh,
    /// Reads answered by a stale entry (inside [soft, hard), or marked stale).
    hits_stale,
    /// Reads that found nothing usable.
    misses,
    /// Loader calls started.
    loads,
    /// Loader calls that failed or timed out.
    load_errors,
    /// Callers that waited for another caller's lease.
    lease_waits,
    /// Callers whose wait ran out (`lock_wait`).
    lease_timeouts,
    /// Fills the store refused (lease lost, older version, generation moved).
    fills_rejected,
    /// Reads answered by a cached "not found".
    negative_hits,
    /// Store operations that failed.
    store_errors,
    /// Entries whose bytes did not decode (read as a miss and overwritten).
    corrupt_entries,
    /// Stale values served because the loader failed or was slow.
    stale_if_error,
    /// XFetch early refreshes started.
    early_refreshes,
    /// Callers answered by another caller's flight in this process (single-flight joiners).
    coalesced,
    /// Entries the store evicted for space, and generation counters dropped past its bound
    /// (memory store; filled in by the driver).
    evictions,
    /// Values not cached because they exceed `max_value_bytes` (answered, not stored).
    values_too_large,
    /// Leases extended because their load ran past half the lease (so it can still fill).
    lease_extensions,
}
