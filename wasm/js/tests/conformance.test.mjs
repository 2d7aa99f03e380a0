// The conformance vectors (tests/vectors/*.json) and the differential fixtures written by the
// wasmtime host's tests (wasm/dist/fixtures-*.json) through the module in Node's WebAssembly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { fresh, repoRoot, distDir } from "./helpers.mjs";
import { evalCase, parseBig, stringifyBig } from "./vectors.mjs";

const vectorDir = join(repoRoot, "tests", "vectors");
const vectorFiles = existsSync(vectorDir) ? readdirSync(vectorDir).filter((f) => f.endsWith(".json")).sort() : [];

/** Deep JSON equality (object key order ignored, u64 exact). */
function same(a, b) {
  return stringifyBig(sortKeys(a)) === stringifyBig(sortKeys(b));
}
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object" && typeof v !== "bigint") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

test("conformance vectors through the module", { skip: vectorFiles.length === 0 && "tests/vectors/ not present yet" }, async (t) => {
  let total = 0;
  for (const file of vectorFiles) {
    const doc = parseBig(readFileSync(join(vectorDir, file), "utf8"));
    // Per-file floors: fewer cases means the file lost cases (wasmtime checks the same).
    const floor = { coordinator: 60 }[doc.kind] ?? 1;
    await t.test(file, async () => {
      const k = await fresh();
      const failures = [];
      let n = 0;
      for (const c of doc.cases) {
        let got;
        try {
          got = evalCase(k, doc.kind, c.input);
        } catch (e) {
          got = { threw: String(e) };
        }
        const pass = same(got, c.expect);
        if (pass && c.pending) failures.push(`${c.name}: pending case passes (the bug was fixed; drop \`pending\`)`);
        if (!pass && !c.pending) failures.push(`${c.name}\n  expected ${stringifyBig(c.expect)}\n  got      ${stringifyBig(got)}`);
        total++;
        n++;
      }
      assert.deepEqual(failures, [], `${file}: ${failures.length} failing`);
      assert.ok(n >= floor, `${file}: only ${n} cases ran (floor ${floor})`);
      t.diagnostic(`${file}: ${n} cases`);
    });
  }
  assert.ok(total > 0);
});

const fixtureFiles = existsSync(distDir) ? readdirSync(distDir).filter((f) => /^fixtures-.*\.json$/.test(f)).sort() : [];

test("differential fixtures: same bytes as native Rust and wasmtime", { skip: fixtureFiles.length === 0 && "run the wasmtime host tests first (scripts/test-wasm.sh)" }, async (t) => {
  for (const file of fixtureFiles) {
    await t.test(file, async () => {
      const cases = JSON.parse(readFileSync(join(distDir, file), "utf8"));
      const k = await fresh(); // flows replay handle numbers from a fresh instance
      let n = 0;
      for (const { request, reply } of cases) {
        assert.equal(k.callRaw(request), reply, request);
        n++;
      }
      assert.ok(n > 0);
    });
  }
});
