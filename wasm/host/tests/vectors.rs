//! The conformance vectors (`tests/vectors/*.json`, format in `tests/vectors/README.md`) through
//! the wasm module in wasmtime. Each case becomes one or more `karlton_call` requests; the result
//! must equal the case's `expect` as a JSON value, exactly as the native runner
//! (`core/tests/vectors.rs`) requires of karlton-core. The JS twin is
//! `wasm/js/tests/vectors.mjs`.

use karlton_wasm_host::{HostError, Instance, Plugin, default_module_path, parse_reply};
use serde_json::{Value, json};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

/// A reply as the vectors write it: `{"ok": v}` (mapped), or `{"error": detail}`.
fn via(k: &mut Instance, req: Value, map: impl FnOnce(Value) -> Value) -> Value {
    let reply = k.call_bytes(req.to_string().as_bytes()).expect("no trap");
    match parse_reply::<Value>(&reply) {
        Ok(v) => json!({ "ok": map(v) }),
        Err(HostError::Call { detail: Some(d), .. }) => json!({ "error": d }),
        Err(e) => panic!("{e} for {req}"),
    }
}

fn call(k: &mut Instance, req: Value) -> Value {
    let reply = k.call_bytes(req.to_string().as_bytes()).expect("no trap");
    parse_reply(&reply).unwrap_or_else(|e| panic!("{e} for {req}"))
}

fn non_zero(stats: &Value) -> Value {
    Value::Object(
        stats.as_object().unwrap().iter().filter(|(_, v)| v.as_u64() != Some(0)).map(|(k, v)| (k.clone(), v.clone())).collect(),
    )
}

fn opt(v: &Value) -> Value {
    v.clone()
}

