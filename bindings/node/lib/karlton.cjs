'use strict';
// The JavaScript half of karlton for Node: translates types and drives the core's flows.
// Every policy decision is made by karlton-core (through ../native.cjs); this file owns only what
// must live on the JS side: promises, timers, in-process single-flight, the codec, and the
// user's ioredis client.

const { EventEmitter } = require('node:events');
const native = require('../native.cjs');

const memoryHit = native.memoryHitFunction();
const redisFastRead = native.redisFastReadFunction();

const STORE = 0;
const LOAD = 1;
const WAIT = 2;
const SERVE = 3;
const DONE_OK = 4;
const DONE_ERR = 5;

const CODEC_RAW = 0;
const CODEC_JSON = 1;

const kNative = Symbol('karlton.native');
const kBuilt = Symbol('karlton.built');
const kHandle = Symbol('karlton.handle');
const kFast = Symbol('karlton.fastRead');

/** [entry key, generation key] of a Key (strings cross from native once, when first needed). */
function built(key) {
  return key[kBuilt] ?? (key[kBuilt] = native.keyStrings(key[kHandle]));
}

/** The core's fast-read commands for an entry key and its generation keys, as `[name, args]`. */
function fastCommands(entryKey, genKeys) {
  return native.redisFastReadCommands(entryKey, genKeys).map((c) => [c[0], c.slice(1)]);
}

/** The fast-read commands of `key` (cached on the Key when untagged). */
function fastCommandsOf(key, b, extra) {
  if (extra !== null) return fastCommands(b[0], [b[1], ...extra]);
  return key[kFast] ?? (key[kFast] = fastCommands(b[0], [b[1]]));
}

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
 */
class Key {
  #ns;
  #segments;
  #params;
  #version;
  #hashTag;
  #maxLen;
  #tagKeys = null;

  constructor(namespace, ...segments) {
    if (namespace === kBuilt) {
      this.#init(...segments);
      return;
    }
    if (typeof namespace !== 'string') throw typeError('namespace', 'a string', namespace);
    const segs = new Array(segments.length);
    for (let i = 0; i < segments.length; i++) {
      const s = segments[i];
      if (typeof s === 'string') segs[i] = s;
      else if (typeof s === 'number' && Number.isFinite(s)) segs[i] = String(s);
      else if (typeof s === 'bigint') segs[i] = s.toString();
      else throw typeError(`segments[${i}]`, 'a string, a finite number or a bigint', s);
    }
    this.#init(namespace, segs, null, null, false, null);
  }

