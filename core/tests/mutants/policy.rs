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

/// Every unit `parse_duration_ms` documents, a leading-dot number, the bound (inclusive) and
/// what is refused.
#[test]
fn parse_duration_accepts_every_unit_and_refuses_past_the_bound() {
    use karlton_core::policy::{MAX_DURATION_MS, parse_duration_ms};
    assert_eq!(parse_duration_ms("1.5h"), Ok(5_400_000));
    assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
    assert_eq!(parse_duration_ms("3min"), Ok(180_000));
    assert_eq!(parse_duration_ms("2sec"), Ok(2_000));
    assert_eq!(parse_duration_ms(" 7ms "), Ok(7));
    assert_eq!(parse_duration_ms("0"), Ok(0), "zero is a duration");
    assert_eq!(parse_duration_ms(".5s"), Ok(500), "a leading dot with digits is a number");
    assert!(parse_duration_ms(".").is_err());
    assert!(parse_duration_ms(".s").is_err());
    assert_eq!(parse_duration_ms(&MAX_DURATION_MS.to_string()), Ok(MAX_DURATION_MS));
    assert!(parse_duration_ms(&(MAX_DURATION_MS + 1).to_string()).is_err());
    assert!(parse_duration_ms("13000d").is_err(), "a finite duration past the bound");
    assert!(parse_duration_ms(&"9".repeat(400)).is_err(), "an infinite one");
}
