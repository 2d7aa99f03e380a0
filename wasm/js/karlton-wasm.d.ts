// Types for karlton-wasm.mjs (the ESM loader of karlton.wasm, ABI version 1).

export declare const ABI_VERSION: 1;

export type Decision = "fresh" | "refresh_early" | "stale" | "usable_on_error" | "gone";
export declare const DECISIONS: readonly Decision[];

/** A u64: a non-negative safe integer or a bigint. */
export type U64 = number | bigint;

export declare class KarltonError extends Error {
  readonly code: string;
  readonly detail?: { kind: string; [k: string]: unknown };
}

/** Policy fields as in karlton-core (durations in ms). */
/**
 * A policy in the core's field names. Durations are ms: a number with a fraction is rounded
 * half away from zero (2.5 -> 3), as by every runtime.
 */
export interface PolicySpec {
  soft_ttl_ms?: number;
  hard_ttl_ms?: number | null;
  jitter?: number;
  early_refresh?: number;
  negative_ttl_ms?: number;
  stale_if_error_ms?: number;
  lease_ttl_ms?: number;
  lock_wait_ms?: number;
  lock_backoff_ms?: number[];
  on_lock_timeout?: "load" | "serve_stale" | "error";
  load_soft_timeout_ms?: number | null;
  /** null/absent: 30 000 ms past `load_soft_timeout_ms` (or 30 000) — every load has a deadline. */
  load_hard_timeout_ms?: number | null;
  on_store_error?: "load" | "error";
  max_value_bytes?: number;
}

/** An entry in the core's JSON form. */
export interface Entry {
  value_hex: string;
  codec: number;
  /** Decimal string (u64), or null. */
  version: string | null;
  generations: number[];
  soft_at: number;
  hard_at: number;
  load_ms: number;
  negative: boolean;
  tags: string[];
}

export interface FlowRequest {
  key: string;
  gen_keys?: string[];
  tags?: string[];
}

export interface Served {
  value: string;
  codec: number;
  negative: boolean;
  version: number | null;
  source: "fresh" | "stale" | "loaded" | "stale_on_error" | "stale_on_timeout";
  cached: boolean;
}

export type FlowError = { error: "load" | "load_timeout" | "lock_timeout" | "store" | "protocol"; message: string | number };

/** The serde form of core's `StoreOp` (`{"op": "read" | "fill" | ..., ...}`). */
export type StoreOp = { op: string; [k: string]: unknown };
/** The serde form of core's `StoreReply` (`{"reply": "read" | "stored" | ..., ...}`). */
export type StoreReply = { reply: string; [k: string]: unknown };

export type Step =
  | { step: "store"; data: StoreOp }
  | { step: "load"; data: { timeout_at: number | null } }
  | { step: "wait"; data: { until_ms: number } }
  | { step: "serve"; data: Served }
  | { step: "done"; data: { Ok: Served } | { Err: FlowError } };

export type Input =
  | { input: "store"; data: StoreReply }
  | { input: "store_failed"; data: { message: string } }
  | { input: "loaded"; data: { value: string; codec: number; negative: boolean; version: number | null } }
  | { input: "load_failed"; data: string }
  | { input: "timeout" }
  | { input: "continue" };

export type Stats = Record<string, number>;

export interface KeySpec {
  namespace: string;
  segments?: string[];
  /**
   * Any JSON value, hashed canonically (RFC 8785 + SHA-256). Integers beyond 2^53 go in as
   * bigints (-2^63 .. 2^64-1), which reach the core exactly and are hashed (or refused) as
   * Python and Rust hash such ints.
   */
  params?: unknown;
  /** Or the params as JSON text, verbatim. */
  paramsJson?: string;
  version?: U64 | string;
  hashTag?: boolean;
  maxLen?: U64;
  tags?: string[];
}

export interface BuiltKey {
  key: string;
  generationKey: string;
  tagKeys: string[];
}

