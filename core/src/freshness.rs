//! Freshness decisions, TTL jitter and XFetch early refresh: pure functions of their inputs.
//!
//! Randomness comes in as a `u64`; the same inputs give the same answer on every target
//! (integer arithmetic for jitter, `libm::log` for XFetch).

use crate::policy::Policy;
use serde::{Deserialize, Serialize};

/// Where an entry stands at a moment, by its windows alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// `now < soft_at`.
    Fresh,
    /// `soft_at <= now < hard_at`: servable while one caller refreshes.
    Stale,
    /// `hard_at <= now < hard_at + stale_if_error`: only servable when the loader fails.
    UsableOnError,
    /// Past every window.
    Gone,
}

/// What a reader should do with an entry it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Serve it.
    Fresh,
    /// Serve it, and (XFetch) refresh it early in the background if a lease can be had.
    RefreshEarly,
    /// Serve it stale; the lease holder refreshes.
    Stale,
    /// Do not serve it unless the load fails (stale-if-error).
    UsableOnError,
    /// Treat as a miss.
    Gone,
}

impl Freshness {
    /// The wire name (`"fresh"`, `"stale"`, `"usable_on_error"`, `"gone"`), as in its serde form.
    pub fn name(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale => "stale",
            Freshness::UsableOnError => "usable_on_error",
            Freshness::Gone => "gone",
        }
    }
}

/// Classify `now` against an entry's windows. Exact at the boundaries: `now == soft_at` is
/// stale, `now == hard_at` is past hard expiry.
#[inline]
pub fn freshness(now_ms: u64, soft_at: u64, hard_at: u64, stale_if_error_ms: u64) -> Freshness {
    if now_ms < soft_at {
        Freshness::Fresh
    } else if now_ms < hard_at {
        Freshness::Stale
    } else if now_ms < hard_at.saturating_add(stale_if_error_ms) {
        Freshness::UsableOnError
    } else {
        Freshness::Gone
    }
}

