//! No overflow in core (issue 9): every public function that takes a clock, a duration, a
//! random draw or a length is run on boundary values (0, 1, 2^53 ± 1, 2^63, u64::MAX) and its
//! documented result is asserted. Debug builds panic on overflow, so running this file under
//! `cargo test` proves there is none on these paths; `scripts/test.sh` also runs it with
//! `--release`, where an unchecked overflow would wrap and fail an assertion instead.

use karlton_core::entry::Entry;
use karlton_core::flow::{self, GetOrLoad, Input, Loaded, Request, Step, Write};
use karlton_core::freshness::{self, Decision, Freshness};
use karlton_core::memory::{MemoryStore, MemoryStoreConfig};
use karlton_core::policy::{MAX_DURATION_MS, Policy, PolicySpec};
use karlton_core::store::{LeaseMode, StoreOp};
use std::sync::Arc;

const EDGES: [u64; 9] = [0, 1, 2, (1 << 53) - 1, 1 << 53, (1 << 53) + 1, 1 << 63, u64::MAX - 1, u64::MAX];

/// The longest policy the core accepts: every duration at its maximum.
fn longest() -> Policy {
    Policy::new(PolicySpec {
        soft_ttl_ms: MAX_DURATION_MS,
        hard_ttl_ms: Some(MAX_DURATION_MS),
        jitter: 0.999_999,
        early_refresh: 100.0,
        negative_ttl_ms: MAX_DURATION_MS,
        stale_if_error_ms: MAX_DURATION_MS,
        lock_wait_ms: MAX_DURATION_MS,
        lock_backoff_ms: vec![MAX_DURATION_MS],
        load_soft_timeout_ms: Some(MAX_DURATION_MS - 1),
        load_hard_timeout_ms: Some(MAX_DURATION_MS),
        ..PolicySpec::default()
    })
    .expect("every field at its documented maximum is a valid policy")
}

#[test]
fn freshness_classifies_every_boundary_instant_without_overflow() {
    for &now in &EDGES {
        for &soft in &EDGES {
            for &hard in EDGES.iter().filter(|&&h| h >= soft) {
                for &sie in &EDGES {
                    let f = freshness::freshness(now, soft, hard, sie);
                    let want = if now < soft {
                        Freshness::Fresh
                    } else if now < hard {
                        Freshness::Stale
                    } else if u128::from(now) < u128::from(hard) + u128::from(sie) && hard.checked_add(sie).is_some() {
                        Freshness::UsableOnError
                    } else if hard.checked_add(sie).is_none() {
                        // hard + stale_if_error saturates at u64::MAX: usable until the end of time.
                        if now < u64::MAX { Freshness::UsableOnError } else { Freshness::Gone }
                    } else {
                        Freshness::Gone
                    };
                    assert_eq!(f, want, "now={now} soft={soft} hard={hard} sie={sie}");
                }
            }
        }
    }
}

#[test]
fn xfetch_and_decide_never_overflow_and_never_refresh_past_soft() {
    let p = longest();
    for &now in &EDGES {
        for &soft in &EDGES {
            for &load in &EDGES {
                for &rand in &EDGES {
                    let early = freshness::xfetch(now, soft, load, 100.0, rand);
                    if now >= soft || load == 0 {
                        assert!(!early, "xfetch refreshes only before soft_at, with a load time");
                    }
                    let d = freshness::decide_raw(now, soft, soft.max(now), load, &p, rand);
                    if now >= soft {
                        assert_ne!(d, Decision::Fresh);
                        assert_ne!(d, Decision::RefreshEarly);
                    }
                }
            }
        }
    }
}

