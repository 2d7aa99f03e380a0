// Regressions found by the cross-runtime differential fuzz test (tests/differential): inputs the
// loader's typed wrappers changed on the way to the module (JSON.stringify writes NaN and
// ±Infinity as null, drops undefined members) where Node, Python and Rust refuse them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fresh } from "./helpers.mjs";

const typeError = (re) => (e) => e instanceof TypeError && re.test(e.message);

test("key() and paramsHash() refuse params JSON cannot carry, naming the argument", async () => {
  const k = await fresh();
  for (const bad of [NaN, Infinity, -Infinity, [1, NaN], { a: { b: -Infinity } }]) {
    assert.throws(() => k.key({ namespace: "n", params: bad }), typeError(/^params.* must be a finite number/), String(bad));
    assert.throws(() => k.paramsHash(bad), typeError(/^params.* must be a finite number/), String(bad));
  }
  assert.throws(() => k.paramsHash({ a: [1, { b: NaN }] }), typeError(/^params\.a\[1\]\.b must be/));
  for (const bad of [{ a: undefined }, [undefined], { f() {} }, new Date(0), new Map(), { a: 1n }, { toJSON: () => 1 }]) {
    assert.throws(() => k.paramsHash(bad), TypeError, String(bad));
  }
  // plain data still hashes, and null params are "no params" (as in every runtime)
  assert.equal(k.key({ namespace: "n", params: null }).key, "n");
  assert.match(k.key({ namespace: "n", params: { a: [1, 2.5, "x", null, true] } }).key, /^n:#[0-9a-f]{32}$/);
});

test("key() refuses lone surrogates, naming the argument (never sends them as \\ud800 escapes)", async () => {
  const k = await fresh();
  assert.throws(() => k.key({ namespace: "\ud800" }), typeError(/^namespace is not valid Unicode/));
  assert.throws(() => k.key({ namespace: "n", segments: ["a", "x\udc00"] }), typeError(/^segments\[1\] is not valid Unicode/));
  assert.throws(() => k.key({ namespace: "n", tags: ["\ud83d"] }), typeError(/^tags\[0\] is not valid Unicode/));
  assert.throws(() => k.paramsHash({ "\ud800": 1 }), typeError(/not valid Unicode/));
  assert.equal(k.key({ namespace: "n", segments: ["\ud83d\ude00"] }).key, "n:\u{1f600}");
});

test("key() takes versions and maxLen exactly: safe integers or bigints, nothing rounded", async () => {
  const k = await fresh();
  for (const bad of [1e16, 2 ** 53, 31.3, -1, "7"]) {
    assert.throws(() => k.key({ namespace: "n", version: bad }), typeError(/^version must be/), String(bad));
    assert.throws(() => k.key({ namespace: "n", maxLen: bad }), typeError(/^maxLen must be/), String(bad));
  }
  assert.equal(k.key({ namespace: "n", version: 2n ** 64n - 1n }).key, "n:v18446744073709551615");
  assert.equal(k.key({ namespace: "n", version: 7 }).key, "n:v7");
  assert.equal(k.key({ namespace: "n", maxLen: 2n ** 64n - 1n }).key, "n");
});

test("policy() refuses a non-finite number naming the field (JSON would write null)", async () => {
  const k = await fresh();
  assert.throws(() => k.policy({ jitter: NaN }), typeError(/^policy\.jitter must be a finite number/));
  assert.throws(() => k.policy({ soft_ttl_ms: Infinity }), typeError(/^policy\.soft_ttl_ms must be a finite number/));
  assert.throws(() => k.policy({ lock_backoff_ms: [1, -Infinity] }), typeError(/^policy\.lock_backoff_ms\[1\] must be/));
  assert.equal(k.policy({ soft_ttl_ms: 1000 }).hard_ttl_ms, 1000);
});
