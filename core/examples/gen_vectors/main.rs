//! Generates the conformance vectors in `tests/vectors/` from the real core.
//!
//! ```text
//! cargo run -p karlton-core --example gen_vectors            # rewrite tests/vectors/*.json
//! cargo run -p karlton-core --example gen_vectors -- --check # fail if a file would change
//! ```
//!
//! Expected values come from running karlton-core, but they are not taken on trust: most key,
//! policy, freshness and store cases carry a hand-written expectation that the generator asserts
//! equals the core's answer, every flow script asserts the kind of every step and its final
//! result, and cases where the core disagrees with the hand-written expectation are emitted with a
//! `pending` note (a known core bug) and the hand-written expectation, never the core's answer.

#[path = "../../tests/vectors/eval.rs"]
mod eval;

mod gen_coordinator;
mod gen_eviction;
mod gen_flows;
mod gen_simple;

use serde_json::{Value, json};
use std::path::PathBuf;

/// One vector file under construction.
pub struct File {
    kind: &'static str,
    description: &'static str,
    cases: Vec<Value>,
}

impl File {
    /// An empty file of this kind.
    pub fn new(kind: &'static str, description: &'static str) -> File {
        File { kind, description, cases: Vec::new() }
    }

    /// A case whose expectation is the core's answer (checked by other means, see `why`).
    pub fn add(&mut self, name: &str, why: &str, input: Value) -> Value {
        let expect = eval::eval(self.kind, &input);
        self.push(name, why, input, expect.clone(), None);
        expect
    }

    /// A case with a hand-written expectation; the core must agree.
    pub fn hand(&mut self, name: &str, why: &str, input: Value, expect: Value) {
        let got = eval::eval(self.kind, &input);
        assert_eq!(
            got, expect,
            "{}: {name}: core disagrees with the hand-written expectation",
            self.kind
        );
        self.push(name, why, input, expect, None);
    }

    /// A case the core currently gets wrong: the hand-written expectation is emitted with a
    /// `pending` note. The generator fails if the core already agrees (then use `hand`).
    pub fn pending(&mut self, name: &str, why: &str, input: Value, expect: Value, bug: &str) {
        let got = eval::eval(self.kind, &input);
        if got == expect {
            // Fixed in the core: the case is an ordinary hand-checked one now.
            self.push(name, why, input, expect, None);
            return;
        }
        eprintln!("PENDING {}: {name}\n  expected {expect}\n  core     {got}", self.kind);
        self.push(name, why, input, expect, Some(bug));
    }

    fn push(&mut self, name: &str, why: &str, input: Value, expect: Value, bug: Option<&str>) {
        assert!(
            !self.cases.iter().any(|c| c["name"] == name),
            "{}: duplicate case name {name}",
            self.kind
        );
        let mut c = serde_json::Map::new();
        c.insert("name".into(), json!(name));
        c.insert("why".into(), json!(why));
        if let Some(b) = bug {
            c.insert("pending".into(), json!(b));
        }
        c.insert("input".into(), input);
        c.insert("expect".into(), expect);
        self.cases.push(Value::Object(c));
    }

    fn render(&self) -> String {
        // One case per line keeps diffs readable and files greppable.
        let mut s = String::new();
        s.push_str("{\n  \"kind\": ");
        s.push_str(&serde_json::to_string(self.kind).unwrap());
        s.push_str(",\n  \"format\": 1,\n  \"description\": ");
        s.push_str(&serde_json::to_string(self.description).unwrap());
        s.push_str(",\n  \"cases\": [\n");
        for (i, c) in self.cases.iter().enumerate() {
            s.push_str("    ");
            s.push_str(&serde_json::to_string(c).unwrap());
            s.push_str(if i + 1 < self.cases.len() { ",\n" } else { "\n" });
        }
        s.push_str("  ]\n}\n");
        s
    }
}

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors");
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        ("keys.json", gen_simple::keys()),
        ("policy.json", gen_simple::policy()),
        ("freshness.json", gen_simple::freshness()),
        ("entry.json", gen_simple::entry()),
        ("store.json", gen_simple::store()),
        ("writes.json", gen_simple::writes()),
        ("flows.json", gen_flows::flows()),
        ("eviction.json", gen_eviction::eviction()),
        ("coordinator.json", gen_coordinator::coordinator()),
    ];
    let mut stale = Vec::new();
    let mut total = 0;
    for (name, f) in files {
        let text = f.render();
        let path = dir.join(name);
        let pending = f.cases.iter().filter(|c| c.get("pending").is_some()).count();
        println!("{name:<16} {:>4} cases ({pending} pending)", f.cases.len());
        total += f.cases.len();
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(name);
            }
        } else {
            std::fs::write(&path, text).unwrap();
        }
    }
    println!("total            {total:>4} cases");
    assert!(stale.is_empty(), "out of date (re-run gen_vectors): {stale:?}");
}
