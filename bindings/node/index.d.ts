// Types of the `karlton` package (the public facade in lib/karlton.cjs; the native layer's
// generated types are in native.d.ts).
import { EventEmitter } from 'node:events';

/** A duration: milliseconds, or a string like `"250ms"`, `"30s"`, `"5m"`, `"1.5h"`, `"2d"`. */
export type Duration = number | string;

/**
 * A cache key: `namespace:segment:segment…` with escaped segments (different segment lists
 * never collide), an optional canonical params hash and version, and an optional Redis Cluster
 * hash tag. Immutable; the builder methods return a new Key. Identical to the keys the Python
 * and Rust packages build from the same inputs.
 */
export declare class Key {
  constructor(namespace: string, ...segments: Array<string | number | bigint>);
  /**
   * Parameters (plain JSON data) hashed canonically (RFC 8785 JSON + SHA-256) into the key;
   * `null`/`undefined` mean no params (as Python's `None`). Integers beyond 2^53 go in as
   * bigints (-2^63 .. 2^64-1), which reach the core exactly and are hashed (or refused) as
   * Python and Rust hash such ints.
   */
  params(params: unknown): Key;
  /** A version suffix (`:v7`). */
  version(v: number | bigint): Key;
  /** The hash-tag form `{ns}:…`: every key of the namespace in one Cluster slot. */
  hashTag(on?: boolean): Key;
  /**
   * Longest key in bytes (≥ 128); longer keys keep a readable prefix and end in a hash. A u64:
   * a non-negative safe integer or a bigint (never wrapped nor rounded).
   */
  maxLen(n: number | bigint): Key;
  /** The namespace, unescaped. */
  readonly namespace: string;
  /** The namespace's generation counter key. */
  readonly generationKey: string;
  /** The generation counter key of `tag` in this namespace. */
  tagKey(tag: string): string;
  /** The built key. */
  toString(): string;
  toJSON(): string;
}

export interface PolicyOptions {
  /** How long an entry is fresh. Default 60 s. */
  softTtl?: Duration;
  /** How long it may be served at all (stale after `softTtl`, while one caller refreshes). Default: `softTtl`. */
  hardTtl?: Duration | null;
  /** Fraction in [0, 1) by which TTLs are shortened at random, so entries don't expire together. */
  jitter?: number;
  /** XFetch β for probabilistic early refresh (0 = off; 1 is typical). */
  earlyRefresh?: number;
  /** How long a "not found" (`undefined`/`null` from the loader) is cached. Default 0 (never). */
  negativeTtl?: Duration;
  /** How long past hard expiry a value may still be served when the loader fails. */
  staleIfError?: Duration;
  /** Lifetime of a lease (the right to load and fill one key). Default 10 s. */
  leaseTtl?: Duration;
  /** How long a caller waits for another caller's load. Default 5 s. */
  lockWait?: Duration;
  /** Backoff schedule between re-reads while waiting; the last value repeats. Default [2, 5, 10] ms. */
  lockBackoff?: Duration | Duration[];
  /** When `lockWait` runs out: load anyway (default), serve a stale value, or fail. */
  onLockTimeout?: 'load' | 'serveStale' | 'error';
  /** After this long, a slow load with a stale value at hand answers stale and keeps loading. */
  loadSoftTimeout?: Duration | null;
  /**
   * After this long, a load counts as failed and its lease goes back. `null`/absent: 30 s past
   * `loadSoftTimeout` (30 s when there is none) — every load has a deadline. A load running
   * past half of `leaseTtl` extends its lease (counted in `leaseExtensions`) until then.
   */
  loadHardTimeout?: Duration | null;
  /** When the store fails: answer from the loader (default) or fail. */
  onStoreError?: 'load' | 'error';
  /**
   * The largest encoded value that is cached, in bytes (default 16 MiB, at most 512 MiB). A
   * larger one is returned to its callers but not stored (`valuesTooLarge`); `set` of one
   * removes the key.
   */
  maxValueBytes?: number;
}

/** A validated policy. Invalid combinations (hardTtl < softTtl, …) throw a RangeError here. */
export declare class Policy {
  constructor(options?: PolicyOptions);
  /** Every setting, resolved, durations in ms. */
  toJSON(): Required<{ [K in keyof PolicyOptions]: Exclude<PolicyOptions[K], string> }>;
}

