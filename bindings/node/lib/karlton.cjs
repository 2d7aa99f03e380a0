'use strict';
// The JavaScript half of karlton for Node: translates types and drives the core's coordinator.
// Every decision — policy, who loads and who joins, what a joiner gets, every counter — is made by
// karlton-core (through ../native.cjs); this file owns only what must live on the JS side:
// promises, timers, the loader call, the codec, and the user's ioredis client.

const { EventEmitter } = require('node:events');
const { AsyncLocalStorage } = require('node:async_hooks');

// The flights whose loaders the current async context runs in, as [cache, flight] pairs: a
// getOrLoad for a key this chain is loading would wait for itself, so the core refuses it.
const LOADING = new AsyncLocalStorage();
const native = require('../native.cjs');

const nativeGetOrLoad = native.getOrLoadFunction();
const nativeGet = native.getFunction();
const nativeBuildKey = native.buildKeyFunction();
const nativeGetOrLoadKey = native.getOrLoadKeyFunction();
const nativeGetKey = native.getKeyFunction();

const CODEC_RAW = 0;
const CODEC_JSON = 1;

const kNative = Symbol('karlton.native');
const kBuilt = Symbol('karlton.built'); // the builder steps' constructor tag
const kHandle = Symbol('karlton.handle');
const kPolicyHandle = Symbol('karlton.policyHandle');
const kNs = Symbol('karlton.namespace');
const kSegs = Symbol('karlton.segments');
const kParams = Symbol('karlton.params');
const kVersion = Symbol('karlton.version');
const kHashTag = Symbol('karlton.hashTag');
const kMaxLen = Symbol('karlton.maxLen');
const kStr = Symbol('karlton.key');
const kGen = Symbol('karlton.generationKey');

// ---------------------------------------------------------------------------------------------
// Errors

/** An error raised by karlton itself (not by the loader), with a machine-readable `code`. */
class KarltonError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'KarltonError';
    this.code = code;
  }
}

const ERROR_CODES = {
  load_timeout: 'ERR_KARLTON_LOAD_TIMEOUT',
  lock_timeout: 'ERR_KARLTON_LOCK_TIMEOUT',
  store: 'ERR_KARLTON_STORE',
  protocol: 'ERR_KARLTON_PROTOCOL',
  codec: 'ERR_KARLTON_CODEC',
  load: 'ERR_KARLTON_LOAD',
  reentrant: 'ERR_KARLTON_REENTRANT',
};

function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `an object (${v.constructor?.name ?? 'Object'})`;
  if (typeof v === 'string') return `a string (${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)})`;
  return `${typeof v} (${String(v)})`;
}

function typeError(name, expected, got) {
  return new TypeError(`karlton: \`${name}\` must be ${expected}, got ${describe(got)}`);
}

/** A native InvalidArg error as a RangeError (a value of the right type but not accepted). */
function rangeFrom(e, rename) {
  if (e && e.code === 'InvalidArg') {
    let msg = e.message;
    if (rename) msg = rename(msg);
    return new RangeError(`karlton: ${msg}`);
  }
  return e;
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Key

function checkVersion(name, v) {
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 1n << 64n) throw new RangeError(`karlton: \`${name}\` must be in 0..2^64, got ${v}`);
    return v.toString();
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`karlton: \`${name}\` must be a non-negative safe integer (or a bigint), got ${v}`);
    }
    return String(v);
  }
  throw typeError(name, 'a non-negative integer or bigint', v);
}

/**
 * A cache key: `namespace:segment:segment…`, escaped so different segment lists never collide,
 * with an optional canonical params hash, version and Redis Cluster hash tag. Immutable: the
 * builder methods return a new Key.
 *
 * Building one is one native call that returns the core's key string; the generation key comes
 * from a per-namespace memo, and a native key object is made only when a call needs one (tags,
 * writes) — a `new Key` per request costs about as much as the strings it holds.
 */
class Key {
  constructor(namespace, ...segments) {
    if (namespace === kBuilt) {
      // a builder step: [ns, segs, params, version, hashTag, maxLen, [entry key, generation key]]
      const [ns, segs, params, version, hashTag, maxLen, [k, g]] = segments;
      // (the same property order as below: one hidden class for every Key)
      this[kStr] = k;
      this[kNs] = ns;
      this[kSegs] = segs;
      this[kParams] = params;
      this[kVersion] = version;
      this[kHashTag] = hashTag;
      this[kMaxLen] = maxLen;
      this[kGen] = g;
      this[kHandle] = null;
      return;
    }
    if (typeof namespace !== 'string') throw typeError('namespace', 'a string', namespace);
    for (let i = 0; i < segments.length; i++) {
      const s = segments[i];
      if (typeof s === 'string') continue;
      // Integers only, as Python's int segments: a float's text differs between runtimes
      // (1e21 is "1e+21" here), and a number beyond 2^53 is already rounded (use a bigint).
      else if (typeof s === 'number' && Number.isSafeInteger(s)) segments[i] = String(s);
      else if (typeof s === 'bigint') segments[i] = s.toString();
      else {
        // The namespace is checked first (docs/value-model.md: one order in every runtime).
        nativeBuildKey(namespace, []);
        throw typeError(`segments[${i}]`, 'a string, a safe integer or a bigint', s);
      }
    }
    // the core builds the string; throws RangeError (`karlton: …`) for an invalid namespace or
    // a string that is not valid Unicode (a lone surrogate)
    this[kStr] = nativeBuildKey(namespace, segments);
    this[kNs] = namespace;
    this[kSegs] = segments;
    this[kParams] = null;
    this[kVersion] = null;
    this[kHashTag] = false;
    this[kMaxLen] = null;
    this[kGen] = null; // the namespace generation key (from the memo, on first use)
    this[kHandle] = null; // the native key object (on first use)
  }

  #with(field, value) {
    const next = [this[kNs], this[kSegs], this[kParams], this[kVersion], this[kHashTag], this[kMaxLen]];
    next[field] = value;
    let built;
    try {
      built = native.buildKey(next[0], next[1], next[2], next[3], next[4], next[5]);
    } catch (e) {
      throw rangeFrom(e);
    }
    return new Key(kBuilt, ...next, built);
  }

  /** Parameters (plain JSON data), hashed canonically (RFC 8785 + SHA-256) into the key. */
  params(params) {
    // null and undefined mean "no params", in every runtime (Python's None).
    if (params === undefined) params = null;
    let json;
    try {
      json = paramsText(params);
    } catch (e) {
      if (e instanceof TypeError || e instanceof RangeError) throw e;
      throw new TypeError(`karlton: \`params\` must be JSON-serializable: ${e.message}`);
    }
    if (json === undefined) throw typeError('params', 'a JSON value', params);
    return this.#with(2, json);
  }

  /** A version suffix (`:v7`). */
  version(v) {
    return this.#with(3, checkVersion('version', v));
  }

  /** The Redis Cluster hash-tag form (`{ns}:…`): every key of the namespace in one slot. */
  hashTag(on = true) {
    if (typeof on !== 'boolean') throw typeError('on', 'a boolean', on);
    return this.#with(4, on);
  }

  /**
   * Longest key in bytes (≥ 128); longer keys keep a readable prefix and end in a hash. Taken
   * exactly: a fraction, a negative number or one beyond 2^53 is a RangeError (never wrapped).
   */
  maxLen(n) {
    if (typeof n === 'bigint') {
      // a u64, as in every runtime; past 2^53 it is longer than any key a string can hold, so
      // the largest safe integer means the same (never truncate) and reaches the core exactly
      if (n < 0n || n >= 1n << 64n) throw new RangeError(`karlton: \`n\` must be in 0..2^64, got ${n}`);
      return this.#with(5, n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n));
    }
    if (typeof n !== 'number') throw typeError('n', 'a non-negative integer or bigint', n);
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`karlton: \`n\` must be a non-negative safe integer (or a bigint), got ${n}`);
    }
    return this.#with(5, n);
  }

  /** The namespace (unescaped). */
  get namespace() {
    return this[kNs];
  }

  /** The namespace's generation counter key (bump it to orphan the namespace). */
  get generationKey() {
    return genOf(this);
  }

  /** The generation counter key of `tag` in this key's namespace. */
  tagKey(tag) {
    if (typeof tag !== 'string') throw typeError('tag', 'a string', tag);
    try {
      return native.tagKey(this[kNs], this[kHashTag], this[kMaxLen], tag);
    } catch (e) {
      throw rangeFrom(e);
    }
  }

  /** The built key string. */
  toString() {
    return this[kStr];
  }

  toJSON() {
    return this[kStr];
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return `Key(${this[kStr]})`;
  }
}

