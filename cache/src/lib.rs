//! # karlton
//!
//! The async Rust cache of karlton. Every decision is [`karlton_core`]'s: per entry its flows
//! (freshness, jitter, leases, waiting, stale-if-error, negative caching), per process its
//! [`Coordinator`](karlton_core::Coordinator) (single-flight, what a joiner gets, C5 after a
//! write, fast-path order, background refresh, seeds, every [`Stats`] counter) — the same
//! machine the Python, Node and WASM hosts drive. This crate does the IO: it runs the
//! coordinator's store ops over a [`Store`] (the embedded [`MemoryStore`] here, Redis in
//! `karlton-redis`), the loader and background refreshes as tokio tasks, and wakes joiners.
//!
//! ```no_run
//! # async fn demo() -> Result<(), karlton::Error> {
//! use karlton::{Cache, Key, MemoryStore, Policy, PolicySpec};
//! let policy = Policy::new(PolicySpec { soft_ttl_ms: 30_000, hard_ttl_ms: Some(300_000), ..Default::default() })?;
//! let cache = Cache::new(MemoryStore::default(), policy);
//! let key = Key::new("user")?.segment("42");
//! let name: Option<String> = cache
//!     .get_or_load(&key, || async { Ok::<_, std::io::Error>(Some("Ada".to_string())) })
//!     .await?;
//! # Ok(()) }
//! ```

mod cache;
mod store;

pub use cache::{Cache, Error, Options};
pub use karlton_core as core;
pub use karlton_core::{
    FlowError, InvalidateMode, Key, Policy, PolicyError, PolicySpec, Served, Source, Stats,
    StoreFailure, StoreOp, StoreReply,
};
pub use store::{MemoryStore, Store, now_ms};