fn eval(k: &mut Instance, kind: &str, i: &Value) -> Value {
    let op = i["op"].as_str().unwrap_or("");
    match kind {
        "keys" => {
            if op == "params_hash" {
                return via(k, json!({"op": "params_hash", "params_json": i["params_json"]}), |v| v);
            }
            let tags = if op == "tag_key" { json!([i["tag"]]) } else { json!([]) };
            let req = json!({"op": "key_build", "namespace": i["namespace"], "segments": i.get("segments").cloned().unwrap_or(json!([])),
                "params_json": opt(&i["params_json"]), "version": opt(&i["version"]), "hash_tag": i["hash_tag"].as_bool().unwrap_or(false),
                "max_len": opt(&i["max_len"]), "tags": tags});
            let field = match op {
                "build" => "key",
                "generation_key" => "generation_key",
                "tag_key" => "tag_keys",
                other => panic!("unknown keys op {other}"),
            };
            via(k, req, |v| if field == "tag_keys" { v[field][0].clone() } else { v[field].clone() })
        }
        "policy" => {
            let text = match i.get("spec_json").and_then(Value::as_str) {
                Some(t) => t.to_owned(),
                None => i["spec"].to_string(),
            };
            via(k, json!({"op": "policy", "policy_json": text}), |v| v)
        }
        "freshness" => match op {
            "freshness" => via(k, json!({"op": "freshness", "now_ms": i["now"], "soft_at": i["soft_at"], "hard_at": i["hard_at"], "stale_if_error_ms": i["stale_if_error_ms"]}), |v| v),
            "decide" => {
                let r = via(k, json!({"op": "decide", "now_ms": i["now"], "soft_at": i["soft_at"], "hard_at": i["hard_at"], "load_ms": i["load_ms"], "policy": i["policy"], "rand": i["rand"]}), |v| v);
                // The scalar fast path must agree.
                let p = call(k, json!({"op": "policy", "policy": i["policy"]}));
                let n = |v: &Value| match v {
                    Value::String(s) => s.parse::<u64>().unwrap(),
                    v => v.as_u64().unwrap(),
                };
                let d = k
                    .decide(n(&i["now"]), n(&i["soft_at"]), n(&i["hard_at"]), n(&i["load_ms"]), p["early_refresh"].as_f64().unwrap(), n(&p["stale_if_error_ms"]), n(&i["rand"]))
                    .unwrap();
                assert_eq!(json!({"ok": serde_json::to_value(d.to_core()).unwrap()}), r, "scalar decide for {i}");
                r
            }
            "xfetch" => via(k, json!({"op": "xfetch", "now_ms": i["now"], "soft_at": i["soft_at"], "load_ms": i["load_ms"], "beta": i["beta"], "rand": i["rand"]}), |v| v),
            "jitter_reduction" => via(k, json!({"op": "jitter_reduction", "ttl_ms": i["ttl_ms"], "jitter_ppm": i["jitter_ppm"], "rand": i["rand"]}), |v| v),
            "jittered_ttls" => via(k, json!({"op": "jittered_ttls", "policy": i["policy"], "rand": i["rand"]}), |v| v),
            other => panic!("unknown freshness op {other}"),
        },
        "entry" => match op {
            "encode" => via(k, json!({"op": "entry_encode", "entry": i["entry"]}), |v| v),
            "decode" => via(k, json!({"op": "entry_decode", "hex": i["hex"]}), |v| v),
            other => panic!("unknown entry op {other}"),
        },
        "flows" => {
            let flow = call(k, json!({"op": "flow_create", "request": i["request"], "policy": i["policy"], "seed": i["seed"]}));
            let steps: Vec<Value> = i["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    if s["input"].is_null() {
                        call(k, json!({"op": "flow_start", "flow": flow, "now_ms": s["now"]}))
                    } else {
                        call(k, json!({"op": "flow_handle", "flow": flow, "now_ms": s["now"], "input": s["input"]}))
                    }
                })
                .collect();
            let stats = call(k, json!({"op": "flow_drop", "flow": flow}));
            json!({ "steps": steps, "stats": non_zero(&stats) })
        }
        "store" => {
            let s = call(k, json!({"op": "store_create"}));
            let replies: Vec<Value> = i["ops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| call(k, json!({"op": "store_apply", "store": s, "now_ms": o["now"], "store_op": o["op"]})))
                .collect();
            call(k, json!({"op": "store_drop", "store": s}));
            json!({ "replies": replies })
        }
        "eviction" => {
            let c = &i["config"];
            let s = call(k, json!({"op": "store_create", "max_entries": c["max_entries"], "max_bytes": c["max_bytes"], "shards": c["shards"], "seed": c["seed"]}));
            let replies: Vec<Value> = i["ops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| call(k, json!({"op": "store_apply", "store": s, "now_ms": o["now"], "store_op": o["op"]})))
                .collect();
            let st = call(k, json!({"op": "store_stats", "store": s}));
            call(k, json!({"op": "store_drop", "store": s}));
            json!({ "replies": replies, "evictions": st["evictions"], "slots": st["slots"], "bytes": st["bytes"] })
        }
        "writes" => {
            let served = |v: Value| json!({ "served": v["served"], "stats": non_zero(&v["stats"]) });
            match op {
                "get_op" => via(k, json!({"op": "get_op", "key": i["key"], "gen_keys": i["gen_keys"]}), |v| v),
                "set_op" => via(k, json!({"op": "set_op", "write": i["write"], "policy": i["policy"], "store_now": i["store_now"], "rand": i["rand"]}), |v| v),
                "invalidate_op" => via(k, json!({"op": "invalidate_op", "key": i["key"], "mode": i["mode"]}), |v| v),
                "bump_op" => via(k, json!({"op": "bump_op", "gen_key": i["gen_key"], "rand": i["rand"]}), |v| v),
                "get_result" => via(k, json!({"op": "get_result", "reply": i["reply"], "policy": i["policy"]}), served),
                "get_on_store_error" => via(k, json!({"op": "get_on_store_error", "policy": i["policy"], "message": i["message"]}), served),
                other => panic!("unknown writes op {other}"),
            }
        }
        "coordinator" => coordinator(k, i),
        other => panic!("unknown vector kind {other}"),
    }
}

