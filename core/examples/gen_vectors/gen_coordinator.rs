//! coordinator.json: several calls in one process, interleaved by a script. Each case is
//! recorded by driving the real [`Coordinator`] against a memory store at virtual time (other
//! processes act on the store directly); the recorded inputs are concrete, so a runner needs no
//! store. The generator asserts what each scenario is about (who leads, who joins, what every
//! caller got, the counters) on the live run before the file is written.

use crate::File;
use crate::eval::stats_json;
use karlton_core::coordinator::{Action, Answer, CallId, Coordinator, FlightId, Reply, Ticket};
use karlton_core::entry::codec;
use karlton_core::flow::{Input, Loaded, Write};
use karlton_core::redis::RedisValue;
use karlton_core::store::{LeaseMode, StoreFailure, StoreOp};
use karlton_core::{Entry, MemoryStore, Policy, Source};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Local clock start (epoch ms, < 2^53).
const T0: u64 = 1_700_000_000_000;
const NS: &str = "g:ns";
const TAG: &str = "g:tag:team";

fn base_policy() -> Value {
    json!({
        "soft_ttl_ms": 1000, "hard_ttl_ms": 3000, "lease_ttl_ms": 500, "lock_wait_ms": 100,
        "lock_backoff_ms": [10, 20, 40], "jitter": 0.0
    })
}

