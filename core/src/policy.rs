//! Cache policy: every knob that decides an entry's life, validated once at construction.
//!
//! All durations are integer milliseconds. Host bindings accept their language's natural units
//! (seconds in Python, `"5m"` strings in Node) and convert with [`parse_duration_ms`] or plain
//! arithmetic before calling [`Policy::new`]; the decisions are made here, once.

use crate::json::{self, Number, Value};
use serde::Serialize;

/// What a caller does when it waited `lock_wait` for another caller's load and got nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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
/// Read it from JSON with [`Policy::from_json`] (field names as below, durations in ms), or
/// build it in code and validate it with [`Policy::new`].
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// After this long, a load is abandoned and counts as failed (its lease goes back).
    /// Absent: [`DEFAULT_LOAD_HARD_TIMEOUT_MS`] past `load_soft_timeout_ms` (or past the start
    /// when there is no soft timeout), so no load holds its key, or keeps extending its lease,
    /// without end.
    pub load_hard_timeout_ms: Option<u64>,
    /// What to do when the store fails.
    pub on_store_error: OnStoreError,
    /// The largest value (encoded bytes) that is cached. A larger one is answered to its
    /// caller and its joiners but not stored (counted in `values_too_large`), and a `set` of
    /// one removes the key instead of storing it. In `[1, 512 MiB]` (Redis's string limit).
    pub max_value_bytes: u64,
}

/// The default [`PolicySpec::max_value_bytes`]: 16 MiB, within one shard of the default
/// memory store and far below what blocks a Redis server for long.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 16 << 20;

/// How long a load runs, by default, before it is abandoned: 30 s (past
/// `load_soft_timeout_ms` when one is set). See [`PolicySpec::load_hard_timeout_ms`].
pub const DEFAULT_LOAD_HARD_TIMEOUT_MS: u64 = 30_000;

/// The longest lease: 1 hour. A holder that dies keeps its key uncached until its lease ends.
pub const MAX_LEASE_TTL_MS: u64 = 3_600_000;

/// The largest [`PolicySpec::max_value_bytes`]: 512 MiB, the largest Redis string.
pub const MAX_VALUE_BYTES: u64 = 512 << 20;

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
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
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
    /// A fraction or factor outside its range (or not a finite number). The value is written
    /// as JavaScript writes numbers (shortest round-trip digits), the same in every runtime.
    #[error("policy: `{field}` = {} is out of range: {expected}", ryu_js::Buffer::new().format(*.value))]
    OutOfRange {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// A duration above the supported maximum: 2^40 ms ≈ 35 years (which keeps timestamps
    /// below 2^53 so JavaScript numbers hold them), and 1 hour for `lease_ttl_ms`.
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
    /// The JSON could not be read as a policy: not JSON, not an object, an unknown or duplicate
    /// field, or a value of the wrong type.
    #[error("policy: invalid JSON: {message}")]
    Json {
        /// What is wrong, e.g. "unknown field `soft_ttl`, expected one of ...".
        message: String,
        /// The member named by an unknown- or duplicate-field error or a member's wrong value
        /// (`None` when the text is not JSON or not an object).
        field: Option<String>,
    },
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
            PolicyError::Json { .. } => "json",
        }
    }

    /// The field the error is about, when there is one (a JSON error names the unknown,
    /// duplicate or wrongly typed member; only text that is not a JSON object names none).
    pub fn field(&self) -> Option<&str> {
        match self {
            PolicyError::Zero { field }
            | PolicyError::OutOfRange { field, .. }
            | PolicyError::TooLong { field, .. } => Some(field),
            PolicyError::HardBeforeSoft { .. } => Some("hard_ttl_ms"),
            PolicyError::LoadTimeouts { .. } => Some("load_soft_timeout_ms"),
            PolicyError::Json { field, .. } => field.as_deref(),
        }
    }
}

/// Largest duration accepted anywhere in a policy (≈ 35 years).
pub const MAX_DURATION_MS: u64 = 1 << 40;