/** namespace → its generation key in the default form (no hash tag, default maxLen). */
const GEN_MEMO = new Map();
const GEN_MEMO_MAX = 4096;

/** The namespace generation key of `key` (memoized per namespace for default-form keys). */
function genOf(key) {
  let g = key[kGen];
  if (g !== null) return g;
  g = GEN_MEMO.get(key[kNs]);
  if (g === undefined) {
    g = native.buildKey(key[kNs], [], null, null, false, null)[1];
    if (GEN_MEMO.size >= GEN_MEMO_MAX) GEN_MEMO.clear();
    GEN_MEMO.set(key[kNs], g);
  }
  return (key[kGen] = g);
}

/** The native key object of `key` (made on first need: tagged calls, writes). */
function handleOf(key) {
  let h = key[kHandle];
  if (h === null) {
    h = key[kHandle] = native.keyHandle(key[kNs], key[kSegs], key[kParams], key[kVersion], key[kHashTag], key[kMaxLen]);
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// Policy

const DURATION_FIELDS = {
  softTtl: 'soft_ttl_ms',
  hardTtl: 'hard_ttl_ms',
  negativeTtl: 'negative_ttl_ms',
  staleIfError: 'stale_if_error_ms',
  leaseTtl: 'lease_ttl_ms',
  lockWait: 'lock_wait_ms',
  loadSoftTimeout: 'load_soft_timeout_ms',
  loadHardTimeout: 'load_hard_timeout_ms',
};
const NULLABLE = new Set(['hardTtl', 'loadSoftTimeout', 'loadHardTimeout']);
const NUMBER_FIELDS = { jitter: 'jitter', earlyRefresh: 'early_refresh', maxValueBytes: 'max_value_bytes' };
const ENUM_FIELDS = {
  onLockTimeout: ['on_lock_timeout', { load: 'load', serveStale: 'serve_stale', serve_stale: 'serve_stale', error: 'error' }],
  onStoreError: ['on_store_error', { load: 'load', error: 'error' }],
};
/** The options in the core's field order (`PolicySpec`'s), the order they are checked in. */
const POLICY_ORDER = [
  'softTtl', 'hardTtl', 'jitter', 'earlyRefresh', 'negativeTtl', 'staleIfError', 'leaseTtl', 'lockWait',
  'lockBackoff', 'onLockTimeout', 'loadSoftTimeout', 'loadHardTimeout', 'onStoreError', 'maxValueBytes',
];
const SNAKE_TO_CAMEL = {};
for (const [c, s] of Object.entries(DURATION_FIELDS)) SNAKE_TO_CAMEL[s] = c;
for (const [c, s] of Object.entries(NUMBER_FIELDS)) SNAKE_TO_CAMEL[s] = c;
for (const [c, [s]] of Object.entries(ENUM_FIELDS)) SNAKE_TO_CAMEL[s] = c;
SNAKE_TO_CAMEL.lock_backoff_ms = 'lockBackoff';
const renameFields = (msg) => msg.replace(/`([a-z_]+)`/g, (m, f) => (SNAKE_TO_CAMEL[f] ? `\`${SNAKE_TO_CAMEL[f]}\`` : m));

function duration(name, v) {
  if (typeof v === 'number') {
    // The core's one rule (half away from zero), shared with Python's seconds.
    const ms = native.durationMs(v, 1);
    if (ms === null) throw new RangeError(`karlton: \`${name}\` must be a finite number of ms >= 0, got ${v}`);
    // Beyond 2^53 the number would reach the core's JSON as a float literal (a type error that
    // names no field); any safe integer above 2^40 is refused by the core as too long, naming it.
    return Math.min(ms, Number.MAX_SAFE_INTEGER);
  }
  if (typeof v === 'string') {
    try {
      return native.parseDurationMs(v);
    } catch (e) {
      throw new RangeError(`karlton: \`${name}\`: ${e.message}`);
    }
  }
  throw typeError(name, 'a number of milliseconds or a duration string like "5m"', v);
}

/**
 * How entries live: TTLs (ms numbers or strings like "5m"), jitter, early refresh, negative
 * caching, stale-if-error, leases and waits. Validated once, by the core, at construction.
 */
class Policy {
  #options;

  constructor(options = {}) {
    if (options instanceof Policy) return options;
    if (!isPlainObject(options)) throw typeError('policy', 'an object of policy options', options);
    const spec = {};
    const normalized = {};
    // Unknown options first, then each option in the core's field order, whatever the
    // object's order (docs/value-model.md, "Which error"): of several bad ones, the same one is
    // reported in every runtime.
    for (const name of Object.keys(options)) {
      if (!POLICY_ORDER.includes(name)) {
        throw new TypeError(`karlton: unknown policy option \`${name}\` (known: ${[...Object.keys(DURATION_FIELDS), ...Object.keys(NUMBER_FIELDS), ...Object.keys(ENUM_FIELDS), 'lockBackoff'].join(', ')})`);
      }
    }
    for (const name of POLICY_ORDER) {
      if (!Object.hasOwn(options, name)) continue;
      const v = options[name];
      if (v === undefined) continue;
      if (name in DURATION_FIELDS) {
        if (v === null && NULLABLE.has(name)) spec[DURATION_FIELDS[name]] = null;
        else spec[DURATION_FIELDS[name]] = duration(`policy.${name}`, v);
        normalized[name] = spec[DURATION_FIELDS[name]];
      } else if (name in NUMBER_FIELDS) {
        if (typeof v !== 'number') throw typeError(`policy.${name}`, 'a number', v);
        // JSON.stringify would write NaN and ±Infinity as null (a type error naming no field)
        if (!Number.isFinite(v)) throw new RangeError(`karlton: \`policy.${name}\` must be a finite number, got ${v}`);
        spec[NUMBER_FIELDS[name]] = v;
        normalized[name] = v;
      } else if (name in ENUM_FIELDS) {
        const [field, values] = ENUM_FIELDS[name];
        if (typeof v !== 'string') throw typeError(`policy.${name}`, `one of ${Object.keys(values).map((x) => `'${x}'`).join(', ')}`, v);
        if (!(v in values)) throw new RangeError(`karlton: \`policy.${name}\` must be one of ${Object.keys(values).map((x) => `'${x}'`).join(', ')}, got '${v}'`);
        spec[field] = values[v];
        normalized[name] = v;
      } else if (name === 'lockBackoff') {
        const list = Array.isArray(v) ? v : [v];
        spec.lock_backoff_ms = list.map((x, i) => duration(`policy.lockBackoff[${i}]`, x));
        normalized[name] = spec.lock_backoff_ms;
      }
    }
    try {
      this[kNative] = new native.NativePolicy(JSON.stringify(spec));
      this[kPolicyHandle] = this[kNative].handle();
    } catch (e) {
      throw rangeFrom(e, renameFields);
    }
    this.#options = normalized;
  }

  /** Every setting, resolved (durations in ms), in the option names `new Policy()` takes. */
  toJSON() {
    const spec = JSON.parse(this[kNative].toJson());
    const out = {};
    for (const [field, v] of Object.entries(spec)) {
      const name = SNAKE_TO_CAMEL[field];
      if (!name) continue;
      if (name === 'onLockTimeout' && v === 'serve_stale') out[name] = 'serveStale';
      else out[name] = v;
    }
    return out;
  }
}

function toPolicy(name, p) {
  if (p === undefined || p === null) return null;
  if (p instanceof Policy) return p;
  if (isPlainObject(p)) return new Policy(p);
  throw typeError(name, 'a Policy or an object of policy options', p);
}

// ---------------------------------------------------------------------------------------------
// Stores

/** The embedded store: bounded by entries and bytes, exact LRU per shard. */
class MemoryStore {
  #maxEntries;
  #maxBytes;
  constructor(options = {}) {
    if (!isPlainObject(options)) throw typeError('options', 'an object', options);
    const { maxEntries = 100_000, maxBytes = 256 * 1024 * 1024, seed, ...rest } = options;
    for (const k of Object.keys(rest)) throw new TypeError(`karlton: unknown MemoryStore option \`${k}\` (known: maxEntries, maxBytes, seed)`);
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw typeError('maxEntries', 'a positive integer', maxEntries);
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw typeError('maxBytes', 'a positive integer', maxBytes);
    // The seed keys shard placement and eviction's admission coin: from the OS by default, so
    // an attacker cannot aim keys at one sketch slot; pass one to replay evictions exactly.
    let s;
    if (seed === undefined) s = require('node:crypto').randomBytes(8).readBigUInt64LE(0).toString();
    else if (typeof seed === 'bigint' && seed >= 0n && seed < 1n << 64n) s = seed.toString();
    else if (Number.isSafeInteger(seed) && seed >= 0) s = String(seed);
    else throw typeError('seed', 'a u64 (bigint or non-negative safe integer)', seed);
    this[kNative] = new native.NativeMemoryStore(maxEntries, maxBytes, undefined, s);
    this.#maxEntries = maxEntries;
    this.#maxBytes = maxBytes;
  }

  /** Slots held (entries, live leases and version floors). */
  get size() {
    return this[kNative].size;
  }

  /** Bytes charged against `maxBytes`. */
  get bytes() {
    return this[kNative].bytes;
  }

  /** Entries evicted for space so far (Python's `evictions`). */
  get evictions() {
    return this[kNative].evictions;
  }

  /** The `maxEntries` it was built with. */
  get maxEntries() {
    return this.#maxEntries;
  }

  /** The `maxBytes` it was built with. */
  get maxBytes() {
    return this.#maxBytes;
  }
}

/**
 * The canonical params hash (RFC 8785 JSON + SHA-256, 32 hex) `Key#params` puts in a key, as
 * Python's `params_hash`. Params follow the value model (plain JSON data only).
 */
function paramsHash(params) {
  const json = paramsText(params);
  try {
    return native.paramsHash(json);
  } catch (e) {
    throw rangeFrom(e);
  }
}

/**
 * Params as JSON text, checked by the value model — and, unlike cached values, with bigints
 * in the 64-bit range (-2^63 .. 2^64-1) written as exact integer literals, which the core then
 * hashes or refuses as it does Python's and Rust's ints (a number beyond 2^53 is already
 * rounded: a bigint is JavaScript's only exact form of one).
 */
function paramsText(params) {
  if (!checkJson(params, 'params', 0, true)) return JSON.stringify(params);
  // A lone surrogate marks a bigint: no checked string holds one, and JSON.stringify writes it
  // as the escape `\udbff`, which no other string's text contains unescaped.
  return JSON.stringify(params, (_, x) => (typeof x === 'bigint' ? `\udbff${x}` : x)).replace(/"\\udbff(-?[0-9]+)"/g, '$1');
}

const SCRIPTS = native.redisScripts();
const INACTIVE = new Set(['end', 'close', 'reconnecting']);

/**
 * Deadlines for script calls without a timer per call: pending calls sit in a set and one
 * unref'd interval (a quarter of the timeout) fails the overdue ones. A per-call setTimeout +
 * Promise.race costs more client CPU than the rest of a Redis hit.
 */
class Deadlines {
  #ms;
  #pending = new Set();
  #timer = null;

  constructor(ms) {
    this.#ms = ms;
  }

  run(promise) {
    if (!(this.#ms > 0)) return promise;
    return new Promise((resolve, reject) => {
      const entry = this.track(reject);
      promise.then(
        (v) => {
          this.#pending.delete(entry);
          resolve(v);
        },
        (e) => {
          this.#pending.delete(entry);
          reject(e);
        },
      );
    });
  }

  /** Fail `reject` after the timeout unless `untrack`ed first; null when there is no timeout. */
  track(reject) {
    if (!(this.#ms > 0)) return null;
    const entry = { at: Date.now() + this.#ms, reject };
    this.#pending.add(entry);
    if (this.#timer === null) this.#arm();
    return entry;
  }

  untrack(entry) {
    if (entry !== null) this.#pending.delete(entry);
  }

  #arm() {
    this.#timer = setInterval(() => {
      const now = Date.now();
      for (const e of this.#pending) {
        if (e.at <= now) {
          this.#pending.delete(e);
          e.reject(new Error(`redis command timed out after ${this.#ms} ms`));
        }
      }
      if (this.#pending.size === 0) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    }, Math.max(5, this.#ms / 4));
    this.#timer.unref?.();
  }
}

/** An error reply from the server (WRONGTYPE, LOADING, …), as opposed to a connection failure. */
function isReplyError(e) {
  return e !== null && typeof e === 'object' && e.name === 'ReplyError';
}

/**
 * Redis through the user's ioredis client (standalone or Cluster). Runs the core's Lua scripts
 * (EVALSHA, falling back to EVAL on NOSCRIPT); never any script of its own. A fresh hit takes
 * the core's fast path instead: a few plain commands (the core's `fast_read_commands`) written
 * in one flush (on a Cluster: one pipeline, routed by the keys' slot), the replies judged by
 * the core.
 */
class RedisStore {
  #client;
  #deadlines;
  #cluster;
  #down = false;
  // The caches on this store (weakly: a cache dropped by its owner is not kept alive by it).
  #caches = new Set();

  /**
   * @param client an ioredis `Redis` or `Cluster`
   * @param options.commandTimeout ms before a script call counts as a store failure (default
   *   250, as the Rust and Python stores; 0 = wait as long as the client does)
   * @param options.fastReads the pipelined fresh-hit read (default true). On a Cluster it is
   *   one ioredis pipeline, which ioredis routes by the keys' slot to the primary that owns them
   *   (the `TIME` in it has no key and goes along); keys must be in hash-tag form there anyway.
   */
  constructor(client, options = {}) {
    if (client === null || typeof client !== 'object' || typeof client.evalshaBuffer !== 'function' || typeof client.evalBuffer !== 'function') {
      throw typeError('client', 'an ioredis client (Redis or Cluster)', client);
    }
    if (!isPlainObject(options)) throw typeError('options', 'an object', options);
    const { commandTimeout = 250, fastReads = true, ...rest } = options;
    for (const k of Object.keys(rest)) throw new TypeError(`karlton: unknown RedisStore option \`${k}\` (known: commandTimeout, fastReads)`);
    if (typeof commandTimeout !== 'number' || !(commandTimeout >= 0)) throw typeError('commandTimeout', 'a number of ms >= 0', commandTimeout);
    if (typeof fastReads !== 'boolean') throw typeError('fastReads', 'a boolean', fastReads);
    this.#client = client;
    this.#deadlines = new Deadlines(commandTimeout);
    // callBuffer is ioredis's generic command; a Cluster sends the fast read as a pipeline.
    this.#cluster = client.isCluster === true;
    this._fast = fastReads && (this.#cluster ? typeof client.pipeline === 'function' : typeof client.callBuffer === 'function');
    // ioredis prints "[ioredis] Unhandled error event" for every failed reconnect when nobody
    // listens. Listen, and report an outage once (until the client is ready again) through
    // each cache's 'error' event / onBackgroundError; calls fail fast meanwhile (_eval).
    if (typeof client.on === 'function') {
      client.on('error', (err) => {
        if (this.#down) return;
        this.#down = true;
        for (const ref of this.#caches) {
          const cache = ref.deref();
          if (cache === undefined) this.#caches.delete(ref);
          else cache._storeError(err);
        }
      });
      client.on('ready', () => {
        this.#down = false;
      });
    }
  }

  /** Report this store's outages to `cache` (called by the Cache constructor). */
  _attach(cache) {
    for (const ref of this.#caches) if (ref.deref() === undefined) this.#caches.delete(ref);
    this.#caches.add(new WeakRef(cache));
  }

  /** The ioredis client. */
  get client() {
    return this.#client;
  }

  /** Load every script now (optional: calls fall back to EVAL on NOSCRIPT by themselves). */
  async loadScripts() {
    for (const s of SCRIPTS) await this.#client.script('LOAD', s.source);
  }

  /** Run core script `script` (an index into the core's list) with `keys` and `args`. */
  _eval(script, keys, args) {
    const client = this.#client;
    if (INACTIVE.has(client.status)) {
      return Promise.reject(new Error(`redis connection is ${client.status}`));
    }
    const s = SCRIPTS[script];
    const n = keys.length;
    const p = client.evalshaBuffer(s.sha, n, ...keys, ...args).catch((e) => {
      if (e && typeof e.message === 'string' && e.message.startsWith('NOSCRIPT')) {
        return client.evalBuffer(s.source, n, ...keys, ...args);
      }
      throw e;
    });
    return this.#deadlines.run(p);
  }

  /**
   * The fast read: send `cmds` (the core's, each `[name, ...args]`) back to back, corked into
   * one write when the connection is up (one syscall, and the server reads them as one batch).
   * Resolves the replies in order; rejects with the first failure — an error reply
   * (`isReplyError`: not a hit, run the read script) or a store failure (down, timeout).
   */
  _fastRead(cmds) {
    const client = this.#client;
    const status = client.status;
    if (INACTIVE.has(status)) {
      return Promise.reject(new Error(`redis connection is ${status}`));
    }
    if (this.#cluster) return this.#clusterFastRead(cmds);
    const stream = status === 'ready' ? client.stream : undefined;
    const cork = stream != null && typeof stream.cork === 'function' && typeof stream.uncork === 'function';
    const deadlines = this.#deadlines;
    return new Promise((resolve, reject) => {
      // Callbacks rather than Promise.all + a deadline promise: one promise per read.
      const n = cmds.length;
      const replies = new Array(n);
      let left = n;
      let over = false;
      const entry = deadlines.track((e) => {
        over = true;
        reject(e);
      });
      const reply = (i) => (err, v) => {
        if (over) return;
        if (err) {
          over = true;
          deadlines.untrack(entry);
          reject(err);
          return;
        }
        replies[i] = v;
        if (--left === 0) {
          deadlines.untrack(entry);
          resolve(replies);
        }
      };
      if (cork) stream.cork();
      try {
        for (let i = 0; i < n; i++) client.callBuffer(cmds[i][0], cmds[i].slice(1), reply(i));
      } catch (e) {
        over = true;
        deadlines.untrack(entry);
        reject(e);
      } finally {
        if (cork) stream.uncork();
      }
    });
  }

  /**
   * The fast read on a Cluster: one pipeline, which ioredis sends to the node owning the slot
   * of its keys (the `MGET`'s; `TIME` has none) and redirects on `MOVED`/`ASK`. Same contract
   * as on one node: the replies in order, or the first failure (a `MOVED` left over, `TRYAGAIN`
   * or `CLUSTERDOWN` is an error reply: the read script runs, through the cluster's routing).
   */
  #clusterFastRead(cmds) {
    const p = this.#client.pipeline();
    for (const c of cmds) p.callBuffer(c[0], ...c.slice(1));
    return this.#deadlines.run(
      p.exec().then((res) => {
        const out = new Array(res.length);
        for (let i = 0; i < res.length; i++) {
          if (res[i][0]) throw res[i][0];
          out[i] = res[i][1];
        }
        return out;
      }),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Codecs

/** The default codec: JSON text (what every karlton runtime reads). */
const jsonCodec = Object.freeze({
  id: CODEC_JSON,
  encode(value) {
    // Refuse what JSON.stringify would change or a reader elsewhere could not decode.
    checkJson(value, 'value', 0);
    return JSON.stringify(value);
  },
  decode(buf) {
    return JSON.parse(typeof buf === 'string' ? buf : buf.toString('utf8'));
  },
});

function checkCodec(c) {
  if (c === undefined || c === null) return jsonCodec;
  if (c === jsonCodec) return c;
  if (!isPlainObject(c) && typeof c !== 'object') throw typeError('codec', 'an object { id, encode, decode }', c);
  if (!Number.isInteger(c.id) || c.id < 128 || c.id > 255) throw new TypeError(`karlton: \`codec.id\` must be an integer in 128..255 (0..127 are karlton's), got ${describe(c.id)}`);
  if (typeof c.encode !== 'function') throw typeError('codec.encode', 'a function', c.encode);
  if (typeof c.decode !== 'function') throw typeError('codec.decode', 'a function', c.decode);
  return c;
}

// ---------------------------------------------------------------------------------------------
// Cache: a drive loop over the core's coordinator (native.NativeCache)

const STATS_NAMES = native.statsFields().map((s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase()));

// Action codes (src/lib.rs): [code, call, a, b, events]
const A_STORE = 0;
const A_FAST_READ = 1;
const A_START_LOAD = 2;
const A_AWAIT_LOAD = 3;
const A_WAIT = 4;
const A_SERVE = 5;
const A_ANSWER = 6;
const A_ERROR = 7;
const A_FINISHED = 8;
const A_JOIN = 9;

const LOADER_TIMEOUT = Symbol('timeout');

/**
 * Karlton's value model, for params and for values of the default JSON codec: plain JSON data
 * only. Anything JSON.stringify would silently change — a Map or Set (→ {}), NaN/±Infinity
 * (→ null), undefined members (dropped), a Date or any toJSON (→ its output), a class instance
 * (→ its fields), a lone surrogate (no reader in another runtime takes it) — is refused, as
 * Python refuses it; otherwise different requests would build the same key, or a reader in
 * another runtime would get a different value. Nesting is capped at the core's limit (128),
 * which also stops cycles. `depth`: containers around `v`. With `bigints` (params), bigints in
 * the 64-bit range are taken too; the result says whether `v` holds one.
 */
function checkJson(v, root, depth, bigints = false) {
  const trail = [];
  try {
    walkState.bigints = bigints;
    walkState.saw = false;
    walkJson(v, trail, 0);
    return walkState.saw;
  } catch (e) {
    if (!(e instanceof JsonModelError)) throw e;
    // The path is built only for the error: on valid data the walk allocates no strings.
    let path = root;
    for (const t of trail) path += typeof t === 'number' ? `[${t}]` : `.${t}`;
    const Kind = e.range ? RangeError : TypeError;
    throw new Kind(`karlton: ${e.keyOf ? `a key in \`${path}\`` : `\`${e.range ? root : path}\``} ${e.message}`);
  }
}

class JsonModelError extends Error {
  constructor(message, { range = false, keyOf = false } = {}) {
    super(message);
    this.range = range;
    this.keyOf = keyOf;
  }
}

const walkState = { bigints: false, saw: false };
const I64_MIN = -(1n << 63n);
const U64_END = 1n << 64n;

/** checkJson's walk: `trail` holds the keys/indices down to the offending value. */
function walkJson(v, trail, depth) {
  switch (typeof v) {
    case 'bigint':
      if (!walkState.bigints) break;
      if (v < I64_MIN || v >= U64_END) throw new JsonModelError(`must fit in 64 bits (-2^63 .. 2^64-1), got ${v}`, { range: true });
      walkState.saw = true;
      return;
    case 'string':
      if (!v.isWellFormed()) throw new JsonModelError('is not valid Unicode (a lone surrogate)');
      return;
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(v)) throw new JsonModelError(`must be a finite number, got ${v}`);
      return;
    case 'object': {
      if (v === null) return;
      if (depth >= 128) throw new JsonModelError('is nested deeper than 128 levels: no karlton reader could decode it', { range: true });
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          trail.push(i);
          if (!(i in v)) throw new JsonModelError('is a hole: only plain JSON data is stored');
          walkJson(v[i], trail, depth + 1);
          trail.pop();
        }
        return;
      }
      const proto = Object.getPrototypeOf(v);
      if ((proto !== Object.prototype && proto !== null) || Object.getOwnPropertySymbols(v).length > 0) break;
      // (for-in sees inherited enumerable keys too, but the prototype is Object.prototype or
      // null here, and JSON.stringify would write the same own keys.)
      for (const k of Object.keys(v)) {
        if (!k.isWellFormed()) throw new JsonModelError('is not valid Unicode (a lone surrogate)', { keyOf: true });
        trail.push(k);
        walkJson(v[k], trail, depth + 1);
        trail.pop();
      }
      return;
    }
  }
  throw new JsonModelError(`must be plain JSON data (objects, arrays, strings, finite numbers, booleans, null), got ${describe(v)}`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function raceTimeout(promise, ms) {
  let timer;
  const t = new Promise((resolve) => {
    timer = setTimeout(resolve, Math.max(0, ms), LOADER_TIMEOUT);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

function checkTags(tags) {
  if (tags === undefined || tags === null) return undefined;
  if (!Array.isArray(tags)) throw typeError('options.tags', 'an array of strings', tags);
  for (let i = 0; i < tags.length; i++) {
    if (typeof tags[i] !== 'string') throw typeError(`options.tags[${i}]`, 'a string', tags[i]);
  }
  return tags.length ? tags : undefined;
}

/** `{ tags, policy }` options as native arguments (tags array | undefined, policy handle | undefined). */
function callOptions(options, what) {
  if (options === undefined) return [undefined, undefined];
  if (!isPlainObject(options)) throw typeError('options', what, options);
  const p = toPolicy('options.policy', options.policy);
  return [checkTags(options.tags), p === null ? undefined : p[kPolicyHandle]];
}

// ---------------------------------------------------------------------------------------------
// Fresh hits: a decode per entry value, a copy per caller

/**
 * Every caller gets its own value, as in the Python package (a fresh decode per hit: callers
 * never share a mutable object). Decoding JSON per hit would cost more than the rest of a memory
 * hit, so a key remembers its last decode: the native hot path answers `true` when a fresh hit
 * serves the very bytes this key last answered to this cache (equal bytes decode alike), and
 * the caller gets a copy of that decode — structurally identical to `JSON.parse` of the bytes,
 * own properties in the same order, a new object every time.
 *
 * The copy is generic at first; once one decode has answered a few hits it is made by a
 * function compiled from the value's JSON text (`(text)` is a JavaScript expression with the
 * same value — JSON is a subset of JavaScript since ES2019 — except for a `__proto__` member,
 * which an object literal would treat as a prototype, and such values keep the generic copy),
 * so V8 clones a literal's boilerplate instead of walking the value.
 */
const COMPILE_AFTER = 4; // hits of one decode before its copier is compiled
const MAX_COMPILED_TEXT = 4096; // longer texts keep the generic copy (bounded compile cost)

/** A deep copy of a JSON.parse result (plain objects, arrays, primitives). */
function copyJson(v) {
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) {
    const n = v.length;
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = copyJson(v[i]);
    return out;
  }
  const out = {};
  const ks = Object.keys(v);
  for (let i = 0; i < ks.length; i++) {
    const k = ks[i];
    if (k === '__proto__') Object.defineProperty(out, k, { value: copyJson(v[k]), writable: true, enumerable: true, configurable: true });
    else out[k] = copyJson(v[k]);
  }
  return out;
}

function hasProtoKey(v) {
  if (typeof v !== 'object' || v === null) return false;
  if (Array.isArray(v)) return v.some(hasProtoKey);
  for (const k of Object.keys(v)) if (k === '__proto__' || hasProtoKey(v[k])) return true;
  return false;
}

/** A cache's decode of one key's value bytes (JSON text). */
class Decoded {
  constructor(text) {
    this.text = text;
    this.value = NO_VALUE; // the private decode the copies come from (made on the second hit)
    this.hits = 0;
    this.copier = null;
  }

  /** A new copy of the value (primitives are values already). */
  fresh() {
    let v = this.value;
    if (v === NO_VALUE) v = this.value = JSON.parse(this.text); // parsed before: cannot throw
    if (typeof v !== 'object' || v === null) return v;
    if (this.copier !== null) return this.copier();
    if (++this.hits === COMPILE_AFTER) this.copier = compileCopier(v, this.text);
    return copyJson(v);
  }
}

const NO_VALUE = Symbol('karlton.noValue');

/**
 * key string → Decoded, per cache: bounded by entries and by text length (cleared when either
 * bound is passed — a working set larger than that decodes per hit, as without the memo).
 */
class DecodedMemo {
  static MAX_ENTRIES = 10_000;
  static MAX_TEXT = 16 * 1024 * 1024;
  map = new Map();
  text = 0;

  get(k) {
    return this.map.get(k);
  }

  set(k, d) {
    if (this.map.size >= DecodedMemo.MAX_ENTRIES || this.text + d.text.length > DecodedMemo.MAX_TEXT) {
      this.map.clear();
      this.text = 0;
    }
    const old = this.map.get(k);
    if (old !== undefined) this.text -= old.text.length;
    this.map.set(k, d);
    this.text += d.text.length;
  }

  delete(k) {
    const old = this.map.get(k);
    if (old !== undefined) {
      this.text -= old.text.length;
      this.map.delete(k);
    }
  }
}

function compileCopier(v, text) {
  if (text.length > MAX_COMPILED_TEXT || hasProtoKey(v)) return () => copyJson(v);
  try {
    // `text` parsed as JSON (JSON.parse accepted exactly this string), so it is a JavaScript
    // expression without side effects; the literal gives the same value (see above).
    return new Function(`'use strict'; return (${text});`);
  } catch {
    // code generation disallowed (--disallow-code-generation-from-strings)
    return () => copyJson(v);
  }
}

const NOT_FAST = Symbol('karlton.notFast');

/**
 * The caller's value for a hot-path answer `r` that is a memory fresh hit (JSON text: a copy of
 * the memo's decode when the text is the one it decoded, else decoded now and remembered; null:
 * a cached "not found"; undefined: a get's miss), or NOT_FAST (a ticket, a non-JSON value, text
 * that does not decode — the slow path counts and replaces it).
 */
function fastValue(memo, k, r) {
  if (typeof r === 'string') {
    const d = memo.get(k);
    if (d !== undefined && d.text === r) return d.fresh();
    let v;
    try {
      v = JSON.parse(r);
    } catch {
      memo.delete(k);
      return NOT_FAST;
    }
    memo.set(k, new Decoded(r));
    return v;
  }
  if (r === null || r === undefined) return undefined;
  return NOT_FAST;
}

/** One call driven by a Cache: what the host must remember across actions. */
class Call {
  constructor(loader) {
    this.loader = loader; // null for one-op calls
    this.running = null; // the loader's promise (settles to {ok, value | error})
    this.loaderError = undefined; // the loader's own error object, for its callers
    this.started = false; // this call's loader ran: its answer is not a cached value
    this.replaced = false; // already ran again over an undecodable value
    this.answered = false;
    this.resolve = null;
    this.reject = null;
  }
}

/**
 * A read-through cache over a store. `getOrLoad` is single-flight per process (and, through the
 * store's leases, across processes), serves stale values while one caller refreshes, caches
 * "not found", and keeps answering from the loader while the store is down. Who loads, who
 * joins, what a joiner gets and every counter are decided by the core's coordinator; this class
 * does the IO.
 *
 * Events: `'error'` (err, key) for failures nobody awaits (background refreshes); emitted only
 * when a listener is attached (never an unhandled rejection or an uncaught 'error').
 */
class Cache extends EventEmitter {
  #native;
  #handle;
  #store;
  #codec;
  #policy;
  /** key string → the decode of its last memory fresh hit (see fastValue). */
  #decoded = new DecodedMemo();
  /** flight id → { promise, wake, error }: what the flight's joiners await. */
  #flights = new Map();
  #onBackgroundError;

  /**
   * @param options.store a MemoryStore (default: a new one) or a RedisStore
   * @param options.policy a Policy or policy options (default: 60 s fresh, no stale window)
   * @param options.codec { id (128..255), encode(value) → Buffer|string, decode(Buffer) → value }
   * @param options.onBackgroundError (error, key) => void
   */
  constructor(options = {}) {
    super();
    if (!isPlainObject(options)) throw typeError('options', 'an object', options);
    const { store = new MemoryStore(), policy, codec, onBackgroundError, ...rest } = options;
    for (const k of Object.keys(rest)) throw new TypeError(`karlton: unknown Cache option \`${k}\` (known: store, policy, codec, onBackgroundError)`);
    if (!(store instanceof MemoryStore) && !(store instanceof RedisStore)) throw typeError('options.store', 'a MemoryStore or a RedisStore', store);
    if (onBackgroundError !== undefined && typeof onBackgroundError !== 'function') throw typeError('options.onBackgroundError', 'a function', onBackgroundError);
    this.#policy = toPolicy('options.policy', policy) ?? new Policy();
    this.#codec = checkCodec(codec);
    this.#store = store;
    this.#native = new native.NativeCache(this.#policy[kNative], store instanceof MemoryStore ? store[kNative] : null, store instanceof RedisStore && store._fast);
    this.#handle = this.#native.handle();
    this.#onBackgroundError = onBackgroundError ?? null;
    if (store instanceof RedisStore) store._attach(this);
  }

  /** The store's client reported an outage (once per outage; see RedisStore). */
  _storeError(err) {
    this.#backgroundError(new KarltonError(ERROR_CODES.store, `karlton: redis client error: ${err?.message ?? err}`, { cause: err }), '');
  }

  /** The store underneath. */
  get store() {
    return this.#store;
  }

  /** The default policy. */
  get policy() {
    return this.#policy;
  }

  /**
   * The cached value for `key`, or `loader()`'s (awaited, encoded, cached under the policy).
   * `undefined`/`null` from the loader is "not found": cached for `negativeTtl`, answered as
   * `undefined`.
   */
  getOrLoad(key, loader, options) {
    if (!(key instanceof Key)) return Promise.reject(typeError('key', 'a Key', key));
    if (typeof loader !== 'function') return Promise.reject(typeError('loader', 'a function', loader));
    let tags, ph;
    if (options !== undefined) {
      try {
        [tags, ph] = callOptions(options, 'an object { tags, policy }');
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const chain = LOADING.getStore();
    if (chain !== undefined) {
      const mine = chain.filter((p) => p[0] === this.#native).map((p) => p[1]);
      const reentrant = mine.length > 0 ? this.#native.reentrant(key[kStr], mine) : null;
      if (reentrant != null) return Promise.reject(this.#flowError('reentrant', reentrant));
    }
    let r, v;
    try {
      r = tags === undefined ? nativeGetOrLoadKey(this.#handle, key[kStr], key[kGen] ?? genOf(key), ph) : nativeGetOrLoad(this.#handle, handleOf(key), tags, ph);
      v = typeof r === 'object' && r !== null ? NOT_FAST : fastValue(this.#decoded, key[kStr], r);
    } catch (e) {
      return Promise.reject(e);
    }
    if (v !== NOT_FAST) return Promise.resolve(v);
    const c = new Call(loader);
    const p = new Promise((resolve, reject) => {
      c.resolve = resolve;
      c.reject = reject;
    });
    c.key = key;
    c.tags = tags;
    c.ph = ph;
    this.#drive(r, c);
    return p;
  }

  /** The cached value if fresh or stale (never past hard expiry), else `undefined`. No load. */
  get(key, options) {
    if (!(key instanceof Key)) return Promise.reject(typeError('key', 'a Key', key));
    let tags, ph;
    if (options !== undefined) {
      try {
        [tags, ph] = callOptions(options, 'an object { tags, policy }');
      } catch (e) {
        return Promise.reject(e);
      }
    }
    let r, v;
    try {
      r = tags === undefined ? nativeGetKey(this.#handle, key[kStr], key[kGen] ?? genOf(key), ph) : nativeGet(this.#handle, handleOf(key), tags, ph);
      v = typeof r === 'object' && r !== null ? NOT_FAST : fastValue(this.#decoded, key[kStr], r);
    } catch (e) {
      return Promise.reject(e);
    }
    if (v !== NOT_FAST) return Promise.resolve(v);
    return this.#getSlow(r);
  }

  async #getSlow(r) {
    const v = Array.isArray(r) ? await this.#one(r) : r;
    if (v === undefined || v === null) return undefined;
    try {
      return this.#decode(v);
    } catch (e) {
      if (e?.code !== ERROR_CODES.codec) throw e;
      // A cached value this reader cannot decode: counted as corrupt, read as missing.
      this.#native.reportUndecodable();
      return undefined;
    }
  }

  /**
   * Write-through: store `value` now. Revokes outstanding leases, so a load of an older value
   * cannot overwrite it. With `version`, refused (→ false) when a newer version is stored.
   */
  async set(key, value, options) {
    if (!(key instanceof Key)) throw typeError('key', 'a Key', key);
    let tags, ph;
    let version = null;
    if (options !== undefined) {
      [tags, ph] = callOptions(options, 'an object { version, tags, policy }');
      if (options.version !== undefined && options.version !== null) version = checkVersion('options.version', options.version);
    }
    if (value === undefined || value === null) throw typeError('value', 'a value (use invalidate to remove one)', value);
    const [encoded, codec] = this.#encode(value);
    return this.#one(this.#native.set(handleOf(key), tags, encoded, codec, version, ph));
  }

  /**
   * Delete the entry (mode 'delete', default) or mark it stale (mode 'markStale': served while
   * one caller refreshes), revoking its lease so a load in flight cannot fill. → existed.
   */
  async invalidate(key, options) {
    if (!(key instanceof Key)) throw typeError('key', 'a Key', key);
    let mark = false;
    if (options !== undefined) {
      if (!isPlainObject(options)) throw typeError('options', "an object { mode: 'delete' | 'markStale' }", options);
      const { mode = 'delete' } = options;
      if (mode !== 'delete' && mode !== 'markStale') throw typeError('options.mode', "'delete' or 'markStale'", mode);
      mark = mode === 'markStale';
    }
    return this.#one(this.#native.invalidate(handleOf(key), mark));
  }

  /** Orphan every entry of `key`'s namespace at once (one counter moves; nothing is scanned). */
  async bump(key) {
    if (!(key instanceof Key)) throw typeError('key', 'a Key (any key of the namespace)', key);
    return this.#one(this.#native.bump(handleOf(key)));
  }

  /** Orphan every entry filled with `tag` in `key`'s namespace. */
  async invalidateTag(key, tag) {
    if (!(key instanceof Key)) throw typeError('key', 'a Key (any key of the namespace)', key);
    if (typeof tag !== 'string') throw typeError('tag', 'a string', tag);
    return this.#one(this.#native.bump(handleOf(key), tag));
  }

  /** A snapshot of the counters (hitsFresh, hitsStale, misses, loads, coalesced, …). */
  stats() {
    const v = this.#native.stats();
    const out = {};
    for (let i = 0; i < STATS_NAMES.length; i++) out[STATS_NAMES[i]] = v[i];
    return out;
  }

  /** `{ calls, flights }` the coordinator holds (both 0 when idle; a leak shows here). */
  pending() {
    const [calls, flights] = this.#native.pending();
    return { calls, flights };
  }

  // ---- the drive loop ----

  /** Drive a one-op call (get, set, invalidate, bump) to its answer. */
  async #one(r) {
    const c = new Call(null);
    return new Promise((resolve, reject) => {
      c.resolve = resolve;
      c.reject = reject;
      c.raw = true;
      this.#drive(r, c);
    });
  }

  /** Do what the coordinator says until the call is over. Never rejects. */
  async #drive(r, c) {
    let call = 0;
    try {
      for (;;) {
        if (!Array.isArray(r)) {
          this.#answerValue(c, r);
          if (c.again !== undefined) {
            r = c.again;
            c.again = undefined;
            continue;
          }
          return;
        }
        call = r[1];
        if (r[4] !== undefined) this.#events(r[4], c, call);
        switch (r[0]) {
          case A_STORE:
            r = await this.#exec(call, r[2], r[3]);
            break;
          case A_FAST_READ:
            r = await this.#fastRead(call, r[2]);
            break;
          case A_START_LOAD:
            c.running = this.#startLoader(c, call);
          // fall through
          case A_AWAIT_LOAD:
            r = await this.#awaitLoad(c, call, r[2]);
            break;
          case A_WAIT:
            await sleep(r[2] - Date.now());
            r = this.#native.timeout(call);
            break;
          case A_SERVE:
            if (this.#serve(c, call, r[2])) {
              r = c.again;
              c.again = undefined;
            } else {
              r = this.#native.resume(call);
            }
            break;
          case A_ANSWER:
            r = r[2];
            break;
          case A_ERROR:
            this.#answerError(c, this.#flowError(r[2], r[3], c.loaderError), call);
            return;
          case A_FINISHED:
            return;
          case A_JOIN: {
            const f = this.#flight(r[2]);
            c.flight = f;
            // At most until lock_wait runs out (r[3], epoch ms); then the core decides.
            await raceTimeout(f.promise, r[3] - Date.now());
            r = this.#native.joined(call);
            break;
          }
          default:
            throw new KarltonError(ERROR_CODES.protocol, `karlton: unknown action ${r[0]}`);
        }
      }
    } catch (e) {
      // A bug (ours or a store adapter's): end the call in the coordinator (its joiners run
      // again, its lease is returned) and never leave the caller hanging.
      if (call !== 0) this.#cancel(call);
      this.#answerError(c, e, call);
    }
  }

  /** The Promise a flight's joiners await (made when the first one joins). */
  #flight(id) {
    let f = this.#flights.get(id);
    if (f === undefined) {
      let wake;
      const promise = new Promise((resolve) => {
        wake = resolve;
      });
      f = { promise, wake, error: undefined };
      this.#flights.set(id, f);
    }
    return f;
  }

  #events(events, c, call) {
    for (const e of events) {
      if (typeof e === 'number') {
        const f = this.#flights.get(e);
        if (f === undefined) continue;
        this.#flights.delete(e);
        // joiners answered with this leader's load error get the loader's own error object
        if (e === call && c.loaderError !== undefined) f.error = c.loaderError;
        f.wake();
      } else {
        this.#backgroundError(this.#flowError(e[1], e[2], c.loaderError), e[0]);
      }
    }
  }

  /** End `call` in the coordinator; resolves once the lease it held is back (never rejects). */
  #cancel(call) {
    try {
      const [release, events] = this.#native.cancel(call);
      if (events !== undefined) this.#events(events, new Call(null), 0);
      if (release !== undefined) return this.#store._eval(release[0], release[1][0], release[1][1]).catch(() => {});
    } catch {
      // nothing more to do
    }
    return Promise.resolve();
  }

  /**
   * SERVE: answer the caller with the stale value and let the refresh go on — unless the value
   * does not decode: then the core takes it back (`replaceServed`) and this call leads on, with
   * its lease and its loader, to answer from the refresh. True when it does (`c.again` is its
   * ticket).
   */
  #serve(c, call, v) {
    if (c.answered || c.raw || v === null || v === undefined) {
      this.#answerValue(c, v, false);
      return false;
    }
    let out;
    try {
      out = this.#decode(v);
    } catch (e) {
      if (e?.code !== ERROR_CODES.codec) throw e;
      c.again = this.#native.replaceServed(call);
      return true;
    }
    c.answered = true;
    c.resolve(out);
    return false;
  }

  async #exec(call, script, kv) {
    let reply;
    try {
      reply = await this.#store._eval(script, kv[0], kv[1]);
    } catch (e) {
      return this.#native.feedStoreError(call, `redis: ${e?.message ?? e}`);
    }
    return this.#native.feedRedis(call, reply);
  }

  async #fastRead(call, cmds) {
    let replies;
    try {
      replies = await this.#store._fastRead(cmds);
    } catch (e) {
      return this.#native.fastReadFailed(call, `redis: ${e?.message ?? e}`, isReplyError(e));
    }
    return this.#native.fastRead(call, replies);
  }

  /** Start the loader; the promise settles to {ok, value | error} and never rejects. */
  #startLoader(c, call) {
    c.started = true;
    try {
      // The loader's async context knows which flight it loads (a flight is named by its lead).
      const chain = [...(LOADING.getStore() ?? []), [this.#native, call]];
      return Promise.resolve(LOADING.run(chain, c.loader)).then(
        (value) => ({ ok: true, value }),
        (error) => ({ ok: false, error }),
      );
    } catch (error) {
      return Promise.resolve({ ok: false, error });
    }
  }

  async #awaitLoad(c, call, timeoutAt) {
    if (c.running === null) return this.#native.loadFailed(call, 'no loader running');
    const res = timeoutAt < 0 ? await c.running : await raceTimeout(c.running, timeoutAt - Date.now());
    if (res === LOADER_TIMEOUT) return this.#native.timeout(call);
    c.running = null;
    if (!res.ok) {
      c.loaderError = res.error;
      return this.#native.loadFailed(call, String(res.error?.message ?? res.error));
    }
    const v = res.value;
    if (v === undefined || v === null) return this.#native.loaded(call, '', this.#codec.id, true);
    let encoded, codec;
    try {
      [encoded, codec] = this.#encode(v);
    } catch (e) {
      c.loaderError = e;
      return this.#native.loadFailed(call, String(e?.message ?? e));
    }
    return this.#native.loaded(call, encoded, codec, false);
  }

  #encode(v) {
    if (Buffer.isBuffer(v)) return [v, CODEC_RAW];
    if (v instanceof Uint8Array) return [Buffer.from(v.buffer, v.byteOffset, v.byteLength), CODEC_RAW];
    const encoded = this.#codec.encode(v);
    if (typeof encoded !== 'string' && !(encoded instanceof Uint8Array)) {
      throw new TypeError(`karlton: codec.encode must return a Buffer or a string, got ${describe(encoded)}`);
    }
    return [encoded, this.#codec.id];
  }

  /** Answer the caller with a value in native form (a getOrLoad value is decoded first). */
  #answerValue(c, v, canReplace = true) {
    if (c.answered) return;
    if (c.raw) {
      c.answered = true;
      c.resolve(v);
      return;
    }
    let out;
    try {
      out = this.#decode(v);
    } catch (e) {
      if (canReplace && e?.code === ERROR_CODES.codec && !c.started && !c.replaced && v !== null && v !== undefined) {
        // A cached value this reader cannot decode: a corrupt entry. The coordinator counts it
        // and runs the call again treating the entry as a miss (the loader's fill replaces it).
        c.replaced = true;
        c.again = this.#native.replacing(handleOf(c.key), c.tags, c.ph, typeof v === 'string' || Buffer.isBuffer(v) ? v : v.value);
        return;
      }
      c.answered = true;
      c.reject(e);
      return;
    }
    c.answered = true;
    c.resolve(out);
  }

  #answerError(c, err, call) {
    if (c.answered) {
      this.#backgroundError(err, c.key === undefined ? '' : String(c.key));
      return;
    }
    c.answered = true;
    // A joiner whose flight's loader failed gets the loader's own error object.
    if (c.flight !== undefined && c.flight.error !== undefined && err?.code === ERROR_CODES.load) err = c.flight.error;
    c.reject(err);
  }

  #backgroundError(err, key) {
    if (this.#onBackgroundError !== null) {
      try {
        this.#onBackgroundError(err, key);
      } catch {
        // a throwing callback must not become an unhandled rejection
      }
    }
    if (this.listenerCount('error') > 0) this.emit('error', err, key);
  }

  #flowError(kind, message, loaderError) {
    if (kind === 'load' && loaderError !== undefined) return loaderError;
    return new KarltonError(ERROR_CODES[kind] ?? ERROR_CODES.protocol, `karlton: ${message}`);
  }

  #codecError(e) {
    return new KarltonError(ERROR_CODES.codec, `karlton: cached value does not decode: ${e.message}`, { cause: e });
  }

  /** A native value (JSON text, a Buffer, `{codec, value}`, null = not found) as the user's value. */
  #decode(r) {
    if (typeof r === 'string') {
      try {
        return JSON.parse(r);
      } catch (e) {
        throw this.#codecError(e);
      }
    }
    if (r === null || r === undefined) return undefined;
    if (Buffer.isBuffer(r)) return r;
    if (r.codec === this.#codec.id) {
      try {
        return this.#codec.decode(r.value);
      } catch (e) {
        throw this.#codecError(e);
      }
    }
    throw new KarltonError(ERROR_CODES.codec, `karlton: entry has codec ${r.codec}, this cache decodes ${this.#codec.id}`);
  }
}

/**
 * Where stored entry bytes stand (core's `entry::describe`, as in every runtime): `{ freshness:
 * 'fresh' | 'stale' | 'usable_on_error' | 'gone', soft_at, hard_at, usable_until, load_ms,
 * version, negative, codec, value_len, generations, tags }` at `nowMs` (default: now) under
 * `policy` (default: `new Policy()`, for its staleIfError). Integers beyond 2^53 are bigints.
 * Throws a KarltonError (ERR_KARLTON_CODEC) naming the defect on corrupt bytes.
 */
function describeEntry(bytes, options = {}) {
  if (!(bytes instanceof Uint8Array)) throw typeError('bytes', 'a Buffer or Uint8Array', bytes);
  if (!isPlainObject(options)) throw typeError('options', 'an object', options);
  const { nowMs, policy, ...rest } = options;
  for (const k of Object.keys(rest)) throw new TypeError(`karlton: unknown describeEntry option \`${k}\` (known: nowMs, policy)`);
  // the policy first, then the moment (docs/value-model.md: in Python it is built before the call)
  const p = toPolicy('options.policy', policy) ?? new Policy();
  const okNow = nowMs === undefined || (Number.isSafeInteger(nowMs) && nowMs >= 0) || (typeof nowMs === 'bigint' && nowMs >= 0n && nowMs < 1n << 64n);
  if (!okNow) throw typeError('options.nowMs', 'a non-negative safe integer or a u64 bigint', nowMs);
  let text;
  try {
    text = native.describeEntry(bytes, nowMs === undefined ? undefined : String(nowMs), p[kNative]);
  } catch (e) {
    throw new KarltonError(ERROR_CODES.codec, `karlton: describeEntry: ${e.message}`, { cause: e });
  }
  return parseExact(text);
}

/** JSON.parse, with integer literals beyond 2^53 (outside strings) read as exact bigints. */
function parseExact(text) {
  const BIG = '\u0000big:';
  const marked = text.replace(/"(?:[^"\\]|\\.)*"|-?[0-9]{16,}(?![0-9.eE])/g, (m) =>
    m[0] === '"' || Number.isSafeInteger(Number(m)) ? m : `"\\u0000big:${m}"`);
  return JSON.parse(marked, (_, v) => (typeof v === 'string' && v.startsWith(BIG) ? BigInt(v.slice(BIG.length)) : v));
}

/** Test and tool helpers: the core's entry encoding and Redis scripts. Not for everyday use. */
const internals = {
  encodeEntry: (entry) =>
    native.encodeEntry(JSON.stringify(entry, (_, x) => (typeof x === 'bigint' ? `\u0000big:${x}` : x)).replace(/"\\u0000big:(-?[0-9]+)"/g, '$1')),
  // Versions and instants beyond 2^53 come back as bigints, exactly (JSON.parse would round).
  decodeEntry: (bytes) => parseExact(native.decodeEntry(bytes)),
  scripts: SCRIPTS,
  memoryRawEntry: (store, key) => store[kNative].rawEntry(String(key)),
};

module.exports = {
  Key,
  Policy,
  MemoryStore,
  RedisStore,
  Cache,
  KarltonError,
  jsonCodec,
  describeEntry,
  paramsHash,
  internals,
};
