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
