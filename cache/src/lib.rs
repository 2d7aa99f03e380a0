//! # karlton
//!
//! The async Rust cache of karlton. Every decision — freshness, jitter, leases, waiting,
//! stale-if-error, negative caching — is made by [`karlton_core`]'s flows; this crate only
//! drives them over a [`Store`] (the embedded [`MemoryStore`] here, Redis in `karlton-redis`),
//! adds in-process single-flight (one loader per key per process), runs background refreshes
//! on tokio, and keeps [`Stats`].
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
