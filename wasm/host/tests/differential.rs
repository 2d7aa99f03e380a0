//! Differential tests: random inputs through the wasm module and through native code give
//! byte-identical JSON. "Native" is both karlton-core called directly and the module's own
//! dispatcher compiled natively (`karlton_wasm::api::call`).
//!
//! Also writes `wasm/dist/fixtures.json` (requests and native replies) for the JS tests.

use karlton_core::entry::Entry;
use karlton_core::flow::{GetOrLoad, Input, Loaded, Request, Step};
use karlton_core::freshness::{decide_raw, jitter_reduction};
use karlton_core::key::Key;
use karlton_core::rand::SplitMix64;
use karlton_core::store::{StoreFailure, StoreOp, hex};
use karlton_core::{MemoryStore, Policy, PolicySpec};
use karlton_wasm_host::{Instance, Plugin, PolicyJson, default_module_path, parse_reply};
use serde_json::{Value, json};
use std::sync::Arc;

fn instance() -> Instance {
    Plugin::from_file(default_module_path())
        .expect("build the module first (scripts/test-wasm.sh)")
        .instantiate()
        .unwrap()
}

struct Gen(SplitMix64);

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen(SplitMix64::new(seed))
    }
    fn u(&mut self) -> u64 {
        self.0.next()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.u() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    fn string(&mut self, max: u64) -> String {
        const PARTS: &[&str] = &["a", "b", "Z", "0", "7", ":", "%", "{", "}", "#", "!", "~", "@", " ", "\u{1}", "é", "日本", "v", "v1", "-", "_", "\u{7f}"];
        (0..self.below(max + 1)).map(|_| *self.pick(PARTS)).collect()
    }
    fn json(&mut self, depth: u32) -> Value {
        match self.below(if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.chance(50)),
            2 => json!(self.below(1 << 53) as i64 - (1 << 52)),
            3 => json!((self.u() >> 11) as f64 / 1024.0),
            4 => json!(self.string(6)),
            5 => Value::Array((0..self.below(4)).map(|_| self.json(depth - 1)).collect()),
            _ => Value::Object((0..self.below(4)).map(|_| (self.string(4), self.json(depth - 1))).collect()),
        }
    }
    fn spec(&mut self) -> PolicySpec {
        let soft = 1 + self.below(10_000);
        PolicySpec {
            soft_ttl_ms: soft,
            hard_ttl_ms: Some(soft + self.below(10_000)),
            jitter: *self.pick(&[0.0, 0.1, 0.25, 0.5]),
            early_refresh: *self.pick(&[0.0, 0.5, 1.0, 2.0]),
            negative_ttl_ms: *self.pick(&[0, 500, 5_000]),
            stale_if_error_ms: *self.pick(&[0, 1_000, 60_000]),
            lease_ttl_ms: 1 + self.below(5_000),
            lock_wait_ms: self.below(2_000),
            lock_backoff_ms: vec![1 + self.below(50), 1 + self.below(200)],
            on_lock_timeout: *self.pick(&[
                karlton_core::OnLockTimeout::Load,
                karlton_core::OnLockTimeout::ServeStale,
                karlton_core::OnLockTimeout::Error,
            ]),
            load_soft_timeout_ms: if self.chance(30) { Some(1 + self.below(100)) } else { None },
            load_hard_timeout_ms: if self.chance(30) { Some(200 + self.below(1_000)) } else { None },
            on_store_error: *self.pick(&[karlton_core::OnStoreError::Load, karlton_core::OnStoreError::Error]),
            max_value_bytes: *self.pick(&[8, 1_024, karlton_core::policy::DEFAULT_MAX_VALUE_BYTES]),
        }
    }
    fn entry(&mut self) -> Entry {
        let soft = self.below(1 << 45);
        Entry {
            value: (0..self.below(40)).map(|_| self.u() as u8).collect(),
            codec: self.u() as u8,
            version: if self.chance(50) { Some(self.u()) } else { None },
            generations: (0..self.below(4)).map(|_| self.u()).collect(),
            soft_at: soft,
            hard_at: if self.chance(90) { soft + self.below(1 << 20) } else { soft.saturating_sub(1) },
            load_ms: self.below(10_000),
            negative: self.chance(20),
            tags: (0..self.below(3)).map(|_| self.string(5)).collect(),
        }
    }
}

