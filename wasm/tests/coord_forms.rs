//! The `coord_*` replies are byte-identical to `serde_json` of karlton-core's own results: every
//! step of `tests/vectors/coordinator.json` runs on a native `Coordinator` and through the
//! dispatcher (natively compiled, the same code as the module), and each reply's `ok` bytes must
//! equal `serde_json::to_string` of the native Ticket / Action / Event / StoreOp / Stats.

use karlton_core::coordinator::{CallId, Coordinator, Op};
use karlton_core::redis::RedisValue;
use karlton_core::store::StoreFailure;
use karlton_core::{Input, Policy, Request, Served, Source};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

fn ok(req: &Value) -> String {
    let r = karlton_wasm::api::call_str(&req.to_string());
    let body = r
        .strip_prefix("{\"ok\":")
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or_else(|| panic!("{r} for {req}"));
    body.to_owned()
}

fn u64_of(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_u64().unwrap(),
    }
}

#[test]
fn coordinator_replies_are_the_cores_serde_bytes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/coordinator.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut steps_checked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let i = &case["input"];
        let policy = Arc::new(Policy::from_json(&i["policy"].to_string()).unwrap());
        let fast = i["fast_read"].as_bool().unwrap_or(false);
        let mut c = Coordinator::new(u64_of(&i["seed"]), fast);
        let h = ok(&json!({"op": "coord_create", "seed": i["seed"], "fast_read": fast}));
        let mut calls: HashMap<String, CallId> = HashMap::new();
        for s in i["steps"].as_array().unwrap() {
            let now = u64_of(&s["now"]);
            let label = s["call"].as_str().unwrap().to_owned();
            let id = calls.get(&label).copied().unwrap_or(CallId(u64::MAX));
            let base = json!({"coord": serde_json::from_str::<Value>(&h).unwrap(), "now_ms": now, "call": id.0.to_string()});
            let with = |op: &str, extra: Value| {
                let mut r = base.clone();
                r["op"] = json!(op);
                for (k, v) in extra.as_object().unwrap() {
                    r[k] = v.clone();
                }
                ok(&r)
            };
            let req = || Request {
                key: s["key"].as_str().unwrap().to_owned(),
                gen_keys: serde_json::from_value(s.get("gen_keys").cloned().unwrap_or(json!([]))).unwrap(),
                tags: serde_json::from_value(s.get("tags").cloned().unwrap_or(json!([]))).unwrap(),
            };
            let req_json = || serde_json::to_value(req()).unwrap();
            let bad = || Served {
                value: karlton_core::store::hex::decode(s["bad"].as_str().unwrap()).unwrap().into(),
                codec: 1,
                negative: false,
                version: None,
                source: serde_json::from_value::<Source>(s.get("source").cloned().unwrap_or(json!("fresh"))).unwrap(),
                cached: true,
            };
            let (native, via) = match s["do"].as_str().unwrap() {
                "get_or_load" => {
                    let names: Vec<&str> = s.get("within").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                    let within: Vec<karlton_core::FlightId> = names.iter().map(|n| karlton_core::FlightId(calls[*n].0)).collect();
                    let t = c.get_or_load_within(now, req(), policy.clone(), &within);
                    let ids: Vec<u64> = within.iter().map(|f| f.0).collect();
                    (serde_json::to_string(&t).unwrap(), with("coord_get_or_load", json!({"request": req_json(), "policy": i["policy"], "within": ids})))
                }
                "replacing" => {
                    let t = c.get_or_load_replacing(now, req(), policy.clone(), bad());
                    let served = serde_json::to_value(bad()).unwrap();
                    (serde_json::to_string(&t).unwrap(), with("coord_get_or_load_replacing", json!({"request": req_json(), "policy": i["policy"], "served": served})))
                }
                "get_undecodable" => {
                    c.counters().report_undecodable(&bad());
                    let served = serde_json::to_value(bad()).unwrap();
                    ("null".to_owned(), with("coord_report_undecodable", json!({"served": served})))
                }
                "replace_served" => {
                    (serde_json::to_string(&c.replace_served(now, id)).unwrap(), with("coord_replace_served", json!({})))
                }
                "joined" => (serde_json::to_string(&c.joined(now, id)).unwrap(), with("coord_joined", json!({}))),
                "feed" => {
                    let inp: Input = serde_json::from_value(s["input"].clone()).unwrap();
                    (serde_json::to_string(&c.handle(now, id, inp)).unwrap(), with("coord_handle", json!({"input": s["input"]})))
                }
                "fast_read" => {
                    let (r, extra) = match s.get("error") {
                        Some(e) => (Err(StoreFailure { message: e.as_str().unwrap().to_owned() }), json!({"error": e})),
                        None => (Ok(serde_json::from_value::<Vec<RedisValue>>(s["replies"].clone()).unwrap()), json!({"replies": s["replies"]})),
                    };
                    (serde_json::to_string(&c.handle_fast_read(now, id, r)).unwrap(), with("coord_handle_fast_read", extra))
                }
                "cancel" => (serde_json::to_string(&c.cancel(id)).unwrap(), with("coord_cancel", json!({}))),
                "op" => {
                    let op: Op = serde_json::from_value(s["op"].clone()).unwrap();
                    let (call, action) = c.op(now, op, policy.clone());
                    let native = format!("{{\"call\":{},\"action\":{}}}", call.0, serde_json::to_string(&action).unwrap());
                    (native, with("coord_op", json!({"call_op": s["op"], "policy": i["policy"]})))
                }
                other => panic!("unknown step {other}"),
            };
            assert_eq!(via, native, "{}: step {s}", case["name"]);
            // Bind labels from the native reply (same ids on both sides).
            let v: Value = serde_json::from_str(&native).unwrap();
            if let Some(call) = v.get("call").and_then(Value::as_u64) {
                calls.insert(label, CallId(call));
            }
            let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
            assert_eq!(with("coord_events", json!({})), serde_json::to_string(&events).unwrap());
            steps_checked += 1;
        }
        assert_eq!(with_stats(&h, "coord_pending"), serde_json::to_string(&c.pending()).unwrap());
        assert_eq!(with_stats(&h, "coord_drop"), serde_json::to_string(&c.stats()).unwrap());
    }
    assert!(steps_checked >= 500, "only {steps_checked} steps");
}

fn with_stats(h: &str, op: &str) -> String {
    ok(&json!({"op": op, "coord": serde_json::from_str::<Value>(h).unwrap()}))
}