fn pol(over: Value) -> Value {
    let mut p = base_policy();
    for (k, v) in over.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn enc(v: &str) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn loaded(v: &str) -> Input {
    Input::Loaded(Loaded { value: enc(v).into(), codec: codec::JSON, negative: false, version: None })
}

fn write(key: &str, v: &str, version: Option<u64>) -> Write {
    Write {
        key: key.into(),
        gen_keys: vec![NS.into()],
        tags: vec![],
        value: enc(v).into(),
        codec: codec::JSON,
        version,
    }
}

/// A scripted process: one coordinator, one store shared with "other processes".
struct Script {
    c: Coordinator,
    store: MemoryStore,
    policy: Arc<Policy>,
    policy_json: Value,
    seed: u64,
    fast: bool,
    steps: Vec<Value>,
    ids: HashMap<String, CallId>,
    /// The pending action of each leading or one-op call.
    act: HashMap<String, Action>,
    /// What each caller was answered (the first answer: a `Serve` counts).
    got: HashMap<String, Answer>,
    tickets: HashMap<String, &'static str>,
    events: Vec<Value>,
}

impl Script {
    fn new(policy: Value, fast: bool) -> Script {
        let seed = 0x5EED_0000 + fast as u64;
        Script {
            c: Coordinator::new(seed, fast),
            store: MemoryStore::new(Default::default()),
            policy: Arc::new(Policy::from_json(&policy.to_string()).unwrap()),
            policy_json: policy,
            seed,
            fast,
            steps: Vec::new(),
            ids: HashMap::new(),
            act: HashMap::new(),
            got: HashMap::new(),
            tickets: HashMap::new(),
            events: Vec::new(),
        }
    }

    fn record(&mut self, step: Value) {
        self.steps.push(step);
        while let Some(e) = self.c.poll_event() {
            self.events.push(serde_json::to_value(e).unwrap());
        }
    }

    fn id(&self, label: &str) -> CallId {
        self.ids.get(label).copied().unwrap_or(CallId(u64::MAX))
    }

    fn ticket(&mut self, label: &str, t: Ticket) {
        match t {
            Ticket::Answer { answer } => {
                self.tickets.insert(label.into(), "answer");
                self.got.entry(label.into()).or_insert(answer);
                self.act.remove(label);
            }
            Ticket::Lead { call, action } => {
                self.tickets.insert(label.into(), "lead");
                self.ids.insert(label.into(), call);
                self.action(label, action);
            }
            Ticket::Join { call, .. } => {
                self.tickets.insert(label.into(), "join");
                self.ids.insert(label.into(), call);
            }
        }
    }

    fn action(&mut self, label: &str, a: Action) {
        match a {
            Action::Answer(r) => {
                self.got.entry(label.into()).or_insert(r);
                self.act.remove(label);
            }
            Action::Serve(s) => {
                self.got.entry(label.into()).or_insert(Ok(Reply::Value(s.clone())));
                self.act.insert(label.into(), Action::Serve(s));
            }
            Action::Finished => {
                self.act.remove(label);
            }
            other => {
                self.act.insert(label.into(), other);
            }
        }
    }

    /// A new `get_or_load` by `label`, then its store ops.
    fn call(&mut self, now: u64, label: &str, key: &str, gen_keys: &[&str]) -> &'static str {
        let req = karlton_core::Request {
            key: key.into(),
            gen_keys: gen_keys.iter().map(|s| s.to_string()).collect(),
            tags: vec![],
        };
        let t = self.c.get_or_load(T0 + now, req, self.policy.clone());
        self.ticket(label, t);
        self.record(json!({ "now": T0 + now, "call": label, "do": "get_or_load", "key": key, "gen_keys": gen_keys }));
        self.run(now, label);
        self.tickets[label]
    }

    /// A `get_or_load` by `label` made inside the loaders of the flights `within` (named by
    /// the labels that lead them).
    fn call_within(&mut self, now: u64, label: &str, key: &str, within: &[&str]) -> &'static str {
        let req = karlton_core::Request { key: key.into(), gen_keys: vec![NS.into()], tags: vec![] };
        let ids: Vec<FlightId> = within.iter().map(|l| FlightId(self.id(l).0)).collect();
        let t = self.c.get_or_load_within(T0 + now, req, self.policy.clone(), &ids);
        self.ticket(label, t);
        self.record(json!({ "now": T0 + now, "call": label, "do": "get_or_load", "key": key, "gen_keys": [NS], "within": within }));
        self.run(now, label);
        self.tickets[label]
    }

    /// `label`'s answer did not decode: it reports it and runs again (`get_or_load_replacing`).
    fn replacing(&mut self, now: u64, label: &str, key: &str, bad: &[u8]) {
        let req = karlton_core::Request { key: key.into(), gen_keys: vec![NS.into()], tags: vec![] };
        let t = self.c.get_or_load_replacing(T0 + now, req, self.policy.clone(), undecodable(bad, Source::Fresh));
        self.ticket(label, t);
        let bad = karlton_core::store::hex::encode(bad);
        self.record(json!({ "now": T0 + now, "call": label, "do": "replacing", "key": key, "gen_keys": [NS], "bad": bad, "source": "fresh" }));
        self.run(now, label);
    }

    /// `label` was served (`Action::Serve`) a value it cannot decode: `replace_served`, then its
    /// store ops.
    fn replace_served(&mut self, now: u64, label: &str) {
        let t = self.c.replace_served(T0 + now, self.id(label));
        self.ticket(label, t);
        self.record(json!({ "now": T0 + now, "call": label, "do": "replace_served" }));
        self.run(now, label);
    }

    /// A `get` answered a value that did not decode (`Counters::report_undecodable`).
    fn get_undecodable(&mut self, now: u64, label: &str, bad: &[u8], source: Source) {
        self.c.counters().report_undecodable(&undecodable(bad, source));
        let bad = karlton_core::store::hex::encode(bad);
        self.record(json!({ "now": T0 + now, "call": label, "do": "get_undecodable", "bad": bad, "source": source }));
    }

    /// Run `label`'s store ops against the store until it asks for something else.
    fn run(&mut self, now: u64, label: &str) {
        while let Some(Action::Store(op)) = self.act.get(label).cloned() {
            let reply = self.store.apply(T0 + now, &op);
            self.feed(now, label, Input::Store(reply));
        }
    }

    fn feed(&mut self, now: u64, label: &str, input: Input) {
        let a = self.c.handle(T0 + now, self.id(label), input.clone());
        self.action(label, a);
        self.record(json!({ "now": T0 + now, "call": label, "do": "feed", "input": input }));
    }

    /// The loader of `label` returns `v`; then its store ops run.
    fn load(&mut self, now: u64, label: &str, v: &str) {
        self.feed(now, label, loaded(v));
        self.run(now, label);
    }

    /// A woken joiner asks; if it leads now, its store ops run.
    fn joined(&mut self, now: u64, label: &str) -> &'static str {
        let t = self.c.joined(T0 + now, self.id(label));
        self.ticket(label, t);
        self.record(json!({ "now": T0 + now, "call": label, "do": "joined" }));
        self.run(now, label);
        self.tickets[label]
    }

    /// Drive `label` to its end from `now`: sleep through waits (feeding the timeout at the
    /// deadline), load `v` when asked, run store ops. Returns the time it ended.
    fn drive(&mut self, mut now: u64, label: &str, v: &str) -> u64 {
        loop {
            match self.act.get(label).cloned() {
                Some(Action::Wait { until_ms }) => {
                    now = now.max(until_ms - T0);
                    self.feed(now, label, Input::Timeout);
                    self.run(now, label);
                }
                Some(Action::StartLoad { .. }) | Some(Action::AwaitLoad { .. }) => self.load(now, label, v),
                Some(Action::Serve(_)) => {
                    self.feed(now, label, Input::Continue);
                    self.run(now, label);
                }
                Some(Action::Store(_)) => self.run(now, label),
                _ => return now,
            }
        }
    }

    /// As [`Script::joined`], but the call's store ops stay out (others can join meanwhile).
    fn joined_hold(&mut self, now: u64, label: &str) -> &'static str {
        let t = self.c.joined(T0 + now, self.id(label));
        self.ticket(label, t);
        self.record(json!({ "now": T0 + now, "call": label, "do": "joined" }));
        self.tickets[label]
    }

    fn op(&mut self, now: u64, label: &str, op: Value) {
        self.op_hold(now, label, op);
        self.run(now, label);
    }

    /// A one-op call whose store op is left to the script.
    fn op_hold(&mut self, now: u64, label: &str, op: Value) {
        let parsed = serde_json::from_value(op.clone()).unwrap();
        let (id, a) = self.c.op(T0 + now, parsed, self.policy.clone());
        self.ids.insert(label.into(), id);
        self.action(label, a);
        self.record(json!({ "now": T0 + now, "call": label, "do": "op", "op": op }));
    }

    fn cancel(&mut self, now: u64, label: &str) -> Option<StoreOp> {
        let r = self.c.cancel(self.id(label));
        self.act.remove(label);
        self.record(json!({ "now": T0 + now, "call": label, "do": "cancel" }));
        if let Some(op) = &r {
            self.store.apply(T0 + now, op);
        }
        r
    }

    fn fast_read(&mut self, now: u64, label: &str, r: Result<Vec<RedisValue>, &str>) {
        let step = match &r {
            Ok(v) => json!({ "now": T0 + now, "call": label, "do": "fast_read", "replies": v }),
            Err(e) => json!({ "now": T0 + now, "call": label, "do": "fast_read", "error": e }),
        };
        let r = r.map_err(|e| StoreFailure { message: e.into() });
        let a = self.c.handle_fast_read(T0 + now, self.id(label), r);
        self.action(label, a);
        self.record(step);
        self.run(now, label);
    }

    /// Another process acts on the shared store (not recorded: this process sees its effects).
    fn other(&self, now: u64, op: &StoreOp) {
        self.store.apply(T0 + now, op);
    }

    fn other_set(&self, now: u64, key: &str, v: &str, version: Option<u64>) {
        let op = karlton_core::flow::set_op(&write(key, v, version), &self.policy, T0 + now, 9);
        self.other(now, &op);
    }

    /// Another process takes the lease on `key`.
    fn other_lease(&self, now: u64, key: &str) {
        self.other(
            now,
            &StoreOp::Read {
                key: key.into(),
                gen_keys: vec![NS.into()],
                lease: LeaseMode::IfNeeded,
                lease_ttl_ms: 500,
            },
        );
    }

    fn value(&self, label: &str) -> Option<String> {
        match self.got.get(label)? {
            Ok(Reply::Value(s)) => Some(serde_json::from_slice(&s.value).unwrap_or_else(|_| {
                format!("<bytes {}>", karlton_core::store::hex::encode(&s.value))
            })),
            _ => None,
        }
    }

    fn source(&self, label: &str) -> Option<Source> {
        match self.got.get(label)? {
            Ok(Reply::Value(s)) => Some(s.source),
            _ => None,
        }
    }

    fn is(&self, label: &str, v: &str) {
        assert_eq!(self.value(label).as_deref(), Some(v), "{label}: {:?}", self.got.get(label));
    }

    fn err(&self, label: &str) -> String {
        match self.got.get(label) {
            Some(Err(e)) => format!("{e:?}"),
            other => panic!("{label}: expected an error, got {other:?}"),
        }
    }

    fn stat(&self, name: &str) -> u64 {
        self.c.stats().fields().into_iter().find(|(k, _)| *k == name).map_or(0, |(_, v)| v)
    }

    fn event_kinds(&self) -> Vec<String> {
        self.events.iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect()
    }

    /// Emit the case; the replay must agree with the live run. `idle`: nothing left pending.
    fn emit(self, f: &mut File, name: &str, why: &str, idle: bool) {
        let input = json!({
            "policy": self.policy_json, "seed": self.seed, "fast_read": self.fast, "steps": self.steps
        });
        let expect = f.add(name, why, input);
        assert_eq!(expect["stats"], stats_json(&self.c.stats()), "{name}: replay disagrees");
        if idle {
            assert_eq!(expect["pending"], json!([0, 0]), "{name}: calls left pending");
        }
    }
}

/// Fast-read replies (`TIME`, `MGET key`) as Redis would send them for an entry (or nothing)
/// under `key`, with no generation keys.
fn fast_replies(now: u64, entry: Option<&Entry>) -> Vec<RedisValue> {
    let t = T0 + now;
    let time = RedisValue::Array(vec![
        RedisValue::Bulk((t / 1000).to_string().into_bytes()),
        RedisValue::Bulk(((t % 1000) * 1000).to_string().into_bytes()),
    ]);
    // MGET key: the record as the scripts write it (`save` in the prelude), or nil.
    let rec = match entry {
        Some(e) => {
            let mut r = format!("k1|e|{}|{}|{}||||||", e.hard_at, e.soft_at, e.hard_at).into_bytes();
            r.extend_from_slice(&e.encode());
            RedisValue::Bulk(r)
        }
        None => RedisValue::Nil,
    };
    vec![time, RedisValue::Array(vec![rec])]
}

