//! The driver side of the store protocol: the [`Store`] trait and the embedded memory store.

use karlton_core::memory::{MemoryStoreConfig, SlotInfo};
use karlton_core::redis::RedisValue;
use karlton_core::{StoreFailure, StoreOp, StoreReply};
use std::future::Future;
use std::sync::Arc;

/// Wall-clock milliseconds since the Unix epoch: the local clock every driver feeds the flows,
/// and the memory store's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A backend that runs store-protocol ops atomically (see `karlton_core::store`).
pub trait Store: Send + Sync + 'static {
    /// Run one op.
    fn execute(&self, op: StoreOp) -> impl Future<Output = Result<StoreReply, StoreFailure>> + Send;

    /// Run one op without waiting, if this store can (the memory store can): the cache uses it
    /// so a hit never goes through the async machinery.
    fn execute_now(&self, _op: &StoreOp) -> Option<Result<StoreReply, StoreFailure>> {
        None
    }

    /// Entries evicted for space, if the store counts them.
    fn evictions(&self) -> u64 {
        0
    }

    /// Whether the store has a one-round-trip fast read ([`Store::fast_read`]); the
    /// coordinator then makes it the first step of a flight (`Action::FastRead`).
    fn has_fast_read(&self) -> bool {
        false
    }

    /// Run the fast read of `key` (Redis: `karlton_core::redis::fast_read_commands` as one
    /// pipeline) and return the raw replies in command order, for the coordinator to decide
    /// (`Coordinator::handle_fast_read`). A server-side error reply (garbage of the wrong type
    /// under the key) is `Ok(vec![])`: not a hit, the read script deals with it. `Err`: the
    /// store failed (the flow is told, not retried).
    fn fast_read(
        &self,
        _key: &str,
        _gen_keys: &[String],
    ) -> impl Future<Output = Result<Vec<RedisValue>, StoreFailure>> + Send {
        std::future::ready(Ok(Vec::new()))
    }

    /// The in-process memory store behind this store, if that is what it is: enables the
    /// lock-free fresh-hit path (`karlton_core::Counters::memory_hit`).
    fn memory(&self) -> Option<&karlton_core::MemoryStore> {
        None
    }
}

impl<S: Store> Store for Arc<S> {
    fn execute(&self, op: StoreOp) -> impl Future<Output = Result<StoreReply, StoreFailure>> + Send {
        (**self).execute(op)
    }
    fn execute_now(&self, op: &StoreOp) -> Option<Result<StoreReply, StoreFailure>> {
        (**self).execute_now(op)
    }
    fn evictions(&self) -> u64 {
        (**self).evictions()
    }
    fn memory(&self) -> Option<&karlton_core::MemoryStore> {
        (**self).memory()
    }
    fn has_fast_read(&self) -> bool {
        (**self).has_fast_read()
    }
    fn fast_read(
        &self,
        key: &str,
        gen_keys: &[String],
    ) -> impl Future<Output = Result<Vec<RedisValue>, StoreFailure>> + Send {
        (**self).fast_read(key, gen_keys)
    }
}

/// The embedded store (bounded, W-TinyLFU eviction) on the wall clock. Cheap to clone: clones
/// share data.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<karlton_core::MemoryStore>,
}

impl Default for MemoryStore {
    /// The default limits, with a seed from the OS (std's `RandomState` keys are OS random):
    /// shard placement and the admission coin cannot be predicted from key names.
    fn default() -> Self {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x6b61_726c_746f_6eu64);
        MemoryStore::new(MemoryStoreConfig { seed, ..MemoryStoreConfig::default() })
    }
}

impl MemoryStore {
    /// A store with these limits.
    pub fn new(config: MemoryStoreConfig) -> MemoryStore {
        MemoryStore { inner: Arc::new(karlton_core::MemoryStore::new(config)) }
    }

    /// The core store underneath (e.g. to share it with a binding).
    pub fn core(&self) -> &Arc<karlton_core::MemoryStore> {
        &self.inner
    }

    /// What the store holds for `key` now.
    pub fn inspect(&self, key: &str) -> Option<SlotInfo> {
        self.inner.inspect(now_ms(), key)
    }
}

impl Store for MemoryStore {
    fn execute(&self, op: StoreOp) -> impl Future<Output = Result<StoreReply, StoreFailure>> + Send {
        let r = self.inner.apply(now_ms(), &op);
        std::future::ready(Ok(r))
    }
    fn execute_now(&self, op: &StoreOp) -> Option<Result<StoreReply, StoreFailure>> {
        Some(Ok(self.inner.apply(now_ms(), op)))
    }
    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }
    fn memory(&self) -> Option<&karlton_core::MemoryStore> {
        Some(&self.inner)
    }
}
