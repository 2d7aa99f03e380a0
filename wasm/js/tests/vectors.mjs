// Evaluates one conformance-vector case (tests/vectors/*.json; format in tests/vectors/README.md)
// through the wasm module, producing the value the case's `expect` must equal. The Rust twin of
// this mapping is wasm/host/tests/vectors.rs; the reference is core/tests/vectors/eval.rs.

import { parseBig, stringifyBig } from "../karlton-wasm.mjs";

export { parseBig, stringifyBig };

const ok = (v) => ({ ok: v });

function callBig(k, req) {
  const reply = parseBig(k.callRaw(stringifyBig(req)));
  if ("ok" in reply) return reply.ok;
  throw new Error(`${reply.error.code}: ${reply.error.message}`);
}

/** The module's reply for `req`: `{ok}` as is, `{error}` reduced to the structured detail. */
function via(k, req, map = (v) => v) {
  const reply = parseBig(k.callRaw(stringifyBig(req)));
  if ("ok" in reply) return ok(map(reply.ok));
  if (reply.error.detail === undefined) throw new Error(`${reply.error.code}: ${reply.error.message}`);
  return { error: reply.error.detail };
}

/** Only the non-zero counters. */
export function nonZero(stats) {
  return Object.fromEntries(Object.entries(stats).filter(([, v]) => v !== 0));
}

const opt = (v) => (v === null ? undefined : v);

function keys(k, i) {
  if (i.op === "params_hash") return via(k, { op: "params_hash", params_json: i.params_json });
  const req = {
    op: "key_build", namespace: i.namespace, segments: i.segments ?? [], params_json: opt(i.params_json),
    version: opt(i.version), hash_tag: i.hash_tag ?? false, max_len: opt(i.max_len), tags: i.op === "tag_key" ? [i.tag] : [],
  };
  const pick = { build: (r) => r.key, generation_key: (r) => r.generation_key, tag_key: (r) => r.tag_keys[0] }[i.op];
  if (!pick) throw new Error(`unknown keys op ${i.op}`);
  return via(k, req, pick);
}

function policyText(i) {
  return typeof i.spec_json === "string" ? i.spec_json : JSON.stringify(i.spec);
}

function freshness(k, i) {
  switch (i.op) {
    case "freshness":
      return via(k, { op: "freshness", now_ms: i.now, soft_at: i.soft_at, hard_at: i.hard_at, stale_if_error_ms: i.stale_if_error_ms });
    case "decide": {
      const r = via(k, { op: "decide", now_ms: i.now, soft_at: i.soft_at, hard_at: i.hard_at, load_ms: i.load_ms, policy: i.policy, rand: i.rand });
      // The scalar fast path must agree with the JSON path.
      const p = callBig(k, { op: "policy", policy: i.policy });
      const big = (x) => BigInt(typeof x === "string" ? x : x);
      const code = k.decideCode(big(i.now), big(i.soft_at), big(i.hard_at), big(i.load_ms), p.early_refresh, big(p.stale_if_error_ms), big(i.rand));
      const names = ["fresh", "refresh_early", "stale", "usable_on_error", "gone"];
      if (r.ok !== names[code]) throw new Error(`scalar decide ${names[code]} != ${r.ok}`);
      return r;
    }
    case "xfetch":
      return via(k, { op: "xfetch", now_ms: i.now, soft_at: i.soft_at, load_ms: i.load_ms, beta: i.beta, rand: i.rand });
    case "jitter_reduction":
      return via(k, { op: "jitter_reduction", ttl_ms: i.ttl_ms, jitter_ppm: i.jitter_ppm, rand: i.rand });
    case "jittered_ttls":
      return via(k, { op: "jittered_ttls", policy: i.policy, rand: i.rand });
  }
  throw new Error(`unknown freshness op ${i.op}`);
}

function entry(k, i) {
  if (i.op === "encode") return via(k, { op: "entry_encode", entry: i.entry });
  if (i.op === "decode") return via(k, { op: "entry_decode", hex: i.hex });
  throw new Error(`unknown entry op ${i.op}`);
}

function flows(k, i) {
  const flow = callBig(k, { op: "flow_create", request: i.request, policy: i.policy, seed: i.seed });
  const steps = i.steps.map((s, n) => {
    const req = s.input === null || s.input === undefined
      ? { op: "flow_start", flow, now_ms: s.now }
      : { op: "flow_handle", flow, now_ms: s.now, input: s.input };
    if (n > 0 && req.op === "flow_start") throw new Error("only the first step starts the flow");
    return callBig(k, req);
  });
  const stats = callBig(k, { op: "flow_drop", flow });
  return { steps, stats: nonZero(stats) };
}

function store(k, i) {
  const s = callBig(k, { op: "store_create" });
  const replies = i.ops.map((o) => callBig(k, { op: "store_apply", store: s, now_ms: o.now, store_op: o.op }));
  callBig(k, { op: "store_drop", store: s });
  return { replies };
}

function eviction(k, i) {
  const c = i.config;
  const s = callBig(k, { op: "store_create", max_entries: c.max_entries, max_bytes: c.max_bytes, shards: c.shards, seed: c.seed });
  const replies = i.ops.map((o) => callBig(k, { op: "store_apply", store: s, now_ms: o.now, store_op: o.op }));
  const st = callBig(k, { op: "store_stats", store: s });
  callBig(k, { op: "store_drop", store: s });
  return { replies, evictions: st.evictions, slots: st.slots, bytes: st.bytes };
}

