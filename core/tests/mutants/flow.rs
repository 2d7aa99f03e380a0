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
