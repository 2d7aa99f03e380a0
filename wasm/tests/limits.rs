//! The module's tables are bounded (issue 11): a host that leaks handles or request blocks gets
//! an error reply / a 0 pointer, never unbounded growth. One test: the tables are per instance
//! (a global of this test binary), so the cases run in order.

use karlton_wasm::api::{self, MAX_BLOCKS, MAX_HANDLES};
use serde_json::Value;

fn call(req: &str) -> Value {
    serde_json::from_str(&api::call_str(req)).unwrap()
}

#[test]
fn handle_tables_and_blocks_are_bounded_and_recover_when_freed() {
    // Flows: MAX_HANDLES live ones, then a clear error; dropping one makes room again.
    let create = r#"{"op":"flow_create","request":{"key":"k"},"policy":{"soft_ttl_ms":1000},"seed":"1"}"#;
    let mut handles = Vec::new();
    for _ in 0..MAX_HANDLES {
        let r = call(create);
        handles.push(r["ok"].as_u64().unwrap_or_else(|| panic!("{r}")));
    }
    let over = call(create);
    assert_eq!(over["error"]["code"], "too_many_handles", "{over}");
    assert!(over["error"]["message"].as_str().unwrap().contains("flow"));
    let drop = format!(r#"{{"op":"flow_drop","flow":{}}}"#, handles[7]);
    assert!(call(&drop).get("ok").is_some());
    assert!(call(create).get("ok").is_some(), "room again after a drop");
    // Other kinds have their own bound (a full flow table does not block a store).
    assert!(call(r#"{"op":"store_create"}"#).get("ok").is_some());

    // Blocks: MAX_BLOCKS live, then karlton_alloc answers 0; a free makes room.
    let blocks: Vec<usize> = (0..MAX_BLOCKS).map(|_| api::alloc(16)).collect();
    assert!(blocks.iter().all(|&p| p != 0));
    assert_eq!(api::alloc(16), 0, "the block table is full");
    assert!(api::free(blocks[3], 16));
    assert!(!api::free(blocks[3], 16), "a block is freed once");
    let again = api::alloc(16);
    assert_ne!(again, 0);
    for &p in blocks.iter().filter(|&&p| p != blocks[3]).chain([&again]) {
        assert!(api::free(p, 16));
    }
}
