//! The Rust runner of the differential fuzz test (tests/differential/README.md): answers the
//! cases of stdin through karlton-core's public API (`Key`, `key::params_hash`, `PolicySpec` +
//! `policy::duration_ms` + `Policy::new`, `Entry::decode`).
//!
//! `cargo run --release -p karlton-core --example diff_runner < cases.jsonl`

#[path = "../../tests/differential/rust/common.rs"]
mod common;

use common::{Fail, fail, float, int_text, string, u64_arg, value};
use karlton_core::entry::Entry;
use karlton_core::policy::duration_ms;
use karlton_core::{Key, OnLockTimeout, OnStoreError, Policy, PolicySpec};
use serde_json::{Value, json};

/// Arguments are converted and checked in the one order of docs/value-model.md (the core's:
/// namespace, segments, params, version, hash_tag, max_len, tags): a value a Rust user cannot
/// hold (a lone surrogate, a 2^70 integer) fails naming its argument at its turn, after the
/// core has refused any earlier argument.
fn key(c: &Value) -> Result<Value, Fail> {
    let ns = string(&c["ns"], "namespace")?;
    let mut k = Key::new(&ns).map_err(|e| fail("namespace", e))?;
    for s in c["segs"].as_array().expect("segs") {
        if s.get("s").is_some() {
            k = k.segment(&string(s, "segments")?);
        } else if let Some(t) = int_text(s) {
            k = k.segment(t); // an integer segment is its decimal text
        } else {
            return Err(fail("segments", "a segment is a string or an integer"));
        }
    }
    if let Some(p) = c.get("params") {
        k = k
            .params(&value(p, "params")?)
            .map_err(|e| fail("params", e))?;
    }
    if let Some(v) = c.get("version") {
        k = k.version(u64_arg(v, "version")?);
    }
    if let Some(h) = c.get("hash_tag") {
        k = k.hash_tag(h.as_bool().expect("bool"));
    }
    if let Some(n) = c.get("max_len") {
        let n = usize::try_from(u64_arg(n, "max_len")?).map_err(|e| fail("max_len", e))?;
        k = k.max_len(n).map_err(|e| fail("max_len", e))?;
    }
    let mut tags = Vec::new();
    for t in c
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        tags.push(k.tag_key(&string(t, "tags")?));
    }
    Ok(json!({"key": k.build(), "gen": k.generation_key(), "tags": tags}))
}

/// A duration in ms as a Rust user converts a number: integers exactly, floats with the
/// core's `duration_ms` (half away from zero); `None` when refused.
fn ms(v: &Value, field: &str) -> Result<u64, Fail> {
    if let Some(t) = int_text(v) {
        return t
            .parse::<u64>()
            .map_err(|_| fail(field, format!("{t} ms is not a duration")));
    }
    match float(v) {
        Some(f) => {
            duration_ms(f, 1.0).ok_or_else(|| fail(field, format!("{f} ms is not a duration")))
        }
        None => Err(fail(field, "not a number")),
    }
}

/// A fraction or factor. NaN and ±Infinity are refused here, while converting, as by every
/// host that reads numbers from JSON or refuses what JSON cannot carry (Python, Node, the
/// loader, a wasm host): `Policy::new` would refuse them too, but only after every field is
/// converted, which would report a later field's conversion error first.
fn number(v: &Value, field: &str) -> Result<f64, Fail> {
    if let Some(t) = int_text(v) {
        return t.parse::<f64>().map_err(|_| fail(field, "not a number"));
    }
    float(v)
        .filter(|f| f.is_finite())
        .ok_or_else(|| fail(field, "not a finite number"))
}

