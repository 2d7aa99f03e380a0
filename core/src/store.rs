//! The store protocol: the few atomic operations every backend implements with identical
//! semantics, so flows never know which backend they talk to.
//!
//! | op | does, atomically |
//! |----|------------------|
//! | [`StoreOp::Read`] | returns the entry (none if absent or orphaned by a generation bump), whether it was marked stale, the current generations and the store's clock; grants a lease when asked and the entry needs a load (missing, stale, marked, orphaned — or always with [`LeaseMode::Force`]) and no live lease exists |
//! | [`StoreOp::Fill`] | stores an entry unless its lease was revoked/superseded, the generations moved, or a newer version is stored; a fill without a token is an authoritative write and revokes any lease |
//! | [`StoreOp::Invalidate`] | deletes or marks stale; revokes the lease; keeps the version floor |
//! | [`StoreOp::Release`] / [`StoreOp::Extend`] | touch the lease only if the token matches (and, for extend, the lease is still live) |
//! | [`StoreOp::Bump`] | sets a generation counter to a new random value |
//!
//! Times: the store's clock is authoritative ([`ReadReply::now_ms`]); entries carry absolute
//! `soft_at`/`hard_at`/`expire_at` computed by the flow from that clock.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A lease token (non-zero, < 2^53), issued by the store when it grants a lease — never drawn
/// by a client, so no client's random state (a fork, a shared seed) can make two holders share
/// one. The memory store counts them; Redis issues the server clock in µs, strictly increasing
/// per key (`read.lua`).
pub type Token = u64;

/// Encoded entry bytes as they travel between store and flow (shared, never copied on a hit).
pub type Bytes = Arc<[u8]>;

/// Whether a read asks for the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseMode {
    /// Plain read (`get`).
    None,
    /// Grant the lease only if the entry needs a load (missing, stale, marked, orphaned).
    IfNeeded,
    /// Grant the lease whenever no live lease exists (XFetch early refresh).
    Force,
}

/// How an invalidation treats the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidateMode {
    /// Remove the value: the next reader loads.
    #[default]
    Delete,
    /// Keep the value but mark it stale: readers are served it while one caller refreshes.
    MarkStale,
}

/// One store operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StoreOp {
    /// Read an entry, maybe acquiring its lease.
    Read {
        /// Entry key.
        key: String,
        /// Generation counters the entry depends on (namespace, then tags).
        gen_keys: Vec<String>,
        /// Whether to ask for the lease.
        lease: LeaseMode,
        /// Lease lifetime if granted.
        lease_ttl_ms: u64,
    },
    /// Store an entry.
    Fill {
        /// Entry key.
        key: String,
        /// Encoded [`crate::entry::Entry`].
        #[serde(with = "hex_bytes")]
        entry: Bytes,
        /// Fresh until (store clock).
        soft_at: u64,
        /// Servable until.
        hard_at: u64,
        /// Physically kept until (hard_at + stale_if_error).
        expire_at: u64,
        /// The entry's version, if versioned.
        version: Option<u64>,
        /// The generations read before loading; `None` = stamp the current ones
        /// (authoritative writes that did not read first).
        generations: Option<Vec<u64>>,
        /// Generation counters the entry depends on.
        gen_keys: Vec<String>,
        /// The lease this fill was loaded under; `None` = authoritative write (revokes leases).
        token: Option<Token>,
    },
    /// Delete or mark stale, revoking the lease.
    Invalidate {
        /// Entry key.
        key: String,
        /// Delete or mark stale.
        mode: InvalidateMode,
    },
    /// Give a lease back early (only if `token` holds it).
    Release {
        /// Entry key.
        key: String,
        /// Token that must hold the lease.
        token: Token,
    },
    /// Extend a live lease (only if `token` holds it).
    Extend {
        /// Entry key.
        key: String,
        /// Token that must hold the lease.
        token: Token,
        /// New lifetime from now.
        lease_ttl_ms: u64,
    },
    /// Move a generation counter to a new value, orphaning every entry filled under the old one.
    Bump {
        /// Generation counter key.
        gen_key: String,
        /// The new value (random, non-zero, < 2^53; a random value rather than +1 means a counter
        /// lost to eviction can never come back to an old value and revive old entries).
        value: u64,
    },
}