fn entry(v: &str, negative: bool, soft_at: u64) -> Entry {
    Entry {
        value: if negative { vec![] } else { enc(v) },
        codec: codec::JSON,
        version: None,
        generations: vec![],
        soft_at: T0 + soft_at,
        hard_at: T0 + soft_at + 2000,
        load_ms: 5,
        negative,
        tags: vec![],
    }
}

pub fn coordinator() -> File {
    let mut f = File::new(
        "coordinator",
        "Several calls in one process, interleaved by a script: input {policy, seed, fast_read, \
         steps: [{now, call, do: get_or_load|replacing|replace_served|joined|feed|fast_read|cancel|op, ...}]}; \
         expect {outputs: [{out, events?}] per step with call and flight ids named by the script, \
         stats (non-zero counters), pending: [calls, flights]}. See eval_coordinator.",
    );
    stampedes(&mut f);
    c5(&mut f);
    refused(&mut f);
    cancels(&mut f);
    replacing(&mut f);
    stale(&mut f);
    served_undecodable(&mut f);
    fast_reads(&mut f);
    ops(&mut f);
    waits_and_failures(&mut f);
    protocol(&mut f);
    keys_and_skew(&mut f);
    too_large(&mut f);
    reentrant(&mut f);
    joiner_waits(&mut f);
    f
}

/// A joiner waits at most `lock_wait` for its flight, then `on_lock_timeout` applies.
fn joiner_waits(f: &mut File) {
    // load: the joiner runs its own loader, answers from it, fills nothing.
    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    assert_eq!(s.call(1, "j", "k", &[NS]), "join");
    assert_eq!(s.joined_hold(50, "j"), "join", "inside lock_wait (100 ms) it keeps waiting");
    assert_eq!(s.joined(101, "j"), "lead", "past it, the joiner leads a load of its own");
    assert!(matches!(s.act["j"], Action::StartLoad { .. }));
    s.load(110, "j", "mine");
    s.is("j", "mine");
    assert!(s.store.inspect(T0 + 110, "k").is_none_or(|i| i.entry.is_none()), "the joiner did not fill");
    s.load(200, "a", "v");
    s.is("a", "v");
    assert_eq!((s.stat("lease_timeouts"), s.stat("loads"), s.stat("coalesced")), (1, 2, 0));
    s.emit(f, "joiner past lock_wait loads without the lease", "an in-process joiner waits at most lock_wait for its flight, then (on_lock_timeout load) runs its own loader and answers from it without filling; the leader still fills", true);

    // error: a lock timeout.
    let mut s = Script::new(pol(json!({"on_lock_timeout": "error"})), false);
    s.call(0, "a", "k", &[NS]);
    assert_eq!(s.call(1, "j", "k", &[NS]), "join");
    assert_eq!(s.joined(101, "j"), "answer");
    assert!(s.err("j").contains("LockTimeout"));
    s.load(200, "a", "v");
    s.emit(f, "joiner past lock_wait: lock timeout error", "with on_lock_timeout error a joiner past lock_wait gets LockTimeout; the flight goes on", true);

    // lock_wait 0: never wait — no join at all.
    let mut s = Script::new(pol(json!({"lock_wait_ms": 0})), false);
    s.call(0, "a", "k", &[NS]);
    assert_eq!(s.call(1, "j", "k", &[NS]), "lead", "lock_wait 0: straight to on_lock_timeout");
    s.load(2, "j", "mine");
    s.load(3, "a", "v");
    s.is("j", "mine");
    s.emit(f, "lock_wait 0: a caller never joins", "with lock_wait 0 a caller that finds a flight does not wait for it: on_lock_timeout at once", true);
}

/// A loader that asks for a key its own call chain is loading.
fn reentrant(f: &mut File) {
    // Its own key: an error at once, not a join that waits for itself forever.
    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    assert!(matches!(s.act["a"], Action::StartLoad { .. }));
    assert_eq!(s.call_within(1, "inner", "k", &["a"]), "answer");
    assert!(s.err("inner").contains("Reentrant"), "{:?}", s.got["inner"]);
    // The same key from a caller outside that chain still joins.
    assert_eq!(s.call(1, "j", "k", &[NS]), "join");
    // Another key from inside the loader is an ordinary call.
    assert_eq!(s.call_within(1, "other", "k2", &["a"]), "lead");
    s.load(2, "other", "v2");
    s.load(3, "a", "v");
    s.joined(3, "j");
    s.is("j", "v");
    s.emit(f, "re-entrant get_or_load of its own key", "a loader calling get_or_load on the key it is loading gets FlowError::Reentrant at once (joining would wait for itself); other keys and other callers are unaffected", true);

    // Through another key: a loads k, its loader asks k2, whose loader asks k again.
    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    assert_eq!(s.call_within(1, "b", "k2", &["a"]), "lead");
    assert_eq!(s.call_within(2, "c", "k", &["a", "b"]), "answer");
    assert!(s.err("c").contains("Reentrant"));
    s.load(3, "b", "v2");
    s.load(4, "a", "v");
    s.emit(f, "re-entrant get_or_load through another key", "a cycle through other keys' loaders (k -> k2 -> k) is refused the same way", true);
}

/// Values over `max_value_bytes`: answered, never stored.
fn too_large(f: &mut File) {
    let small = pol(json!({"max_value_bytes": 8}));
    // A load: leader and joiner get it, the lease goes back, nothing is stored.
    let mut s = Script::new(small.clone(), false);
    s.call(0, "a", "k", &[NS]);
    assert_eq!(s.call(0, "j", "k", &[NS]), "join");
    s.load(5, "a", "far too long for eight bytes");
    s.joined(5, "j");
    s.is("a", "far too long for eight bytes");
    s.is("j", "far too long for eight bytes");
    assert!(s.store.inspect(T0 + 5, "k").is_none_or(|i| i.entry.is_none() && i.lease.is_none()), "not stored, lease released");
    assert_eq!((s.stat("values_too_large"), s.stat("loads"), s.stat("fills_rejected")), (1, 1, 0));
    s.call(6, "b", "k", &[NS]);
    assert!(matches!(s.act["b"], Action::StartLoad { .. }), "the next caller loads at once: no lease left behind");
    s.load(7, "b", "ok");
    s.is("b", "ok");
    s.emit(f, "value too large: answered, not stored", "a loaded value over max_value_bytes goes to the caller and its joiners (not run again), is not stored, and the lease is released so the next caller loads at once", true);

    // A set: the key is removed rather than left holding the value it replaces.
    let mut s = Script::new(small, false);
    s.other_set(0, "k", "old", None);
    s.op(1, "w", json!({"op": "set", "write": {"key": "k", "gen_keys": [NS], "tags": [], "value": karlton_core::store::hex::encode(&enc("far too long for eight bytes")), "codec": 1, "version": null}}));
    assert_eq!(s.got["w"], Ok(Reply::Stored(false)));
    s.op(2, "g", json!({"op": "get", "key": "k", "gen_keys": [NS]}));
    assert_eq!(s.got["g"], Ok(Reply::Missing), "the old value is gone");
    assert_eq!(s.stat("values_too_large"), 1);
    s.emit(f, "set of a value too large removes the key", "a set over max_value_bytes answers false and deletes the key: no reader gets the value that write replaced", true);
}

