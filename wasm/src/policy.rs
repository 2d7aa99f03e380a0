//! Policy JSON for the module: [`parse`] reads a `PolicySpec` by hand with the same acceptance
//! as `Policy::from_json` (serde's derive with `default` and `deny_unknown_fields`), and
//! [`message`] is `PolicyError`'s `Display` without `f64` formatting. Both keep serde's
//! type-directed deserializers and core's float formatting (together tens of kilobytes) out of
//! the module. Errors have the same kind and field as the core's; the messages of JSON-level
//! errors (wrong types, unknown or duplicate fields) have no "at line/column" suffix.

use karlton_core::{OnLockTimeout, OnStoreError, Policy, PolicyError, PolicySpec};
use serde_json::Value;

/// The fields of `PolicySpec`, in declaration order (serde's "expected one of" list).
const FIELDS: &[&str] = &[
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
];

/// A JSON-level error (becomes `PolicyError::Json`); a plain string keeps results small.
fn json_err(msg: String) -> String {
    msg
}

/// serde's description of an unexpected JSON value.
fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "invalid type: null".into(),
        Value::Bool(b) => format!("invalid type: boolean `{b}`"),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => format!("invalid type: integer `{u}`"),
            (None, Some(i)) => format!("invalid type: integer `{i}`"),
            _ => {
                let mut f = Vec::new();
                crate::json::f64(&mut f, n.as_f64().unwrap_or(f64::NAN));
                format!(
                    "invalid type: floating point `{}`",
                    String::from_utf8(f).unwrap_or_default()
                )
            }
        },
        Value::String(s) => {
            let mut q = Vec::new();
            crate::json::str(&mut q, s);
            format!(
                "invalid type: string {}",
                String::from_utf8(q).unwrap_or_default()
            )
        }
        Value::Array(_) => "invalid type: sequence".into(),
        Value::Object(_) => "invalid type: map".into(),
    }
}

fn u64_of(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or(0)),
        Value::Number(n) if n.is_i64() => Err(json_err(format!(
            "invalid value: integer `{}`, expected u64",
            n.as_i64().unwrap_or(0)
        ))),
        _ => Err(json_err(format!("{}, expected u64", unexpected(v)))),
    }
}

fn opt_u64(v: &Value) -> Result<Option<u64>, String> {
    if v.is_null() {
        Ok(None)
    } else {
        u64_of(v).map(Some)
    }
}

fn f64_of(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        _ => Err(json_err(format!("{}, expected f64", unexpected(v)))),
    }
}

fn variant<T: Copy>(raw: &str, names: &[(&str, T)]) -> Result<T, String> {
    let s = &crate::json::variant_name(raw).map_err(|f| json_err(f.message().to_owned()))?;
    names
        .iter()
        .find(|(n, _)| n == s)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            json_err(format!(
                "unknown variant `{s}`, expected one of {}",
                one_of(names.iter().map(|n| n.0))
            ))
        })
}

/// serde's list of names: "`a`, `b`, `c`".
fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut s = String::new();
    for (i, n) in names.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('`');
        s.push_str(n);
        s.push('`');
    }
    s
}

/// `Policy::from_json`, by hand.
pub(crate) fn parse(json: &str) -> Result<Policy, PolicyError> {
    Policy::new(spec(json).map_err(PolicyError::Json)?)
}

fn spec(json: &str) -> Result<PolicySpec, String> {
    if !json.trim_start().starts_with('{') {
        // serde would read an array as a positional struct; a policy is an object.
        return Err(json_err("a policy must be a JSON object".into()));
    }
    let fields = crate::json::split(json)
        .map_err(|e| json_err(e.to_string()))?
        .unwrap_or_default();
    let mut spec = PolicySpec::default();
    let mut seen = [false; FIELDS.len()];
    for (k, raw) in &fields {
        let Some(i) = FIELDS.iter().position(|f| *f == &**k) else {
            return Err(json_err(format!(
                "unknown field `{k}`, expected one of {}",
                one_of(FIELDS.iter().copied())
            )));
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(json_err(format!("duplicate field `{k}`")));
        }
        let v: Value = serde_json::from_str(raw).map_err(|e| json_err(e.to_string()))?;
        match i {
            0 => spec.soft_ttl_ms = u64_of(&v)?,
            1 => spec.hard_ttl_ms = opt_u64(&v)?,
            2 => spec.jitter = f64_of(&v)?,
            3 => spec.early_refresh = f64_of(&v)?,
            4 => spec.negative_ttl_ms = u64_of(&v)?,
            5 => spec.stale_if_error_ms = u64_of(&v)?,
            6 => spec.lease_ttl_ms = u64_of(&v)?,
            7 => spec.lock_wait_ms = u64_of(&v)?,
            8 => {
                let Value::Array(a) = &v else {
                    return Err(json_err(format!("{}, expected a sequence", unexpected(&v))));
                };
                spec.lock_backoff_ms = a.iter().map(u64_of).collect::<Result<_, _>>()?;
            }
            9 => {
                spec.on_lock_timeout = variant(
                    raw,
                    &[
                        ("load", OnLockTimeout::Load),
                        ("serve_stale", OnLockTimeout::ServeStale),
                        ("error", OnLockTimeout::Error),
                    ],
                )?
            }
            10 => spec.load_soft_timeout_ms = opt_u64(&v)?,
            11 => spec.load_hard_timeout_ms = opt_u64(&v)?,
            _ => {
                spec.on_store_error = variant(
                    raw,
                    &[("load", OnStoreError::Load), ("error", OnStoreError::Error)],
                )?
            }
        }
    }
    Ok(spec)
}