/// A validated policy. Construct with [`Policy::new`] or [`Policy::from_json`]; it cannot hold
/// an invalid combination, so nothing downstream re-checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(into = "PolicySpec")]
pub struct Policy {
    spec: PolicySpec,
    hard_ttl_ms: u64,
    /// `load_hard_timeout_ms`, its default applied.
    load_hard_timeout_ms: u64,
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
        if spec.lease_ttl_ms > MAX_LEASE_TTL_MS {
            // A lease outlives a crashed holder: every other caller loads without filling
            // until it ends, so nothing is cached for that long.
            return Err(PolicyError::TooLong { field: "lease_ttl_ms", value: spec.lease_ttl_ms, max: MAX_LEASE_TTL_MS });
        }
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
        // Both parts are <= 2^40, so the sum cannot overflow.
        let load_hard = spec.load_hard_timeout_ms.unwrap_or_else(|| {
            spec.load_soft_timeout_ms.unwrap_or(0) + DEFAULT_LOAD_HARD_TIMEOUT_MS
        });
        if !(1..=MAX_VALUE_BYTES).contains(&spec.max_value_bytes) {
            return Err(PolicyError::OutOfRange {
                field: "max_value_bytes",
                value: spec.max_value_bytes as f64,
                expected: "a size in bytes in [1, 536870912]",
            });
        }
        // Round to the nearest ppm; jitter < 1 so this is < 1_000_000.
        let jitter_ppm = libm::round(spec.jitter * 1_000_000.0) as u64;
        Ok(Policy { hard_ttl_ms: hard, load_hard_timeout_ms: load_hard, jitter_ppm: jitter_ppm.min(999_999), spec })
    }

    /// Parse and validate a policy from JSON text: an object with the [`PolicySpec`] field
    /// names (durations in ms: a number with a fraction is rounded by [`duration_ms`], as
    /// every host rounds its own numbers), every member optional, unknown and duplicate members
    /// refused, `null` only for the optional ones; enums as their snake_case names.
    ///
    /// This is the one policy parser: the Rust cache, the Python and Node bindings and the wasm
    /// module all call it, so they accept the same texts with the same messages.
    pub fn from_json(json: &str) -> Result<Policy, PolicyError> {
        Policy::new(spec_from_json(json)?)
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
    /// Whether the policy sets a load timeout of its own (soft or hard), rather than leaving
    /// loads to the default deadline. (A threads host runs a load without one on the calling
    /// thread: nobody asked for the caller back at a deadline.)
    pub fn load_timeouts_given(&self) -> bool {
        self.spec.load_soft_timeout_ms.is_some() || self.spec.load_hard_timeout_ms.is_some()
    }
    /// Hard loader timeout, its default applied (every load has one).
    pub fn load_hard_timeout_ms(&self) -> u64 {
        self.load_hard_timeout_ms
    }
    /// What to do when the store fails.
    pub fn on_store_error(&self) -> OnStoreError {
        self.spec.on_store_error
    }
    /// The largest value that is cached.
    pub fn max_value_bytes(&self) -> u64 {
        self.spec.max_value_bytes
    }
}

/// The `PolicySpec` fields, in declaration order: the order in which every runtime reads and
/// checks them (docs/value-model.md, "Which error").
pub const FIELDS: [&str; 14] = [
    "soft_ttl_ms",
    "hard_ttl_ms",
    "jitter",
    "early_refresh",
    "negative_ttl_ms",
    "stale_if_error_ms",
    "lease_ttl_ms",
    "lock_wait_ms",
    "lock_backoff_ms",
    "on_lock_timeout",
    "load_soft_timeout_ms",
    "load_hard_timeout_ms",
    "on_store_error",
    "max_value_bytes",
];

fn json_err(message: String) -> PolicyError {
    PolicyError::Json { message, field: None }
}

/// "`a`, `b`, `c`"
fn one_of(names: &[&str]) -> String {
    let mut s = String::new();
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('`');
        s.push_str(n);
        s.push('`');
    }
    s
}

/// How a value is described in a type error.
fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(Number::U64(u)) => format!("integer `{u}`"),
        Value::Number(Number::I64(i)) => format!("integer `{i}`"),
        Value::Number(Number::F64(f)) => {
            format!("floating point `{}`", ryu_js::Buffer::new().format(*f))
        }
        Value::String(s) => {
            let mut q = Vec::new();
            json::write_str(&mut q, s);
            format!("string {}", String::from_utf8(q).unwrap_or_default())
        }
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

fn type_err(v: &Value, expected: &str) -> PolicyError {
    json_err(format!("invalid type: {}, expected {expected}", unexpected(v)))
}

fn u64_of(v: &Value) -> Result<u64, PolicyError> {
    match v {
        Value::Number(Number::U64(u)) => Ok(*u),
        Value::Number(Number::I64(i)) => {
            Err(json_err(format!("invalid value: integer `{i}`, expected u64")))
        }
        _ => Err(type_err(v, "u64")),
    }
}