/// A coordinator script (the reading of `eval_coordinator` in `core/tests/vectors/eval.rs`)
/// through the `coord_*` ops: calls are named by the script, flights after the call that leads
/// them (`"a"`, then `"a#2"`), every output is the module's JSON with ids replaced by names.
fn coordinator(k: &mut Instance, input: &Value) -> Value {
    use std::collections::HashMap;
    #[derive(Default)]
    struct Names {
        calls: HashMap<String, u64>,
        flights: HashMap<u64, String>,
    }
    impl Names {
        fn call(&self, label: &str) -> Value {
            // An unknown label is a call id no coordinator ever handed out.
            json!(self.calls.get(label).copied().unwrap_or(u64::MAX).to_string())
        }
        fn flight_led_by(&mut self, label: &str, f: u64) {
            let used = self.flights.values().filter(|n| *n == label || n.starts_with(&format!("{label}#"))).count();
            let name = if used == 0 { label.to_owned() } else { format!("{label}#{}", used + 1) };
            self.flights.insert(f, name);
        }
        fn flight(&self, f: &Value) -> Value {
            let id = f.as_u64().expect("flight id");
            self.flights.get(&id).map_or(f.clone(), |n| json!(n))
        }
        fn ticket(&mut self, label: &str, mut t: Value) -> Value {
            match t["ticket"].as_str().expect("ticket") {
                "lead" => {
                    let call = t["call"].as_u64().expect("call id");
                    self.calls.insert(label.to_owned(), call);
                    // The flight id of a lead is its call id (see Coordinator::lead).
                    self.flight_led_by(label, call);
                    t["call"] = json!(label);
                }
                "join" => {
                    self.calls.insert(label.to_owned(), t["call"].as_u64().expect("call id"));
                    t["call"] = json!(label);
                    t["flight"] = self.flight(&t["flight"]);
                }
                _ => {}
            }
            t
        }
    }
    fn undecodable(s: &Value) -> Value {
        json!({"value": s["bad"], "codec": 1, "negative": false, "version": null,
               "source": s.get("source").cloned().unwrap_or(json!("fresh")), "cached": true})
    }
    let policy = &input["policy"];
    let coord = call(k, json!({"op": "coord_create", "seed": input["seed"], "fast_read": input["fast_read"].as_bool().unwrap_or(false)}));
    let mut names = Names::default();
    let mut outputs = Vec::new();
    for s in input["steps"].as_array().expect("steps") {
        let now = &s["now"];
        let label = s["call"].as_str().expect("call");
        let request = || json!({"key": s["key"], "gen_keys": s.get("gen_keys").cloned().unwrap_or(json!([])), "tags": s.get("tags").cloned().unwrap_or(json!([]))});
        let out = match s["do"].as_str().expect("do") {
            "get_or_load" => {
                let mut req = json!({"op": "coord_get_or_load", "coord": coord, "now_ms": now, "request": request(), "policy": policy});
                if let Some(w) = s.get("within").and_then(Value::as_array) {
                    // Flights by name -> their ids.
                    let ids: Vec<u64> = w
                        .iter()
                        .map(|n| names.flights.iter().find(|(_, v)| Some(v.as_str()) == n.as_str()).map_or(u64::MAX, |(id, _)| *id))
                        .collect();
                    req["within"] = json!(ids);
                }
                let t = call(k, req);
                names.ticket(label, t)
            }
            "replacing" => {
                let t = call(k, json!({"op": "coord_get_or_load_replacing", "coord": coord, "now_ms": now, "request": request(), "policy": policy, "served": undecodable(s)}));
                names.ticket(label, t)
            }
            "replace_served" => {
                let t = call(k, json!({"op": "coord_replace_served", "coord": coord, "now_ms": now, "call": names.call(label)}));
                names.ticket(label, t)
            }
            "get_undecodable" => call(k, json!({"op": "coord_report_undecodable", "coord": coord, "served": undecodable(s)})),
            "joined" => {
                let t = call(k, json!({"op": "coord_joined", "coord": coord, "now_ms": now, "call": names.call(label)}));
                names.ticket(label, t)
            }
            "feed" => call(k, json!({"op": "coord_handle", "coord": coord, "now_ms": now, "call": names.call(label), "input": s["input"]})),
            "fast_read" => {
                let mut req = json!({"op": "coord_handle_fast_read", "coord": coord, "now_ms": now, "call": names.call(label)});
                match s.get("error") {
                    Some(e) => req["error"] = e.clone(),
                    None => req["replies"] = s["replies"].clone(),
                }
                call(k, req)
            }
            "cancel" => call(k, json!({"op": "coord_cancel", "coord": coord, "call": names.call(label)})),
            "op" => {
                let r = call(k, json!({"op": "coord_op", "coord": coord, "now_ms": now, "call_op": s["op"], "policy": policy}));
                names.calls.insert(label.to_owned(), r["call"].as_u64().expect("call id"));
                r["action"].clone()
            }
            other => panic!("unknown coordinator step {other:?}"),
        };
        let events: Vec<Value> = call(k, json!({"op": "coord_events", "coord": coord}))
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if e.get("flight").is_some() {
                    e["flight"] = names.flight(&e["flight"]);
                }
                e
            })
            .collect();
        outputs.push(if events.is_empty() { json!({ "out": out }) } else { json!({ "out": out, "events": events }) });
    }
    let pending = call(k, json!({"op": "coord_pending", "coord": coord}));
    let stats = call(k, json!({"op": "coord_stats", "coord": coord}));
    let dropped = call(k, json!({"op": "coord_drop", "coord": coord}));
    assert_eq!(stats, dropped, "coord_drop returns the final counters");
    json!({ "outputs": outputs, "stats": non_zero(&stats), "pending": pending })
}

