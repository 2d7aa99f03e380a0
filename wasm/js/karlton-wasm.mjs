// karlton-wasm: the ESM loader for karlton.wasm (zero imports; ABI version 1).
//
// Works wherever WebAssembly does: Cloudflare Workers (pass the compiled WebAssembly.Module the
// runtime gives you), Node, Deno and browsers (pass the bytes). Time and randomness are
// arguments, as in the Rust core; nothing here reads a clock.
//
//   import { load } from "./karlton-wasm.mjs";
//   const k = await load(bytesOrModule);
//   k.decide(now, softAt, hardAt, loadMs, beta, staleIfErrorMs, rand)   // "fresh" | "stale" | ...
//   k.call({ op: "key_build", namespace: "users", segments: ["42"] })   // the `ok` value
//
// See wasm/src/api.rs for every op of `call` and its reply.

export const ABI_VERSION = 1;

/** Decision names by `karlton_decide` code. */
export const DECISIONS = Object.freeze(["fresh", "refresh_early", "stale", "usable_on_error", "gone"]);

/** An error reply from the module: `code` is stable, `detail` is structured when present. */
export class KarltonError extends Error {
  constructor(code, message, detail) {
    // The core's own messages may already start with the code ("policy: ..."): say it once.
    super(message.startsWith(`${code}: `) ? message : `${code}: ${message}`);
    this.name = "KarltonError";
    this.code = code;
    this.detail = detail;
  }
}

const MASK32 = 0xffffffffn;
const MAX_U64 = (1n << 64n) - 1n;

/** A u64 argument: a non-negative safe integer or a bigint in range; anything else is a TypeError. */
function u64(x, name) {
  if (typeof x === "bigint") {
    if (x < 0n || x > MAX_U64) throw new TypeError(`${name} must be a u64, got ${x}`);
    return x;
  }
  if (typeof x === "number" && Number.isSafeInteger(x) && x >= 0) return BigInt(x);
  throw new TypeError(`${name} must be a non-negative safe integer or a bigint, got ${x}`);
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** A string argument: valid Unicode (a lone surrogate has no UTF-8 form: refused, never replaced). */
function text(x, name) {
  if (typeof x !== "string") return x; // the module reports a wrong type, naming the field
  if (LONE_SURROGATE.test(x)) throw new TypeError(`${name} is not valid Unicode: it holds a lone surrogate`);
  return x;
}

const I64_MIN = -(1n << 63n);

/** The policy fields in the order the module reads them (karlton-core's `PolicySpec`). */
const POLICY_FIELDS = [
  "soft_ttl_ms", "hard_ttl_ms", "jitter", "early_refresh", "negative_ttl_ms", "stale_if_error_ms", "lease_ttl_ms",
  "lock_wait_ms", "lock_backoff_ms", "on_lock_timeout", "load_soft_timeout_ms", "load_hard_timeout_ms", "on_store_error",
  "max_value_bytes",
];

/**
 * `JSON.stringify` that refuses what JSON cannot carry instead of changing it (docs/value-model.md):
 * NaN and ±Infinity (would become `null`), `undefined`, functions and symbols (dropped or `null`),
 * lone surrogates, and objects that are not plain (`Date`, `Map`, class instances, `toJSON`). A
 * TypeError names the argument. Bigints in the 64-bit range (-2^63 .. 2^64-1) are written as
 * exact integer literals (JavaScript's only exact form of an integer beyond 2^53), which the
 * core then hashes or refuses as it does Python's and Rust's; beyond it, a RangeError.
 */
function toJson(value, name) {
  const paths = new Map(); // container -> its path, for messages like `params.a[2]`
  let big = false;
  const json = JSON.stringify(value, function (k, v) {
    const orig = this[k];
    const parent = paths.get(this); // undefined for JSON.stringify's wrapper of the root
    const what = parent === undefined ? name : Array.isArray(this) ? `${parent}[${k}]` : `${parent}.${k}`;
    if (parent !== undefined && !Array.isArray(this)) text(k, `${parent}: a member name`);
    if (orig !== null && typeof orig === "object") paths.set(orig, what);
    switch (typeof orig) {
      case "number":
        if (!Number.isFinite(orig)) throw new TypeError(`${what} must be a finite number, got ${orig}`);
        return v;
      case "string":
        return text(orig, what);
      case "boolean":
        return v;
      case "bigint":
        if (orig < I64_MIN || orig > MAX_U64) throw new RangeError(`${what} must fit in 64 bits (-2^63 .. 2^64-1), got ${orig}`);
        big = true;
        // a lone surrogate marks it: no string that passed text() holds one, and JSON.stringify
        // writes it as the escape `\udbff`, which no other string's text contains unescaped
        return `\udbff${orig}`;
      case "object": {
        if (orig === null) return v;
        const proto = Object.getPrototypeOf(orig);
        if (!(Array.isArray(orig) || proto === Object.prototype || proto === null) || typeof orig.toJSON === "function") {
          throw new TypeError(`${what} must be plain JSON data (objects, arrays, strings, finite numbers, booleans, null)`);
        }
        return v;
      }
      default: // undefined, function, symbol
        throw new TypeError(`${what} must be plain JSON data, got ${typeof orig}`);
    }
  });
  return big ? json.replace(/"\\udbff(-?[0-9]+)"/g, "$1") : json;
}

/**
 * Instantiate the module. `source` is a compiled `WebAssembly.Module` (Workers), or the module's
 * bytes (`ArrayBuffer`, a typed array, or a Node `Buffer`).
 */
export async function load(source) {
  let instance;
  if (source instanceof WebAssembly.Module) {
    instance = await WebAssembly.instantiate(source, {});
  } else if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    const module = await WebAssembly.compile(source);
    if (WebAssembly.Module.imports(module).length !== 0) {
      throw new TypeError("karlton.wasm must have no imports");
    }
    instance = await WebAssembly.instantiate(module, {});
  } else {
    throw new TypeError("load() takes a WebAssembly.Module or the module's bytes");
  }
  return new Karlton(instance);
}