/// The module's reply and the native dispatcher's reply to the same request, which must be
/// byte-identical; returns the reply.
fn both(k: &mut Instance, req: &str, fixtures: &mut Vec<Value>) -> String {
    let wasm = k.call_json(req).unwrap();
    let native = karlton_wasm::api::call_str(req);
    assert_eq!(wasm, native, "request {req}");
    if fixtures.len() < 4_000 {
        fixtures.push(json!({ "request": req, "reply": native }));
    }
    wasm
}

fn ok_text(reply: &str) -> &str {
    reply.strip_prefix(r#"{"ok":"#).and_then(|r| r.strip_suffix('}')).unwrap_or_else(|| panic!("not ok: {reply}"))
}

#[test]
fn keys_params_and_entries_match_native() {
    let mut k = instance();
    let mut g = Gen::new(1);
    let mut fx = Vec::new();
    for _ in 0..1_500 {
        let ns_len = if g.chance(5) { 40 } else { 6 };
        let ns = if g.chance(5) { String::new() } else { g.string(ns_len) };
        let segs: Vec<String> = (0..g.below(5))
            .map(|_| {
                let n = if g.chance(10) { 60 } else { 6 };
                g.string(n)
            })
            .collect();
        let params = if g.chance(50) { Some(g.json(3)) } else { None };
        let version = if g.chance(30) { Some(g.u() >> g.below(64)) } else { None };
        let hash_tag = g.chance(30);
        let max_len = if g.chance(20) { Some(100 + g.below(200)) } else { None };
        let tags: Vec<String> = (0..g.below(3)).map(|_| g.string(6)).collect();
        let params_json = params.as_ref().map(|p| p.to_string());
        let req = json!({
            "op": "key_build", "namespace": ns, "segments": segs, "params_json": params_json,
            "version": version.map(|v| v.to_string()), "hash_tag": hash_tag, "max_len": max_len, "tags": tags,
        })
        .to_string();
        let reply = both(&mut k, &req, &mut fx);
        // Against the core directly.
        let native = (|| {
            let mut key = Key::new(&ns)?.segments(&segs);
            if let Some(p) = &params_json {
                key = key.params_json(p)?;
            }
            if let Some(v) = version {
                key = key.version(v);
            }
            key = key.hash_tag(hash_tag);
            if let Some(n) = max_len {
                key = key.max_len(n as usize)?;
            }
            Ok::<_, karlton_core::key::KeyError>(key)
        })();
        match native {
            Ok(key) => {
                let v: Value = serde_json::from_str(ok_text(&reply)).unwrap();
                assert_eq!(v["key"], key.build());
                assert_eq!(v["generation_key"], key.generation_key());
                let tk: Vec<String> = tags.iter().map(|t| key.tag_key(t)).collect();
                assert_eq!(v["tag_keys"], json!(tk));
            }
            Err(e) => assert!(reply.contains(&serde_json::to_string(&e.to_string()).unwrap()), "{reply} vs {e}"),
        }
        if let Some(p) = &params {
            let req = json!({"op": "params_hash", "params": p}).to_string();
            both(&mut k, &req, &mut fx);
        }
    }
    for _ in 0..1_500 {
        let e = g.entry();
        let req = json!({"op": "entry_encode", "entry": e}).to_string();
        let reply = both(&mut k, &req, &mut fx);
        let want = hex::encode(&e.encode());
        assert_eq!(ok_text(&reply), serde_json::to_string(&want).unwrap());
        // Decode the bytes back, and a damaged copy.
        let mut bytes = e.encode();
        let req = json!({"op": "entry_decode", "hex": hex::encode(&bytes)}).to_string();
        let reply = both(&mut k, &req, &mut fx);
        if let Ok(d) = Entry::decode(&bytes) {
            assert_eq!(ok_text(&reply), serde_json::to_string(&d).unwrap());
        }
        if !bytes.is_empty() {
            let i = g.below(bytes.len() as u64) as usize;
            match g.below(3) {
                0 => bytes[i] ^= 1 << g.below(8),
                1 => bytes.truncate(i),
                _ => bytes.push(g.u() as u8),
            }
            let req = json!({"op": "entry_decode", "hex": hex::encode(&bytes)}).to_string();
            both(&mut k, &req, &mut fx);
        }
    }
    write_fixtures("keys_entries", fx);
}

#[test]
fn decisions_and_jitter_match_native() {
    let mut k = instance();
    let mut g = Gen::new(2);
    let mut fx = Vec::new();
    for i in 0..20_000 {
        let soft = g.below(1 << 40);
        let hard = soft + g.below(100_000);
        let now = soft.saturating_sub(50_000) + g.below(200_000);
        let load = if g.chance(20) { 0 } else { g.below(20_000) };
        let beta = *g.pick(&[0.0, 0.5, 1.0, 3.0, 100.0]);
        let sie = *g.pick(&[0, 1_000, 100_000]);
        let rand = g.u();
        let spec = PolicySpec { early_refresh: beta, stale_if_error_ms: sie, ..Default::default() };
        let policy = Policy::new(spec).unwrap();
        let want = decide_raw(now, soft, hard, load, &policy, rand);
        let got = k.decide(now, soft, hard, load, beta, sie, rand).unwrap();
        assert_eq!(got.to_core(), want, "now {now} soft {soft} hard {hard} load {load} beta {beta} rand {rand}");
        assert_eq!(karlton_wasm::api::decide_code(now, soft, hard, load, beta, sie, rand), k.decide_code(now, soft, hard, load, beta, sie, rand).unwrap());
        let ttl = g.below(1 << 40);
        let ppm = g.below(1_000_000);
        assert_eq!(k.jitter(ttl, ppm, rand).unwrap(), ttl - jitter_reduction(ttl, ppm, rand));
        if i % 10 == 0 {
            let req = json!({"op": "decide", "now_ms": now, "soft_at": soft, "hard_at": hard, "load_ms": load,
                "policy": policy, "rand": rand.to_string()}).to_string();
            let reply = both(&mut k, &req, &mut fx);
            assert_eq!(ok_text(&reply), serde_json::to_string(&want).unwrap());
            let req = json!({"op": "jittered_ttls", "policy": g.spec(), "rand": rand.to_string()}).to_string();
            both(&mut k, &req, &mut fx);
        }
    }
    write_fixtures("decisions", fx);
}

/// One random get_or_load scenario driven natively and through the module step by step; every
/// step must serialize identically. Several flows interleave on one store.
#[test]
fn flows_match_native_step_by_step() {
    let mut k = instance();
    k.record();
    let mut g = Gen::new(3);
    let mut fx = Vec::new();
    for scenario in 0..300 {
        if scenario == 20 {
            // The first scenarios, as a sequence of requests and replies from a fresh
            // instance: the JS tests replay it in V8 and must get the same bytes.
            fx = k.take_recording().into_iter().map(|(q, r)| json!({ "request": q, "reply": r })).collect();
        }
        let spec = g.spec();
        let policy = Arc::new(Policy::new(spec.clone()).unwrap());
        let pj = PolicyJson::from_policy(&policy);
        let native_store = MemoryStore::default();
        let wasm_store = k.store_create().unwrap();
        let mut now = 1_000_000 + g.below(1 << 30);
        for call in 0..12 {
            let req = Request {
                key: format!("k{}", g.below(3)),
                gen_keys: if g.chance(30) { vec!["ns:!gen".into()] } else { vec![] },
                tags: vec![],
            };
            let seed = g.u();
            let mut native = GetOrLoad::new(req.clone(), policy.clone(), seed);
            let flow = k.flow_create(&req, &pj, seed).unwrap();
            let mut step = native.start(now);
            let wstep = k.flow_start(flow, now, None).unwrap();
            assert_eq!(serde_json::to_string(&wstep).unwrap(), serde_json::to_string(&step).unwrap());
            for _ in 0..40 {
                let input = match &step {
                    Step::Done(_) => break,
                    Step::Store(op) => {
                        if g.chance(5) {
                            Input::StoreFailed(StoreFailure { message: "down".into() })
                        } else {
                            // Sometimes another writer interferes between steps.
                            if g.chance(5) {
                                let inv = karlton_core::flow::invalidate_op(&req.key, karlton_core::InvalidateMode::MarkStale);
                                native_store.apply(now, &inv);
                                k.store_apply(wasm_store, now, &inv).unwrap();
                            }
                            let r = native_store.apply(now, op);
                            let wr = k.store_apply(wasm_store, now, op).unwrap();
                            assert_eq!(serde_json::to_string(&wr).unwrap(), serde_json::to_string(&r).unwrap());
                            Input::Store(r)
                        }
                    }
                    Step::Load { timeout_at } => {
                        now += g.below(300);
                        match timeout_at {
                            Some(t) if now >= *t => Input::Timeout,
                            _ if g.chance(15) => Input::LoadFailed("boom".into()),
                            _ => Input::Loaded(Loaded {
                                value: format!("\"v{call}\"").into_bytes().into(),
                                codec: 1,
                                negative: g.chance(10),
                                version: if g.chance(50) { Some(call) } else { None },
                            }),
                        }
                    }
                    Step::Wait { until_ms } => {
                        now = (*until_ms).max(now);
                        Input::Timeout
                    }
                    Step::Serve(_) => Input::Continue,
                };
                step = native.handle(now, input.clone());
                let wstep = k.flow_handle(flow, now, &input, None).unwrap();
                let (a, b) = (serde_json::to_string(&wstep).unwrap(), serde_json::to_string(&step).unwrap());
                assert_eq!(a, b, "scenario {scenario} call {call}");
            }
            let stats = k.flow_drop(flow).unwrap();
            assert_eq!(&stats, native.stats());
            let gap = if g.chance(50) { 100 } else { 20_000 };
            now += g.below(gap);
        }
        k.store_drop(wasm_store).unwrap();
    }
    // The in-module store path (`store` given) ends on the same non-store step as the native
    // run_store_steps.
    let s = k.store_create().unwrap();
    let native_store = MemoryStore::default();
    let policy = Arc::new(Policy::new(PolicySpec { soft_ttl_ms: 1_000, hard_ttl_ms: Some(5_000), ..Default::default() }).unwrap());
    let pj = PolicyJson::from_policy(&policy);
    for i in 0..200u64 {
        let now = 1_000 + i * 97;
        let req = Request { key: format!("k{}", i % 4), gen_keys: vec![], tags: vec![] };
        let mut native = GetOrLoad::new(req.clone(), policy.clone(), i);
        let first = native.start(now);
        let mut step = native.run_store_steps(now, first, |op| Ok(native_store.apply(now, op)));
        let f = k.flow_create(&req, &pj, i).unwrap();
        let mut wstep = k.flow_start(f, now, Some(s)).unwrap();
        loop {
            assert_eq!(serde_json::to_string(&wstep).unwrap(), serde_json::to_string(&step).unwrap());
            let input = match &step {
                Step::Done(_) => break,
                Step::Load { .. } => Input::Loaded(Loaded { value: b"1".to_vec().into(), codec: 1, negative: false, version: None }),
                Step::Serve(_) => Input::Continue,
                Step::Wait { .. } => Input::Timeout,
                Step::Store(_) => unreachable!("store steps run inside"),
            };
            let next = native.handle(now, input.clone());
            step = native.run_store_steps(now, next, |op| Ok(native_store.apply(now, op)));
            wstep = k.flow_handle(f, now, &input, Some(s)).unwrap();
        }
        k.flow_drop(f).unwrap();
    }
    write_fixtures("flows", fx);
}

#[test]
fn write_ops_match_native() {
    let mut k = instance();
    let mut g = Gen::new(4);
    let mut fx = Vec::new();
    for _ in 0..300 {
        let w = json!({"key": g.string(8), "gen_keys": ["g"], "tags": [g.string(3)], "value": hex::encode(&g.entry().value),
            "codec": 1, "version": if g.chance(50) { json!(g.below(1000)) } else { Value::Null }});
        let req = json!({"op": "set_op", "write": w, "policy": g.spec(), "store_now": g.below(1 << 40), "rand": g.u().to_string()}).to_string();
        let reply = both(&mut k, &req, &mut fx);
        let _: StoreOp = parse_reply(reply.as_bytes()).unwrap();
        let req = json!({"op": "invalidate_op", "key": g.string(8), "mode": g.pick(&["delete", "mark_stale"])}).to_string();
        both(&mut k, &req, &mut fx);
        let req = json!({"op": "bump_op", "gen_key": g.string(8), "rand": g.u().to_string()}).to_string();
        both(&mut k, &req, &mut fx);
        let req = json!({"op": "policy", "policy": g.spec()}).to_string();
        both(&mut k, &req, &mut fx);
    }
    write_fixtures("writes", fx);
}

fn write_fixtures(name: &str, fx: Vec<Value>) {
    let dir = default_module_path().parent().unwrap().to_path_buf();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("fixtures-{name}.json"));
    std::fs::write(&path, serde_json::to_string(&fx).unwrap()).unwrap();
}