fn stampedes(f: &mut File) {
    for fast in [false, true] {
        for n in [1usize, 3, 20] {
            let mut s = Script::new(base_policy(), fast);
            assert_eq!(s.call(0, "a", "k", &[NS]), "lead");
            if fast {
                // Joiners arrive while the leader's fast read is out.
                for i in 0..n {
                    assert_eq!(s.call(1, &format!("j{i}"), "k", &[NS]), "join");
                }
                s.fast_read(2, "a", Ok(fast_replies(2, None)));
            } else {
                for i in 0..n {
                    assert_eq!(s.call(1, &format!("j{i}"), "k", &[NS]), "join");
                }
            }
            assert!(matches!(s.act["a"], Action::StartLoad { .. }));
            s.load(10, "a", "v");
            assert_eq!(s.event_kinds(), vec!["wake"]);
            for i in 0..n {
                s.joined(11, &format!("j{i}"));
                s.is(&format!("j{i}"), "v");
            }
            s.is("a", "v");
            let n = n as u64;
            assert_eq!((s.stat("loads"), s.stat("misses"), s.stat("coalesced"), s.stat("lease_waits")), (1, n + 1, n, 0));
            let name = format!("stampede: {n} joiner{}{}", if n == 1 { "" } else { "s" }, if fast { ", fast read" } else { "" });
            s.emit(f, &name, "C3 in one process: one leader drives the store and the loader; joiners touch neither and count coalesced + what they got (misses for a load)", true);
        }
    }
}

fn c5(f: &mut File) {
    let writes: [(&str, Value, &[&str]); 5] = [
        ("invalidate", json!({"op": "invalidate", "key": "k", "mode": "delete"}), &[NS]),
        ("invalidate mark_stale", json!({"op": "invalidate", "key": "k", "mode": "mark_stale"}), &[NS]),
        ("set", json!({"op": "set", "write": {"key": "k", "gen_keys": [NS], "tags": [], "value": karlton_core::store::hex::encode(&enc("new")), "codec": 1, "version": null}}), &[NS]),
        ("bump namespace", json!({"op": "bump", "gen_key": NS}), &[NS]),
        ("bump tag", json!({"op": "bump", "gen_key": TAG}), &[NS, TAG]),
    ];
    for (what, op, gens) in writes {
        for joiner_before in [false, true] {
            let mut s = Script::new(base_policy(), false);
            s.call(0, "a", "k", gens);
            if joiner_before {
                assert_eq!(s.call(1, "j", "k", gens), "join");
            }
            // The source changes to "new"; the write returns while a's loader holds "old".
            s.op(2, "w", op.clone());
            assert!(s.got["w"].is_ok(), "{what}: {:?}", s.got["w"]);
            let b = s.call(3, "b", "k", gens);
            assert_eq!(b, "lead", "{what}: b must not join a's flight");
            if what == "set" {
                // The write-through value is already there: b's own read answered it.
                s.is("b", "new");
            }
            s.load(4, "a", "old");
            s.is("a", "old"); // a's own call began before the write
            if joiner_before {
                let t = s.joined(4, "j");
                assert_ne!(t, "answer", "{what}: the joiner from before must run again, not take a's value");
            }
            let mut t = s.drive(5, "b", "new");
            if joiner_before {
                if s.tickets["j"] == "join" {
                    // It joined b's flight, which has finished now.
                    t += 1;
                    s.joined(t, "j");
                }
                t = s.drive(t, "j", "new");
            }
            s.call(t + 1, "c", "k", gens);
            s.drive(t + 1, "c", "new");
            for l in ["b", "c"].into_iter().chain(joiner_before.then_some("j")) {
                s.is(l, "new");
            }
            let name = format!("C5 {what}{}", if joiner_before { ", joiner from before" } else { "" });
            s.emit(f, &name, "a call that begins after a write returned never gets a value loaded before it: the write detaches the flight; its joiners run again; only the leader's own caller gets its load", true);
        }
    }
}

fn refused(f: &mut File) {
    for n in [1usize, 3] {
        let mut s = Script::new(base_policy(), false);
        s.call(0, "a", "k", &[NS]);
        for i in 0..n {
            s.call(1, &format!("j{i}"), "k", &[NS]);
        }
        s.other_set(2, "k", "theirs", None); // another process writes through
        s.load(3, "a", "mine");
        s.is("a", "mine");
        // All joiners wake; the first leads again, the others join it before its read is back.
        assert_eq!(s.joined_hold(4, "j0"), "lead");
        for i in 1..n {
            assert_eq!(s.joined_hold(4, &format!("j{i}")), "join");
        }
        s.run(4, "j0");
        for i in 1..n {
            assert_eq!(s.joined(5, &format!("j{i}")), "answer");
        }
        for i in 0..n {
            s.is(&format!("j{i}"), "theirs");
        }
        assert_eq!((s.stat("fills_rejected"), s.stat("coalesced")), (1, n as u64 - 1));
        s.emit(f, &format!("refused fill: {n} joiners run again"), "a fill the store refused is not shared: the first joiner leads again and finds the other process's entry; later ones join it", true);
    }
    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    s.call(1, "j", "k", &[NS]);
    s.other_set(2, "k", "v5", Some(5));
    s.feed(3, "a", Input::Loaded(Loaded { value: enc("v3").into(), codec: 1, negative: false, version: Some(3) }));
    s.run(3, "a");
    s.joined(4, "j");
    s.is("j", "v5");
    s.emit(f, "refused fill: older version", "the store keeps version 5 over a's version 3: the joiner runs again and gets version 5", true);
}

