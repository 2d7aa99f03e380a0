//! The wasmtime runner of the differential fuzz test (tests/differential/README.md): answers
//! the cases of stdin through karlton.wasm's JSON ops (`key_build`, `params_hash`, `policy`,
//! `entry_decode`, `entry_describe`) in wasmtime, with requests built as a Rust host builds them (serde_json).
//!
//! `KARLTON_WASM=wasm/dist/karlton.wasm cargo run --release -p karlton-wasm-host --example diff_runner_wasm < cases.jsonl`

#[path = "../../../tests/differential/rust/common.rs"]
mod common;

use common::{Fail, fail, int_text, string, u64_arg, value};
use karlton_wasm_host::Plugin;
use serde_json::{Map, Value, json};

fn call(k: &mut karlton_wasm_host::Instance, req: &Value) -> Result<Value, Fail> {
    let reply = k
        .call_json(&req.to_string())
        .map_err(|e| Fail::new(None, e))?;
    let mut r: Value = serde_json::from_str(&reply).expect("reply JSON");
    if let Some(ok) = r.get_mut("ok") {
        return Ok(ok.take());
    }
    let e = &r["error"];
    Err(Fail {
        field: e["detail"]["field"].as_str().map(str::to_string),
        msg: format!(
            "{}: {}",
            e["code"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        ),
        code: e["code"].as_str().map(str::to_string),
        kind: e["detail"]["kind"].as_str().map(str::to_string),
    })
}

/// The arguments are converted in the one order of docs/value-model.md (namespace, segments,
/// params, version, hash_tag, max_len, tags). One a Rust host cannot hold (a lone surrogate, a
/// 2^70 integer) fails naming itself, but only after the module has checked the arguments
/// before it (called with those alone), so that the first bad argument is reported, as in
/// every runtime.
fn key(k: &mut karlton_wasm_host::Instance, c: &Value) -> Result<Value, Fail> {
    let mut req = Map::new();
    req.insert("op".into(), "key_build".into());
    if let Err(f) = key_request(c, &mut req) {
        if req.contains_key("namespace") {
            call(k, &Value::Object(req))?;
        }
        return Err(f);
    }
    let r = call(k, &Value::Object(req))?;
    Ok(json!({"key": r["key"], "gen": r["generation_key"], "tags": r["tag_keys"]}))
}

/// Fills `req` with the case's arguments in order, up to the first that does not convert.
fn key_request(c: &Value, req: &mut Map<String, Value>) -> Result<(), Fail> {
    req.insert("namespace".into(), string(&c["ns"], "namespace")?.into());
    let mut segs = Vec::new();
    for s in c["segs"].as_array().expect("segs") {
        if s.get("s").is_some() {
            segs.push(Value::String(string(s, "segments")?));
        } else if let Some(t) = int_text(s) {
            segs.push(Value::String(t.to_string()));
        } else {
            return Err(fail("segments", "a segment is a string or an integer"));
        }
    }
    req.insert("segments".into(), Value::Array(segs));
    if let Some(p) = c.get("params") {
        req.insert("params".into(), value(p, "params")?);
    }
    if let Some(v) = c.get("version") {
        req.insert("version".into(), u64_arg(v, "version")?.into());
    }
    if let Some(h) = c.get("hash_tag") {
        req.insert("hash_tag".into(), h.clone());
    }
    if let Some(n) = c.get("max_len") {
        req.insert("max_len".into(), u64_arg(n, "max_len")?.into());
    }
    if let Some(ts) = c.get("tags").and_then(Value::as_array) {
        let tags = ts
            .iter()
            .map(|t| string(t, "tags").map(Value::String))
            .collect::<Result<Vec<_>, _>>()?;
        req.insert("tags".into(), Value::Array(tags));
    }
    Ok(())
}

/// The policy's fields in PolicySpec's order, the order the module reads them in (unknown ones
/// first). A value a Rust host cannot put in JSON (NaN, a lone surrogate, a 2^70 integer) fails
/// naming its field, but only after the module has read the fields before it: a conversion
/// error of theirs (their JSON type or sign) is reported first, as in every runtime; their
/// value checks (`Policy::new`'s) come after every conversion, so they do not.
fn policy(k: &mut karlton_wasm_host::Instance, c: &Value) -> Result<Value, Fail> {
    const ORDER: [&str; 14] = karlton_core::policy::FIELDS;
    let mut fields: Vec<&Value> = c["spec"].as_array().expect("spec").iter().collect();
    fields.sort_by_key(|fv| ORDER.iter().position(|f| fv[0] == *f).map_or(0, |i| i + 1));
    let mut spec = Map::new();
    for fv in fields {
        let f = fv[0].as_str().expect("field");
        match value(&fv[1], f) {
            Ok(v) => {
                spec.insert(f.to_string(), v);
            }
            Err(fail) => {
                return match call(k, &json!({"op": "policy", "policy": spec})) {
                    Err(e) if e.kind.as_deref() == Some("json") => Err(e),
                    _ => Err(fail),
                };
            }
        }
    }
    call(k, &json!({"op": "policy", "policy": spec}))
}

fn main() {
    let path = std::env::var("KARLTON_WASM").unwrap_or_else(|_| "wasm/dist/karlton.wasm".into());
    let plugin = Plugin::from_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut k = plugin.instantiate().expect("instantiate");
    common::run(|c| match c["kind"].as_str().expect("kind") {
        "key" => key(&mut k, c),
        "params_hash" => {
            let p = value(&c["params"], "params")?;
            call(&mut k, &json!({"op": "params_hash", "params": p})).map(|r| r["hash"].clone())
        }
        "policy" => policy(&mut k, c),
        "entry" => {
            let e = call(&mut k, &json!({"op": "entry_decode", "hex": c["hex"]}))?;
            let s = |v: &Value| {
                if v.is_null() {
                    Value::Null
                } else if let Some(t) = v.as_str() {
                    t.into()
                } else {
                    v.to_string().into()
                }
            };
            Ok(json!({
                "value": e["value_hex"], "codec": e["codec"], "version": s(&e["version"]),
                "generations": e["generations"].as_array().expect("generations").iter().map(s).collect::<Vec<_>>(),
                "soft_at": s(&e["soft_at"]), "hard_at": s(&e["hard_at"]), "load_ms": s(&e["load_ms"]),
                "negative": e["negative"], "tags": e["tags"],
            }))
        }
        "describe" => {
            let policy = match c.get("sie") {
                Some(v) => Some(json!({ "stale_if_error_ms": u64_arg(v, "stale_if_error_ms")? })),
                None => None,
            };
            // the policy is checked before the moment (the module reads them in that order)
            let now = match u64_arg(&c["now"], "now_ms") {
                Ok(n) => n,
                Err(f) => {
                    if let Some(p) = &policy {
                        call(&mut k, &json!({"op": "policy", "policy": p}))?;
                    }
                    return Err(f);
                }
            };
            let mut req = json!({"op": "entry_describe", "hex": c["hex"], "now_ms": now});
            if let Some(p) = policy {
                req["policy"] = p;
            }
            let i = call(&mut k, &req)?;
            let s = |v: &Value| {
                if v.is_null() {
                    Value::Null
                } else {
                    v.to_string().trim_matches('"').to_string().into()
                }
            };
            Ok(json!({
                "freshness": i["freshness"], "soft_at": s(&i["soft_at"]), "hard_at": s(&i["hard_at"]),
                "usable_until": s(&i["usable_until"]), "load_ms": s(&i["load_ms"]), "version": s(&i["version"]),
                "negative": i["negative"], "codec": i["codec"], "value_len": i["value_len"],
                "generations": i["generations"].as_array().expect("generations").iter().map(s).collect::<Vec<_>>(),
                "tags": i["tags"],
            }))
        }
        other => Err(Fail::new(None, format!("unknown kind {other}"))),
    });
}