/// `tests/vectors/floors.txt`: every file with the fewest cases it may hold, and the total floor
/// (the same manifest `core/tests/vectors.rs` and the other runtimes' runners read).
fn floors() -> (Vec<(String, usize)>, usize) {
    let path = dir().join("floors.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (mut files, mut total) = (Vec::new(), None);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let n: usize = f[1].parse().unwrap_or_else(|e| panic!("floors.txt: {line:?}: {e}"));
        if f[0] == "total" {
            total = Some(n);
        } else {
            files.push((f[0].to_owned(), n));
        }
    }
    (files, total.expect("floors.txt: no `total` line"))
}

#[test]
fn conformance_vectors_through_wasmtime() {
    // A missing directory, manifest or listed file is a failure, never a silent pass (a binary
    // built from another checkout once ran 0 cases here).
    let (floors, total_floor) = floors();
    let rd = std::fs::read_dir(dir()).unwrap_or_else(|e| panic!("{}: {e}", dir().display()));
    let on_disk: Vec<String> = rd.map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.ends_with(".json")).collect();
    let mut failures = Vec::new();
    for n in &on_disk {
        if !floors.iter().any(|(f, _)| f == n) {
            failures.push(format!("{n}: not listed in tests/vectors/floors.txt"));
        }
    }
    let plugin = Plugin::from_file(default_module_path()).expect("build the module first (scripts/test-wasm.sh)");
    let mut total = 0;
    for (file, floor) in &floors {
        let f = dir().join(file);
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let doc: Value = serde_json::from_str(&text).unwrap();
        let kind = doc["kind"].as_str().unwrap();
        let cases = doc["cases"].as_array().unwrap();
        let mut k = plugin.instantiate().unwrap();
        let mut n = 0;
        for c in cases {
            let got = eval(&mut k, kind, &c["input"]);
            let pass = got == c["expect"];
            let name = c["name"].as_str().unwrap_or("?");
            match (c.get("pending").is_some(), pass) {
                (false, false) => failures.push(format!("{}: {name}\n    expected {}\n    got      {got}", f.display(), c["expect"])),
                (true, true) => failures.push(format!("{}: {name}: pending case passes (drop `pending`)", f.display())),
                _ => {}
            }
            n += 1;
        }
        eprintln!("{file}: {n} of {} cases", cases.len());
        if n != cases.len() {
            failures.push(format!("{file}: ran {n} of its {} cases", cases.len()));
        }
        if n < *floor {
            failures.push(format!("{file}: only {n} cases ran (floor {floor})"));
        }
        total += n;
    }
    eprintln!("total: {total} cases");
    assert!(failures.is_empty(), "{} vector failures ({total} cases ran):\n{}", failures.len(), failures.join("\n"));
    assert!(total >= total_floor, "only {total} vector cases ran (floor {total_floor})");
}
