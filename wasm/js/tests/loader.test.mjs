import { test } from "node:test";
import assert from "node:assert/strict";
import { load, loadSync, Karlton, KarltonError, DECISIONS, bytesToHex } from "../karlton-wasm.mjs";
import { moduleBytes, compiledModule, fresh } from "./helpers.mjs";

test("the module has zero imports and the versioned ABI", () => {
  const m = compiledModule();
  assert.deepEqual(WebAssembly.Module.imports(m), []);
  const names = WebAssembly.Module.exports(m).map((e) => e.name);
  for (const n of ["memory", "karlton_abi_version", "karlton_alloc", "karlton_free", "karlton_decide", "karlton_jitter", "karlton_call"]) {
    assert.ok(names.includes(n), n);
  }
});

test("load accepts bytes, a Buffer, an ArrayBuffer and a compiled Module", async () => {
  const bytes = moduleBytes();
  for (const src of [bytes, new Uint8Array(bytes), bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), compiledModule()]) {
    const k = await load(src);
    assert.ok(k instanceof Karlton);
    assert.equal(k.abiVersion, 1);
  }
  assert.equal(loadSync(compiledModule()).abiVersion, 1);
  await assert.rejects(load("karlton.wasm"), TypeError);
  assert.throws(() => loadSync(bytes), TypeError);
});

test("scalar decide and jitter", async () => {
  const k = await fresh();
  assert.equal(k.decide(5, 10, 20, 0, 0, 0, 0), "fresh");
  assert.equal(k.decide(10, 10, 20, 0, 0, 0, 0), "stale");
  assert.equal(k.decide(20, 10, 20, 0, 0, 5, 0), "usable_on_error");
  assert.equal(k.decide(25, 10, 20, 0, 0, 5, 0), "gone");
  assert.equal(k.decide(9, 10, 20, 1000, 1, 0, 2n ** 63n), "refresh_early");
  assert.equal(k.decide(5n, 10n, 20n, 0n, 0, 0n, 2n ** 64n - 1n), "fresh");
  assert.throws(() => k.decide(-1, 10, 20, 0, 0, 0, 0), TypeError);
  assert.throws(() => k.decide(1.5, 10, 20, 0, 0, 0, 0), TypeError);
  assert.throws(() => k.decide(2 ** 53, 10, 20, 0, 0, 0, 0), TypeError);
  assert.throws(() => k.decide(1, 10, 20, 0, NaN, 0, 0), RangeError);
  assert.equal(k.decideCode(1n, 10n, 20n, 0n, -1, 0n, 0n), 255);
  assert.deepEqual(DECISIONS, ["fresh", "refresh_early", "stale", "usable_on_error", "gone"]);
  assert.equal(k.jitter(10_000, 0, 123), 10_000);
  const j = k.jitter(10_000, 200_000, 2n ** 64n - 1n);
  assert.ok(j >= 8_000 && j < 10_000, String(j));
  // TTLs at and beyond 2^63 come back unsigned and exact (the i64 return read as u64).
  assert.equal(k.jitter(2n ** 64n - 1n, 0, 0), 2n ** 64n - 1n);
  assert.equal(k.jitter(2n ** 63n, 0, 0), 2n ** 63n);
  assert.equal(k.jitter(2 ** 53 - 1, 0, 0), 2 ** 53 - 1);
});