fn cancels(f: &mut File) {
    for n in [0usize, 2] {
        let mut s = Script::new(base_policy(), false);
        s.call(0, "a", "k", &[NS]);
        for i in 0..n {
            s.call(1, &format!("j{i}"), "k", &[NS]);
        }
        assert!(matches!(s.cancel(2, "a"), Some(StoreOp::Release { .. })));
        for i in 0..n {
            let l = format!("j{i}");
            let t = s.joined(3, &l);
            assert_eq!(t, if i == 0 { "lead" } else { "join" });
        }
        if n > 0 {
            assert!(matches!(s.act["j0"], Action::StartLoad { .. }), "the released lease is free at once (L3)");
            s.load(4, "j0", "v");
            s.joined(5, "j1");
            s.is("j1", "v");
        }
        s.emit(f, &format!("cancelled leader, {n} joiners"), "a leader whose caller went away releases its lease and its joiners run again: the first takes the lease at once", true);
    }
    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    s.call(1, "j", "k", &[NS]);
    assert_eq!(s.cancel(2, "j"), None);
    s.load(3, "a", "v");
    assert!(s.events.is_empty(), "no joiner left to wake");
    s.emit(f, "cancelled joiner", "a joiner that goes away leaves its flight; the flight ends without a wake-up", true);

    let mut s = Script::new(base_policy(), false);
    assert_eq!(s.cancel(0, "nobody"), None);
    s.emit(f, "cancel unknown call", "cancelling a call the coordinator does not know is a no-op", true);

    let mut s = Script::new(base_policy(), true);
    s.call(0, "a", "k", &[NS]);
    assert_eq!(s.cancel(1, "a"), None, "no lease taken yet: nothing to release");
    s.emit(f, "cancel during fast read", "a leader cancelled before its first store op holds no lease", true);

    // A one-op get cancelled before its read ran.
    let mut s2 = Script::new(base_policy(), false);
    s2.op_hold(0, "g", json!({"op": "get", "key": "k"}));
    assert_eq!(s2.cancel(0, "g"), None);
    s2.emit(f, "cancel one-op call", "a one-op call holds no lease: cancelling it returns nothing and leaves nothing pending", true);
}

/// A served value the host could not decode.
fn undecodable(bad: &[u8], source: Source) -> karlton_core::Served {
    karlton_core::Served { value: bad.to_vec().into(), codec: 1, negative: false, version: None, source, cached: true }
}

fn replacing(f: &mut File) {
    let bad = b"\xffnot json";
    let bad_write = |s: &Script| {
        let mut w = write("k", "", None);
        w.value = bad.to_vec().into();
        s.other(0, &karlton_core::flow::set_op(&w, &s.policy, T0, 9));
    };
    let mut s = Script::new(base_policy(), false);
    bad_write(&s);
    s.call(1, "a", "k", &[NS]);
    assert_eq!(s.value("a").unwrap(), format!("<bytes {}>", karlton_core::store::hex::encode(bad)));
    s.replacing(2, "a2", "k", bad);
    assert!(matches!(s.act["a2"], Action::StartLoad { .. }));
    s.load(3, "a2", "good");
    s.call(4, "b", "k", &[NS]);
    s.is("b", "good");
    assert_eq!((s.stat("corrupt_entries"), s.stat("loads")), (1, 1));
    s.emit(f, "undecodable value is replaced", "the host could not decode the served value: counted corrupt, the retry treats that entry as a miss, loads and replaces it", true);

    let mut s = Script::new(base_policy(), false);
    bad_write(&s);
    s.call(1, "a", "k", &[NS]);
    s.replacing(2, "a2", "k", bad);
    assert_eq!(s.call(2, "j", "k", &[NS]), "join", "callers after the report join the replacing flight");
    s.load(3, "a2", "good");
    s.joined(3, "j");
    s.is("j", "good");
    s.emit(f, "undecodable value: joiners of the replacement", "callers arriving while the replacement loads join it and get the new value", true);

    let mut s = Script::new(base_policy(), false);
    bad_write(&s);
    s.call(1, "a", "k", &[NS]);
    s.other_set(2, "k", "fixed", None);
    s.replacing(3, "a2", "k", bad);
    s.is("a2", "fixed");
    assert_eq!(s.stat("loads"), 0);
    s.emit(f, "undecodable value already replaced", "only the exact bytes reported are distrusted: another process's newer entry is served", true);

    // get: the hit becomes a miss, and the entry is counted corrupt (once, not as a hit too).
    let swr = pol(json!({"soft_ttl_ms": 100, "hard_ttl_ms": 3000}));
    for (at, source) in [(1, Source::Fresh), (200, Source::Stale)] {
        let mut s = Script::new(swr.clone(), false);
        bad_write(&s);
        s.op(at, "g", json!({"op": "get", "key": "k", "gen_keys": [NS]}));
        assert_eq!(s.source("g"), Some(source));
        s.get_undecodable(at, "g", bad, source);
        assert_eq!(
            (s.stat("hits_fresh"), s.stat("hits_stale"), s.stat("misses"), s.stat("corrupt_entries")),
            (0, 0, 1, 1)
        );
        let name = format!("get of an undecodable {} value", if at == 1 { "fresh" } else { "stale" });
        s.emit(f, &name, "a get whose value the host cannot decode answers missing: one miss and one corrupt entry, and the hit it was counted as is taken back", true);
    }

    // Two callers got the same undecodable answer: one replacement, the other joins it.
    let mut s = Script::new(base_policy(), false);
    bad_write(&s);
    s.call(1, "a", "k", &[NS]);
    s.call(1, "b", "k", &[NS]);
    s.replacing(2, "a2", "k", bad);
    s.replacing(2, "b2", "k", bad);
    assert_eq!(s.tickets["b2"], "join", "the second report joins the first's replacement");
    s.load(3, "a2", "good");
    s.joined(3, "b2");
    s.is("b2", "good");
    assert_eq!(
        (s.stat("loads"), s.stat("corrupt_entries"), s.stat("coalesced"), s.stat("misses"), s.stat("hits_fresh")),
        (1, 1, 1, 2, 0)
    );
    s.emit(f, "undecodable value reported twice", "callers reporting the same undecodable bytes share one replacement load: one corrupt entry, the second counted as its joiner", true);

    // get_or_load: one miss and one corrupt entry, not also a hit.
    let mut s = Script::new(base_policy(), false);
    bad_write(&s);
    s.call(1, "a", "k", &[NS]);
    s.replacing(2, "a2", "k", bad);
    s.load(3, "a2", "good");
    assert_eq!(
        (s.stat("hits_fresh"), s.stat("misses"), s.stat("corrupt_entries"), s.stat("loads")),
        (0, 1, 1, 1)
    );
    s.emit(f, "undecodable value: counted once", "the caller whose answer did not decode counts a corrupt entry and a miss (its load), not also the hit it first read", true);
}