fn policy(c: &Value) -> Result<Value, Fail> {
    let mut s = PolicySpec::default();
    // Unknown fields first, then the fields in PolicySpec's order (docs/value-model.md).
    const ORDER: [&str; 14] = karlton_core::policy::FIELDS;
    let mut spec: Vec<&Value> = c["spec"].as_array().expect("spec").iter().collect();
    spec.sort_by_key(|fv| ORDER.iter().position(|f| fv[0] == *f).map_or(0, |i| i + 1));
    for fv in spec {
        let (f, v) = (fv[0].as_str().expect("field"), &fv[1]);
        let opt = |v: &Value| {
            if v.is_null() {
                Ok(None)
            } else {
                ms(v, f).map(Some)
            }
        };
        match f {
            "soft_ttl_ms" => s.soft_ttl_ms = ms(v, f)?,
            "hard_ttl_ms" => s.hard_ttl_ms = opt(v)?,
            "negative_ttl_ms" => s.negative_ttl_ms = ms(v, f)?,
            "stale_if_error_ms" => s.stale_if_error_ms = ms(v, f)?,
            "lease_ttl_ms" => s.lease_ttl_ms = ms(v, f)?,
            "lock_wait_ms" => s.lock_wait_ms = ms(v, f)?,
            "load_soft_timeout_ms" => s.load_soft_timeout_ms = opt(v)?,
            "load_hard_timeout_ms" => s.load_hard_timeout_ms = opt(v)?,
            "jitter" => s.jitter = number(v, f)?,
            "early_refresh" => s.early_refresh = number(v, f)?,
            "max_value_bytes" => s.max_value_bytes = u64_arg(v, f)?,
            "lock_backoff_ms" => {
                let a = v
                    .get("a")
                    .and_then(Value::as_array)
                    .ok_or_else(|| fail(f, "not a list"))?;
                s.lock_backoff_ms = a.iter().map(|x| ms(x, f)).collect::<Result<_, _>>()?;
            }
            "on_lock_timeout" => {
                s.on_lock_timeout = match string(v, f)?.as_str() {
                    "load" => OnLockTimeout::Load,
                    "serve_stale" => OnLockTimeout::ServeStale,
                    "error" => OnLockTimeout::Error,
                    other => return Err(fail(f, format!("unknown {other:?}"))),
                }
            }
            "on_store_error" => {
                s.on_store_error = match string(v, f)?.as_str() {
                    "load" => OnStoreError::Load,
                    "error" => OnStoreError::Error,
                    other => return Err(fail(f, format!("unknown {other:?}"))),
                }
            }
            other => return Err(fail(other, "no such PolicySpec field")),
        }
    }
    let p = Policy::new(s).map_err(|e| Fail::new(e.field().map(str::to_string), &e))?;
    Ok(serde_json::from_str(&p.to_json()).expect("policy JSON"))
}

fn entry(c: &Value) -> Result<Value, Fail> {
    let hex = c["hex"].as_str().expect("hex");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let e = Entry::decode(&bytes).map_err(|e| Fail::new(None, &e))?;
    let value: String = e.value.iter().map(|b| format!("{b:02x}")).collect();
    Ok(json!({
        "value": value, "codec": e.codec, "version": e.version.map(|v| v.to_string()),
        "generations": e.generations.iter().map(u64::to_string).collect::<Vec<_>>(),
        "soft_at": e.soft_at.to_string(), "hard_at": e.hard_at.to_string(), "load_ms": e.load_ms.to_string(),
        "negative": e.negative, "tags": e.tags,
    }))
}

/// The policy is built first, as a caller builds it before the call (docs/value-model.md).
fn describe(c: &Value) -> Result<Value, Fail> {
    let mut spec = PolicySpec::default();
    if let Some(v) = c.get("sie") {
        spec.stale_if_error_ms = u64_arg(v, "stale_if_error_ms")?;
    }
    let p = Policy::new(spec).map_err(|e| Fail::new(e.field().map(str::to_string), &e))?;
    let now = u64_arg(&c["now"], "now_ms")?;
    let bytes = hex_bytes(c["hex"].as_str().expect("hex"));
    let i = karlton_core::entry::describe(&bytes, now, &p).map_err(|e| Fail::new(None, &e))?;
    Ok(json!({
        "freshness": i.freshness, "soft_at": i.soft_at.to_string(), "hard_at": i.hard_at.to_string(),
        "usable_until": i.usable_until.to_string(), "load_ms": i.load_ms.to_string(),
        "version": i.version.map(|v| v.to_string()), "negative": i.negative, "codec": i.codec,
        "value_len": i.value_len, "generations": i.generations.iter().map(u64::to_string).collect::<Vec<_>>(),
        "tags": i.tags,
    }))
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn main() {
    common::run(|c| match c["kind"].as_str().expect("kind") {
        "key" => key(c),
        "params_hash" => {
            let p = value(&c["params"], "params")?;
            karlton_core::key::params_hash(&p)
                .map(Value::String)
                .map_err(|e| fail("params", e))
        }
        "policy" => policy(c),
        "entry" => entry(c),
        "describe" => describe(c),
        other => Err(Fail::new(None, format!("unknown kind {other}"))),
    });
}
