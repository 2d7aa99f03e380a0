//! # karlton-redis
//!
//! [`RedisStore`]: the Redis backend of karlton's store protocol, on the `redis` crate. It runs
//! the Lua scripts that `karlton_core::redis` ships as data (the Python and Node adapters run the
//! very same scripts), so its semantics equal the embedded memory store's.
//!
//! - one op = one `EVALSHA` round trip (a fresh hit is exactly one); on `NOSCRIPT` (server
//!   restarted, `SCRIPT FLUSH`, failover) it falls back to `EVAL` with the source, which also
//!   reloads the script, and carries on;
//! - single node over a [`ConnectionManager`] (multiplexed; reconnects by itself after a lost
//!   connection), or Redis Cluster over a cluster connection ([`RedisStore::cluster`]; use
//!   hash-tag keys, `Key::hash_tag(true)`, so one entry's keys share a slot);
//! - every op is bounded by a configurable timeout ([`RedisStore::with_timeout`]); a timeout or
//!   a connection error is a `StoreFailure`, which the cache turns into its configured fallback
//!   (by default: answer from the loader).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use karlton::{Cache, Key, Policy, PolicySpec};
//! let store = karlton_redis::RedisStore::open("redis://127.0.0.1:6379").await?;
//! let cache = Cache::new(store, Policy::new(PolicySpec { soft_ttl_ms: 30_000, ..Default::default() })?);
//! let key = Key::new("user")?.hash_tag(true).segment("42");
//! let name: Option<String> = cache.get_or_load(&key, || async { Ok::<_, std::io::Error>(Some("Ada".into())) }).await?;
//! # Ok(()) }
//! ```
//!
//! Key layout, required `maxmemory-policy` and operator commands: `docs/redis.md`.

use karlton::Store;
use karlton_core::redis::{RedisCall, RedisValue, decode_reply, encode_op, scripts};
use karlton_core::{StoreFailure, StoreOp, StoreReply};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[cfg(feature = "testing")]
pub mod testing;

pub use redis;

/// Errors from building a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `redis` crate failed (bad URL, connection refused, …).
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// Connecting took longer than the timeout.
    #[error("timed out connecting to redis")]
    Timeout,
}

/// Counters of what the store did (beyond the cache's own stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStoreStats {
    /// Ops run.
    pub ops: u64,
    /// Ops that failed (connection, timeout, unexpected reply).
    pub errors: u64,
    /// Ops of those that hit the timeout.
    pub timeouts: u64,
    /// `NOSCRIPT` replies recovered by `EVAL`.
    pub noscript_reloads: u64,
}

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    noscript: AtomicU64,
}

/// The default per-op timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// A karlton store on Redis. `C` is any `redis` async connection that is cheap to clone and
/// multiplexed: [`ConnectionManager`] (single node, reconnecting — the default) or
/// `redis::cluster_async::ClusterConnection` (Cluster). Clones share the connection.
pub struct RedisStore<C = ConnectionManager> {
    conn: C,
    timeout: Duration,
    counters: Arc<Counters>,
    /// Fresh hits by a plain-command pipeline (single node only: `TIME` has no key to route).
    fast_reads: bool,
}

impl<C: Clone> Clone for RedisStore<C> {
    fn clone(&self) -> Self {
        RedisStore {
            conn: self.conn.clone(),
            timeout: self.timeout,
            counters: self.counters.clone(),
            fast_reads: self.fast_reads,
        }
    }
}

impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl RedisStore<ConnectionManager> {
    /// Connect to a single Redis node (`redis://host:port/db`, `rediss://…`, `unix://…`).
    /// The connection reconnects by itself; ops time out after [`DEFAULT_TIMEOUT`].
    pub async fn open(url: &str) -> Result<Self, Error> {
        Self::from_client(redis::Client::open(url)?, DEFAULT_TIMEOUT).await
    }

    /// Connect with an existing client; `timeout` bounds each op (and the connect).
    pub async fn from_client(client: redis::Client, timeout: Duration) -> Result<Self, Error> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(timeout * 4, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| Error::Timeout)??;
        Ok(RedisStore::new(conn).with_timeout(timeout))
    }
}

impl RedisStore<redis::cluster_async::ClusterConnection> {
    /// Connect to a Redis Cluster through any of its nodes. Use hash-tag keys
    /// (`Key::hash_tag(true)`) so an entry and its generation counters share a slot.
    pub async fn cluster(nodes: &[&str]) -> Result<Self, Error> {
        let client = redis::cluster::ClusterClient::builder(nodes.iter().copied())
            .connection_timeout(DEFAULT_TIMEOUT)
            .response_timeout(DEFAULT_TIMEOUT)
            .build()?;
        Self::from_cluster_client(&client, DEFAULT_TIMEOUT).await
    }