/// The field a `PolicyError::Json` message names: serde names it only for unknown and
/// duplicate fields.
pub(crate) fn json_field(msg: &str) -> Option<&str> {
    ["unknown field `", "duplicate field `"]
        .iter()
        .find_map(|p| msg.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
}

/// `PolicyError`'s `Display`, with the `f64` written by [`display_f64`].
pub(crate) fn message(e: &PolicyError) -> String {
    match e {
        PolicyError::Zero { field } => format!("policy: `{field}` must be greater than 0"),
        PolicyError::HardBeforeSoft { soft, hard } => {
            format!("policy: `hard_ttl_ms` ({hard}) must be >= `soft_ttl_ms` ({soft})")
        }
        PolicyError::OutOfRange {
            field,
            value,
            expected,
        } => {
            format!(
                "policy: `{field}` = {} is out of range: {expected}",
                display_f64(*value)
            )
        }
        PolicyError::TooLong { field, value, max } => {
            format!("policy: `{field}` = {value} ms exceeds the maximum of {max} ms")
        }
        PolicyError::LoadTimeouts { soft, hard } => format!(
            "policy: `load_soft_timeout_ms` ({soft}) must be < `load_hard_timeout_ms` ({hard})"
        ),
        PolicyError::Json(m) => format!("policy: invalid JSON: {m}"),
    }
}

/// Shortest round-trip digits of a finite `f64` and the decimal exponent of the first digit
/// (`(b"15", 0)` for 1.5), from ryu-js. `None` for zero.
pub(crate) fn digits(v: f64) -> Option<(Vec<u8>, i32)> {
    if v == 0.0 {
        return None;
    }
    let mut buf = ryu_js::Buffer::new();
    let s = buf.format_finite(v.abs()).as_bytes();
    let (mant, exp) = match s.iter().position(|&c| c == b'e') {
        Some(i) => (&s[..i], {
            let e = &s[i + 1..];
            let (neg, e) = match e[0] {
                b'-' => (true, &e[1..]),
                b'+' => (false, &e[1..]),
                _ => (false, e),
            };
            let n = e.iter().fold(0i32, |a, &c| a * 10 + i32::from(c - b'0'));
            if neg { -n } else { n }
        }),
        None => (s, 0),
    };
    let point = mant.iter().position(|&c| c == b'.').unwrap_or(mant.len());
    let mut d: Vec<u8> = mant.iter().copied().filter(|&c| c != b'.').collect();
    let lead = d.iter().take_while(|&&c| c == b'0').count();
    d.drain(..lead);
    while d.last() == Some(&b'0') {
        d.pop();
    }
    Some((d, point as i32 - lead as i32 - 1 + exp))
}

/// ryu-js breaks an exact tie between two shortest candidates to the even digit; core's
/// formatting rounds it up. `v` is exactly halfway above `d` (digits, first at `10^e`) iff
/// `v == (d·10 + 5)·10^(e-n)`; checked exactly in `u128` (a tie needs at most 18 significant
/// digits, which keeps every tie in range).
fn round_tie_up(v: f64, mut d: Vec<u8>, mut e: i32) -> (Vec<u8>, i32) {
    let n = d.len() as i32;
    if n >= 18 || !d[d.len() - 1].is_multiple_of(2) {
        return (d, e);
    }
    let t = d.iter().fold(0u128, |a, &c| a * 10 + u128::from(c - b'0')) * 10 + 5;
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = u128::from(bits & ((1 << 52) - 1));
    let (m, k) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | 1 << 52, exp - 1075)
    };
    let p = e - n; // v == t·10^p ?
    let pow10 = |x: i32| 10u128.checked_pow(x as u32);
    let shl = |a: u128, s: i32| {
        if s < 128 && a.leading_zeros() as i32 >= s {
            Some(a << s)
        } else {
            None
        }
    };
    let tie = (|| {
        // m·2^k·10^max(-p,0) == t·10^max(p,0), moving negative powers of two to the right.
        let mut lhs = m.checked_mul(if p < 0 { pow10(-p)? } else { 1 })?;
        let mut rhs = t.checked_mul(if p > 0 { pow10(p)? } else { 1 })?;
        if k >= 0 {
            lhs = shl(lhs, k)?
        } else {
            rhs = shl(rhs, -k)?
        }
        Some(lhs == rhs)
    })()
    .unwrap_or(false);
    if tie {
        // Round the last digit up, carrying.
        let mut i = d.len();
        loop {
            if i == 0 {
                d.insert(0, b'1');
                e += 1;
                break;
            }
            i -= 1;
            if d[i] == b'9' {
                d[i] = b'0';
            } else {
                d[i] += 1;
                break;
            }
        }
        while d.last() == Some(&b'0') {
            d.pop();
        }
    }
    (d, e)
}

