//! Survivors of `core/src/flow.rs`.

use karlton_core::FlowError;

/// `FlowError::kind` is the name its wire form (serde tag `error`) gives it, for every variant:
/// hosts map errors by it.
#[test]
fn flow_error_kind_is_its_wire_name() {
    let all = [
        FlowError::Load("x".into()),
        FlowError::LoadTimeout(1),
        FlowError::LockTimeout(2),
        FlowError::Store("s".into()),
        FlowError::Protocol("p".into()),
        FlowError::Reentrant("k".into()),
    ];
    let names: Vec<&str> = all.iter().map(FlowError::kind).collect();
    assert_eq!(names, ["load", "load_timeout", "lock_timeout", "store", "protocol", "reentrant"]);
    for e in &all {
        assert_eq!(serde_json::to_value(e).unwrap()["error"], e.kind());
    }
}

/// A flow answers the policy it was built with (the coordinator's fast read decides with it).
#[test]
fn get_or_load_keeps_its_policy() {
    use karlton_core::{GetOrLoad, Policy, PolicySpec, Request};
    use std::sync::Arc;
    let p = Arc::new(
        Policy::new(PolicySpec {
            soft_ttl_ms: 4_321,
            ..PolicySpec::default()
        })
        .unwrap(),
    );
    let req = Request {
        key: "k".into(),
        gen_keys: vec![],
        tags: vec![],
    };
    let flow = GetOrLoad::new(req, p.clone(), 1);
    assert_eq!(flow.policy(), &*p);
}

/// The memory fresh-hit fast path answers a valid fresh entry (`fast_hit` also counts it).
#[test]
fn memory_fresh_hit_and_fast_hit_answer_a_fresh_entry() {
    use karlton_core::flow::{Write, fast_hit, memory_fresh_hit, set_op};
    use karlton_core::{AtomicStats, MemoryStore, MemoryStoreConfig, Policy, PolicySpec};
    let p = Policy::new(PolicySpec {
        soft_ttl_ms: 1_000,
        jitter: 0.0,
        ..PolicySpec::default()
    })
    .unwrap();
    let s = MemoryStore::new(MemoryStoreConfig::default());
    let w = Write {
        key: "k".into(),
        gen_keys: vec![],
        tags: vec![],
        value: b"\"v\"".to_vec().into(),
        codec: 1,
        version: None,
    };
    s.apply(0, &set_op(&w, &p, 0, 1));
    let hit = memory_fresh_hit(&s, 1, "k", &[], &p, 1).expect("fresh");
    assert_eq!(&hit.value[..], b"\"v\"");
    let stats = AtomicStats::default();
    let hit = fast_hit(&s, 2, "k", &[], &p, 1, &stats).expect("fresh");
    assert_eq!(&hit.value[..], b"\"v\"");
    assert_eq!(stats.snapshot().hits_fresh, 1);
    assert!(memory_fresh_hit(&s, 1_000, "k", &[], &p, 1).is_none(), "stale at soft_at");
}