    /// Connect with an existing cluster client; `timeout` bounds each op.
    pub async fn from_cluster_client(client: &redis::cluster::ClusterClient, timeout: Duration) -> Result<Self, Error> {
        let conn = tokio::time::timeout(timeout * 8, client.get_async_connection())
            .await
            .map_err(|_| Error::Timeout)??;
        Ok(RedisStore::new(conn).with_timeout(timeout))
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> RedisStore<C> {
    /// A store over an already open connection.
    pub fn new(conn: C) -> Self {
        RedisStore { conn, timeout: DEFAULT_TIMEOUT, counters: Arc::default(), fast_reads: true }
    }

    /// Turn the pipelined fresh-hit read on or off (on by default). On a cluster connection the
    /// pipeline goes to the node owning the `MGET`'s slot (`TIME` has no key and rides along).
    #[must_use]
    pub fn with_fast_reads(mut self, on: bool) -> Self {
        self.fast_reads = on;
        self
    }

    /// Bound every op by `timeout` (a late reply is a store error; the cache falls back).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-op timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection (clone it to run your own commands).
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// What the store did so far.
    pub fn stats(&self) -> RedisStoreStats {
        let c = &self.counters;
        RedisStoreStats {
            ops: c.ops.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            noscript_reloads: c.noscript.load(Ordering::Relaxed),
        }
    }

    /// `SCRIPT LOAD` every script now (optional: `NOSCRIPT` is handled on the fly). On a
    /// cluster connection this goes to one node; the others load on first use.
    pub async fn load_scripts(&self) -> Result<(), StoreFailure> {
        let mut conn = self.conn.clone();
        for s in scripts() {
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(s.source)
                .query_async(&mut conn)
                .await
                .map_err(failure)?;
            debug_assert_eq!(sha, s.sha1());
        }
        Ok(())
    }

    /// Run one script call (EVALSHA, then EVAL on NOSCRIPT) and return its raw reply.
    pub async fn call(&self, call: &RedisCall) -> Result<RedisValue, StoreFailure> {
        let mut conn = self.conn.clone();
        let fut = run(&mut conn, call, &self.counters);
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(StoreFailure { message: format!("redis {}: timed out after {:?}", call.script.name, self.timeout) })
            }
        }
    }

    async fn exec(&self, op: StoreOp) -> Result<StoreReply, StoreFailure> {
        self.counters.ops.fetch_add(1, Ordering::Relaxed);
        let call = encode_op(&op);
        let r = self.call(&call).await.and_then(|v| decode_reply(&op, v));
        if r.is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

fn failure(e: redis::RedisError) -> StoreFailure {
    StoreFailure { message: format!("redis: {e}") }
}

fn script_cmd(verb: &str, first: &str, call: &RedisCall) -> redis::Cmd {
    let mut c = redis::cmd(verb);
    c.arg(first).arg(call.keys.len()).arg(&call.keys);
    for a in &call.args {
        c.arg(a.as_slice());
    }
    c
}

async fn run<C: ConnectionLike>(conn: &mut C, call: &RedisCall, counters: &Counters) -> Result<RedisValue, StoreFailure> {
    let sha = call.script.sha1();
    let r: Result<redis::Value, _> = script_cmd("EVALSHA", &sha, call).query_async(conn).await;
    let v = match r {
        Err(e) if e.code() == Some("NOSCRIPT") => {
            counters.noscript.fetch_add(1, Ordering::Relaxed);
            script_cmd("EVAL", call.script.source, call).query_async(conn).await
        }
        r => r,
    };
    match v {
        Ok(v) => Ok(to_value(v)),
        Err(e) => {
            if e.is_timeout() {
                counters.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure(e))
        }
    }
}

/// Convert a `redis` crate value to the core's [`RedisValue`].
pub fn to_value(v: redis::Value) -> RedisValue {
    use redis::Value as V;
    match v {
        V::Nil => RedisValue::Nil,
        V::Int(i) => RedisValue::Int(i),
        V::BulkString(b) => RedisValue::Bulk(b),
        V::Array(a) | V::Set(a) => RedisValue::Array(a.into_iter().map(to_value).collect()),
        V::SimpleString(s) => RedisValue::Status(s),
        V::Okay => RedisValue::Status("OK".into()),
        V::Boolean(b) => RedisValue::Int(b as i64),
        V::ServerError(e) => RedisValue::Error(format!("{e:?}")),
        V::VerbatimString { text, .. } => RedisValue::Bulk(text.into_bytes()),
        other => RedisValue::Error(format!("unsupported reply type: {other:?}")),
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Store for RedisStore<C> {
    fn execute(&self, op: StoreOp) -> impl Future<Output = Result<StoreReply, StoreFailure>> + Send {
        let this = self.clone();
        async move { this.exec(op).await }
    }

    fn has_fast_read(&self) -> bool {
        self.fast_reads
    }

    fn fast_read(
        &self,
        key: &str,
        gen_keys: &[String],
    ) -> impl Future<Output = Result<Vec<RedisValue>, StoreFailure>> + Send {
        let mut pipe = redis::pipe();
        for c in karlton_core::redis::fast_read_commands(key, gen_keys) {
            let mut cmd = redis::cmd(std::str::from_utf8(&c[0]).unwrap_or("PING"));
            for a in &c[1..] {
                cmd.arg(a.as_slice());
            }
            pipe.add_command(cmd);
        }
        let mut conn = self.conn.clone();
        let (timeout, counters) = (self.timeout, self.counters.clone());
        async move {
            counters.ops.fetch_add(1, Ordering::Relaxed);
            let r: Result<Vec<redis::Value>, _> =
                match tokio::time::timeout(timeout, pipe.query_async(&mut conn)).await {
                    Ok(r) => r,
                    Err(_) => {
                        counters.timeouts.fetch_add(1, Ordering::Relaxed);
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        return Err(StoreFailure { message: format!("redis read: timed out after {timeout:?}") });
                    }
                };
            match r {
                Ok(v) => {
                    Ok(v.into_iter().map(to_value).collect())
                }
                Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error() => {
                    if e.is_timeout() {
                        counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    Err(failure(e))
                }
                // A server-side error (WRONGTYPE on garbage under the key, ...): not a hit; the
                // `read` script deals with it (it deletes garbage so the fill overwrites it).
                Err(_) => Ok(Vec::new()),
            }
        }
    }
}
