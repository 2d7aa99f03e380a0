//! Per-call cost of karlton.wasm vs native Rust, in one run:
//!
//! - the scalar decide: native `decide_code`, `karlton_decide` through wasmtime, and through
//!   Node's WebAssembly (raw export, BigInt arguments);
//! - one `karlton_call` (a JSON `decide` and a JSON `key_build`): the same dispatcher natively,
//!   through wasmtime, and through Node.
//!
//! `cargo run -p karlton-wasm-host --release --bin karlton-wasm-bench` (after building the
//! module; `scripts/test-wasm.sh --bench` does both). Node is `$NODE` or `node`; without it the
//! Node column is left out.

use karlton_wasm_host::{Plugin, default_module_path};
use std::hint::black_box;
use std::time::Instant;

fn time(n: u64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..n.min(20_000) {
        f(i);
    }
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// The requests both this benchmark and `wasm/js/bench.mjs` time.
fn requests() -> Vec<(String, String)> {
    let text = include_str!("../../../js/bench-requests.mjs");
    let block = text.split("// BENCH-REQUESTS-BEGIN").nth(1).and_then(|t| t.split("// BENCH-REQUESTS-END").next()).expect("request block");
    let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&format!("{{{block}}}")).expect("requests JSON");
    obj.into_iter().map(|(k, v)| (k, v.as_str().unwrap().to_owned())).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = default_module_path();
    let plugin = Plugin::from_file(&path)?;
    let mut k = plugin.instantiate()?;
    let soft = 1_700_000_010_000u64;
    let hard = 1_700_000_060_000u64;
    let now = |i: u64| 1_700_000_000_000 + (i & 1023) * 97;

    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    let native = time(20_000_000, |i| {
        black_box(karlton_wasm::api::decide_code(black_box(now(i)), soft, hard, 250, 1.0, 3_600_000, i));
    });
    let wasm = time(5_000_000, |i| {
        black_box(k.decide_code(now(i), soft, hard, 250, 1.0, 3_600_000, i).unwrap());
    });
    rows.push(("decide (scalar)".into(), native, wasm));
    let reqs = requests();
    for (name, req) in &reqs {
        let native = time(300_000, |_| {
            black_box(karlton_wasm::api::call(black_box(req.as_bytes())));
        });
        let wasm = time(300_000, |_| {
            black_box(k.call_bytes(req.as_bytes()).unwrap());
        });
        // Same reply both ways.
        assert_eq!(karlton_wasm::api::call(req.as_bytes()), k.call_bytes(req.as_bytes())?);
        rows.push((format!("karlton_call {name}"), native, wasm));
    }

    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../js/bench.mjs");
    let js: Option<serde_json::Value> = std::process::Command::new(&node)
        .arg(&script)
        .arg(&path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice(&o.stdout).ok());
    let js_ns = |row: usize| -> Option<f64> {
        let js = js.as_ref()?;
        let key = if row == 0 { "decide_raw_ns".to_owned() } else { format!("call_{}_ns", reqs[row - 1].0) };
        js[key].as_f64()
    };

    let size = std::fs::metadata(&path)?.len();
    println!("karlton.wasm: {} ({size} bytes)", path.display());
    println!("{:<26} {:>12} {:>12} {:>12} {:>10} {:>10}", "per call", "native ns", "wasmtime ns", "node ns", "wasmtime×", "node×");
    for (i, (name, n, w)) in rows.iter().enumerate() {
        let j = js_ns(i);
        println!(
            "{:<26} {:>12.1} {:>12.1} {:>12} {:>10.1} {:>10}",
            name,
            n,
            w,
            j.map_or("-".into(), |j| format!("{j:.1}")),
            w / n,
            j.map_or("-".into(), |j| format!("{:.1}", j / n)),
        );
    }
    if let Some(js) = &js {
        if let Some(t) = js["decide_typed_ns"].as_f64() {
            println!("{:<26} {:>12} {:>12} {:>12.1}   (JS wrapper: number checks + BigInt conversion)", "decide (node, typed)", "", "", t);
        }
    } else {
        println!("(node not found or failed: no Node column)");
    }
    Ok(())
}
