//! The module's ABI: zero imports, the exports and their signatures, and malformed input that
//! must come back as an error reply — never a trap — with the instance still usable after.

use karlton_wasm_host::{Decision, HostError, Instance, Plugin, default_module_path, parse_reply};
use serde_json::Value;

fn plugin() -> Plugin {
    let path = default_module_path();
    Plugin::from_file(&path)
        .unwrap_or_else(|e| panic!("{e} — build the module first (scripts/test-wasm.sh)"))
}

/// The import section, parsed from the bytes themselves (independent of wasmtime).
fn import_count(bytes: &[u8]) -> usize {
    assert_eq!(&bytes[..8], b"\0asm\x01\0\0\0", "not a wasm module");
    let leb = |b: &[u8], i: &mut usize| {
        let (mut r, mut s) = (0u64, 0);
        loop {
            let x = b[*i];
            *i += 1;
            r |= u64::from(x & 0x7f) << s;
            s += 7;
            if x < 0x80 {
                return r as usize;
            }
        }
    };
    let mut i = 8;
    while i < bytes.len() {
        let id = bytes[i];
        i += 1;
        let size = leb(bytes, &mut i);
        if id == 2 {
            let mut j = i;
            return leb(bytes, &mut j);
        }
        i += size;
    }
    0
}

#[test]
fn module_has_zero_imports() {
    let bytes = std::fs::read(default_module_path()).expect("module built");
    assert_eq!(import_count(&bytes), 0, "the import section must be empty or absent");
    assert_eq!(plugin().imports(), Vec::<String>::new());
}

