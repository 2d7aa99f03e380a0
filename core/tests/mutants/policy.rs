//! Survivors of `core/src/policy.rs`.

use karlton_core::{Policy, PolicySpec};

/// `TryFrom<PolicySpec>` is `Policy::new`: the spec's own values, and its errors.
#[test]
fn try_from_a_spec_is_policy_new() {
    let spec = PolicySpec {
        soft_ttl_ms: 1_234,
        hard_ttl_ms: Some(5_678),
        ..PolicySpec::default()
    };
    let p = Policy::try_from(spec.clone()).unwrap();
    assert_eq!(p, Policy::new(spec).unwrap());
    assert_eq!((p.soft_ttl_ms(), p.hard_ttl_ms()), (1_234, 5_678));
    let bad = PolicySpec {
        soft_ttl_ms: 10,
        hard_ttl_ms: Some(5),
        ..PolicySpec::default()
    };
    assert!(Policy::try_from(bad).is_err());
}