/// A value served ahead of a refresh (`Action::Serve`) that the host cannot decode.
fn served_undecodable(f: &mut File) {
    let bad = b"\xffnot json";
    let swr = pol(json!({"soft_ttl_ms": 100, "hard_ttl_ms": 3000}));
    let bad_write = |s: &Script, now: u64| {
        let mut w = write("k", "", None);
        w.value = bad.to_vec().into();
        s.other(now, &karlton_core::flow::set_op(&w, &s.policy, T0 + now, 9));
    };

    // Stale, with the refresh lease: the refresh answers the caller; no lease changes hands.
    let mut s = Script::new(swr.clone(), false);
    bad_write(&s, 0);
    s.call(200, "a", "k", &[NS]);
    assert!(matches!(s.act["a"], Action::Serve(_)));
    s.replace_served(200, "a");
    assert_eq!(s.tickets["a"], "lead");
    assert!(matches!(s.act["a"], Action::StartLoad { .. }), "{:?}", s.act["a"]);
    s.got.remove("a");
    s.load(210, "a", "good");
    s.is("a", "good");
    s.call(220, "b", "k", &[NS]);
    s.is("b", "good");
    assert_eq!(
        (s.stat("hits_stale"), s.stat("misses"), s.stat("corrupt_entries"), s.stat("loads"), s.stat("hits_fresh")),
        (0, 1, 1, 1, 1)
    );
    s.emit(f, "served stale value undecodable: the refresh answers", "a stale value served ahead of its refresh does not decode: the call leads again with the lease it holds, loads, fills over the bad bytes and answers the loaded value; one corrupt entry and one miss, not a stale hit", true);

    // The joiners that shared the stale serve report the same bytes: they join the replacement.
    let mut s = Script::new(swr.clone(), true);
    bad_write(&s, 0);
    s.call(200, "a", "k", &[NS]);
    assert_eq!(s.call(200, "j", "k", &[NS]), "join");
    let mut e = entry("", false, 100);
    e.value = bad.to_vec();
    e.hard_at = T0 + 3000;
    s.fast_read(201, "a", Ok(fast_replies(201, Some(&e))));
    assert!(matches!(s.act.get("a"), Some(Action::Serve(_))), "{:?}", s.act.get("a"));
    s.replace_served(201, "a");
    s.joined(202, "j");
    assert_eq!(s.source("j"), Some(Source::Stale), "the joiner shared the serve");
    s.got.remove("j");
    s.replacing(202, "j", "k", bad);
    assert_eq!(s.tickets["j"], "join", "same bytes: it joins the leader's replacement");
    s.got.remove("a");
    s.load(210, "a", "good");
    s.joined(210, "j");
    s.is("a", "good");
    s.is("j", "good");
    assert_eq!((s.stat("corrupt_entries"), s.stat("loads")), (1, 1));
    s.emit(f, "served stale value undecodable: joiners follow", "joiners that shared the undecodable stale serve report the same bytes and join the leader's replacement: one load, one corrupt entry", true);

    // A joiner reported the bytes first: it leads a replacement and waits on this call's
    // lease; this call still refreshes (it holds the lease) and the corrupt entry counts once.
    let mut s = Script::new(swr.clone(), true);
    bad_write(&s, 0);
    s.call(200, "a", "k", &[NS]);
    assert_eq!(s.call(200, "j", "k", &[NS]), "join");
    s.fast_read(201, "a", Ok(fast_replies(201, Some(&e))));
    s.joined(201, "j");
    s.got.remove("j");
    s.replacing(201, "j", "k", bad);
    assert_eq!(s.tickets["j"], "lead");
    assert!(matches!(s.act.get("j"), Some(Action::FastRead { .. }) | Some(Action::Wait { .. })), "{:?}", s.act.get("j"));
    s.replace_served(201, "a");
    s.got.remove("a");
    s.load(210, "a", "good");
    s.is("a", "good");
    s.drive(211, "j", "unused");
    s.is("j", "good");
    assert_eq!((s.stat("corrupt_entries"), s.stat("loads")), (1, 1));
    s.emit(f, "served stale value undecodable: reported first by a joiner", "the joiner's replacement waits on the lease the served call holds and reads its fill; the bytes count one corrupt entry", true);

    // Served stale after a soft load timeout: keep waiting for the running loader.
    let mut s = Script::new(pol(json!({"soft_ttl_ms": 100, "hard_ttl_ms": 200, "stale_if_error_ms": 5000, "load_soft_timeout_ms": 50})), false);
    bad_write(&s, 0);
    s.call(300, "a", "k", &[NS]);
    let Some(Action::StartLoad { timeout_at: Some(t) }) = s.act.get("a").cloned() else { panic!("{:?}", s.act.get("a")) };
    s.feed(t - T0, "a", Input::Timeout);
    assert_eq!(s.source("a"), Some(Source::StaleOnTimeout));
    s.replace_served(t - T0, "a");
    assert!(matches!(s.act.get("a"), Some(Action::AwaitLoad { .. })), "{:?}", s.act.get("a"));
    s.got.remove("a");
    s.feed(t - T0 + 10, "a", Input::LoadFailed("db down".into()));
    s.run(t - T0 + 10, "a");
    assert!(s.err("a").contains("db down"), "the undecodable stale value is not served on error either");
    assert_eq!((s.stat("stale_if_error"), s.stat("corrupt_entries"), s.stat("load_errors")), (0, 1, 1));
    s.emit(f, "served on soft timeout, undecodable: await the load", "a stale value served after the soft load timeout does not decode: the call waits for the loader already running; if it fails the caller gets the error, never the bad bytes", true);

    // Anything but a served call: a protocol error that ends the call and strands nobody.
    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    s.call(0, "j", "k", &[NS]);
    s.replace_served(0, "a");
    assert!(s.err("a").contains("Protocol"));
    assert_eq!(s.joined(1, "j"), "lead", "its joiner runs again");
    s.drive(1, "j", "v");
    s.replace_served(2, "ghost");
    assert!(s.err("ghost").contains("Protocol"));
    s.emit(f, "protocol: replace_served without a serve", "replace_served is only for a call whose last action was Serve: otherwise the call ends with a protocol error and its joiners run again", true);
}

fn stale(f: &mut File) {
    let swr = pol(json!({"soft_ttl_ms": 100, "hard_ttl_ms": 3000}));
    for bg_ok in [true, false] {
        let mut s = Script::new(swr.clone(), false);
        s.other_set(0, "k", "old", None);
        s.call(200, "a", "k", &[NS]);
        assert!(matches!(s.act["a"], Action::Serve(_)));
        assert_eq!(s.source("a"), Some(Source::Stale));
        s.call(200, "j", "k", &[NS]);
        assert_eq!(s.tickets["j"], "lead", "the flight ended at the serve: a later caller leads");
        assert_eq!(s.source("j"), Some(Source::Stale), "and is served stale while a refreshes");
        s.feed(201, "j", Input::Continue);
        s.run(201, "j");
        s.feed(201, "a", Input::Continue);
        s.run(201, "a");
        if bg_ok {
            s.load(250, "a", "new");
            assert!(s.act.get("a").is_none());
        } else {
            s.feed(250, "a", Input::LoadFailed("db down".into()));
            s.run(250, "a");
            assert_eq!(s.event_kinds(), vec!["background_error"]);
        }
        // j's background part saw a's lease and waits; end it by its wait deadline.
        while let Some(Action::Wait { until_ms }) = s.act.get("j").cloned() {
            s.feed(until_ms - T0, "j", Input::Timeout);
            s.run(until_ms - T0, "j");
        }
        let name = if bg_ok { "stale serve, background refresh" } else { "stale serve, background refresh fails" };
        s.emit(f, name, "stale-while-revalidate: the caller is served at once and the refresh goes on; a failed refresh is an event, not an answer", true);
    }
    // A joiner that arrives while the leader's fast read is out shares the stale serve.
    let mut s = Script::new(swr, true);
    s.other_set(0, "k", "old", None);
    s.call(200, "a", "k", &[NS]);
    assert_eq!(s.call(200, "j", "k", &[NS]), "join");
    let mut e = entry("old", false, 100);
    e.hard_at = T0 + 3000;
    s.fast_read(201, "a", Ok(fast_replies(201, Some(&e))));
    assert!(s.got.contains_key("a") || matches!(s.act.get("a"), Some(Action::Serve(_))), "{:?}", s.act.get("a"));
    s.joined(202, "j");
    assert_eq!(s.source("j"), Some(Source::Stale), "the joiner shares the stale serve");
    s.drive(203, "a", "new");
    s.emit(f, "stale serve shared with a joiner", "the fast read does not decide a stale entry: the flow reads it, serves it stale to the leader and its joiners, and refreshes once", true);
}