export interface MemoryStoreOptions {
  /** Most entries kept. Default 100 000. */
  maxEntries?: number;
  /** Most bytes kept (keys + encoded entries + overhead). Default 256 MiB. */
  maxBytes?: number;
  /**
   * Keys shard placement and the eviction's admission coin (a u64). Default: OS randomness.
   * The same seed and the same operations evict the same keys in every runtime.
   */
  seed?: bigint | number;
}

/**
 * The embedded store: bounded by entries and bytes, W-TinyLFU eviction (a new key is kept
 * only if it looks more popular than what it would push out), the same semantics as Redis.
 */
export declare class MemoryStore {
  constructor(options?: MemoryStoreOptions);
  readonly size: number;
  readonly bytes: number;
  /** Entries evicted for space so far. */
  readonly evictions: number;
  readonly maxEntries: number;
  readonly maxBytes: number;
}

/** The canonical params hash (RFC 8785 JSON + SHA-256, 32 hex) `Key#params` puts in a key. */
export declare function paramsHash(params: unknown): string;

/** The slice of an ioredis client karlton uses (a `Redis` or a `Cluster`). */
export interface RedisClientLike {
  evalshaBuffer(sha: string, numKeys: number, ...keysAndArgs: Array<string | Buffer>): Promise<unknown>;
  evalBuffer(script: string, numKeys: number, ...keysAndArgs: Array<string | Buffer>): Promise<unknown>;
  script(subcommand: 'LOAD', script: string): Promise<unknown>;
  readonly status: string;
  /** ioredis's generic command (the fast reads use it; without it every read runs the script). */
  callBuffer?(command: string, ...args: unknown[]): Promise<unknown>;
  /** ioredis `Cluster` sets this: the fast read is then one `pipeline()`, routed by slot. */
  readonly isCluster?: boolean;
  /** ioredis `Cluster`'s pipeline (the fast read on a Cluster uses it). */
  pipeline?(): unknown;
}

export interface RedisStoreOptions {
  /** ms before a script call counts as a store failure (default 1000; 0 = as long as the client waits). */
  commandTimeout?: number;
  /**
   * A fresh hit as plain pipelined commands (`TIME` and one `MGET` of the entry's record and its counters; judged by the core), no
   * script (default true; on a Cluster one pipeline that ioredis routes to the slot's primary).
   */
  fastReads?: boolean;
}

/**
 * Redis through your ioredis client; runs the core's Lua scripts (EVALSHA, EVAL on NOSCRIPT), and
 * reads fresh hits with plain pipelined commands instead (`fastReads`; on a Cluster routed by slot).
 */
export declare class RedisStore {
  constructor(client: RedisClientLike, options?: RedisStoreOptions);
  readonly client: RedisClientLike;
  /** Load the scripts now (optional). */
  loadScripts(): Promise<void>;
}

/** A value codec for a cache: ids 128..255 are yours (0 = raw bytes, 1 = JSON are karlton's). */
export interface Codec<T = unknown> {
  id: number;
  encode(value: T): Buffer | Uint8Array | string;
  decode(bytes: Buffer): T;
}

/** The default codec: JSON text, readable by every karlton runtime. */
export declare const jsonCodec: Codec;

export interface CacheOptions {
  /** Default: a new MemoryStore. */
  store?: MemoryStore | RedisStore;
  /** Default: `new Policy()`. */
  policy?: Policy | PolicyOptions;
  /** Default: JSON. Buffers always pass through as raw bytes. */
  codec?: Codec;
  /** Failures nobody awaits (background refreshes). Also emitted as `'error'` when listened to. */
  onBackgroundError?: (error: unknown, key: string) => void;
}

export interface GetOrLoadOptions {
  /** Tags the entry is filled under (`invalidateTag` orphans them). */
  tags?: string[];
  /** A policy for this call. */
  policy?: Policy | PolicyOptions;
}

export interface GetOptions {
  tags?: string[];
  policy?: Policy | PolicyOptions;
}

export interface SetOptions {
  /** Monotonic version: refused when a newer one is (or was) stored. */
  version?: number | bigint;
  tags?: string[];
  policy?: Policy | PolicyOptions;
}

export interface InvalidateOptions {
  /** 'delete' (default): the next reader loads. 'markStale': served while one caller refreshes. */
  mode?: 'delete' | 'markStale';
}

