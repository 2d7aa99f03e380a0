// A Worker-style edge cache in front of an origin, with karlton.wasm making every decision: each
// isolate drives one karlton-core Coordinator (the same machine the Rust, Node and Python caches
// drive) through the wasm loader. This file only does IO — KV reads and writes, origin fetches,
// timers, responses — and never decides freshness itself.
//
//   GET /<namespace>/<id>?<params>   → the origin's JSON, cached under a karlton key built from
//                                      the path segments and the (canonically hashed) query params
//
// - fresh entry   → served from KV (X-Cache: HIT); XFetch may start an early refresh
// - stale entry   → served at once (X-Cache: STALE) while one refresh per key runs in the
//                   background (ctx.waitUntil): stale-while-revalidate
// - gone / miss   → load from the origin, store, serve (X-Cache: MISS)
// - origin fails  → serve the stale entry within stale-if-error (X-Cache: STALE-IF-ERROR), else 502
// - concurrent requests for one key in an isolate join one flight (one KV read, one origin load)
//
// The KV namespace is the coordinator's store: KV has no atomic operations, so it grants every
// lease it is asked for (deduplication is per isolate, in the coordinator's flight table) and
// takes every fill; expirations come from the fill's `expire_at`. X-Cache is the served value's
// `source` (fresh, stale, loaded, stale_on_error/timeout).
// - Cache-Control: max-age / stale-while-revalidate / stale-if-error from the entry's windows;
//   ETag from the entry's version (or its fill); If-None-Match → 304.
//
// Bindings (Workers): env.KARLTON_WASM (the compiled module), env.CACHE (a KV namespace),
// env.ORIGIN (a service binding / fetcher) or env.ORIGIN_URL. Time and randomness come from the
// runtime (Date.now, crypto); tests inject their own through createWorker().

import { loadSync, bytesToHex, hexToBytes } from "../../wasm/js/karlton-wasm.mjs";

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
 * pass env.KARLTON_WASM as a WebAssembly.Module). `random()` seeds the isolate's coordinator: the
 * module has no randomness of its own, so the seed must come from the runtime (crypto).
 */