  #init(ns, segs, params, version, hashTag, maxLen) {
    this.#ns = ns;
    this.#segments = segs;
    this.#params = params;
    this.#version = version;
    this.#hashTag = hashTag;
    this.#maxLen = maxLen;
    let handle;
    try {
      handle = native.keyHandle(ns, segs, params, version, hashTag, maxLen);
    } catch (e) {
      throw rangeFrom(e);
    }
    this[kHandle] = handle;
    this[kBuilt] = null; // [entry key, namespace generation key], read from the handle on demand
    this[kFast] = null; // the Redis fast-read commands (untagged), built on first use
  }

  #with(changes) {
    return new Key(
      kBuilt,
      this.#ns,
      this.#segments,
      'params' in changes ? changes.params : this.#params,
      'version' in changes ? changes.version : this.#version,
      'hashTag' in changes ? changes.hashTag : this.#hashTag,
      'maxLen' in changes ? changes.maxLen : this.#maxLen,
    );
  }

  /** Parameters (any JSON value), hashed canonically (RFC 8785 + SHA-256) into the key. */
  params(params) {
    let json;
    try {
      json = JSON.stringify(params);
    } catch (e) {
      throw new TypeError(`karlton: \`params\` must be JSON-serializable: ${e.message}`);
    }
    if (json === undefined) throw typeError('params', 'a JSON value', params);
    return this.#with({ params: json });
  }

  /** A version suffix (`:v7`). */
  version(v) {
    return this.#with({ version: checkVersion('version', v) });
  }

  /** The Redis Cluster hash-tag form (`{ns}:…`): every key of the namespace in one slot. */
  hashTag(on = true) {
    if (typeof on !== 'boolean') throw typeError('on', 'a boolean', on);
    return this.#with({ hashTag: on });
  }

  /** Longest key in bytes (≥ 128); longer keys keep a readable prefix and end in a hash. */
  maxLen(n) {
    if (!Number.isSafeInteger(n) || n < 0) throw typeError('n', 'a non-negative integer', n);
    return this.#with({ maxLen: n });
  }

  /** The namespace (unescaped). */
  get namespace() {
    return this.#ns;
  }

  /** The namespace's generation counter key (bump it to orphan the namespace). */
  get generationKey() {
    return built(this)[1];
  }

  /** The generation counter key of `tag` in this key's namespace. */
  tagKey(tag) {
    if (typeof tag !== 'string') throw typeError('tag', 'a string', tag);
    if (this.#tagKeys === null) this.#tagKeys = new Map();
    let k = this.#tagKeys.get(tag);
    if (k === undefined) {
      k = native.tagKey(this.#ns, this.#hashTag, this.#maxLen, tag);
      this.#tagKeys.set(tag, k);
    }
    return k;
  }

  /** The built key string. */
  toString() {
    return built(this)[0];
  }

  toJSON() {
    return built(this)[0];
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return `Key(${built(this)[0]})`;
  }
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
const NUMBER_FIELDS = { jitter: 'jitter', earlyRefresh: 'early_refresh' };
const ENUM_FIELDS = {
  onLockTimeout: ['on_lock_timeout', { load: 'load', serveStale: 'serve_stale', serve_stale: 'serve_stale', error: 'error' }],
  onStoreError: ['on_store_error', { load: 'load', error: 'error' }],
};
const SNAKE_TO_CAMEL = {};
for (const [c, s] of Object.entries(DURATION_FIELDS)) SNAKE_TO_CAMEL[s] = c;
for (const [c, s] of Object.entries(NUMBER_FIELDS)) SNAKE_TO_CAMEL[s] = c;
for (const [c, [s]] of Object.entries(ENUM_FIELDS)) SNAKE_TO_CAMEL[s] = c;
SNAKE_TO_CAMEL.lock_backoff_ms = 'lockBackoff';
const renameFields = (msg) => msg.replace(/`([a-z_]+)`/g, (m, f) => (SNAKE_TO_CAMEL[f] ? `\`${SNAKE_TO_CAMEL[f]}\`` : m));

function duration(name, v) {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`karlton: \`${name}\` must be a finite number of ms >= 0, got ${v}`);
    return Math.round(v);
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
    for (const [name, v] of Object.entries(options)) {
      if (v === undefined) continue;
      if (name in DURATION_FIELDS) {
        if (v === null && NULLABLE.has(name)) spec[DURATION_FIELDS[name]] = null;
        else spec[DURATION_FIELDS[name]] = duration(`policy.${name}`, v);
        normalized[name] = spec[DURATION_FIELDS[name]];
      } else if (name in NUMBER_FIELDS) {
        if (typeof v !== 'number') throw typeError(`policy.${name}`, 'a number', v);
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
      } else {
        throw new TypeError(`karlton: unknown policy option \`${name}\` (known: ${[...Object.keys(DURATION_FIELDS), ...Object.keys(NUMBER_FIELDS), ...Object.keys(ENUM_FIELDS), 'lockBackoff'].join(', ')})`);
      }
    }
    try {
      this[kNative] = new native.NativePolicy(JSON.stringify(spec));
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
  }

  /** Slots held (entries, live leases and version floors). */
  get size() {
    return this[kNative].size;
  }

  /** Bytes charged against `maxBytes`. */
  get bytes() {
    return this[kNative].bytes;
  }
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
 * (EVALSHA, falling back to EVAL on NOSCRIPT); never any script of its own. On a standalone
 * client a fresh hit takes the core's fast path instead: a few plain commands (the core's
 * `fast_read_commands`) written in one flush, the replies judged by the core.
 */
class RedisStore {
  #client;
  #deadlines;

  /**
   * @param client an ioredis `Redis` or `Cluster`
   * @param options.commandTimeout ms before a script call counts as a store failure (default
   *   1000; 0 = wait as long as the client does)
   * @param options.fastReads the pipelined fresh-hit read (default true; always off on a
   *   Cluster, where every read runs the `read` script)
   */
  constructor(client, options = {}) {
    if (client === null || typeof client !== 'object' || typeof client.evalshaBuffer !== 'function' || typeof client.evalBuffer !== 'function') {
      throw typeError('client', 'an ioredis client (Redis or Cluster)', client);
    }
    if (!isPlainObject(options)) throw typeError('options', 'an object', options);
    const { commandTimeout = 1000, fastReads = true, ...rest } = options;
    for (const k of Object.keys(rest)) throw new TypeError(`karlton: unknown RedisStore option \`${k}\` (known: commandTimeout, fastReads)`);
    if (typeof commandTimeout !== 'number' || !(commandTimeout >= 0)) throw typeError('commandTimeout', 'a number of ms >= 0', commandTimeout);
    if (typeof fastReads !== 'boolean') throw typeError('fastReads', 'a boolean', fastReads);
    this.#client = client;
    this.#deadlines = new Deadlines(commandTimeout);
    // TIME has no key: no fast path on a Cluster. callBuffer is ioredis's generic command.
    this._fast = fastReads && client.isCluster !== true && typeof client.callBuffer === 'function';
  }

  /** The ioredis client. */
  get client() {
    return this.#client;
  }

  /** Load every script now (optional: calls fall back to EVAL on NOSCRIPT by themselves). */
  async loadScripts() {
    for (const s of SCRIPTS) await this.#client.script('LOAD', s.source);
  }

  #eval(call) {
    const client = this.#client;
    if (INACTIVE.has(client.status)) {
      return Promise.reject(new Error(`redis connection is ${client.status}`));
    }
    const s = SCRIPTS[call.script];
    const n = call.keys.length;
    const p = client.evalshaBuffer(s.sha, n, ...call.keys, ...call.args).catch((e) => {
      if (e && typeof e.message === 'string' && e.message.startsWith('NOSCRIPT')) {
        return client.evalBuffer(s.source, n, ...call.keys, ...call.args);
      }
      throw e;
    });
    return this.#deadlines.run(p);
  }

  /**
   * The fast read: send `cmds` (from `native.redisFastReadCommands`) back to back, corked into
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
        for (let i = 0; i < n; i++) client.callBuffer(cmds[i][0], cmds[i][1], reply(i));
      } catch (e) {
        over = true;
        deadlines.untrack(entry);
        reject(e);
      } finally {
        if (cork) stream.uncork();
      }
    });
  }

  /** Run the target's store op (a flow step or a one-op write); returns what the target answers. */
  async _exec(target) {
    let reply;
    try {
      reply = await this.#eval(target.redisCall());
    } catch (e) {
      return target.feedStoreError(`redis: ${e?.message ?? e}`);
    }
    return target.feedRedis(reply);
  }
}