/** Counters since the cache was created. */
export interface CacheStats {
  hitsFresh: number;
  hitsStale: number;
  misses: number;
  loads: number;
  loadErrors: number;
  leaseWaits: number;
  leaseTimeouts: number;
  fillsRejected: number;
  negativeHits: number;
  storeErrors: number;
  corruptEntries: number;
  staleIfError: number;
  earlyRefreshes: number;
  evictions: number;
  /** Values not cached because they exceed `maxValueBytes` (returned, not stored). */
  valuesTooLarge: number;
  /** Leases extended because their load ran past half the lease (so it can still fill). */
  leaseExtensions: number;
  /** Callers answered by another caller's flight in this process (a stampede's joiners). */
  coalesced: number;
}

/** An error raised by karlton itself. */
export declare class KarltonError extends Error {
  readonly code:
    | 'ERR_KARLTON_LOAD_TIMEOUT'
    | 'ERR_KARLTON_LOCK_TIMEOUT'
    | 'ERR_KARLTON_STORE'
    | 'ERR_KARLTON_PROTOCOL'
    | 'ERR_KARLTON_CODEC'
    | 'ERR_KARLTON_LOAD'
    /** A loader called getOrLoad on a key its own call chain is loading (it would wait for itself). */
    | 'ERR_KARLTON_REENTRANT';
}

/**
 * A read-through cache over a store. `getOrLoad` is single-flight per process (and across
 * processes through the store's leases), serves stale values while one caller refreshes, caches
 * "not found", and keeps answering from the loader when the store is down.
 */
export declare class Cache extends EventEmitter {
  constructor(options?: CacheOptions);
  readonly store: MemoryStore | RedisStore;
  readonly policy: Policy;
  /** The cached value, or the loader's. `undefined`/`null` from the loader = not found → `undefined`. */
  getOrLoad<T = any>(key: Key, loader: () => T | null | undefined | Promise<T | null | undefined>, options?: GetOrLoadOptions): Promise<T | undefined>;
  /** The cached value if fresh or stale, else `undefined`. */
  get<T = any>(key: Key, options?: GetOptions): Promise<T | undefined>;
  /** Write-through; revokes leases; never lowers a version. Resolves whether it was stored. */
  set(key: Key, value: unknown, options?: SetOptions): Promise<boolean>;
  /** Delete or mark stale; revokes the lease (a load in flight can't fill). Resolves whether an entry existed. */
  invalidate(key: Key, options?: InvalidateOptions): Promise<boolean>;
  /** Orphan every entry of the key's namespace. Resolves the new generation. */
  bump(key: Key): Promise<number>;
  /** Orphan every entry filled with `tag` in the key's namespace. Resolves the new generation. */
  invalidateTag(key: Key, tag: string): Promise<number>;
  stats(): CacheStats;
  /** Calls and flights the cache's coordinator holds now (both 0 when idle; a leak shows here). */
  pending(): { calls: number; flights: number };
  on(event: 'error', listener: (error: unknown, key: string) => void): this;
}

/** Where stored entry bytes stand: core's `entry::describe`, the same answer in every runtime. */
export interface EntryInfo {
  freshness: 'fresh' | 'stale' | 'usable_on_error' | 'gone';
  soft_at: number | bigint;
  hard_at: number | bigint;
  /** `hard_at + staleIfError`: usable when a load fails until then. */
  usable_until: number | bigint;
  load_ms: number | bigint;
  version: number | bigint | null;
  negative: boolean;
  codec: number;
  value_len: number;
  generations: Array<number | bigint>;
  tags: string[];
}

/**
 * Read stored entry bytes at `nowMs` (default: now) under `policy` (default: `new Policy()`,
 * for its `staleIfError`). Integers beyond 2^53 are bigints. Throws a `KarltonError`
 * (`ERR_KARLTON_CODEC`) on corrupt bytes. It cannot see a later `bump`/tag invalidation
 * (that needs the counters' current values, compared with `generations`).
 */
export declare function describeEntry(bytes: Uint8Array, options?: { nowMs?: number | bigint; policy?: Policy | PolicyOptions }): EntryInfo;

/** Test and tool helpers (the core's entry encoding, the Redis scripts). */
export declare const internals: {
  encodeEntry(entry: object): Buffer;
  decodeEntry(bytes: Buffer): object;
  scripts: Array<{ name: string; sha: string; source: string }>;
  memoryRawEntry(store: MemoryStore, key: Key | string): Buffer | null;
};