/** Synchronous variant for a compiled module (e.g. at Worker start-up). */
export function loadSync(module) {
  if (!(module instanceof WebAssembly.Module)) throw new TypeError("loadSync() takes a WebAssembly.Module");
  return new Karlton(new WebAssembly.Instance(module, {}));
}

export class Karlton {
  #x;
  #mem;
  #buf = 0;
  #cap = 0;
  #enc = new TextEncoder();
  #dec = new TextDecoder("utf-8", { fatal: true });

  constructor(instance) {
    const x = instance.exports;
    for (const f of ["karlton_abi_version", "karlton_alloc", "karlton_free", "karlton_call", "karlton_decide", "karlton_jitter"]) {
      if (typeof x[f] !== "function") throw new TypeError(`not a karlton module: no ${f}`);
    }
    const v = x.karlton_abi_version();
    if (v !== ABI_VERSION) throw new TypeError(`karlton.wasm ABI ${v}; this loader speaks ${ABI_VERSION}`);
    this.#x = x;
    this.#mem = x.memory;
    /** The module's ABI version. */
    this.abiVersion = v;
  }

  /** The raw exports (for benchmarks and ABI tests). */
  get exports() {
    return this.#x;
  }

  // -- scalar fast paths ---------------------------------------------------------------------

  /** The raw `karlton_decide` code (0..4, or 255 for an invalid beta). Arguments are bigints. */
  decideCode(now, softAt, hardAt, loadMs, beta, staleIfErrorMs, rand) {
    return this.#x.karlton_decide(now, softAt, hardAt, loadMs, beta, staleIfErrorMs, rand);
  }