#[test]
fn jitter_reduction_is_below_the_ttl_for_every_input() {
    let ppms = [0, 1, 500_000, 999_999, 1_000_000, 1_000_001, 1 << 32, u64::MAX];
    for &ttl in &EDGES {
        for &ppm in &ppms {
            for &rand in &EDGES {
                let cut = freshness::jitter_reduction(ttl, ppm, rand);
                if ttl == 0 || ppm == 0 || rand >> 32 == 0 {
                    assert_eq!(cut, 0, "ttl={ttl} ppm={ppm} rand={rand}");
                } else {
                    assert!(cut < ttl, "ttl={ttl} ppm={ppm} rand={rand}: cut {cut}");
                }
                // The documented clamp: above 1,000,000 ppm is 1,000,000 ppm.
                if ppm > 1_000_000 {
                    assert_eq!(cut, freshness::jitter_reduction(ttl, 1_000_000, rand));
                }
            }
        }
    }
    // The largest cut: floor(ttl * (2^32 - 1) / 2^32) = u64::MAX - 2^32 for ttl = u64::MAX.
    assert_eq!(freshness::jitter_reduction(u64::MAX, 1_000_000, u64::MAX), u64::MAX - (1 << 32));
}

#[test]
fn a_write_at_the_end_of_the_store_clock_saturates_its_instants() {
    let p = longest();
    for &store_now in &EDGES {
        for &rand in &EDGES {
            let w = Write {
                key: "k".into(),
                gen_keys: vec![],
                tags: vec![],
                value: b"1".to_vec().into(),
                codec: 1,
                version: Some(u64::MAX),
            };
            let StoreOp::Fill { soft_at, hard_at, expire_at, entry, .. } = flow::set_op(&w, &p, store_now, rand) else {
                panic!("set_op is a fill");
            };
            let (s, h) = freshness::jittered_ttls(&p, rand);
            assert_eq!(soft_at, store_now.saturating_add(s));
            assert_eq!(hard_at, store_now.saturating_add(h));
            assert_eq!(expire_at, hard_at.saturating_add(p.stale_if_error_ms()));
            assert!(soft_at <= hard_at && hard_at <= expire_at);
            let e = Entry::decode(&entry).expect("what set_op encodes decodes");
            assert_eq!((e.soft_at, e.hard_at, e.version), (soft_at, hard_at, Some(u64::MAX)));
        }
    }
}

#[test]
fn entries_with_extreme_instants_round_trip() {
    for &t in &EDGES {
        let e = Entry {
            value: vec![],
            codec: 0,
            version: Some(t),
            generations: vec![t, u64::MAX],
            soft_at: t,
            hard_at: t,
            load_ms: t,
            negative: true,
            tags: vec![],
        };
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        assert_eq!(e.encoded_len(), e.encode().len());
    }
}

/// Drive one get_or_load against the memory store at local time `now` with the store clock at
/// `store_now`; the loader answers at once. Returns how the call ended.
fn drive(store: &MemoryStore, policy: &Arc<Policy>, now: u64, store_now: u64, seed: u64) -> Step {
    let req = Request { key: "k".into(), gen_keys: vec!["g".into()], tags: vec![] };
    let mut f = GetOrLoad::new(req, Arc::clone(policy), seed);
    let mut step = f.start(now);
    for _ in 0..64 {
        step = f.run_store_steps(now, step, |op| Ok(store.apply(store_now, op)));
        step = match step {
            Step::Load { timeout_at } => {
                if let Some(t) = timeout_at {
                    assert!(t >= now, "a deadline is never before the load starts");
                }
                f.handle(now, Input::Loaded(Loaded { value: b"1".to_vec().into(), codec: 1, negative: false, version: None }))
            }
            Step::Wait { until_ms } => {
                assert!(until_ms >= now.min(u64::MAX - 1), "a wait never ends before it starts");
                f.handle(until_ms, Input::Timeout)
            }
            Step::Serve(_) => f.handle(now, Input::Continue),
            done @ Step::Done(_) => return done,
            Step::Store(_) => unreachable!("run_store_steps runs store steps"),
        };
    }
    panic!("the flow did not finish in 64 steps (now={now}, store_now={store_now})");
}