/// A duration member in ms: an integer, or a number with a fraction (or `-0.0`, or an exponent)
/// rounded by [`duration_ms`], the one rule every host applies to its own numbers, so `2.5`
/// means 3 ms here as it does from Python, Node and Rust. Negative values stay refused; values
/// beyond [`MAX_DURATION_MS`] saturate, so that [`Policy::new`] refuses them as
/// [`PolicyError::TooLong`] naming the field.
fn ms_of(v: &Value) -> Result<u64, PolicyError> {
    match v {
        Value::Number(Number::F64(f)) => duration_ms(*f, 1.0).ok_or_else(|| {
            json_err(format!(
                "invalid value: floating point `{}`, expected a duration in ms >= 0",
                ryu_js::Buffer::new().format(*f)
            ))
        }),
        v => u64_of(v),
    }
}

fn opt_ms(v: &Value) -> Result<Option<u64>, PolicyError> {
    match v {
        Value::Null => Ok(None),
        v => ms_of(v).map(Some),
    }
}

fn f64_of(v: &Value) -> Result<f64, PolicyError> {
    match v {
        Value::Number(n) => Ok(n.as_f64()),
        _ => Err(type_err(v, "f64")),
    }
}

fn variant<T: Copy>(v: &Value, names: &[&str], values: &[T]) -> Result<T, PolicyError> {
    let Value::String(s) = v else {
        return Err(type_err(v, "a string"));
    };
    match names.iter().position(|n| n == s) {
        Some(i) => Ok(values[i]),
        None => Err(json_err(format!("unknown variant `{s}`, expected one of {}", one_of(names)))),
    }
}

/// The spec of a policy's JSON text (not yet validated).
fn spec_from_json(text: &str) -> Result<PolicySpec, PolicyError> {
    let doc = json::parse(text).map_err(|e| json_err(e.to_string()))?;
    let Value::Object(members) = doc else {
        return Err(json_err("a policy must be a JSON object".into()));
    };
    let mut spec = PolicySpec::default();
    let mut seen: [Option<&Value>; FIELDS.len()] = [None; FIELDS.len()];
    for (k, v) in &members {
        let Some(i) = FIELDS.iter().position(|f| f == k) else {
            return Err(PolicyError::Json {
                message: format!("unknown field `{k}`, expected one of {}", one_of(&FIELDS)),
                field: Some(k.clone()),
            });
        };
        if seen[i].replace(v).is_some() {
            return Err(PolicyError::Json {
                message: format!("duplicate field `{k}`"),
                field: Some(k.clone()),
            });
        }
    }
    // The values in field order, whatever the members' order: of several bad values the first
    // field's is reported, as by every host (docs/value-model.md, "Which error"). A value of
    // the wrong type or sign names its member (`field`), as every other policy error does.
    for (i, v) in seen.iter().enumerate() {
        let Some(v) = v else { continue };
        member(&mut spec, i, v).map_err(|e| match e {
            PolicyError::Json { message, field: None } => PolicyError::Json {
                message: format!("`{}`: {message}", FIELDS[i]),
                field: Some(FIELDS[i].to_string()),
            },
            e => e,
        })?;
    }
    Ok(spec)
}

/// Reads member `i` (of [`FIELDS`]) into `spec`. (The block keeps the arms where they were
/// when this was the body of `spec_from_json`'s loop.)
fn member(spec: &mut PolicySpec, i: usize, v: &Value) -> Result<(), PolicyError> {
    {
        match i {
            0 => spec.soft_ttl_ms = ms_of(v)?,
            1 => spec.hard_ttl_ms = opt_ms(v)?,
            2 => spec.jitter = f64_of(v)?,
            3 => spec.early_refresh = f64_of(v)?,
            4 => spec.negative_ttl_ms = ms_of(v)?,
            5 => spec.stale_if_error_ms = ms_of(v)?,
            6 => spec.lease_ttl_ms = ms_of(v)?,
            7 => spec.lock_wait_ms = ms_of(v)?,
            8 => {
                let Value::Array(a) = v else {
                    return Err(type_err(v, "a sequence"));
                };
                spec.lock_backoff_ms.clear();
                for x in a {
                    spec.lock_backoff_ms.push(ms_of(x)?);
                }
            }
            9 => {
                spec.on_lock_timeout = variant(
                    v,
                    &["load", "serve_stale", "error"],
                    &[OnLockTimeout::Load, OnLockTimeout::ServeStale, OnLockTimeout::Error],
                )?
            }
            10 => spec.load_soft_timeout_ms = opt_ms(v)?,
            11 => spec.load_hard_timeout_ms = opt_ms(v)?,
            12 => {
                spec.on_store_error =
                    variant(v, &["load", "error"], &[OnStoreError::Load, OnStoreError::Error])?
            }
            _ => spec.max_value_bytes = u64_of(v)?,
        }
    }
    Ok(())
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
    duration_ms(n, factor).filter(|&ms| ms <= MAX_DURATION_MS).ok_or_else(err)
}