impl StoreOp {
    /// The op's wire name (`"read"`, `"fill"`, …), as in its serde form and in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            StoreOp::Read { .. } => "read",
            StoreOp::Fill { .. } => "fill",
            StoreOp::Invalidate { .. } => "invalidate",
            StoreOp::Release { .. } => "release",
            StoreOp::Extend { .. } => "extend",
            StoreOp::Bump { .. } => "bump",
        }
    }

    /// The entry (or counter) key this op touches.
    pub fn key(&self) -> &str {
        match self {
            StoreOp::Read { key, .. }
            | StoreOp::Fill { key, .. }
            | StoreOp::Invalidate { key, .. }
            | StoreOp::Release { key, .. }
            | StoreOp::Extend { key, .. } => key,
            StoreOp::Bump { gen_key, .. } => gen_key,
        }
    }

    /// The lease token this op presents (a leased fill, a release, an extend), if any: where a
    /// driver or test that relays ops between stores puts the other store's token.
    pub fn token_mut(&mut self) -> Option<&mut Token> {
        match self {
            StoreOp::Fill { token: Some(t), .. } | StoreOp::Release { token: t, .. } | StoreOp::Extend { token: t, .. } => Some(t),
            _ => None,
        }
    }
}

/// The lease part of a read reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "lease", rename_all = "snake_case")]
pub enum LeaseOutcome {
    /// Not asked for, or not needed (the entry is fresh).
    NotRequested,
    /// Granted: the store issued a new token, unique among every lease it has granted.
    Granted {
        /// The token now holding the lease (non-zero, < 2^53).
        token: Token,
    },
    /// Another caller holds it until `until_ms` (store clock).
    Held {
        /// When the other lease expires.
        until_ms: u64,
    },
}

/// Reply to [`StoreOp::Read`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReply {
    /// The store's clock.
    pub now_ms: u64,
    /// Entry bytes, if present and not orphaned.
    #[serde(with = "hex_opt")]
    pub entry: Option<Bytes>,
    /// The entry was invalidated in mark-stale mode.
    pub marked_stale: bool,
    /// Current generation values, in `gen_keys` order (0 = never bumped).
    pub generations: Vec<u64>,
    /// Lease outcome.
    #[serde(flatten)]
    pub lease: LeaseOutcome,
}

/// Why a fill was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The lease was revoked (invalidate, authoritative write) or taken over.
    LeaseLost,
    /// A newer version is stored (or was, before a delete).
    VersionNewer,
    /// A generation moved between the read and the fill.
    GenerationChanged,
}

/// One reply per op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum StoreReply {
    /// For `Read`.
    Read(ReadReply),
    /// For `Fill`: stored.
    Stored,
    /// For `Fill`: refused.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// For `Invalidate`.
    Invalidated {
        /// Whether an entry was there.
        existed: bool,
    },
    /// For `Release` / `Extend`: whether the token held the lease.
    Lease {
        /// The op took effect.
        ok: bool,
    },
    /// For `Bump`: the new value.
    Bumped {
        /// New generation value.
        generation: u64,
    },
}

/// A store failure as the flow sees it (the driver maps its own error types to this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("store error: {message}")]
pub struct StoreFailure {
    /// What went wrong, for humans.
    pub message: String,
}

/// Lowercase hex for byte strings (test vectors, wasm ABI).
pub mod hex {
    /// Encode bytes as lowercase hex.
    pub fn encode(b: &[u8]) -> String {
        const D: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(b.len() * 2);
        for &x in b {
            s.push(D[(x >> 4) as usize] as char);
            s.push(D[(x & 15) as usize] as char);
        }
        s
    }
    /// Decode hex (either case); `None` on odd length or a non-hex digit.
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let b = s.as_bytes();
        if b.len() % 2 != 0 {
            return None;
        }
        let v = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        // A plain loop rather than `collect::<Option<_>>()` (smaller in the wasm module).
        let mut out = Vec::with_capacity(b.len() / 2);
        for p in b.chunks_exact(2) {
            out.push(v(p[0])? << 4 | v(p[1])?);
        }
        Some(out)
    }
}

mod hex_bytes {
    use super::Bytes;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = String::deserialize(d)?;
        super::hex::decode(&s).map(Into::into).ok_or_else(|| D::Error::custom("invalid hex"))
    }
}

mod hex_opt {
    use super::Bytes;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(b: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&super::hex::encode(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::hex::decode(&s)
                .map(|v| Some(v.into()))
                .ok_or_else(|| D::Error::custom("invalid hex")),
        }
    }
}