test("typed wrappers", async () => {
  const k = await fresh();
  const a = k.key({ namespace: "users", segments: ["42", "a:b"], params: { b: 1, a: [true, null] }, version: 7, tags: ["t"] });
  const b = k.key({ namespace: "users", segments: ["42", "a:b"], params: { a: [true, null], b: 1.0 }, version: 7n, tags: ["t"] });
  assert.deepEqual(a, b);
  assert.match(a.key, /^users:42:a%3Ab:#[0-9a-f]{32}:v7$/);
  assert.equal(a.generationKey, "users:!gen");
  assert.deepEqual(a.tagKeys, ["users:!tag:t"]);
  assert.equal(k.paramsHash({ b: 1, a: 2 }), k.paramsHash({ a: 2, b: 1 }));
  assert.equal(k.policy({ soft_ttl_ms: 1000 }).hard_ttl_ms, 1000);
  assert.throws(() => k.policy({ soft_ttl: 1 }), (e) => e.message.startsWith("policy: invalid JSON") && e.detail.field === "soft_ttl", "the prefix once, the field named");
  assert.throws(() => k.policy({ soft_ttl_ms: 1000, hard_ttl_ms: 5 }), (e) => e instanceof KarltonError && e.code === "policy" && e.detail.kind === "hard_before_soft");
  const entry = { value_hex: bytesToHex(new TextEncoder().encode('"hi"')), codec: 1, version: "18446744073709551615", generations: [3], soft_at: 10, hard_at: 20, load_ms: 5, negative: false, tags: ["x"] };
  const bytes = k.entryEncode(entry);
  assert.deepEqual(k.entryDecode(bytes), entry);
  assert.throws(() => k.entryDecode(bytes.subarray(0, 10)), (e) => e.code === "entry_decode" && e.detail.kind === "too_short");
  const pol = { soft_ttl_ms: 1000, stale_if_error_ms: 7 };
  assert.deepEqual(k.entryDescribe(bytes, 10, pol), {
    freshness: "stale", soft_at: 10, hard_at: 20, usable_until: 27, load_ms: 5, version: 18446744073709551615n,
    negative: false, codec: 1, value_len: 4, generations: [3], tags: ["x"],
  });
  assert.equal(k.entryDescribe(bytes, 9, pol).freshness, "fresh");
  assert.equal(k.entryDescribe(bytes, 26, pol).freshness, "usable_on_error");
  assert.equal(k.entryDescribe(bytes, 27).freshness, "gone", "the default policy has no stale_if_error");
  assert.throws(() => k.entryDescribe(bytes.subarray(0, 10), 0), (e) => e.code === "entry_decode" && e.detail.kind === "too_short");
  const t = k.jitteredTtls({ soft_ttl_ms: 1000, hard_ttl_ms: 3000, jitter: 0.5 }, "18446744073709551615");
  assert.equal(t.hard_ttl_ms - t.soft_ttl_ms, 2000);
});

test("a full get_or_load against the in-module memory store", async () => {
  const k = await fresh();
  const store = k.storeCreate();
  const policy = { soft_ttl_ms: 1000, hard_ttl_ms: 5000 };
  const request = { key: "users:1" };
  // Miss: the flow asks for the loader.
  let r = k.getOrLoad(store, request, policy, 1, 100);
  assert.equal(r.step.step, "load");
  const value = bytesToHex(new TextEncoder().encode('{"name":"ada"}'));
  let step = k.flowHandle(r.flow, 110, { input: "loaded", data: { value, codec: 1, negative: false, version: null } }, store);
  assert.equal(step.step, "done");
  assert.equal(step.data.Ok.source, "loaded");
  assert.equal(step.data.Ok.cached, true);
  assert.equal(k.flowDrop(r.flow).loads, 1);
  // Fresh hit: one call, flow already gone.
  r = k.getOrLoad(store, request, policy, 2, 500);
  assert.equal(r.flow, null);
  assert.equal(r.step.data.Ok.source, "fresh");
  assert.equal(r.step.data.Ok.value, value);
  assert.equal(r.stats.hits_fresh, 1);
  // Stale: served now, this caller refreshes.
  r = k.getOrLoad(store, request, policy, 3, 2000);
  assert.equal(r.step.step, "serve");
  assert.equal(r.step.data.source, "stale");
  step = k.flowHandle(r.flow, 2000, { input: "continue" }, store);
  assert.equal(step.step, "load");
  k.flowDrop(r.flow);
  k.storeDrop(store);
});

test("malformed input is an error reply, never a trap", async () => {
  const k = await fresh();
  const x = k.exports;
  const reply = (p, l) => {
    const r = x.karlton_call(p, l);
    const bytes = new Uint8Array(x.memory.buffer, Number(r >> 32n), Number(r & 0xffffffffn));
    return JSON.parse(new TextDecoder().decode(bytes));
  };
  const mem = x.memory.buffer.byteLength;
  for (const [p, l] of [[0, 0], [0, 10], [mem - 4, 100], [-1, -1], [8, 8]]) {
    assert.equal(reply(p, l).error.code, "bad_input", `${p} ${l}`);
  }
  assert.equal(x.karlton_free(12345, 3), 0);
  assert.equal(x.karlton_alloc(0), 0);
  assert.equal(x.karlton_alloc(-1), 0);
  for (const [text, code] of [["", "json"], ["nope", "json"], ['{"op":1}', "json"], ['{"op":"x"}', "unknown_op"], ['{"op":"decide"}', "bad_request"], ['{"op":"flow_drop","flow":77}', "unknown_handle"]]) {
    assert.equal(JSON.parse(k.callRaw(text)).error.code, code, text);
  }
  assert.throws(() => k.call({ op: "store_apply", store: 424242, now_ms: 0, store_op: { op: "bump", gen_key: "g", value: 1 } }), (e) => e.code === "unknown_handle");
  // Still usable.
  assert.equal(k.call({ op: "version" }).abi, 1);
  assert.equal(k.decide(5, 10, 20, 0, 0, 0, 0), "fresh");
});

test("a coordinator drives a stampede: one leader, joiners woken, counted once", async () => {
  const k = await fresh();
  const store = k.storeCreate();
  const policy = { soft_ttl_ms: 1000, hard_ttl_ms: 5000, jitter: 0 };
  assert.throws(() => k.coordinator({}), TypeError, "a seed is required: the module has no randomness");
  const c = k.coordinator({ seed: 2n ** 63n + 5n, policy });
  const request = { key: "users:1" };
  const lead = c.getOrLoad(100, request, { store });
  assert.equal(lead.ticket, "lead");
  assert.equal(lead.action.action, "start_load");
  const joins = [1, 2, 3].map(() => c.getOrLoad(101, request, { store }));
  for (const j of joins) assert.equal(j.ticket, "join");
  const value = bytesToHex(new TextEncoder().encode('"v"'));
  const a = c.handle(110, lead.call, { input: "loaded", data: { value, codec: 1, negative: false, version: null } }, { store });
  assert.equal(a.action, "answer");
  assert.equal(a.data.Ok.data.value, value);
  assert.deepEqual(c.events(), [{ event: "wake", flight: joins[0].flight }]);
  for (const j of joins) assert.equal(c.joined(111, j.call).answer.Ok.data.value, value);
  assert.equal(c.memoryHit(store, 120, "users:1").source, "fresh");
  assert.equal(c.pollEvent(), null);
  assert.deepEqual(c.pending(), [0, 0]);
  const st = c.drop();
  assert.deepEqual([st.misses, st.loads, st.coalesced, st.hits_fresh], [4, 1, 3, 1]);
  assert.throws(() => c.stats(), (e) => e.code === "unknown_handle");
});
