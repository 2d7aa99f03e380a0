//! Cross-runtime conformance vectors (`tests/vectors/*.json`) checked against karlton-core.
//!
//! Every case of every file is evaluated and compared with its `expect`; the test fails on any
//! mismatch, on a file with fewer cases than its floor (`tests/vectors/floors.txt`), on a missing file or an
//! unlisted one, and on a `pending`
//! case (a known core bug) that unexpectedly passes — drop its `pending` field then.
//! The format is documented in `tests/vectors/README.md`.

#[path = "vectors/eval.rs"]
mod eval;

use serde_json::Value;
use std::path::PathBuf;

/// Every vector file with the fewest cases it may hold, and the total floor: `floors.txt` next to
/// the files (shared by every runner; see the README there).
fn floors() -> (Vec<(String, usize)>, usize) {
    let path = dir().join("floors.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut files = Vec::new();
    let mut total = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut it = line.split_whitespace();
        let (name, n) = (it.next().unwrap(), it.next().unwrap_or_else(|| panic!("floors.txt: {line:?}")));
        let n: usize = n.parse().unwrap_or_else(|e| panic!("floors.txt: {line:?}: {e}"));
        if name == "total" {
            total = Some(n);
        } else {
            files.push((name.to_owned(), n));
        }
    }
    assert!(files.len() >= 9, "floors.txt lists only {} files", files.len());
    (files, total.expect("floors.txt: no `total` line"))
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

#[derive(Default)]
struct Tally {
    passed: usize,
    pending: usize,
    failures: Vec<String>,
}

fn check_file(file: &str, floor: usize, t: &mut Tally) -> usize {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: bad JSON: {e}"));
    let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{file}: no `kind`"));
    let cases = doc["cases"].as_array().unwrap_or_else(|| panic!("{file}: no `cases`"));
    let mut names = std::collections::HashSet::new();
    let (mut passed, mut pending) = (0, 0);
    for case in cases {
        let name = case["name"].as_str().unwrap_or_else(|| panic!("{file}: case without name"));
        if !names.insert(name) {
            t.failures.push(format!("{file}: duplicate case name {name:?}"));
        }
        let input = &case["input"];
        let expect = &case["expect"];
        let got = std::panic::catch_unwind(|| eval::eval(kind, input));
        let mut problem = match &got {
            Err(_) => Some("evaluation panicked".to_owned()),
            Ok(g) if g != expect => Some(format!(
                "\n    expected: {}\n    got:      {}",
                serde_json::to_string(expect).unwrap(),
                serde_json::to_string(g).unwrap()
            )),
            Ok(_) => None,
        };
        // keys: the value path (parse the params, then hash the value) must agree with the text path.
        if problem.is_none()
            && kind == "keys"
            && let Some(v) = eval::keys_value_path(input)
            && &v != expect
        {
            problem = Some(format!("value path differs: {v}"));
        }
        match (case.get("pending").and_then(Value::as_str), problem) {
            (None, None) => passed += 1,
            (None, Some(p)) => t.failures.push(format!("{file}: {name}: {p}")),
            (Some(_), Some(_)) => pending += 1,
            (Some(why), None) => t.failures.push(format!(
                "{file}: {name}: marked pending ({why}) but passes now: remove `pending`"
            )),
        }
    }
    if cases.len() < floor {
        t.failures.push(format!("{file}: {} cases, fewer than the floor {floor}", cases.len()));
    }
    println!(
        "{file:<16} kind={kind:<10} cases={:>4} passed={passed:>4} pending(known core bugs)={pending}",
        cases.len()
    );
    t.passed += passed;
    t.pending += pending;
    cases.len()
}

#[test]
fn conformance_vectors() {
    let mut t = Tally::default();
    let (floors, total_floor) = floors();
    let mut total = 0;
    for (file, floor) in &floors {
        total += check_file(file, *floor, &mut t);
    }
    println!("total cases={total} passed={} pending={}", t.passed, t.pending);
    if total < total_floor {
        t.failures.push(format!("{total} cases in all, fewer than the floor {total_floor}"));
    }
    // Every *.json file in the directory must be listed (so a new file cannot go unchecked).
    for e in std::fs::read_dir(dir()).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        if n.ends_with(".json") && !floors.iter().any(|(f, _)| *f == n) {
            t.failures.push(format!("{n}: not listed in floors.txt"));
        }
    }
    if std::env::var_os("KARLTON_VECTORS_STRICT").is_some() && t.pending > 0 {
        t.failures.push(format!("{} pending cases fail (KARLTON_VECTORS_STRICT)", t.pending));
    }
    assert!(t.failures.is_empty(), "{} vector failures:\n{}", t.failures.len(), t.failures.join("\n"));
}
