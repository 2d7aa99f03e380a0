//! Survivors of `core/src/coordinator.rs`.

use karlton_core::flow::{self, Write};
use karlton_core::{
    Action, Coordinator, FlowError, Input, MemoryStore, MemoryStoreConfig, Op, Policy,
    PolicySpec, Reply, Request, StoreOp, StoreReply, Ticket,
};
use std::sync::Arc;

fn policy(soft: u64, hard: Option<u64>) -> Arc<Policy> {
    Arc::new(
        Policy::new(PolicySpec {
            soft_ttl_ms: soft,
            hard_ttl_ms: hard,
            jitter: 0.0,
            ..PolicySpec::default()
        })
        .unwrap(),
    )
}

fn req(key: &str) -> Request {
    Request {
        key: key.into(),
        gen_keys: vec!["g:ns".into()],
        tags: vec![],
    }
}

fn write(key: &str, value: &[u8]) -> Write {
    Write {
        key: key.into(),
        gen_keys: vec!["g:ns".into()],
        tags: vec![],
        value: value.to_vec().into(),
        codec: 1,
        version: None,
    }
}

fn run_store(
    c: &mut Coordinator,
    s: &MemoryStore,
    now: u64,
    call: karlton_core::CallId,
    mut a: Action,
) -> Action {
    while let Action::Store(op) = &a {
        let r = s.apply(now, op);
        a = c.handle(now, call, Input::Store(r));
    }
    a
}

fn lead(t: Ticket) -> (karlton_core::CallId, Action) {
    match t {
        Ticket::Lead { call, action } => (call, action),
        other => panic!("expected lead, got {other:?}"),
    }
}

/// A forked child calls `reseed`: its stream must then be the stream of that seed, not the
/// parent's copy.
#[test]
fn reseed_restarts_the_stream_from_the_new_seed() {
    let parent = Coordinator::new(1, false);
    let fresh = Coordinator::new(99, false);
    parent.counters().reseed(99);
    let a: Vec<u64> = (0..3).map(|_| parent.counters().next_seed()).collect();
    let b: Vec<u64> = (0..3).map(|_| fresh.counters().next_seed()).collect();
    assert_eq!(a, b);
}

/// The lock-free memory fast path answers a valid fresh entry (and counts it as a fresh hit);
/// `None` would only be allowed for entries the flow must see.
#[test]
fn memory_hit_answers_and_counts_a_fresh_entry() {
    let (c, s, p) = (
        Coordinator::new(7, false),
        MemoryStore::new(MemoryStoreConfig::default()),
        policy(1_000, None),
    );
    s.apply(0, &flow::set_op(&write("k", b"\"v\""), &p, 0, 1));
    let gens = vec!["g:ns".to_string()];
    let hit = c.counters().memory_hit(&s, 1, "k", &gens, &p).expect("a fresh hit");
    assert_eq!(&hit.value[..], b"\"v\"");
    let memo = c.counters().memory_hit_memo(&s, 2, "k", &gens, &p).expect("a fresh hit");
    assert_eq!(&memo.served().value[..], b"\"v\"");
    assert_eq!(c.stats().hits_fresh, 2);
    assert!(c.counters().memory_hit(&s, 5_000, "k", &gens, &p).is_none(), "expired");
}

/// `pending` shows a call and its flight while a load runs (a host leak check relies on it).
#[test]
fn pending_counts_a_live_leader_and_its_flight() {
    let (mut c, s, p) = (
        Coordinator::new(7, false),
        MemoryStore::new(MemoryStoreConfig::default()),
        policy(1_000, None),
    );
    let (call, a) = lead(c.get_or_load(0, req("k"), p.clone()));
    assert!(matches!(run_store(&mut c, &s, 0, call, a), Action::StartLoad { .. }));
    assert_eq!(c.pending(), (1, 1));
}

/// Two callers that got the same undecodable bytes: the second joins the first's replacement
/// (one corrupt entry, one load), it does not lead a second one.
#[test]
fn second_report_of_the_same_bad_bytes_joins_the_replacement() {
    let (mut c, s, p) = (
        Coordinator::new(7, false),
        MemoryStore::new(MemoryStoreConfig::default()),
        policy(1_000, None),
    );
    s.apply(0, &flow::set_op(&write("k", b"\xff"), &p, 0, 1));
    let mut bad = Vec::new();
    for _ in 0..2 {
        let (call, a) = lead(c.get_or_load(1, req("k"), p.clone()));
        match run_store(&mut c, &s, 1, call, a) {
            Action::Answer(Ok(Reply::Value(v))) => bad.push(v),
            o => panic!("{o:?}"),
        }
    }
    let second = bad.pop().unwrap();
    let (a_call, a) = lead(c.get_or_load_replacing(1, req("k"), p.clone(), bad.pop().unwrap()));
    assert!(matches!(run_store(&mut c, &s, 1, a_call, a), Action::StartLoad { .. }));
    let t = c.get_or_load_replacing(1, req("k"), p.clone(), second);
    assert!(matches!(t, Ticket::Join { .. }), "{t:?}");
    let st = c.stats();
    assert_eq!((st.corrupt_entries, st.hits_fresh), (1, 0));
}