/// `format!("{}", v)` for a finite `f64` (shortest round-trip digits, never an exponent).
pub(crate) fn display_f64(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    let Some((d, e)) = digits(v) else {
        out.push('0');
        return out;
    };
    let (d, e) = round_tie_up(v.abs(), d, e);
    let d = String::from_utf8(d).unwrap_or_default();
    let n = d.len() as i32;
    if e < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-e - 1) as usize));
        out.push_str(&d);
    } else if e + 1 >= n {
        out.push_str(&d);
        out.extend(std::iter::repeat_n('0', (e + 1 - n) as usize));
    } else {
        out.push_str(&d[..(e + 1) as usize]);
        out.push('.');
        out.push_str(&d[(e + 1) as usize..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_f64_matches_core() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut vals = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            1.5,
            0.1,
            100.5,
            1e21,
            1e22,
            1e-7,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.9999999,
            123456789012345680000.0,
            1e15,
            1e16,
            1e17,
            0.000001,
            2.5e-5,
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if f.is_finite() {
                vals.push(f);
            }
            vals.push((x % 1_000_000) as f64 / 1000.0);
            // Exact ties: an integer plus a short binary fraction at 17 significant digits.
            vals.push(((x >> 14) | 1 << 49) as f64 + [0.25, 0.5, 0.75, 0.125][(x & 3) as usize]);
            vals.push(((x >> 11) | 1 << 52) as f64 * 2.0);
        }
        for v in vals {
            assert_eq!(display_f64(v), format!("{v}"), "{:#x}", v.to_bits());
        }
    }

    #[test]
    fn messages_match_core() {
        let cases = [
            PolicyError::Zero {
                field: "soft_ttl_ms",
            },
            PolicyError::HardBeforeSoft { soft: 10, hard: 5 },
            PolicyError::OutOfRange {
                field: "jitter",
                value: 1.5,
                expected: "a fraction in [0, 1)",
            },
            PolicyError::OutOfRange {
                field: "early_refresh",
                value: -1e-9,
                expected: "x",
            },
            PolicyError::TooLong {
                field: "lease_ttl_ms",
                value: 1 << 41,
                max: 1 << 40,
            },
            PolicyError::LoadTimeouts { soft: 3, hard: 2 },
            PolicyError::Json("unknown field `x`".into()),
        ];
        for e in cases {
            assert_eq!(message(&e), e.to_string());
        }
    }

    #[test]
    fn parse_agrees_with_core() {
        let texts = [
            r#"{}"#,
            r#"{"soft_ttl_ms":1000,"hard_ttl_ms":5000,"jitter":0.1,"early_refresh":1}"#,
            r#"{"soft_ttl_ms":0}"#,
            r#"{"soft_ttl":1}"#,
            r#"{"soft_ttl_ms":1,"soft_ttl_ms":2}"#,
            r#"{"soft_ttl_ms":-1}"#,
            r#"{"soft_ttl_ms":1.5}"#,
            r#"{"soft_ttl_ms":"1"}"#,
            r#"{"hard_ttl_ms":null}"#,
            r#"{"lock_backoff_ms":[]}"#,
            r#"{"lock_backoff_ms":[1,2.0]}"#,
            r#"{"on_lock_timeout":"serve_stale","on_store_error":"error"}"#,
            r#"{"on_lock_timeout":"nope"}"#,
            r#"{"on_lock_timeout":{"error":null}}"#,
            r#"{"on_lock_timeout":{"error":1}}"#,
            r#"{"on_store_error":null}"#,
            r#"{"on_store_error":5}"#,
            r#"{"jitter":2}"#,
            r#"{"jitter":null}"#,
            r#"[1]"#,
            r#"  {"load_soft_timeout_ms":5,"load_hard_timeout_ms":5}"#,
            r#"{"soft_ttl_ms":1e400}"#,
            r#"{"soft_ttl_ms":18446744073709551615}"#,
            r#"{"s\u006fft_ttl_ms":7}"#,
            r#"{"soft_ttl_ms":7"#,
        ];
        for t in texts {
            let (a, b) = (parse(t), Policy::from_json(t));
            match (&a, &b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{t}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{t}");
                    assert_eq!(a.field(), b.field(), "{t}");
                    match (a, b) {
                        (PolicyError::Json(x), PolicyError::Json(y)) => {
                            assert_eq!(json_field(x), json_field(y), "{t}: {x} / {y}")
                        }
                        _ => assert_eq!(a, b, "{t}"),
                    }
                }
                _ => panic!("{t}: {a:?} vs {b:?}"),
            }
        }
    }
}