// ---------------------------------------------------------------------------------------------
// Codecs

/** The default codec: JSON text (what every karlton runtime reads). */
const jsonCodec = Object.freeze({
  id: CODEC_JSON,
  encode(value) {
    const s = JSON.stringify(value);
    if (s === undefined) throw new TypeError(`karlton: value is not JSON-serializable (${describe(value)})`);
    return s;
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
// Cache

const STATS_NAMES = native.statsFields().map((s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase()));

const LOADER_TIMEOUT = Symbol('timeout');

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
  if (tags === undefined || tags === null) return null;
  if (!Array.isArray(tags)) throw typeError('options.tags', 'an array of strings', tags);
  for (let i = 0; i < tags.length; i++) {
    if (typeof tags[i] !== 'string') throw typeError(`options.tags[${i}]`, 'a string', tags[i]);
  }
  return tags.length ? tags : null;
}

/**
 * A read-through cache over a store. `getOrLoad` is single-flight per process (and, through the
 * store's leases, across processes), serves stale values while one caller refreshes, caches
 * "not found", and keeps answering from the loader while the store is down.
 *
 * Events: `'error'` (err, key) for failures nobody awaits (background refreshes); emitted only
 * when a listener is attached (never an unhandled rejection or an uncaught 'error').
 */
class Cache extends EventEmitter {
  #native;
  #handle;
  #store;
  #memory;
  #codec;
  #policy;
  #inflight = new Map();
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
    this.#memory = store instanceof MemoryStore;
    this.#native = new native.NativeCache(this.#policy[kNative], this.#memory ? store[kNative] : null);
    this.#handle = this.#native.handle();
    this.#onBackgroundError = onBackgroundError ?? null;
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
    let tags = null;
    let policy = null;
    let extra = null;
    if (options !== undefined) {
      try {
        if (!isPlainObject(options)) throw typeError('options', 'an object { tags, policy }', options);
        tags = checkTags(options.tags);
        policy = toPolicy('options.policy', options.policy);
        if (tags !== null) extra = tags.map((t) => key.tagKey(t));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const np = policy === null ? null : policy[kNative];
    if (this.#memory) {
      let r;
      if (extra === null && np === null) r = memoryHit(this.#handle, key[kHandle]);
      else {
        const b = built(key);
        r = this.#native.memoryGetOrLoad(b[0], b[1], extra, tags, np);
      }
      if (typeof r === 'string') {
        try {
          return Promise.resolve(JSON.parse(r));
        } catch (e) {
          return Promise.reject(this.#codecError(e));
        }
      }
      if (r === null) return Promise.resolve(undefined);
      if (!(r instanceof native.NativeFlow)) {
        try {
          return Promise.resolve(this.#decode(r));
        } catch (e) {
          return Promise.reject(e);
        }
      }
      return this.#afterStart(r, loader, r.key);
    }
    const b = built(key);
    // Redis: one flight per key per process covers the whole call, reads included, so a
    // stampede costs one round trip per process rather than one per caller.
    const k = b[0];
    const running = this.#inflight.get(k);
    if (running !== undefined) return running;
    const store = this.#store;
    if (!store._fast) return this.#lead(this.#native.start(k, b[1], extra, tags, np), loader, k);
    // The fresh-hit fast path: plain commands, no script; the core judges the replies. Anything
    // but a clean fresh hit runs the flow; a store failure goes to the flow's first read (one
    // timeout, not two); an error reply (garbage under the key) just runs the flow.
    let cmds;
    try {
      cmds = fastCommandsOf(key, b, extra);
    } catch (e) {
      return Promise.reject(e);
    }
    const slow = (failure) => {
      let flow;
      try {
        flow = this.#native.start(k, b[1], extra, tags, np);
        if (failure !== undefined) flow.feedStoreError(`redis: ${failure?.message ?? failure}`);
      } catch (e) {
        this.#inflight.delete(k); // a bug: reject, and leave no flight behind
        throw e;
      }
      let settle;
      const q = new Promise((resolve, reject) => {
        settle = (ok, v) => (ok ? resolve(v) : reject(v));
      });
      this.#drive(flow, loader, settle, k); // ends the flight when it answers
      return q;
    };
    const p = store._fastRead(cmds).then(
      (replies) => {
        let r;
        try {
          r = np === null ? redisFastRead(this.#handle, replies) : this.#native.redisFastRead(replies, np);
        } catch {
          r = undefined;
        }
        if (r === undefined) return slow(undefined);
        this.#inflight.delete(k);
        return this.#decode(r);
      },
      (e) => slow(isReplyError(e) ? undefined : e),
    );
    this.#inflight.set(k, p); // the flight covers the fast read too
    return p;
  }

  /** Lead the in-process flight of `k` with a flow at its first read. */
  #lead(flow, loader, k) {
    let settle;
    const p = new Promise((resolve, reject) => {
      settle = (ok, v) => (ok ? resolve(v) : reject(v));
    });
    this.#inflight.set(k, p);
    this.#drive(flow, loader, settle, k);
    return p;
  }

  /** The flow needs more than the first read: answer, or load/wait under single-flight. */
  #afterStart(flow, loader, k) {
    const kind = flow.kind;
    if (kind === DONE_OK) {
      try {
        return Promise.resolve(this.#decode(flow.value()));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    if (kind === DONE_ERR) return Promise.reject(this.#flowError(flow, undefined));
    if (kind === SERVE) {
      // Stale (or early refresh): answer now, refresh in the background.
      const v = flow.value();
      this.#drive(flow, loader, null, null);
      try {
        return Promise.resolve(this.#decode(v));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    // Load or wait: join or lead the in-process flight.
    const running = this.#inflight.get(k);
    if (running !== undefined && !flow.hasLease) {
      flow.abandon();
      return running;
    }
    let settle;
    const p = new Promise((resolve, reject) => {
      settle = (ok, v) => (ok ? resolve(v) : reject(v));
    });
    const leading = running === undefined;
    if (leading) this.#inflight.set(k, p);
    this.#drive(flow, loader, settle, leading ? k : null);
    return p;
  }

  /**
   * Drive a flow to its end. `settle` gets the first answer (serve or done); the single-flight
   * entry goes away at that moment. Anything after (a background refresh) reports failures
   * through the 'error' event / onBackgroundError. Never rejects.
   */
  async #drive(flow, loader, settle, flightKey) {
    let answered = settle === null;
    const answer = (ok, v) => {
      if (answered) return;
      answered = true;
      if (flightKey !== null) this.#inflight.delete(flightKey);
      settle(ok, v);
    };
    let running = null;
    let loaderError;
    try {
      for (;;) {
        let kind = flow.kind;
        switch (kind) {
          case STORE:
            await this.#store._exec(flow);
            break;
          case LOAD: {
            if (running === null) running = this.#startLoader(loader);
            const t = flow.timeoutAt;
            const r = t === null ? await running : await raceTimeout(running, t - Date.now());
            if (r === LOADER_TIMEOUT) {
              flow.timeout();
              break;
            }
            running = null;
            if (r.ok) {
              const v = r.value;
              if (v === undefined || v === null) {
                flow.loaded('', this.#codec.id, true, null);
              } else {
                let encoded;
                let codec = this.#codec.id;
                try {
                  if (Buffer.isBuffer(v)) {
                    encoded = v;
                    codec = CODEC_RAW;
                  } else if (v instanceof Uint8Array) {
                    encoded = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
                    codec = CODEC_RAW;
                  } else {
                    encoded = this.#codec.encode(v);
                    if (typeof encoded !== 'string' && !(encoded instanceof Uint8Array)) {
                      throw new TypeError(`karlton: codec.encode must return a Buffer or a string, got ${describe(encoded)}`);
                    }
                  }
                } catch (e) {
                  loaderError = e;
                  flow.loadFailed(String(e?.message ?? e));
                  break;
                }
                flow.loaded(encoded, codec, false, null);
              }
            } else {
              loaderError = r.error;
              flow.loadFailed(String(r.error?.message ?? r.error));
            }
            break;
          }
          case WAIT:
            await sleep(flow.untilMs - Date.now());
            flow.timeout();
            break;
          case SERVE: {
            if (!answered) this.#answerWithValue(flow, answer);
            flow.resume();
            break;
          }
          case DONE_OK: {
            if (!answered) this.#answerWithValue(flow, answer);
            return;
          }
          case DONE_ERR: {
            const err = this.#flowError(flow, loaderError);
            if (!answered) answer(false, err);
            else this.#backgroundError(err, flow.key);
            return;
          }
          default:
            throw new KarltonError(ERROR_CODES.protocol, `unknown flow step ${kind}`);
        }
      }
    } catch (e) {
      // A bug (ours or a store adapter's): never leave callers hanging.
      flow.abandon();
      if (!answered) answer(false, e);
      else this.#backgroundError(e, flow.key);
    }
  }

  /** Answer the caller with the flow's value, decoded (a codec failure is the answer's error). */
  #answerWithValue(flow, answer) {
    let v;
    try {
      v = this.#decode(flow.value());
    } catch (e) {
      answer(false, e);
      return;
    }
    answer(true, v);
  }

  /** Start the loader; the promise settles to {ok, value | error} and never rejects. */
  #startLoader(loader) {
    try {
      return Promise.resolve(loader()).then(
        (value) => ({ ok: true, value }),
        (error) => ({ ok: false, error }),
      );
    } catch (error) {
      return Promise.resolve({ ok: false, error });
    }
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

  #flowError(flow, loaderError) {
    const [kind, message] = flow.error() ?? ['protocol', 'flow ended without an error'];
    if (kind === 'load' && loaderError !== undefined) return loaderError;
    return new KarltonError(ERROR_CODES[kind] ?? ERROR_CODES.protocol, `karlton: ${message}`);
  }

  #codecError(e) {
    return new KarltonError(ERROR_CODES.codec, `karlton: cached value does not decode: ${e.message}`, { cause: e });
  }

  /** A native value (see NativeCache.memoryGetOrLoad) as the user's value. */
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

  async #op(op, failure) {
    let out;
    if (this.#memory) out = op.runMemory();
    else if (failure !== undefined) out = op.feedStoreError(`redis: ${failure?.message ?? failure}`);
    else out = await this.#store._exec(op);
    const err = op.error();
    if (err !== null) throw new KarltonError(ERROR_CODES[err[0]] ?? ERROR_CODES.store, `karlton: ${err[1]}`);
    return out;
  }

  /** The cached value if fresh or stale (never past hard expiry), else `undefined`. No load. */
  async get(key, options) {
    if (!(key instanceof Key)) throw typeError('key', 'a Key', key);
    let extra = null;
    let np = null;
    if (options !== undefined) {
      if (!isPlainObject(options)) throw typeError('options', 'an object { tags, policy }', options);
      const tags = checkTags(options.tags);
      if (tags !== null) extra = tags.map((t) => key.tagKey(t));
      const p = toPolicy('options.policy', options.policy);
      if (p !== null) np = p[kNative];
    }
    const b = built(key);
    let failure;
    if (!this.#memory && this.#store._fast) {
      // The fresh-hit fast path, as in getOrLoad; anything else runs the plain read script.
      const cmds = fastCommandsOf(key, b, extra);
      let replies = null;
      try {
        replies = await this.#store._fastRead(cmds);
      } catch (e) {
        if (!isReplyError(e)) failure = e; // a store failure: the read op reports it
      }
      if (replies !== null) {
        let r;
        try {
          r = np === null ? redisFastRead(this.#handle, replies) : this.#native.redisFastRead(replies, np);
        } catch {
          r = undefined;
        }
        if (r !== undefined) return this.#decode(r);
      }
    }
    return this.#decode(await this.#op(this.#native.getOp(b[0], b[1], extra, np), failure));
  }

  /**
   * Write-through: store `value` now. Revokes outstanding leases, so a load of an older value
   * cannot overwrite it. With `version`, refused (→ false) when a newer version is stored.
   */
  async set(key, value, options) {
    if (!(key instanceof Key)) throw typeError('key', 'a Key', key);
    let tags = null;
    let extra = null;
    let np = null;
    let version = null;
    if (options !== undefined) {
      if (!isPlainObject(options)) throw typeError('options', 'an object { version, tags, policy }', options);
      tags = checkTags(options.tags);
      if (tags !== null) extra = tags.map((t) => key.tagKey(t));
      const p = toPolicy('options.policy', options.policy);
      if (p !== null) np = p[kNative];
      if (options.version !== undefined && options.version !== null) version = checkVersion('options.version', options.version);
    }
    if (value === undefined || value === null) throw typeError('value', 'a value (use invalidate to remove one)', value);
    let encoded;
    let codec = this.#codec.id;
    if (Buffer.isBuffer(value)) {
      encoded = value;
      codec = CODEC_RAW;
    } else if (value instanceof Uint8Array) {
      encoded = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      codec = CODEC_RAW;
    } else {
      encoded = this.#codec.encode(value);
    }
    const b = built(key);
    return this.#op(this.#native.setOp(b[0], b[1], extra, tags, encoded, codec, version, np));
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
    return this.#op(this.#native.invalidateOp(built(key)[0], mark));
  }

  /** Orphan every entry of `key`'s namespace at once (one counter moves; nothing is scanned). */
  async bump(key) {
    if (!(key instanceof Key)) throw typeError('key', 'a Key (any key of the namespace)', key);
    return this.#op(this.#native.bumpOp(built(key)[1]));
  }

  /** Orphan every entry filled with `tag` in `key`'s namespace. */
  async invalidateTag(key, tag) {
    if (!(key instanceof Key)) throw typeError('key', 'a Key (any key of the namespace)', key);
    if (typeof tag !== 'string') throw typeError('tag', 'a string', tag);
    return this.#op(this.#native.bumpOp(key.tagKey(tag)));
  }

  /** A snapshot of the counters (hitsFresh, hitsStale, misses, loads, …). */
  stats() {
    const v = this.#native.stats();
    const out = {};
    for (let i = 0; i < STATS_NAMES.length; i++) out[STATS_NAMES[i]] = v[i];
    return out;
  }
}

/** Test and tool helpers: the core's entry encoding and Redis scripts. Not for everyday use. */
const internals = {
  encodeEntry: (entry) => native.encodeEntry(JSON.stringify(entry)),
  decodeEntry: (bytes) => JSON.parse(native.decodeEntry(bytes)),
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
  internals,
};