#[test]
fn a_flow_at_any_clock_pair_ends_without_overflow() {
    let policies = [Arc::new(longest()), Arc::new(Policy::default())];
    for p in &policies {
        for &now in &EDGES {
            for &store_now in &EDGES {
                let store = MemoryStore::new(MemoryStoreConfig::default());
                // A miss, a load and a fill; then a hit; then a caller that finds a lease held.
                match drive(&store, p, now, store_now, now ^ store_now) {
                    Step::Done(r) => assert!(r.is_ok(), "now={now} store_now={store_now}: {r:?}"),
                    s => panic!("{s:?}"),
                }
                assert!(matches!(drive(&store, p, now, store_now, 7), Step::Done(Ok(_))));
                let held = StoreOp::Read {
                    key: "held".into(),
                    gen_keys: vec![],
                    lease: LeaseMode::Force,
                    lease_ttl_ms: p.lease_ttl_ms(),
                };
                store.apply(store_now, &held);
                let req = Request { key: "held".into(), gen_keys: vec![], tags: vec![] };
                let mut f = GetOrLoad::new(req, Arc::clone(p), 1);
                let step = f.start(now);
                let step = f.run_store_steps(now, step, |op| Ok(store.apply(store_now, op)));
                match step {
                    Step::Wait { until_ms } => assert!(until_ms >= now || now == u64::MAX),
                    // A lock_wait of 0 ms is never a valid policy, but a clock at u64::MAX
                    // leaves no room to wait: the flow times out at once.
                    Step::Load { .. } | Step::Done(_) => {}
                    s => panic!("now={now} store_now={store_now}: {s:?}"),
                }
            }
        }
    }
}

#[test]
fn the_coordinator_learns_any_skew_without_overflow() {
    use karlton_core::coordinator::{Action, Coordinator, Ticket};
    let store = MemoryStore::new(MemoryStoreConfig::default());
    let policy = Arc::new(Policy::default());
    for &now in &EDGES {
        for &store_now in &EDGES {
            let mut c = Coordinator::new(3, false);
            assert_eq!(c.store_now(now), now, "no read yet: the store clock is the local clock");
            let req = Request { key: format!("k{now}-{store_now}"), gen_keys: vec![], tags: vec![] };
            let Ticket::Lead { call, mut action } = c.get_or_load(now, req, Arc::clone(&policy)) else {
                panic!("the first caller leads")
            };
            for _ in 0..16 {
                action = match action {
                    Action::Store(op) => c.handle(now, call, Input::Store(store.apply(store_now, &op))),
                    Action::StartLoad { .. } | Action::AwaitLoad { .. } => c.handle(
                        now,
                        call,
                        Input::Loaded(Loaded { value: b"2".to_vec().into(), codec: 1, negative: false, version: None }),
                    ),
                    Action::Answer(_) | Action::Finished => break,
                    other => panic!("{other:?}"),
                };
            }
            // The learned offset is saturated to i64, the estimate to the ends of u64.
            let d = (i128::from(store_now) - i128::from(now)).clamp(i64::MIN.into(), i64::MAX.into());
            let want = (i128::from(now) + d).clamp(0, u64::MAX.into()) as u64;
            assert_eq!(c.store_now(now), want, "now={now} store_now={store_now}");
        }
    }
}

#[test]
fn params_nested_past_the_limit_are_refused_on_every_path() {
    use karlton_core::json::MAX_DEPTH;
    use karlton_core::key::{Key, params_hash};
    let nest = |n: u32| {
        let mut v = serde_json::json!(1);
        for _ in 0..n {
            v = serde_json::json!([v]);
        }
        v
    };
    // 128 containers: what every runtime's parser takes.
    assert!(params_hash(&nest(MAX_DEPTH)).is_ok());
    assert!(Key::new("n").unwrap().params(&nest(MAX_DEPTH)).is_ok());
    assert!(Key::new("n").unwrap().params_json(&nest(MAX_DEPTH).to_string()).is_ok());
    // 129: refused through the serde path too (it had no limit), as by the JSON-text path.
    assert!(params_hash(&nest(MAX_DEPTH + 1)).is_err());
    assert!(Key::new("n").unwrap().params(&nest(MAX_DEPTH + 1)).is_err());
    assert!(Key::new("n").unwrap().params_json(&nest(MAX_DEPTH + 1).to_string()).is_err());
}