  /** Freshness decision: "fresh", "refresh_early", "stale", "usable_on_error" or "gone". */
  decide(nowMs, softAt, hardAt, loadMs, beta, staleIfErrorMs, rand) {
    if (typeof beta !== "number") throw new TypeError("beta must be a number");
    const c = this.#x.karlton_decide(
      u64(nowMs, "nowMs"), u64(softAt, "softAt"), u64(hardAt, "hardAt"), u64(loadMs, "loadMs"),
      beta, u64(staleIfErrorMs, "staleIfErrorMs"), u64(rand, "rand"));
    const d = DECISIONS[c];
    if (d === undefined) throw new RangeError(`beta ${beta} is not a finite number in [0, 100]`);
    return d;
  }

  /** The jittered TTL in ms: a number, or a bigint beyond 2^53 (wasm returns i64: read as u64). */
  jitter(ttlMs, jitterPpm, rand) {
    const r = BigInt.asUintN(64, this.#x.karlton_jitter(u64(ttlMs, "ttlMs"), u64(jitterPpm, "jitterPpm"), u64(rand, "rand")));
    return r <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(r) : r;
  }

  // -- the JSON call -------------------------------------------------------------------------

  /** One request (JSON text) in, the reply text out (`{"ok":..}` or `{"error":..}`). */
  callRaw(text) {
    if (typeof text !== "string") throw new TypeError("callRaw() takes a string");
    const x = this.#x;
    const need = Math.max(1, text.length * 3);
    if (need > this.#cap) {
      if (this.#buf) x.karlton_free(this.#buf, this.#cap);
      let cap = 256;
      while (cap < need) cap *= 2;
      this.#buf = x.karlton_alloc(cap) >>> 0;
      this.#cap = this.#buf ? cap : 0;
      if (!this.#buf) throw new RangeError("karlton_alloc failed (out of memory)");
    }
    const { written } = this.#enc.encodeInto(text, new Uint8Array(this.#mem.buffer, this.#buf, this.#cap));
    const r = x.karlton_call(this.#buf, written);
    const ptr = Number((r >> 32n) & MASK32);
    const len = Number(r & MASK32);
    return this.#dec.decode(new Uint8Array(this.#mem.buffer, ptr, len));
  }

  /** As `call`, but integers beyond 2^53 cross as bigints (both ways), exactly. */
  callExact(req) {
    const reply = parseBig(this.callRaw(stringifyBig(req)));
    if ("ok" in reply) return reply.ok;
    const e = reply.error;
    throw new KarltonError(e.code, e.message, e.detail);
  }

  /**
   * A coordinator (see `Coordinator`). The module has no randomness of its own: `seed` must come
   * from the host's random source (`crypto.getRandomValues`), a fresh one per coordinator — it
   * feeds jitter and XFetch (lease tokens come from the store). `fastRead`: the store has a fast read (Redis).
   * `policy`: the default policy of its calls.
   */
  coordinator({ seed, fastRead = false, policy } = {}) {
    const h = this.call({ op: "coord_create", seed: String(u64(seed, "seed")), fast_read: fastRead });
    return new Coordinator(this, h, policy);
  }

  /** A request object in; the `ok` value out, or a thrown `KarltonError`. */
  call(req) {
    const text = this.callRaw(JSON.stringify(req));
    // A reply with an integer of 16+ digits may hold one beyond 2^53 (an entry's version or
    // instant): read those exactly, as bigints, instead of rounding them.
    const reply = /[0-9]{16}/.test(text) ? parseBig(text) : JSON.parse(text);
    if ("ok" in reply) return reply.ok;
    const e = reply.error;
    throw new KarltonError(e.code, e.message, e.detail);
  }

  // -- typed wrappers ------------------------------------------------------------------------

  /** Build a key: `{ key, generationKey, tagKeys }`. `params` is any JSON value (hashed canonically). */
  key({ namespace, segments = [], params, paramsJson, version, hashTag = false, maxLen, tags = [] }) {
    // Strings must be valid Unicode, numbers exact (a u64: a safe integer or a bigint), params
    // plain JSON data: anything else is a TypeError naming the argument, never changed on the way.
    // Arguments are checked in the one order of docs/value-model.md (namespace, segments, params,
    // version, hashTag, maxLen, tags): when one is refused here, the module first checks the ones
    // before it, so that the first bad argument is the one reported, as in every runtime.
    const req = { op: "key_build" };
    try {
      req.namespace = text(namespace, "namespace");
      req.segments = Array.isArray(segments) ? segments.map((s, i) => text(s, `segments[${i}]`)) : segments;
      req.params_json = paramsJson ?? (params === undefined || params === null ? undefined : toJson(params, "params"));
      req.version = version === undefined || version === null ? undefined : String(u64(version, "version"));
      req.hash_tag = hashTag;
      req.max_len = maxLen === undefined || maxLen === null ? undefined : String(u64(maxLen, "maxLen"));
      req.tags = Array.isArray(tags) ? tags.map((t, i) => text(t, `tags[${i}]`)) : tags;
    } catch (e) {
      if ("namespace" in req) this.call(req);
      throw e;
    }
    const r = this.call(req);
    return { key: r.key, generationKey: r.generation_key, tagKeys: r.tag_keys };
  }

  /** Canonical params hash (32 hex). */
  paramsHash(params) {
    return this.call({ op: "params_hash", params_json: toJson(params, "params") }).hash;
  }

  /**
   * Validate a policy (object with the core's field names, durations in ms: a fraction is
   * rounded half away from zero); the normalized policy.
   */
  policy(spec) {
    let json;
    try {
      json = toJson(spec, "policy");
    } catch (e) {
      if (spec === null || typeof spec !== "object" || Array.isArray(spec)) throw e;
      // The module reads the fields in its order (unknown ones, then PolicySpec's): of the
      // field that cannot be sent and the fields before it, the first bad one is reported — a
      // JSON type or sign error of theirs; their value checks come after every field is read.
      // (an unknown field is refused whatever its value: sent as null)
      const before = Object.fromEntries(Object.keys(spec).filter((n) => !POLICY_FIELDS.includes(n)).map((n) => [n, null]));
      const reportFirst = (err) => {
        try {
          this.call({ op: "policy", policy_json: toJson(before, "policy") });
        } catch (first) {
          if (first instanceof KarltonError && first.detail?.kind === "json") throw first;
        }
        throw err;
      };
      for (const name of POLICY_FIELDS.filter((n) => Object.hasOwn(spec, n))) {
        try {
          toJson(spec[name], `policy.${name}`);
        } catch (err) {
          reportFirst(err);
        }
        before[name] = spec[name];
      }
      reportFirst(e); // (an unknown field's value or a member name)
    }
    return this.call({ op: "policy", policy_json: json });
  }

  /** Encode an entry (core JSON form: value_hex, version as string); the bytes. */
  entryEncode(entry) {
    return hexToBytes(this.call({ op: "entry_encode", entry }));
  }

  /**
   * Where entry bytes stand at `nowMs` under `policy` (default policy if omitted): core's
   * `entry::describe`, `{ freshness, soft_at, hard_at, usable_until, load_ms, version, negative,
   * codec, value_len, generations, tags }`; throws KarltonError code "entry_decode" if corrupt.
   */
  entryDescribe(bytes, nowMs, policy) {
    let now;
    try {
      now = u64(nowMs, "nowMs").toString();
    } catch (e) {
      // the module checks the policy first (docs/value-model.md): its error comes first
      if (policy !== undefined) this.call({ op: "policy", policy });
      throw e;
    }
    return this.call({ op: "entry_describe", hex: bytesToHex(bytes), now_ms: now, policy });
  }

  /** Decode entry bytes; throws KarltonError code "entry_decode" for corrupt bytes (a miss). */
  entryDecode(bytes) {
    return this.call({ op: "entry_decode", hex: bytesToHex(bytes) });
  }

  /** `{ soft_ttl_ms, hard_ttl_ms, jitter_ppm }` for one fill. */
  jitteredTtls(policy, rand) {
    return this.call({ op: "jittered_ttls", policy, rand: String(rand) });
  }

  /** Create a get_or_load flow; its handle. */
  flowCreate(request, policy, seed) {
    return this.call({ op: "flow_create", request, policy, seed: String(seed) });
  }

  /** First step (Step JSON). With `store`, store steps run inside the module. */
  flowStart(flow, nowMs, store) {
    return this.call({ op: "flow_start", flow, now_ms: nowMs, store });
  }

  /** Feed an Input (JSON form); the next Step. */
  flowHandle(flow, nowMs, input, store) {
    return this.call({ op: "flow_handle", flow, now_ms: nowMs, input, store });
  }

  /** Drop a flow; its counters. */
  flowDrop(flow) {
    return this.call({ op: "flow_drop", flow });
  }

  /** Create an in-module memory store; its handle. */
  storeCreate(opts = {}) {
    return this.call({ op: "store_create", max_entries: opts.maxEntries, max_bytes: opts.maxBytes, shards: opts.shards });
  }

  /** Run one StoreOp (JSON form) against an in-module store; the StoreReply. */
  storeApply(store, nowMs, storeOp) {
    return this.call({ op: "store_apply", store, now_ms: nowMs, store_op: storeOp });
  }

  /** Drop a store. */
  storeDrop(store) {
    this.call({ op: "store_drop", store });
  }

  /**
   * `get_or_load` against an in-module store: `{ flow, step, stats }`. Drive the returned step
   * (load, wait, serve) with `flowHandle(flow, now, input, store)`; `flow` is null when done.
   */
  getOrLoad(store, request, policy, seed, nowMs) {
    return this.call({ op: "get_or_load", store, request, policy, seed: String(seed), now_ms: nowMs });
  }
}

const BIG = "\u0000big:";

/**
 * JSON.parse that keeps integers beyond 2^53 exact as BigInts, and its inverse `stringifyBig`
 * (BigInts become bare integer literals again). Vector files and replies go through these, so
 * u64 values survive JavaScript exactly as they do in Rust.
 */
export function parseBig(text) {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if ((c >= "0" && c <= "9") || c === "-") {
      let j = i + 1;
      while (j < text.length && /[0-9.eE+-]/.test(text[j])) j++;
      const lit = text.slice(i, j);
      out += /^-?[0-9]+$/.test(lit) && !Number.isSafeInteger(Number(lit)) ? `"\\u0000big:${lit}"` : lit;
      i = j;
    } else {
      out += c;
      i++;
    }
  }
  return JSON.parse(out, (_, v) => (typeof v === "string" && v.startsWith(BIG) ? BigInt(v.slice(BIG.length)) : v));
}

export function stringifyBig(v) {
  return JSON.stringify(v, (_, x) => (typeof x === "bigint" ? BIG + x : x)).replace(/"\\u0000big:(-?[0-9]+)"/g, "$1");
}

/**
 * A coordinator in the module: karlton-core's per-process machine (flight table, joiners, C5,
 * background refreshes, every stats counter), driven by the host as in the core's module docs.
 * Wire forms are the core's serde forms (Ticket, Action, Event, Input, Op, Served); integers
 * beyond 2^53 arrive as bigints. Create one with `karlton.coordinator({ seed, fastRead })`; free it
 * with `drop()`. `store` (an in-module memory store handle) runs store actions inside the module.
 */
export class Coordinator {
  #k;
  #policy;
  constructor(k, handle, policy) {
    this.#k = k;
    this.#policy = policy;
    /** The module's handle for it. */
    this.id = handle;
  }
  #call(op, fields) {
    return this.#k.callExact({ op: `coord_${op}`, coord: this.id, ...fields });
  }
  #pol(policy) {
    const p = policy ?? this.#policy;
    if (p === undefined) throw new TypeError("no policy: pass one here or to coordinator()");
    return p;
  }
  /** A new read-through call: a Ticket (`answer`, `lead` with its first Action, or `join`). */
  /**
   * `within`: the flights whose loaders this call runs in; a key one of them is loading is
   * answered a `reentrant` error (the call would wait for itself).
   */
  getOrLoad(nowMs, request, { policy, store, within } = {}) {
    return this.#call("get_or_load", { now_ms: nowMs, request, policy: this.#pol(policy), store, within });
  }
  /** The Served a `get_or_load` answered did not decode: count it, take its hit back, load again. */
  getOrLoadReplacing(nowMs, request, served, { policy, store } = {}) {
    return this.#call("get_or_load_replacing", { now_ms: nowMs, request, served, policy: this.#pol(policy), store });
  }
  /**
   * Instead of feeding `continue` after a `serve` whose value did not decode: the call leads
   * again (a new call id, the same lease and loader) and its refresh answers the caller.
   */
  replaceServed(nowMs, call, { store } = {}) {
    return this.#call("replace_served", { now_ms: nowMs, call, store });
  }
  /** A joiner whose flight woke: its Ticket. */
  joined(nowMs, call, { store } = {}) {
    return this.#call("joined", { now_ms: nowMs, call, store });
  }
  /** Feed an Input for `call`; the next Action. */
  handle(nowMs, call, input, { store } = {}) {
    return this.#call("handle", { now_ms: nowMs, call, input, store });
  }
  /** The replies to a `fast_read` action (RedisValue forms), or `{ error: message }`. */
  handleFastRead(nowMs, call, replies, { store } = {}) {
    const r = Array.isArray(replies) ? { replies } : { error: String(replies?.error) };
    return this.#call("handle_fast_read", { now_ms: nowMs, call, ...r, store });
  }
  /** The caller went away: the StoreOp to run (a lease release), or null. */
  cancel(call) {
    return this.#call("cancel", { call });
  }
  /** A one-op call (Op form: get / set / invalidate / bump): `{ call, action }`. */
  op(nowMs, op, { policy, store } = {}) {
    return this.#call("op", { now_ms: nowMs, call_op: op, policy: this.#pol(policy), store });
  }
  /** The next Event (`wake`, `background_error`), or null. */
  pollEvent() {
    return this.#call("poll_event", {});
  }
  /** Every pending Event (drain after each input). */
  events() {
    return this.#call("events", {});
  }
  /** The counters (Stats form). */
  stats() {
    return this.#call("stats", {});
  }
  /** `[calls, flights]` alive (both 0 when idle). */
  pending() {
    return this.#call("pending", {});
  }
  /** A value a `get` answered did not decode: a miss plus `corrupt_entries`, not a hit. */
  reportUndecodable(served) {
    this.#call("report_undecodable", { served });
  }
  /** The memory store's fresh hit (counted), or null: try it before getOrLoad on an in-module store. */
  memoryHit(store, nowMs, key, genKeys = [], { policy } = {}) {
    return this.#call("memory_hit", { store, now_ms: nowMs, key, gen_keys: genKeys, policy: this.#pol(policy) });
  }
  /** Free the coordinator; its final counters. */
  drop() {
    return this.#call("drop", {});
  }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function bytesToHex(bytes) {
  let s = "";
  for (const b of bytes) s += HEX[b];
  return s;
}

export function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) throw new TypeError("not hex");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}
