import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { load } from "../../../wasm/js/karlton-wasm.mjs";
import { createWorker } from "../worker.mjs";
import worker from "../worker.mjs";
import { MemoryKV } from "../kv.mjs";
import { serve } from "../harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const wasmPath = process.env.KARLTON_WASM ?? join(here, "..", "..", "..", "wasm", "dist", "karlton.wasm");
const module = new WebAssembly.Module(readFileSync(wasmPath));

const POLICY = { soft_ttl_ms: 10_000, hard_ttl_ms: 60_000, jitter: 0, early_refresh: 0, stale_if_error_ms: 120_000 };

/** A world with a fake clock, a KV, and a scriptable origin. */
async function world(policy = POLICY) {
  const t = { now: 1_700_000_000_000 };
  const origin = { calls: 0, fail: false, version: 1, delay: null, async fetch(url) {
    this.calls++;
    if (this.delay) await this.delay;
    if (this.fail) return new Response("down", { status: 503 });
    const u = new URL(url);
    return new Response(JSON.stringify({ path: u.pathname, q: u.search, n: this.calls }), { headers: { "x-version": String(this.version) } });
  } };
  const karlton = await load(module);
  const w = createWorker({ karlton, clock: () => t.now, random: () => 12345n, policy });
  const env = { CACHE: new MemoryKV(() => t.now), ORIGIN: origin };
  const pending = [];
  const ctx = { waitUntil: (p) => pending.push(p) };
  const get = (path, headers = {}) => w.fetch(new Request(`https://edge.example${path}`, { headers }), env, ctx);
  const settle = () => Promise.all(pending.splice(0));
  return { t, origin, w, env, get, settle };
}

test("miss, then fresh hits with Cache-Control and ETag", async () => {
  const { t, origin, get } = await world();
  let r = await get("/products/42?lang=en");
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("x-cache"), "MISS");
  assert.equal(r.headers.get("cache-control"), "public, max-age=10, stale-while-revalidate=50, stale-if-error=120");
  assert.equal(r.headers.get("etag"), '"v1"');
  assert.deepEqual(await r.json(), { path: "/products/42", q: "?lang=en", n: 1 });
  t.now += 4_000;
  r = await get("/products/42?lang=en");
  assert.equal(r.headers.get("x-cache"), "HIT");
  assert.equal(r.headers.get("cache-control"), "public, max-age=6, stale-while-revalidate=50, stale-if-error=120");
  assert.equal((await r.json()).n, 1);
  assert.equal(origin.calls, 1);
});

test("keys come from path segments and canonical params", async () => {
  const { origin, get } = await world();
  await get("/products/42?a=1&b=2");
  const r = await get("/products/42?b=2&a=1"); // same params, other order: same key
  assert.equal(r.headers.get("x-cache"), "HIT");
  assert.equal((await get("/products/42?a=2&b=1")).headers.get("x-cache"), "MISS");
  assert.equal((await get("/products/42%3Aa")).headers.get("x-cache"), "MISS"); // "42:a" ≠ ["42","a"]
  assert.equal((await get("/products/42/a")).headers.get("x-cache"), "MISS");
  assert.equal(origin.calls, 4);
});

test("If-None-Match answers 304 with the same validators", async () => {
  const { get } = await world();
  const first = await get("/p/1");
  const etag = first.headers.get("etag");
  for (const inm of [etag, `W/${etag}`, `"x", ${etag}`, "*"]) {
    const r = await get("/p/1", { "if-none-match": inm });
    assert.equal(r.status, 304, inm);
    assert.equal(r.headers.get("etag"), etag);
    assert.equal(await r.text(), "");
  }
  assert.equal((await get("/p/1", { "if-none-match": '"v0"' })).status, 200);
});

test("unversioned origins get an ETag from the entry's fill", async () => {
  const { origin, get, t } = await world();
  origin.fetch = async () => new Response("{}");
  const a = (await get("/p/2")).headers.get("etag");
  assert.match(a, /^"f[0-9a-z]+"$/);
  t.now += 70_000; // past hard expiry: reloaded, new fill, new ETag
  const b = (await get("/p/2")).headers.get("etag");
  assert.notEqual(a, b);
});