/// A stale-serving leader whose value does not decode, after another caller already reported
/// the same bytes and leads their replacement: only one corrupt entry is counted.
#[test]
fn replace_served_after_the_same_bytes_were_reported_counts_one_corrupt_entry() {
    let p = policy(10, Some(1_000));
    let (mut c, s) = (
        Coordinator::new(7, false),
        MemoryStore::new(MemoryStoreConfig::default()),
    );
    s.apply(0, &flow::set_op(&write("k", b"\xff"), &p, 0, 1));
    let (y, a) = lead(c.get_or_load(50, req("k"), p.clone()));
    let x = match c.get_or_load(50, req("k"), p.clone()) {
        Ticket::Join { call, .. } => call,
        o => panic!("{o:?}"),
    };
    let Action::Serve(_) = run_store(&mut c, &s, 50, y, a) else { panic!() };
    while c.poll_event().is_some() {}
    let served_x = match c.joined(50, x) {
        Ticket::Answer {
            answer: Ok(Reply::Value(v)),
        } => v,
        o => panic!("{o:?}"),
    };
    let _x = lead(c.get_or_load_replacing(50, req("k"), p.clone(), served_x));
    assert_eq!(c.stats().corrupt_entries, 1);
    let _ = c.replace_served(50, y);
    assert_eq!(c.stats().corrupt_entries, 1, "the same bytes are one corrupt entry");
}

/// A fast read is answered once: a second fast-read reply for the same `get` is a protocol
/// error, not a second answer.
#[test]
fn a_second_fast_read_reply_is_a_protocol_error() {
    let mut c = Coordinator::new(7, true);
    let p = policy(1_000, None);
    let (call, a) = c.op(
        0,
        Op::Get {
            key: "k".into(),
            gen_keys: vec![],
        },
        p,
    );
    assert!(matches!(a, Action::FastRead { .. }), "{a:?}");
    assert!(matches!(c.handle_fast_read(0, call, Ok(vec![])), Action::Store(_)));
    assert!(matches!(
        c.handle_fast_read(0, call, Ok(vec![])),
        Action::Answer(Err(FlowError::Protocol(_)))
    ));
}

/// `max_value_bytes` is inclusive: a value of exactly that size is written, one byte more
/// removes the key instead.
#[test]
fn a_value_of_exactly_max_value_bytes_is_written() {
    let mut c = Coordinator::new(7, false);
    let p = Arc::new(
        Policy::new(PolicySpec {
            soft_ttl_ms: 1_000,
            max_value_bytes: 3,
            ..PolicySpec::default()
        })
        .unwrap(),
    );
    let set = |v: &[u8]| Op::Set { write: write("k", v) };
    let (_, a) = c.op(0, set(b"abc"), p.clone());
    assert!(matches!(a, Action::Store(StoreOp::Fill { .. })), "{a:?}");
    let (_, a) = c.op(0, set(b"abcd"), p);
    assert!(matches!(a, Action::Store(StoreOp::Invalidate { .. })), "{a:?}");
}

/// A one-op call fed the wrong store reply says which op got which reply.
#[test]
fn a_mismatched_op_reply_names_the_op_and_the_reply() {
    let mut c = Coordinator::new(7, false);
    let (call, _) = c.op(0, Op::Bump { gen_key: "g:ns".into() }, policy(1_000, None));
    match c.handle(0, call, Input::Store(StoreReply::Stored)) {
        Action::Answer(Err(FlowError::Protocol(m))) => assert_eq!(m, "bump got stored"),
        o => panic!("{o:?}"),
    }
}

/// Start a flight for `other` and leave its leader loading.
fn other_flight(c: &mut Coordinator, s: &MemoryStore, now: u64, p: &Arc<Policy>) {
    let (o, a) = lead(c.get_or_load(now, req("other"), p.clone()));
    assert!(matches!(run_store(c, s, now, o, a), Action::StartLoad { .. }));
}

/// Replacing an undecodable value detaches that key's flight only: a flight for another key
/// still takes joiners.
#[test]
fn replacing_an_undecodable_value_leaves_other_keys_flights_alone() {
    let (mut c, s, p) = (
        Coordinator::new(7, false),
        MemoryStore::new(MemoryStoreConfig::default()),
        policy(1_000, None),
    );
    s.apply(0, &flow::set_op(&write("k", b"\xff"), &p, 0, 1));
    other_flight(&mut c, &s, 1, &p);
    let (call, a) = lead(c.get_or_load(1, req("k"), p.clone()));
    let bad = match run_store(&mut c, &s, 1, call, a) {
        Action::Answer(Ok(Reply::Value(v))) => v,
        o => panic!("{o:?}"),
    };
    lead(c.get_or_load_replacing(1, req("k"), p.clone(), bad));
    let t = c.get_or_load(2, req("other"), p.clone());
    assert!(matches!(t, Ticket::Join { .. }), "{t:?}");
}

/// The same for a stale-serving leader whose value did not decode (`replace_served`).
#[test]
fn replace_served_leaves_other_keys_flights_alone() {
    let p = policy(10, Some(1_000));
    let (mut c, s) = (
        Coordinator::new(7, false),
        MemoryStore::new(MemoryStoreConfig::default()),
    );
    s.apply(0, &flow::set_op(&write("k", b"\xff"), &p, 0, 1));
    other_flight(&mut c, &s, 50, &p);
    let (y, a) = lead(c.get_or_load(50, req("k"), p.clone()));
    let Action::Serve(_) = run_store(&mut c, &s, 50, y, a) else { panic!() };
    let _ = c.replace_served(50, y);
    assert_eq!(c.stats().corrupt_entries, 1);
    let t = c.get_or_load(51, req("other"), p.clone());
    assert!(matches!(t, Ticket::Join { .. }), "{t:?}");
}
