//! Cache policy: every knob that decides an entry's life, validated once at construction.
//!
//! All durations are integer milliseconds. Host bindings accept their language's natural units
//! (seconds in Python, `"5m"` strings in Node) and convert with [`parse_duration_ms`] or plain
//! arithmetic before calling [`Policy::new`]; the decisions are made here, once.

use serde::{Deserialize, Serialize};

/// What a caller does when it waited `lock_wait` for another caller's load and got nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLockTimeout {
    /// Call the loader itself and return its value without caching it (the lease holder fills).
    #[default]
    Load,
    /// Serve the stale value if there is one (even past hard expiry within `stale_if_error`);
    /// with none, behave like [`OnLockTimeout::Load`].
    ServeStale,
    /// Fail with a lock-timeout error.
    Error,
}

/// What `get_or_load` does when the store fails (down, timeout, protocol error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Answer from the loader (in-process single-flight still applies), without caching.
    #[default]
    Load,
    /// Fail with the store error.
    Error,
}

/// The user-facing description of a policy: every field optional with a default.
///
/// Deserialize this from JSON (field names as below, durations in ms) and turn it into a
/// [`Policy`] with [`Policy::new`], which validates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySpec {
    /// How long an entry is fresh.
    pub soft_ttl_ms: u64,
    /// How long an entry may be served at all (stale between `soft_ttl_ms` and this). Defaults to
    /// `soft_ttl_ms` when absent (no stale window).
    pub hard_ttl_ms: Option<u64>,
    /// Fraction in `[0, 1)` by which TTLs are shortened at random (deterministically from the
    /// random input), so entries written together do not expire together.
    pub jitter: f64,
    /// XFetch β (probabilistic early refresh); 0 turns it off. Typical: 1.0.
    pub early_refresh: f64,
    /// How long a "not found" is cached; 0 = never cache negatives.
    pub negative_ttl_ms: u64,
    /// How long past hard expiry a value may still be served when the loader fails.
    pub stale_if_error_ms: u64,
    /// How long a lease (the right to load and fill one key) lasts.
    pub lease_ttl_ms: u64,
    /// How long a caller waits for another caller's load before `on_lock_timeout`.
    pub lock_wait_ms: u64,
    /// Backoff schedule between re-reads while waiting; the last value repeats.
    pub lock_backoff_ms: Vec<u64>,
    /// What to do when `lock_wait_ms` runs out.
    pub on_lock_timeout: OnLockTimeout,
    /// After this long, a slow load with a stale value at hand serves the stale value and keeps
    /// loading in the background.
    pub load_soft_timeout_ms: Option<u64>,
    /// After this long, a load is abandoned and counts as failed.
    pub load_hard_timeout_ms: Option<u64>,
    /// What to do when the store fails.
    pub on_store_error: OnStoreError,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            soft_ttl_ms: 60_000,
            hard_ttl_ms: None,
            jitter: 0.0,
            early_refresh: 0.0,
            negative_ttl_ms: 0,
            stale_if_error_ms: 0,
            lease_ttl_ms: 10_000,
            lock_wait_ms: 5_000,
            lock_backoff_ms: vec![2, 5, 10],
            on_lock_timeout: OnLockTimeout::Load,
            load_soft_timeout_ms: None,
            load_hard_timeout_ms: None,
            on_store_error: OnStoreError::Load,
        }
    }
}

/// Why a policy was refused. Each variant names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// A duration that must be positive was zero.
    #[error("policy: `{field}` must be greater than 0")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// `hard_ttl_ms` < `soft_ttl_ms`.
    #[error("policy: `hard_ttl_ms` ({hard}) must be >= `soft_ttl_ms` ({soft})")]
    HardBeforeSoft {
        /// soft TTL given
        soft: u64,
        /// hard TTL given
        hard: u64,
    },
    /// A fraction or factor outside its range (or not a finite number).
    #[error("policy: `{field}` = {value} is out of range: {expected}")]
    OutOfRange {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// A duration above the supported maximum (2^40 ms ≈ 35 years), which keeps timestamps
    /// below 2^53 so JavaScript numbers hold them.
    #[error("policy: `{field}` = {value} ms exceeds the maximum of {max} ms")]
    TooLong {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The maximum.
        max: u64,
    },
    /// Soft load timeout not below the hard one.
    #[error("policy: `load_soft_timeout_ms` ({soft}) must be < `load_hard_timeout_ms` ({hard})")]
    LoadTimeouts {
        /// soft timeout
        soft: u64,
        /// hard timeout
        hard: u64,
    },
    /// The JSON could not be parsed into a policy (unknown field, wrong type...).
    #[error("policy: invalid JSON: {0}")]
    Json(String),
}

