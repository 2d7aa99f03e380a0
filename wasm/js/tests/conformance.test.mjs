// The conformance vectors (tests/vectors/*.json) and the differential fixtures written by the
// wasmtime host's tests (wasm/dist/fixtures-*.json) through the module in Node's WebAssembly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { fresh, repoRoot, distDir } from "./helpers.mjs";
import { evalCase, parseBig, stringifyBig } from "./vectors.mjs";

const vectorDir = join(repoRoot, "tests", "vectors");

/** tests/vectors/floors.txt: every vector file with its case floor, and the total floor (the
 * manifest every runtime's runner reads). Missing manifest or directory: the test fails. */
function readFloors() {
  const files = new Map();
  let total;
  for (const raw of readFileSync(join(vectorDir, "floors.txt"), "utf8").split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const [name, n] = line.split(/\s+/);
    if (!/^\d+$/.test(n ?? "")) throw new Error(`floors.txt: bad line ${JSON.stringify(line)}`);
    if (name === "total") total = Number(n);
    else files.set(name, Number(n));
  }
  if (total === undefined) throw new Error("floors.txt: no `total` line");
  return { files, total };
}

/** Deep JSON equality (object key order ignored, u64 exact). */
function same(a, b) {
  return stringifyBig(sortKeys(a)) === stringifyBig(sortKeys(b));
}
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object" && typeof v !== "bigint") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

test("conformance vectors through the module", async (t) => {
  const floors = readFloors();
  const onDisk = readdirSync(vectorDir).filter((f) => f.endsWith(".json")).sort();
  const unlisted = onDisk.filter((f) => !floors.files.has(f));
  assert.deepEqual(unlisted, [], "vector files not listed in tests/vectors/floors.txt");
  let total = 0;
  for (const [file, floor] of floors.files) {
    // A listed file that is missing fails here (readFileSync throws), never skips.
    const doc = parseBig(readFileSync(join(vectorDir, file), "utf8"));
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
        n++;
      }
      total += n;
      assert.deepEqual(failures, [], `${file}: ${failures.length} failing`);
      assert.equal(n, doc.cases.length, `${file}: ran ${n} of its ${doc.cases.length} cases`);
      assert.ok(n >= floor, `${file}: only ${n} cases ran (floor ${floor})`);
      t.diagnostic(`${file}: ${n} cases`);
    });
  }
  t.diagnostic(`total: ${total} cases`);
  assert.ok(total >= floors.total, `only ${total} vector cases ran (floor ${floors.total})`);
});

const fixtureFiles = existsSync(distDir) ? readdirSync(distDir).filter((f) => /^fixtures-.*\.json$/.test(f)).sort() : [];

test("differential fixtures: same bytes as native Rust and wasmtime", async (t) => {
  // Written by the wasmtime host's tests, which scripts/test-wasm.sh runs first: none is a failure.
  assert.ok(fixtureFiles.length > 0, `no ${distDir}/fixtures-*.json: run the wasmtime host tests first (scripts/test-wasm.sh)`);
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
