//! # karlton-core
//!
//! The pure policy engine of karlton: everything about a cache entry's life — its key, its
//! version, when it is fresh, stale or gone, how much jitter its TTL gets, who may reload it and
//! who must wait — decided by pure functions and sans-IO state machines. No IO, no clock, no
//! threads, no global RNG: time (`now_ms`) and randomness (`u64` seeds) are arguments, so the
//! same inputs give the same outputs in Rust, Python, Node and WebAssembly.
//!
//! | module | holds |
//! |--------|-------|
//! | [`key`] | the key scheme: escaped segments, canonical params hash, hash tags, versions, generation keys |
//! | [`policy`] | validated [`Policy`] |
//! | [`entry`] | [`Entry`] and its versioned binary encoding |
//! | [`freshness`] | fresh / stale / usable-on-error / gone, XFetch, jitter |
//! | [`store`] | the store protocol: [`StoreOp`] in, [`StoreReply`] out |
//! | [`memory`] | [`MemoryStore`], the embedded reference store |
//! | [`evict`] | adaptive W-TinyLFU admission and eviction (used by the memory store) |
//! | [`redis`] | the store protocol as Redis Lua scripts (data), with op encoding and reply decoding |
//! | [`coordinator`] | [`Coordinator`]: the per-process machine above the flows (single-flight, joiners, C5, fast paths, stats) |
//! | [`flow`] | [`GetOrLoad`] (the read path as a state machine) and the write ops |
//! | [`stats`] | counters every runtime exposes |
#![forbid(unsafe_code)]

pub mod coordinator;
pub mod entry;
pub mod evict;
pub mod flow;
pub mod freshness;
mod jcs;
pub mod json;
pub mod key;
pub mod memory;
pub mod policy;
pub mod rand;
pub mod redis;
pub mod stats;
pub mod store;

pub use coordinator::{Action, CallId, Coordinator, Counters, Event, FlightId, Op, Reply, Ticket};
pub use entry::Entry;
pub use flow::{FlowError, GetOrLoad, Input, Loaded, Request, Served, Source, Step, Write};
pub use freshness::{Decision, Freshness, decide, decide_raw, freshness};
pub use key::Key;
pub use memory::{MemoryStore, MemoryStoreConfig};
pub use policy::{OnLockTimeout, OnStoreError, Policy, PolicyError, PolicySpec};
pub use stats::{AtomicStats, Stats};
pub use store::{
    InvalidateMode, LeaseMode, LeaseOutcome, ReadReply, StoreFailure, StoreOp, StoreReply, Token,
};