/// A host's duration number as whole milliseconds: `value` counts units of `unit_ms` ms (1 for
/// Node's ms, 1000 for Python's seconds). The one rounding rule of every runtime: the product
/// `value * unit_ms` rounds half away from zero (`2.5` ms and `0.0025` s are 3 ms; `0.0005` s
/// is 1 ms). `None` for NaN, infinities and negatives. A value above [`MAX_DURATION_MS`] is
/// returned as it is (saturated at `u64::MAX`), so that [`Policy::new`] refuses it as
/// [`PolicyError::TooLong`] naming the field, the same error in every runtime.
pub fn duration_ms(value: f64, unit_ms: f64) -> Option<u64> {
    let ms = libm::round(value * unit_ms);
    // `as` saturates: 1e300 ms becomes u64::MAX.
    (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
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
    fn json_errors_name_kind_field_and_cause() {
        let err = |t: &str| Policy::from_json(t).unwrap_err();
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            (r#"{"soft_ttl":1}"#, "json", Some("soft_ttl"), "policy: invalid JSON: unknown field `soft_ttl`, expected one of `soft_ttl_ms`, `hard_ttl_ms`"),
            (r#"{"soft_ttl_ms":1,"soft_ttl_ms":2}"#, "json", Some("soft_ttl_ms"), "policy: invalid JSON: duplicate field `soft_ttl_ms`"),
            (r#"{"soft_ttl_ms":-1}"#, "json", Some("soft_ttl_ms"), "policy: invalid JSON: `soft_ttl_ms`: invalid value: integer `-1`, expected u64"),
            (r#"{"soft_ttl_ms":-0.5}"#, "json", Some("soft_ttl_ms"), "policy: invalid JSON: `soft_ttl_ms`: invalid value: floating point `-0.5`, expected a duration in ms >= 0"),
            (r#"{"lock_backoff_ms":[1,-2.5]}"#, "json", Some("lock_backoff_ms"), "policy: invalid JSON: `lock_backoff_ms`: invalid value: floating point `-2.5`"),
            (r#"{"soft_ttl_ms":"5m"}"#, "json", Some("soft_ttl_ms"), r#"policy: invalid JSON: `soft_ttl_ms`: invalid type: string "5m", expected u64"#),
            (r#"{"hard_ttl_ms":true}"#, "json", Some("hard_ttl_ms"), "policy: invalid JSON: `hard_ttl_ms`: invalid type: boolean `true`, expected u64"),
            (r#"{"jitter":null}"#, "json", Some("jitter"), "policy: invalid JSON: `jitter`: invalid type: null, expected f64"),
            (r#"{"lock_backoff_ms":5}"#, "json", Some("lock_backoff_ms"), "policy: invalid JSON: `lock_backoff_ms`: invalid type: integer `5`, expected a sequence"),
            (r#"{"on_lock_timeout":"wait"}"#, "json", Some("on_lock_timeout"), "policy: invalid JSON: `on_lock_timeout`: unknown variant `wait`, expected one of `load`, `serve_stale`, `error`"),
            (r#"{"on_store_error":5}"#, "json", Some("on_store_error"), "policy: invalid JSON: `on_store_error`: invalid type: integer `5`, expected a string"),
            (r#"{"max_value_bytes":-1}"#, "json", Some("max_value_bytes"), "policy: invalid JSON: `max_value_bytes`: invalid value: integer `-1`, expected u64"),
            (r#"{"max_value_bytes":18446744073709551616}"#, "json", Some("max_value_bytes"), "policy: invalid JSON: `max_value_bytes`: invalid type: floating point `18446744073709552000`, expected u64"),
            (r#"{"max_value_bytes":1024.0}"#, "json", Some("max_value_bytes"), "policy: invalid JSON: `max_value_bytes`: invalid type: floating point `1024`, expected u64"),
            (r#"{"soft_ttl_ms":1e400}"#, "json", None, "policy: invalid JSON: number out of range at line 1 column 15"),
            ("[1000]", "json", None, "policy: invalid JSON: a policy must be a JSON object"),
            ("null", "json", None, "policy: invalid JSON: a policy must be a JSON object"),
            ("", "json", None, "policy: invalid JSON: EOF while parsing a value at line 1 column 0"),
            ("{} {}", "json", None, "policy: invalid JSON: trailing characters at line 1 column 3"),
            (r#"{"jitter":1e400}"#, "json", None, "policy: invalid JSON: number out of range at line 1 column 10"),
            (r#"{"soft_ttl_ms":7"#, "json", None, "policy: invalid JSON: EOF while parsing an object at line 1 column 16"),
            (r#"{"jitter":1.5}"#, "out_of_range", Some("jitter"), "policy: `jitter` = 1.5 is out of range: a fraction in [0, 1)"),
            (r#"{"early_refresh":-1e-9}"#, "out_of_range", Some("early_refresh"), "policy: `early_refresh` = -1e-9 is out of range: a factor in [0, 100] (0 = off)"),
            (r#"{"soft_ttl_ms":0}"#, "zero", Some("soft_ttl_ms"), "policy: `soft_ttl_ms` must be greater than 0"),
            (r#"{"soft_ttl_ms":18446744073709551615}"#, "too_long", Some("soft_ttl_ms"), "policy: `soft_ttl_ms` = 18446744073709551615 ms exceeds the maximum of 1099511627776 ms"),
            (r#"{"load_soft_timeout_ms":5,"load_hard_timeout_ms":5}"#, "load_timeouts", Some("load_soft_timeout_ms"), "policy: `load_soft_timeout_ms` (5) must be < `load_hard_timeout_ms` (5)"),
        ];
        for &(text, kind, field, msg) in cases {
            let e = err(text);
            assert_eq!((e.kind(), e.field()), (kind, field), "{text}: {e}");
            assert!(e.to_string().starts_with(msg), "{text}: {e}");
        }
        // Accepted: escapes in names, null for the optional fields, integers as f64, -0.0.
        let p = Policy::from_json(
            r#" {"s\u006fft_ttl_ms":7,"hard_ttl_ms":null,"jitter":-0.0,"early_refresh":2,
                 "on_lock_timeout":"serve_stale","on_store_error":"error","lock_backoff_ms":[3]} "#,
        )
        .unwrap();
        assert_eq!((p.soft_ttl_ms(), p.hard_ttl_ms(), p.early_refresh(), p.backoff_ms(9)), (7, 7, 2.0, 3));
        assert!(p.spec().jitter.is_sign_negative());
        assert_eq!((p.on_lock_timeout(), p.on_store_error()), (OnLockTimeout::ServeStale, OnStoreError::Error));
        assert_eq!(Policy::from_json("{}").unwrap(), Policy::default());
    }

    #[test]
    fn json_durations_round_as_host_numbers_do() {
        let ms = |t: &str| Policy::from_json(t).map(|p| p.spec());
        // a fraction rounds half away from zero (duration_ms), in every duration field
        let p = ms(r#"{"soft_ttl_ms":2.5,"hard_ttl_ms":1000.0,"negative_ttl_ms":0.4,"stale_if_error_ms":1e3,
                      "lease_ttl_ms":1234.5,"lock_wait_ms":-0.0,"lock_backoff_ms":[0.5,2,7.49],
                      "load_soft_timeout_ms":1.5,"load_hard_timeout_ms":2.5}"#)
        .unwrap();
        assert_eq!((p.soft_ttl_ms, p.hard_ttl_ms, p.negative_ttl_ms, p.stale_if_error_ms), (3, Some(1000), 0, 1000));
        assert_eq!((p.lease_ttl_ms, p.lock_wait_ms, p.lock_backoff_ms.clone()), (1235, 0, vec![1, 2, 7]));
        assert_eq!((p.load_soft_timeout_ms, p.load_hard_timeout_ms), (Some(2), Some(3)));
        for f in ["soft_ttl_ms", "hard_ttl_ms", "negative_ttl_ms", "stale_if_error_ms", "lease_ttl_ms", "lock_wait_ms", "load_soft_timeout_ms", "load_hard_timeout_ms"] {
            let e = Policy::from_json(&format!(r#"{{"{f}":-0.5}}"#)).unwrap_err();
            assert_eq!((e.kind(), e.field()), ("json", Some(f)), "{e}");
            let soft = if f == "soft_ttl_ms" { "" } else { r#""soft_ttl_ms":1,"# };
            let e = Policy::from_json(&format!(r#"{{{soft}"{f}":1e21}}"#)).unwrap_err();
            assert_eq!((e.kind(), e.field()), ("too_long", Some(f)), "{e}");
        }
        // -0.0 is 0: refused where 0 is
        let e = Policy::from_json(r#"{"soft_ttl_ms":-0.0}"#).unwrap_err();
        assert_eq!((e.kind(), e.field()), ("zero", Some("soft_ttl_ms")));
        assert_eq!(duration_ms(2.5, 1.0), Some(3));
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