fn fast_reads(f: &mut File) {
    let fresh = entry("hot", false, 1000);
    for (name, replies, hit) in [
        ("fast read: fresh hit", fast_replies(0, Some(&fresh)), Some("hot")),
        ("fast read: negative hit", fast_replies(0, Some(&entry("", true, 1000))), None),
        ("fast read: miss", fast_replies(0, None), None),
        ("fast read: garbage replies", vec![RedisValue::Int(3)], None),
    ] {
        let mut s = Script::new(base_policy(), true);
        s.call(0, "a", "k", &[]);
        s.call(0, "j", "k", &[]);
        s.fast_read(1, "a", Ok(replies));
        let negative = name.contains("negative");
        if let Some(v) = hit {
            s.is("a", v);
        } else if negative {
            assert_eq!(s.stat("negative_hits"), 1);
        } else {
            assert!(matches!(s.act["a"], Action::StartLoad { .. }), "{name}: {:?}", s.act.get("a"));
            s.load(2, "a", "v");
        }
        s.joined(3, "j");
        s.emit(f, name, "the fast read is the flight's first step: a fresh hit answers leader and joiners, anything else hands over to the flow", true);
    }
    let mut s = Script::new(base_policy(), true);
    s.call(0, "a", "k", &[]);
    s.fast_read(1, "a", Err("connection refused"));
    s.drive(2, "a", "v");
    s.is("a", "v");
    assert_eq!(s.stat("store_errors"), 1, "one failure, not two");
    s.emit(f, "fast read: store error", "a failed fast read is handed to the flow as its read's failure: a down store costs one failure", true);

    for (name, replies) in [
        ("get: fast hit", Ok(fast_replies(0, Some(&fresh)))),
        ("get: fast miss reads through the script", Ok(fast_replies(0, None))),
        ("get: fast read error", Err("timeout")),
    ] {
        let mut s = Script::new(base_policy(), true);
        s.op(0, "g", json!({"op": "get", "key": "k"}));
        s.fast_read(1, "g", replies);
        assert!(s.got.contains_key("g"), "{name}: answered");
        s.emit(f, name, "a one-op get on a store with a fast read", true);
    }
}

fn ops(f: &mut File) {
    let set = |v: &str, version: Value| {
        json!({"op": "set", "write": {"key": "k", "gen_keys": [NS], "tags": [], "value": karlton_core::store::hex::encode(&enc(v)), "codec": 1, "version": version}})
    };
    let mut s = Script::new(base_policy(), false);
    s.op(0, "w", set("v", json!(null)));
    assert_eq!(s.got["w"], Ok(Reply::Stored(true)));
    s.op(1, "g", json!({"op": "get", "key": "k", "gen_keys": [NS]}));
    s.is("g", "v");
    s.emit(f, "set then get", "write-through stores; a get reads it back as a fresh hit", true);

    let mut s = Script::new(base_policy(), false);
    s.op(0, "w1", set("v9", json!(9)));
    s.op(1, "w2", set("v3", json!(3)));
    assert_eq!(s.got["w2"], Ok(Reply::Stored(false)));
    assert_eq!(s.stat("fills_rejected"), 1);
    s.emit(f, "set refused by version", "a set never lowers a version: refused and counted", true);

    for present in [true, false] {
        let mut s = Script::new(base_policy(), false);
        if present {
            s.other_set(0, "k", "v", None);
        }
        s.op(1, "i", json!({"op": "invalidate", "key": "k", "mode": "delete"}));
        assert_eq!(s.got["i"], Ok(Reply::Invalidated(present)));
        s.emit(f, &format!("invalidate, entry {}", if present { "present" } else { "absent" }), "invalidate answers whether an entry was there", true);
    }

    let mut s = Script::new(base_policy(), false);
    s.other_set(0, "k", "v", None);
    s.op(1, "b", json!({"op": "bump", "gen_key": NS}));
    assert!(matches!(s.got["b"], Ok(Reply::Bumped(_))));
    s.op(2, "g", json!({"op": "get", "key": "k", "gen_keys": [NS]}));
    assert_eq!(s.got["g"], Ok(Reply::Missing));
    s.emit(f, "bump orphans the entry", "after a bump the entry's stamped generation is old: a get misses", true);

    let mut s = Script::new(pol(json!({"soft_ttl_ms": 100})), false);
    s.other_set(0, "k", "v", None);
    s.op(500, "g", json!({"op": "get", "key": "k", "gen_keys": [NS]}));
    assert_eq!(s.source("g"), Some(Source::Stale));
    s.op(500, "m", json!({"op": "get", "key": "nope", "gen_keys": [NS]}));
    assert_eq!(s.got["m"], Ok(Reply::Missing));
    s.emit(f, "get stale and get miss", "a get serves a stale value as stale and a missing one as missing; it never loads", true);

    for (what, op) in [
        ("set", set("v", json!(null))),
        ("invalidate", json!({"op": "invalidate", "key": "k", "mode": "delete"})),
        ("bump", json!({"op": "bump", "gen_key": NS})),
        ("get", json!({"op": "get", "key": "k"})),
    ] {
        let mut s = Script::new(base_policy(), false);
        s.op_hold(0, "o", op);
        s.feed(0, "o", Input::StoreFailed(StoreFailure { message: "down".into() }));
        assert!(s.got.contains_key("o"));
        assert_eq!(s.stat("store_errors"), 1, "{what}");
        s.emit(f, &format!("{what}: store error"), "a one-op call whose store call failed answers an error (or a miss for get, by policy) and counts store_errors", true);
    }
}