#[test]
fn exports_the_versioned_abi() {
    let p = plugin();
    let ex = p.exports();
    for name in [
        "memory",
        "karlton_abi_version",
        "karlton_alloc",
        "karlton_free",
        "karlton_decide",
        "karlton_jitter",
        "karlton_call",
    ] {
        assert!(ex.iter().any(|e| e == name), "missing export {name}: {ex:?}");
    }
    // instantiate() checks every signature and the ABI version.
    let mut k = p.instantiate().unwrap();
    let v: Value = parse_reply(&k.call_bytes(br#"{"op":"version"}"#).unwrap()).unwrap();
    assert_eq!(v["abi"], 1);
}

fn code(k: &mut Instance, reply: Vec<u8>) -> String {
    alive(k);
    match parse_reply::<Value>(&reply) {
        Err(HostError::Call { code, .. }) => code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn alive(k: &mut Instance) {
    let r = k.call_json(r#"{"op":"version"}"#).expect("instance still usable");
    assert!(r.starts_with(r#"{"ok":{"abi":1"#), "{r}");
    assert_eq!(k.decide(5, 10, 20, 0, 0.0, 0, 0).unwrap(), Decision::Fresh);
}

#[test]
fn malformed_pointers_and_lengths_are_errors() {
    let mut k = plugin().instantiate().unwrap();
    let mem = k.memory_size() as u32;
    for (p, l) in [(0, 0), (0, 10), (8, 8), (mem - 4, 100), (mem, 1), (u32::MAX, u32::MAX), (u32::MAX, 1)] {
        let r = k.raw_call(p, l).unwrap();
        assert_eq!(code(&mut k, r), "bad_input", "ptr {p} len {l}");
    }
    let b = k.raw_alloc(16).unwrap();
    assert_ne!(b, 0);
    k.write_memory(b, br#"{"op":"version"}"#).unwrap();
    let r = k.raw_call(b, 16).unwrap();
    assert!(r.starts_with(b"{\"ok\":"));
    // Overrunning the block by one byte, or starting before it.
    let r = k.raw_call(b + 1, 16).unwrap();
    assert_eq!(code(&mut k, r), "bad_input");
    let r = k.raw_call(b - 1, 4).unwrap();
    assert_eq!(code(&mut k, r), "bad_input");
    // Free: only live blocks with their exact length; double free is ignored.
    assert_eq!(k.raw_free(b, 15).unwrap(), 0);
    assert_eq!(k.raw_free(b + 8, 8).unwrap(), 0);
    assert_eq!(k.raw_free(12345, 3).unwrap(), 0);
    assert_eq!(k.raw_free(b, 16).unwrap(), 1);
    assert_eq!(k.raw_free(b, 16).unwrap(), 0);
    let r = k.raw_call(b, 16).unwrap();
    assert_eq!(code(&mut k, r), "bad_input", "a freed block is not input");
    // Zero and absurd allocations fail with 0, not a trap.
    assert_eq!(k.raw_alloc(0).unwrap(), 0);
    assert_eq!(k.raw_alloc(u32::MAX).unwrap(), 0);
    alive(&mut k);
}

#[test]
fn malformed_requests_are_errors() {
    let mut k = plugin().instantiate().unwrap();
    let cases: &[(&[u8], &str)] = &[
        (b"", "json"),
        (b"\xff\xfe{}", "utf8"),
        (b"{\"op\":\"version\"\xc3}", "utf8"),
        (b"not json", "json"),
        (b"{\"op\":\"version\"", "json"),
        (b"[1,2]", "json"),
        (b"{\"op\":5}", "json"),
        (b"{}", "json"),
        (b"{\"op\":\"nope\"}", "unknown_op"),
        (b"{\"op\":\"decide\"}", "bad_request"),
        (b"{\"op\":\"decide\",\"now_ms\":-1,\"soft_at\":1,\"hard_at\":2,\"policy\":{},\"rand\":0}", "bad_request"),
        (b"{\"op\":\"decide\",\"now_ms\":\"12x\",\"soft_at\":1,\"hard_at\":2,\"policy\":{},\"rand\":0}", "bad_request"),
        (b"{\"op\":\"decide\",\"now_ms\":1,\"soft_at\":1,\"hard_at\":2,\"policy\":{\"soft_ttl_ms\":0},\"rand\":0}", "policy"),
        (b"{\"op\":\"flow_start\",\"flow\":999,\"now_ms\":0}", "unknown_handle"),
        (b"{\"op\":\"flow_drop\",\"flow\":999}", "unknown_handle"),
        (b"{\"op\":\"store_apply\",\"store\":999,\"now_ms\":0,\"store_op\":{\"op\":\"bump\",\"gen_key\":\"g\",\"value\":1}}", "unknown_handle"),
        (b"{\"op\":\"store_apply\",\"store\":1,\"now_ms\":0,\"store_op\":{\"op\":\"explode\"}}", "bad_request"),
        (b"{\"op\":\"entry_decode\",\"hex\":\"zz\"}", "bad_request"),
        (b"{\"op\":\"entry_decode\",\"hex\":\"00\"}", "entry_decode"),
        (b"{\"op\":\"key_build\",\"namespace\":\"\"}", "key"),
        (b"{\"op\":\"key_build\",\"namespace\":\"n\",\"params_json\":\"{\"}", "key"),
        (b"{\"op\":\"policy\",\"policy_json\":\"{\\\"soft_ttl_ms\\\":5,\\\"hard_ttl_ms\\\":1}\"}", "policy"),
        // The coordinator: missing seed, unknown handles and ops, bad forms.
        (b"{\"op\":\"coord_create\"}", "bad_request"),
        (b"{\"op\":\"coord_create\",\"seed\":-3}", "bad_request"),
        (b"{\"op\":\"coord_create\",\"seed\":1,\"fast_read\":\"yes\"}", "bad_request"),
        (b"{\"op\":\"coord_stats\",\"coord\":999}", "unknown_handle"),
        (b"{\"op\":\"coord_drop\",\"coord\":999}", "unknown_handle"),
        (b"{\"op\":\"coord_get_or_load\",\"coord\":999,\"now_ms\":0,\"request\":{\"key\":\"k\"},\"policy\":{}}", "unknown_handle"),
        (b"{\"op\":\"coord_explode\",\"coord\":1}", "unknown_op"),
        (b"{\"op\":\"coord_handle\",\"coord\":\"one\",\"now_ms\":0,\"call\":1}", "bad_request"),
    ];
    for (req, want) in cases {
        let r = k.call_bytes(req).unwrap();
        assert_eq!(code(&mut k, r), *want, "request {:?}", String::from_utf8_lossy(req));
    }
    // Errors carry stable details.
    let r = k.call_json(r#"{"op":"key_build","namespace":""}"#).unwrap();
    assert_eq!(r, r#"{"error":{"code":"key","message":"key namespace must not be empty","detail":{"kind":"empty_namespace"}}}"#);
    // Out-of-range beta on the scalar path is a code, not a trap.
    assert!(matches!(k.decide(0, 1, 2, 5, f64::NAN, 0, 0), Err(HostError::Call { .. })));
    assert!(matches!(k.decide(0, 1, 2, 5, -1.0, 0, 0), Err(HostError::Call { .. })));
    alive(&mut k);
}

/// Issue 9: params sent inline are read as they are alone — the request object takes no nesting
/// level from them — and a too-deep member is refused at its turn, naming itself, not as a
/// syntax error of the whole request; key_build checks its arguments in the one order of
/// docs/value-model.md (namespace, segments, params, version, hash_tag, max_len, tags).
#[test]
fn inline_params_nest_as_deep_as_params_json_and_key_arguments_are_checked_in_order() {
    let mut k = plugin().instantiate().unwrap();
    let nest = |d: usize| format!("{}{}", r#"{"k":["#.repeat(d / 2), "]}".repeat(d / 2));
    for depth in [2usize, 126, 128, 130, 5000] {
        let p = nest(depth);
        let text = serde_json::to_string(&p).unwrap();
        let inline = k.call_json(&format!(r#"{{"op":"params_hash","params":{p}}}"#)).unwrap();
        let as_text = k.call_json(&format!(r#"{{"op":"params_hash","params_json":{text}}}"#)).unwrap();
        assert_eq!(inline, as_text, "depth {depth}");
        let key = k.call_json(&format!(r#"{{"op":"key_build","namespace":"n","params":{p},"version":1}}"#)).unwrap();
        if depth <= 128 {
            assert!(inline.starts_with(r#"{"ok":"#) && key.starts_with(r#"{"ok":"#), "depth {depth}: {inline} {key}");
        } else {
            assert!(key.contains(r#""code":"key""#) && key.contains(r#""kind":"invalid_json""#), "depth {depth}: {key}");
            // a too-deep member read as a value (not as raw text) is refused naming it
            let r = k.call_json(&format!(r#"{{"op":"key_build","namespace":"n","segments":{p}}}"#)).unwrap();
            assert!(r.contains(r#""code":"bad_request""#) && r.contains("`segments` is nested deeper than 128 levels"), "{r}");
        }
    }
    alive(&mut k);
    // The first bad argument in the one order is reported, whatever else is wrong after it.
    let first = |k: &mut Instance, req: &str| -> String {
        let r: Value = serde_json::from_str(&k.call_json(req).unwrap()).unwrap();
        format!("{} {}", r["error"]["code"].as_str().unwrap(), r["error"]["detail"]["kind"].as_str().unwrap_or(""))
    };
    let deep = nest(200);
    assert_eq!(first(&mut k, r#"{"op":"key_build","namespace":"","segments":[5],"max_len":1}"#), "key empty_namespace");
    assert_eq!(first(&mut k, &format!(r#"{{"op":"key_build","namespace":"","params":{deep}}}"#)), "key empty_namespace");
    assert_eq!(first(&mut k, &format!(r#"{{"op":"key_build","namespace":"n","params":{deep},"version":-1}}"#)), "key invalid_json");
    assert_eq!(first(&mut k, r#"{"op":"key_build","namespace":"n","version":-1,"max_len":1}"#), "bad_request ");
    assert_eq!(first(&mut k, r#"{"op":"key_build","namespace":"n","max_len":1,"tags":[5]}"#), "key max_len_too_small");
}

#[test]
fn handles_live_until_dropped_and_flows_reject_unexpected_input() {
    let mut k = plugin().instantiate().unwrap();
    let s = k.store_create().unwrap();
    let f: u32 = parse_reply(&k.call_bytes(br#"{"op":"flow_create","request":{"key":"k"},"policy":{},"seed":7}"#).unwrap()).unwrap();
    // An input the flow did not ask for: a protocol error step, not a trap.
    let r = k.call_json(&format!(r#"{{"op":"flow_handle","flow":{f},"now_ms":0,"input":{{"input":"continue"}}}}"#)).unwrap();
    assert!(r.starts_with(r#"{"ok":{"step":"done","data":{"Err":{"error":"protocol""#), "{r}");
    k.flow_drop(f).unwrap();
    let r = k.call_json(&format!(r#"{{"op":"flow_drop","flow":{f}}}"#)).unwrap();
    assert_eq!(code(&mut k, r.into_bytes()), "unknown_handle");
    k.store_drop(s).unwrap();
    assert!(k.store_drop(s).is_err());
    // Handles are not reused.
    let s2 = k.store_create().unwrap();
    assert!(s2 > f && s2 > s);
}

#[test]
fn coordinators_live_until_dropped_and_reject_malformed_input() {
    let mut k = plugin().instantiate().unwrap();
    let c: u32 = parse_reply(&k.call_bytes(br#"{"op":"coord_create","seed":"18446744073709551615"}"#).unwrap()).unwrap();
    let s = k.store_create().unwrap();
    let req = |k: &mut Instance, body: &str| k.call_json(&format!(r#"{{"op":"coord_{body},"coord":{c}}}"#)).unwrap();
    // Malformed forms are bad_request replies and leave no call behind.
    for body in [
        r#"get_or_load","now_ms":0,"request":{"key":5},"policy":{}"#,
        r#"get_or_load","now_ms":0,"request":{"key":"k"},"policy":{"soft_ttl_ms":0}"#,
        r#"get_or_load_replacing","now_ms":0,"request":{"key":"k"},"policy":{},"served":{"value":"zz"}"#,
        r#"handle","now_ms":0,"call":1,"input":{"input":"nope"}"#,
        r#"handle_fast_read","now_ms":0,"call":1,"replies":[{"Int":"x"}]"#,
        r#"handle_fast_read","now_ms":0,"call":1,"replies":[],"error":"both"}"#,
        r#"op","now_ms":0,"call_op":{"op":"explode"},"policy":{}"#,
        r#"op","now_ms":0,"call_op":{"op":"invalidate","key":"k"},"policy":{}"#,
        r#"report_undecodable","served":{}"#,
        r#"memory_hit","now_ms":0,"key":"k","policy":{}"#,
    ] {
        let r = req(&mut k, body);
        assert!(r.starts_with(r#"{"error":{"code":""#), "{body}: {r}");
    }
    assert_eq!(req(&mut k, r#"pending""#), r#"{"ok":[0,0]}"#);
    // Unknown calls are protocol errors from the core, never traps.
    let r = req(&mut k, r#"handle","now_ms":0,"call":"18446744073709551615","input":{"input":"timeout"}"#);
    assert!(r.starts_with(r#"{"ok":{"action":"answer","data":{"Err":{"error":"protocol""#), "{r}");
    assert_eq!(req(&mut k, r#"cancel","call":77"#), r#"{"ok":null}"#);
    // A whole call against the in-module store: miss, load, fill (inline), then a memory hit.
    let t = req(&mut k, &format!(r#"get_or_load","now_ms":1,"request":{{"key":"k"}},"policy":{{}},"store":{s}"#));
    assert!(t.contains(r#""ticket":"lead","call":1,"action":{"action":"start_load""#), "{t}");
    let a = req(&mut k, &format!(r#"handle","now_ms":2,"call":1,"input":{{"input":"loaded","data":{{"value":"2231","codec":1,"negative":false,"version":null}}}},"store":{s}"#));
    assert!(a.starts_with(r#"{"ok":{"action":"answer","data":{"Ok":{"reply":"value","data":{"value":"2231""#), "{a}");
    let hit = req(&mut k, &format!(r#"memory_hit","now_ms":3,"key":"k","policy":{{}},"store":{s}"#));
    assert!(hit.contains(r#""source":"fresh""#), "{hit}");
    assert_eq!(req(&mut k, r#"events""#), r#"{"ok":[]}"#);
    assert_eq!(req(&mut k, r#"poll_event""#), r#"{"ok":null}"#);
    let st: Value = parse_reply(req(&mut k, r#"stats""#).as_bytes()).unwrap();
    assert_eq!((st["misses"].as_u64(), st["loads"].as_u64(), st["hits_fresh"].as_u64()), (Some(1), Some(1), Some(1)));
    assert_eq!(req(&mut k, r#"pending""#), r#"{"ok":[0,0]}"#);
    // Freed explicitly; the handle is gone afterwards and not reused.
    let dropped: Value = parse_reply(req(&mut k, r#"drop""#).as_bytes()).unwrap();
    assert_eq!(dropped, st);
    let gone = req(&mut k, r#"stats""#);
    assert_eq!(code(&mut k, gone.into_bytes()), "unknown_handle");
    let c2: u32 = parse_reply(&k.call_bytes(br#"{"op":"coord_create","seed":1}"#).unwrap()).unwrap();
    assert!(c2 > c && c2 > s);
    alive(&mut k);
}

#[test]
fn many_calls_do_not_leak_or_grow_memory_without_bound() {
    let mut k = plugin().instantiate().unwrap();
    let s = k.store_create().unwrap();
    let before = k.memory_size();
    for i in 0..20_000u64 {
        let r = k
            .call_json(&format!(
                r#"{{"op":"get_or_load","store":{s},"request":{{"key":"k{}"}},"policy":{{"soft_ttl_ms":1000}},"seed":{i},"now_ms":{i}}}"#,
                i % 7
            ))
            .unwrap();
        let v: Value = parse_reply(r.as_bytes()).unwrap();
        if let Some(f) = v["flow"].as_u64() {
            k.flow_drop(f as u32).unwrap();
        }
    }
    assert!(k.memory_size() <= before + (1 << 20), "{} -> {}", before, k.memory_size());
}
