// A Worker-style edge cache in front of an origin, with karlton.wasm making every decision.
//
//   GET /<namespace>/<id>?<params>   → the origin's JSON, cached under a karlton key built from
//                                      the path segments and the (canonically hashed) query params
//
// - fresh entry   → served from KV (X-Cache: HIT); XFetch may start an early refresh
// - stale entry   → served at once (X-Cache: STALE) while one refresh per key runs in the
//                   background (ctx.waitUntil): stale-while-revalidate
// - gone / miss   → load from the origin, store, serve (X-Cache: MISS)
// - origin fails  → serve the stale entry within stale-if-error (X-Cache: STALE-IF-ERROR), else 502
// - Cache-Control: max-age / stale-while-revalidate / stale-if-error from the entry's windows;
//   ETag from the entry's version (or its fill); If-None-Match → 304.
//
// Bindings (Workers): env.KARLTON_WASM (the compiled module), env.CACHE (a KV namespace),
// env.ORIGIN (a service binding / fetcher) or env.ORIGIN_URL. Time and randomness come from the
// runtime (Date.now, crypto); tests inject their own through createWorker().

import { loadSync, bytesToHex } from "../../wasm/js/karlton-wasm.mjs";

export const DEFAULT_POLICY = Object.freeze({
  soft_ttl_ms: 30_000,
  hard_ttl_ms: 300_000,
  jitter: 0.1,
  early_refresh: 1.0,
  stale_if_error_ms: 3_600_000,
});

function randomU64() {
  const b = new BigUint64Array(1);
  crypto.getRandomValues(b);
  return b[0];
}

/**
 * A handler with injectable clock and randomness. `karlton` is a loaded instance (or omit it and
 * pass env.KARLTON_WASM as a WebAssembly.Module).
 */
export function createWorker({ karlton = null, clock = Date.now, random = randomU64, policy = DEFAULT_POLICY } = {}) {
  let k = karlton;
  const inflight = new Map(); // key → Promise<entry>: one refresh per key per isolate
  let checked = null;
  const stats = { hit: 0, stale: 0, miss: 0, staleIfError: 0, refreshes: 0, originErrors: 0, corrupt: 0, notModified: 0 };

  function instance(env) {
    if (!k) k = loadSync(env.KARLTON_WASM);
    if (!checked) checked = k.policy(policy); // validated once; throws on an invalid policy
    return k;
  }

  async function origin(env, url) {
    const target = new URL(url.pathname + url.search, env.ORIGIN_URL ?? "http://origin.invalid");
    const res = env.ORIGIN ? await env.ORIGIN.fetch(target) : await fetch(target);
    if (!res.ok) throw new Error(`origin answered ${res.status}`);
    const version = res.headers.get("x-version");
    return { body: new Uint8Array(await res.arrayBuffer()), version: version && /^[0-9]+$/.test(version) ? version : null };
  }

  /** Load from the origin and store; one at a time per key (others await the same promise). */
  function refresh(env, kk, key, url) {
    let p = inflight.get(key);
    if (p) return p;
    p = (async () => {
      stats.refreshes++;
      const started = clock();
      const got = await origin(env, url);
      const now = clock();
      const ttl = kk.jitteredTtls(policy, random());
      const entry = {
        value_hex: bytesToHex(got.body), codec: 1, version: got.version, generations: [],
        soft_at: now + ttl.soft_ttl_ms, hard_at: now + ttl.hard_ttl_ms, load_ms: now - started, negative: false, tags: [],
      };
      const keepMs = entry.hard_at + checked.stale_if_error_ms - now;
      await env.CACHE.put(key, kk.entryEncode(entry), { expirationTtl: Math.ceil(keepMs / 1000) });
      return entry;
    })().finally(() => inflight.delete(key));
    inflight.set(key, p);
    return p;
  }

  function respond(request, entry, now, xcache) {
    const maxAge = Math.max(0, Math.floor((entry.soft_at - now) / 1000));
    const swr = Math.max(0, Math.floor((entry.hard_at - Math.max(now, entry.soft_at)) / 1000));
    const sie = Math.floor(checked.stale_if_error_ms / 1000);
    // The version when the origin has one; else the fill (soft_at is unique per fill of a key).
    const etag = entry.version !== null ? `"v${entry.version}"` : `"f${entry.soft_at.toString(36)}"`;
    const headers = new Headers({
      "cache-control": `public, max-age=${maxAge}, stale-while-revalidate=${swr}, stale-if-error=${sie}`,
      etag,
      "x-cache": xcache,
    });
    const inm = request.headers.get("if-none-match");
    if (inm && (inm.trim() === "*" || inm.split(",").some((t) => t.trim().replace(/^W\//, "") === etag))) {
      stats.notModified++;
      return new Response(null, { status: 304, headers });
    }
    headers.set("content-type", "application/json");
    const hex = entry.value_hex;
    const body = new Uint8Array(hex.length / 2);
    for (let i = 0; i < body.length; i++) body[i] = parseInt(hex.substr(i * 2, 2), 16);
    return new Response(body, { status: 200, headers });
  }

  async function fetchHandler(request, env, ctx) {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const kk = instance(env);
    const url = new URL(request.url);
    const [namespace, ...segments] = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (!namespace) return new Response("not found", { status: 404 });
    const params = {};
    for (const [name, v] of url.searchParams) (params[name] ??= []).push(v);
    let key;
    try {
      key = kk.key({ namespace, segments, params: Object.keys(params).length ? params : undefined }).key;
    } catch (e) {
      return new Response(`bad key: ${e.message}`, { status: 400 });
    }

    const now = clock();
    let entry = null;
    const bytes = await env.CACHE.get(key, "arrayBuffer");
    if (bytes) {
      try {
        entry = kk.entryDecode(new Uint8Array(bytes));
      } catch {
        stats.corrupt++; // corrupt or foreign bytes: a miss, overwritten below
      }
    }
    const decision = entry
      ? kk.decide(now, entry.soft_at, entry.hard_at, entry.load_ms, checked.early_refresh, checked.stale_if_error_ms, random())
      : "gone";
    const background = (p) => {
      const q = p.catch(() => { stats.originErrors++; });
      if (ctx?.waitUntil) ctx.waitUntil(q);
    };
    switch (decision) {
      case "fresh":
        stats.hit++;
        return respond(request, entry, now, "HIT");
      case "refresh_early":
        stats.hit++;
        background(refresh(env, kk, key, url));
        return respond(request, entry, now, "HIT");
      case "stale":
        stats.stale++;
        background(refresh(env, kk, key, url));
        return respond(request, entry, now, "STALE");
      default: // "usable_on_error" | "gone"
        try {
          const loaded = await refresh(env, kk, key, url);
          stats.miss++;
          return respond(request, loaded, clock(), "MISS");
        } catch (e) {
          stats.originErrors++;
          if (decision === "usable_on_error") {
            stats.staleIfError++;
            return respond(request, entry, now, "STALE-IF-ERROR");
          }
          return new Response(`origin error: ${e.message}`, { status: 502 });
        }
    }
  }

  return { fetch: fetchHandler, stats };
}

// The Worker itself (module syntax): `export default { fetch }`.
const worker = createWorker();
export default { fetch: (request, env, ctx) => worker.fetch(request, env, ctx) };
