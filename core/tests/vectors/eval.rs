//! Evaluates one conformance-vector case against karlton-core and returns its `expect` value.
//!
//! Shared by the runner (`core/tests/vectors.rs`) and the generator
//! (`core/examples/gen_vectors.rs`), so both read the format the same way. The format itself is
//! documented in `tests/vectors/README.md`; other runtimes implement the same reading.
#![allow(dead_code)]

use karlton_core::entry::DecodeError;
use karlton_core::flow::{self, FlowError, GetOrLoad, Input, Request, Write};
use karlton_core::freshness::{self, decide_raw, jitter_reduction, jittered_ttls, xfetch};
use karlton_core::key::{self, Key, KeyError};
use karlton_core::store::{InvalidateMode, ReadReply, StoreFailure, StoreOp};
use karlton_core::{Entry, MemoryStore, Policy, PolicyError, Stats};
use serde_json::{Value, json};
use std::sync::Arc;

/// A u64 given as a decimal string (the vector convention for values that may exceed 2^53) or
/// as a JSON number.
pub fn u64_of(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a u64 string: {s:?}")),
        Value::Number(n) => n.as_u64().unwrap_or_else(|| panic!("not a u64: {n}")),
        other => panic!("expected a u64 (string or number), got {other}"),
    }
}

fn opt_u64(v: Option<&Value>) -> Option<u64> {
    match v {
        None | Some(Value::Null) => None,
        Some(v) => Some(u64_of(v)),
    }
}

fn str_of<'a>(input: &'a Value, field: &str) -> &'a str {
    input[field].as_str().unwrap_or_else(|| panic!("`{field}` must be a string in {input}"))
}

fn ok(v: impl Into<Value>) -> Value {
    json!({ "ok": v.into() })
}

fn err(e: Value) -> Value {
    json!({ "error": e })
}