function writes(k, i) {
  switch (i.op) {
    case "get_op": return via(k, { op: "get_op", key: i.key, gen_keys: i.gen_keys });
    case "set_op": return via(k, { op: "set_op", write: i.write, policy: i.policy, store_now: i.store_now, rand: i.rand });
    case "invalidate_op": return via(k, { op: "invalidate_op", key: i.key, mode: i.mode });
    case "bump_op": return via(k, { op: "bump_op", gen_key: i.gen_key, rand: i.rand });
    case "get_result":
      return via(k, { op: "get_result", reply: i.reply, policy: i.policy }, (r) => ({ served: r.served, stats: nonZero(r.stats) }));
    case "get_on_store_error":
      return via(k, { op: "get_on_store_error", policy: i.policy, message: i.message }, (r) => ({ served: r.served, stats: nonZero(r.stats) }));
  }
  throw new Error(`unknown writes op ${i.op}`);
}

/**
 * A coordinator script, read as core/tests/vectors/eval.rs (`eval_coordinator`) reads it, through
 * the `coord_*` ops: calls are named by the script, flights after the call that leads them ("a",
 * then "a#2"); every output is the module's JSON with ids replaced by names.
 */
function coordinator(k, input) {
  const calls = new Map(); // label -> call id
  const flights = new Map(); // flight id -> name
  // An unknown label is a call id no coordinator ever handed out.
  const callOf = (label) => (calls.has(label) ? calls.get(label) : "18446744073709551615");
  const flightName = (f) => flights.get(f) ?? f;
  const ticket = (label, t) => {
    if (t.ticket === "lead") {
      calls.set(label, t.call);
      // The flight id of a lead is its call id (see Coordinator::lead).
      const used = [...flights.values()].filter((n) => n === label || n.startsWith(`${label}#`)).length;
      flights.set(t.call, used === 0 ? label : `${label}#${used + 1}`);
      return { ...t, call: label };
    }
    if (t.ticket === "join") {
      calls.set(label, t.call);
      return { ...t, call: label, flight: flightName(t.flight) };
    }
    return t;
  };
  const undecodable = (s) => ({ value: s.bad, codec: 1, negative: false, version: null, source: s.source ?? "fresh", cached: true });
  const policy = input.policy;
  const coord = callBig(k, { op: "coord_create", seed: input.seed, fast_read: input.fast_read ?? false });
  const outputs = [];
  for (const s of input.steps) {
    const base = { coord, now_ms: s.now };
    const request = () => ({ key: s.key, gen_keys: s.gen_keys ?? [], tags: s.tags ?? [] });
    let out;
    switch (s.do) {
      case "get_or_load": {
        // `within`: flights by name -> their ids.
        const within = s.within?.map((n) => [...flights].find(([, v]) => v === n)?.[0] ?? "18446744073709551615");
        out = ticket(s.call, callBig(k, { op: "coord_get_or_load", ...base, request: request(), policy, ...(within ? { within } : {}) }));
        break;
      }
      case "replacing":
        out = ticket(s.call, callBig(k, { op: "coord_get_or_load_replacing", ...base, request: request(), policy, served: undecodable(s) }));
        break;
      case "replace_served":
        out = ticket(s.call, callBig(k, { op: "coord_replace_served", ...base, call: callOf(s.call) }));
        break;
      case "get_undecodable":
        out = callBig(k, { op: "coord_report_undecodable", coord, served: undecodable(s) });
        break;
      case "joined":
        out = ticket(s.call, callBig(k, { op: "coord_joined", ...base, call: callOf(s.call) }));
        break;
      case "feed":
        out = callBig(k, { op: "coord_handle", ...base, call: callOf(s.call), input: s.input });
        break;
      case "fast_read":
        out = callBig(k, { op: "coord_handle_fast_read", ...base, call: callOf(s.call), ...(s.error !== undefined ? { error: s.error } : { replies: s.replies }) });
        break;
      case "cancel":
        out = callBig(k, { op: "coord_cancel", coord, call: callOf(s.call) });
        break;
      case "op": {
        const r = callBig(k, { op: "coord_op", ...base, call_op: s.op, policy });
        calls.set(s.call, r.call);
        out = r.action;
        break;
      }
      default:
        throw new Error(`unknown coordinator step ${s.do}`);
    }
    const events = callBig(k, { op: "coord_events", coord }).map((e) => (e.flight === undefined ? e : { ...e, flight: flightName(e.flight) }));
    outputs.push(events.length ? { out, events } : { out });
  }
  const pending = callBig(k, { op: "coord_pending", coord });
  const stats = callBig(k, { op: "coord_drop", coord });
  return { outputs, stats: nonZero(stats), pending };
}

export function evalCase(k, kind, input) {
  switch (kind) {
    case "keys": return keys(k, input);
    case "policy": return via(k, { op: "policy", policy_json: policyText(input) });
    case "freshness": return freshness(k, input);
    case "entry": return entry(k, input);
    case "flows": return flows(k, input);
    case "store": return store(k, input);
    case "writes": return writes(k, input);
    case "eviction": return eviction(k, input);
    case "coordinator": return coordinator(k, input);
  }
  throw new Error(`unknown vector kind ${kind}`);
}