export function createWorker({ karlton = null, clock = Date.now, random = randomU64, policy = DEFAULT_POLICY } = {}) {
  let k = karlton;
  let coord = null;
  let checked = null;
  const waiters = new Map(); // flight id → resolvers of its joiners (each gets the leader's windows)
  const counts = { hit: 0, stale: 0, miss: 0, staleIfError: 0, refreshes: 0, originErrors: 0, backgroundErrors: 0, notModified: 0 };

  function instance(env) {
    if (!k) k = loadSync(env.KARLTON_WASM);
    if (!checked) checked = k.policy(policy); // validated once; throws on an invalid policy
    if (!coord) coord = k.coordinator({ seed: random(), policy });
    return k;
  }

  /** Drain the coordinator's events after each decision: wake joiners, note background errors. */
  function events(windows) {
    for (const e of coord.events()) {
      if (e.event === "wake") {
        for (const wake of waiters.get(e.flight) ?? []) wake(windows);
        waiters.delete(e.flight);
      } else if (e.event === "background_error") {
        counts.backgroundErrors++;
      }
    }
  }

  async function origin(env, url) {
    const target = new URL(url.pathname + url.search, env.ORIGIN_URL ?? "http://origin.invalid");
    const res = env.ORIGIN ? await env.ORIGIN.fetch(target) : await fetch(target);
    if (!res.ok) throw new Error(`origin answered ${res.status}`);
    const version = res.headers.get("x-version");
    const v = version && /^[0-9]{1,20}$/.test(version) ? BigInt(version) : null;
    return { body: new Uint8Array(await res.arrayBuffer()), version: v === null ? null : v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v };
  }

  /** The loader: the origin's answer as an Input. */
  async function load(env, url) {
    counts.refreshes++;
    try {
      const got = await origin(env, url);
      return { input: "loaded", data: { value: bytesToHex(got.body), codec: 1, negative: false, version: got.version } };
    } catch (e) {
      counts.originErrors++;
      return { input: "load_failed", data: String(e?.message ?? e) };
    }
  }

  let lastToken = 0;

  /** One StoreOp against KV: `{ input, windows? }` (windows: the entry's soft/hard times, for headers). */
  async function kvOp(env, op) {
    try {
      switch (op.op) {
        case "read": {
          const buf = await env.CACHE.get(op.key, "arrayBuffer");
          const generations = [];
          for (const g of op.gen_keys) generations.push(exact(await env.CACHE.get(g)));
          let entry = null;
          let windows;
          if (buf) {
            const bytes = new Uint8Array(buf);
            entry = bytesToHex(bytes);
            try {
              const e = k.entryDecode(bytes); // for the headers only: the flow decides
              windows = { soft_at: e.soft_at, hard_at: e.hard_at };
            } catch {
              // corrupt or foreign bytes: the flow counts it and loads; the fill overwrites them
            }
          }
          // KV has no leases: every asking read is granted, under a token this isolate issues
          // (tokens come from the store; here the store is this adapter).
          const lease = op.lease === "none" ? { lease: "not_requested" } : { lease: "granted", token: ++lastToken };
          return { input: store({ reply: "read", now_ms: clock(), entry, marked_stale: false, generations, ...lease }), windows };
        }
        case "fill": {
          const ttl = Math.max(1, Math.ceil((Number(op.expire_at) - clock()) / 1000));
          await env.CACHE.put(op.key, hexToBytes(op.entry), { expirationTtl: ttl });
          return { input: store({ reply: "stored" }), windows: { soft_at: op.soft_at, hard_at: op.hard_at } };
        }
        case "release":
        case "extend":
          return { input: store({ reply: "lease", ok: true }) };
        case "invalidate": {
          if (op.mode !== "delete") throw new Error("KV cannot mark an entry stale");
          const existed = (await env.CACHE.get(op.key)) !== null;
          await env.CACHE.delete(op.key);
          return { input: store({ reply: "invalidated", existed }) };
        }
        case "bump":
          await env.CACHE.put(op.gen_key, String(op.value));
          return { input: store({ reply: "bumped", generation: op.value }) };
      }
      throw new Error(`unknown store op ${op.op}`);
    } catch (e) {
      return { input: { input: "store_failed", data: { message: String(e?.message ?? e) } } };
    }
  }

  /**
   * Drive a call the coordinator made this request lead. Resolves with `{ answer, windows }` at
   * its first Serve or Answer; what follows a Serve (a refresh) goes on in `background`.
   */
  function lead(env, url, call, action) {
    let resolve;
    const answered = new Promise((r) => (resolve = r));
    let windows = null;
    let told = false;
    const tell = (answer) => {
      if (!told) (told = true), resolve({ answer, windows });
    };
    const done = (async () => {
      let loading = null;
      try {
        for (;;) {
          let input;
          switch (action.action) {
            case "store": {
              const r = await kvOp(env, action.data);
              if (r.windows) windows = r.windows;
              input = r.input;
              break;
            }
            case "start_load":
              loading = load(env, url);
            // falls through: await it
            case "await_load":
              input = await until(loading ?? Promise.reject(new Error("no loader")), action.data.timeout_at, clock);
              break;
            case "wait":
              await sleep(Number(action.data.until_ms) - clock());
              input = { input: "timeout" };
              break;
            case "serve":
              tell({ Ok: { reply: "value", data: action.data } });
              input = { input: "continue" };
              break;
            case "answer":
              tell(action.data);
              return;
            case "finished":
              return;
            default: // fast_read: KV has none (the coordinator was created without it)
              throw new Error(`unexpected action ${action.action}`);
          }
          action = coord.handle(clock(), call, input);
          events(windows);
        }
      } catch (e) {
        // A throw inside the loop: cancel the call (its joiners run again) and give its lease back.
        const release = coord.cancel(call);
        events(windows);
        if (release) await kvOp(env, release);
        tell({ Err: { error: "store", message: String(e?.message ?? e) } });
      }
    })();
    return { answered, done };
  }

  /** get_or_load through the coordinator: `{ answer, windows }`. */
  async function getOrLoad(env, ctx, url, key) {
    let ticket = coord.getOrLoad(clock(), { key });
    let windows = null;
    for (;;) {
      events(null);
      switch (ticket.ticket) {
        case "answer":
          return { answer: ticket.answer, windows };
        case "join": {
          const flight = ticket.flight;
          // Woken by the flight's end, or at until_ms (lock_wait): then the coordinator decides.
          let timer;
          windows = await new Promise((wake) => {
            if (!waiters.has(flight)) waiters.set(flight, []);
            waiters.get(flight).push(wake);
            timer = setTimeout(() => wake(null), Math.max(0, Number(ticket.until_ms) - clock()));
          });
          clearTimeout(timer);
          ticket = coord.joined(clock(), ticket.call);
          break;
        }
        case "lead": {
          const { answered, done } = lead(env, url, ticket.call, ticket.action);
          if (ctx?.waitUntil) ctx.waitUntil(done);
          return answered;
        }
      }
    }
  }

  function respond(request, served, windows, now, xcache) {
    const soft = Number(windows?.soft_at ?? now);
    const hard = Number(windows?.hard_at ?? now);
    const maxAge = Math.max(0, Math.floor((soft - now) / 1000));
    const swr = Math.max(0, Math.floor((hard - Math.max(now, soft)) / 1000));
    const sie = Math.floor(checked.stale_if_error_ms / 1000);
    // The version when the origin has one; else the fill (soft_at is unique per fill of a key).
    const etag = served.version !== null ? `"v${served.version}"` : `"f${soft.toString(36)}"`;
    const headers = new Headers({
      "cache-control": `public, max-age=${maxAge}, stale-while-revalidate=${swr}, stale-if-error=${sie}`,
      etag,
      "x-cache": xcache,
    });
    const inm = request.headers.get("if-none-match");
    if (inm && (inm.trim() === "*" || inm.split(",").some((t) => t.trim().replace(/^W\//, "") === etag))) {
      counts.notModified++;
      return new Response(null, { status: 304, headers });
    }
    headers.set("content-type", "application/json");
    return new Response(hexToBytes(served.value), { status: 200, headers });
  }

  const XCACHE = { fresh: ["HIT", "hit"], stale: ["STALE", "stale"], loaded: ["MISS", "miss"], stale_on_error: ["STALE-IF-ERROR", "staleIfError"], stale_on_timeout: ["STALE-IF-ERROR", "staleIfError"] };

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
    const { answer, windows } = await getOrLoad(env, ctx, url, key);
    if ("Err" in answer) return new Response(`origin error: ${answer.Err.message}`, { status: 502 });
    if (answer.Ok.reply !== "value") return new Response("unexpected reply", { status: 500 });
    const served = answer.Ok.data;
    const [xcache, count] = XCACHE[served.source];
    counts[count]++;
    return respond(request, served, windows, clock(), xcache);
  }

  return {
    fetch: fetchHandler,
    /**
     * Request counts, plus the coordinator's counters (`core`; `corrupt` = corrupt_entries) and
     * its live `[calls, flights]` (`pending`, both 0 when idle).
     */
    get stats() {
      const core = coord ? coord.stats() : {};
      return { ...counts, corrupt: core.corrupt_entries ?? 0, core, pending: coord ? coord.pending() : [0, 0] };
    },
  };
}

/** A StoreReply as an Input. */
function store(reply) {
  return { input: "store", data: reply };
}

/** A u64 read back from KV text: a number when safe, else a bigint (0 when absent). */
function exact(text) {
  const v = BigInt(text ?? 0);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

/** The loader's Input, or a timeout Input once `clock()` reaches `timeoutAt`. */
function until(loading, timeoutAt, clock) {
  if (timeoutAt === null || timeoutAt === undefined) return loading;
  let timer;
  const timeout = new Promise((r) => (timer = setTimeout(() => r({ input: "timeout" }), Math.max(0, Number(timeoutAt) - clock()))));
  return Promise.race([loading, timeout]).finally(() => clearTimeout(timer));
}

// The Worker itself (module syntax): `export default { fetch }`.
const worker = createWorker();
export default { fetch: (request, env, ctx) => worker.fetch(request, env, ctx) };
