//! C4 with a slow reply: a stale value is served on error only while the store clock is before
//! `hard_at + stale_if_error`. The flow estimates the store clock from its last read; a reply
//! held up on the way (a paused process) must not make that estimate late. Found by the fleet
//! simulator (sim/, seed 10 with faults x30).

use karlton_core::entry::Entry;
use karlton_core::flow::{FlowError, GetOrLoad, Input, Request, Source, Step};
use karlton_core::memory::{MemoryStore, MemoryStoreConfig};
use karlton_core::policy::{Policy, PolicySpec};
use karlton_core::store::StoreOp;
use std::sync::Arc;

/// An entry past `hard_at` (200) but usable on error until 250 (stale_if_error 50), read at
/// store time 220 by a read sent at local time 0 whose reply arrives at local time `reply_at`;
/// the loader then fails at local time `fail_at`.
fn stale_on_error(reply_at: u64, fail_at: u64) -> Step {
    let policy = Arc::new(Policy::new(PolicySpec { soft_ttl_ms: 100, hard_ttl_ms: Some(200), stale_if_error_ms: 50, ..PolicySpec::default() }).unwrap());
    let store = MemoryStore::new(MemoryStoreConfig::default());
    let e = Entry { value: b"\"old\"".to_vec(), codec: 1, version: None, generations: vec![], soft_at: 100, hard_at: 200, load_ms: 1, negative: false, tags: vec![] };
    let fill = StoreOp::Fill {
        key: "k".into(),
        soft_at: 100,
        hard_at: 200,
        expire_at: 250,
        version: None,
        entry: e.encode().into(),
        generations: None,
        gen_keys: vec![],
        token: None,
    };
    store.apply(0, &fill);
    let mut f = GetOrLoad::new(Request { key: "k".into(), gen_keys: vec![], tags: vec![] }, policy, 1);
    let Step::Store(read) = f.start(0) else { panic!("a read first") };
    let reply = store.apply(220, &read); // the store stamps 220; the reply is held up until `reply_at`
    let mut step = f.handle(reply_at, Input::Store(reply));
    while let Step::Store(op) = &step {
        let r = store.apply(220 + (reply_at.min(fail_at)), op);
        step = f.handle(reply_at, Input::Store(r));
    }
    assert!(matches!(step, Step::Load { .. }), "past hard_at: load, keep the stale value for an error: {step:?}");
    let mut step = f.handle(fail_at, Input::LoadFailed("db down".into()));
    while let Step::Store(op) = &step {
        let r = store.apply(220 + fail_at, op);
        step = f.handle(fail_at, Input::Store(r));
    }
    step
}

#[test]
fn stale_on_error_is_served_within_its_window() {
    // Reply at once, failure 20 ms later: store time ~240 < 250.
    match stale_on_error(0, 20) {
        Step::Done(Ok(s)) => assert_eq!(s.source, Source::StaleOnError),
        s => panic!("{s:?}"),
    }
}

#[test]
fn a_held_up_reply_never_stretches_the_stale_on_error_window() {
    // The reply took 100 ms to arrive and the loader failed 20 ms after that: the store clock is
    // at least 220 + 120 = 340 (the store stamped 220 after the read left at local 0), past 250.
    // Counting from the reply's arrival (240) would serve the stale value 90 ms too long.
    match stale_on_error(100, 120) {
        Step::Done(Err(FlowError::Load(m))) => assert_eq!(m, "db down"),
        s => panic!("served past hard_at + stale_if_error: {s:?}"),
    }
}