impl PolicyError {
    /// A stable, machine-readable kind: `zero`, `hard_before_soft`, `out_of_range`, `too_long`,
    /// `load_timeouts` or `json` (bindings map these to their error types).
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyError::Zero { .. } => "zero",
            PolicyError::HardBeforeSoft { .. } => "hard_before_soft",
            PolicyError::OutOfRange { .. } => "out_of_range",
            PolicyError::TooLong { .. } => "too_long",
            PolicyError::LoadTimeouts { .. } => "load_timeouts",
            PolicyError::Json(_) => "json",
        }
    }

    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            PolicyError::Zero { field }
            | PolicyError::OutOfRange { field, .. }
            | PolicyError::TooLong { field, .. } => Some(field),
            PolicyError::HardBeforeSoft { .. } => Some("hard_ttl_ms"),
            PolicyError::LoadTimeouts { .. } => Some("load_soft_timeout_ms"),
            PolicyError::Json(_) => None,
        }
    }
}

/// Largest duration accepted anywhere in a policy (≈ 35 years).
pub const MAX_DURATION_MS: u64 = 1 << 40;

/// A validated policy. Construct with [`Policy::new`] or [`Policy::from_json`]; it cannot hold
/// an invalid combination, so nothing downstream re-checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PolicySpec", into = "PolicySpec")]
pub struct Policy {
    spec: PolicySpec,
    hard_ttl_ms: u64,
    /// jitter as parts per million, so the TTL arithmetic is integer-only on every target.
    jitter_ppm: u64,
}

impl TryFrom<PolicySpec> for Policy {
    type Error = PolicyError;
    fn try_from(spec: PolicySpec) -> Result<Self, PolicyError> {
        Policy::new(spec)
    }
}

impl From<Policy> for PolicySpec {
    fn from(p: Policy) -> PolicySpec {
        let mut spec = p.spec;
        spec.hard_ttl_ms = Some(p.hard_ttl_ms);
        spec
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(PolicySpec::default()).expect("default policy is valid")
    }
}

fn check_len(field: &'static str, value: u64) -> Result<u64, PolicyError> {
    if value > MAX_DURATION_MS {
        return Err(PolicyError::TooLong { field, value, max: MAX_DURATION_MS });
    }
    Ok(value)
}

impl Policy {
    /// Validate a spec into a policy.
    pub fn new(spec: PolicySpec) -> Result<Policy, PolicyError> {
        if spec.soft_ttl_ms == 0 {
            return Err(PolicyError::Zero { field: "soft_ttl_ms" });
        }
        check_len("soft_ttl_ms", spec.soft_ttl_ms)?;
        let hard = spec.hard_ttl_ms.unwrap_or(spec.soft_ttl_ms);
        check_len("hard_ttl_ms", hard)?;
        if hard < spec.soft_ttl_ms {
            return Err(PolicyError::HardBeforeSoft { soft: spec.soft_ttl_ms, hard });
        }
        if !(spec.jitter.is_finite() && (0.0..1.0).contains(&spec.jitter)) {
            return Err(PolicyError::OutOfRange {
                field: "jitter",
                value: spec.jitter,
                expected: "a fraction in [0, 1)",
            });
        }
        if !(spec.early_refresh.is_finite() && (0.0..=100.0).contains(&spec.early_refresh)) {
            return Err(PolicyError::OutOfRange {
                field: "early_refresh",
                value: spec.early_refresh,
                expected: "a factor in [0, 100] (0 = off)",
            });
        }
        check_len("negative_ttl_ms", spec.negative_ttl_ms)?;
        check_len("stale_if_error_ms", spec.stale_if_error_ms)?;
        if spec.lease_ttl_ms == 0 {
            return Err(PolicyError::Zero { field: "lease_ttl_ms" });
        }
        check_len("lease_ttl_ms", spec.lease_ttl_ms)?;
        check_len("lock_wait_ms", spec.lock_wait_ms)?;
        if spec.lock_backoff_ms.is_empty() {
            return Err(PolicyError::Zero { field: "lock_backoff_ms" });
        }
        for &b in &spec.lock_backoff_ms {
            if b == 0 {
                return Err(PolicyError::Zero { field: "lock_backoff_ms" });
            }
            check_len("lock_backoff_ms", b)?;
        }
        for (field, t) in [
            ("load_soft_timeout_ms", spec.load_soft_timeout_ms),
            ("load_hard_timeout_ms", spec.load_hard_timeout_ms),
        ] {
            if let Some(t) = t {
                if t == 0 {
                    return Err(PolicyError::Zero { field });
                }
                check_len(field, t)?;
            }
        }
        if let (Some(s), Some(h)) = (spec.load_soft_timeout_ms, spec.load_hard_timeout_ms) {
            if s >= h {
                return Err(PolicyError::LoadTimeouts { soft: s, hard: h });
            }
        }
        // Round to the nearest ppm; jitter < 1 so this is < 1_000_000.
        let jitter_ppm = libm::round(spec.jitter * 1_000_000.0) as u64;
        Ok(Policy { hard_ttl_ms: hard, jitter_ppm: jitter_ppm.min(999_999), spec })
    }