/// Evaluates `input` of a case of file kind `kind`.
pub fn eval(kind: &str, input: &Value) -> Value {
    match kind {
        "keys" => eval_keys(input),
        "policy" => eval_policy(input),
        "freshness" => eval_freshness(input),
        "entry" => eval_entry(input),
        "flows" => eval_flows(input),
        "store" => eval_store(input),
        "eviction" => eval_eviction(input),
        "writes" => eval_writes(input),
        "coordinator" => eval_coordinator(input),
        other => panic!("unknown vector kind {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// keys

/// Stable error object for a [`KeyError`].
pub fn key_error(e: &KeyError) -> Value {
    match e {
        KeyError::EmptyNamespace => json!({ "kind": "empty_namespace" }),
        KeyError::NamespaceTooLong { len, max } => {
            json!({ "kind": "namespace_too_long", "len": len, "max": max })
        }
        KeyError::Params(_) => json!({ "kind": "params" }),
        KeyError::InvalidJson(_) => json!({ "kind": "invalid_json" }),
        KeyError::MaxLenTooSmall { len, min } => {
            json!({ "kind": "max_len_too_small", "len": len, "min": min })
        }
    }
}

/// Builds the [`Key`] described by a keys input: namespace, segments, params_json, version,
/// hash_tag, max_len (applied in this order; the first error wins).
fn build_key(input: &Value, params_as_value: bool) -> Result<Key, KeyError> {
    let mut k = Key::new(str_of(input, "namespace"))?;
    if let Some(segs) = input.get("segments").and_then(Value::as_array) {
        for s in segs {
            k = k.segment(s.as_str().expect("segments are strings"));
        }
    }
    if let Some(p) = input.get("params_json").and_then(Value::as_str) {
        k = if params_as_value {
            // What a runtime that parses the text itself and passes a value does.
            let v: Value = serde_json::from_str(p).map_err(|e| KeyError::InvalidJson(e.to_string()))?;
            k.params(&v)?
        } else {
            k.params_json(p)?
        };
    }
    if let Some(v) = opt_u64(input.get("version")) {
        k = k.version(v);
    }
    if input.get("hash_tag").and_then(Value::as_bool).unwrap_or(false) {
        k = k.hash_tag(true);
    }
    if let Some(n) = input.get("max_len").filter(|v| !v.is_null()) {
        k = k.max_len(n.as_u64().expect("max_len is a number") as usize)?;
    }
    Ok(k)
}

fn eval_keys(input: &Value) -> Value {
    let op = str_of(input, "op");
    if op == "params_hash" {
        let text = str_of(input, "params_json");
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return err(key_error(&KeyError::InvalidJson(e.to_string()))),
        };
        if let Err(e) = key::check_integer_literals(text) {
            return err(key_error(&KeyError::Params(e.to_string())));
        }
        return match (key::params_hash(&v), key::canonicalize(&v)) {
            (Ok(h), Ok(c)) => ok(json!({ "hash": h, "canonical": c })),
            (Err(e), _) => err(key_error(&e)),
            (_, Err(e)) => err(key_error(&KeyError::Params(e.to_string()))),
        };
    }
    let k = match build_key(input, false) {
        Ok(k) => k,
        Err(e) => return err(key_error(&e)),
    };
    let out = match op {
        "build" => k.build(),
        "generation_key" => k.generation_key(),
        "tag_key" => k.tag_key(str_of(input, "tag")),
        other => panic!("unknown keys op {other:?}"),
    };
    ok(out)
}

/// For keys cases whose params do not depend on the exact literal text: the value path must give
/// the same answer as the text path.
pub fn keys_value_path(input: &Value) -> Option<Value> {
    if str_of(input, "op") == "params_hash" || input.get("params_json").is_none_or(Value::is_null) {
        return None;
    }
    if input.get("exact_text").and_then(Value::as_bool).unwrap_or(false) {
        return None;
    }
    Some(match build_key(input, true) {
        Ok(k) => ok(k.build()),
        Err(e) => err(key_error(&e)),
    })
}

// ------------------------------------------------------------------------------------------------
// policy

/// Stable error object for a [`PolicyError`]: `kind` and the field it names (`null` when the
/// JSON error names none).
pub fn policy_error(e: &PolicyError) -> Value {
    json!({ "kind": e.kind(), "field": e.field() })
}

/// The policy JSON text of a case input: `spec_json` verbatim, or `spec` serialized.
pub fn policy_text(input: &Value) -> String {
    match input.get("spec_json").and_then(Value::as_str) {
        Some(t) => t.to_owned(),
        None => serde_json::to_string(&input["spec"]).expect("spec serializes"),
    }
}

/// A policy given in a case as a spec object (must be valid).
pub fn policy_of(spec: &Value) -> Policy {
    Policy::from_json(&spec.to_string()).unwrap_or_else(|e| panic!("invalid policy {spec}: {e}"))
}

fn eval_policy(input: &Value) -> Value {
    match Policy::from_json(&policy_text(input)) {
        Ok(p) => ok(serde_json::from_str::<Value>(&p.to_json()).expect("policy json")),
        Err(e) => err(policy_error(&e)),
    }
}

// ------------------------------------------------------------------------------------------------
// freshness

fn eval_freshness(input: &Value) -> Value {
    let n = |f: &str| u64_of(&input[f]);
    match str_of(input, "op") {
        "freshness" => {
            let f = freshness::freshness(n("now"), n("soft_at"), n("hard_at"), n("stale_if_error_ms"));
            ok(serde_json::to_value(f).unwrap())
        }
        "decide" => {
            let p = policy_of(&input["policy"]);
            let d = decide_raw(n("now"), n("soft_at"), n("hard_at"), n("load_ms"), &p, n("rand"));
            ok(serde_json::to_value(d).unwrap())
        }
        "xfetch" => {
            let beta = input["beta"].as_f64().expect("beta is a number");
            ok(xfetch(n("now"), n("soft_at"), n("load_ms"), beta, n("rand")))
        }
        "jitter_reduction" => ok(jitter_reduction(n("ttl_ms"), n("jitter_ppm"), n("rand"))),
        "jittered_ttls" => {
            let p = policy_of(&input["policy"]);
            let (s, h) = jittered_ttls(&p, n("rand"));
            ok(json!({ "jitter_ppm": p.jitter_ppm(), "soft_ttl_ms": s, "hard_ttl_ms": h }))
        }
        other => panic!("unknown freshness op {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// entry

/// Stable error object for a [`DecodeError`]: `kind` plus the details it carries.
pub fn decode_error(e: &DecodeError) -> Value {
    match e {
        DecodeError::TooShort => json!({ "kind": "too_short" }),
        DecodeError::BadMagic => json!({ "kind": "bad_magic" }),
        DecodeError::UnsupportedFormat(f) => json!({ "kind": "unsupported_format", "format": f }),
        DecodeError::UnknownFlags(f) => json!({ "kind": "unknown_flags", "flags": f }),
        DecodeError::Truncated(field) => json!({ "kind": "truncated", "field": field }),
        DecodeError::InvalidVarint(field) => json!({ "kind": "invalid_varint", "field": field }),
        DecodeError::InvalidUtf8 => json!({ "kind": "invalid_utf8" }),
        DecodeError::TrailingBytes(n) => json!({ "kind": "trailing_bytes", "count": n }),
        DecodeError::TooLarge(field, found, max) => {
            json!({ "kind": "too_large", "field": field, "found": found, "max": max })
        }
        DecodeError::Inconsistent(why) => json!({ "kind": "inconsistent", "reason": why }),
        other => json!({ "kind": "unknown", "message": other.to_string() }),
    }
}

fn eval_entry(input: &Value) -> Value {
    match str_of(input, "op") {
        "encode" => {
            let e: Entry = serde_json::from_value(input["entry"].clone()).expect("entry JSON form");
            ok(karlton_core::store::hex::encode(&e.encode()))
        }
        "decode" => {
            let bytes = karlton_core::store::hex::decode(str_of(input, "hex")).expect("hex");
            match Entry::decode(&bytes) {
                Ok(e) => ok(serde_json::to_value(&e).unwrap()),
                Err(e) => err(decode_error(&e)),
            }
        }
        other => panic!("unknown entry op {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// flows

fn eval_flows(input: &Value) -> Value {
    let policy = Arc::new(policy_of(&input["policy"]));
    let req: Request = serde_json::from_value(input["request"].clone()).expect("request");
    let mut f = GetOrLoad::new(req, policy, u64_of(&input["seed"]));
    let mut steps = Vec::new();
    for (i, s) in input["steps"].as_array().expect("steps").iter().enumerate() {
        let now = u64_of(&s["now"]);
        let step = if s["input"].is_null() {
            assert_eq!(i, 0, "only the first step starts the flow");
            f.start(now)
        } else {
            let inp: Input = serde_json::from_value(s["input"].clone())
                .unwrap_or_else(|e| panic!("bad input {}: {e}", s["input"]));
            f.handle(now, inp)
        };
        steps.push(serde_json::to_value(&step).unwrap());
    }
    json!({ "steps": steps, "stats": stats_json(f.stats()) })
}

/// Stats with only the non-zero counters (every other counter is 0).
pub fn stats_json(s: &Stats) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in s.fields() {
        if v != 0 {
            m.insert(k.to_owned(), json!(v));
        }
    }
    Value::Object(m)
}

// ------------------------------------------------------------------------------------------------
// eviction: store ops against a small memory store with the given limits and seed

fn eval_eviction(input: &Value) -> Value {
    let c = &input["config"];
    let cfg = karlton_core::MemoryStoreConfig {
        max_entries: u64_of(&c["max_entries"]) as usize,
        max_bytes: u64_of(&c["max_bytes"]) as usize,
        shards: u64_of(&c["shards"]) as usize,
        seed: u64_of(&c["seed"]),
    };
    let store = MemoryStore::new(cfg);
    let replies: Vec<Value> = input["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|s| {
            let op: StoreOp = serde_json::from_value(s["op"].clone())
                .unwrap_or_else(|e| panic!("bad op {}: {e}", s["op"]));
            serde_json::to_value(store.apply(u64_of(&s["now"]), &op)).unwrap()
        })
        .collect();
    json!({ "replies": replies, "evictions": store.evictions(), "slots": store.len(), "bytes": store.bytes() })
}

// ------------------------------------------------------------------------------------------------
// store

fn eval_store(input: &Value) -> Value {
    let store = MemoryStore::default();
    let replies: Vec<Value> = input["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|s| {
            let op: StoreOp = serde_json::from_value(s["op"].clone())
                .unwrap_or_else(|e| panic!("bad op {}: {e}", s["op"]));
            serde_json::to_value(store.apply(u64_of(&s["now"]), &op)).unwrap()
        })
        .collect();
    json!({ "replies": replies })
}

// ------------------------------------------------------------------------------------------------
// writes (the one-op paths: get, set, invalidate, bump)

fn eval_writes(input: &Value) -> Value {
    let op = match str_of(input, "op") {
        "get_op" => {
            let gk: Vec<String> = serde_json::from_value(input["gen_keys"].clone()).unwrap();
            flow::get_op(str_of(input, "key"), &gk)
        }
        "set_op" => {
            let w: Write = serde_json::from_value(input["write"].clone()).expect("write");
            let p = policy_of(&input["policy"]);
            flow::set_op(&w, &p, u64_of(&input["store_now"]), u64_of(&input["rand"]))
        }
        "invalidate_op" => {
            let mode: InvalidateMode = serde_json::from_value(input["mode"].clone()).unwrap();
            flow::invalidate_op(str_of(input, "key"), mode)
        }
        "bump_op" => flow::bump_op(str_of(input, "gen_key"), u64_of(&input["rand"])),
        "get_result" => {
            let reply: ReadReply = serde_json::from_value(input["reply"].clone()).expect("reply");
            let mut st = Stats::default();
            let served = flow::get_result(&reply, &mut st);
            return ok(json!({ "served": served, "stats": stats_json(&st) }));
        }
        "get_on_store_error" => {
            let p = policy_of(&input["policy"]);
            let mut st = Stats::default();
            let e = StoreFailure { message: str_of(input, "message").to_owned() };
            return match flow::get_on_store_error(&p, e, &mut st) {
                Ok(v) => ok(json!({ "served": v, "stats": stats_json(&st) })),
                Err(e) => err(flow_error(&e)),
            };
        }
        other => panic!("unknown writes op {other:?}"),
    };
    ok(serde_json::to_value(op).unwrap())
}

fn flow_error(e: &FlowError) -> Value {
    serde_json::to_value(e).unwrap()
}

// ------------------------------------------------------------------------------------------------
// coordinator: scripted interleavings of several calls in one process

/// Replays a coordinator script. Calls are named by the script (`"a"`, `"b"`); flights are named
/// after the call that leads them (`"a"`, then `"a#2"` if `a` leads again). Every output is the
/// serde JSON of the core type with ids replaced by those names.
pub fn eval_coordinator(input: &Value) -> Value {
    use karlton_core::coordinator::{CallId, Coordinator, FlightId, Op, Ticket};
    use karlton_core::redis::RedisValue;
    use std::collections::HashMap;

    struct Names {
        calls: HashMap<String, CallId>,
        call_names: HashMap<CallId, String>,
        flights: HashMap<FlightId, String>,
    }
    impl Names {
        fn call(&self, label: &str) -> CallId {
            // An unknown label is a call id no coordinator ever handed out.
            self.calls.get(label).copied().unwrap_or(CallId(u64::MAX))
        }
        fn bind(&mut self, label: &str, id: CallId) {
            self.calls.insert(label.to_owned(), id);
            self.call_names.insert(id, label.to_owned());
        }
        fn flight_led_by(&mut self, label: &str, f: FlightId) -> String {
            let used = self
                .flights
                .values()
                .filter(|n| *n == label || n.starts_with(&format!("{label}#")))
                .count();
            let name = if used == 0 {
                label.to_owned()
            } else {
                format!("{label}#{}", used + 1)
            };
            self.flights.insert(f, name.clone());
            name
        }
        fn flight(&self, f: u64) -> Value {
            self.flights
                .get(&FlightId(f))
                .map_or(json!(f), |n| json!(n))
        }
        /// Ticket JSON with names; binds `label` to a new lead/join call id.
        fn ticket(&mut self, label: &str, t: &Ticket) -> Value {
            let mut v = serde_json::to_value(t).unwrap();
            match t {
                Ticket::Answer { .. } => {}
                Ticket::Lead { call, .. } => {
                    self.bind(label, *call);
                    // The flight id of a lead is its call id (see Coordinator::lead).
                    self.flight_led_by(label, FlightId(call.0));
                    v["call"] = json!(label);
                }
                Ticket::Join { call, flight, .. } => {
                    self.bind(label, *call);
                    v["call"] = json!(label);
                    v["flight"] = self.flight(flight.0);
                }
            }
            v
        }
        fn event(&self, e: &karlton_core::coordinator::Event) -> Value {
            let mut v = serde_json::to_value(e).unwrap();
            if let Some(f) = v.get("flight").and_then(Value::as_u64) {
                v["flight"] = self.flight(f);
            }
            v
        }
    }

    /// The served value a step says did not decode (`bad` hex, `source`, default fresh).
    fn undecodable(s: &Value) -> karlton_core::Served {
        let bad = karlton_core::store::hex::decode(str_of(s, "bad")).expect("bad: hex");
        karlton_core::Served {
            value: bad.into(),
            codec: 1,
            negative: false,
            version: None,
            source: serde_json::from_value(s.get("source").cloned().unwrap_or(json!("fresh")))
                .expect("source"),
            cached: true,
        }
    }

    let policy = Arc::new(policy_of(&input["policy"]));
    let fast = input["fast_read"].as_bool().unwrap_or(false);
    let mut c = Coordinator::new(u64_of(&input["seed"]), fast);
    let mut names = Names {
        calls: HashMap::new(),
        call_names: HashMap::new(),
        flights: HashMap::new(),
    };
    let mut outputs = Vec::new();
    for s in input["steps"].as_array().expect("steps") {
        let now = u64_of(&s["now"]);
        let label = str_of(s, "call");
        let request = || Request {
            key: str_of(s, "key").to_owned(),
            gen_keys: serde_json::from_value(s.get("gen_keys").cloned().unwrap_or(json!([])))
                .expect("gen_keys"),
            tags: serde_json::from_value(s.get("tags").cloned().unwrap_or(json!([])))
                .expect("tags"),
        };
        let out = match str_of(s, "do") {
            "get_or_load" => {
                // `within`: the flights (by name) whose loaders this call runs inside.
                let within: Vec<FlightId> = s
                    .get("within")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|n| {
                                let n = n.as_str().expect("within: flight names");
                                names
                                    .flights
                                    .iter()
                                    .find(|(_, v)| v.as_str() == n)
                                    .map_or(FlightId(u64::MAX), |(k, _)| *k)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let t = c.get_or_load_within(now, request(), policy.clone(), &within);
                names.ticket(label, &t)
            }
            "replacing" => {
                let t = c.get_or_load_replacing(now, request(), policy.clone(), undecodable(s));
                names.ticket(label, &t)
            }
            "replace_served" => {
                let t = c.replace_served(now, names.call(label));
                names.ticket(label, &t)
            }
            "get_undecodable" => {
                c.counters().report_undecodable(&undecodable(s));
                json!(null)
            }
            "joined" => {
                let t = c.joined(now, names.call(label));
                names.ticket(label, &t)
            }
            "feed" => {
                let inp: Input = serde_json::from_value(s["input"].clone())
                    .unwrap_or_else(|e| panic!("bad input {}: {e}", s["input"]));
                serde_json::to_value(c.handle(now, names.call(label), inp)).unwrap()
            }
            "fast_read" => {
                let r = match s.get("error") {
                    Some(e) => Err(StoreFailure {
                        message: e.as_str().expect("error").to_owned(),
                    }),
                    None => Ok(
                        serde_json::from_value::<Vec<RedisValue>>(s["replies"].clone())
                            .expect("replies"),
                    ),
                };
                serde_json::to_value(c.handle_fast_read(now, names.call(label), r)).unwrap()
            }
            "cancel" => serde_json::to_value(c.cancel(names.call(label))).unwrap(),
            "op" => {
                let op: Op = serde_json::from_value(s["op"].clone()).expect("op");
                let (id, action) = c.op(now, op, policy.clone());
                names.bind(label, id);
                serde_json::to_value(action).unwrap()
            }
            other => panic!("unknown coordinator step {other:?}"),
        };
        let mut events = Vec::new();
        while let Some(e) = c.poll_event() {
            events.push(names.event(&e));
        }
        outputs.push(if events.is_empty() {
            json!({ "out": out })
        } else {
            json!({ "out": out, "events": events })
        });
    }
    let (calls, flights) = c.pending();
    json!({ "outputs": outputs, "stats": stats_json(&c.stats()), "pending": [calls, flights] })
}
