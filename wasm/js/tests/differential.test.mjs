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
  for (const bad of [{ a: undefined }, [undefined], { f() {} }, new Date(0), new Map(), { toJSON: () => 1 }]) {
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

test("params take bigints (issue 9): the integer reaches the core exactly, hashed as Python's int", async () => {
  const k = await fresh();
  // Python: params_hash({'id': 10**18, 'neg': -(10**18), 'big': 9007199254740994}), Key('n', params={'id': 10**18})
  assert.equal(k.paramsHash({ id: 10n ** 18n, neg: -(10n ** 18n), big: 9007199254740994n }), "986a2a75b6673b53f178c53c44731689");
  assert.equal(k.key({ namespace: "n", params: { id: 10n ** 18n } }).key, "n:#9b025444362ecb99c8c3364ec9ecface");
  assert.equal(k.paramsHash([5n, -7n]), k.paramsHash([5, -7]));
  // beyond 2^53 only canonical integers (Python refuses 2**60 + 1 too), beyond 64 bits never
  assert.throws(() => k.paramsHash({ id: 2n ** 60n + 1n }), (e) => e.code === "key" && e.detail?.kind === "params");
  assert.throws(() => k.paramsHash({ a: [2n ** 64n] }), (e) => e instanceof RangeError && /^params\.a\[0\] must fit in 64 bits/.test(e.message));
  // a string holding the marker text is a string, not a bigint
  assert.notEqual(k.paramsHash(["\\udbff1"]), k.paramsHash([1]));
  assert.equal(k.paramsHash({ s: "\\udbff5" }), k.paramsHash(JSON.parse('{"s":"\\\\udbff5"}')));
});

test("policy() rounds fractional ms as every runtime does (half away from zero)", async () => {
  const k = await fresh();
  const p = k.policy({ soft_ttl_ms: 2.5, hard_ttl_ms: 1000.0, lock_backoff_ms: [0.5, 7.49], lock_wait_ms: -0.0 });
  assert.deepEqual([p.soft_ttl_ms, p.hard_ttl_ms, p.lock_backoff_ms, p.lock_wait_ms], [3, 1000, [1, 7], 0]);
  assert.throws(() => k.policy({ soft_ttl_ms: -0.5 }), (e) => e.code === "policy" && e.detail?.field === "soft_ttl_ms");
  assert.throws(() => k.policy({ stale_if_error_ms: 1e21 }), (e) => e.detail?.kind === "too_long" && e.detail?.field === "stale_if_error_ms");
  // a value only the module refuses names its field (was detail.field null)
  assert.throws(() => k.policy({ max_value_bytes: -1 }), (e) => e.detail?.kind === "json" && e.detail?.field === "max_value_bytes");
  assert.throws(() => k.policy({ on_store_error: 5 }), (e) => e.detail?.field === "on_store_error");
});

test("several bad arguments: the first in the one order of docs/value-model.md is reported", async () => {
  const k = await fresh();
  // keys: the module's namespace check comes before a segment the loader refuses
  assert.throws(() => k.key({ namespace: "", segments: ["\ud800"] }), (e) => e.code === "key" && e.detail?.kind === "empty_namespace");
  assert.throws(() => k.key({ namespace: "n".repeat(65), params: NaN }), (e) => e.detail?.kind === "namespace_too_long");
  assert.throws(() => k.key({ namespace: "n", params: { a: [[[]]] }, version: -1, maxLen: 1 }), typeError(/^version must be/));
  assert.throws(() => k.key({ namespace: "n", maxLen: 1, tags: ["\udc00"] }), (e) => e.detail?.kind === "max_len_too_small");
  // policies: fields in PolicySpec's order whatever the object's; conversion before values
  assert.throws(() => k.policy({ max_value_bytes: -1, jitter: NaN }), typeError(/^policy\.jitter must be a finite number/));
  assert.throws(() => k.policy({ jitter: NaN, soft_ttl_ms: true }), (e) => e.detail?.field === "soft_ttl_ms");
  assert.throws(() => k.policy({ jitter: NaN, soft_ttl_ms: 0 }), typeError(/^policy\.jitter/));
  assert.throws(() => k.policy({ soft_ttl_ms: 0, bogus: NaN }), (e) => e.detail?.field === "bogus");
});

test("entryDescribe() checks the policy before nowMs (the module's order, and Python's)", async () => {
  const k = await fresh();
  assert.throws(() => k.entryDescribe(new Uint8Array(0), -1, { stale_if_error_ms: 2 ** 40 + 1 }), (e) => e.code === "policy" && e.detail?.field === "stale_if_error_ms");
  assert.throws(() => k.entryDescribe(new Uint8Array(0), -1), typeError(/^nowMs must be/));
  assert.throws(() => k.entryDescribe(new Uint8Array(0), 5, { soft_ttl_ms: 0 }), (e) => e.code === "policy");
});