/// A uniform float in (0, 1] from 53 bits of `rand` (never 0, so `ln` is finite).
#[inline]
pub fn unit_open0(rand: u64) -> f64 {
    ((rand >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// XFetch (Vattani et al.): refresh early when `now - load_ms * beta * ln(u) >= soft_at`.
///
/// `load_ms` is how long the last recompute took; slow recomputes start earlier. Returns false
/// when `beta` or `load_ms` is 0 or the entry is already past `soft_at`.
#[inline]
pub fn xfetch(now_ms: u64, soft_at: u64, load_ms: u64, beta: f64, rand: u64) -> bool {
    if beta <= 0.0 || load_ms == 0 || now_ms >= soft_at {
        return false;
    }
    let gap = -(load_ms as f64) * beta * libm::log(unit_open0(rand));
    now_ms as f64 + gap >= soft_at as f64
}

/// The full read decision for an entry: freshness plus XFetch early refresh.
#[inline]
pub fn decide_raw(
    now_ms: u64,
    soft_at: u64,
    hard_at: u64,
    load_ms: u64,
    policy: &Policy,
    rand: u64,
) -> Decision {
    match freshness(now_ms, soft_at, hard_at, policy.stale_if_error_ms()) {
        Freshness::Fresh => {
            if xfetch(now_ms, soft_at, load_ms, policy.early_refresh(), rand) {
                Decision::RefreshEarly
            } else {
                Decision::Fresh
            }
        }
        Freshness::Stale => Decision::Stale,
        Freshness::UsableOnError => Decision::UsableOnError,
        Freshness::Gone => Decision::Gone,
    }
}

/// [`decide_raw`] on a decoded entry.
#[inline]
pub fn decide(now_ms: u64, entry: &crate::entry::Entry, policy: &Policy, rand: u64) -> Decision {
    decide_raw(now_ms, entry.soft_at, entry.hard_at, entry.load_ms, policy, rand)
}

/// How many ms to take off a TTL: `floor(ttl * jitter_ppm/1e6 * r)` with `r = (rand >> 32) /
/// 2^32` in [0, 1). Integer-only, so identical everywhere; the result is `< ttl` for `ttl > 0`
/// and 0 for `ttl == 0`, for every input: a `jitter_ppm` above 1,000,000 (a policy never has
/// one) counts as 1,000,000, so the product fits in 128 bits.
#[inline]
pub fn jitter_reduction(ttl_ms: u64, jitter_ppm: u64, rand: u64) -> u64 {
    let jitter_ppm = jitter_ppm.min(1_000_000);
    let r = rand >> 32;
    let x = ttl_ms as u128 * jitter_ppm as u128 * r as u128;
    #[cfg(not(target_arch = "wasm32"))]
    let q = x / (1_000_000u128 << 32);
    // The same quotient without a 128-bit division (wasm32 has no native one: `__udivti3` costs
    // the module a kilobyte).
    #[cfg(target_arch = "wasm32")]
    let q = div_1e6_shl32(x);
    q as u64
}

/// `x / (1_000_000 << 32)` by 32-bit limbs: `1e6 << 32 = 15625 << 38`, so the quotient is
/// `(x >> 38) / 15625`, a long division by a divisor below 2^32 (the wasm32 form of
/// [`jitter_reduction`]; compiled everywhere so the tests compare it with `u128` division).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[inline(never)]
fn div_1e6_shl32(x: u128) -> u128 {
    const D: u64 = 15_625;
    let y = x >> 38;
    let mut q = 0u128;
    let mut rem = 0u64;
    for i in (0..4).rev() {
        let cur = (rem << 32) | ((y >> (32 * i)) as u64 & 0xffff_ffff);
        q |= u128::from(cur / D) << (32 * i);
        rem = cur % D;
    }
    q
}

/// The (soft, hard) TTLs one fill gets: both shortened by the same jitter amount, so the stale
/// window keeps its length and a TTL never exceeds what the policy says.
#[inline]
pub fn jittered_ttls(policy: &Policy, rand: u64) -> (u64, u64) {
    let cut = jitter_reduction(policy.soft_ttl_ms(), policy.jitter_ppm(), rand);
    (policy.soft_ttl_ms() - cut, policy.hard_ttl_ms() - cut)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wasm32_jitter_division_is_the_u128_division() {
        let d = 1_000_000u128 << 32;
        let mut xs = vec![0u128, 1, d - 1, d, d + 1, u128::MAX, u128::MAX - 1, u128::MAX / d * d];
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let (a, b) = (s, s.rotate_left(23) ^ 0xdead_beef);
            xs.push(u128::from(a) << (a % 65) | u128::from(b));
            xs.push(u128::from(a) * u128::from(b % 1_000_000) * u128::from(b >> 32));
        }
        for x in xs {
            assert_eq!(super::div_1e6_shl32(x), x / d, "x = {x}");
        }
    }

    use super::*;
    use crate::policy::PolicySpec;

    #[test]
    fn boundaries_are_exact() {
        assert_eq!(freshness(99, 100, 200, 50), Freshness::Fresh);
        assert_eq!(freshness(100, 100, 200, 50), Freshness::Stale);
        assert_eq!(freshness(199, 100, 200, 50), Freshness::Stale);
        assert_eq!(freshness(200, 100, 200, 50), Freshness::UsableOnError);
        assert_eq!(freshness(249, 100, 200, 50), Freshness::UsableOnError);
        assert_eq!(freshness(250, 100, 200, 50), Freshness::Gone);
        assert_eq!(freshness(200, 100, 200, 0), Freshness::Gone);
    }

    #[test]
    fn jitter_never_exceeds_policy_and_spreads() {
        let p = Policy::new(PolicySpec {
            soft_ttl_ms: 10_000,
            hard_ttl_ms: Some(20_000),
            jitter: 0.2,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(jittered_ttls(&p, 0), (10_000, 20_000));
        let (s, h) = jittered_ttls(&p, u64::MAX);
        assert!(s > 8_000 && s <= 8_001, "{s}");
        assert_eq!(h - s, 10_000);
    }

    #[test]
    fn xfetch_is_more_likely_near_expiry() {
        let count = |now| (0..10_000u64).filter(|i| xfetch(now, 1_000, 100, 1.0, i.wrapping_mul(0x9E37_79B9_7F4A_7C15))).count();
        let far = count(0);
        let near = count(950);
        assert!(far < near, "{far} {near}");
        assert_eq!(count(1_000), 0); // past soft_at is not "early"
    }
}
