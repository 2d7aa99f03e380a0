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

/// `load_timeouts_given` is whether the policy sets either load timeout itself (a threads host
/// then runs the loader on a pool so the caller is answered at the deadline), and the default
/// hard timeout applies otherwise: 30 s past the soft timeout, or 30 s.
#[test]
fn load_timeouts_given_is_whether_either_timeout_is_set() {
    let p = |soft: Option<u64>, hard: Option<u64>| {
        Policy::new(PolicySpec { load_soft_timeout_ms: soft, load_hard_timeout_ms: hard, ..PolicySpec::default() }).unwrap()
    };
    let cases = [(None, None, false, 30_000), (Some(100), None, true, 30_100), (None, Some(200), true, 200), (Some(100), Some(200), true, 200)];
    for (soft, hard, given, effective) in cases {
        let policy = p(soft, hard);
        assert_eq!(policy.load_timeouts_given(), given, "{soft:?} {hard:?}");
        assert_eq!(policy.load_hard_timeout_ms(), effective, "{soft:?} {hard:?}");
    }
}
