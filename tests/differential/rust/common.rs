//! Shared by the Rust runners of the differential fuzz test (core/examples/diff_runner.rs and
//! wasm/host/examples/diff_runner_wasm.rs, which include this file by path): the case
//! encoding of tests/differential/gen.py rebuilt as Rust values, and the answer lines.
#![allow(dead_code)]

use serde_json::{Map, Number, Value, json};
use std::io::{BufRead, Write};

/// A failed case: the argument/field it names (or none) and the message.
pub struct Fail {
    pub field: Option<String>,
    pub msg: String,
    /// The module's error code and detail kind (the wasmtime runner).
    pub code: Option<String>,
    pub kind: Option<String>,
}

impl Fail {
    pub fn new(field: Option<String>, msg: impl std::fmt::Display) -> Fail {
        Fail {
            field,
            msg: msg.to_string(),
            code: None,
            kind: None,
        }
    }
}

pub fn fail(field: &str, msg: impl std::fmt::Display) -> Fail {
    Fail::new(Some(field.to_string()), msg)
}

/// A string from UTF-16 code units; a lone surrogate has no Rust `String`: an error naming `field`.
pub fn string(v: &Value, field: &str) -> Result<String, Fail> {
    let units: Vec<u16> = v["s"]
        .as_array()
        .ok_or_else(|| fail(field, "not a string"))?
        .iter()
        .map(|u| u.as_u64().unwrap_or(0) as u16)
        .collect();
    String::from_utf16(&units).map_err(|_| {
        fail(
            field,
            "not valid Unicode (a lone surrogate): no Rust String holds it",
        )
    })
}

pub fn int_text(v: &Value) -> Option<&str> {
    v.get("i").and_then(Value::as_str)
}

pub fn float(v: &Value) -> Option<f64> {
    v.get("f")
        .and_then(Value::as_str)
        .map(|t| t.parse::<f64>().expect("float text"))
}

/// An encoded value as a `serde_json::Value` (what a Rust user holds); integers beyond 64
/// bits, NaN and infinities have none.
pub fn value(v: &Value, field: &str) -> Result<Value, Fail> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if v.get("s").is_some() {
        return Ok(Value::String(string(v, field)?));
    }
    if let Some(t) = int_text(v) {
        if let Ok(n) = t.parse::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Value::from(n));
        }
        return Err(fail(
            field,
            format!("integer {t} beyond 64 bits: no serde_json number holds it"),
        ));
    }
    if let Some(f) = float(v) {
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| fail(field, format!("{f} is not a JSON number")));
    }
    if let Some(b) = v.get("b") {
        return Ok(b.clone());
    }
    if let Some(a) = v.get("a").and_then(Value::as_array) {
        return a
            .iter()
            .map(|x| value(x, field))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(o) = v.get("o").and_then(Value::as_array) {
        let mut m = Map::new();
        for kv in o {
            let k = string(&json!({"s": kv[0]}), field)?;
            let x = value(&kv[1], field)?;
            m.insert(k, x);
        }
        return Ok(Value::Object(m));
    }
    if let Some(n) = v.get("n").and_then(Value::as_array) {
        let depth = n[0].as_u64().unwrap_or(0);
        let mut out = value(&n[2], field)?;
        for _ in 0..depth {
            out = if n[1] == "a" {
                Value::Array(vec![out])
            } else {
                json!({ "k": out })
            };
        }
        return Ok(out);
    }
    Err(fail(field, "bad encoded value"))
}

/// A u64 argument: an integer in range, else an error naming `field`.
pub fn u64_arg(v: &Value, field: &str) -> Result<u64, Fail> {
    match int_text(v) {
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| fail(field, format!("{t} is not a u64"))),
        None => Err(fail(field, "not an integer")),
    }
}

/// Answers every case line of stdin with `answer`, one answer line each on stdout.
pub fn run(mut answer: impl FnMut(&Value) -> Result<Value, Fail>) {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        if line.is_empty() {
            continue;
        }
        let c: Value = serde_json::from_str(&line).expect("a case line");
        let a = match answer(&c) {
            Ok(ok) => json!({"id": c["id"], "ok": ok}),
            Err(f) => {
                json!({"id": c["id"], "err": f.field, "msg": f.msg, "code": f.code, "kind": f.kind})
            }
        };
        serde_json::to_writer(&mut out, &a).expect("stdout");
        out.write_all(b"\n").expect("stdout");
    }
    out.flush().expect("stdout");
}