fn waits_and_failures(f: &mut File) {
    // Another process holds the lease and fills: the leader waits, then reads its value.
    let mut s = Script::new(base_policy(), false);
    s.other_lease(0, "k");
    s.call(0, "a", "k", &[NS]);
    s.call(1, "j", "k", &[NS]);
    let Some(Action::Wait { until_ms }) = s.act.get("a").cloned() else { panic!("a waits") };
    s.other_set(5, "k", "theirs", None);
    s.feed(until_ms - T0, "a", Input::Timeout);
    s.run(until_ms - T0, "a");
    s.is("a", "theirs");
    s.joined(until_ms - T0, "j");
    s.is("j", "theirs");
    assert_eq!((s.stat("lease_waits"), s.stat("coalesced"), s.stat("hits_fresh")), (1, 1, 2));
    s.emit(f, "lease held elsewhere: leader waits, joiner shares", "only the leader waits on the store lease (one lease_wait); its joiner shares what it got", true);

    for on_timeout in ["error", "load"] {
        let mut s = Script::new(pol(json!({ "on_lock_timeout": on_timeout })), false);
        s.other_lease(0, "k");
        s.call(0, "a", "k", &[NS]);
        s.call(1, "j", "k", &[NS]);
        let end = s.drive(0, "a", "mine");
        s.joined(end, "j");
        if on_timeout == "error" {
            assert!(s.err("a").contains("LockTimeout"), "{}", s.err("a"));
            assert_eq!(s.err("a"), s.err("j"));
        } else {
            s.is("a", "mine");
            s.is("j", "mine");
        }
        s.emit(f, &format!("lock wait times out ({on_timeout}), joiner shares"), "the leader alone waits out lock_wait; what on_lock_timeout gives it (an error or its own load) is its joiners' answer too", true);
    }

    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    s.call(1, "j", "k", &[NS]);
    s.feed(2, "a", Input::LoadFailed("db down".into()));
    s.run(2, "a");
    s.joined(2, "j");
    assert!(s.err("j").contains("db down"));
    s.emit(f, "loader fails, joiner shares the error", "a loader error is shared with joiners (counted as misses), not retried per joiner", true);

    let mut s = Script::new(pol(json!({"soft_ttl_ms": 100, "hard_ttl_ms": 200, "stale_if_error_ms": 5000})), false);
    s.other_set(0, "k", "old", None);
    s.call(300, "a", "k", &[NS]);
    s.call(300, "j", "k", &[NS]);
    s.feed(301, "a", Input::LoadFailed("db down".into()));
    s.run(301, "a");
    s.joined(301, "j");
    assert_eq!(s.source("j"), Some(Source::StaleOnError));
    assert_eq!(s.stat("stale_if_error"), 2);
    s.emit(f, "stale-if-error shared", "past hard expiry a failed load serves the kept stale value; the joiner gets it too and counts stale_if_error", true);

    let mut s = Script::new(pol(json!({"soft_ttl_ms": 100, "hard_ttl_ms": 200, "stale_if_error_ms": 5000, "load_soft_timeout_ms": 50})), false);
    s.other_set(0, "k", "old", None);
    s.call(300, "a", "k", &[NS]);
    s.call(300, "j", "k", &[NS]);
    let Some(Action::StartLoad { timeout_at: Some(t) }) = s.act.get("a").cloned() else { panic!("{:?}", s.act.get("a")) };
    s.feed(t - T0, "a", Input::Timeout);
    s.joined(t - T0, "j");
    assert_eq!(s.source("j"), Some(Source::StaleOnTimeout));
    // The load goes on in the background and fills.
    s.feed(t - T0, "a", Input::Continue);
    s.run(t - T0, "a");
    if matches!(s.act.get("a"), Some(Action::AwaitLoad { .. })) {
        s.load(t - T0 + 10, "a", "new");
    }
    s.emit(f, "soft load timeout serves stale to leader and joiner", "a slow load past load_soft_timeout serves the stale value to every waiting caller and keeps loading", true);
}

fn protocol(f: &mut File) {
    let mut s = Script::new(base_policy(), false);
    s.feed(0, "ghost", Input::Timeout);
    assert!(s.err("ghost").contains("Protocol"));
    s.emit(f, "protocol: feed to an unknown call", "an input for a call the coordinator never handed out is a protocol error", true);

    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    s.call(1, "j", "k", &[NS]);
    s.fast_read(1, "a", Ok(vec![]));
    assert!(s.err("a").contains("Protocol"));
    assert_eq!(s.joined(2, "j"), "lead", "the misused flight does not strand its joiner");
    s.cancel(2, "j");
    s.emit(f, "protocol: fast read replies to a store without one", "a protocol error ends the call and its joiners run again", true);

    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    s.joined(1, "a");
    assert!(s.err("a").contains("Protocol"));
    s.cancel(1, "a");
    s.emit(f, "protocol: joined on a leader", "asking a leader's call id for a joiner's answer is a protocol error", true);

    let mut s = Script::new(base_policy(), false);
    s.other_lease(0, "k");
    s.call(0, "a", "k", &[NS]);
    assert!(matches!(s.act["a"], Action::Wait { .. }));
    s.feed(1, "a", Input::Continue);
    assert!(s.err("a").contains("Protocol"));
    s.emit(f, "protocol: continue while waiting", "Continue is only for a call that was served (or whose load passed its soft timeout): in a lease wait it is a protocol error that ends the call", true);

    let mut s = Script::new(base_policy(), false);
    s.op(0, "i", json!({"op": "invalidate", "key": "k", "mode": "delete"}));
    s.got.remove("i");
    s.feed(1, "i", Input::Timeout);
    assert!(s.err("i").contains("Protocol"));
    s.emit(f, "protocol: feed to a finished op", "a call that answered is gone: more input is a protocol error", true);
}

fn keys_and_skew(f: &mut File) {
    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k1", &[NS]);
    s.call(0, "b", "k2", &[NS]);
    assert_eq!(s.tickets["b"], "lead", "another key is another flight");
    s.call(1, "j1", "k1", &[NS]);
    s.call(1, "j2", "k2", &[NS]);
    s.load(2, "b", "two");
    s.joined(2, "j2");
    s.load(3, "a", "one");
    s.joined(3, "j1");
    s.is("j1", "one");
    s.is("j2", "two");
    s.emit(f, "two keys, two flights", "flights are per key: each joiner gets its own key's value", true);

    let mut s = Script::new(base_policy(), false);
    s.call(0, "a", "k", &[NS]);
    s.load(1, "a", "v");
    assert_eq!(s.call(2, "b", "k", &[NS]), "lead", "after the flight ended a caller starts its own; its read finds the fill");
    assert_eq!(s.stat("loads"), 1);
    s.is("b", "v");
    s.emit(f, "a caller after the flight ended reads", "a finished flight takes no joiners; the next caller's read finds the fill", true);

    // The store clock runs 5 s ahead: a read teaches the skew; a set stamps store time.
    let mut s = Script::new(base_policy(), false);
    s.steps.push(json!({ "now": T0, "call": "a", "do": "get_or_load", "key": "k", "gen_keys": [NS] }));
    let t = s.c.get_or_load(T0, karlton_core::Request { key: "k".into(), gen_keys: vec![NS.into()], tags: vec![] }, s.policy.clone());
    s.ticket("a", t);
    let Some(Action::Store(op)) = s.act.get("a").cloned() else { panic!() };
    let reply = s.store.apply(T0 + 5000, &op);
    s.feed(0, "a", Input::Store(reply));
    s.load(1, "a", "v");
    s.op_hold(2, "w", json!({"op": "set", "write": {"key": "k2", "gen_keys": [], "tags": [], "value": "22", "codec": 1, "version": null}}));
    let Some(Action::Store(StoreOp::Fill { soft_at, .. })) = s.act.get("w").cloned() else { panic!("{:?}", s.act.get("w")) };
    assert_eq!(soft_at, T0 + 2 + 5000 + 1000, "soft_ttl counted from the store's clock");
    s.run(2, "w");
    s.emit(f, "skew learned from a read stamps a set", "set computes soft/hard expiry on the store clock learned from the last read (store − local = 5000 ms)", true);
}