test("stale-while-revalidate: stale is served at once, one background refresh per key", async () => {
  const { t, origin, get, settle, w } = await world();
  await get("/p/3");
  t.now += 15_000; // past soft, before hard
  let release;
  origin.delay = new Promise((r) => (release = r));
  origin.version = 2;
  const rs = await Promise.all([get("/p/3"), get("/p/3"), get("/p/3")]);
  for (const r of rs) {
    assert.equal(r.headers.get("x-cache"), "STALE");
    assert.equal(r.headers.get("cache-control"), "public, max-age=0, stale-while-revalidate=45, stale-if-error=120");
    assert.equal(r.headers.get("etag"), '"v1"');
  }
  release();
  await settle();
  assert.equal(origin.calls, 2, "one refresh for three stale reads");
  assert.equal(w.stats.core.coalesced, 2, "two of the three joined the first one's flight");
  assert.equal(w.stats.stale, 3);
  assert.deepEqual(w.stats.pending, [0, 0], "no call or flight left behind");
  const r = await get("/p/3");
  assert.equal(r.headers.get("x-cache"), "HIT");
  assert.equal(r.headers.get("etag"), '"v2"');
});

test("stale-if-error: the origin fails past hard expiry", async () => {
  const { t, origin, get } = await world();
  await get("/p/4");
  origin.fail = true;
  t.now += 100_000; // past hard (60 s), within stale-if-error (120 s more)
  let r = await get("/p/4");
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("x-cache"), "STALE-IF-ERROR");
  assert.equal((await r.json()).n, 1);
  t.now += 100_000; // past every window
  r = await get("/p/4");
  assert.equal(r.status, 502);
  origin.fail = false;
  assert.equal((await get("/p/4")).headers.get("x-cache"), "MISS");
});

test("corrupt bytes in KV are a miss and get overwritten", async () => {
  const { env, get, w } = await world();
  const r0 = await get("/p/5");
  assert.equal(r0.headers.get("x-cache"), "MISS");
  const karlton = await load(module);
  const key = karlton.key({ namespace: "p", segments: ["5"] }).key;
  await env.CACHE.put(key, new Uint8Array([1, 2, 3]));
  assert.equal((await get("/p/5")).headers.get("x-cache"), "MISS");
  assert.equal(w.stats.corrupt, 1);
  assert.equal(w.stats.core.corrupt_entries, 1);
  assert.equal((await get("/p/5")).headers.get("x-cache"), "HIT");
});

test("XFetch refreshes a hot key early, in the background", async () => {
  const { t, origin, get, settle } = await world({ ...POLICY, early_refresh: 100 });
  origin.delay = new Promise((r) => setTimeout(r, 5)); // a measurable load time
  const fake = origin.fetch.bind(origin);
  origin.fetch = async (u) => { t.now += 500; return fake(u); }; // the load takes 500 ms
  await get("/p/6");
  t.now += 9_000; // 1 s before soft expiry; 500 ms * beta 100 reaches past it
  const r = await get("/p/6");
  assert.equal(r.headers.get("x-cache"), "HIT");
  await settle();
  assert.equal(origin.calls, 2);
});

test("the default export runs with a Workers-style env, and on the Node harness", async () => {
  const origin = { async fetch() { return new Response('{"ok":true}', { headers: { "x-version": "9" } }); } };
  const env = { KARLTON_WASM: module, CACHE: new MemoryKV(), ORIGIN: origin };
  const r = await worker.fetch(new Request("https://edge.example/things/1"), env, { waitUntil() {} });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("etag"), '"v9"');
  assert.equal((await worker.fetch(new Request("https://edge.example/things/1", { method: "POST" }), env, {})).status, 405);

  const server = await serve(worker, env, 0);
  try {
    const { port } = server.address();
    const a = await fetch(`http://127.0.0.1:${port}/things/1`);
    assert.equal(a.status, 200);
    assert.equal(a.headers.get("x-cache"), "HIT");
    const b = await fetch(`http://127.0.0.1:${port}/things/1`, { headers: { "if-none-match": '"v9"' } });
    assert.equal(b.status, 304);
  } finally {
    server.close();
  }
});
