// Per-call cost of karlton.wasm in Node's WebAssembly: the scalar decide and one karlton_call.
// Prints one JSON line (ns per call); the Rust benchmark (karlton-wasm-bench) runs this and puts
// the figures next to wasmtime's and native Rust's.
//   node wasm/js/bench.mjs [path/to/karlton.wasm]
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { load } from "./karlton-wasm.mjs";
import { REQUESTS } from "./bench-requests.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const path = process.argv[2] ?? process.env.KARLTON_WASM ?? join(here, "..", "dist", "karlton.wasm");
const k = await load(readFileSync(path));

function time(n, f) {
  for (let i = 0; i < Math.min(n, 20_000); i++) f(i); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f(i);
  return Number(process.hrtime.bigint() - t0) / n;
}

const out = {};
// Scalar decide through the raw export (BigInt arguments, as the ABI takes u64).
const soft = 1_700_000_010_000n, hard = 1_700_000_060_000n;
const nows = Array.from({ length: 1024 }, (_, i) => 1_700_000_000_000n + BigInt(i * 97));
let sink = 0;
out.decide_raw_ns = time(2_000_000, (i) => { sink += k.decideCode(nows[i & 1023], soft, hard, 250n, 1.0, 3_600_000n, BigInt(i)); });
// The typed wrapper (numbers in, string out: checks and BigInt conversions included).
out.decide_typed_ns = time(500_000, (i) => { sink += k.decide(1_700_000_000_000 + (i & 1023), 1_700_000_010_000, 1_700_000_060_000, 250, 1.0, 3_600_000, i).length; });
for (const [name, req] of Object.entries(REQUESTS)) {
  out[`call_${name}_ns`] = time(200_000, () => { sink += k.callRaw(req).length; });
}
out.sink = sink > 0;
console.log(JSON.stringify(out));