export declare class Karlton {
  readonly abiVersion: number;
  readonly exports: WebAssembly.Exports;
  decideCode(now: bigint, softAt: bigint, hardAt: bigint, loadMs: bigint, beta: number, staleIfErrorMs: bigint, rand: bigint): number;
  decide(nowMs: U64, softAt: U64, hardAt: U64, loadMs: U64, beta: number, staleIfErrorMs: U64, rand: U64): Decision;
  jitter(ttlMs: U64, jitterPpm: U64, rand: U64): number;
  callRaw(requestJson: string): string;
  call<T = unknown>(request: { op: string; [k: string]: unknown }): T;
  key(spec: KeySpec): BuiltKey;
  paramsHash(params: unknown): string;
  policy(spec: PolicySpec): Required<PolicySpec>;
  entryEncode(entry: Partial<Entry>): Uint8Array;
  entryDecode(bytes: Uint8Array): Entry;
  /** Core's `entry::describe` at `nowMs` under `policy`. Integers beyond 2^53 are bigints. */
  entryDescribe(bytes: Uint8Array, nowMs: U64, policy?: PolicySpec): {
    freshness: "fresh" | "stale" | "usable_on_error" | "gone";
    soft_at: number | bigint; hard_at: number | bigint; usable_until: number | bigint; load_ms: number | bigint;
    version: number | bigint | null; negative: boolean; codec: number; value_len: number;
    generations: Array<number | bigint>; tags: string[];
  };
  jitteredTtls(policy: PolicySpec, rand: U64 | string): { jitter_ppm: number; soft_ttl_ms: number; hard_ttl_ms: number };
  flowCreate(request: FlowRequest, policy: PolicySpec, seed: U64 | string): number;
  flowStart(flow: number, nowMs: number, store?: number): Step;
  flowHandle(flow: number, nowMs: number, input: Input, store?: number): Step;
  flowDrop(flow: number): Stats;
  storeCreate(opts?: { maxEntries?: number; maxBytes?: number; shards?: number }): number;
  storeApply(store: number, nowMs: number, op: StoreOp): StoreReply;
  storeDrop(store: number): void;
  getOrLoad(store: number, request: FlowRequest, policy: PolicySpec, seed: U64 | string, nowMs: number): { flow: number | null; step: Step; stats: Stats };
  /** As `call`, with integers beyond 2^53 as bigints both ways. */
  callExact<T = unknown>(request: { op: string; [k: string]: unknown }): T;
  /** A coordinator. `seed` must come from the host's random source (the module has none). */
  coordinator(opts: { seed: U64; fastRead?: boolean; policy?: PolicySpec }): Coordinator;
}

/** karlton-core's coordinator forms (serde JSON; see core/src/coordinator.rs). */
export type Answer = { Ok: Reply } | { Err: { error: string; message: unknown } };
export type Reply =
  | { reply: "value"; data: Served }
  | { reply: "missing" }
  | { reply: "stored"; data: boolean }
  | { reply: "invalidated"; data: boolean }
  | { reply: "bumped"; data: number | bigint };
export type Action =
  | { action: "store"; data: StoreOp }
  | { action: "fast_read"; data: { key: string; gen_keys: string[] } }
  | { action: "start_load"; data: { timeout_at: number | null } }
  | { action: "await_load"; data: { timeout_at: number | null } }
  | { action: "wait"; data: { until_ms: number } }
  | { action: "serve"; data: Served }
  | { action: "answer"; data: Answer }
  | { action: "finished" };
export type Ticket =
  | { ticket: "answer"; answer: Answer }
  | { ticket: "lead"; call: number; action: Action }
  | { ticket: "join"; call: number; flight: number };
export type CoordEvent =
  | { event: "wake"; flight: number }
  | { event: "background_error"; key: string; error: { error: string; message: unknown } };
export type Op =
  | { op: "get"; key: string; gen_keys?: string[] }
  | { op: "set"; write: { key: string; gen_keys?: string[]; tags?: string[]; value: string; codec: number; version: number | bigint | null } }
  | { op: "invalidate"; key: string; mode: "delete" | "mark_stale" }
  | { op: "bump"; gen_key: string };
type Opts = { policy?: PolicySpec; store?: number };

export declare class Coordinator {
  /** The module's handle for it. */
  readonly id: number;
  getOrLoad(nowMs: U64, request: FlowRequest, opts?: Opts & { within?: U64[] }): Ticket;
  getOrLoadReplacing(nowMs: U64, request: FlowRequest, served: Served, opts?: Opts): Ticket;
  /** Instead of `continue` after a `serve` that did not decode: the call leads again; its refresh answers. */
  replaceServed(nowMs: U64, call: number, opts?: { store?: number }): Ticket;
  joined(nowMs: U64, call: number, opts?: { store?: number }): Ticket;
  handle(nowMs: U64, call: number, input: Input, opts?: { store?: number }): Action;
  handleFastRead(nowMs: U64, call: number, replies: unknown[] | { error: string }, opts?: { store?: number }): Action;
  cancel(call: number): StoreOp | null;
  op(nowMs: U64, op: Op, opts?: Opts): { call: number; action: Action };
  pollEvent(): CoordEvent | null;
  events(): CoordEvent[];
  stats(): Stats;
  pending(): [number, number];
  reportUndecodable(served: Served): void;
  memoryHit(store: number, nowMs: U64, key: string, genKeys?: string[], opts?: { policy?: PolicySpec }): Served | null;
  drop(): Stats;
}
export declare function parseBig(text: string): unknown;
export declare function stringifyBig(value: unknown): string;

/** Instantiate from a compiled module (Workers) or the module's bytes (Node, Deno, browsers). */
export declare function load(source: WebAssembly.Module | ArrayBuffer | ArrayBufferView): Promise<Karlton>;
export declare function loadSync(module: WebAssembly.Module): Karlton;
export declare function bytesToHex(bytes: Uint8Array): string;
export declare function hexToBytes(hex: string): Uint8Array;
