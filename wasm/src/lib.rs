//! # karlton-wasm
//!
//! karlton-core as a WebAssembly module for `wasm32-unknown-unknown` with **zero imports**: no
//! clock, no randomness, no host calls. Time and random seeds are arguments, exactly as in the
//! core. The same crate also builds as a native `rlib` so hosts can compare the module with the
//! very same dispatcher compiled natively (see `wasm/host`).
//!
//! # ABI (version [`ABI_VERSION`] = 1)
//!
//! All integers are wasm `i32`/`i64` read as unsigned; pointers and lengths are `u32`.
//!
//! | export | signature | does |
//! |--------|-----------|------|
//! | `memory` | memory | the module's linear memory |
//! | `karlton_abi_version` | `() -> u32` | [`ABI_VERSION`]; a host refuses a module whose version it does not know |
//! | `karlton_alloc` | `(len: u32) -> u32` | a block of `len` bytes for the host to write a request into; `0` if `len` is 0 or memory is exhausted |
//! | `karlton_free` | `(ptr: u32, len: u32) -> u32` | frees a block from `karlton_alloc` (`1`); a pointer/length pair that is not a live block is ignored (`0`) — never a trap |
//! | `karlton_decide` | `(now, soft_at, hard_at, load_ms: u64, beta: f64, stale_if_error_ms: u64, rand: u64) -> u32` | scalar fast path of `decide_raw`: [`DECIDE_FRESH`]..[`DECIDE_GONE`], or [`DECIDE_INVALID`] when `beta` is not a finite number in `[0, 100]` |
//! | `karlton_jitter` | `(ttl_ms, jitter_ppm, rand: u64) -> u64` | the jittered TTL, `ttl_ms - jitter_reduction(ttl_ms, min(jitter_ppm, 999_999), rand)` |
//! | `karlton_call` | `(ptr: u32, len: u32) -> u64` | one JSON request in, one JSON reply out (below) |
//!
//! ## `karlton_call`
//!
//! The request is UTF-8 JSON `{"op": "<name>", ...}` in a block from `karlton_alloc` (the
//! `ptr..ptr+len` range must lie inside one live block, else the reply is a `bad_input` error).
//! The host keeps ownership of that block and may reuse it for the next request.
//!
//! The return value packs the reply: `(reply_ptr << 32) | reply_len`. The reply buffer belongs to
//! the module and stays valid until the next `karlton_call`; the host copies it out and never
//! frees it. A reply is either `{"ok": <value>}` or
//! `{"error": {"code": "<code>", "message": "<text>"}}`. Malformed input of any kind — a bad
//! pointer or length, invalid UTF-8, invalid JSON, an unknown op, an unknown handle, an invalid
//! argument — is an error reply; the call never traps and the instance stays usable.
//!
//! Pointers are 32-bit, so `karlton_alloc`, `karlton_free` and `karlton_call` exist only in the
//! wasm32 build; natively, [`api::call`] is the same dispatcher on byte slices.
//!
//! The ops and their replies are listed in [`api`]. Every `u64` argument may be given as a JSON
//! number or as a decimal string (JavaScript numbers lose integers above 2^53).

pub mod api;
mod forms;
mod json;
#[cfg(target_arch = "wasm32")]
mod walloc;

/// The module's allocator: small size-class free lists instead of std's dlmalloc.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOC: walloc::Walloc = walloc::Walloc::new();

/// The ABI version this module implements (`karlton_abi_version`).
pub const ABI_VERSION: u32 = 1;

/// `karlton_decide`: serve it.
pub const DECIDE_FRESH: u32 = 0;
/// `karlton_decide`: serve it and refresh early in the background (XFetch).
pub const DECIDE_REFRESH_EARLY: u32 = 1;
/// `karlton_decide`: serve it stale while one caller refreshes.
pub const DECIDE_STALE: u32 = 2;
/// `karlton_decide`: do not serve unless the load fails (stale-if-error).
pub const DECIDE_USABLE_ON_ERROR: u32 = 3;
/// `karlton_decide`: a miss.
pub const DECIDE_GONE: u32 = 4;
/// `karlton_decide`: `beta` is not a finite number in `[0, 100]` (a policy would refuse it).
pub const DECIDE_INVALID: u32 = 255;

/// The ABI version (export `karlton_abi_version`).
#[cfg_attr(target_arch = "wasm32", unsafe(no_mangle))]
pub extern "C" fn karlton_abi_version() -> u32 {
    ABI_VERSION
}

/// Allocate `len` bytes for a request (export `karlton_alloc`). `0` on failure or `len == 0`.
#[cfg(target_arch = "wasm32")]
#[cfg_attr(target_arch = "wasm32", unsafe(no_mangle))]
pub extern "C" fn karlton_alloc(len: u32) -> u32 {
    api::alloc(len as usize) as u32
}

/// Free a block from `karlton_alloc` (export `karlton_free`). Unknown blocks are ignored.
#[cfg(target_arch = "wasm32")]
#[cfg_attr(target_arch = "wasm32", unsafe(no_mangle))]
pub extern "C" fn karlton_free(ptr: u32, len: u32) -> u32 {
    api::free(ptr as usize, len as usize) as u32
}

/// Scalar freshness decision (export `karlton_decide`); see the crate docs for the codes.
#[cfg_attr(target_arch = "wasm32", unsafe(no_mangle))]
pub extern "C" fn karlton_decide(
    now_ms: u64,
    soft_at: u64,
    hard_at: u64,
    load_ms: u64,
    beta: f64,
    stale_if_error_ms: u64,
    rand: u64,
) -> u32 {
    api::decide_code(
        now_ms,
        soft_at,
        hard_at,
        load_ms,
        beta,
        stale_if_error_ms,
        rand,
    )
}

/// Jittered TTL (export `karlton_jitter`).
#[cfg_attr(target_arch = "wasm32", unsafe(no_mangle))]
pub extern "C" fn karlton_jitter(ttl_ms: u64, jitter_ppm: u64, rand: u64) -> u64 {
    api::jitter(ttl_ms, jitter_ppm, rand)
}

/// One JSON request in, one JSON reply out (export `karlton_call`); see the crate docs.
#[cfg(target_arch = "wasm32")]
#[cfg_attr(target_arch = "wasm32", unsafe(no_mangle))]
pub extern "C" fn karlton_call(ptr: u32, len: u32) -> u64 {
    let (p, l) = api::call_raw(ptr as usize, len as usize);
    ((p as u64) << 32) | l as u64
}