    /// Parse and validate a policy from JSON (the [`PolicySpec`] field names, durations in ms).
    pub fn from_json(json: &str) -> Result<Policy, PolicyError> {
        if !json.trim_start().starts_with('{') {
            // serde would read an array as a positional struct; a policy is an object.
            return Err(PolicyError::Json("a policy must be a JSON object".into()));
        }
        let spec: PolicySpec =
            serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
        Policy::new(spec)
    }

    /// The policy as JSON (every field, hard TTL resolved).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("policy serializes")
    }

    /// The spec this policy was built from (hard TTL resolved).
    pub fn spec(&self) -> PolicySpec {
        self.clone().into()
    }

    /// Fresh window length.
    pub fn soft_ttl_ms(&self) -> u64 {
        self.spec.soft_ttl_ms
    }
    /// Servable window length (≥ soft).
    pub fn hard_ttl_ms(&self) -> u64 {
        self.hard_ttl_ms
    }
    /// Jitter fraction as parts per million.
    pub fn jitter_ppm(&self) -> u64 {
        self.jitter_ppm
    }
    /// XFetch β.
    pub fn early_refresh(&self) -> f64 {
        self.spec.early_refresh
    }
    /// Negative-cache TTL (0 = off).
    pub fn negative_ttl_ms(&self) -> u64 {
        self.spec.negative_ttl_ms
    }
    /// Stale-if-error window past hard expiry.
    pub fn stale_if_error_ms(&self) -> u64 {
        self.spec.stale_if_error_ms
    }
    /// Lease lifetime.
    pub fn lease_ttl_ms(&self) -> u64 {
        self.spec.lease_ttl_ms
    }
    /// Maximum wait for another caller's load.
    pub fn lock_wait_ms(&self) -> u64 {
        self.spec.lock_wait_ms
    }
    /// The `attempt`-th backoff delay (0-based); the last entry repeats.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let b = &self.spec.lock_backoff_ms;
        b[(attempt as usize).min(b.len() - 1)]
    }
    /// What to do when the lock wait runs out.
    pub fn on_lock_timeout(&self) -> OnLockTimeout {
        self.spec.on_lock_timeout
    }
    /// Soft loader timeout.
    pub fn load_soft_timeout_ms(&self) -> Option<u64> {
        self.spec.load_soft_timeout_ms
    }
    /// Hard loader timeout.
    pub fn load_hard_timeout_ms(&self) -> Option<u64> {
        self.spec.load_hard_timeout_ms
    }
    /// What to do when the store fails.
    pub fn on_store_error(&self) -> OnStoreError {
        self.spec.on_store_error
    }
}

/// Error from [`parse_duration_ms`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: expected a number with an optional unit ms, s, m, h or d (e.g. \"250ms\", \"5m\", \"1.5h\")")]
pub struct DurationError {
    /// The text that was refused.
    pub input: String,
}

/// Parse a human duration (`"250ms"`, `"30s"`, `"5m"`, `"1.5h"`, `"2d"`, or a bare number of
/// milliseconds) into integer milliseconds, rounding to the nearest millisecond.
pub fn parse_duration_ms(input: &str) -> Result<u64, DurationError> {
    let err = || DurationError { input: input.to_string() };
    let s = input.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return Err(err());
    }
    let n: f64 = num.parse().map_err(|_| err())?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "s" | "sec" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(err()),
    };
    let ms = libm::round(n * factor);
    if !ms.is_finite() || ms < 0.0 || ms > MAX_DURATION_MS as f64 {
        return Err(err());
    }
    Ok(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_before_soft_is_refused_at_construction() {
        let spec = PolicySpec { soft_ttl_ms: 10, hard_ttl_ms: Some(5), ..Default::default() };
        assert_eq!(Policy::new(spec), Err(PolicyError::HardBeforeSoft { soft: 10, hard: 5 }));
    }

    #[test]
    fn json_roundtrip_and_unknown_fields() {
        let p = Policy::from_json(r#"{"soft_ttl_ms":1000,"hard_ttl_ms":5000,"jitter":0.1}"#).unwrap();
        assert_eq!(p.jitter_ppm(), 100_000);
        assert_eq!(Policy::from_json(&p.to_json()).unwrap(), p);
        let e = Policy::from_json(r#"{"soft_ttl":1}"#).unwrap_err();
        assert!(e.to_string().contains("soft_ttl"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("250"), Ok(250));
        assert!(parse_duration_ms("5 parsecs").is_err());
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("-1s").is_err());
    }
}
